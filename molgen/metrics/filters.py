"""MOSES medicinal-chemistry filters: MCF and PAINS SMARTS (shipped by MOSES, MIT), allowed atoms,
no charges, no ring of 8 or more atoms.

The ~500 SMARTS are screened with RDKit's pattern fingerprints before matching: a pattern can only
match when its fingerprint bits are a subset of the molecule's (the screen RDKit's substructure
libraries use), which removes ~95% of the matching work without changing any result.
"""
from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Iterator

import numpy as np
from rdkit import Chem, DataStructs

DATA = Path(__file__).parent / "data"
ALLOWED_ATOMS = frozenset({"C", "N", "S", "O", "F", "Cl", "Br", "H"})
_SCREEN_BITS = 2048


def filter_smarts() -> list[tuple[str, str]]:
    """(name, SMARTS) of every MOSES MCF and PAINS pattern, read from the package data."""
    patterns = []
    with open(DATA / "mcf.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            patterns.append((row["names"].strip(), row["smarts"].strip()))
    with open(DATA / "wehi_pains.csv", newline="") as handle:
        for smarts, name in csv.reader(handle):
            patterns.append((name.strip(), smarts.strip()))
    return patterns


def screen_bits(mol: Chem.Mol) -> np.ndarray:
    """RDKit pattern fingerprint of ``mol`` (a molecule or a SMARTS query) as packed uint64 words:
    a query can match a molecule only if its bits are a subset of the molecule's."""
    # the bit vector's raw bytes (bit i of the fingerprint is bit i % 8 of byte i // 8): a copy
    # of 256 bytes, where listing the on-bits of an H-added molecule took half the screen's time
    return np.frombuffer(DataStructs.BitVectToBinaryText(Chem.PatternFingerprint(mol, _SCREEN_BITS)), dtype=np.uint64)


@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[list[Chem.Mol], np.ndarray]:
    queries = []
    for name, smarts in filter_smarts():
        query = Chem.MolFromSmarts(smarts)
        if query is None:
            raise ValueError(f"invalid filter SMARTS {name}: {smarts}")
        queries.append(query)
    return queries, np.stack([screen_bits(q) for q in queries])


def matching_filters(
    mol: Chem.Mol, screen: bool = True, h_mol: Chem.Mol | None = None, h_bits: np.ndarray | None = None
) -> list[int]:
    """Indices (into ``filter_smarts()``) of the MCF/PAINS patterns found in ``mol`` with explicit Hs.

    ``h_mol`` (``Chem.AddHs(mol)``) and ``h_bits`` (its ``screen_bits``) may be passed when already made.
    """
    return list(_matches(mol, screen, h_mol, h_bits))


def _matches(mol: Chem.Mol, screen: bool, h_mol: Chem.Mol | None, h_bits: np.ndarray | None) -> Iterator[int]:
    """``matching_filters`` lazily: the filter verdict stops at the first match, as MOSES's does."""
    queries, query_bits = _patterns()
    h_mol = Chem.AddHs(mol) if h_mol is None else h_mol
    if screen:
        h_bits = screen_bits(h_mol) if h_bits is None else h_bits
        candidates = np.flatnonzero(~(query_bits & ~h_bits).any(axis=1)).tolist()
    else:
        candidates = range(len(queries))
    return (i for i in candidates if h_mol.HasSubstructMatch(queries[i]))


def passes_filters(
    mol: Chem.Mol, h_mol: Chem.Mol | None = None, h_bits: np.ndarray | None = None, readable: str | None = None
) -> bool:
    """True when ``mol`` passes the MOSES filters (the definition of the ``Filters`` metric).

    ``readable``: a SMILES of ``mol`` known to parse (skips re-reading the non-isomeric SMILES when
    it is the same string).
    """
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return False
    if any(atom.GetSymbol() not in ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    if next(_matches(mol, True, h_mol, h_bits), None) is not None:
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    if smiles and smiles == readable:
        return True
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None
