"""Held-out likelihood: ELBO (beta = 1) and the importance-weighted (IWAE) bound on log p(x).

log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x), z_k ~ q(z|x). K = 1 is the ELBO and the
bound tightens as K grows. The K draws are nested (the first 10 of the 100, ...), so the curve
over K is read off one set of draws, accumulated in float64. For a language model (kind="lm")
log p(x) is exact and every K gives the same value.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from molgen.errors import MolgenError
from molgen.model.vae import MoleculeVAE, draw_posterior, kl_estimate
from molgen.padding import pad_molecules
from molgen.progress import track
from molgen.token_cache import TokenizedSet

LN2 = math.log(2.0)


@torch.inference_mode()
def log_weights(
    model: MoleculeVAE,
    tokens: torch.Tensor,
    lengths: torch.Tensor,
    k: int,
    chunk: int = 100,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """Importance log-weights log p(x|z_k) + log p(z_k) - log q(z_k|x): [K, B] float64, with parts.

    Returns ``log_w`` [K, B], ``rec`` [K, B] (log p(x|z_k)) and ``kl`` [B] (the low-variance
    estimate -H[q] - mean_k log p(z_k), nats), on the model's device; the noise is drawn with the
    CPU ``generator`` whatever the device, so a seed gives the same draws everywhere.
    """
    if model.kind == "lm":
        exact = model.log_px_z(tokens, lengths, None).double()
        return {"log_w": exact.expand(k, -1), "rec": exact.expand(k, -1), "kl": torch.zeros_like(exact)}
    mu, logvar = model.encode(tokens, lengths)
    mu, logvar = mu.float(), logvar.float()
    log_w, rec, log_pz = [], [], []
    for start in range(0, k, chunk):
        draws = draw_posterior(model.prior, mu, logvar, min(chunk, k - start), generator)
        lp_z = draws.log_pz
        lp_x = model.log_px_z(tokens, lengths, draws.z)
        rec.append(lp_x.double())
        log_pz.append(lp_z.double())
        log_w.append(lp_x.double() + lp_z.double() - draws.log_q().double())
    entropy = draws.entropy.sum(-1).double()
    return {"log_w": torch.cat(log_w), "rec": torch.cat(rec), "kl": kl_estimate(entropy, torch.cat(log_pz))}


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


def likelihood_report(
    model: MoleculeVAE,
    data: TokenizedSet,
    n: int = 2000,
    k: int = 1000,
    ks: Sequence[int] = (1, 10, 100, 1000),
    seed: int = 0,
    batch_size: int = 50,
    chunk: int = 100,
    progress: bool = True,
) -> dict:
    """ELBO and IWAE-K on a seeded subset of ``n`` molecules (nats/molecule and bits/token, mean ± s.e.)."""
    if n <= 0 or k <= 0:
        raise MolgenError(f"--n and --k must be positive (got n={n}, k={k})")
    model.eval()
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(data), size=min(n, len(data)), replace=False))
    generator = torch.Generator().manual_seed(seed)
    ks = sorted({x for x in ks if x <= k} | {k})
    iwae = {x: [] for x in ks}
    elbo, rec, kl = [], [], []
    device = next(model.parameters()).device
    starts = range(0, len(index), batch_size)
    for start in track(starts, len(starts), f"likelihood (IWAE-{k})", unit="batches", enabled=progress, quiet_below=0):
        batch = pad_molecules(data, index[start : start + batch_size], model.pad_id)
        tokens, lengths = (t.to(device) for t in batch)
        parts = {name: value.cpu() for name, value in log_weights(model, tokens, lengths, k, chunk, generator).items()}
        log_w = parts["log_w"]
        for x in ks:
            iwae[x].append((torch.logsumexp(log_w[:x], 0) - math.log(x)).numpy())
        r = parts["rec"].mean(0)
        rec.append(r.numpy())
        kl.append(parts["kl"].numpy())
        elbo.append((r - parts["kl"]).numpy())
    n_tokens = data.lengths[index].astype(np.float64)
    total_tokens = float(n_tokens.sum())

    def summary(values: list[np.ndarray]) -> dict:
        nll = -np.concatenate(values)
        mean, se = _mean_se(nll)
        scale = len(nll) / total_tokens / LN2
        return {"nats_per_molecule": mean, "se": se, "bits_per_token": mean * scale, "bits_per_token_se": se * scale}

    return {
        "n_molecules": int(len(index)),
        "tokens_per_molecule": float(n_tokens.mean()),
        "k": int(k),
        "seed": seed,
        "elbo_nll": summary(elbo),
        "reconstruction_nll": -float(np.concatenate(rec).mean()),
        "kl": float(np.concatenate(kl).mean()),
        "iwae_nll": summary(iwae[k]),
        "iwae_curve": {str(x): summary(iwae[x]) for x in ks},
        # each molecule's -IWAE-K, for paired comparisons of two models on the same subset
        "per_molecule": {
            "smiles": [data.smiles[i] for i in index] if data.smiles is not None else None,
            "iwae_nll": [float(v) for v in -np.concatenate(iwae[k])],
        },
    }
