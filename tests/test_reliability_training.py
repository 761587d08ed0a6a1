"""Interrupted runs, numerical faults and determinism of training (issue 9, parts 3, 4 and 6).

The SIGKILL and SIGINT tests run `python -m molgen train` as a real process (marked slow); the
others train a model of a few thousand parameters in-process for a handful of steps.
"""
from __future__ import annotations

import collections
import csv
import json
import signal
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback

from molgen.checkpoint import load_model
from molgen.cli import build_parser
from molgen.cli.train import config_from_args
from molgen.errors import MolgenError
from molgen.model.vae import MoleculeVAE
from molgen.train import train

from reliability_fixtures import TINY_TRAIN_FLAGS, assert_user_error, molgen_process, run_cli, training_file


def _metric_rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _steps(rows: list[dict], key: str) -> list[int]:
    return [int(r["step"]) for r in rows if r.get(key)]


def assert_one_row_per_step(run: Path, steps: int) -> None:
    """metrics.csv has exactly one train/loss row for each step 0..steps-1, and no repeated validation."""
    rows = _metric_rows(run)
    train_steps = _steps(rows, "train/loss")
    repeated = [s for s, n in collections.Counter(train_steps).items() if n > 1]
    assert not repeated, f"steps logged twice: {repeated}"
    assert sorted(train_steps) == list(range(steps)), f"missing: {sorted(set(range(steps)) - set(train_steps))}"
    val_steps = _steps(rows, "val/elbo")
    assert val_steps and len(val_steps) == len(set(val_steps))


def _ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _config(tmp_path: Path, *extra: str):
    data = training_file(tmp_path / "data.csv", 200)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *map(str, TINY_TRAIN_FLAGS), *extra]
    return config_from_args(build_parser().parse_args(argv))


def _wait_for(predicate, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"training ended (code {process.returncode}) before the test could interrupt it:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("timed out waiting for the first checkpoint")
        time.sleep(0.02)


# ----------------------------------------------------------------------------- interrupted runs

# 160 training molecules in batches of 16: 10 steps an epoch; validating every 7 steps puts the
# checkpoints in the middle of epochs, the hard case for resuming.
SLOW_RUN = ["--max-steps", 80, "--val-every", 7, *TINY_TRAIN_FLAGS]


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_final_step_with_every_step_logged_once(tmp_path):
    data = training_file(tmp_path / "data.csv", 200)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = molgen_process(["train", "--data", data, "--out", run, *SLOW_RUN], cwd=tmp_path)
    _wait_for(last.exists, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    killed_at = _ckpt_step(last)  # the file is whole: written under a temporary name, then renamed
    assert 0 < killed_at < 80
    assert not (run / "summary.json").exists()

    resumed = molgen_process(["train", "--out", run, "--resume", "--no-progress"], cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "step 80:" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["global_step"] == 80
    assert summary["steps_this_run"] == 80 - killed_at
    assert _ckpt_step(last) == 80
    assert_one_row_per_step(run, 80)


@pytest.mark.slow
def test_sigint_stops_cleanly_and_leaves_a_resumable_last_checkpoint(tmp_path):
    data = training_file(tmp_path / "data.csv", 200)
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    process = molgen_process(["train", "--data", data, "--out", run, *SLOW_RUN, "--max-steps", 100_000], cwd=tmp_path)
    _wait_for(last.exists, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    assert message.startswith("molgen train: interrupted: stopped at step ") and "continue with --resume" in message
    stopped_at = int(message.split("stopped at step ")[1].split(";")[0])
    assert _ckpt_step(last) == stopped_at  # saved at the interrupt, not at the validation before it
    load_model(last)
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()

    final = stopped_at + 12
    resumed = molgen_process(["train", "--out", run, "--resume", "--max-steps", final], cwd=tmp_path)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert json.loads((run / "summary.json").read_text())["global_step"] == final
    assert_one_row_per_step(run, final)


def test_resume_drops_metrics_rows_written_after_the_checkpoint(tmp_path, capsys):
    """A run killed after flushing rows past its last checkpoint (or in the middle of a row) resumes cleanly."""
    data = training_file(tmp_path / "data.csv", 200)
    run = tmp_path / "run"
    flags = ["--val-every", 3, *TINY_TRAIN_FLAGS]
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", run, "--max-steps", 6, *flags])
    assert code == 0, err
    rows = _metric_rows(run)
    with (run / "metrics.csv").open("a", newline="") as handle:  # what a later, killed process had written
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writerows([{**rows[-2], "step": "6"}, {**rows[-2], "step": "7"}])
        handle.write("0.1,0.2,")  # half a row
    code, _, err = run_cli(capsys, ["train", "--out", run, "--resume", "--max-steps", 9, "--no-progress"])
    assert code == 0, err
    assert_one_row_per_step(run, 9)


def test_resume_without_a_checkpoint_is_a_user_error(tmp_path, capsys):
    data = training_file(tmp_path / "data.csv", 100)
    code, _, err = run_cli(capsys, ["train", "--data", data, "--out", tmp_path / "run", "--resume"])
    assert_user_error(code, err, "nothing to resume", "last.ckpt does not exist")


def test_new_run_in_a_finished_run_folder_is_refused(tmp_path, capsys):
    data = training_file(tmp_path / "data.csv", 100)
    run = tmp_path / "run"
    argv = ["train", "--data", data, "--out", run, "--max-steps", 2, *TINY_TRAIN_FLAGS]
    assert run_cli(capsys, argv)[0] == 0
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, "already holds a run", "--resume")
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before


def test_last_checkpoint_follows_every_validation_even_without_improvement(tmp_path, monkeypatch):
    real = MoleculeVAE.elbo_terms
    calls = {"n": 0}

    def falling(self, *args, **kwargs):  # every validation scores worse than the one before
        terms = real(self, *args, **kwargs)
        if not self.training:
            calls["n"] += 1
            terms = {**terms, "elbo": terms["elbo"] - 1e4 * calls["n"]}
        return terms

    monkeypatch.setattr(MoleculeVAE, "elbo_terms", falling)
    config = _config(tmp_path, "--max-steps", "9", "--val-every", "3")
    summary = train(config)
    checkpoints = Path(config.out) / "checkpoints"
    assert [p.name for p in checkpoints.glob("best-*.ckpt")] == ["best-step3.ckpt"]
    assert _ckpt_step(checkpoints / "last.ckpt") == summary["global_step"] == 9


# ----------------------------------------------------------------------------- numerical faults


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(bad, tmp_path, capsys, monkeypatch):
    real = MoleculeVAE.elbo_terms
    training_calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        terms = real(self, *args, **kwargs)
        if self.training:
            training_calls["n"] += 1
            if training_calls["n"] == 6:  # step 5 (0-based), after the checkpoint of step 4
                terms = {**terms, "loss": terms["loss"] * bad}
        return terms

    monkeypatch.setattr(MoleculeVAE, "elbo_terms", poisoned)
    data = training_file(tmp_path / "data.csv", 200)
    run = tmp_path / "run"
    argv = ["train", "--data", data, "--out", run, "--max-steps", 20, "--val-every", 2, *TINY_TRAIN_FLAGS]
    code, _, err = run_cli(capsys, argv)
    assert_user_error(code, err, f"training loss is {bad} at step 5", "last checkpoint is the last good one")
    last = run / "checkpoints" / "last.ckpt"
    assert _ckpt_step(last) == 4
    model, _ = load_model(last)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not (run / "model.pt").exists() and not (run / "summary.json").exists()
    monkeypatch.setattr(MoleculeVAE, "elbo_terms", real)  # the kept checkpoint resumes
    code, _, err = run_cli(capsys, ["train", "--out", run, "--resume", "--max-steps", 6, "--no-progress"])
    assert code == 0, err
    assert_one_row_per_step(run, 6)


class _CorruptWeights(Callback):
    """Put a NaN into a decoder weight at validation ``at_step`` (as a silent overflow would)."""

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                pl_module.model.decoder.out.weight[0, 0] = float("nan")


def test_non_finite_weights_are_never_written_to_a_checkpoint(tmp_path):
    config = _config(tmp_path, "--max-steps", "20", "--val-every", "2")
    # validation finds them first (it checks the weights: on an accelerator the loss is read only at
    # logging steps); the checkpoint's own refusal is the last line of defence
    with pytest.raises(MolgenError, match="is not finite at step 4; stopped, the last checkpoint is the last good one"):
        train(config, callbacks=[_CorruptWeights(at_step=4)])
    checkpoints = Path(config.out) / "checkpoints"
    assert _ckpt_step(checkpoints / "last.ckpt") == 2
    for path in checkpoints.iterdir():
        model, _ = load_model(path)
        assert all(torch.isfinite(p).all() for p in model.parameters()), path


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_same_seed_gives_identical_training_losses(precision, tmp_path):
    def losses(folder: str, seed: int) -> list[float]:
        (tmp_path / folder).mkdir()
        config = _config(tmp_path / folder, "--max-steps", "6", "--val-every", "3", "--seed", str(seed),
                         "--precision", precision)  # fmt: skip
        train(config)
        rows = _metric_rows(Path(config.out))
        return [float(r["train/loss"]) for r in rows if r["train/loss"]]

    first, again, other = losses("a", 3), losses("b", 3), losses("c", 4)
    assert len(first) == 6
    assert first == again
    assert first != other


def test_a_checkpoint_of_non_finite_weights_is_refused_naming_the_weight():
    from molgen.config import TrainConfig
    from molgen.model.lightning import VAEModule
    from molgen.train import model_hparams

    config = TrainConfig().to_dict()
    module = VAEModule(model_hparams(TrainConfig(), 10, 20), {}, config["objective"], config["optim"])
    with torch.no_grad():
        module.model.decoder.out.weight[0, 0] = float("nan")
    with pytest.raises(MolgenError, match="weight decoder.out.weight is not finite at step 0; checkpoint not written"):
        module.on_save_checkpoint({})
