"""Untrusted and damaged checkpoints (issue 9, parts 2 and 5).

A checkpoint that carries a pickled callable is refused with a clear message and its command never
runs, whichever door it comes through (Python API, `sample`, `evaluate`, `train --resume`).
Model files and training checkpoints are written to a temporary name and renamed, so a crash in
the middle of a write leaves the previous file whole.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from molgen.checkpoint import load_model, save_model
from molgen.errors import MolgenError
from molgen.model.vae import MoleculeVAE
from molgen.sample import Generator

from reliability_fixtures import TINY_TRAIN_FLAGS, assert_user_error, run_cli, tiny_model, training_file


class RunsCommand:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint would do with a worse command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _hostile_files(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """The same payload in every container torch.load accepts."""
    good = torch.load(tiny_model(tmp_path / "good.pt"), weights_only=True)
    files = {}

    path = files["model file, payload in extra"] = tmp_path / "extra.pt"
    torch.save({**good, "extra": {"note": RunsCommand(marker)}}, path)

    path = files["training checkpoint, payload in hyper_parameters"] = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in good["state_dict"].items()},
            "hyper_parameters": {"model": good["hparams"], "vocab": good["vocab"], "callback": RunsCommand(marker)},
            "global_step": 3,
        },
        path,
    )

    path = files["legacy (non-zip) torch format"] = tmp_path / "legacy.pt"
    torch.save({**good, "extra": RunsCommand(marker)}, path, _use_new_zipfile_serialization=False)

    path = files["plain pickle"] = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({**good, "extra": RunsCommand(marker)}, protocol=4))

    path = files["whole pickled nn.Module"] = tmp_path / "module.pt"
    model = MoleculeVAE(**good["hparams"])
    model.note = RunsCommand(marker)
    torch.save(model, path)
    return files


HOSTILE = [
    "model file, payload in extra",
    "training checkpoint, payload in hyper_parameters",
    "legacy (non-zip) torch format",
    "plain pickle",
    "whole pickled nn.Module",
]


def test_payload_runs_its_command_when_unpickled_unsafely(tmp_path):
    """Control: the hostile files are live, so the refusals below are what keeps the marker away."""
    marker = tmp_path / "MARKER"
    files = _hostile_files(tmp_path, marker)
    torch.load(files["model file, payload in extra"], weights_only=False)
    assert marker.exists()
    marker.unlink()
    pickle.loads(files["plain pickle"].read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("kind", HOSTILE)
def test_python_api_refuses_pickled_code(kind, tmp_path):
    marker = tmp_path / "MARKER"
    path = _hostile_files(tmp_path, marker)[kind]
    with pytest.raises(MolgenError, match="refusing to load: the file holds pickled objects or code") as info:
        load_model(path)
    assert str(path) in str(info.value)
    with pytest.raises(MolgenError, match="refusing to load"):
        Generator.load(path)
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["sample", "evaluate"])
@pytest.mark.parametrize("kind", HOSTILE)
def test_cli_refuses_pickled_code(kind, verb, tmp_path, capsys):
    marker = tmp_path / "MARKER"
    path = _hostile_files(tmp_path, marker)[kind]
    out = tmp_path / "out"
    out.mkdir()
    if verb == "sample":
        argv = ["sample", "--model", path, "-n", 5, "--out", out / "lib.csv"]
    else:
        argv = ["evaluate", "--model", path, "--data", training_file(tmp_path / "d.csv", 20), "--out", out / "r.json"]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, f"{path}: refusing to load: the file holds pickled objects or code")
    assert not marker.exists()
    assert list(out.iterdir()) == []


def test_resume_refuses_a_hostile_last_checkpoint(tmp_path, capsys):
    marker = tmp_path / "MARKER"
    hostile = _hostile_files(tmp_path, marker)["training checkpoint, payload in hyper_parameters"]
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    hostile.rename(run / "checkpoints" / "last.ckpt")
    data = training_file(tmp_path / "data.csv", 100)
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", run, "--resume", *TINY_TRAIN_FLAGS])
    assert_user_error(code, err, "last.ckpt: refusing to load")
    assert not marker.exists()
    assert sorted(p.name for p in run.rglob("*")) == ["checkpoints", "last.ckpt"]


def test_checkpoints_written_by_training_load_weights_only(tmp_path, capsys):
    """What molgen writes holds only tensors and plain containers: weights_only=True reads all of it."""
    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", run, "--max-steps", 4, "--val-every", 2,
                                    *TINY_TRAIN_FLAGS])  # fmt: skip
    assert code == 0, err
    files = [run / "model.pt", *sorted((run / "checkpoints").glob("*.ckpt"))]
    assert len(files) == 3  # model.pt, best-step*.ckpt, last.ckpt
    for path in files:
        torch.load(path, weights_only=True)
        model, tokenizer = load_model(path)
        assert model.hparams_dict["vocab_size"] == len(tokenizer)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["molgen"]["version"] == 1


# ----------------------------------------------------------------------------- atomic writes


def _crash_mid_write(monkeypatch, fail_on_call: int = 1):
    """Make torch.save write half of its bytes to the target and then fail, on call ``fail_on_call``."""
    real = torch.save
    calls = {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] != fail_on_call:
            return real(obj, f, *args, **kwargs)
        real(obj, f, *args, **kwargs)
        data = Path(f).read_bytes()
        Path(f).write_bytes(data[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_crash_while_saving_a_model_file_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tiny_model(tmp_path / "model.pt", seed=0)
    before = path.read_bytes()
    model, tokenizer = load_model(path)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    _crash_mid_write(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        save_model(path, model, tokenizer)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left
    load_model(path)


def test_crash_while_writing_a_training_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    """The second last.ckpt write dies half-way: the first one is still whole and resumable."""
    from molgen.cli.train import config_from_args
    from molgen.cli import build_parser
    from molgen.train import train

    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--out", str(run), "--max-steps", "6", "--val-every", "2",
            *map(str, TINY_TRAIN_FLAGS)]  # fmt: skip
    config = config_from_args(build_parser().parse_args(argv))
    real = torch.save
    saved: list[int] = []

    def save(obj, f, *args, **kwargs):
        is_last = Path(f).name.startswith(".last.ckpt.")
        if is_last and saved:  # the second last.ckpt
            real(obj, f, *args, **kwargs)
            Path(f).write_bytes(Path(f).read_bytes()[:1000])
            raise OSError(28, "No space left on device")
        if is_last:
            saved.append(obj["global_step"])
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match="No space left"):
        train(config)
    monkeypatch.setattr(torch, "save", real)
    last = run / "checkpoints" / "last.ckpt"
    assert saved == [2]
    assert torch.load(last, weights_only=True)["global_step"] == 2
    load_model(last)
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
