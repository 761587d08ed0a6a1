import math

import numpy as np
import pytest
import torch

from molgen.likelihood import likelihood_report, log_weights
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_molecules
from molgen.token_cache import TokenizedSet
from molgen.tokenizer import SelfiesTokenizer

from conftest import SMALL_SMILES
from stepwise import lm_log_likelihood


def tokenized(tok: SelfiesTokenizer, repeat: int = 1) -> TokenizedSet:
    ids = [tok.encode(s) for s in SMALL_SMILES] * repeat
    offsets = np.concatenate([[0], np.cumsum([len(x) for x in ids])]).astype(np.int64)
    return TokenizedSet(np.concatenate(ids).astype(np.int16), offsets, list(SMALL_SMILES) * repeat, len(ids))


def known_model(tok: SelfiesTokenizer) -> tuple[MoleculeVAE, torch.Tensor]:
    """A VAE with q(z|x) = p(z) = N(0, I) and p(x|z) = prod_t softmax(b)[x_t]: log p(x) is known."""
    torch.manual_seed(0)
    model = MoleculeVAE(vocab_size=len(tok), max_len=60, emb_dim=8, enc_hidden=8, dec_hidden=8, latent_dim=3, n_components=1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not name.startswith("prior"):
                p.zero_()
        model.prior.means.zero_()
        model.prior.log_scales.zero_()
        bias = torch.randn(len(tok))
        model.decoder.out.bias.copy_(bias)
    return model, torch.log_softmax(bias, -1)


def test_iwae_equals_log_px_exactly_when_known():
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    model, log_probs = known_model(tok)
    data = tokenized(tok)
    truth = np.array([float(log_probs[data.get(i).astype(np.int64)].sum()) for i in range(len(data))])
    report = likelihood_report(model, data, n=len(data), k=50, ks=(1, 10, 50), progress=False)
    for curve_point in report["iwae_curve"].values():
        assert curve_point["nats_per_molecule"] == pytest.approx(-truth.mean(), abs=1e-4)
    # the ELBO's KL is a Monte-Carlo estimate (closed-form entropy, sampled cross-entropy): ~0 here
    assert report["kl"] == pytest.approx(0.0, abs=0.2)
    assert report["elbo_nll"]["nats_per_molecule"] == pytest.approx(-truth.mean(), abs=0.2)
    assert report["reconstruction_nll"] == pytest.approx(-truth.mean(), abs=1e-4)
    bits = -truth.sum() / data.lengths.sum() / math.log(2)
    assert report["iwae_nll"]["bits_per_token"] == pytest.approx(bits, abs=1e-6)


def test_iwae_bound_does_not_decrease_with_k():
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    torch.manual_seed(1)
    model = MoleculeVAE(vocab_size=len(tok), max_len=60, emb_dim=8, enc_hidden=16, dec_hidden=16, latent_dim=4, n_components=3)
    data = tokenized(tok, repeat=40)  # 320 molecules: the mean bound is stable enough to order
    report = likelihood_report(model, data, n=len(data), k=100, ks=(1, 10, 100), batch_size=160, progress=False)
    nll = [report["iwae_curve"][str(k)]["nats_per_molecule"] for k in (1, 10, 100)]
    assert nll[0] > nll[1] > nll[2]
    # the ELBO (averaged over all K draws) is a looser bound than IWAE-K
    assert report["elbo_nll"]["nats_per_molecule"] > report["iwae_nll"]["nats_per_molecule"]


def test_language_model_likelihood_is_exact_for_every_k():
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    torch.manual_seed(2)
    model = MoleculeVAE(vocab_size=len(tok), max_len=60, emb_dim=8, dec_hidden=16, kind="lm")
    data = tokenized(tok)
    exact = lm_log_likelihood(model, [data.get(i) for i in range(len(data))])  # a plain decoder_step loop
    assert (exact < -5).all()  # measured -12 to -78 nats: not a degenerate model
    tokens, lengths = pad_molecules(data, range(len(data)))
    parts = log_weights(model, tokens, lengths, k=10)
    for row in parts["log_w"]:  # every importance weight is the exact log p(x), molecule by molecule
        torch.testing.assert_close(row, exact, rtol=0, atol=1e-5)
    torch.testing.assert_close(parts["rec"][0], exact, rtol=0, atol=1e-5)
    assert torch.equal(parts["kl"], torch.zeros_like(exact))
    report = likelihood_report(model, data, n=len(data), k=10, progress=False)
    for k in ("1", "10"):
        assert report["iwae_curve"][k]["nats_per_molecule"] == pytest.approx(-exact.mean().item(), abs=1e-5)
    assert report["iwae_nll"]["nats_per_molecule"] == pytest.approx(-exact.mean().item(), abs=1e-5)
    assert report["elbo_nll"]["nats_per_molecule"] == pytest.approx(-exact.mean().item(), abs=1e-5)
    assert report["kl"] == 0.0
    per = report["per_molecule"]  # molecule by molecule, for paired comparisons of two models
    assert per["smiles"] == list(SMALL_SMILES)
    np.testing.assert_allclose(per["iwae_nll"], -exact.numpy(), atol=1e-5)


def test_log_weights_are_float64_with_one_row_per_sample():
    tok = SelfiesTokenizer.build(SMALL_SMILES)
    model, _ = known_model(tok)
    data = tokenized(tok)
    tokens, lengths = pad_molecules(data, range(3))
    parts = log_weights(model, tokens, lengths, k=7, chunk=3)
    assert parts["log_w"].shape == (7, 3) and parts["log_w"].dtype == torch.float64
