"""Per-molecule properties (MOSES: logP, SA, QED, weight; SELFIES biases: rings, aromaticity) and W1."""
from __future__ import annotations

import functools
import re

import numpy as np
from rdkit import Chem
from rdkit.Chem import QED, Crippen, Descriptors, MolSurf, rdMolDescriptors
from scipy.stats import wasserstein_distance

from molgen.metrics.filters import screen_bits
from molgen.metrics.sascorer import sa_score

#: Property columns, in the order ``properties(mol)`` returns them.
PROPERTIES = ("logP", "SA", "QED", "weight", "rings", "aromatic_rings", "aromatic_atom_fraction")


@functools.lru_cache(maxsize=1)
def _alerts() -> tuple[list[Chem.Mol], np.ndarray, np.ndarray]:
    """QED's structural alerts, their pattern-fingerprint bits, and which of them may be screened.

    An alert found in a molecule is also found in the molecule with explicit hydrogens, so its bits
    are a subset of that molecule's, unless the alert tests an atom's explicit degree (D), which
    explicit hydrogens change: those are always matched.
    """
    alerts = list(QED.StructuralAlerts)
    bits = np.stack([screen_bits(alert) for alert in alerts])
    screenable = np.array([re.search(r"D\d", smarts) is None for smarts in QED.StructuralAlertSmarts])
    return alerts, bits, screenable


def qed_properties(mol: Chem.Mol, h_bits: np.ndarray | None = None) -> QED.QEDproperties:
    """RDKit's ``QED.properties(mol)``, term for term; with ``h_bits`` (``screen_bits`` of
    ``Chem.AddHs(mol)``) the structural alerts are screened by pattern fingerprint before matching."""
    if mol.GetNumAtoms() != mol.GetNumHeavyAtoms():  # else RemoveHs would only copy the molecule
        mol = Chem.RemoveHs(mol)  # (without the copy, RDKit caches logP/TPSA on the caller's molecule)
    alerts, alert_bits, screenable = _alerts()
    if h_bits is None:
        candidates = range(len(alerts))
    else:
        candidates = np.flatnonzero(~screenable | ~(alert_bits & ~h_bits).any(axis=1)).tolist()
    return QED.QEDproperties(
        MW=rdMolDescriptors._CalcMolWt(mol),
        ALOGP=Crippen.MolLogP(mol),
        HBA=sum(len(mol.GetSubstructMatches(p)) for p in QED.Acceptors if mol.HasSubstructMatch(p)),
        HBD=rdMolDescriptors.CalcNumHBD(mol),
        PSA=MolSurf.TPSA(mol),
        ROTB=rdMolDescriptors.CalcNumRotatableBonds(mol, rdMolDescriptors.NumRotatableBondsOptions.Strict),
        AROM=len(Chem.GetSSSR(Chem.DeleteSubstructs(Chem.Mol(mol), QED.AliphaticRings))),
        ALERTS=sum(1 for i in candidates if mol.HasSubstructMatch(alerts[i])),
    )


def properties(mol: Chem.Mol, h_bits: np.ndarray | None = None) -> tuple[float, ...]:
    """The ``PROPERTIES`` of ``mol``: Crippen logP, SA score, QED, average molecular weight (Da),
    ring count (SSSR), aromatic ring count, fraction of heavy atoms that are aromatic.

    ``h_bits``: optional ``screen_bits(Chem.AddHs(mol))``, which speeds up QED (same values).
    """
    n_atoms = mol.GetNumAtoms()
    n_aromatic = sum(atom.GetIsAromatic() for atom in mol.GetAtoms())
    qed_inputs = qed_properties(mol, h_bits)  # MolWt and Crippen logP of RemoveHs(mol) among them
    if n_atoms == mol.GetNumHeavyAtoms():  # no explicit H atoms: RemoveHs(mol) is mol, reuse them
        logp, weight = qed_inputs.ALOGP, qed_inputs.MW
    else:
        logp, weight = Crippen.MolLogP(mol), Descriptors.MolWt(mol)
    return (
        logp,
        sa_score(mol),
        QED.qed(mol, qedProperties=qed_inputs),
        weight,
        float(mol.GetRingInfo().NumRings()),
        float(rdMolDescriptors.CalcNumAromaticRings(mol)),
        n_aromatic / n_atoms if n_atoms else 0.0,
    )


def wasserstein(reference: np.ndarray, generated: np.ndarray) -> float:
    """Wasserstein-1 (earth mover's) distance between two 1-D samples, in the samples' units."""
    if len(reference) == 0 or len(generated) == 0:
        return float("nan")
    return float(wasserstein_distance(reference, generated))
