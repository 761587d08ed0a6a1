"""The Python API over a trained model: load, sample, write a library, encode, decode, interpolate.

A thin layer: the token-drawing loop and the latent sources (the prior, or the posterior around seed
molecules) are ``molgen.model.generate``, beside the decoder; the one ids -> SMILES path, the
filters and the output file are ``molgen.library`` (formats: ``molgen.formats``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from molgen import library
from molgen.chemistry import canonical_or_reason
from molgen.device import resolve_device, resolve_precision
from molgen.errors import MolgenError, check_molecule_count
from molgen.model import generate
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_ids
from molgen.resources import MODEL, NEAR_MODEL, bundled
from molgen.tokenizer import SelfiesTokenizer

DEFAULT_CHECKPOINT = bundled(MODEL)  # the shipped MOSES model (molgen/resources.py)
NEAR_CHECKPOINT = bundled(NEAR_MODEL)  # its 24-nat-latent sibling: what `sample --near` and `interpolate` load


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
        self.precision = resolve_precision(precision)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.is_vae = model.kind == "vae"
        self.path: Path | None = None  # the file it was loaded from (set by ``load``)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        precision: str = "32-true",
        constraints: str | None = None,
        device: str | torch.device = "cpu",
    ) -> "Generator":
        """Load a checkpoint (default: the shipped MOSES model in ``checkpoints/``; ``NEAR_CHECKPOINT``
        is its sibling with a 24-nat latent, the default of ``sample --near`` and ``interpolate``).

        ``constraints`` overrides the SELFIES constraints saved with the model. Training never
        depends on them (valid molecules tokenize identically), so one set of weights can be
        decoded both ways: this is how strict and relaxed are compared at equal compute.
        ``device``: where the network runs ("cpu", "cuda", "cuda:N" or "auto"; see ``molgen.device``).
        """
        from molgen.checkpoint import load_model

        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        if not path.exists():
            raise MolgenError(f"{path}: no such checkpoint")
        model, tokenizer = load_model(path)
        if constraints is not None:
            tokenizer = SelfiesTokenizer(tokenizer.tokens, constraints)
        generator = cls(model, tokenizer, precision, device)
        generator.path = path
        return generator

    @property
    def redraws_invalid(self) -> bool:
        """Whether sampling redraws invalid molecules by default: yes under relaxed SELFIES constraints.

        Relaxed decoding lets a malformed string decode to a molecule with a hypervalent atom instead
        of repairing it (strict decoding's repair is what biases strict samples against aromatic
        rings); discarding those and drawing again is the method, so it is the relaxed default.
        """
        return self.tokenizer.constraints == "relaxed"

    # ------------------------------------------------------------------ sampling
    def _batches(self, n, budget, batch_size, temperature, mode, component, seed, near, sigma):
        """(batches of the draw budget, seed SMILES or None, rows wanted per seed or None): latents
        from the prior, or around ``near`` (``n`` rows each, counted down as they are kept)."""
        if near is None:
            latents = generate.prior_source(self.model, component)
            return generate.iter_batches(self.model, budget, batch_size, temperature, mode, seed, self.precision, latents), None, None
        if component is not None:
            raise MolgenError("choose either a mixture component or seed molecules to sample around, not both")
        seeds = [near] if isinstance(near, str) else list(near)
        if not seeds:
            raise MolgenError("no seed molecules to sample around")
        tokens, lengths, canonical = self._tokens(seeds)
        wanted = np.full(len(seeds), n)
        latents = generate.posterior_source(self.model, tokens, lengths, sigma, wanted)
        batches = generate.iter_batches(self.model, budget * len(seeds), batch_size, temperature, mode, seed, self.precision, latents)
        return batches, canonical, wanted

    def sample(
        self,
        n: int,
        temperature: float = 1.0,
        mode: str = "sample",
        component: int | None = None,
        seed: int = 0,
        batch_size: int = 1024,
        near: str | Sequence[str] | None = None,
        sigma: float = 1.0,
        filters: library.Filters | None = None,
        max_attempts_factor: int = 20,
    ) -> list[dict]:
        """Draw ``n`` molecules (``n`` per seed with ``near``); rows have the CSV columns (SMILES None when invalid).

        ``near``: a SMILES (or several): z is drawn from mu(x) + sigma * std(x) * eps around each
        seed's posterior (q(z|x) itself for sigma = 1) and rows gain ``seed_smiles`` and
        ``similarity`` (Tanimoto to the seed). ``filters`` keep drawing, up to
        ``max_attempts_factor * n`` draws (None: the decoding's default, ``redraws_invalid``).
        """
        check_molecule_count(n)
        filters = library.Filters(self.redraws_invalid) if filters is None else filters
        budget = n * (max_attempts_factor if filters.any else 1)
        batches, seeds, wanted = self._batches(n, budget, batch_size, temperature, mode, component, seed, near, sigma)
        return list(library.iter_rows(batches, n, self.tokenizer, seed, filters, seeds, quota=wanted))

    def write(
        self,
        path: str | os.PathLike,
        n: int,
        temperature: float = 1.0,
        mode: str = "sample",
        component: int | None = None,
        seed: int = 0,
        batch_size: int = 1024,
        unique: bool = False,
        valid_only: bool | None = None,
        near: str | Sequence[str] | None = None,
        sigma: float = 1.0,
        scaffold: str | None = None,
        max_attempts_factor: int = 20,
        progress: bool = True,
    ) -> dict:
        """Stream ``n`` molecules (``n`` per seed with ``near``) to a .csv, .smi or .sdf file; counts and rate.

        The file appears complete or not at all. ``valid_only``, ``unique`` and ``scaffold`` (a
        substructure every molecule contains) keep drawing until the rows pass, at most
        ``max_attempts_factor * n`` draws; the summary's ``acceptance_rate`` is kept / drawn and
        ``valid_fraction`` the raw validity of the draws. ``valid_only=None`` is the decoding's
        default (``redraws_invalid``). A .smi or .sdf file keeps valid molecules only. SELFIES
        decoding and canonicalization run in worker processes while the network draws the next batch.
        """
        check_molecule_count(n)
        valid_only = self.redraws_invalid if valid_only is None else valid_only
        filters = library.Filters(valid_only, unique, scaffold).for_output(path)
        budget = n * (max_attempts_factor if filters.any else 1)
        batches, seeds, wanted = self._batches(n, budget, batch_size, temperature, mode, component, seed, near, sigma)
        return library.write_library(path, batches, n, self.tokenizer, seed, filters, seeds, progress, quota=wanted)

    # ------------------------------------------------------------------ latent space
    def _tokens(self, smiles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Padded ids, lengths (CPU) and canonical SMILES; an unusable molecule is a MolgenError naming it."""
        ids, canonicals = [], []
        for i, s in enumerate(smiles):
            canonical, why = canonical_or_reason(s)
            if canonical is None:
                raise MolgenError(f"smiles[{i}] {s!r}: invalid SMILES ({why})")
            canonicals.append(canonical)
            try:
                ids.append(self.tokenizer.encode(canonical))
            except MolgenError as err:
                raise MolgenError(f"smiles[{i}] {s!r}: {err}") from None
            if len(ids[-1]) > self.model.max_len:
                raise MolgenError(
                    f"smiles[{i}] {s!r}: {len(ids[-1])} tokens, longer than the model's cap of {self.model.max_len}"
                )
        return (*pad_ids(ids, self.tokenizer.pad_id), canonicals)

    def _require_vae(self) -> None:
        if not self.is_vae:
            raise MolgenError("this model is a language model (kind='lm') and has no latent space")

    @torch.inference_mode()
    def encode(self, smiles: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior means E[z|x] [N, D] and component responsibilities p(k|z=mean) [N, K] (CPU tensors)."""
        self._require_vae()
        tokens, lengths, _ = self._tokens(list(smiles))
        mu, _ = self.model.encode(tokens.to(self.device), lengths.to(self.device))
        return mu.cpu(), self.model.prior.responsibilities(mu).cpu()

    @torch.inference_mode()
    def decode(self, z: torch.Tensor, mode: str = "sample", temperature: float = 1.0, seed: int = 0) -> list[str | None]:
        """Decode latents z [N, D] to canonical SMILES (None where invalid); sampled unless mode='greedy'."""
        self._require_vae()
        generator = torch.Generator().manual_seed(seed)
        draws = generate.draw_tokens(self.model, z.float(), z.shape[0], temperature, mode, generator, precision=self.precision)
        return [smiles for _, smiles, _, _ in library.decode_rows((draws.rows(), self.tokenizer, None, None))]

    def interpolate(
        self, smiles_a: str, smiles_b: str, steps: int = 8, mode: str = "sample", seed: int = 0, temperature: float = 1.0
    ) -> list[str | None]:
        """Decode ``steps`` points on the line between the posterior means of two molecules.

        Each point's tokens are drawn from p(x|z) (``mode="greedy"``: the argmax, named as such).
        """
        if steps < 2:
            raise MolgenError(f"steps must be at least 2, not {steps}")
        mu, _ = self.encode([smiles_a, smiles_b])
        w = torch.linspace(0, 1, steps).unsqueeze(1)
        return self.decode((1 - w) * mu[0] + w * mu[1], mode=mode, temperature=temperature, seed=seed)

    def interpolation_rows(
        self, smiles_a: str, smiles_b: str, steps: int = 8, mode: str = "sample", seed: int = 0, temperature: float = 1.0
    ) -> list[dict]:
        """``interpolate`` as rows: step, t, SMILES (None when invalid), Tanimoto to A and to B."""
        path = self.interpolate(smiles_a, smiles_b, steps, mode, seed, temperature)
        ends = [canonical_or_reason(s)[0] for s in (smiles_a, smiles_b)]
        rows = []
        for i, smiles in enumerate(path):
            row = {"step": i, "t": i / (steps - 1), "SMILES": smiles, "similarity_a": None, "similarity_b": None}
            if smiles is not None:
                from molgen.metrics.molecules import parse

                mol = parse(smiles)
                row.update(similarity_a=library.tanimoto_to(mol, ends[0]), similarity_b=library.tanimoto_to(mol, ends[1]))
            rows.append(row)
        return rows

    def neighbours(self, smiles: str, n: int = 10, sigma: float = 1.0, seed: int = 0) -> list[str | None]:
        """Sample ``n`` molecules around one: z = E[z|x] + sigma * std(z|x) * eps, tokens drawn from p(x|z)."""
        return [row["SMILES"] for row in self.sample(n, seed=seed, near=smiles, sigma=sigma)]
