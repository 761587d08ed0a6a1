"""RDKit canonicalization: the one definition of a valid molecule and its canonical SMILES."""
from __future__ import annotations

from rdkit import Chem, RDLogger

RDLogger.DisableLog("rdApp.*")


def canonical_or_reason(smiles: str) -> tuple[str | None, str]:
    """(canonical SMILES, "") or (None, why RDKit rejected it)."""
    if not smiles:
        return None, "empty SMILES"
    mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return None, "cannot parse SMILES"
    if mol.GetNumAtoms() == 0:
        return None, "no atoms"
    try:
        Chem.SanitizeMol(mol)
    except Exception as err:  # RDKit raises several sanitization exception types
        return None, str(err).splitlines()[0] or type(err).__name__
    return Chem.MolToSmiles(mol), ""


def canonicalize(smiles: str) -> str | None:
    """Canonical RDKit SMILES, or None when the string is not a valid molecule."""
    return canonical_or_reason(smiles)[0]
