"""Generation with the model: z ~ p(z), then every token drawn from Categorical(softmax(logits / T)).

The token-drawing loop beside the decoder (``DecoderStepper`` in molgen/nn/decoder.py), readable top to
bottom. Greedy (argmax) decoding exists only as the explicitly named ``mode="greedy"``; it is never
what "samples" means. The GRU state is the cache; a batch stops as soon as every row has ended.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from molgen.device import autocast, resolve_precision
from molgen.errors import MolgenError
from molgen.model.vae import MoleculeVAE

MODES = ("sample", "greedy")


@dataclass
class Draws:
    """Token ids drawn for a batch: ``tokens[i, :lengths[i]]`` (``<eos>`` included when drawn)."""

    tokens: torch.Tensor  # [B, L] long
    lengths: torch.Tensor  # [B] long
    nll: torch.Tensor  # [B] float64, -log p(x|z) of the drawn tokens under the model (T = 1)

    def rows(self) -> list[list[int]]:
        """The token ids of each molecule, cut at its length."""
        return [r[:n] for r, n in zip(self.tokens.tolist(), self.lengths.tolist())]


@dataclass
class Batch:
    """One batch of ``iter_batches``: the draws, each row's mixture component and the seed it was drawn around."""

    draws: Draws
    component: np.ndarray  # [B] int: the prior component z was drawn from (-1 for an LM)
    origin: np.ndarray | None  # [B] int: index of the seed molecule z was drawn around; None for prior draws


#: (batch size, CPU generator) -> (z [B, D] or None, component [B], origin [B] or None)
LatentSource = Callable[[int, torch.Generator], tuple["torch.Tensor | None", torch.Tensor, "torch.Tensor | None"]]


@torch.inference_mode()
def draw_tokens(
    model: MoleculeVAE,
    z: torch.Tensor | None,
    batch_size: int,
    temperature: float = 1.0,
    mode: str = "sample",
    generator: torch.Generator | None = None,
    max_len: int | None = None,
    precision: str = "32-true",
) -> Draws:
    """Decode ``batch_size`` sequences autoregressively from latents ``z`` [B, D] (None for an LM).

    Each token is drawn from softmax(logits / T) with ``<pad>`` and ``<bos>`` masked out
    (``mode="sample"``) or taken as the argmax (``mode="greedy"``); ``nll`` is -log p(x|z) of
    the drawn tokens under the untempered model, as teacher forcing would compute it. The network
    runs on the model's device; the logits come back to the CPU, where every draw is made with the
    CPU ``generator``, so a seed gives the same stream on any device. ``Draws`` are CPU tensors.
    """
    if mode not in MODES:
        raise MolgenError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "sample" and not temperature > 0:
        raise MolgenError(f"temperature must be > 0, not {temperature}")
    max_len = max_len or model.max_len
    precision = resolve_precision(precision)
    device = model.decoder.out.weight.device
    z = z.to(device) if z is not None else None
    h = model.decoder_init(z, batch_size).float()  # state of the active rows
    step = model.decoder_stepper(z)
    logits = torch.zeros(batch_size, model.decoder.out.out_features)
    prev = torch.full((batch_size,), model.bos_id, dtype=torch.long)
    tokens = torch.full((batch_size, max_len), model.pad_id, dtype=torch.long)
    lengths = torch.full((batch_size,), max_len, dtype=torch.long)
    nll = torch.zeros(batch_size, dtype=torch.float64)
    alive = torch.ones(batch_size, dtype=torch.bool)
    banned = torch.tensor([model.pad_id, model.bos_id])
    rows = torch.arange(batch_size)
    active = torch.arange(batch_size)  # the rows the network runs on: the unfinished ones
    for t in range(max_len):
        with autocast(precision, device.type):
            out, h = step(prev[active].to(device), h)
        logits[active] = out.cpu()
        # the draw covers every row, finished or not, so the generator's stream (and each row's
        # tokens) does not depend on when other rows end
        logp = torch.log_softmax(logits, dim=-1)
        allowed = logits.index_fill(1, banned, float("-inf"))
        if mode == "greedy":
            nxt = allowed.argmax(-1)
        else:
            probs = torch.softmax(allowed / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, model.pad_id))
        tokens[:, t] = nxt
        nll -= torch.where(alive, logp[rows, nxt], torch.zeros_like(logp[:, 0])).double()
        ended = alive & (nxt == model.eos_id)
        lengths[ended] = t + 1
        alive &= ~ended
        prev = nxt
        if not alive.any():
            break
        keep = alive[active]
        if not bool(keep.all()):  # drop the rows that just ended from the network's batch
            keep = keep.nonzero().squeeze(1)
            active, keep = active[keep], keep.to(device)
            h = h[:, keep]
            step.select(keep)
    return Draws(tokens[:, : int(lengths.max())], lengths, nll)


def prior_source(model: MoleculeVAE, component: int | None = None) -> LatentSource:
    """Latents from p(z) (or from mixture component ``component``); no latent for an LM."""
    if model.kind != "vae":
        if component is not None:
            raise MolgenError("a language model (kind='lm') has no mixture components")
        return lambda size, generator: (None, torch.full((size,), -1, dtype=torch.long), None)
    if component is not None and not 0 <= component < model.prior.n_components:
        raise MolgenError(f"--component must be in 0..{model.prior.n_components - 1}, not {component}")

    def draw(size: int, generator: torch.Generator):
        z, k = model.prior.sample(size, component=component, generator=generator)
        return z, k, None

    return draw


@torch.inference_mode()
def posterior_source(
    model: MoleculeVAE, tokens: torch.Tensor, lengths: torch.Tensor, sigma: float = 1.0, wanted: np.ndarray | None = None
) -> LatentSource:
    """Latents around seed molecules: z = mu(x) + sigma * std(x) * eps, q(z|x) itself for sigma = 1.

    Rows go to the seeds in turn, so each seed gets an equal share of every batch; ``origin`` says
    which seed a row was drawn around. ``wanted`` (rows still wanted per seed, counted down by the
    consumer) limits the turns to the seeds that still want rows: with filters, the draws then go
    where they are needed instead of to every seed until the last is done.
    """
    if model.kind != "vae":
        raise MolgenError("a language model (kind='lm') has no latent space to sample around a molecule")
    if not sigma >= 0:
        raise MolgenError(f"sigma must be >= 0, not {sigma}")
    device = model.decoder.out.weight.device
    mu, logvar = model.encode(tokens.to(device), lengths.to(device))
    mu, std = mu.float().cpu(), (0.5 * logvar.float()).exp().cpu()
    state = {"next": 0}

    def draw(size: int, generator: torch.Generator):
        open_ = np.flatnonzero(wanted > 0) if wanted is not None else np.empty(0, dtype=np.int64)
        if len(open_) == 0 or len(open_) == len(mu):  # every seed in turn
            origin = (state["next"] + torch.arange(size)) % len(mu)
        else:  # the seeds that still want rows in turn, from where the last batch stopped
            start = int(np.searchsorted(open_, state["next"] % len(mu)))
            origin = torch.from_numpy(open_[(start + np.arange(size)) % len(open_)])
        state["next"] = int(origin[-1]) + 1
        z = mu[origin] + sigma * std[origin] * torch.randn(size, mu.shape[1], generator=generator)
        return z, model.prior.responsibilities(z).argmax(1), origin

    return draw


def iter_batches(
    model: MoleculeVAE,
    n: int,
    batch_size: int = 1024,
    temperature: float = 1.0,
    mode: str = "sample",
    seed: int = 0,
    precision: str = "32-true",
    latents: LatentSource | None = None,
) -> Iterator[Batch]:
    """Yield batches of draws until ``n`` molecules were drawn (latents from ``latents``, default p(z))."""
    if batch_size <= 0:
        raise MolgenError(f"batch size must be positive, not {batch_size}")
    latents = latents or prior_source(model)
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        z, k, origin = latents(size, generator)
        draws = draw_tokens(model, z, size, temperature, mode, generator, precision=precision)
        yield Batch(draws, k.cpu().numpy(), None if origin is None else origin.numpy())
        done += size
