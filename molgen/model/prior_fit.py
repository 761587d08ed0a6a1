"""Refit the mixture prior to the aggregate posterior of a trained encoder (EM, diagonal Gaussians).

For a fixed encoder q(z|x) the average ELBO depends on the prior only through the cross-entropy
E_x E_q[log p(z)], so the best prior is the maximum-likelihood fit of the aggregate posterior
q(z) = E_x q(z|x). EM on draws z_i ~ q(z|x_i) of training molecules finds that fit within the
K-component diagonal family: samples are drawn where encodings actually are, and components that
the gradient run left dead are redistributed over the encodings (EM from a k-means++ start on the
encodings has no rich-get-richer dynamics). EM finds a local optimum only, and a fit to training
draws is not a held-out gain, so ``refit_prior`` also keeps the trained prior and EM from it as
candidates and chooses by held-out draws.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from molgen.errors import MolgenError
from molgen.nn.prior import LOG_2PI
from molgen.model.vae import MoleculeVAE, reparameterise
from molgen.padding import pad_molecules
from molgen.token_cache import TokenizedSet


def _log_joint(z: torch.Tensor, log_w: torch.Tensor, means: torch.Tensor, log_s: torch.Tensor) -> torch.Tensor:
    """log pi_k + log N(z_i; mu_k, s_k^2): [N, K] (float64)."""
    inv = torch.exp(-2 * log_s)  # [K, D]
    quad = (z**2) @ inv.T - 2 * z @ (means * inv).T + (means**2 * inv).sum(-1)  # [N, K]
    return log_w - 0.5 * quad - log_s.sum(-1) - 0.5 * z.shape[1] * LOG_2PI


def fit_diagonal_gmm(
    z: torch.Tensor, k: int, iters: int = 200, tol: float = 1e-7, seed: int = 0, min_scale: float = 1e-2,
    init: dict[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor | float]:
    """EM for a K-component diagonal Gaussian mixture on z [N, D]: from ``init`` (``log_weights``,
    ``means``, ``log_scales``) when given, else from a k-means++ initialisation.

    Returns float64 ``log_weights`` [K], ``means`` [K, D], ``log_scales`` [K, D], the final mean
    log-likelihood per point (nats) and the number of iterations run.
    """
    z = z.double()
    n, d = z.shape
    if init is not None:
        log_w = torch.log_softmax(init["log_weights"].double(), -1)
        means = init["means"].double().clone()
        log_s = init["log_scales"].double().clamp_min(math.log(min_scale))
    else:
        gen = torch.Generator().manual_seed(seed)
        centres = [z[torch.randint(n, (1,), generator=gen)].squeeze(0)]
        dist = ((z - centres[0]) ** 2).sum(-1)
        for _ in range(1, k):
            idx = torch.multinomial(dist / dist.sum(), 1, generator=gen)
            centres.append(z[idx].squeeze(0))
            dist = torch.minimum(dist, ((z - centres[-1]) ** 2).sum(-1))
        means = torch.stack(centres)
        log_s = torch.full((k, d), 0.5 * math.log(float(z.var(0).mean())), dtype=torch.float64)
        log_w = torch.full((k,), -math.log(k), dtype=torch.float64)
    previous = -math.inf
    for step in range(1, iters + 1):
        joint = _log_joint(z, log_w, means, log_s)
        norm = torch.logsumexp(joint, dim=1, keepdim=True)
        loglik = float(norm.mean())
        resp = torch.exp(joint - norm)  # [N, K]
        mass = resp.sum(0).clamp_min(1e-10)  # [K]
        means = (resp.T @ z) / mass[:, None]
        var = (resp.T @ (z**2)) / mass[:, None] - means**2
        log_s = 0.5 * torch.log(var.clamp_min(min_scale**2))
        log_w = torch.log(mass / n)
        if loglik - previous < tol * abs(loglik):
            break
        previous = loglik
    return {"log_weights": log_w, "means": means, "log_scales": log_s, "loglik": loglik, "iterations": step}


def _draw_index(size: int, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(size, size=min(n, size), replace=False)


@torch.no_grad()
def aggregate_posterior_draws(
    model: MoleculeVAE, data: TokenizedSet, n: int = 50000, seed: int = 0, batch_size: int = 512,
    index: np.ndarray | None = None,
) -> torch.Tensor:
    """One draw z_i ~ q(z|x_i) for each of ``n`` seeded random molecules of ``data`` (or of the
    molecules ``index`` names): [n, D]."""
    model.eval()
    index = _draw_index(len(data), n, seed) if index is None else index
    gen = torch.Generator().manual_seed(seed)
    draws = []
    for start in range(0, len(index), batch_size):
        tokens, lengths = pad_molecules(data, index[start : start + batch_size], model.pad_id)
        mu, logvar = model.encode(tokens, lengths)
        draws.append(reparameterise(mu.float(), logvar.float(), 1, gen)[0][0])
    return torch.cat(draws)


def _mean_log_prob(z: torch.Tensor, fit: dict[str, torch.Tensor]) -> float:
    joint = _log_joint(z.double(), torch.log_softmax(fit["log_weights"].double(), -1), fit["means"].double(),
                       fit["log_scales"].double())  # fmt: skip
    return float(torch.logsumexp(joint, dim=1).mean())


@torch.no_grad()
def refit_prior(
    model: MoleculeVAE, data: TokenizedSet, n: int = 50000, seed: int = 0, iters: int = 200, held_out: int = 0
) -> dict:
    """Refit ``model.prior`` (weights, means, scales) to the aggregate posterior by EM.

    Two EM runs on one draw z ~ q(z|x) of each of ``n`` molecules: one from the trained prior (EM
    can only raise its likelihood there) and one from k-means++ (which revives components the
    gradient run left dead). The prior kept is the one of {trained, EM from it, EM from k-means++}
    whose mean log p(z) is highest on the draws of ``held_out`` other molecules of ``data`` (on the
    fitted draws when ``held_out`` is 0: for a set tiled with several draws per molecule, where a
    split of draws would not hold molecules out)."""
    if held_out < 0:
        raise MolgenError(f"held_out must be >= 0 molecules, got {held_out}")
    prior = model.prior
    index = _draw_index(len(data), n, seed)  # the fitted molecules do not depend on held_out
    z = aggregate_posterior_draws(model, data, seed=seed, index=index)
    rest = np.setdiff1d(np.arange(len(data)), index)
    held_out = min(held_out, len(rest))
    z_val = z
    if held_out:
        held = rest[_draw_index(len(rest), held_out, seed + 1)]
        z_val = aggregate_posterior_draws(model, data, seed=seed + 1, index=held)
    trained = {"log_weights": prior.logits.detach().double(), "means": prior.means.detach().double(),
               "log_scales": prior.log_scales.detach().double()}  # fmt: skip
    fits = {
        "trained": trained,
        "em_from_trained": fit_diagonal_gmm(z, prior.n_components, iters=iters, seed=seed, init=trained),
        "em_from_kmeans++": fit_diagonal_gmm(z, prior.n_components, iters=iters, seed=seed),
    }
    scores = {name: _mean_log_prob(z_val, fit) for name, fit in fits.items()}
    chosen = max(scores, key=scores.get)
    before = float(prior.log_prob(z).double().mean())
    fit = fits[chosen]
    prior.logits.copy_(torch.log_softmax(fit["log_weights"].double(), -1).to(prior.logits))
    prior.means.copy_(fit["means"].to(prior.means))
    prior.log_scales.copy_(fit["log_scales"].to(prior.log_scales))
    after = float(prior.log_prob(z).double().mean())
    iterations = {name: int(f["iterations"]) for name, f in fits.items() if "iterations" in f}
    return {"n": int(z.shape[0]), "held_out": int(held_out), "iterations": iterations, "log_pz_before": before,
            "log_pz_after": after, "selection_log_pz": scores, "chosen": chosen}  # fmt: skip
