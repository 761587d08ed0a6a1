"""Shared fixtures: an isolated token cache and a few small SMILES files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tiny test models run faster on one thread, and the suite must stay fast on a shared 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample.csv"
SMALL_SMILES = [
    "CCO",
    "c1ccccc1O",
    "CC(=O)Nc1ccc(O)cc1",
    "CN1CCC[C@H]1c1cccnc1",
    "O=C(O)c1ccccc1OC(C)=O",
    "Cc1ccc(S(N)(=O)=O)cc1",
    "CC(C)Cc1ccc(C(C)C(=O)O)cc1",
    "Clc1ccc(Br)cc1F",
]


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread in every test, restored afterwards (training and sampling may change it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    os.environ["MOLGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("molgen-cache"))
    yield


@pytest.fixture
def small_csv(tmp_path: Path) -> Path:
    path = tmp_path / "small.csv"
    path.write_text("id,SMILES\n" + "".join(f"m{i},{s}\n" for i, s in enumerate(SMALL_SMILES)))
    return path
