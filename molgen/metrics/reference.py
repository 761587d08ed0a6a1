"""Reference-set statistics (test, scaffold test, train).

The MOSES splits' statistics ship with molgen (``data/moses_stats.npz``, built by
``scripts/build_moses_stats.py``): ChemNet mean and covariance, fragment and scaffold counts and
the property columns of test and scaffold test, and for the training split the few SMILES whose
RDKit canonical form differs from the file's text. What is too large to ship is built on first
use and cached: the reference fingerprints for SNN (Morgan only, seconds) and the training
set's keys for Novelty (hashes of the file's text corrected by the shipped exceptions, seconds).
Any other reference file gets everything computed once (minutes for 100k molecules) and cached as
``.npz`` (no pickles) under the molgen cache folder, keyed by the file's sha256 and the versions
of everything that shapes the numbers.
"""
from __future__ import annotations

import functools
import hashlib
import os
import time
import zlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Sequence

import numpy as np
import rdkit
import torch
from rdkit import Chem

from molgen.errors import MolgenError
from molgen.files import atomic_path, default_cache_dir, file_sha256, pack_strings, unpack_strings
from molgen.metrics.fcd import chemnet_activations, gaussian
from molgen.metrics.molecules import describe, parse
from molgen.metrics.properties import PROPERTIES
from molgen.metrics.similarity import N_BITS, morgan_bits
from molgen.parallel import parallel_map
from molgen.progress import bar, say
from molgen.readers import read_column

CACHE_VERSION = 2
SHIPPED = Path(__file__).resolve().parent / "data" / "moses_stats.npz"
FINGERPRINTS = "fingerprints"  # the one reference array that is not shipped


def package_version(name: str) -> str:
    """Installed version of a distribution, or "unknown"."""
    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def versions() -> dict[str, str]:
    """The versions of what shapes the statistics' numbers."""
    return {"rdkit": rdkit.__version__, "fcd-torch": package_version("fcd-torch")}


def _versions_key() -> str:
    return f"v{CACHE_VERSION}|" + "|".join(f"{k} {v}" for k, v in versions().items())


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
    source: str = "computed"  # "shipped (rdkit ..., fcd-torch ...)" when the statistics came with molgen


def _cache_path(path: Path, sha256: str, kind: str, cache_dir: str | os.PathLike | None) -> Path:
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


@functools.lru_cache(maxsize=4)
def _shipped_file(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in z.files}


def shipped(kind: str, sha256: str, path: Path | None = None) -> dict[str, np.ndarray] | None:
    """The shipped arrays of the ``kind`` ("reference" or "train") statistics of the file with this
    sha256, or None when molgen ships none for it."""
    arrays = _shipped_file(path or SHIPPED)
    prefix = f"{kind}-{sha256}/"
    found = {name[len(prefix) :]: value for name, value in arrays.items() if name.startswith(prefix)}
    return found or None


def shipped_versions(path: Path | None = None) -> dict[str, str]:
    """The versions the shipped statistics were built with, e.g. {"rdkit": "2026.09.1", "fcd-torch": "1.0.7"}."""
    arrays = _shipped_file(path or SHIPPED)
    made = unpack_strings(arrays["versions"]) if "versions" in arrays else []
    return dict(item.split(" ", 1) for item in made)


def shipped_source(path: Path | None = None) -> str:
    """How the shipped statistics were made, e.g. "shipped (rdkit 2026.09.1, fcd-torch 1.0.7)"."""
    made = shipped_versions(path)
    return f"shipped ({', '.join(f'{k} {v}' for k, v in made.items())})" if made else "shipped"


def _counter_arrays(prefix: str, counts: dict[str, int]) -> dict[str, np.ndarray]:
    keys = list(counts)
    return {f"{prefix}_keys": pack_strings(keys), f"{prefix}_counts": np.array([counts[k] for k in keys], dtype=np.int64)}


def _counter(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, int]:
    return dict(zip(unpack_strings(arrays[f"{prefix}_keys"]), arrays[f"{prefix}_counts"].tolist()))


def reference_arrays(
    path: str | os.PathLike, smiles_column: str | None = None, device: str | torch.device = "cpu"
) -> dict[str, np.ndarray]:
    """Compute every reference statistic of the file (RDKit description of each molecule, ChemNet on ``device``)."""
    path = Path(path)
    table = describe(read_column(path, smiles_column), generated=False, desc=f"reference {path.name}")
    if len(table) < 2:
        raise MolgenError(f"{path}: a reference set needs at least two valid molecules, found {len(table)}")
    with bar(len(table), f"ChemNet {path.name}") as progress:
        mu, sigma = gaussian(chemnet_activations(table.chemnet_tokens, progress=progress, device=device))
    return {
        "n": np.array(len(table)),
        "fcd_mu": mu,
        "fcd_sigma": sigma,
        FINGERPRINTS: table.fingerprints,
        **_counter_arrays("fragments", table.fragments),
        **_counter_arrays("scaffolds", table.scaffolds),
        **{f"property_{name}": table.properties[name] for name in PROPERTIES},
    }


def _fingerprint(smiles: str) -> bytes | None:
    mol = parse(smiles)
    return None if mol is None else morgan_bits(mol).tobytes()


def fast_fingerprint(smiles: str) -> bytes | None:
    """Packed Morgan bits of a SMILES parsed without sanitization (ring flags from FastFindRings): a third
    of the time of the exact path, and the same bits for all but 0.02% of the MOSES references (36 and 32 rows)
    (explicit [H], some fused aromatic systems); those rows ship as exceptions."""
    mol = Chem.MolFromSmiles(smiles, sanitize=False) if smiles else None
    if mol is None:
        return None
    mol.UpdatePropertyCache(strict=False)
    Chem.FastFindRings(mol)
    return morgan_bits(mol).tobytes()


def fingerprint_exceptions(path: str | os.PathLike, smiles_column: str | None = None) -> dict[str, np.ndarray]:
    """The rows of a reference file where ``fast_fingerprint`` differs from the exact fingerprint:
    their indices, their exact bits (zeros where the row is not a valid molecule) and validity."""
    raw = read_column(path, smiles_column)
    exact = parallel_map(_fingerprint, raw, desc=f"fingerprints {Path(path).name}")
    fast = parallel_map(fast_fingerprint, raw, desc=f"fast fingerprints {Path(path).name}")
    rows = [i for i, (a, b) in enumerate(zip(exact, fast)) if a != b]
    zeros = bytes(N_BITS // 8)
    bits = b"".join(exact[i] or zeros for i in rows)
    return {
        "fingerprint_rows": np.array(rows, dtype=np.int64),
        "fingerprint_bits": np.frombuffer(bits, dtype=np.uint8).reshape(len(rows), N_BITS // 8),
        "fingerprint_valid": np.array([exact[i] is not None for i in rows], dtype=bool),
    }


def reference_fingerprints(
    path: str | os.PathLike, smiles_column: str | None = None, exceptions: dict[str, np.ndarray] | None = None
) -> np.ndarray:
    """Packed Morgan bits [n, 128] of the valid molecules of a file, as ``reference_arrays`` has them.

    With ``exceptions`` (``fingerprint_exceptions`` of this very file, made by this RDKit version)
    the rows are fingerprinted on the fast path and the exceptions put right: the same array.
    """
    path = Path(path)
    raw = read_column(path, smiles_column)
    if exceptions is None:
        bits = parallel_map(_fingerprint, raw, desc=f"fingerprints {path.name}")
    else:
        bits = parallel_map(fast_fingerprint, raw, desc=f"fingerprints {path.name}")
        for i, exact, valid in zip(*(exceptions[f"fingerprint_{k}"] for k in ("rows", "bits", "valid"))):
            bits[i] = exact.tobytes() if valid else None
    kept = [b for b in bits if b]
    return np.frombuffer(b"".join(kept), dtype=np.uint8).reshape(len(kept), N_BITS // 8)


def reference_stats(
    path: str | os.PathLike,
    smiles_column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_shipped: bool = True,
    device: str | torch.device = "cpu",
) -> ReferenceStats:
    """Statistics of the reference set in ``path``: from the cache, else from the shipped statistics
    (plus fingerprints computed now), else computed now; cached either way."""
    path = Path(path)
    sha256 = file_sha256(path)
    cache = _cache_path(path, sha256, "reference", cache_dir)
    ship = shipped("reference", sha256) if use_shipped else None
    arrays = _load(cache)
    if arrays is None:
        started = time.perf_counter()
        if ship is not None:
            say(f"reference fingerprints of {path.name} (once; under a minute), cached in {cache.parent}")
            # the exceptions hold for the RDKit that found them; another RDKit takes the exact path
            fast = "fingerprint_rows" in ship and shipped_versions().get("rdkit") == rdkit.__version__
            arrays = {FINGERPRINTS: reference_fingerprints(path, smiles_column, ship if fast else None)}
            if len(arrays[FINGERPRINTS]) != int(ship["n"]):
                raise MolgenError(f"{path}: {len(arrays[FINGERPRINTS])} valid molecules, the shipped statistics count {int(ship['n'])}")
        else:
            say(f"reference statistics of {path.name} (once; about 5 min per 100,000 molecules on 2 cores), cached in {cache.parent}")
            arrays = reference_arrays(path, smiles_column, device)
        _save(cache, arrays)
        say(f"reference {path.name} ready in {time.perf_counter() - started:.0f} s")
    if ship is not None:
        arrays = {**ship, **arrays}
    return ReferenceStats(
        path=str(path),
        sha256=sha256,
        n=int(arrays["n"]) if "n" in arrays else len(arrays[FINGERPRINTS]),
        fcd_mu=arrays["fcd_mu"],
        fcd_sigma=arrays["fcd_sigma"],
        fingerprints=arrays[FINGERPRINTS],
        fragments=_counter(arrays, "fragments"),
        scaffolds=_counter(arrays, "scaffolds"),
        properties={name: arrays[f"property_{name}"].astype(np.float64) for name in PROPERTIES},
        source=shipped_source() if ship is not None else "computed",
    )


def smiles_key(canonical: str) -> int:
    """64-bit digest of a canonical SMILES (set membership without storing the strings)."""
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little")


def smiles_keys(canonical: Sequence[str]) -> np.ndarray:
    """``smiles_key`` of each string, as a uint64 array."""
    blake2b = hashlib.blake2b
    digests = b"".join([blake2b(s.encode(), digest_size=8).digest() for s in canonical])
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def _canonical(smiles: str) -> str | None:
    mol = parse(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def _canonical_key(smiles: str) -> int | None:
    canonical = _canonical(smiles)
    return None if canonical is None else smiles_key(canonical)


def training_exceptions(path: str | os.PathLike, smiles_column: str | None = None) -> dict[str, np.ndarray]:
    """What the text of a training file gets wrong as a set of canonical SMILES: the keys of the rows
    that are not RDKit-canonical (or not valid), the keys of their canonical forms, and the number of
    unique canonical SMILES. Shipped for the MOSES train split (276 of its 1.58 M rows), so that Novelty
    needs no canonicalization of 1.6 M molecules."""
    path = Path(path)
    raw = read_column(path, smiles_column)
    canonical = parallel_map(_canonical, raw, desc=f"canonical {path.name}")
    wrong = [(s, c) for s, c in zip(raw, canonical) if c != s]
    keys = np.unique(smiles_keys([c for c in canonical if c is not None]))
    return {
        "not_canonical": np.unique(smiles_keys([s for s, _ in wrong])),
        "canonical_forms": np.unique(smiles_keys([c for _, c in wrong if c is not None])),
        "n_unique": np.array(len(keys)),
    }


def training_keys(
    path: str | os.PathLike,
    smiles_column: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_shipped: bool = True,
) -> tuple[np.ndarray, str]:
    """Sorted unique ``smiles_key`` of the canonical SMILES in a training file (for Novelty), and the
    file's sha256; cached like the reference statistics."""
    path = Path(path)
    sha256 = file_sha256(path)
    cache = _cache_path(path, sha256, "train", cache_dir)
    arrays = _load(cache)
    if arrays is None:
        ship = shipped("train", sha256) if use_shipped else None
        if ship is not None:  # the file's text, corrected by the shipped exceptions: seconds
            text = np.unique(smiles_keys(read_column(path, smiles_column)))
            keys = np.union1d(np.setdiff1d(text, ship["not_canonical"], assume_unique=True), ship["canonical_forms"])
            if len(keys) != int(ship["n_unique"]):
                raise MolgenError(f"{path}: {len(keys)} unique molecules, the shipped statistics count {int(ship['n_unique'])}")
        else:
            say(f"canonical SMILES of the training set {path.name} (once; about 1 min per 500,000 molecules on 2 cores), "
                f"cached in {cache.parent}")  # fmt: skip
            keys = parallel_map(_canonical_key, read_column(path, smiles_column), desc=f"canonical {path.name}")
            keys = np.unique(np.array([k for k in keys if k is not None], dtype=np.uint64))
        arrays = {"keys": keys}
        _save(cache, arrays)
    return arrays["keys"], sha256


def build_shipped(references: Sequence[str | os.PathLike], train: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The arrays of a shipped-statistics file for these reference files and training file."""
    arrays: dict[str, np.ndarray] = {"versions": pack_strings([f"{k} {v}" for k, v in versions().items()])}
    for path in references:
        prefix = f"reference-{file_sha256(path)}/"
        for name, value in reference_arrays(path).items():
            if name == FINGERPRINTS:
                continue
            arrays[prefix + name] = value.astype(np.float32) if name.startswith("property_") else value
        arrays.update({prefix + name: value for name, value in fingerprint_exceptions(path).items()})
    if train is not None:
        prefix = f"train-{file_sha256(train)}/"
        arrays.update({prefix + name: value for name, value in training_exceptions(train).items()})
    return arrays
