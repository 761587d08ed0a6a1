"""One pass over a list of SMILES on every core: each molecule is parsed once and everything the
set metrics need is taken from it (canonical SMILES, fingerprint, ChemNet tokens, fragments,
scaffold, properties, filters), so the main process only combines compact columns."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from rdkit import Chem, RDLogger

from molgen.metrics.fcd import PAD_LEN, chemnet_tokens
from molgen.metrics.filters import passes_filters, screen_bits
from molgen.metrics.fragments import brics_fragments, scaffold
from molgen.metrics.properties import PROPERTIES, properties
from molgen.metrics.similarity import N_BITS, morgan_bits
from molgen.parallel import parallel_map

RDLogger.DisableLog("rdApp.*")


def parse(smiles: str) -> Chem.Mol | None:
    """An RDKit molecule from SMILES, or None unless it parses, sanitizes and has at least one atom."""
    if not smiles:
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    return mol


def _describe(item: tuple[str, bool]) -> tuple | None:
    smiles, generated = item
    mol = parse(smiles)
    if mol is None:
        return None
    canonical = Chem.MolToSmiles(mol)
    if not generated:  # reference statistics: measured as read, no filters (as MOSES)
        return _record(canonical, mol, properties(mol), False)
    # as MOSES: a generated set is kept as canonical SMILES and measured on molecules re-read from them
    reread = parse(canonical)
    mol = reread if reread is not None else mol
    h_mol = Chem.AddHs(mol)
    h_bits = screen_bits(h_mol)  # one pattern fingerprint screens both the filters and QED's alerts
    passes = passes_filters(mol, h_mol, h_bits, readable=canonical if reread is not None else None)
    return _record(canonical, mol, properties(mol, h_bits), passes)


def _record(canonical: str, mol: Chem.Mol, props: tuple, passes: bool) -> tuple:
    return (
        canonical,
        morgan_bits(mol).tobytes(),
        chemnet_tokens(canonical).tobytes(),
        brics_fragments(mol),
        scaffold(mol),
        props,
        passes,
    )


@dataclass
class MoleculeTable:
    """Per-molecule results for the valid entries of a SMILES list, in input order."""

    valid: np.ndarray  # bool [n_input]
    smiles: list[str]  # canonical SMILES of the valid entries
    fingerprints: np.ndarray  # uint8 [n, 128], packed Morgan bits
    chemnet_tokens: np.ndarray  # uint8 [n, 350]
    fragments: Counter
    scaffolds: Counter
    properties: dict[str, np.ndarray]  # name -> float64 [n]
    passes_filters: np.ndarray  # bool [n]

    def __len__(self) -> int:
        return len(self.smiles)


def describe(smiles: Sequence[str], generated: bool, desc: str = "molecules") -> MoleculeTable:
    """Describe every valid molecule of ``smiles`` on all cores.

    ``generated=True`` follows MOSES for a generated set: molecules are canonicalized and re-read
    before measuring, and the filters are checked. ``False`` measures them as read and skips the
    filters, as MOSES does for its reference statistics (``passes_filters`` is then all False).
    """
    results = parallel_map(_describe, [(s, generated) for s in smiles], desc=desc, chunksize=500)
    valid = np.array([r is not None for r in results], dtype=bool)
    kept = [r for r in results if r is not None]
    n = len(kept)
    fragments: Counter = Counter()
    scaffolds: Counter = Counter()
    for record in kept:
        fragments.update(record[3])
        if record[4] is not None:
            scaffolds[record[4]] += 1
    props = np.array([r[5] for r in kept], dtype=np.float64).reshape(n, len(PROPERTIES))
    return MoleculeTable(
        valid=valid,
        smiles=[r[0] for r in kept],
        fingerprints=np.frombuffer(b"".join(r[1] for r in kept), dtype=np.uint8).reshape(n, N_BITS // 8),
        chemnet_tokens=np.frombuffer(b"".join(r[2] for r in kept), dtype=np.uint8).reshape(n, PAD_LEN),
        fragments=fragments,
        scaffolds=scaffolds,
        properties={name: props[:, i] for i, name in enumerate(PROPERTIES)},
        passes_filters=np.array([r[6] for r in kept], dtype=bool),
    )
