"""Per-molecule properties (MOSES: logP, SA, QED, weight; SELFIES biases: rings, aromaticity) and W1."""
from __future__ import annotations

import numpy as np
from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors, QED, rdMolDescriptors
from scipy.stats import wasserstein_distance

from molgen.metrics.sascorer import sa_score

#: Property columns, in the order ``properties(mol)`` returns them.
PROPERTIES = ("logP", "SA", "QED", "weight", "rings", "aromatic_rings", "aromatic_atom_fraction")


def properties(mol: Chem.Mol) -> tuple[float, ...]:
    """The ``PROPERTIES`` of ``mol``: Crippen logP, SA score, QED, average molecular weight (Da),
    ring count (SSSR), aromatic ring count, fraction of heavy atoms that are aromatic."""
    n_atoms = mol.GetNumAtoms()
    n_aromatic = sum(atom.GetIsAromatic() for atom in mol.GetAtoms())
    qed_inputs = QED.properties(mol)  # computes MolWt and Crippen logP of RemoveHs(mol)
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
