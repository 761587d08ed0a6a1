import math

import numpy as np
import pytest
import torch

from molgen.errors import MolgenError
from molgen.model.prior_fit import fit_diagonal_gmm, refit_prior
from molgen.model.vae import MoleculeVAE
from molgen.token_cache import TokenizedSet
from molgen.tokenizer import SelfiesTokenizer

from conftest import SMALL_SMILES


def _tiny_model_and_set(copies: int, n_components: int) -> tuple[MoleculeVAE, TokenizedSet]:
    """An untrained 4-dimensional VAE and SMALL_SMILES repeated ``copies`` times."""
    torch.manual_seed(0)
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    ids = [tok.encode(s) for s in SMALL_SMILES] * copies
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    data = TokenizedSet(np.concatenate(ids).astype(np.int16), offsets, None, len(ids))
    model = MoleculeVAE(vocab_size=len(tok), max_len=60, emb_dim=8, enc_hidden=16, dec_hidden=16, latent_dim=4,
                        n_components=n_components)  # fmt: skip
    return model, data


def test_em_recovers_separated_clusters():
    gen = torch.Generator().manual_seed(0)
    means = torch.tensor([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    scales = torch.tensor([[1.0, 0.5], [0.5, 1.0], [0.7, 0.7]])
    counts = [2000, 1000, 1000]
    z = torch.cat([m + s * torch.randn(c, 2, generator=gen) for m, s, c in zip(means, scales, counts)])
    fit = fit_diagonal_gmm(z, 3, seed=1)
    order = torch.argsort(fit["means"][:, 0] * 10 + fit["means"][:, 1])  # (0,0), (0,6), (6,0)
    assert torch.allclose(fit["means"][order], means[[0, 2, 1]].double(), atol=0.1)
    assert torch.allclose(torch.exp(fit["log_scales"][order]), scales[[0, 2, 1]].double(), atol=0.08)
    assert torch.allclose(torch.exp(fit["log_weights"][order]), torch.tensor([0.5, 0.25, 0.25]).double(), atol=0.02)


def test_refit_raises_the_prior_likelihood_of_encodings_and_spreads_usage():
    model, data = _tiny_model_and_set(copies=25, n_components=4)
    with torch.no_grad():  # a collapsed prior: one component holds all the weight
        model.prior.logits.copy_(torch.tensor([10.0, -10.0, -10.0, -10.0]))
        model.prior.means.add_(5.0)
    report = refit_prior(model, data, n=200, seed=0)
    assert report["held_out"] == 0 and report["selection_log_pz"]["trained"] < report["selection_log_pz"][report["chosen"]]
    assert report["log_pz_after"] > report["log_pz_before"]
    weights = torch.softmax(model.prior.logits.detach(), -1)
    assert math.exp(-(weights * weights.log()).sum()) > 1.5  # more than one component in use


def test_em_from_a_given_start_never_lowers_its_likelihood():
    gen = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(500, 3, generator=gen), 4 + torch.randn(500, 3, generator=gen)])
    init = {"log_weights": torch.tensor([0.0, -3.0]), "means": torch.tensor([[0.5, 0.0, 0.0], [3.0, 3.0, 3.0]]),
            "log_scales": torch.zeros(2, 3)}  # fmt: skip
    start = fit_diagonal_gmm(z, 2, iters=1, init=init)["loglik"]  # the likelihood at the start (before any update)
    fit = fit_diagonal_gmm(z, 2, init=init)
    assert fit["loglik"] > start
    assert sorted(torch.exp(fit["log_weights"]).tolist()) == pytest.approx([0.5, 0.5], abs=0.02)


def test_a_refit_with_held_out_molecules_keeps_the_candidate_best_on_them():
    model, data = _tiny_model_and_set(copies=40, n_components=3)
    report = refit_prior(model, data, n=200, seed=0, held_out=100)
    scores = report["selection_log_pz"]
    assert set(scores) == {"trained", "em_from_trained", "em_from_kmeans++"} and report["held_out"] == 100
    assert report["chosen"] == max(scores, key=scores.get)
    assert report["iterations"]["em_from_trained"] >= 1
    held = refit_prior(model, data, n=len(data), seed=0, held_out=100)  # no molecules left to hold out
    assert held["held_out"] == 0
    with pytest.raises(MolgenError, match="held_out must be >= 0"):
        refit_prior(model, data, n=200, held_out=-1)


def test_the_fitted_draws_do_not_depend_on_the_held_out_count():
    from molgen.model.prior_fit import aggregate_posterior_draws

    model, data = _tiny_model_and_set(copies=40, n_components=3)
    z = aggregate_posterior_draws(model, data, n=200, seed=0)
    for held_out in (0, 100):
        fresh, _ = _tiny_model_and_set(copies=40, n_components=3)  # the same seeded weights
        report = refit_prior(fresh, data, n=200, seed=0, held_out=held_out)
        assert report["log_pz_before"] == pytest.approx(float(model.prior.log_prob(z).double().mean()))
