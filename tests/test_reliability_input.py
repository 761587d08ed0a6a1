"""Bad input through the CLI (issue 9, part 1): one line naming the file (and line), exit code 2, no output.

Every case runs ``molgen.cli.main`` in-process and checks stderr with ``assert_user_error``: exit
code 2, exactly one line, no traceback, the file named (with its line number where one applies),
and no output file or temporary file left behind.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from molgen.cli import build_parser

from conftest import SMALL_SMILES
from reliability_fixtures import (
    TINY_TRAIN_FLAGS,
    assert_user_error,
    read_only_folder,
    run_cli,
    tiny_model,
    training_file,
)

LONG_SMILES = "C" * 120  # 121 SELFIES tokens with <eos>: over the tiny model's cap of 100


@pytest.fixture
def io_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(input folder holding a tiny model, empty output folder)."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    out.mkdir()
    tiny_model(inp / "model.pt")
    return inp, out


def _score_available() -> bool:
    return build_parser()._subparsers._group_actions[0].choices["score"].get_default("func").__name__ == "run"


# verb -> (argv for a SMILES file, output that must not appear)
def _data_argv(verb: str, data: Path, inp: Path, out: Path) -> tuple[list, Path]:
    if verb == "evaluate":
        report = out / "report.json"
        return ["evaluate", "--model", inp / "model.pt", "--data", data, "--n", 4, "--k", 2, "--out", report], report
    if verb == "train":
        run = out / "run"
        return ["train", "--data", data, "--out", run, "--max-steps", 2, *TINY_TRAIN_FLAGS], run
    if verb == "data stats":
        rejects = out / "rejects.csv"
        return ["data", "stats", data, "--on-invalid", "error", "--rejects", rejects], rejects
    if verb == "score":
        report = out / "score.json"
        return ["score", data, "--out", report], report
    raise ValueError(verb)


DATA_VERBS = ["evaluate", "train", "data stats", "score"]

BAD_FILES = {
    # case: (file name, bytes, message parts; {path} is the file)
    "empty file": ("empty.csv", b"", ["{path}: empty file"]),
    "empty .smi file": ("empty.smi", b"", ["{path}: no SMILES found"]),
    "blank lines only": ("blank.csv", b"\n\n  \n", ["{path}: empty file"]),
    "header only": ("header.csv", b"id,SMILES\n", ["{path}: header only"]),
    "no SMILES column": (
        "nocol.csv", b"id,name,weight\n1,aspirin,180.2\n", ["{path}: no SMILES column", "columns: id, name, weight"]
    ),
    "non-UTF-8 bytes": ("latin1.csv", "SMILES\nCCO\nC\xe9C\n".encode("latin-1"), ["{path}:3: not UTF-8"]),
    "binary file (NUL bytes)": ("model.csv", None, ["{path}:1: binary data"]),
    "binary file (no NUL bytes)": ("noise.smi", bytes(range(128, 256)) * 8, ["{path}:1: not UTF-8"]),
    "truncated gzip": ("trunc.csv.gz", None, ["{path}: corrupt or truncated gzip"]),
}


def _bad_bytes(case: str, inp: Path) -> bytes:
    name, data, _ = BAD_FILES[case]
    if case == "binary file (NUL bytes)":
        return (inp / "model.pt").read_bytes()
    if case == "truncated gzip":
        text = "SMILES\n" + "".join(f"C{'C' * (i % 40)}O\n" for i in range(3000))
        full = gzip.compress(text.encode())
        return full[: len(full) // 2]
    return data


@pytest.mark.parametrize("verb", DATA_VERBS)
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_smiles_file_is_one_line_error_naming_the_file(case, verb, io_dirs, capsys):
    if verb == "score" and not _score_available():
        pytest.skip("`molgen score` is not built yet")
    inp, out = io_dirs
    name, _, parts = BAD_FILES[case]
    path = inp / name
    path.write_bytes(_bad_bytes(case, inp))
    argv, output = _data_argv(verb, path, inp, out)
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, *(p.format(path=path) for p in parts))
    assert not output.exists() and list(out.iterdir()) == []


@pytest.mark.parametrize("verb", ["evaluate", "train", "data stats"])
def test_invalid_smiles_row_stops_with_its_line_number(verb, io_dirs, capsys):
    inp, out = io_dirs
    path = training_file(inp / "data.csv", 120)
    lines = path.read_text().splitlines()
    lines.insert(2, "C1CC")  # line 3
    path.write_text("\n".join(lines) + "\n")
    argv, output = _data_argv(verb, path, inp, out)
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, f"{path}:3: invalid molecule 'C1CC'", "--on-invalid skip")
    assert not output.exists() and list(out.iterdir()) == []


def test_on_invalid_skip_writes_rejects_with_line_numbers(tmp_path, capsys):
    path = tmp_path / "mixed.csv"
    path.write_text("SMILES\nCCO\nC1CC\nc1ccccc1\nnot_a_smiles\nCCN\n")
    rejects = tmp_path / "rejects.csv"
    code, out, err = run_cli(capsys, ["data", "stats", path, "--on-invalid", "skip", "--rejects", rejects])
    assert code == 0, err
    assert "valid: 3" in out and "invalid: 2" in out
    rows = rejects.read_text().splitlines()
    assert rows[0] == "line,smiles,reason"
    assert [r.split(",")[:2] for r in rows[1:]] == [["3", "C1CC"], ["5", "not_a_smiles"]]


def test_on_invalid_skip_evaluates_the_valid_rows(io_dirs, capsys):
    inp, out = io_dirs
    path = inp / "mixed.csv"
    path.write_text("SMILES\n" + "\n".join(SMALL_SMILES[:5]) + "\nC1CC\n")
    report = out / "report.json"
    argv = ["evaluate", "--model", inp / "model.pt", "--data", path, "--n", 10, "--k", 2, "--out", report]
    code, _, err = run_cli(capsys, [*argv, "--on-invalid", "skip"])
    assert code == 0, err
    assert json.loads(report.read_text())["likelihood"]["n_molecules"] == 5


def test_on_invalid_skip_trains_on_the_valid_rows(tmp_path, capsys):
    path = training_file(tmp_path / "data.csv", 100)
    with path.open("a") as handle:
        handle.write("C1CC\nXYZ\n")
    run = tmp_path / "run"
    argv = ["train", "--data", path, "--out", run, "--max-steps", 2, "--on-invalid", "skip", *TINY_TRAIN_FLAGS]
    code, _, err = run_cli(capsys, argv)
    assert code == 0, err
    assert json.loads((run / "summary.json").read_text())["global_step"] == 2


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
def test_molecule_longer_than_the_length_cap(on_invalid, io_dirs, capsys):
    inp, out = io_dirs
    path = inp / "long.csv"
    path.write_text(f"SMILES\nCCO\n{LONG_SMILES}\nc1ccccc1\n")
    report = out / "report.json"
    argv = ["evaluate", "--model", inp / "model.pt", "--data", path, "--n", 4, "--k", 2, "--out", report]
    code, _, err = run_cli(capsys, [*argv, "--on-invalid", on_invalid])
    if on_invalid == "error":
        assert_user_error(code, err, f"{path}:3: invalid molecule", "121 tokens, longer than the model's cap of 100")
        assert list(out.iterdir()) == []
    else:
        assert code == 0, err
        assert json.loads(report.read_text())["likelihood"]["n_molecules"] == 2


def test_training_data_longer_than_the_configured_cap(tmp_path, capsys):
    path = training_file(tmp_path / "data.csv", 100)
    lines = path.read_text().splitlines()
    lines.insert(4, LONG_SMILES)  # line 5
    path.write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    argv = ["train", "--data", path, "--out", run, "--max-steps", 2, *TINY_TRAIN_FLAGS, "--set", "model.max_len=110"]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, f"{path}:5: invalid molecule", "longer than the model's cap of 110")
    assert not run.exists()


@pytest.mark.parametrize("on_invalid", ["error", "skip"])
def test_token_outside_the_checkpoint_vocabulary(on_invalid, io_dirs, capsys):
    inp, out = io_dirs
    path = inp / "iodine.csv"
    path.write_text("SMILES\nCCO\nCCI\nc1ccccc1\n")  # the model's vocabulary has no [I]
    report = out / "report.json"
    argv = ["evaluate", "--model", inp / "model.pt", "--data", path, "--n", 4, "--k", 2, "--out", report]
    code, _, err = run_cli(capsys, [*argv, "--on-invalid", on_invalid])
    if on_invalid == "error":
        assert_user_error(code, err, f"{path}:3: invalid molecule 'CCI'", "unknown SELFIES token [I]")
        assert list(out.iterdir()) == []
    else:
        assert code == 0, err
        assert json.loads(report.read_text())["likelihood"]["n_molecules"] == 2


# ----------------------------------------------------------------------------- --model files


def _model_payload(inp: Path) -> dict:
    return torch.load(inp / "model.pt", weights_only=True)


def _lightning_payload(inp: Path, version: int | None = 1) -> dict:
    p = _model_payload(inp)
    data = {
        "state_dict": {f"model.{k}": v for k, v in p["state_dict"].items()},
        "hyper_parameters": {"model": p["hparams"], "vocab": p["vocab"], "objective": {}, "optim": {}, "seed": 0},
        "global_step": 10,
    }
    if version is not None:
        data["molgen"] = {"restarts": 0, "version": version}
    return data


def _write_model_case(case: str, inp: Path) -> tuple[Path, list[str]]:
    """Write a bad --model file; return its path and the message parts expected."""
    path = inp / f"{case.replace(' ', '_')}.pt"
    good = (inp / "model.pt").read_bytes()
    if case == "missing":
        return path, [f"{path}: no such"]
    if case == "folder":
        path.mkdir()
        return path, [f"{path}: is a folder"]
    if case == "empty":
        path.write_bytes(b"")
        return path, [f"{path}: not a molgen model file (empty file)"]
    if case == "text file":
        path.write_text("SMILES\nCCO\n")
        return path, [f"{path}: not a molgen model file (not a PyTorch file)"]
    if case == "truncated":
        path.write_bytes(good[: len(good) // 2])
        return path, [f"{path}: not a readable molgen model file (truncated or corrupt"]
    if case == "torch file of another kind":
        torch.save({"weights": torch.zeros(3)}, path)
        return path, [f"{path}: not a molgen model file"]
    if case == "Lightning checkpoint of another project":
        torch.save({"state_dict": {"layer.weight": torch.zeros(2)}, "hyper_parameters": {"lr": 0.1}}, path)
        return path, [f"{path}: a Lightning checkpoint, but not one written by molgen train"]
    if case == "weights missing a tensor":
        payload = _model_payload(inp)
        payload["state_dict"].pop(next(iter(payload["state_dict"])))
        torch.save(payload, path)
        return path, [f"{path}: weights do not match the model"]
    if case == "newer model file version":
        torch.save({**_model_payload(inp), "version": 2}, path)
        return path, [f"{path}: model file version 2; this molgen reads version 1"]
    if case == "newer training checkpoint version":
        torch.save(_lightning_payload(inp, version=99), path)
        return path, [f"{path}: training checkpoint version 99; this molgen reads version 1"]
    if case == "hyper-parameters of another version":
        payload = _model_payload(inp)
        payload["hparams"]["attention_heads"] = 4
        torch.save(payload, path)
        return path, [f"{path}: incompatible model hyper-parameters", "attention_heads"]
    raise ValueError(case)


MODEL_CASES = [
    "missing", "folder", "empty", "text file", "truncated", "torch file of another kind",
    "Lightning checkpoint of another project", "weights missing a tensor", "newer model file version",
    "newer training checkpoint version", "hyper-parameters of another version",
]  # fmt: skip


@pytest.mark.parametrize("verb", ["sample", "evaluate"])
@pytest.mark.parametrize("case", MODEL_CASES)
def test_bad_model_file_is_one_line_error(case, verb, io_dirs, capsys):
    inp, out = io_dirs
    path, parts = _write_model_case(case, inp)
    data = inp / "data.csv"
    data.write_text("SMILES\n" + "\n".join(SMALL_SMILES) + "\n")
    if verb == "sample":
        argv = ["sample", "--model", path, "-n", 5, "--out", out / "lib.csv"]
    else:
        argv = ["evaluate", "--model", path, "--data", data, "--n", 4, "--k", 2, "--out", out / "report.json"]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, *parts)
    assert list(out.iterdir()) == []


def test_training_checkpoint_without_a_version_still_loads(io_dirs, capsys):
    """Checkpoints written before the version key existed are version 1."""
    inp, out = io_dirs
    torch.save(_lightning_payload(inp, version=None), inp / "old.ckpt")
    code, _, err = run_cli(capsys, ["sample", "--model", inp / "old.ckpt", "-n", 5, "--out", out / "lib.csv"])
    assert code == 0, err
    assert len((out / "lib.csv").read_text().splitlines()) == 6


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    "args, message",
    [
        (["-n", 0], "must be a positive number of molecules, not 0"),
        (["-n", -5], "must be a positive number of molecules, not -5"),
        (["-n", 5, "--batch-size", 0], "batch size must be positive"),
        (["-n", 5, "--temperature", 0], "temperature must be > 0"),
        (["-n", 5, "--component", 7], "--component must be in 0..1"),
    ],
)
def test_bad_sample_numbers(args, message, io_dirs, capsys):
    inp, out = io_dirs
    code, _, err = run_cli(capsys, ["sample", "--model", inp / "model.pt", *args, "--out", out / "lib.csv"])
    assert_user_error(code, err, message)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("n, k", [(0, 2), (-3, 2), (4, 0), (4, -1)])
def test_bad_evaluate_numbers(n, k, io_dirs, capsys):
    inp, out = io_dirs
    data = inp / "data.csv"
    data.write_text("SMILES\n" + "\n".join(SMALL_SMILES) + "\n")
    argv = ["evaluate", "--model", inp / "model.pt", "--data", data, "--n", n, "--k", k, "--out", out / "r.json"]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, "--n and --k must be positive")
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("flag, value", [("--max-steps", 0), ("--batch-size", 0), ("--lr", -1.0), ("--val-every", 0)])
def test_bad_train_numbers(flag, value, tmp_path, capsys):
    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", run, *TINY_TRAIN_FLAGS, flag, value])
    assert_user_error(code, err, "config ", "must be")
    assert not run.exists()


# ----------------------------------------------------------------------------- output paths


def _output_argv(verb: str, target: Path, inp: Path) -> list:
    data = inp / "data.csv"
    if verb == "sample":
        return ["sample", "--model", inp / "model.pt", "-n", 5, "--out", target]
    if verb == "evaluate":
        return ["evaluate", "--model", inp / "model.pt", "--data", data, "--n", 4, "--k", 2, "--out", target]
    if verb == "data stats":
        return ["data", "stats", data, "--rejects", target]
    if verb == "train":
        return ["train", "--data", data, "--out", target, "--max-steps", 2, *TINY_TRAIN_FLAGS]
    raise ValueError(verb)


OUTPUT_CASES = [
    (where, verb)
    for where in ("missing folder", "under a regular file", "an existing folder", "read-only folder")
    for verb in ("sample", "evaluate", "data stats", "train")
    # train creates a missing run folder (parents too) and uses an existing one, on purpose
    if not (verb == "train" and where in ("missing folder", "an existing folder"))
]


@pytest.mark.parametrize("where, verb", OUTPUT_CASES)
def test_unusable_output_path(where, verb, io_dirs, capsys):
    inp, out = io_dirs
    training_file(inp / "data.csv", 100)
    undo = None
    if where == "missing folder":
        target = out / "no" / "such" / "x.csv"
        parts = [f"{target}: output folder {out / 'no' / 'such'} does not exist"]
    elif where == "under a regular file":
        (out / "plain").write_text("a file, not a folder")
        target = out / "plain" / "x.csv"
        parts = [str(target), f"{out / 'plain'} is a file"]
    elif where == "an existing folder":
        target = out / "folder"
        target.mkdir()
        parts = [f"{target}: is a folder"]
    else:
        undo = read_only_folder(out / "ro")
        if undo is None:
            pytest.skip("cannot make a read-only folder here (root without chattr +i support)")
        target = out / "ro" / "x.csv"
        parts = [str(target), "not writable"]
    before = sorted(p.name for p in out.rglob("*"))
    try:
        code, _, err = run_cli(capsys, _output_argv(verb, target, inp))
    finally:
        if undo is not None:
            undo()
    assert_user_error(code, err, *parts)
    assert sorted(p.name for p in out.rglob("*")) == before


def test_output_folder_error_comes_before_the_work(io_dirs, capsys, monkeypatch):
    """evaluate checks --out first: a typo in the folder does not cost the whole evaluation."""
    import molgen.evaluate

    inp, out = io_dirs
    training_file(inp / "data.csv", 100)

    def no_work(*args, **kwargs):
        raise AssertionError("the likelihood was computed before the output path was checked")

    monkeypatch.setattr(molgen.evaluate, "likelihood_report", no_work)
    code, _, err = run_cli(capsys, _output_argv("evaluate", out / "typo" / "r.json", inp))
    assert_user_error(code, err, "does not exist")


# ----------------------------------------------------------------------------- YAML configs

BAD_CONFIGS = {
    "unknown nested key": ("model:\n  latent_dimm: 3\n", ["unknown key 'model.latent_dimm'", "known: kind"]),
    "unknown section": ("modle:\n  latent_dim: 3\n", ["unknown key 'modle'"]),
    "string for an int": ("model:\n  latent_dim: abc\n", ["model.latent_dim: expected int, got 'abc'"]),
    "float for an int": ("trainer:\n  max_steps: 1.5\n", ["trainer.max_steps: expected int, got 1.5"]),
    "bool for an int": ("trainer:\n  seed: yes\n", ["trainer.seed: expected int, got True"]),
    "value outside a choice": ("model:\n  kind: transformer\n", ["model.kind: expected 'vae' or 'lm'"]),
    "scalar for a section": ("model: big\n", ["config model: expected"]),
    "list for the file": ("- model\n- data\n", ["expected a mapping"]),
    "value out of range": ("model:\n  latent_dim: -2\n", ["model.latent_dim must be > 0, got -2"]),
    "YAML syntax error": ("model: [1, 2\n  x: y\n", [":2:4: not valid YAML"]),
    "tab indentation": ("model:\n\tlatent_dim: 2\n", [":2:1: not valid YAML"]),
    "non-UTF-8 bytes": (b"model:\n  kind: \xff\n", ["not UTF-8"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_yaml_config_names_the_file_and_key(case, tmp_path, capsys):
    text, parts = BAD_CONFIGS[case]
    config = tmp_path / "bad.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--config", config, "--data", data, "--out", run, "--max-steps", 2])
    assert_user_error(code, err, str(config), *parts)
    assert not run.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.nope=1", "unknown key 'model.nope'"),
        ("model.latent_dim=abc", "model.latent_dim: expected int"),
        ("latent_dim", "--set expects KEY=VALUE"),
    ],
)
def test_bad_set_override(override, message, tmp_path, capsys):
    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", run, "--set", override])
    assert_user_error(code, err, message)
    assert not run.exists()


@pytest.mark.parametrize("what", ["missing", "folder"])
def test_unreadable_config_file(what, tmp_path, capsys):
    config = tmp_path / "config.yaml"
    if what == "folder":
        config.mkdir()
    data = training_file(tmp_path / "data.csv", 100)
    code, _, err = run_cli(capsys, ["train", "--config", config, "--data", data, "--out", tmp_path / "run"])
    assert_user_error(code, err, f"{config}: ", "no such config file" if what == "missing" else "Is a directory")
