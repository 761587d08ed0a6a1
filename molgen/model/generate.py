"""Generation with the model: z ~ p(z), then every token drawn from Categorical(softmax(logits / T)).

The token-drawing loop beside the decoder (``DecoderStepper`` in molgen/nn/decoder.py), readable top to
bottom. Greedy (argmax) decoding exists only as the explicitly named ``mode="greedy"``; it is never
what "samples" means. The GRU state is the cache; a batch stops as soon as every row has ended.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from molgen.errors import MolgenError, check_molecule_count
from molgen.model.vae import MoleculeVAE

if TYPE_CHECKING:  # only its ids_to_selfies is called
    from molgen.tokenizer import SelfiesTokenizer

MODES = ("sample", "greedy")
#: the sampler's ``--precision`` values, Lightning's names as in `molgen train`
PRECISIONS = ("32-true", "bf16-mixed")
#: the short names the sampler took before, still accepted
PRECISION_ALIASES = {"32": "32-true", "fp32": "32-true", "bf16": "bf16-mixed"}


@dataclass
class Draws:
    """Token ids drawn for a batch: ``tokens[i, :lengths[i]]`` (``<eos>`` included when drawn)."""

    tokens: torch.Tensor  # [B, L] long
    lengths: torch.Tensor  # [B] long
    nll: torch.Tensor  # [B] float64, -log p(x|z) of the drawn tokens under the model (T = 1)


def sampler_precision(precision: str) -> str:
    """Lightning's name of a sampler precision: "32-true" or "bf16-mixed" ("32" and "bf16" are aliases)."""
    name = PRECISION_ALIASES.get(str(precision), str(precision))
    if name not in PRECISIONS:
        raise MolgenError(f"precision must be 32-true or bf16-mixed (or 32, bf16), not {precision!r}")
    return name


def autocast_context(precision: str, device_type: str = "cpu"):
    """bf16 autocast on ``device_type`` for ``precision="bf16-mixed"`` ("bf16"), a no-op for "32-true" ("32")."""
    if sampler_precision(precision) == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


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
    precision = sampler_precision(precision)
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
        with autocast_context(precision, device.type):
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


def prior_draws(
    model: MoleculeVAE, n: int, component: int | None, generator: torch.Generator
) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Latents z [n, D] from p(z) (or from component ``component``) and their components; (None, -1s) for an LM."""
    if model.kind != "vae":
        if component is not None:
            raise MolgenError("a language model (kind='lm') has no mixture components")
        return None, torch.full((n,), -1, dtype=torch.long)
    if component is not None and not 0 <= component < model.prior.n_components:
        raise MolgenError(f"--component must be in 0..{model.prior.n_components - 1}, not {component}")
    return model.prior.sample(n, component=component, generator=generator)


def iter_batches(
    model: MoleculeVAE,
    tokenizer: SelfiesTokenizer,
    n: int,
    batch_size: int = 1024,
    temperature: float = 1.0,
    mode: str = "sample",
    component: int | None = None,
    seed: int = 0,
    precision: str = "32-true",
) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
    """Yield (SELFIES strings, nll, component) per batch until ``n`` molecules were drawn."""
    check_molecule_count(n)
    if batch_size <= 0:
        raise MolgenError(f"batch size must be positive, not {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < n:
        size = min(batch_size, n - done)
        z, k = prior_draws(model, size, component, generator)
        draws = draw_tokens(model, z, size, temperature, mode, generator, precision=precision)
        rows = draws.tokens.numpy()
        selfies = [tokenizer.ids_to_selfies(r[:length]) for r, length in zip(rows, draws.lengths.tolist())]
        yield selfies, draws.nll.numpy(), k.cpu().numpy()
        done += size


def draw_selfies(
    model: MoleculeVAE,
    tokenizer: SelfiesTokenizer,
    z: torch.Tensor,
    mode: str = "sample",
    temperature: float = 1.0,
    seed: int = 0,
    precision: str = "32-true",
) -> list[str]:
    """SELFIES strings decoded from latents z [N, D] (one draw each; the argmax for ``mode="greedy"``)."""
    generator = torch.Generator().manual_seed(seed)
    draws = draw_tokens(model, z.float(), z.shape[0], temperature, mode, generator, precision=precision)
    return [tokenizer.ids_to_selfies(r[:n]) for r, n in zip(draws.tokens.tolist(), draws.lengths.tolist())]
