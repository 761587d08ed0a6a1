"""Sampling: z ~ p(z), then every token drawn from Categorical(softmax(logits / T)) of the decoder.

Greedy (argmax) decoding exists only as the explicitly named ``mode="greedy"``; it is never what
"samples" means. The GRU state is the cache; a batch stops as soon as every row has ended.
"""
from __future__ import annotations

import contextlib
import csv
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from molgen.chemistry import canonical_or_reason
from molgen.device import resolve_device
from molgen.errors import MolgenError, check_molecule_count
from molgen.files import atomic_open
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_ids
from molgen.parallel import n_workers
from molgen.progress import bar
from molgen.resources import MODEL, bundled
from molgen.tokenizer import SelfiesTokenizer, selfies_to_smiles, use_constraints

MODES = ("sample", "greedy")
#: the sampler's ``--precision`` values, Lightning's names as in `molgen train`
PRECISIONS = ("32-true", "bf16-mixed")
#: the short names the sampler took before, still accepted
PRECISION_ALIASES = {"32": "32-true", "fp32": "32-true", "bf16": "bf16-mixed"}
CSV_COLUMNS = ("SMILES", "valid", "selfies", "nll", "component", "seed")
DEFAULT_CHECKPOINT = bundled(MODEL)  # the shipped MOSES model (molgen/resources.py)


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


def _decode_rows(args: tuple[list[str], str]) -> list[tuple[str, str | None]]:
    """(SELFIES, canonical SMILES or None) for a chunk of SELFIES strings (runs in workers)."""
    selfies_list, constraints = args
    use_constraints(constraints)
    return [(s, selfies_to_smiles(s, constraints)) for s in selfies_list]


class Generator:
    """A trained model ready to sample, encode, decode and interpolate (the API the CLI wraps)."""

    def __init__(
        self,
        model: MoleculeVAE,
        tokenizer: SelfiesTokenizer,
        precision: str = "32-true",
        device: str | torch.device | None = None,
    ) -> None:
        """``device``: where the network runs ("cpu", "cuda", "cuda:N", "auto"; None: where ``model`` is)."""
        self.device = resolve_device(device) if device is not None else model.decoder.out.weight.device
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.precision = sampler_precision(precision)
        self.is_vae = model.kind == "vae"

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        precision: str = "32-true",
        constraints: str | None = None,
        device: str | torch.device = "cpu",
    ) -> "Generator":
        """Load a checkpoint (default: the shipped MOSES model in ``checkpoints/``).

        ``constraints`` overrides the SELFIES constraints saved with the model. Training never
        depends on them (valid molecules tokenize identically), so one set of weights can be
        decoded both ways: this is how strict and relaxed are compared at equal compute.
        ``device``: where the network runs ("cpu", "cuda", "cuda:N" or "auto"; see ``molgen.device``).
        """
        from molgen.checkpoint import load_model

        device, precision = resolve_device(device), sampler_precision(precision)  # fail before reading the file
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if not path.exists():
            raise MolgenError(f"{path}: no such checkpoint")
        model, tokenizer = load_model(path)
        if constraints is not None:
            tokenizer = SelfiesTokenizer(tokenizer.tokens, constraints)
        return cls(model, tokenizer, precision, device)

    # ------------------------------------------------------------------ sampling
    def _prior(self, n: int, component: int | None, generator: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor]:
        if not self.is_vae:
            if component is not None:
                raise MolgenError("a language model (kind='lm') has no mixture components")
            return None, torch.full((n,), -1, dtype=torch.long)
        if component is not None and not 0 <= component < self.model.prior.n_components:
            raise MolgenError(f"--component must be in 0..{self.model.prior.n_components - 1}, not {component}")
        return self.model.prior.sample(n, component=component, generator=generator)

    def iter_batches(
        self,
        n: int,
        batch_size: int = 1024,
        temperature: float = 1.0,
        mode: str = "sample",
        component: int | None = None,
        seed: int = 0,
    ) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """Yield (SELFIES strings, nll, component) per batch until ``n`` molecules were drawn."""
        check_molecule_count(n)
        if batch_size <= 0:
            raise MolgenError(f"batch size must be positive, not {batch_size}")
        generator = torch.Generator().manual_seed(seed)
        done = 0
        while done < n:
            size = min(batch_size, n - done)
            z, k = self._prior(size, component, generator)
            draws = draw_tokens(self.model, z, size, temperature, mode, generator, precision=self.precision)
            rows = draws.tokens.numpy()
            selfies = [self.tokenizer.ids_to_selfies(r[:length]) for r, length in zip(rows, draws.lengths.tolist())]
            yield selfies, draws.nll.numpy(), k.cpu().numpy()
            done += size

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        mode: str = "sample",
        component: int | None = None,
        seed: int = 0,
        batch_size: int = 1024,
    ) -> list[dict]:
        """Draw ``n`` molecules; each row has the CSV columns (SMILES is None when invalid)."""
        rows = []
        for selfies, nll, comp in self.iter_batches(n, batch_size, temperature, mode, component, seed):
            for (s, smiles), v, k in zip(_decode_rows((selfies, self.tokenizer.constraints)), nll, comp):
                rows.append(_row(s, smiles, v, k, seed))
        return rows

    def write_csv(
        self,
        path: str | os.PathLike,
        n: int,
        temperature: float = 1.0,
        mode: str = "sample",
        component: int | None = None,
        seed: int = 0,
        batch_size: int = 1024,
        unique: bool = False,
        valid_only: bool = False,
        max_attempts_factor: int = 20,
        progress: bool = True,
    ) -> dict:
        """Stream ``n`` molecules to a CSV file (complete or not at all); return counts and rate.

        ``valid_only`` and ``unique`` keep drawing until ``n`` rows pass (at most
        ``max_attempts_factor * n`` draws). SELFIES decoding and canonicalization run in worker
        processes while the network draws the next batch.
        """
        import time

        check_molecule_count(n)
        start = time.perf_counter()
        budget = n * (max_attempts_factor if (unique or valid_only) else 1)
        seen: set[str] = set()
        written = drawn = n_valid = 0
        constraints = self.tokenizer.constraints
        workers = n_workers()
        pool = mp.get_context("fork").Pool(workers) if workers > 1 else None
        try:
            with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS)
                shown = 0
                with bar(n, "sample", enabled=progress) as update:
                    batches = self.iter_batches(budget, batch_size, temperature, mode, component, seed)
                    for selfies, nll, comp, decoded in _overlap(batches, pool, constraints, workers):
                        for (s, smiles), v, k in zip(decoded, nll, comp):
                            drawn += 1
                            n_valid += smiles is not None
                            if valid_only and smiles is None:
                                continue
                            if unique and smiles is not None:
                                if smiles in seen:
                                    continue
                                seen.add(smiles)
                            writer.writerow(_csv_row(s, smiles, v, k, seed))
                            written += 1
                            if written == n:
                                break
                        update(min(written, n) - shown)
                        shown = min(written, n)
                        if written == n:
                            break
                if written < n:
                    raise MolgenError(
                        f"only {written} of {n} molecules passed the filters after {drawn} draws; "
                        "lower -n or drop --unique/--valid-only"
                    )
        except KeyboardInterrupt:
            if pool is not None:  # interrupted: stop the workers at once
                pool.terminate()
                pool = None
            raise
        finally:
            # otherwise let the workers finish the batch in flight (one): terminating a worker while it
            # writes a result leaves the result queue's lock held, and Pool.terminate() then hangs
            if pool is not None:
                pool.close()
                pool.join()
        seconds = time.perf_counter() - start
        return {
            "written": written,
            "drawn": drawn,
            "valid_fraction": n_valid / max(1, drawn),
            "seconds": seconds,
            "molecules_per_second": written / seconds,
        }

    # ------------------------------------------------------------------ latent space
    def _tokens(self, smiles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded ids and lengths (CPU); an unusable molecule is a MolgenError naming it: smiles[i] 'SMILES': why."""
        ids = []
        for i, s in enumerate(smiles):
            canonical, why = canonical_or_reason(s)
            if canonical is None:
                raise MolgenError(f"smiles[{i}] {s!r}: invalid SMILES ({why})")
            try:
                ids.append(self.tokenizer.encode(canonical))
            except MolgenError as err:
                raise MolgenError(f"smiles[{i}] {s!r}: {err}") from None
            if len(ids[-1]) > self.model.max_len:
                raise MolgenError(
                    f"smiles[{i}] {s!r}: {len(ids[-1])} tokens, longer than the model's cap of {self.model.max_len}"
                )
        return pad_ids(ids, self.tokenizer.pad_id)

    def _require_vae(self) -> None:
        if not self.is_vae:
            raise MolgenError("this model is a language model (kind='lm') and has no latent space")

    @torch.inference_mode()
    def encode(self, smiles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means E[z|x] [N, D] and component responsibilities p(k|z=mean) [N, K] (CPU tensors)."""
        self._require_vae()
        tokens, lengths = self._tokens(list(smiles))
        mu, _ = self.model.encode(tokens.to(self.device), lengths.to(self.device))
        return mu.cpu(), self.model.prior.responsibilities(mu).cpu()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, mode: str = "sample", temperature: float = 1.0, seed: int = 0) -> list[str | None]:
        """Decode latents z [N, D] to canonical SMILES (None where invalid); sampled unless mode='greedy'."""
        self._require_vae()
        generator = torch.Generator().manual_seed(seed)
        draws = draw_tokens(self.model, z.float(), z.shape[0], temperature, mode, generator, precision=self.precision)
        return [self.tokenizer.decode(r[:n])[1] for r, n in zip(draws.tokens.tolist(), draws.lengths.tolist())]

    def interpolate(
        self, smiles_a: str, smiles_b: str, steps: int = 8, mode: str = "greedy", seed: int = 0
    ) -> list[str | None]:
        """Decode ``steps`` points on the line between the posterior means of two molecules."""
        if steps < 2:
            raise MolgenError(f"steps must be at least 2, not {steps}")
        mu, _ = self.encode([smiles_a, smiles_b])
        w = torch.linspace(0, 1, steps).unsqueeze(1)
        return self.decode((1 - w) * mu[0] + w * mu[1], mode=mode, seed=seed)

    def neighbours(self, smiles: str, n: int = 10, scale: float = 0.5, seed: int = 0) -> list[str | None]:
        """Sample ``n`` molecules around one: z = E[z|x] + scale * noise, tokens drawn from p(x|z)."""
        mu, _ = self.encode([smiles])
        generator = torch.Generator().manual_seed(seed)
        z = mu + scale * torch.randn(n, mu.shape[1], generator=generator)
        return self.decode(z, mode="sample", seed=seed)


def _overlap(batches, pool, constraints: str, workers: int):
    """Decode batch i in worker processes while the network draws batch i + 1."""
    pending = None
    for selfies, nll, comp in batches:
        chunks = np.array_split(np.array(selfies, dtype=object), workers) if pool is not None else [selfies]
        jobs = [list(c) for c in chunks]
        if pool is not None:
            result = pool.map_async(_decode_rows, [(c, constraints) for c in jobs])
        else:
            result = None
        if pending is not None:
            yield _finish(pending)
        pending = (selfies, nll, comp, jobs, result, constraints)
    if pending is not None:
        yield _finish(pending)


def _finish(pending):
    selfies, nll, comp, jobs, result, constraints = pending
    if result is None:
        decoded = _decode_rows((jobs[0], constraints))
    else:
        decoded = [row for part in result.get() for row in part]
    return selfies, nll, comp, decoded


def _row(selfies: str, smiles: str | None, nll: float, component: int, seed: int) -> dict:
    return {"SMILES": smiles, "valid": smiles is not None, "selfies": selfies, "nll": float(nll), "component": int(component), "seed": seed}


def _csv_row(selfies: str, smiles: str | None, nll: float, component: int, seed: int) -> tuple:
    return (smiles or "", "true" if smiles is not None else "false", selfies, f"{nll:.4f}", int(component), seed)
