"""MoleculeVAE, mixture prior, KL estimator, diagnostics and model files (issue 4)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from molgen.checkpoint import load_model, round_weights_, save_model
from molgen.errors import MolgenError
from molgen.model.diagnostics import aggregate_mutual_information, collapse_diagnostics, posterior_statistics, summarize
from molgen.nn.prior import MixturePrior
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_ids
from molgen.tokenizer import SelfiesTokenizer

from conftest import SMALL_SMILES

SIZES = dict(emb_dim=16, enc_hidden=24, dec_hidden=32, latent_dim=6, n_components=3)



def make_batch(tok: SelfiesTokenizer, smiles=SMALL_SMILES, extra_pad: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    tokens, lengths = pad_ids([tok.encode(s) for s in smiles], tok.pad_id)
    return nn.functional.pad(tokens, (0, extra_pad), value=tok.pad_id), lengths


@pytest.fixture
def tok() -> SelfiesTokenizer:
    return SelfiesTokenizer.build(SMALL_SMILES)


def make_model(tok: SelfiesTokenizer, kind: str = "vae", seed: int = 0, **kw) -> MoleculeVAE:
    torch.manual_seed(seed)
    return MoleculeVAE(vocab_size=len(tok), max_len=64, kind=kind, **{**SIZES, **kw}).eval()


# ----------------------------------------------------------------------------- encoder / decoder


def test_encoder_output_is_unchanged_by_extra_padding(tok):
    model = make_model(tok)
    mu, logvar = model.encode(*make_batch(tok))
    mu_pad, logvar_pad = model.encode(*make_batch(tok, extra_pad=17))
    torch.testing.assert_close(mu, mu_pad, rtol=0, atol=1e-6)
    torch.testing.assert_close(logvar, logvar_pad, rtol=0, atol=1e-6)
    # and each molecule's encoding does not depend on the batch it is in
    one = model.encode(*make_batch(tok, SMALL_SMILES[2:3]))[0]
    torch.testing.assert_close(one[0], mu[2], rtol=0, atol=1e-5)


def test_log_px_z_is_unchanged_by_extra_padding(tok):
    model = make_model(tok)
    z = torch.randn(2, len(SMALL_SMILES), SIZES["latent_dim"])
    a = model.log_px_z(*make_batch(tok), z)
    b = model.log_px_z(*make_batch(tok, extra_pad=9), z)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", ["vae", "lm"])
def test_log_px_z_equals_the_sum_of_stepwise_decoder_log_probs(tok, kind):
    model = make_model(tok, kind=kind)
    tokens, lengths = make_batch(tok)
    z = torch.randn(len(lengths), SIZES["latent_dim"]) if kind == "vae" else None
    expected = torch.zeros(len(lengths))
    with torch.no_grad():
        h = model.decoder_init(z, len(lengths))
        prev = torch.full((len(lengths),), tok.bos_id)
        for t in range(tokens.shape[1]):
            logits, h = model.decoder_step(prev, z, h)
            assert logits.dtype == torch.float32 and logits.shape == (len(lengths), len(tok))
            step = torch.log_softmax(logits, -1).gather(1, tokens[:, t : t + 1]).squeeze(1)
            expected += torch.where(t < lengths, step, torch.zeros_like(step))
            prev = tokens[:, t]
        got = model.log_px_z(tokens, lengths, z)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("kind, layers", [("vae", 1), ("vae", 2), ("lm", 2)])
def test_decoder_stepper_equals_decoder_step_on_all_rows_and_on_a_subset(tok, kind, layers):
    model = make_model(tok, kind=kind, dec_layers=layers)
    n = len(SMALL_SMILES)
    z = torch.randn(n, SIZES["latent_dim"]) if kind == "vae" else None
    prev = torch.randint(0, len(tok), (n,))
    with torch.no_grad():
        h = model.decoder_init(z, n) + 0.1 * torch.randn(layers, n, SIZES["dec_hidden"])
        expected_logits, expected_h = model.decoder_step(prev, z, h)
        step = model.decoder_stepper(z)
        logits, new_h = step(prev, h)
        torch.testing.assert_close(logits, expected_logits, rtol=0, atol=1e-5)
        torch.testing.assert_close(new_h, expected_h, rtol=0, atol=1e-6)
        rows = torch.tensor([3, 0, n - 1])  # a subset, out of order: each row keeps its own latent
        step.select(rows)
        logits, new_h = step(prev[rows], h[:, rows])
        torch.testing.assert_close(logits, expected_logits[rows], rtol=0, atol=1e-5)
        torch.testing.assert_close(new_h, expected_h[:, rows], rtol=0, atol=1e-6)


def test_log_px_z_with_several_latent_samples_matches_one_at_a_time(tok):
    model = make_model(tok)
    tokens, lengths = make_batch(tok)
    z = torch.randn(3, len(lengths), SIZES["latent_dim"])
    with torch.no_grad():
        stacked = model.log_px_z(tokens, lengths, z)
        single = torch.stack([model.log_px_z(tokens, lengths, z[s]) for s in range(3)])
    assert stacked.shape == (3, len(lengths))
    torch.testing.assert_close(stacked, single, rtol=0, atol=1e-5)


def test_language_model_has_no_encoder_or_prior_and_ignores_z(tok):
    model = make_model(tok, kind="lm")
    assert not hasattr(model, "encoder") and not hasattr(model, "prior")
    tokens, lengths = make_batch(tok)
    terms = model.elbo_terms(tokens, lengths)
    torch.testing.assert_close(terms["elbo"], model.log_px_z(tokens, lengths, None))
    assert torch.all(terms["kl"] == 0)


def test_word_dropout_acts_only_in_training_mode(tok):
    model = make_model(tok, word_dropout=0.5)
    plain = make_model(tok)  # the same seed: the same weights, without word dropout
    tokens, lengths = make_batch(tok)
    z = torch.randn(len(lengths), SIZES["latent_dim"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = plain.log_px_z(tokens, lengths, z)
        torch.testing.assert_close(model.eval().log_px_z(tokens, lengths, z), reference, rtol=0, atol=0)
        torch.testing.assert_close(plain.train().log_px_z(tokens, lengths, z), reference, rtol=0, atol=0)
        model.train()
        torch.manual_seed(0)
        a = model.log_px_z(tokens, lengths, z)
        torch.manual_seed(1)
        b = model.log_px_z(tokens, lengths, z)
        assert (a - reference).abs().max() > 0.1 and (a - b).abs().max() > 0.1  # a new mask every call
        # rate 1: every input after <bos> is <pad>; the same as feeding those inputs to the decoder by hand
        model.word_dropout = 1.0
        width = int(lengths.max())
        inputs = torch.full((len(lengths), width), tok.pad_id)
        inputs[:, 0] = tok.bos_id
        logits, _ = model.decoder(inputs, z, model.decoder.initial_state(z, len(lengths)))
        logp = torch.log_softmax(logits, -1).gather(-1, tokens[:, :width].unsqueeze(-1)).squeeze(-1)
        expected = (logp * (torch.arange(width) < lengths.unsqueeze(1))).sum(-1)
        torch.testing.assert_close(model.log_px_z(tokens, lengths, z), expected, rtol=0, atol=1e-5)


def test_bn_vae_means_spread_by_the_fixed_scale_in_training_and_use_running_statistics_in_eval(tok):
    gamma = 0.5
    model = make_model(tok, mu_batchnorm=gamma)
    tokens, lengths = make_batch(tok)
    with torch.no_grad():
        model.encoder.mu_shift.fill_(0.25)
        model.encoder.head[-1].weight.mul_(100)  # raw means spread far beyond BatchNorm's eps (1e-5)
        model.train()
        for _ in range(50):  # running statistics converge to this batch's
            mu, logvar = model.encode(tokens, lengths)
        # per dimension: mean = the learned shift, (biased) standard deviation = gamma, whatever the raw head gives
        torch.testing.assert_close(mu.mean(0), torch.full((SIZES["latent_dim"],), 0.25), rtol=0, atol=1e-5)
        torch.testing.assert_close(mu.std(0, unbiased=False), torch.full((SIZES["latent_dim"],), gamma), rtol=1e-3, atol=1e-4)
        model.eval()
        one = model.encode(*make_batch(tok, SMALL_SMILES[2:3]))[0]  # eval mode: no dependence on the batch
        every = model.encode(tokens, lengths)[0]
        torch.testing.assert_close(one[0], every[2], rtol=0, atol=1e-5)
        n = len(lengths)  # the running variance is the unbiased one: eval means spread by gamma * sqrt((n-1)/n)
        torch.testing.assert_close(every.std(0, unbiased=False), torch.full((SIZES["latent_dim"],), gamma * ((n - 1) / n) ** 0.5),
                                   rtol=1e-2, atol=1e-3)  # fmt: skip
        # a training batch of one molecule (a data set's last) is normalised by the running statistics
        model.train()
        tracked = int(model.encoder.mu_norm.num_batches_tracked)
        alone = model.encode(*make_batch(tok, SMALL_SMILES[2:3]))[0]
        torch.testing.assert_close(alone[0], every[2], rtol=0, atol=1e-5)
        assert int(model.encoder.mu_norm.num_batches_tracked) == tracked
    assert make_model(tok).encoder.mu_batchnorm == 0 and not hasattr(make_model(tok).encoder, "mu_norm")


def test_a_bn_vae_model_file_keeps_its_normalisation(tok, tmp_path):
    model = make_model(tok, mu_batchnorm=0.7)
    tokens, lengths = make_batch(tok)
    model.train()
    with torch.no_grad():
        model.encode(tokens, lengths)  # moves the running statistics off their initial values
    model.eval()
    save_model(tmp_path / "bn.pt", model, tok)
    loaded, _ = load_model(tmp_path / "bn.pt")
    assert loaded.hparams_dict["mu_batchnorm"] == 0.7 and loaded.encoder.mu_norm.num_batches_tracked == 1
    torch.testing.assert_close(loaded.encode(tokens, lengths)[0], model.encode(tokens, lengths)[0])


@pytest.mark.parametrize("kind", ["vae", "lm"])
def test_no_plain_relu_anywhere_in_the_model(tok, kind):
    model = make_model(tok, kind=kind)
    relus = [name for name, m in model.named_modules() if isinstance(m, (nn.ReLU, nn.ReLU6, nn.LeakyReLU))]
    assert relus == []
    assert any(isinstance(m, nn.GELU) for m in model.modules()) or kind == "lm"


def test_hparams_dict_rebuilds_the_same_model(tok):
    model = make_model(tok)
    clone = MoleculeVAE(**model.hparams_dict)
    assert all(isinstance(v, (int, float, str)) for v in model.hparams_dict.values())
    assert clone.state_dict().keys() == model.state_dict().keys()


# ----------------------------------------------------------------------------- mixture prior


def test_mixture_log_density_equals_a_handwritten_logsumexp():
    torch.manual_seed(0)
    prior = MixturePrior(latent_dim=5, n_components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.randn(4))
        prior.log_scales.copy_(torch.randn(4, 5) * 0.3)
    z = torch.randn(7, 3, 5, dtype=torch.float64)
    log_w = torch.log_softmax(prior.logits.double(), -1)
    terms = []
    for k in range(4):
        mu, s = prior.means[k].double(), prior.log_scales[k].double().exp()
        log_n = (-0.5 * ((z - mu) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)
        terms.append(log_w[k] + log_n)
    expected = torch.logsumexp(torch.stack(terms, -1), -1)
    got = prior.log_prob(z)
    assert got.shape == (7, 3)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-4)
    reference = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.logits.detach()),
        torch.distributions.Independent(torch.distributions.Normal(prior.means.detach(), prior.log_scales.detach().exp()), 1),
    )
    torch.testing.assert_close(got, reference.log_prob(z.float()), rtol=1e-5, atol=1e-4)


def test_responsibilities_are_the_posterior_over_components():
    torch.manual_seed(0)
    prior = MixturePrior(3, 4)
    z = torch.randn(10, 3)
    r = prior.responsibilities(z)
    torch.testing.assert_close(r.sum(-1), torch.ones(10))
    expected = torch.softmax(prior.joint_log_prob(z), -1)
    torch.testing.assert_close(r, expected)


def test_prior_samples_follow_the_generator_and_the_requested_component():
    prior = MixturePrior(4, 5)
    z1, k1 = prior.sample(50, generator=torch.Generator().manual_seed(3))
    z2, k2 = prior.sample(50, generator=torch.Generator().manual_seed(3))
    assert z1.shape == (50, 4) and k1.shape == (50,)
    torch.testing.assert_close(z1, z2)
    assert torch.equal(k1, k2)
    z, k = prior.sample(1000, component=2, generator=torch.Generator().manual_seed(0))
    assert torch.all(k == 2)
    torch.testing.assert_close(z.mean(0), prior.means[2].detach(), atol=0.1, rtol=0)


def test_restarting_dead_components_moves_them_and_gives_them_weight():
    torch.manual_seed(0)
    prior = MixturePrior(3, 4)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([3.0, 3.0, -20.0, 3.0]))
    target = torch.tensor([[5.0, -5.0, 1.0]])
    prior.restart_components(torch.tensor([2]), target)
    weights = torch.softmax(prior.logits.detach(), -1)
    assert weights[2].item() == pytest.approx(0.25, abs=1e-6)
    assert weights[0].item() == pytest.approx(0.25, abs=1e-6)
    torch.testing.assert_close(prior.means[2].detach(), target[0])
    torch.testing.assert_close(prior.log_scales[2].detach(), prior.log_scales[[0, 1, 3]].detach().mean(0))


def test_splitting_gives_a_dead_component_half_of_the_most_used_one():
    torch.manual_seed(0)
    prior = MixturePrior(3, 4)
    with torch.no_grad():
        prior.logits.copy_(torch.log(torch.tensor([0.1, 0.6, 1e-9, 0.3])))
    before_mean, before_scale = prior.means[1].detach().clone(), prior.log_scales[1].detach().clone()
    parents = prior.split_components(torch.tensor([2]), torch.tensor([0.1, 0.6, 0.0, 0.3]))
    weights = torch.softmax(prior.logits.detach(), -1)
    assert parents == [1]
    torch.testing.assert_close(weights, torch.tensor([0.1, 0.3, 0.3, 0.3]), atol=1e-6, rtol=0)
    torch.testing.assert_close((prior.means[1] + prior.means[2]).detach() / 2, before_mean)
    assert not torch.equal(prior.means[1].detach(), prior.means[2].detach())
    torch.testing.assert_close(prior.log_scales[2].detach(), before_scale)


@pytest.mark.parametrize("split", [True, False])
def test_a_split_dead_component_recovers_its_usage_on_a_two_cluster_toy(split):
    torch.manual_seed(0)
    centre = torch.tensor([2.0, 0.0])
    z = torch.cat([torch.randn(500, 2) * 0.3 + centre, torch.randn(500, 2) * 0.3 - centre])
    prior = MixturePrior(2, 2)
    with torch.no_grad():  # component 1 is dead: far away and without weight; component 0 covers both clusters
        prior.means.copy_(torch.tensor([[0.0, 0.0], [50.0, 50.0]]))
        prior.log_scales.fill_(math.log(2.0))
        prior.logits.copy_(torch.tensor([0.0, -30.0]))
    usage = prior.responsibilities(z).mean(0)
    assert usage[1] < 1e-6
    if split:
        prior.split_components(torch.tensor([1]), usage, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(prior.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        (-prior.log_prob(z).mean()).backward()
        optimizer.step()
    usage = prior.responsibilities(z).mean(0).detach()
    if split:  # each half takes one cluster
        assert usage.min() > 0.4
    else:  # gradient descent alone never revives it
        assert usage[1] < 1e-3


# ----------------------------------------------------------------------------- KL estimator


def _kl_estimates(model: MoleculeVAE, tokens, lengths, n_samples: int, repeats: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([model.elbo_terms(tokens, lengths, n_samples)["kl"] for _ in range(repeats)])


def test_kl_estimator_equals_the_closed_form_for_one_component(tok):
    model = make_model(tok, n_components=1)
    with torch.no_grad():
        model.prior.log_scales.uniform_(-0.7, 0.3)
    tokens, lengths = make_batch(tok)
    mu, logvar = model.encode(tokens, lengths)
    p_mu, p_logvar = model.prior.means[0].detach(), 2 * model.prior.log_scales[0].detach()
    closed = 0.5 * (p_logvar - logvar + (logvar.exp() + (mu - p_mu) ** 2) / p_logvar.exp() - 1).sum(-1)
    torch.manual_seed(0)
    est = _kl_estimates(model, tokens, lengths, n_samples=16, repeats=200)  # [200, B]
    se = est.std(0) / math.sqrt(est.shape[0])
    assert torch.all((est.mean(0) - closed).abs() < 4 * se + 1e-3), (est.mean(0), closed, se)


def test_kl_estimator_is_unbiased_against_brute_force_for_a_mixture(tok):
    model = make_model(tok, n_components=4)
    with torch.no_grad():
        model.prior.logits.copy_(torch.tensor([0.5, -0.3, 0.0, 1.0]))
        model.prior.log_scales.uniform_(-0.7, 0.0)
    tokens, lengths = make_batch(tok)
    mu, logvar = model.encode(tokens, lengths)
    q = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    torch.manual_seed(1)
    z = q.sample((100_000,))  # naive single-sample estimator, many draws: log q(z) - log p(z)
    brute = (q.log_prob(z) - model.prior.log_prob(z)).detach()
    brute_mean, brute_se = brute.mean(0), brute.std(0) / math.sqrt(brute.shape[0])
    torch.manual_seed(2)
    est = _kl_estimates(model, tokens, lengths, n_samples=8, repeats=400)
    est_mean, est_se = est.mean(0), est.std(0) / math.sqrt(est.shape[0])
    tolerance = 4 * torch.sqrt(brute_se**2 + est_se**2) + 1e-3
    assert torch.all((est_mean - brute_mean).abs() < tolerance), (est_mean, brute_mean, tolerance)


def test_kl_estimator_has_lower_variance_than_naive_draws_for_narrow_posteriors(tok):
    model = make_model(tok, n_components=4)
    with torch.no_grad():  # posteriors much narrower than the prior, as after training
        model.encoder.head[-1].bias[SIZES["latent_dim"] :] -= 5.0
    tokens, lengths = make_batch(tok)
    mu, logvar = model.encode(tokens, lengths)
    q = torch.distributions.Independent(torch.distributions.Normal(mu, (0.5 * logvar).exp()), 1)
    torch.manual_seed(0)
    z = q.sample((8 * 300,))
    naive8 = (q.log_prob(z) - model.prior.log_prob(z)).detach().view(300, 8, -1).mean(1)
    est = _kl_estimates(model, tokens, lengths, n_samples=8, repeats=300)
    assert torch.all(est.var(0) < 0.2 * naive8.var(0)), (est.var(0), naive8.var(0))


def test_elbo_is_rec_minus_kl_and_the_loss_weights_kl_by_beta(tok):
    model = make_model(tok)
    tokens, lengths = make_batch(tok)
    torch.manual_seed(0)
    t = model.elbo_terms(tokens, lengths, beta=0.3)
    torch.testing.assert_close(t["elbo"], t["rec"] - t["kl"])
    torch.testing.assert_close(t["loss"], -(t["rec"].mean() - 0.3 * t["kl"].mean()))


def _kl_term_and_draws(model: MoleculeVAE, tokens, lengths, free_bits: float):
    """The KL term of the loss (beta = 1), its gradient w.r.t. the encoder outputs mu and logvar [B, D],
    and the draws z [S, B, D] it used (seed 0 every call, so every call sees the same draws)."""
    mu0, logvar0 = (t.detach() for t in MoleculeVAE.encode(model, tokens, lengths))
    mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
    model.encode = lambda *args: (mu, logvar)  # the encoder outputs as leaves whose gradient we read
    seen = []
    joint = MixturePrior.joint_log_prob.__get__(model.prior)
    model.prior.joint_log_prob = lambda z: (seen.append(z.detach().clone()), joint(z))[1]
    try:
        torch.manual_seed(0)
        terms = model.elbo_terms(tokens, lengths, beta=1.0, free_bits=free_bits)
    finally:
        del model.encode, model.prior.joint_log_prob
    kl_term = terms["loss"] + terms["rec"].mean()  # loss = -(mean rec - KL term)
    g_mu, g_logvar = torch.autograd.grad(kl_term, (mu, logvar))
    return kl_term.detach(), g_mu, g_logvar, seen[0], mu0, logvar0


def _hand_kl_per_dim(prior: MixturePrior, z: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Batch-mean KL of each dimension against the prior's 1-D marginal, from the same draws: [D]."""
    with torch.no_grad():
        w = torch.softmax(prior.logits.double(), -1)  # [K]
        m, s = prior.means.double(), prior.log_scales.double().exp()  # [K, D]
        dens = torch.exp(-0.5 * ((z.double().unsqueeze(-2) - m) / s) ** 2) / (s * math.sqrt(2 * math.pi))
        log_marginal = torch.log((w.unsqueeze(-1) * dens).sum(-2))  # [S, B, D]
        entropy = 0.5 * (1 + math.log(2 * math.pi) + logvar.double())  # [B, D]
        return (-entropy - log_marginal.mean(0)).mean(0)


@pytest.mark.parametrize("n_components", [1, 3])
def test_free_bits_stop_the_kl_gradient_of_dimensions_below_the_floor(tok, n_components):
    model = make_model(tok, n_components=n_components)
    tokens, lengths = make_batch(tok)
    plain, g_mu, g_logvar, z, _, logvar = _kl_term_and_draws(model, tokens, lengths, free_bits=0.0)
    kl_d = _hand_kl_per_dim(model.prior, z, logvar)  # K=1: [0.41 1.82 0.53 4.53 0.49 1.57]; K=3: [0.04 0.73 0.10 0.16 0.13 1.80]
    floor = float(kl_d.sort().values[2:4].mean())  # between the third and the fourth smallest
    below, above = kl_d < floor, kl_d > floor
    assert below.sum() == 3 and above.sum() == 3
    floored, f_mu, f_logvar, z_f, _, _ = _kl_term_and_draws(model, tokens, lengths, free_bits=floor)
    assert torch.equal(z_f, z)  # the same draws
    # the value: KL - sum_d KL_d + sum_d max(floor, KL_d), i.e. the plain KL plus each dimension's shortfall
    expected = plain.double() + (floor - kl_d[below]).sum()
    assert floored.item() == pytest.approx(expected.item(), abs=1e-5)
    # dimensions above the floor keep the plain KL gradient
    torch.testing.assert_close(f_mu[:, above], g_mu[:, above], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(f_logvar[:, above], g_logvar[:, above], rtol=1e-5, atol=1e-7)
    assert g_mu[:, below].abs().sum() > 0.1 and g_logvar[:, below].abs().sum() > 0.1  # plain KL did pull them
    if n_components == 1:  # the KL is a sum over dimensions: a dimension below the floor gets no KL gradient
        assert f_mu[:, below].abs().max() < 1e-6 and f_logvar[:, below].abs().max() < 1e-6
    else:  # a mixture KL is not a sum over dimensions: only that dimension's marginal KL is taken out
        assert (f_mu[:, below] - g_mu[:, below]).abs().sum() > 0.1


def test_marginal_log_prob_is_the_1d_mixture_marginal_of_each_dimension():
    torch.manual_seed(3)
    prior = MixturePrior(latent_dim=3, n_components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.3, -1.0, 2.0, 0.0]))
        prior.log_scales.copy_(torch.randn(4, 3) * 0.5)
    z = torch.randn(2, 5, 3) * 1.5
    got = prior.marginal_log_prob(z).detach()
    assert got.shape == (2, 5, 3)
    logits = prior.logits.tolist()
    pi = [math.exp(a) / sum(math.exp(b) for b in logits) for a in logits]
    means, scales = prior.means.tolist(), prior.log_scales.exp().tolist()
    for index in [(i, j) for i in range(2) for j in range(5)]:
        for d in range(3):
            x = float(z[index][d])
            mixture = sum(
                pi[k] * math.exp(-0.5 * ((x - means[k][d]) / scales[k][d]) ** 2) / (scales[k][d] * math.sqrt(2 * math.pi))
                for k in range(4)
            )
            assert float(got[index][d]) == pytest.approx(math.log(mixture), abs=1e-5), (index, d)
    # with one component it is that Gaussian's 1-D log density, and the dimensions sum to log p(z)
    single = MixturePrior(latent_dim=3, n_components=1)
    torch.testing.assert_close(single.marginal_log_prob(z).sum(-1), single.log_prob(z), rtol=0, atol=1e-5)


def _grads(model: MoleculeVAE, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_kl_target_below_the_target_frees_the_encoder_and_still_fits_the_prior(tok):
    model = make_model(tok)
    tokens, lengths = make_batch(tok)
    torch.manual_seed(0)
    plain = model.elbo_terms(tokens, lengths)
    g_plain = _grads(model, plain["loss"])
    torch.manual_seed(0)
    below = model.elbo_terms(tokens, lengths, kl_target=1e3)  # far above this batch's KL
    torch.testing.assert_close(below["loss"], plain["loss"])  # the value is the plain ELBO loss
    g_below = _grads(model, below["loss"])
    torch.manual_seed(0)
    rec_only = model.elbo_terms(tokens, lengths)
    g_rec = _grads(model, -rec_only["rec"].mean())
    for name in g_below:
        if name.startswith(("encoder.", "decoder.")):  # the KL's gradient reaches neither network
            torch.testing.assert_close(g_below[name], g_rec[name], msg=name)
    for name in ("prior.means", "prior.log_scales", "prior.logits"):  # the prior still gets the plain KL gradient
        torch.testing.assert_close(g_below[name], g_plain[name], msg=name)
        assert g_below[name].abs().sum() > 0, name
    enc = [n for n in g_plain if n.startswith("encoder.")]
    assert any(not torch.allclose(g_plain[n], g_rec[n]) for n in enc)  # the plain KL does pull the encoder
    torch.manual_seed(0)
    above = model.elbo_terms(tokens, lengths, kl_target=1e-3)  # below this batch's KL: the plain objective
    g_above = _grads(model, above["loss"])
    for name in g_plain:
        torch.testing.assert_close(g_above[name], g_plain[name], msg=name)


# ----------------------------------------------------------------------------- diagnostics


def test_diagnostics_count_active_units_usage_and_dead_components():
    n, d, k = 400, 5, 4
    g = torch.Generator().manual_seed(0)
    mu = torch.zeros(n, d)
    mu[:, :2] = torch.randn(n, 2, generator=g)  # two dimensions carry information
    resp = torch.zeros(n, k)
    resp[torch.arange(n), torch.arange(n) % 3] = 1.0  # components 0-2 used equally, 3 never
    stats = {"mu": mu, "logvar": torch.full((n, d), -2.0), "z": mu.clone(), "resp": resp,
             "kl": torch.ones(n), "kl_dim": torch.ones(n, d) / d, "rec": -torch.ones(n), "elbo": -2 * torch.ones(n)}  # fmt: skip
    diag = summarize(stats, torch.zeros(k))
    assert diag["active_units"] == 2
    assert diag["n_eff"] == pytest.approx(3.0, rel=1e-4)
    assert diag["dead_components"] == [3] and diag["n_dead"] == 1
    assert diag["mi_x_k"] == pytest.approx(math.log(3), rel=1e-4)  # each molecule is sure of its component
    assert diag["mixture_usage"][3] == 0.0


def _usage_stats(resp: torch.Tensor) -> dict[str, torch.Tensor]:
    n, d = resp.shape[0], 2
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(n, d, generator=g)
    return {"mu": mu, "logvar": torch.zeros(n, d), "z": mu.clone(), "resp": resp, "kl": torch.ones(n),
            "kl_dim": torch.ones(n, d) / d, "rec": -torch.ones(n), "elbo": -2 * torch.ones(n)}  # fmt: skip


N_EFF_CASES = {  # responsibilities of 400 molecules over 4 components -> (N_eff, I(x;k), dead components)
    "hard-uniform": (4.0, math.log(4), []),
    "soft-uniform": (4.0, 0.0, []),
    "one-hot": (1.0, 0.0, [1, 2, 3]),
    "halves-and-quarters": (2**1.5, 1.5 * math.log(2), [3]),
}


@pytest.mark.parametrize("name", list(N_EFF_CASES))
def test_n_eff_is_the_exponential_of_the_usage_entropy(name):
    n_eff, mi_x_k, dead = N_EFF_CASES[name]
    n, k = 400, 4
    resp = torch.zeros(n, k)
    if name == "hard-uniform":  # each molecule sure of its component, the components used equally
        resp[torch.arange(n), torch.arange(n) % k] = 1.0
    elif name == "soft-uniform":  # every molecule spread evenly: the same usage, no information about k
        resp[:] = 1.0 / k
    elif name == "one-hot":  # every molecule in component 0
        resp[:, 0] = 1.0
    else:  # usage (1/2, 1/4, 1/4, 0), each molecule sure: N_eff = exp(1.5 log 2)
        resp[torch.arange(n), torch.tensor([0, 0, 1, 2]).repeat(n // 4)] = 1.0
    diag = summarize(_usage_stats(resp), torch.zeros(k))
    assert diag["n_eff"] == pytest.approx(n_eff, rel=1e-5)
    assert diag["mi_x_k"] == pytest.approx(mi_x_k, abs=1e-5)
    assert diag["dead_components"] == dead


def test_mutual_information_is_log_n_for_separated_posteriors_and_zero_for_identical_ones():
    n, d = 200, 4
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(n, d, generator=g) * 100
    logvar = torch.full((n, d), -4.0)
    z = mu + torch.randn(n, d, generator=g) * math.exp(-2)
    assert aggregate_mutual_information(mu, logvar, z) == pytest.approx(math.log(n), abs=1e-3)
    same = torch.zeros(n, d)
    assert aggregate_mutual_information(same, torch.zeros(n, d), torch.randn(n, d, generator=g)) == pytest.approx(0.0, abs=1e-6)


def test_collapse_diagnostics_run_on_a_plain_model_and_tensors(tok):
    model = make_model(tok).train()
    batch = make_batch(tok)
    diag = collapse_diagnostics(model, batch)
    again = collapse_diagnostics(model, [batch])
    assert collapse_diagnostics(model, batch, batch_size=3)["n_molecules"] == len(SMALL_SMILES)
    assert model.training  # mode restored
    assert diag["n_molecules"] == len(SMALL_SMILES) and len(diag["kl_per_dim"]) == SIZES["latent_dim"]
    assert len(diag["mixture_usage"]) == SIZES["n_components"]
    usage = posterior_statistics(model, batch)["resp"].mean(0)  # the same seed: the same draws
    assert diag["mixture_usage"] == pytest.approx(usage.tolist(), abs=1e-5)
    assert diag["n_eff"] == pytest.approx(math.exp(-sum(u * math.log(u) for u in usage.tolist())), rel=1e-5)
    assert diag["kl"] == pytest.approx(again["kl"], rel=1e-4)  # same seed, same draws
    assert collapse_diagnostics(make_model(tok, kind="lm"), batch) == {"kind": "lm"}


# ----------------------------------------------------------------------------- model files


def test_saved_model_loads_with_identical_outputs(tok, tmp_path):
    model = make_model(tok)
    save_model(tmp_path / "model.pt", model, tok, extra={"note": "x"})
    loaded, tok2 = load_model(tmp_path / "model.pt")
    assert tok2 == tok and not loaded.training
    raw = torch.load(tmp_path / "model.pt", weights_only=True)
    assert raw["format"] == "molgen-model" and raw["version"] == 1 and raw["extra"] == {"note": "x"}
    tokens, lengths = make_batch(tok)
    torch.testing.assert_close(loaded.encode(tokens, lengths)[0], model.encode(tokens, lengths)[0])


def test_a_half_model_file_stores_float16_and_loads_as_the_rounded_float32_model(tok, tmp_path):
    model = make_model(tok)
    save_model(tmp_path / "full.pt", model, tok)
    save_model(tmp_path / "half.pt", model, tok, half=True)
    raw = torch.load(tmp_path / "half.pt", weights_only=True)["state_dict"]
    assert {v.dtype for v in raw.values() if v.is_floating_point()} == {torch.float16}
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    loaded, _ = load_model(tmp_path / "half.pt")
    rounded = make_model(tok)
    rounded.load_state_dict(model.state_dict())
    round_weights_(rounded)
    for (name, got), want in zip(loaded.state_dict().items(), rounded.state_dict().values()):
        assert got.dtype == want.dtype and torch.equal(got, want), name  # float32 holding the float16 values
    assert any(not torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    tokens, lengths = make_batch(tok)
    torch.testing.assert_close(loaded.encode(tokens, lengths)[0], model.encode(tokens, lengths)[0], rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("case", ["missing", "empty", "text", "truncated", "pickled_code", "other_dict", "new_version"])
def test_bad_model_files_are_user_errors(tok, tmp_path, case):
    path = tmp_path / "model.pt"
    if case != "missing":
        save_model(path, make_model(tok), tok)
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("SMILES\nCCO\n")
    elif case == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif case == "pickled_code":
        torch.save({"format": "molgen-model", "object": torch.nn.Linear(2, 2)}, path)
    elif case == "other_dict":
        torch.save({"weights": torch.zeros(3)}, path)
    elif case == "new_version":
        raw = torch.load(path, weights_only=True)
        torch.save({**raw, "version": 99}, path)
    with pytest.raises(MolgenError):
        load_model(path)


@pytest.mark.parametrize("layers", [1, 2])
def test_encoder_final_states_equal_packed_gru_with_gradients(layers):
    from torch.nn.utils.rnn import pack_padded_sequence

    from molgen.nn.encoder import final_states

    torch.manual_seed(0)
    gru = torch.nn.GRU(6, 5, num_layers=layers, batch_first=True, bidirectional=True)
    lengths = torch.tensor([7, 3, 1, 5])
    x = torch.randn(4, 7, 6, requires_grad=True)
    got = final_states(gru, x, lengths)
    _, h_n = gru(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    expected = torch.cat([h_n[-2], h_n[-1]], dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    grad_got = torch.autograd.grad(got.square().sum(), [x, *gru.parameters()])
    grad_expected = torch.autograd.grad(expected.square().sum(), [x, *gru.parameters()])
    for a, b in zip(grad_got, grad_expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    assert grad_got[0][1, 3:].abs().max() == 0  # padding gets no gradient


def test_trim_cuts_to_the_longest_length_on_the_cpu_and_waits_for_no_accelerator():
    from molgen.model.vae import trim

    tokens, lengths = torch.ones(2, 9, dtype=torch.long), torch.tensor([3, 5])
    assert trim(tokens, lengths).shape == (2, 5)
    on_device = lengths.to("meta")  # reading a device tensor's max would synchronise: the padding is kept
    assert trim(tokens.to("meta"), on_device).shape == (2, 9)
