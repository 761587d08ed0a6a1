"""Training with Lightning: config, data batching, overfitting, resume, DDP, run folder (issue 4)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.callbacks import Callback

from molgen.checkpoint import load_model
from molgen.cli import build_parser, main
from molgen.cli.train import config_from_args
from molgen.config import TrainConfig, apply_overrides, load_config
from molgen.datamodule import BucketBatchSampler
from molgen.errors import MolgenError
from molgen.padding import pad_molecules
from molgen.token_cache import load_tokenized
from molgen.train import train

from conftest import ROOT
from stepwise import lm_log_likelihood

TINY = [
    "--batch-size", "16", "--threads", "1", "--no-progress", "--precision", "32-true",
    "--set", "data.val_size=32", "--set", "data.diag_molecules=32", "--set", "trainer.log_every_n_steps=1",
    "--set", "model.emb_dim=8", "--set", "model.enc_hidden=16", "--set", "model.dec_hidden=16",
    "--set", "model.latent_dim=4", "--set", "model.n_components=3", "--set", "trainer.fcd_samples=0",
]  # fmt: skip



def smiles_file(path: Path, n: int, start: int = 0) -> Path:
    rows = (ROOT / "data" / "sample.csv").read_text().splitlines()[1 + start : 1 + start + n]
    path.write_text("\n".join(["SMILES", *rows]) + "\n")
    return path


def config_for(tmp_path: Path, *flags, n: int = 160) -> TrainConfig:
    tmp_path.mkdir(parents=True, exist_ok=True)
    data = smiles_file(tmp_path / "train.csv", n)
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY, *map(str, flags)]
    return config_from_args(build_parser().parse_args(argv))


def ckpt_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


# ----------------------------------------------------------------------------- config


def test_config_with_an_unknown_key_fails_naming_the_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  latent_dims: 32\n")
    with pytest.raises(MolgenError, match="model.latent_dims"):
        load_config(path)
    assert main(["train", "--config", str(path), "--data", "x.csv", "--out", str(tmp_path / "r")]) == 2
    assert "model.latent_dims" in capsys.readouterr().err
    with pytest.raises(MolgenError, match="optim.learning_rate"):
        apply_overrides(TrainConfig(), {"optim.learning_rate": 1e-3})


@pytest.mark.parametrize(
    "key, value", [("model.latent_dim", "64"), ("model.latent_dim", 1.5), ("objective.restart_dead_components", 1),
                   ("model.kind", "transformer"), ("data.batch_size", 0), ("trainer.max_time", "2h")],
)  # fmt: skip
def test_config_values_of_the_wrong_type_or_range_are_rejected_naming_the_key(key, value):
    with pytest.raises(MolgenError, match=key.replace(".", r"\.")):
        apply_overrides(TrainConfig(), {key: value})


def test_shipped_configs_load_and_default_yaml_equals_the_builtin_defaults():
    assert load_config(ROOT / "configs" / "default.yaml") == TrainConfig()
    lm = load_config(ROOT / "configs" / "lm.yaml")
    assert lm.model.kind == "lm" and lm.model.dec_hidden == TrainConfig().model.dec_hidden


def test_train_names_the_model_family_kind_and_refuses_the_old_model_flag(tmp_path, capsys):
    args = build_parser().parse_args(["train", "--data", "d.csv", "--out", "o", "--kind", "lm"])
    assert config_from_args(args).model.kind == "lm"
    assert main(["train", "--data", "d.csv", "--out", str(tmp_path / "o"), "--model", "lm"]) == 2
    assert capsys.readouterr().err == (
        "molgen train: error: train has no --model (a checkpoint in sample and evaluate): "
        "the model family is --kind vae|lm\n"
    )
    assert not (tmp_path / "o").exists()


def test_cli_flags_override_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  latent_dim: 8\ntrainer:\n  max_steps: 7\n")
    args = build_parser().parse_args(
        ["train", "--config", str(path), "--data", "d.csv", "--out", "o", "--max-steps", "9", "--devices", "2",
         "--strategy", "ddp", "--kind", "lm", "--no-restart", "--set", "optim.lr=0.01"]
    )  # fmt: skip
    c = config_from_args(args)
    assert (c.model.latent_dim, c.trainer.max_steps, c.trainer.devices, c.trainer.strategy) == (8, 9, 2, "ddp")
    assert c.model.kind == "lm" and c.objective.restart_dead_components is False and c.optim.lr == 0.01


# ----------------------------------------------------------------------------- batching


def test_bucketed_batches_cover_every_molecule_once_with_little_padding():
    lengths = np.random.default_rng(0).integers(10, 60, size=1000)
    sampler = BucketBatchSampler(lengths, batch_size=32, seed=0, bucket_batches=10)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(1000)) and len(batches) == len(sampler)
    def padding(batches) -> float:
        return sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches) / lengths.sum()

    unbucketed = [np.arange(i, min(i + 32, 1000)) for i in range(0, 1000, 32)]
    assert padding(batches) < 0.1 and padding(batches) < 0.2 * padding(unbucketed)
    sampler.sampler.set_epoch(1)
    assert [list(b) for b in sampler] != [list(b) for b in batches]  # a new order every epoch


def test_ranks_get_disjoint_shards_with_the_same_number_of_batches():
    lengths = np.random.default_rng(0).integers(10, 60, size=1000)
    shards = [list(BucketBatchSampler(lengths, 32, seed=3, num_replicas=3, rank=r)) for r in range(3)]
    assert len({len(s) for s in shards}) == 1
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))


# ----------------------------------------------------------------------------- training runs


@pytest.mark.slow
def test_a_tiny_model_overfits_64_molecules(tmp_path):
    data = smiles_file(tmp_path / "train.csv", 64)
    config = apply_overrides(
        TrainConfig(),
        {"out": str(tmp_path / "run"), "data.train": str(data), "data.val": str(data), "data.batch_size": 64,
         "data.diag_molecules": 64, "model.emb_dim": 32, "model.enc_hidden": 64, "model.dec_hidden": 128,
         "model.latent_dim": 16, "model.n_components": 4, "optim.lr": 3e-3, "objective.beta": 0.5,
         "objective.beta_warmup_molecules": 100 * 64, "trainer.max_steps": 250, "trainer.val_every_steps": 125,
         "trainer.precision": "32-true", "trainer.progress_bar": False, "trainer.threads": 1,
         "trainer.fcd_samples": 0},
    )  # fmt: skip
    tok, ts = load_tokenized(data)
    summary = train(config)
    assert summary["global_step"] == 250
    tokens, lengths = pad_molecules(ts)
    torch.manual_seed(0)
    untrained = load_model(tmp_path / "run" / "model.pt")[0]
    untrained.load_state_dict(type(untrained)(**untrained.hparams_dict).state_dict())
    elbo_start = untrained.eval().elbo_terms(tokens, lengths)["elbo"].mean().item()
    model, _ = load_model(tmp_path / "run" / "model.pt")
    acc, _ = model.reconstruction_accuracy(tokens, lengths)
    assert summary["val"]["elbo"] > elbo_start + 60, (elbo_start, summary["val"])  # about -120 -> -20 nats
    assert acc.mean().item() > 0.95 and summary["val"]["token_acc"] > 0.95


class _CrashAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_a_resume_with_max_steps_already_reached_fails_naming_the_step(tmp_path, capsys):
    config = config_for(tmp_path, "--max-steps", 2, "--val-every", 2)
    train(config)
    with pytest.raises(MolgenError, match=re.escape("the run is at step 2 already; --max-steps 2 leaves nothing to train")):
        train(config, resume=True)
    run = tmp_path / "run"
    argv = ["train", "--resume-from", str(run / "checkpoints" / "last.ckpt"), "--out", str(tmp_path / "more"),
            "--max-steps", "1", "--no-progress", "--threads", "1"]  # fmt: skip
    assert main(argv) == 2
    assert "at step 2 already; --max-steps 1" in capsys.readouterr().err
    assert not (tmp_path / "more").exists()  # refused before the run folder is made
    from molgen.training_state import pack_state

    state = tmp_path / "state.pt"
    pack_state(run / "checkpoints" / "last.ckpt", state)
    assert main(["train", "--resume-from", str(state), "--out", str(tmp_path / "more"), "--max-steps", "2", "--no-progress"]) == 2
    assert f"{state}: the run is at step 2 already" in capsys.readouterr().err  # the user's file, not the unpacked copy


def test_resume_after_a_crash_reaches_the_same_global_step(tmp_path):
    config = config_for(tmp_path, "--max-steps", 10, "--val-every", 4)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(config, callbacks=[_CrashAt(6)])
    assert ckpt_step(last) == 4
    summary = train(config, resume=True)
    assert summary["global_step"] == 10 and summary["steps_this_run"] == 6
    assert ckpt_step(last) == 10
    run = tmp_path / "run"
    for name in ("config.yaml", "metrics.csv", "summary.json", "model.pt"):
        assert (run / name).is_file(), name
    assert load_config(run / "config.yaml") == config
    # the training checkpoint and the small model file hold the same final weights
    from_ckpt, tok1 = load_model(last)
    from_file, tok2 = load_model(run / "model.pt")
    assert tok1 == tok2
    for (name, a), b in zip(from_ckpt.state_dict().items(), from_file.state_dict().values()):
        assert torch.equal(a, b), name
    raw = torch.load(last, map_location="cpu", weights_only=True)
    assert raw["hyper_parameters"]["model"] == from_file.hparams_dict


class _RecordBatches(Callback):
    def __init__(self) -> None:
        self.seen: dict[int, list] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        tokens, lengths = batch
        self.seen[trainer.global_step] = [tuple(t[:n].tolist()) for t, n in zip(tokens, lengths)]


def test_resume_in_mid_epoch_continues_with_the_batches_not_yet_seen(tmp_path):
    # 128 training molecules in batches of 16: 8 steps an epoch; the crash comes after the step-6 checkpoint
    flags = ["--max-steps", 12, "--val-every", 3]
    whole = _RecordBatches()
    train(config_for(tmp_path / "a", *flags), callbacks=[whole])
    before, after = _RecordBatches(), _RecordBatches()
    config = config_for(tmp_path / "b", *flags)
    with pytest.raises(RuntimeError):
        train(config, callbacks=[before, _CrashAt(7)])
    train(config, resume=True, callbacks=[after])
    assert sorted(after.seen) == list(range(6, 12))
    assert all(after.seen[step] == whole.seen[step] for step in range(6, 12))


def test_a_packed_state_resumes_the_run_elsewhere_with_another_batch_size_and_learning_rate(tmp_path):
    from molgen.training_state import pack_state

    config = config_for(tmp_path / "a", "--max-steps", 4, "--val-every", 2)
    train(config)
    run = tmp_path / "a" / "run"
    state = tmp_path / "moses.state.pt"
    info = pack_state(run / "checkpoints" / "last.ckpt", state, run / "metrics.csv")
    assert info["global_step"] == 4 and info["molecules"] == 4 * 16
    full = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    packed = torch.load(state, map_location="cpu", weights_only=True)
    assert "callbacks" not in packed and packed["molgen_config"] == config.to_dict()
    moments = [s["exp_avg_sq"] for s in packed["optimizer_states"][0]["state"].values()]
    assert moments and all(m["q"].dtype == torch.uint8 for m in moments)  # 8-bit codes (molgen.training_state)
    # the next stretch, in another folder, from the CLI: batch 32 and a new learning rate
    out = tmp_path / "b"
    argv = ["train", "--resume-from", str(state), "--out", str(out), "--max-steps", "6", "--batch-size", "32",
            "--lr", "3e-4", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 6 and last["molgen"]["molecules"] == 4 * 16 + 2 * 32
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(3e-4)
    assert last["molgen_config"]["data"]["batch_size"] == 32
    assert last["molgen"]["restarts"] == full["molgen"]["restarts"]
    import csv

    steps = [int(r["step"]) for r in csv.DictReader(open(out / "metrics.csv", encoding="utf-8"))]
    assert min(steps) == 0 and max(steps) == 5  # the first stretch's rows came along with the state
    # a model file is not a training state
    code = main(["train", "--resume-from", str(run / "model.pt"), "--out", str(tmp_path / "c")])
    assert code == 2


def test_a_stretch_budget_stops_this_call_not_the_run(tmp_path):
    from molgen.train import StretchBudget

    budget = StretchBudget(0)
    summary = train(config_for(tmp_path, "--max-steps", 50, "--val-every", 50), callbacks=[budget])
    assert budget.stopped and summary["global_step"] == 1  # stops after the step in which the budget ran out
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()  # and validates + checkpoints there
    summary = train(config_for(tmp_path, "--max-steps", 3, "--val-every", 50, "--max-time", "00:00:10:00"), resume=True)
    assert summary["global_step"] == 3


def test_every_validation_logs_the_fcd_of_sampled_molecules(tmp_path):
    import csv

    reference = smiles_file(tmp_path / "reference.csv", 300, start=1000)
    flags = ["--max-steps", 4, "--val-every", 2, "--set", "trainer.fcd_samples=64",
             "--set", f"trainer.fcd_reference={reference}"]  # fmt: skip
    summary = train(config_for(tmp_path, *flags))
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "metrics.csv", encoding="utf-8")) if r.get("val/fcd")]
    assert [int(r["step"]) for r in rows] == [1, 3]  # at both validations
    assert all(float(r["val/fcd"]) > 0 and 0 < float(r["val/sample_valid"]) <= 1 for r in rows)
    assert summary["val"]["fcd"] == pytest.approx(float(rows[-1]["val/fcd"]))


def test_a_missing_fcd_reference_is_refused_before_any_step(tmp_path):
    missing = tmp_path / "elsewhere" / "test.csv.gz"  # a state packed on another machine names its path
    config = config_for(tmp_path, "--max-steps", 2, "--set", "trainer.fcd_samples=8",
                        "--set", f"trainer.fcd_reference={missing}")  # fmt: skip
    with pytest.raises(MolgenError, match=r"trainer.fcd_reference .*test.csv.gz does not exist; give --set"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_diagnostics_and_fcd_run_at_every_nth_validation_and_at_the_last(tmp_path):
    import csv

    reference = smiles_file(tmp_path / "reference.csv", 300, start=1000)
    flags = ["--max-steps", 6, "--val-every", 2, "--set", "trainer.fcd_samples=64", "--set", "trainer.diag_every=3",
             "--set", f"trainer.fcd_reference={reference}"]  # fmt: skip
    summary = train(config_for(tmp_path, *flags))
    rows = list(csv.DictReader(open(tmp_path / "run" / "metrics.csv", encoding="utf-8")))
    assert [int(r["step"]) for r in rows if r.get("val/elbo")] == [1, 3, 5]  # every validation: the ELBO
    assert [int(r["step"]) for r in rows if r.get("diag/n_eff")] == [1, 5]  # the first, then the 4th or the last
    assert [int(r["step"]) for r in rows if r.get("val/fcd")] == [1, 5]
    last = [r for r in rows if r.get("diag/n_eff")][-1]
    assert summary["diagnostics"]["n_eff"] == pytest.approx(float(last["diag/n_eff"]))  # the last validation's


def test_fcd_of_a_set_against_its_own_statistics_is_zero_and_moses_uses_the_shipped_ones():
    from molgen.metrics.reference import shipped
    from molgen.files import file_sha256
    from molgen.metrics.fcd import frechet_distance
    from molgen.monitor import chemnet_statistics, reference_statistics

    smiles = (ROOT / "data" / "sample.csv").read_text().splitlines()[1:400]
    mu, sigma = chemnet_statistics(smiles)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-6)
    test = ROOT / "data" / "moses" / "test.csv.gz"
    mu_t, sigma_t = reference_statistics(test)
    np.testing.assert_array_equal(mu_t, shipped("reference", file_sha256(test))["fcd_mu"])
    assert frechet_distance(mu, sigma, mu_t, sigma_t) > 0.1


def test_language_model_baseline_trains_and_reports_exact_log_likelihood(tmp_path):
    from molgen.datamodule import MoleculeDataModule

    config = config_for(tmp_path, "--kind", "lm", "--max-steps", 3, "--val-every", 3)
    summary = train(config)
    assert summary["global_step"] == 3 and summary["model_kind"] == "lm"
    assert summary["val"]["kl"] == 0 and summary["val"]["elbo"] < 0 and summary["diagnostics"] == {}
    model, tok = load_model(tmp_path / "run" / "model.pt")
    assert model.kind == "lm"
    # the validation ELBO of an LM is its exact log-likelihood: the sum of the teacher-forced token
    # log-probabilities, here by a plain decoder_step loop over the 32 held-out molecules
    val = MoleculeDataModule.from_config(config.data, config.trainer.seed, tok)[0].val_set
    assert len(val) == summary["val"]["n_molecules"] == 32
    exact = lm_log_likelihood(model, [val.get(i) for i in range(len(val))])
    assert summary["val"]["elbo"] == pytest.approx(exact.mean().item(), abs=1e-5)
    assert summary["val"]["rec"] == pytest.approx(exact.mean().item(), abs=1e-5)
    tokens, lengths = pad_molecules(val)
    with torch.no_grad():
        terms = model.elbo_terms(tokens, lengths)
    # float32 sums of ~40 tokens for molecules of ~110 nats: measured at most 1.5e-5 nats off, 1.3e-7 relative
    torch.testing.assert_close(terms["elbo"].double(), exact, rtol=5e-7, atol=1e-5)
    assert torch.equal(terms["kl"], torch.zeros_like(terms["kl"]))


class _KillComponent(Callback):
    """Starve mixture component 0 before training so that it is dead at the first validation."""

    def on_train_start(self, trainer, pl_module) -> None:
        with torch.no_grad():
            pl_module.model.prior.logits[0] = -30.0


@pytest.mark.parametrize("restart", [True, False])
def test_dead_mixture_components_are_restarted_unless_switched_off(tmp_path, restart):
    flags = ["--max-steps", 2, "--val-every", 2] + ([] if restart else ["--no-restart"])
    summary = train(config_for(tmp_path, *flags), callbacks=[_KillComponent()])
    model, _ = load_model(tmp_path / "run" / "model.pt")
    weight0 = torch.softmax(model.prior.logits, -1)[0].item()
    assert 0 in summary["diagnostics"]["dead_components"]  # measured before the restart
    if restart:
        assert summary["component_restarts"] >= 1 and weight0 > 0.2
    else:
        assert summary["component_restarts"] == 0 and weight0 < 1e-6


def test_a_dead_component_is_restarted_during_training_from_the_batch_usage(tmp_path):
    # component 0 starts dead; the check every step splits a live component before any validation
    flags = ["--max-steps", 2, "--val-every", 2, "--set", "objective.restart_every_steps=1"]
    summary = train(config_for(tmp_path, *flags), callbacks=[_KillComponent()])
    assert summary["component_restarts"] >= 1
    assert 0 not in summary["diagnostics"]["dead_components"]  # usage recovered by the first validation
    assert summary["diagnostics"]["mixture_usage"][0] > 0.1 / 3


def test_uniform_mixing_weights_stay_uniform_and_untrained(tmp_path):
    summary = train(config_for(tmp_path, "--max-steps", 3, "--val-every", 3, "--set", "objective.mixture_weights=uniform"))
    model, _ = load_model(tmp_path / "run" / "model.pt")
    torch.testing.assert_close(torch.softmax(model.prior.logits, -1), torch.full((3,), 1 / 3))
    assert summary["global_step"] == 3


@pytest.mark.slow
def test_two_process_cpu_ddp_fit_on_tiny_data(tmp_path):
    # with BN-VAE, whose batch statistics must be those of the whole batch over the ranks
    config = config_for(tmp_path, "--max-steps", 4, "--val-every", 2, "--devices", 2, "--strategy", "ddp",
                        "--accelerator", "cpu", "--set", "model.mu_batchnorm=0.5")  # fmt: skip
    script = tmp_path / "ddp_train.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from pytorch_lightning import Callback
        from molgen.config import from_dict, TrainConfig
        from molgen.train import train

        # one file per rank: the ranks share stdout, and their prints interleave
        class Norm(Callback):
            def on_train_start(self, trainer, pl_module):
                with open(f"norm{{trainer.global_rank}}.txt", "w") as f:
                    f.write(type(pl_module.model.encoder.mu_norm).__name__)

        config = from_dict(TrainConfig, json.loads({json.dumps(json.dumps(config.to_dict()))}))
        summary = train(config, callbacks=[Norm()])
        with open(f"done{{os.getpid()}}.txt", "w") as f:
            f.write(f"{{summary['world_size']}} {{summary['global_step']}}")
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    done = [path.read_text() for path in tmp_path.glob("done*.txt")]
    assert len(done) == 2 and set(done) == {"2 4"}
    # torch's SyncBatchNorm has no CPU kernel: CPU ranks normalise their own share (GPUs synchronise)
    assert [(tmp_path / f"norm{rank}.txt").read_text() for rank in (0, 1)] == ["BatchNorm1d"] * 2
    model, _ = load_model(tmp_path / "run" / "model.pt")  # the synchronised layer saves as the plain one
    assert type(model.encoder.mu_norm).__name__ == "BatchNorm1d" and int(model.encoder.mu_norm.num_batches_tracked) == 4
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["global_step"] == 4
    assert ckpt_step(tmp_path / "run" / "checkpoints" / "last.ckpt") == 4


@pytest.mark.parametrize("flags, cuda, expected", [
    (["--accelerator", "gpu", "--devices", "2"], False, True),
    (["--accelerator", "auto", "--devices", "4"], True, True),
    (["--accelerator", "auto", "--devices", "4"], False, False),  # auto without a GPU: CPU ranks
    (["--accelerator", "gpu", "--devices", "1"], True, False),  # one device: nothing to synchronise
    (["--accelerator", "cpu", "--devices", "2"], True, False),
])  # fmt: skip
def test_bn_vae_synchronises_its_batch_statistics_only_over_several_gpus(tmp_path, monkeypatch, flags, cuda, expected):
    from molgen.train import sync_batchnorm

    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    config = config_for(tmp_path, *flags, "--set", "model.mu_batchnorm=0.5")
    assert sync_batchnorm(config) is expected
    assert sync_batchnorm(config_for(tmp_path / "off", *flags)) is False  # no BN-VAE, no batch norm


# ----------------------------------------------------------------------------- objective options


def _metric_rows(run: Path) -> dict[int, dict[str, str]]:
    """metrics.csv's training rows by step."""
    import csv

    rows = csv.DictReader(open(run / "metrics.csv", encoding="utf-8"))
    return {int(r["step"]): r for r in rows if r.get("train/loss")}


def test_floats_in_exponent_notation_without_a_dot_are_floats_in_files_and_set_flags(tmp_path):
    # PyYAML (YAML 1.1) reads 1e-4 as a string
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: 3e-4\n  lr_final: 1E-5\n")
    assert load_config(path).optim.lr == 3e-4 and load_config(path).optim.lr_final == 1e-5
    config = config_for(tmp_path, "--set", "optim.lr_final=1e-4")
    assert config.optim.lr_final == 1e-4
    with pytest.raises(MolgenError, match="data.smiles_column"):  # a string key stays a string
        apply_overrides(TrainConfig(), {"data.smiles_column": 1e-4})
    assert apply_overrides(TrainConfig(), {"data.smiles_column": "1e-4"}).data.smiles_column == "1e-4"
    # molecule counts written 3e6 (a YAML string) or 3.0e+6 (a YAML float) are ints; 2.5 is not
    counts = apply_overrides(TrainConfig(), {"optim.cooldown_from_molecules": "3e6", "optim.cooldown_molecules": 3.0e6})
    assert counts.optim.cooldown_from_molecules == 3_000_000 and isinstance(counts.optim.cooldown_molecules, int)
    with pytest.raises(MolgenError, match="optim.cooldown_molecules: expected int"):
        apply_overrides(TrainConfig(), {"optim.cooldown_molecules": 2.5})


def test_the_learning_rate_cools_down_from_a_molecule_count_in_a_1_minus_sqrt_shape():
    from types import SimpleNamespace

    from molgen.model.lightning import VAEModule

    optim = {"lr": 1e-3, "cooldown_from_molecules": 1000, "cooldown_molecules": 400, "lr_final": 1e-4}
    module = SimpleNamespace(optim=optim)
    lrs = [VAEModule.lr_at(module, m) for m in (0, 1000, 1100, 1200, 1400, 9000)]
    # 1e-4 + 9e-4 * (1 - sqrt(frac)) at frac 0, 0, 1/4, 1/2, 1, 1
    assert lrs == pytest.approx([1e-3, 1e-3, 5.5e-4, 1e-4 + 9e-4 * (1 - 0.5**0.5), 1e-4, 1e-4])
    assert VAEModule.lr_at(SimpleNamespace(optim={**optim, "cooldown_from_molecules": None}), 10**9) == 1e-3


@pytest.mark.parametrize(("key", "value", "message"), [
    ("optim.lr_final", 2e-3, r"optim.lr_final must be in \(0, optim.lr = 0.001\]"),
    ("optim.cooldown_molecules", 0, "optim.cooldown_molecules must be > 0"),
    ("optim.cooldown_from_molecules", -5, "optim.cooldown_from_molecules must be >= 0"),
])  # fmt: skip
def test_a_bad_cooldown_is_refused_naming_the_key(key, value, message):
    overrides = {"optim.cooldown_from_molecules": 100, key: value}
    with pytest.raises(MolgenError, match=message):
        apply_overrides(TrainConfig(), overrides)


def test_a_run_resumed_into_its_cooldown_follows_the_schedule_by_molecules_seen(tmp_path):
    # 4 steps of 16 at the constant lr, then a resume that turns on a cool-down from molecule 64 over 64
    config = config_for(tmp_path, "--max-steps", 4, "--val-every", 2, "--lr", "1e-3")
    train(config)
    run = tmp_path / "run"
    cooled = apply_overrides(config, {"trainer.max_steps": 8, "optim.cooldown_from_molecules": 64,
                                      "optim.cooldown_molecules": 64, "optim.lr_final": 1e-4})  # fmt: skip
    train(cooled, resume=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # the last update (step 7) was taken after 7 * 16 = 112 molecules: frac 48/64
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-4 + 9e-4 * (1 - 0.75**0.5))
    lr = {step: float(r["train/lr"]) for step, r in _metric_rows(run).items() if r.get("train/lr")}
    assert lr[3] == pytest.approx(1e-3) and lr[4] == pytest.approx(1e-3)  # 48, then 64 molecules before the step
    assert lr[5] == pytest.approx(1e-4 + 9e-4 * (1 - 0.25**0.5))
    assert last["molgen_config"]["optim"]["cooldown_from_molecules"] == 64  # a packed state carries the schedule


def test_a_warm_up_ramps_the_learning_rate_over_each_stretchs_first_molecules(tmp_path):
    # 3 steps of 16, then a resume (a new stretch) with a warm-up over 48 molecules
    config = config_for(tmp_path, "--max-steps", 3, "--val-every", 3, "--lr", "1e-3")
    train(config)
    warm = apply_overrides(config, {"trainer.max_steps": 7, "optim.warmup_molecules": 48})
    train(warm, resume=True)
    lr = {step: float(r["train/lr"]) for step, r in _metric_rows(tmp_path / "run").items() if r.get("train/lr")}
    assert [lr[s] for s in range(3)] == pytest.approx([1e-3] * 3)  # the first stretch had none
    assert [lr[s] for s in range(3, 7)] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3, 1e-3])  # 16, 32, 48 of 48


def test_usage_bonus_weight_falls_linearly_to_zero_over_the_beta_warm_up():
    from types import SimpleNamespace

    from molgen.model.lightning import VAEModule

    def at(bonus, warmup, molecules):
        module = SimpleNamespace(objective={"usage_bonus": bonus, "beta_warmup_molecules": warmup})
        return VAEModule.usage_bonus_at(module, molecules)

    assert [at(0.4, 1000, m) for m in (0, 250, 500, 1000, 5000)] == pytest.approx([0.4, 0.3, 0.2, 0.0, 0.0])
    assert at(0.4, 0, 0) == 0.0 and at(0.0, 1000, 0) == 0.0  # no warm-up, or no bonus: no bonus


def test_cyclical_beta_rises_over_each_cycles_ramp_then_holds_and_stays_at_beta_after_the_last_cycle():
    from types import SimpleNamespace

    from molgen.model.lightning import OBJECTIVE_DEFAULTS, VAEModule

    def at(molecules, **objective):
        base = {**OBJECTIVE_DEFAULTS, "beta": 1.0, "beta_start": 0.0, "beta_warmup_molecules": 800}
        return VAEModule.beta_at(SimpleNamespace(objective={**base, **objective}), molecules)

    cyclical = dict(beta_cycle_molecules=1000, beta_cycles=2, beta_cycle_ramp=0.5)
    assert [at(m, **cyclical) for m in (0, 250, 500, 999, 1000, 1250, 1750, 2000, 10_000)] == pytest.approx(
        [0.0, 0.5, 1.0, 1.0, 0.0, 0.5, 1.0, 1.0, 1.0])  # fmt: skip
    assert at(250, **cyclical, beta_start=0.2, beta=0.6) == pytest.approx(0.4)
    assert at(500, beta_cycle_ramp=1.0, beta_cycle_molecules=1000) == pytest.approx(0.5)
    # off (the default): the linear warm-up, and no warm-up at all with 0 molecules
    assert [at(m) for m in (0, 400, 800, 5000)] == pytest.approx([0.0, 0.5, 1.0, 1.0])
    assert at(0, beta_warmup_molecules=0) == 1.0


def test_a_bn_vae_run_with_cyclical_beta_logs_the_cycles_and_writes_a_model_that_reloads_with_its_normalisation(tmp_path):
    # cycles of 32 molecules (batches of 16) rising over their first half, two of them, then beta = 1
    config = config_for(tmp_path, "--max-steps", 6, "--val-every", 6, "--set", "model.mu_batchnorm=0.5",
                        "--set", "objective.beta_cycle_molecules=32", "--set", "objective.beta_cycles=2",
                        "--set", "objective.beta_cycle_ramp=0.5")  # fmt: skip
    train(config)
    beta = [float(r["train/beta"]) for _, r in sorted(_metric_rows(tmp_path / "run").items())]
    assert beta == pytest.approx([0.0, 1.0, 0.0, 1.0, 1.0, 1.0])  # 0, 16, 32, 48, 64, 80 molecules before the step
    model, _ = load_model(tmp_path / "run" / "model.pt")
    assert model.hparams_dict["mu_batchnorm"] == 0.5 and int(model.encoder.mu_norm.num_batches_tracked) >= 6


def test_the_autoencoder_warm_start_holds_beta_at_zero_then_starts_the_schedule_after_it():
    from types import SimpleNamespace

    from molgen.model.lightning import OBJECTIVE_DEFAULTS, VAEModule

    def at(molecules, **objective):
        base = {**OBJECTIVE_DEFAULTS, "beta": 1.0, "beta_start": 0.0, "beta_warmup_molecules": 800, "ae_warmup_molecules": 500}
        return VAEModule.beta_at(SimpleNamespace(objective={**base, **objective}), molecules)

    assert [at(m) for m in (0, 499, 500, 900, 1300, 5000)] == pytest.approx([0.0, 0.0, 0.0, 0.5, 1.0, 1.0])
    assert at(499, beta_start=0.3) == 0.0 and at(500, beta_start=0.3) == pytest.approx(0.3)
    cyclical = dict(beta_cycle_molecules=1000, beta_cycles=2, beta_cycle_ramp=0.5)
    assert [at(m, **cyclical) for m in (250, 750, 1500, 1750, 2500)] == pytest.approx([0.0, 0.5, 0.0, 0.5, 1.0])


def test_the_autoencoder_warm_start_re_initialises_the_decoder_once_with_a_fresh_optimizer_state(tmp_path):
    from molgen.nn.decoder import GRUDecoder

    class Record(Callback):
        def __init__(self) -> None:
            self.decoder: dict[int, dict[str, torch.Tensor]] = {}
            self.flag: dict[int, bool] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            step = trainer.global_step - 1
            self.decoder[step] = {k: v.detach().clone() for k, v in pl_module.model.decoder.state_dict().items()}
            self.flag[step] = pl_module.decoder_restarted
            self.module = pl_module

    record = Record()
    # batches of 16: beta 0 for the first 32 molecules (steps 0 and 1), then a fresh decoder and beta 1
    flags = ["--max-steps", 4, "--val-every", 4, "--set", "objective.ae_warmup_molecules=32",
             "--set", "objective.beta_warmup_molecules=0", "--set", "objective.restart_every_steps=0"]  # fmt: skip
    train(config_for(tmp_path, *flags), callbacks=[record])
    beta = [float(r["train/beta"]) for _, r in sorted(_metric_rows(tmp_path / "run").items())]
    assert beta == [0.0, 0.0, 1.0, 1.0]
    assert [record.flag[s] for s in range(4)] == [False, False, True, True]
    old = record.module.model.decoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(record.module.hparams.seed * 1_000_003 + 17)
        fresh = GRUDecoder(old.embed.num_embeddings, old.embed.padding_idx, old.embed.embedding_dim, old.hidden,
                           old.layers, old.latent_dim).state_dict()  # fmt: skip
    lr = record.module.optim["lr"]

    def furthest(step: int) -> float:
        return max(float((record.decoder[step][k] - fresh[k]).abs().max()) for k in fresh)

    # one AdamW step from a fresh state moves each weight by at most lr; the first decoder is another draw
    assert furthest(2) <= lr * 1.001 and furthest(1) > 10 * lr
    assert furthest(3) <= 2 * lr * 1.001  # and it is not re-initialised again:
    optimizer = record.module.trainer.optimizers[0]  # AdamW counts the decoder's steps from the reset on
    assert {int(optimizer.state[p]["step"]) for p in record.module.model.decoder.parameters()} == {2}
    assert {int(optimizer.state[p]["step"]) for p in record.module.model.encoder.parameters()} == {4}
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["molgen"]["decoder_restarted"] is True


def test_a_checkpoint_without_the_warm_start_flag_never_re_initialises_its_decoder():
    from molgen.model.lightning import VAEModule

    module = VAEModule.__new__(VAEModule)
    module.on_load_checkpoint({"molgen": {"molecules": 10}})
    assert module.decoder_restarted is True and module.molecules_total == 10
    module.on_load_checkpoint({"molgen": {"molecules": 10, "decoder_restarted": False}})
    assert module.decoder_restarted is False


@pytest.mark.parametrize("key, value, message", [
    ("model.mu_batchnorm", -0.5, "model.mu_batchnorm must be >= 0"),
    ("objective.beta_cycle_molecules", -1, "objective.beta_cycle_molecules must be >= 0"),
    ("objective.beta_cycle_ramp", 0.0, "objective.beta_cycle_ramp must be in (0, 1]"),
    ("objective.ae_warmup_molecules", -1, "objective.ae_warmup_molecules must be >= 0"),
])  # fmt: skip
def test_bn_vae_and_cyclical_beta_settings_are_checked(key, value, message):
    with pytest.raises(MolgenError, match=re.escape(message)):
        apply_overrides(TrainConfig(), {key: value}).validate()
    with pytest.raises(MolgenError, match=re.escape("objective.beta_cycles must be >= 1")):
        apply_overrides(TrainConfig(), {"objective.beta_cycle_molecules": 100, "objective.beta_cycles": 0}).validate()


class _RecordStepLoss(Callback):
    """The loss each training step returned, the usage EMA after it and the molecules seen."""

    def __init__(self) -> None:
        self.steps: dict[int, tuple[float, torch.Tensor, int]] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps[trainer.global_step - 1] = (float(outputs["loss"]), pl_module.usage_ema.clone(), pl_module.molecules_total)


def test_usage_bonus_subtracts_its_weight_times_the_batch_usage_entropy_from_the_loss(tmp_path):
    # bonus 0.5 annealed to 0 over 64 molecules: weights 0.375, 0.25, 0.125 and 0 at steps 0-3 (16 molecules each)
    record = _RecordStepLoss()
    flags = ["--max-steps", 4, "--val-every", 4, "--set", "objective.usage_bonus=0.5",
             "--set", "objective.beta_warmup_molecules=64", "--set", "objective.restart_every_steps=0"]  # fmt: skip
    train(config_for(tmp_path, *flags), callbacks=[record])
    logged = _metric_rows(tmp_path / "run")  # train/loss is the ELBO loss, without the bonus
    previous = None
    for step in range(4):
        loss, ema, molecules = record.steps[step]
        # the first batch sets the usage estimate; later ones move it by 0.1 of their usage
        usage = ema if previous is None else (ema - 0.9 * previous) / 0.1
        previous = ema
        entropy = float(-(usage * torch.log(usage)).sum())
        weight = 0.5 * max(0.0, 1 - molecules / 64)
        assert molecules == 16 * (step + 1) and entropy > 0.5  # measured 0.87-1.02 nats (3 components)
        # measured offsets -0.367, -0.254, -0.124, 0.0; the float32 loss of ~120 nats rounds at 1e-5
        assert loss - float(logged[step]["train/loss"]) == pytest.approx(-weight * entropy, abs=2e-4), step


def test_restart_mode_poor_moves_a_dead_component_onto_a_poorly_fit_molecule(tmp_path):
    from molgen.model.diagnostics import posterior_statistics

    class Spy(Callback):  # callbacks run before the module's hooks: this sees the prior before the restart
        def on_validation_epoch_end(self, trainer, pl_module) -> None:
            self.stats = posterior_statistics(pl_module.model, trainer.datamodule.diagnostic_tensors(),
                                              n_samples=pl_module.objective["kl_samples"], seed=pl_module.hparams.seed)
            self.before = {k: v.clone() for k, v in pl_module.model.prior.state_dict().items()}

        def on_validation_end(self, trainer, pl_module) -> None:
            self.after = {k: v.clone() for k, v in pl_module.model.prior.state_dict().items()}

    spy = Spy()
    flags = ["--max-steps", 2, "--val-every", 2, "--set", "objective.restart_mode=poor",
             "--set", "objective.restart_every_steps=0"]  # fmt: skip
    summary = train(config_for(tmp_path, *flags), callbacks=[_KillComponent(), spy])
    assert summary["diagnostics"]["dead_components"] == [0] and summary["component_restarts"] == 1
    elbo, mu = spy.stats["elbo"], spy.stats["mu"]  # the 32 diagnostic molecules
    poor = torch.argsort(elbo)[: len(elbo) // 10]  # the worst 10% by ELBO: 3 molecules
    new_mean = spy.after["means"][0]
    distance = (mu - new_mean).abs().max(1).values
    assert distance.min() < 1e-6 and int(distance.argmin()) in poor.tolist()  # exactly one of their posterior means
    assert elbo[distance.argmin()] < elbo.median() - 10  # measured -160 against a median of -123 nats
    assert (spy.before["means"][0] - new_mean).abs().max() > 0.1  # it did move
    torch.testing.assert_close(spy.after["means"][1:], spy.before["means"][1:])  # the live components stay
    torch.testing.assert_close(torch.softmax(spy.after["logits"], -1)[0], torch.tensor(1 / 3))
    torch.testing.assert_close(spy.after["log_scales"][0], spy.before["log_scales"][1:].mean(0))
    model, _ = load_model(tmp_path / "run" / "model.pt")
    torch.testing.assert_close(model.prior.means[0].detach(), new_mean)


def test_word_dropout_changes_the_training_reconstruction_and_trains(tmp_path):
    runs = {}
    for rate in ("0.0", "0.5"):
        flags = ["--max-steps", 3, "--val-every", 3, "--set", f"model.word_dropout={rate}"]
        summary = train(config_for(tmp_path / rate, *flags))
        assert summary["global_step"] == 3 and np.isfinite(summary["val"]["elbo"])
        runs[rate] = _metric_rows(tmp_path / rate / "run")
        model, _ = load_model(tmp_path / rate / "run" / "model.pt")
        assert model.word_dropout == float(rate)
    # step 0: the same weights, batch and z draws (the KL matches); only the decoder's inputs differ
    # (measured rec -125.47 without dropout, -125.01 with)
    plain, dropped = runs["0.0"][0], runs["0.5"][0]
    assert float(dropped["train/kl"]) == pytest.approx(float(plain["train/kl"]), abs=1e-5)
    assert abs(float(dropped["train/rec"]) - float(plain["train/rec"])) > 0.05


def test_max_time_with_resume_is_a_budget_per_stretch(tmp_path):
    train(config_for(tmp_path, "--max-steps", 2, "--val-every", 50))
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    assert ckpt_step(last) == 2
    resume = ["train", "--out", str(run), "--resume", "--max-steps", "50", "--no-progress"]
    for expected in (3, 4):  # a zero budget: each resumed stretch runs exactly one step, then validates and saves
        assert main([*resume, "--max-time", "00:00:00:00"]) == 0
        summary = json.loads((run / "summary.json").read_text())
        assert summary["global_step"] == expected and summary["steps_this_run"] == 1
        assert ckpt_step(last) == expected
        assert sorted(_metric_rows(run)) == list(range(expected))  # one row per step, none repeated
    # with a budget left, the next stretch runs on to --max-steps
    assert main(["train", "--out", str(run), "--resume", "--max-steps", "6", "--max-time", "00:00:10:00", "--no-progress"]) == 0
    assert ckpt_step(last) == 6



def test_the_defences_table_chooses_the_lowest_iwae_defence_that_keeps_the_latent(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("defences_table", ROOT / "scripts" / "defences_table.py")
    defences_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(defences_table)
    # (setting, -IWAE, KL): plain is best by NLL but collapsed; no_restart is an ablation, never chosen
    for name, iwae, kl in [("plain", 20.0, 2.0), ("kl_target", 21.0, 12.0), ("bn_vae", 20.5, 11.0), ("no_restart", 19.0, 12.0)]:
        run = tmp_path / name
        run.mkdir()
        diagnostics = {"active_units": 9, "latent_dim": 64, "mutual_info": 3.0, "n_eff": 8.5, "n_dead": 1, "mi_x_k": 1.2}
        likelihood = {"iwae_nll": {"nats_per_molecule": iwae, "se": 0.3}, "k": 1000, "kl": kl}
        (run / "eval.json").write_text(json.dumps({"likelihood": likelihood, "diagnostics": diagnostics}))
        (run / "score.json").write_text(json.dumps({"FCD/Test": 1.5}))
        (run / "sample.json").write_text(json.dumps({"valid_fraction": 0.9}))
        (run / "metrics.csv").write_text("step,val/exact\n10,0.05\n20,\n")
    (tmp_path / "free_bits").mkdir()  # not measured yet: no row
    rows = [row for run in sorted(tmp_path.iterdir()) if (row := defences_table.setting_row(run))]
    assert [r["setting"] for r in rows] == ["bn_vae", "kl_target", "no_restart", "plain"]
    assert defences_table.choose(rows, 10.0) == "bn_vae"
    assert defences_table.choose(rows, 15.0) is None
    lines = defences_table.table(rows, "bn_vae").splitlines()
    assert lines[2] == "| **bn_vae** | 20.50 ± 0.30 (K = 1000) | 11.00 | 9/64 | 3.00 | 8.50 | 1 | 1.20 | 0.050 | 1.500 | 0.900 |"
