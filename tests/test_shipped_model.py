"""Golden test: the shipped checkpoint and a fixed seed give fixed first molecules."""
import pytest
import torch

from molgen.sample import DEFAULT_CHECKPOINT, NEAR_CHECKPOINT, Generator

GOLDEN_SEED0 = [  # seed 0, T = 1, fp32, the default decoding (relaxed, invalid draws redrawn): drawn when shipped
    "CCC(=O)Nc1cccc(Oc2cccc3cccnc23)c1",
    "O=C(Nc1cccnc1-n1cncn1)N1CCCC(c2ccn[nH]2)C1",
    "COc1ccccc1C(=O)NC1CCN(c2ccccc2Cl)C1=O",
    "CCCC(C)(C)NC(=O)Nc1ccc(N(C)C)cn1",
]


@pytest.mark.parametrize("checkpoint", [DEFAULT_CHECKPOINT, NEAR_CHECKPOINT], ids=["moses", "near"])
def test_shipped_checkpoints_load_weights_only(checkpoint):
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert payload["format"] == "molgen-model"
    assert checkpoint.stat().st_size < 50 * 2**20


def test_setup_bundles_the_files_molgen_resources_names():
    import ast
    from pathlib import Path

    from molgen import resources

    tree = ast.parse((Path(resources.REPOSITORY) / "setup.py").read_text())
    bundled = next(ast.literal_eval(node.value) for node in ast.walk(tree)
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "BUNDLED")  # fmt: skip
    assert tuple(bundled) == resources.BUNDLED


def test_fixed_seed_gives_fixed_first_molecules():
    gen = Generator.load()
    assert gen.tokenizer.constraints == "relaxed" and gen.redraws_invalid  # the shipped default decoding
    rows = gen.sample(4, seed=0, batch_size=4)
    assert [r["SMILES"] for r in rows] == GOLDEN_SEED0
    assert all(r["valid"] for r in rows)


def test_cpu_device_and_the_cli_give_the_golden_molecules(tmp_path):
    import csv

    from molgen.cli import main

    rows = Generator.load(device="cpu", precision="32-true").sample(4, seed=0, batch_size=4)
    assert [r["SMILES"] for r in rows] == GOLDEN_SEED0
    out = tmp_path / "lib.csv"
    assert main(["sample", "-n", "4", "--seed", "0", "--batch-size", "4", "--device", "cpu", "--out", str(out)]) == 0
    assert [r["SMILES"] for r in csv.DictReader(out.open())] == GOLDEN_SEED0
