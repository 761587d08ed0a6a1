"""Posterior-collapse and mixture-collapse diagnostics (docs/DESIGN.md §6) for a MoleculeVAE.

Works on a plain model and token tensors (no Lightning needed): pass either ``(tokens, lengths)``
tensors or an iterable of such batches. All figures are in nats.
"""
from __future__ import annotations

import math
from typing import Iterable, Iterator

import torch

from molgen.nn.prior import LOG_2PI
from molgen.model.vae import MoleculeVAE, draw_posterior, kl_estimate

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]] | tuple[torch.Tensor, torch.Tensor]


def iter_batches(data: Batches, batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (tokens, lengths) batches from a (tokens, lengths) pair of tensors or an iterable of batches."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        tokens, lengths = data
        if tokens.dim() == 2 and lengths.dim() == 1:
            for start in range(0, len(lengths), batch_size):
                yield tokens[start : start + batch_size], lengths[start : start + batch_size]
            return
    for batch in data:
        yield batch[0], batch[1]


@torch.no_grad()
def posterior_statistics(
    model: MoleculeVAE, data: Batches, n_samples: int = 8, batch_size: int = 256, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Per-molecule tensors: mu, logvar [N, D]; rec, kl, elbo [N]; kl_dim [N, D]; resp [N, K]; z [N, D] (one draw)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("mu", "logvar", "rec", "kl", "kl_dim", "resp", "z")}
    try:
        for tokens, lengths in iter_batches(data, batch_size):
            tokens, lengths = tokens.to(device), lengths.to(device)
            mu, logvar = model.encode(tokens, lengths)
            draws = draw_posterior(model.prior, mu, logvar, n_samples, generator)
            z = draws.z  # [S, B, D]
            out["mu"].append(mu.float().cpu())
            out["logvar"].append(logvar.float().cpu())
            out["z"].append(z[0].float().cpu())
            out["kl"].append(draws.kl.cpu())
            out["kl_dim"].append(kl_estimate(draws.entropy, model.prior.marginal_log_prob(z)).cpu())
            out["resp"].append(torch.softmax(draws.joint, dim=-1).mean(0).cpu())
            out["rec"].append(model.log_px_z(tokens, lengths, z[0]).float().cpu())
    finally:
        model.train(was_training)
    stats = {k: torch.cat(v) for k, v in out.items()}
    stats["elbo"] = stats["rec"] - stats["kl"]
    return stats


def aggregate_mutual_information(mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, chunk: int = 64) -> float:
    """I(x; z) under q: mean_i [log q(z_i|x_i) - log (1/N) sum_n q(z_i|x_n)], z_i ~ q(z|x_i). At most log N."""
    n = mu.shape[0]
    mu, logvar, z = mu.double(), logvar.double(), z.double()
    inv_var = torch.exp(-logvar)
    log_norm = -0.5 * (LOG_2PI + logvar).sum(-1)  # [N]
    log_q_own = log_norm - 0.5 * (((z - mu) ** 2) * inv_var).sum(-1)
    log_q_agg = []
    for start in range(0, n, chunk):
        zc = z[start : start + chunk].unsqueeze(1)  # [c, 1, D]
        lq = log_norm - 0.5 * (((zc - mu) ** 2) * inv_var).sum(-1)  # [c, N]
        log_q_agg.append(torch.logsumexp(lq, dim=1) - math.log(n))
    return float((log_q_own - torch.cat(log_q_agg)).mean())


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1)


def summarize(stats: dict[str, torch.Tensor], prior_logits: torch.Tensor, active_threshold: float = 0.01) -> dict:
    """Plain-type collapse diagnostics from :func:`posterior_statistics` output."""
    n, k = stats["resp"].shape
    usage = stats["resp"].mean(0)
    h_usage = _entropy(usage)
    variance = stats["mu"].var(0, unbiased=True) if n > 1 else torch.zeros(stats["mu"].shape[1])
    dead = torch.nonzero(usage < 0.1 / k).flatten()
    return {
        "n_molecules": int(n),
        "elbo": float(stats["elbo"].mean()),
        "rec": float(stats["rec"].mean()),
        "kl": float(stats["kl"].mean()),
        "kl_per_dim": [round(float(x), 5) for x in stats["kl_dim"].mean(0)],
        "active_units": int((variance > active_threshold).sum()),
        "latent_dim": int(stats["mu"].shape[1]),
        "mutual_info": aggregate_mutual_information(stats["mu"], stats["logvar"], stats["z"]),
        "mixture_usage": [round(float(x), 5) for x in usage],
        "mixture_weights": [round(float(x), 5) for x in torch.softmax(prior_logits.float().cpu(), -1)],
        "n_components": int(k),
        "n_eff": float(torch.exp(h_usage)),
        "dead_components": [int(i) for i in dead],
        "n_dead": int(dead.numel()),
        "mi_x_k": float(h_usage - _entropy(stats["resp"]).mean()),
    }


def collapse_diagnostics(
    model: MoleculeVAE,
    data: Batches,
    n_samples: int = 8,
    batch_size: int = 256,
    seed: int = 0,
    active_threshold: float = 0.01,
) -> dict:
    """Collapse diagnostics over the molecules in ``data`` (use >= 1,000 for stable figures).

    Returns plain types (JSON-ready): mean ELBO / rec / KL per molecule (nats, z drawn from q);
    ``kl_per_dim``: KL of each dimension's posterior against the prior's 1-D marginal;
    ``active_units``: dimensions with Var_x(E_q[z_d|x]) > ``active_threshold``; ``mutual_info``:
    I(x; z) under the aggregate posterior of these molecules (bounded by log N);
    ``mixture_usage`` u_k = mean_x E_q[p(k|z)]; ``n_eff`` = exp H(u); ``dead_components``:
    k with u_k < 0.1 / K; ``mi_x_k`` = H(u) - mean_x H(r(x)). For kind='lm' only the size is returned.
    """
    if model.kind != "vae":
        return {"kind": model.kind}
    stats = posterior_statistics(model, data, n_samples=n_samples, batch_size=batch_size, seed=seed)
    return summarize(stats, model.prior.logits.detach(), active_threshold)
