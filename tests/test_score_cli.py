"""`molgen score` from the command line: .smi and CSV inputs, JSON report, plots, user errors."""
from __future__ import annotations

import json

import pytest

from molgen.cli import main
from molgen.metrics import MOSES_KEYS

TEST = ["CCN", "c1ccccc1N", "CC(=O)Oc1ccccc1C(=O)O", "Cc1ccccc1", "C1CCCCC1", "CCOC(=O)c1ccccc1", "Oc1ccc(Cl)cc1"]
SCAFFOLDS = ["c1ccc(Cc2ccccc2)cc1", "c1ccc(-c2ccncc2)cc1", "CCc1ccccc1O"]
TRAIN = ["CCO", "c1ccccc1O", "CCCCCC"]
GENERATED = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "Cc1ccccc1", "c1ccc(Cc2ccccc2)cc1", "C1CC"]


@pytest.fixture
def refs(tmp_path):
    paths = {}
    for name, smiles in (("test", TEST), ("test-scaffolds", SCAFFOLDS), ("train", TRAIN)):
        paths[name] = tmp_path / f"{name}.csv"
        paths[name].write_text("SMILES\n" + "\n".join(smiles) + "\n")
    return [arg for name, path in paths.items() for arg in (f"--{name}", str(path))]


def test_score_smi_writes_report_and_plots(tmp_path, refs, capsys):
    gen = tmp_path / "gen.smi"
    gen.write_text("".join(f"{s} mol{i}\n" for i, s in enumerate(GENERATED)))
    out, plots = tmp_path / "report.json", tmp_path / "plots"
    assert main(["score", str(gen), *refs, "--out", str(out), "--plots", str(plots)]) == 0
    table = capsys.readouterr().out
    assert "SNN/TestSF" in table and "aromatic_rings" in table
    report = json.loads(out.read_text())
    assert set(MOSES_KEYS) <= set(report)
    assert report["valid"] == pytest.approx(5 / 6)
    assert report["Novelty"] == pytest.approx(3 / 5)
    assert report["counts"]["input"] == 6 and report["counts"]["valid"] == 5
    assert set(report["versions"]) == {"molgen", "rdkit", "fcd_torch", "torch"}
    assert set(report["structure"]) == {"rings", "aromatic_rings", "aromatic_atom_fraction"}
    for name in ("properties.png", "structure.png", "molecules.png"):
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_score_csv_with_another_column_name_and_first_n(tmp_path, refs):
    gen = tmp_path / "gen.csv"
    gen.write_text("id,structure\n" + "".join(f"{i},{s}\n" for i, s in enumerate(GENERATED)))
    out = tmp_path / "report.json"
    assert main(["score", str(gen), "--smiles-column", "structure", "--n", "3", *refs, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["input"] == 3 and report["valid"] == 1.0


def test_score_missing_column_is_a_user_error(tmp_path, refs, capsys):
    gen = tmp_path / "gen.csv"
    gen.write_text("id,structure\n0,CCO\n")
    assert main(["score", str(gen), *refs]) == 2
    err = capsys.readouterr().err
    assert "structure" in err and "Traceback" not in err


def test_score_missing_reference_is_a_user_error(tmp_path, refs, capsys):
    gen = tmp_path / "gen.smi"
    gen.write_text("CCO\n")
    assert main(["score", str(gen), *refs, "--test", str(tmp_path / "nope.csv")]) == 2
    assert "nope.csv" in capsys.readouterr().err
