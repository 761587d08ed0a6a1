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

import numpy as np
from rdkit import Chem

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


def _screen_bits(mol: Chem.Mol) -> np.ndarray:
    on = np.zeros(_SCREEN_BITS, dtype=bool)
    on[list(Chem.PatternFingerprint(mol, _SCREEN_BITS).GetOnBits())] = True
    return np.packbits(on).view(np.uint64)


@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[list[Chem.Mol], np.ndarray]:
    queries = []
    for name, smarts in filter_smarts():
        query = Chem.MolFromSmarts(smarts)
        if query is None:
            raise ValueError(f"invalid filter SMARTS {name}: {smarts}")
        queries.append(query)
    return queries, np.stack([_screen_bits(q) for q in queries])


def matching_filters(mol: Chem.Mol, screen: bool = True) -> list[int]:
    """Indices (into ``filter_smarts()``) of the MCF/PAINS patterns found in ``mol`` with explicit Hs."""
    queries, query_bits = _patterns()
    mol = Chem.AddHs(mol)
    if screen:
        candidates = np.flatnonzero(~(query_bits & ~_screen_bits(mol)).any(axis=1)).tolist()
    else:
        candidates = range(len(queries))
    return [i for i in candidates if mol.HasSubstructMatch(queries[i])]


def passes_filters(mol: Chem.Mol) -> bool:
    """True when ``mol`` passes the MOSES filters (the definition of the ``Filters`` metric)."""
    if any(len(ring) >= 8 for ring in mol.GetRingInfo().AtomRings()):
        return False
    if any(atom.GetFormalCharge() != 0 for atom in mol.GetAtoms()):
        return False
    if any(atom.GetSymbol() not in ALLOWED_ATOMS for atom in mol.GetAtoms()):
        return False
    if matching_filters(mol):
        return False
    smiles = Chem.MolToSmiles(mol, isomericSmiles=False)
    return bool(smiles) and Chem.MolFromSmiles(smiles) is not None
