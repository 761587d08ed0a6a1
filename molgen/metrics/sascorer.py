"""RDKit's Contrib synthetic-accessibility scorer (Ertl & Schuffenhauer 2009), loaded from the RDKit install."""
from __future__ import annotations

import functools
import importlib.util
import os
from types import ModuleType

from rdkit import Chem
from rdkit.Chem import RDConfig

from molgen.errors import MolgenError


@functools.lru_cache(maxsize=1)
def _module() -> ModuleType:
    path = os.path.join(RDConfig.RDContribDir, "SA_Score", "sascorer.py")
    if not os.path.exists(path):
        raise MolgenError(f"RDKit's Contrib SA_Score is missing ({path}); install the rdkit wheel from PyPI")
    spec = importlib.util.spec_from_file_location("molgen_rdkit_sascorer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.readFragmentScores()
    return module


def sa_score(mol: Chem.Mol) -> float:
    """Synthetic accessibility of ``mol``: 1 (easy) to 10 (hard)."""
    return float(_module().calculateScore(mol))
