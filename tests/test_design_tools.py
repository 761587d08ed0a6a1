"""Design tools of `molgen sample` and `molgen interpolate`: output formats, sampling around seed
molecules (--near), substructure filtering (--scaffold)."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from rdkit import Chem, DataStructs
from rdkit.Chem import rdFingerprintGenerator

from molgen.errors import MolgenError
from molgen.formats import write_molecules
from molgen.library import Filters
from molgen.sample import DEFAULT_CHECKPOINT, NEAR_CHECKPOINT, Generator
from reliability_fixtures import assert_user_error, run_cli, sample_smiles, tiny_model

SEED_MOLECULE = "Cc1ccc(NC(=O)c2ccccc2)cc1"


def _tanimoto_1024(a: str, b: str) -> float:
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=1024)
    return DataStructs.TanimotoSimilarity(gen.GetFingerprint(Chem.MolFromSmiles(a)), gen.GetFingerprint(Chem.MolFromSmiles(b)))


def _read_csv(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ----------------------------------------------------------------------------- formats


def test_sdf_reads_back_with_every_molecule_and_its_properties(tmp_path):
    rows = [
        {"SMILES": "CCO", "value": 0.25, "name": "ethanol", "ok": True},
        {"SMILES": "c1ccccc1O", "value": 1.5, "name": "phenol", "ok": False},
        {"SMILES": None, "value": 9.0, "name": "invalid", "ok": False},  # no structure: left out
    ]
    summary = write_molecules(tmp_path / "m.sdf", rows, name_column="name")
    assert summary == {"written": 2, "skipped": 1}
    mols = list(Chem.SDMolSupplier(str(tmp_path / "m.sdf")))
    assert [Chem.MolToSmiles(m) for m in mols] == ["CCO", "Oc1ccccc1"]
    assert [m.GetProp("_Name") for m in mols] == ["ethanol", "phenol"]
    assert [m.GetDoubleProp("value") for m in mols] == [0.25, 1.5]
    assert [m.GetProp("ok") for m in mols] == ["true", "false"]
    assert mols[0].GetConformer().Is3D() is False and mols[1].GetNumConformers() == 1  # 2-D depiction


def test_smi_and_csv_outputs(tmp_path):
    rows = [{"SMILES": "CCO", "value": 1.0}, {"SMILES": "", "value": 2.0}, {"SMILES": "CCN", "value": 3.0}]
    assert write_molecules(tmp_path / "m.smi", rows) == {"written": 2, "skipped": 1}
    assert (tmp_path / "m.smi").read_text() == "CCO\tmolgen_1\nCCN\tmolgen_3\n"
    assert write_molecules(tmp_path / "m.csv", rows) == {"written": 3, "skipped": 0}
    assert _read_csv(tmp_path / "m.csv") == [
        {"SMILES": "CCO", "value": "1.0000"}, {"SMILES": "", "value": "2.0000"}, {"SMILES": "CCN", "value": "3.0000"}
    ]  # fmt: skip


def test_unknown_extension_is_a_user_error_and_writes_nothing(tmp_path):
    with pytest.raises(MolgenError, match=r"m\.mol2: unknown molecule file type '\.mol2'; use \.csv, \.smi, \.sdf"):
        write_molecules(tmp_path / "m.mol2", [{"SMILES": "CCO"}])
    assert list(tmp_path.iterdir()) == []


def test_sample_writes_sdf_of_valid_molecules_only(tmp_path, capsys):
    model = tiny_model(tmp_path / "model.pt")
    code, out, err = run_cli(capsys, ["sample", "--model", model, "-n", 30, "--out", tmp_path / "lib.sdf"])
    assert code == 0, err
    summary = json.loads(out)
    mols = list(Chem.SDMolSupplier(str(tmp_path / "lib.sdf")))
    assert summary["format"] == "sdf" and summary["written"] == 30 == len(mols)
    assert all(m is not None for m in mols) and summary["drawn"] >= 30
    assert all(m.GetProp("valid") == "true" and m.HasProp("nll") and m.HasProp("selfies") for m in mols)
    code, _, _ = run_cli(capsys, ["sample", "--model", model, "-n", 30, "--out", tmp_path / "lib.smi"])
    lines = (tmp_path / "lib.smi").read_text().splitlines()
    assert code == 0 and len(lines) == 30 and all(Chem.MolFromSmiles(line.split("\t")[0]) for line in lines)


# ----------------------------------------------------------------------------- --near, --scaffold


def test_near_rows_carry_the_seed_and_its_exact_similarity(tmp_path, capsys):
    model = tiny_model(tmp_path / "model.pt")
    seeds = tmp_path / "seeds.csv"
    seeds.write_text("SMILES\n" + "\n".join(sample_smiles(3)) + "\n")
    code, out, err = run_cli(capsys, ["sample", "--model", model, "-n", 4, "--near", seeds, "--out", tmp_path / "near.csv"])
    assert code == 0, err
    rows = _read_csv(tmp_path / "near.csv")
    assert len(rows) == 12 and json.loads(out)["written"] == 12  # n per seed
    canonical = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in sample_smiles(3)]
    assert sorted({r["seed_smiles"] for r in rows}) == sorted(canonical)
    assert all(sum(r["seed_smiles"] == c for r in rows) == 4 for c in canonical)
    for r in rows:
        if r["valid"] == "true":
            assert float(r["similarity"]) == pytest.approx(_tanimoto_1024(r["SMILES"], r["seed_smiles"]), abs=1e-4)
        else:
            assert r["similarity"] == ""


def test_near_samples_of_the_shipped_model_are_closer_to_their_seed_than_prior_samples():
    gen = Generator.load()
    near = gen.sample(100, seed=0, near=SEED_MOLECULE)
    prior = gen.sample(100, seed=0)
    near_sim = np.mean([r["similarity"] or 0.0 for r in near])
    prior_sim = np.mean([_tanimoto_1024(r["SMILES"], SEED_MOLECULE) if r["SMILES"] else 0.0 for r in prior])
    # measured with the one-epoch model: 0.197 (sigma 1) against 0.10 for prior samples
    assert near_sim > prior_sim + 0.05, (near_sim, prior_sim)
    closer = gen.sample(100, seed=0, near=SEED_MOLECULE, sigma=0.0)
    assert np.mean([r["similarity"] or 0.0 for r in closer]) > near_sim  # z at the posterior mean


def test_near_model_meets_the_issue_gap_over_its_prior_samples():
    """The --near default (the 24-nat-latent model): its draws around four seeds are at least 0.2
    closer to them (mean Tanimoto) than its prior draws, at its own posterior width and T = 1."""
    gen = Generator.load(NEAR_CHECKPOINT)
    seeds = sample_smiles(4)
    near = gen.sample(25, seed=0, near=seeds)
    prior = [r["SMILES"] for r in gen.sample(100, seed=0)]
    near_sim = np.mean([r["similarity"] or 0.0 for r in near])
    prior_sim = np.mean([[_tanimoto_1024(m, s) if m else 0.0 for m in prior] for s in seeds])
    assert len(near) == 100 and all(r["valid"] for r in near)
    assert near_sim > prior_sim + 0.2, (near_sim, prior_sim)  # measured: 0.378 vs 0.144 (the library model, step 60,060: +0.100)


def test_draws_around_many_seeds_go_only_to_the_seeds_that_still_want_rows(tmp_path):
    import torch

    from molgen.model.generate import posterior_source

    gen = Generator.load()
    tokens, lengths, _ = gen._tokens(sample_smiles(4))
    wanted = np.array([0, 2, 0, 1])
    draw = posterior_source(gen.model, tokens, lengths, 1.0, wanted)
    assert draw(5, torch.Generator().manual_seed(0))[2].tolist() == [1, 3, 1, 3, 1]
    wanted[1] = 0
    assert draw(2, torch.Generator().manual_seed(0))[2].tolist() == [3, 3]
    wanted[3] = 0  # none left (draws in flight): every seed in turn again
    assert draw(4, torch.Generator().manual_seed(0))[2].tolist() == [0, 1, 2, 3]

    # one valid molecule around each of 40 seeds, invalid draws redrawn: the redraws go to the few
    # seeds whose first draw was invalid, not round all 40 again
    seeds = sample_smiles(40)
    summary = gen.write(tmp_path / "near.csv", 1, near=seeds, batch_size=16, seed=0, progress=False)
    assert summary["written"] == 40 and len(_read_csv(tmp_path / "near.csv")) == 40
    expected = 40 / summary["valid_fraction"]  # draws needed at this validity, plus the batch in flight
    assert summary["drawn"] <= expected + 16, summary  # measured: 49 (round all 40 seeds each time: 68)


def test_near_without_a_model_loads_the_near_model_and_says_so(tmp_path, capsys):
    code, out, err = run_cli(capsys, ["sample", "-n", 2, "--near", SEED_MOLECULE, "--out", tmp_path / "n.smi"])
    assert code == 0, err
    assert json.loads(out)["model"] == str(NEAR_CHECKPOINT)
    code, out, err = run_cli(capsys, ["sample", "-n", 2, "--out", tmp_path / "p.smi"])
    assert code == 0, err
    assert json.loads(out)["model"] == str(DEFAULT_CHECKPOINT)


def test_scaffold_keeps_only_molecules_with_the_substructure_and_reports_acceptance(tmp_path):
    gen = Generator.load()
    summary = gen.write(tmp_path / "s.csv", 20, scaffold="c1ccncc1", seed=0, batch_size=64, progress=False)
    rows = _read_csv(tmp_path / "s.csv")
    pattern = Chem.MolFromSmarts("c1ccncc1")
    assert len(rows) == 20 and all(Chem.MolFromSmiles(r["SMILES"]).HasSubstructMatch(pattern) for r in rows)
    assert summary["written"] == 20 and summary["drawn"] > 20
    assert summary["acceptance_rate"] == pytest.approx(20 / summary["drawn"])
    with pytest.raises(MolgenError, match="--scaffold 'c1cc\\(': not a SMARTS or SMILES substructure"):
        gen.sample(5, filters=Filters(scaffold="c1cc("))


def test_scaffold_that_never_matches_stops_at_the_draw_limit(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOLGEN_WORKERS", "1")
    model = tiny_model(tmp_path / "model.pt")
    argv = ["sample", "--model", model, "-n", 5, "--scaffold", "[Se]", "--out", tmp_path / "s.csv"]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, "only 0 of 5 molecules passed the filters after 100 draws", "--scaffold")
    assert not (tmp_path / "s.csv").exists()


def test_near_needs_a_usable_seed(tmp_path, capsys):
    model = tiny_model(tmp_path / "model.pt")
    code, _, err = run_cli(capsys, ["sample", "--model", model, "-n", 3, "--near", "C1CC", "--out", tmp_path / "x.csv"])
    assert_user_error(code, err, "smiles[0] 'C1CC': invalid SMILES")
    code, _, err = run_cli(capsys, ["sample", "--model", model, "-n", 3, "--near", "CCO", "--component", 1,
                                    "--out", tmp_path / "x.csv"])  # fmt: skip
    assert_user_error(code, err, "either a mixture component or seed molecules")


# ----------------------------------------------------------------------------- interpolate


def test_interpolate_cli_writes_the_path_with_similarities_to_both_ends(tmp_path, capsys):
    a, b = sample_smiles(2)
    code, out, err = run_cli(capsys, ["interpolate", a, b, "--steps", 6, "--out", tmp_path / "path.csv"])
    assert code == 0, err
    rows = _read_csv(tmp_path / "path.csv")
    assert [int(r["step"]) for r in rows] == list(range(6)) and float(rows[-1]["t"]) == 1.0
    ca, cb = (Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in (a, b))
    for r in rows:
        if r["SMILES"]:
            assert float(r["similarity_a"]) == pytest.approx(_tanimoto_1024(r["SMILES"], ca), abs=1e-4)
            assert float(r["similarity_b"]) == pytest.approx(_tanimoto_1024(r["SMILES"], cb), abs=1e-4)
    code, out, _ = run_cli(capsys, ["interpolate", a, b, "--steps", 3])
    assert code == 0 and len(out.splitlines()) == 3 and out.splitlines()[0].startswith("0\t0.000\t")
