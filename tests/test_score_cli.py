"""`molgen score` from the command line: .smi and CSV inputs, JSON report, plots, user errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

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
    assert main(["score", str(gen), "--smiles-column", "structure", "--first", "3", *refs, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["input"] == 3 and report["valid"] == 1.0  # CCO, c1ccccc1O, CC(=O)Nc1ccc(O)cc1


def test_score_n_is_a_seeded_random_subset_in_file_order(tmp_path, refs, capsys):
    gen = tmp_path / "gen.smi"
    gen.write_text("".join(f"{s}\n" for s in GENERATED))
    reports = {}
    auto = ["--device", "cpu"] if torch.cuda.is_available() else []  # without a GPU, auto is the CPU
    for name, rows in (("n", ["--n", "3", *auto]), ("seed0", ["--n", "3", "--seed", "0", *auto]),
                       ("cpu", ["--n", "3", "--device", "cpu"])):  # fmt: skip
        out = tmp_path / f"{name}.json"
        assert main(["score", str(gen), *rows, *refs, "--out", str(out)]) == 0
        reports[name] = json.loads(out.read_text())
        reports[name].pop("seconds")
    # default_rng(0).choice(6, 3, replace=False), sorted: rows 3, 4, 5 = Cc1ccccc1, c1ccc(Cc2ccccc2)cc1, C1CC
    assert reports["n"]["counts"]["input"] == 3 and reports["n"]["valid"] == pytest.approx(2 / 3)
    assert reports["n"] == reports["seed0"] == reports["cpu"]
    assert "molgen score: scoring 3 of the 6 rows of" in capsys.readouterr().err


def test_select_rows():
    from molgen.cli.score import DEFAULT_N, select_rows

    rows = [f"row{i}" for i in range(10)]
    assert select_rows(rows, n=4, seed=1) == ["row3", "row4", "row6", "row9"]
    index = np.sort(np.random.default_rng(1).choice(10, 4, replace=False))
    assert select_rows(rows, n=4, seed=1) == [rows[i] for i in index]
    assert select_rows(rows, n=4) == select_rows(rows, n=4, seed=0) != select_rows(rows, n=4, seed=1)
    assert select_rows(rows, first=4) == rows[:4]
    assert select_rows(rows, n=10) == select_rows(rows, first=10) == select_rows(rows, n=0) == rows  # `make run`
    assert select_rows(rows, n=11) == select_rows(rows) == rows and DEFAULT_N == 30000
    big = [str(i) for i in range(DEFAULT_N + 5)]
    chosen = select_rows(big)
    assert len(chosen) == DEFAULT_N and chosen == sorted(chosen, key=int) and chosen == select_rows(big, n=DEFAULT_N)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--n", "-1"], "--n must be 0 (all) or positive, got -1"),
        (["--first", "0"], "--first must be positive, got 0"),
        (["--n", "3", "--seed", "-2"], "--seed must be 0 or positive, got -2"),
    ],
)
def test_score_row_options_are_user_errors(tmp_path, refs, capsys, args, message):
    gen = tmp_path / "gen.smi"
    gen.write_text("CCO\n")
    assert main(["score", str(gen), *args, *refs]) == 2
    assert capsys.readouterr().err == f"molgen score: error: {message}\n"


def test_score_n_and_first_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["score", str(tmp_path / "gen.smi"), "--n", "3", "--first", "3"])
    assert exit_.value.code == 2
    assert "argument --first: not allowed with argument --n" in capsys.readouterr().err


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
