"""Reference-set statistics (test, scaffold test, train), computed once per file and cached as
``.npz`` (no pickles) under the molgen cache folder, keyed by the file's sha256 and the versions of
everything that shapes the numbers; a changed file or a new RDKit/fcd-torch gets fresh statistics."""
from __future__ import annotations

import hashlib
import os
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import numpy as np
import rdkit
from rdkit import Chem

from molgen.data import _join, _split, default_cache_dir, file_sha256, parallel_map, read_column
from molgen.errors import MolgenError
from molgen.files import atomic_path
from molgen.metrics.fcd import chemnet_activations, gaussian
from molgen.metrics.molecules import describe, parse
from molgen.metrics.properties import PROPERTIES
from molgen.metrics.progress import bar

CACHE_VERSION = 1


def package_version(name: str) -> str:
    """Installed version of a distribution, or "unknown"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def _versions_key() -> str:
    return f"v{CACHE_VERSION}|rdkit {rdkit.__version__}|fcd-torch {package_version('fcd-torch')}"


@dataclass
class ReferenceStats:
    """What the set metrics need of a reference set (the MOSES test or scaffold-test split)."""

    path: str
    sha256: str
    n: int  # valid molecules
    fcd_mu: np.ndarray
    fcd_sigma: np.ndarray
    fingerprints: np.ndarray  # uint8 [n, 128], packed Morgan bits
    fragments: dict[str, int]
    scaffolds: dict[str, int]
    properties: dict[str, np.ndarray]


def _cache_path(path: Path, sha256: str, kind: str, cache_dir: Path | None) -> Path:
    key = hashlib.sha256(f"{sha256}|{kind}|{_versions_key()}".encode()).hexdigest()[:16]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "reference"
    return folder / f"{path.name}.{kind}-{key}.npz"


def _save(cache: Path, arrays: dict[str, np.ndarray]) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    for stale in cache.parent.glob(cache.name.rsplit("-", 1)[0] + "-*.npz"):
        if stale != cache:
            stale.unlink(missing_ok=True)  # statistics of an earlier version of the same file
    with atomic_path(cache) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def _load(cache: Path) -> dict[str, np.ndarray] | None:
    if not cache.exists():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            return {name: z[name] for name in z.files}
    except (OSError, ValueError, KeyError, zlib.error):
        return None  # a damaged cache is rebuilt


def _counter_arrays(prefix: str, counts: dict[str, int]) -> dict[str, np.ndarray]:
    keys = list(counts)
    return {f"{prefix}_keys": _join(keys), f"{prefix}_counts": np.array([counts[k] for k in keys], dtype=np.int64)}


def _counter(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, int]:
    return dict(zip(_split(arrays[f"{prefix}_keys"]), arrays[f"{prefix}_counts"].tolist()))


def reference_stats(
    path: str | os.PathLike, smiles_column: str | None = None, cache_dir: str | os.PathLike | None = None
) -> ReferenceStats:
    """Statistics of the reference set in ``path``, from the cache or computed (and cached) now."""
    path = Path(path)
    sha256 = file_sha256(path)
    cache = _cache_path(path, sha256, "reference", cache_dir)
    arrays = _load(cache)
    if arrays is None:
        table = describe(read_column(path, smiles_column), generated=False, desc=f"reference {path.name}")
        if len(table) < 2:
            raise MolgenError(f"{path}: a reference set needs at least two valid molecules, found {len(table)}")
        with bar(len(table), f"ChemNet {path.name}") as progress:
            mu, sigma = gaussian(chemnet_activations(table.chemnet_tokens, progress=progress))
        arrays = {
            "n": np.array(len(table)),
            "fcd_mu": mu,
            "fcd_sigma": sigma,
            "fingerprints": table.fingerprints,
            **_counter_arrays("fragments", table.fragments),
            **_counter_arrays("scaffolds", table.scaffolds),
            **{f"property_{name}": table.properties[name] for name in PROPERTIES},
        }
        _save(cache, arrays)
    return ReferenceStats(
        path=str(path),
        sha256=sha256,
        n=int(arrays["n"]),
        fcd_mu=arrays["fcd_mu"],
        fcd_sigma=arrays["fcd_sigma"],
        fingerprints=arrays["fingerprints"],
        fragments=_counter(arrays, "fragments"),
        scaffolds=_counter(arrays, "scaffolds"),
        properties={name: arrays[f"property_{name}"] for name in PROPERTIES},
    )


def smiles_key(canonical: str) -> int:
    """64-bit digest of a canonical SMILES (set membership without storing the strings)."""
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little")


def smiles_keys(canonical: Sequence[str]) -> np.ndarray:
    """``smiles_key`` of each string, as a uint64 array."""
    return np.fromiter((smiles_key(s) for s in canonical), dtype=np.uint64, count=len(canonical))


def _canonical_key(smiles: str) -> int | None:
    mol = parse(smiles)
    return None if mol is None else smiles_key(Chem.MolToSmiles(mol))


def training_keys(
    path: str | os.PathLike, smiles_column: str | None = None, cache_dir: str | os.PathLike | None = None
) -> tuple[np.ndarray, str]:
    """Sorted unique ``smiles_key`` of the canonical SMILES in a training file (for Novelty), and the
    file's sha256; cached like the reference statistics."""
    path = Path(path)
    sha256 = file_sha256(path)
    cache = _cache_path(path, sha256, "train", cache_dir)
    arrays = _load(cache)
    if arrays is None:
        keys = parallel_map(_canonical_key, read_column(path, smiles_column), desc=f"canonical {path.name}")
        arrays = {"keys": np.unique(np.array([k for k in keys if k is not None], dtype=np.uint64))}
        _save(cache, arrays)
    return arrays["keys"], sha256
