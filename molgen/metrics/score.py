"""``score``: the MOSES set metrics of a generated set against test, scaffold-test and train files,
plus the ring and aromaticity statistics where SELFIES models are known to drift."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import rdkit
import torch

import molgen
from molgen.device import resolve_device
from molgen.errors import MolgenError
from molgen.metrics.fcd import chemnet_activations, frechet_distance, gaussian
from molgen.metrics.fragments import cosine_similarity
from molgen.metrics.molecules import MoleculeTable, describe
from molgen.progress import bar
from molgen.metrics.properties import wasserstein
from molgen.metrics.reference import ReferenceStats, package_version, reference_stats, smiles_keys, training_keys
from molgen.metrics.similarity import internal_diversity, nearest_similarity

#: The MOSES metric names, in MOSES's order.
MOSES_KEYS = (
    "valid", "unique@1000", "unique@10000",
    "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
    "FCD/TestSF", "SNN/TestSF", "Frag/TestSF", "Scaf/TestSF",
    "IntDiv", "IntDiv2", "Filters", "Novelty", "logP", "SA", "QED", "weight",
)  # fmt: skip
#: Structural statistics reported beyond MOSES (means over the set, W1 against the test set).
STRUCTURE_KEYS = ("rings", "aromatic_rings", "aromatic_atom_fraction")


def unique_at(canonical: Sequence[str], k: int) -> float:
    """Fraction of unique molecules among the first ``k`` (all of them when there are fewer, as MOSES)."""
    head = canonical[:k]
    return len(set(head)) / len(head) if head else float("nan")


def _against(table: MoleculeTable, chemnet: tuple | None, ref: ReferenceStats, label: str) -> dict[str, float]:
    """FCD, SNN, Frag and Scaf of the set against one reference (``chemnet``: the set's mean, covariance)."""
    with bar(len(table), f"SNN/{label}") as progress:
        snn = nearest_similarity(table.fingerprints, ref.fingerprints, progress=progress)
    return {
        f"FCD/{label}": frechet_distance(*chemnet, ref.fcd_mu, ref.fcd_sigma) if chemnet else float("nan"),
        f"SNN/{label}": float(snn.mean()) if len(snn) else float("nan"),
        f"Frag/{label}": cosine_similarity(ref.fragments, table.fragments),
        f"Scaf/{label}": cosine_similarity(ref.scaffolds, table.scaffolds),
    }


@dataclass
class Scored:
    """A report with the per-molecule table and test statistics it was computed from (for plots)."""

    report: dict
    generated: MoleculeTable
    test: ReferenceStats


def score(
    smiles: Sequence[str],
    test: str | os.PathLike,
    test_scaffolds: str | os.PathLike | None = None,
    train: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """The JSON-ready report of ``score_set`` (same arguments)."""
    return score_set(smiles, test, test_scaffolds, train, cache_dir, device).report


def score_set(
    smiles: Sequence[str],
    test: str | os.PathLike,
    test_scaffolds: str | os.PathLike | None = None,
    train: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
) -> Scored:
    """MOSES metrics of the raw strings ``smiles`` (a generated set) against reference files.

    Returns a JSON-ready dict: the ``MOSES_KEYS`` with MOSES's definitions (Novelty only with
    ``train``, ``*/TestSF`` only with ``test_scaffolds``), ``structure`` (mean ring count, aromatic
    ring count and aromatic-atom fraction of the set and of the test set, with their W1),
    ``counts``, ``references`` (paths and sha256) and ``versions``. ``device``: where ChemNet runs
    on the generated set ("cpu", "cuda", "cuda:N" or "auto"; the same FCD up to float rounding).
    """
    device = resolve_device(device)
    if len(smiles) == 0:
        raise MolgenError("the generated set is empty")
    started = time.perf_counter()
    test_ref = reference_stats(test, cache_dir=cache_dir, device=device)
    scaffold_ref = reference_stats(test_scaffolds, cache_dir=cache_dir, device=device) if test_scaffolds is not None else None
    train_keys, train_sha = training_keys(train, cache_dir=cache_dir) if train is not None else (None, None)

    table = describe(smiles, generated=True, desc="generated set")
    metrics: dict = {"valid": float(table.valid.mean())}
    for k in (1000, 10000):
        metrics[f"unique@{k}"] = unique_at(table.smiles, k)
    with bar(len(table), "ChemNet generated") as progress:
        activations = chemnet_activations(table.chemnet_tokens, progress=progress, device=device)
    chemnet = gaussian(activations) if len(activations) >= 2 else None
    metrics.update(_against(table, chemnet, test_ref, "Test"))
    if scaffold_ref is not None:
        metrics.update(_against(table, chemnet, scaffold_ref, "TestSF"))
    with bar(len(table), "IntDiv") as progress:
        metrics["IntDiv"], metrics["IntDiv2"] = internal_diversity(table.fingerprints, progress=progress)
    metrics["Filters"] = float(table.passes_filters.mean()) if len(table) else float("nan")
    if train_keys is not None:
        unique = np.unique(smiles_keys(table.smiles))
        novel = ~np.isin(unique, train_keys, assume_unique=True)
        metrics["Novelty"] = float(novel.mean()) if len(unique) else float("nan")
    for name in ("logP", "SA", "QED", "weight"):
        metrics[name] = wasserstein(test_ref.properties[name], table.properties[name])
    report = {key: metrics[key] for key in MOSES_KEYS if key in metrics}
    report["structure"] = {
        name: {
            "set": float(table.properties[name].mean()) if len(table) else float("nan"),
            "test": float(test_ref.properties[name].mean()),
            "W1": wasserstein(test_ref.properties[name], table.properties[name]),
        }
        for name in STRUCTURE_KEYS
    }
    report["counts"] = {
        "input": len(smiles),
        "valid": len(table),
        "unique": len(set(table.smiles)),
        "test": test_ref.n,
        **({"test_scaffolds": scaffold_ref.n} if scaffold_ref is not None else {}),
        **({"train_unique": len(train_keys)} if train_keys is not None else {}),
    }
    report["references"] = {
        "test": {"path": test_ref.path, "sha256": test_ref.sha256, "statistics": test_ref.source},
        **({"test_scaffolds": {"path": scaffold_ref.path, "sha256": scaffold_ref.sha256, "statistics": scaffold_ref.source}}
           if scaffold_ref else {}),
        **({"train": {"path": str(train), "sha256": train_sha}} if train is not None else {}),
    }
    report["versions"] = {
        "molgen": molgen.__version__,
        "rdkit": rdkit.__version__,
        "fcd_torch": package_version("fcd-torch"),
        "torch": package_version("torch"),
    }
    report["seconds"] = round(time.perf_counter() - started, 2)
    return Scored(report, table, test_ref)


def format_table(report: dict) -> str:
    """The report as a readable two-column text table."""
    lines = [f"{'metric':<24}{'value':>12}", "-" * 36]
    for key in MOSES_KEYS:
        if key in report:
            lines.append(f"{key:<24}{report[key]:>12.4f}")
    lines.append("-" * 36)
    lines.append(f"{'structure':<24}{'set':>12}{'test':>12}{'W1':>12}")
    for name, row in report["structure"].items():
        lines.append(f"{name:<24}{row['set']:>12.4f}{row['test']:>12.4f}{row['W1']:>12.4f}")
    counts = report["counts"]
    lines.append("-" * 36)
    lines.append(", ".join(f"{k}: {v:,}" for k, v in counts.items()))
    return "\n".join(lines)
