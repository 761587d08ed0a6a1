"""BRICS fragments and Bemis-Murcko scaffolds, and the cosine similarity of their count vectors."""
from __future__ import annotations

import math
from typing import Mapping

from rdkit import Chem
from rdkit.Chem.Scaffolds import MurckoScaffold


def brics_fragments(mol: Chem.Mol) -> list[str]:
    """SMILES of the pieces of ``mol`` cut at its BRICS bonds (with dummy atoms at the cuts)."""
    return Chem.MolToSmiles(Chem.FragmentOnBRICSBonds(mol)).split(".")


def scaffold(mol: Chem.Mol, min_rings: int = 2) -> str | None:
    """Canonical SMILES of the Bemis-Murcko scaffold, or None when it has fewer than ``min_rings`` rings."""
    try:
        core = MurckoScaffold.GetScaffoldForMol(mol)
    except (ValueError, RuntimeError):
        return None
    smiles = Chem.MolToSmiles(core)
    if not smiles or core.GetRingInfo().NumRings() < min_rings:
        return None
    return smiles


def cosine_similarity(reference: Mapping[str, int], generated: Mapping[str, int]) -> float:
    """Cosine similarity of two count vectors given as {key: count}; NaN when either is empty."""
    if not reference or not generated:
        return float("nan")
    dot = sum(count * reference.get(key, 0) for key, count in generated.items())
    norm_ref = math.sqrt(sum(c * c for c in reference.values()))
    norm_gen = math.sqrt(sum(c * c for c in generated.values()))
    return dot / (norm_ref * norm_gen)
