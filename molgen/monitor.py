"""What training watches beyond the ELBO: the FCD of molecules sampled from the model.

An ELBO can keep improving while the latent collapses or the samples drift, so every validation
also draws ``n`` molecules from the prior (every token sampled, the same seed each time, so that
the curve's changes come from the weights, not the draw) and logs ``val/fcd`` against a reference:
the ChemNet statistics shipped for a MOSES split, or those of the reference file's first molecules,
or, with no reference file, of the validation molecules. With 2,000 samples the figure is biased
upwards against a 30,000-sample FCD (fewer samples, noisier covariance): a curve, not a score.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from molgen.chemistry import canonicalize
from molgen.files import file_sha256
from molgen.metrics.fcd import chemnet_activations, chemnet_tokens, frechet_distance, gaussian
from molgen.metrics.reference import shipped
from molgen.readers import read_column
from molgen.tokenizer import SelfiesTokenizer

REFERENCE_MOLECULES = 20_000  # ChemNet statistics of a reference file without shipped ones: its first molecules


def chemnet_statistics(smiles: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """ChemNet (mean, covariance) of the valid molecules of ``smiles`` (canonicalized as MOSES does)."""
    canonical = [c for c in (canonicalize(s) for s in smiles if s) if c]
    if len(canonical) < 2:
        raise ValueError("FCD needs at least two valid molecules")
    return gaussian(chemnet_activations(np.stack([chemnet_tokens(c) for c in canonical])))


def reference_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """ChemNet (mean, covariance) of a reference file: shipped for the MOSES splits, else computed
    from its first ``REFERENCE_MOLECULES`` molecules."""
    ship = shipped("reference", file_sha256(path))
    if ship is not None:
        return ship["fcd_mu"], ship["fcd_sigma"]
    return chemnet_statistics(read_column(path)[:REFERENCE_MOLECULES])


def sample_fcd(model: Any, tokenizer: SelfiesTokenizer, n: int, reference: tuple[np.ndarray, np.ndarray],
               seed: int = 0) -> dict[str, float]:  # fmt: skip
    """FCD of ``n`` molecules sampled from ``model`` against ``reference`` (mean, covariance), and their validity."""
    from molgen.library import Filters
    from molgen.sample import Generator  # the sampler imports the model package; keep this module light

    was_training = model.training
    try:
        rows = Generator(model, tokenizer).sample(n, seed=seed, filters=Filters())  # every draw: validity counts
    finally:
        model.train(was_training)
    smiles = [r["SMILES"] for r in rows if r["SMILES"]]
    mu, sigma = chemnet_statistics(smiles)
    return {"fcd": frechet_distance(mu, sigma, *reference), "valid": len(smiles) / max(len(rows), 1)}


class SampleFCD(Callback):
    """Log ``val/fcd`` (and ``val/sample_valid``, ``val/fcd_seconds``) of ``n`` sampled molecules at
    every ``every``-th validation of the stretch (its first and its last included)."""

    def __init__(self, n: int, tokenizer: SelfiesTokenizer, reference: str | os.PathLike | None,
                 validation_smiles: Sequence[str], every: int = 1) -> None:  # fmt: skip
        self.n, self.tokenizer, self.every = n, tokenizer, every
        self.validations = 0
        self.reference_path = Path(reference) if reference is not None else None
        self.validation_smiles = list(validation_smiles)
        self.reference: tuple[np.ndarray, np.ndarray] | None = None
        self.result: dict[str, float] | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        due = self.validations % self.every == 0 or trainer.should_stop
        self.validations += 1
        if not due:
            return
        start = time.perf_counter()
        if self.reference is None:
            if self.reference_path is not None:
                self.reference = reference_statistics(self.reference_path)
            else:
                self.reference = chemnet_statistics(self.validation_smiles)
        self.result = sample_fcd(pl_module.model, self.tokenizer, self.n, self.reference)
        pl_module.log("val/fcd", self.result["fcd"], sync_dist=False)
        pl_module.log("val/sample_valid", self.result["valid"], sync_dist=False)
        pl_module.log("val/fcd_seconds", time.perf_counter() - start, sync_dist=False)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.result is not None:  # after the module's own epoch-end hook, which rebuilds last_val
            pl_module.last_val.update({"fcd": self.result["fcd"], "sample_valid": self.result["valid"]})
            self.result = None
