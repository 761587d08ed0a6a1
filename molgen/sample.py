"""The Python API over a trained model: load, sample, write a library, encode, decode, interpolate.

A thin layer: the token-drawing loop is ``molgen.model.generate`` (beside the decoder), the CSV file
and the one SELFIES -> SMILES path are ``molgen.library``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from molgen import library
from molgen.chemistry import canonical_or_reason
from molgen.device import resolve_device
from molgen.errors import MolgenError, check_molecule_count
from molgen.model import generate
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_ids
from molgen.resources import MODEL, bundled
from molgen.tokenizer import SelfiesTokenizer

DEFAULT_CHECKPOINT = bundled(MODEL)  # the shipped MOSES model (molgen/resources.py)


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
        self.precision = generate.sampler_precision(precision)
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

        device, precision = resolve_device(device), generate.sampler_precision(precision)  # fail before reading the file
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if not path.exists():
            raise MolgenError(f"{path}: no such checkpoint")
        model, tokenizer = load_model(path)
        if constraints is not None:
            tokenizer = SelfiesTokenizer(tokenizer.tokens, constraints)
        return cls(model, tokenizer, precision, device)

    # ------------------------------------------------------------------ sampling
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
        return generate.iter_batches(
            self.model, self.tokenizer, n, batch_size, temperature, mode, component, seed, self.precision
        )

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
        batches = self.iter_batches(n, batch_size, temperature, mode, component, seed)
        return library.sample_rows(batches, self.tokenizer.constraints, seed)

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
        check_molecule_count(n)
        budget = n * (max_attempts_factor if (unique or valid_only) else 1)
        batches = self.iter_batches(budget, batch_size, temperature, mode, component, seed)
        return library.write_csv(
            path, batches, n, self.tokenizer.constraints, seed, unique=unique, valid_only=valid_only, progress=progress
        )

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
        selfies = generate.draw_selfies(self.model, self.tokenizer, z, mode, temperature, seed, self.precision)
        return [smiles for _, smiles in library.decode_rows((selfies, self.tokenizer.constraints))]

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

