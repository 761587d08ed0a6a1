"""Fine-tuning the shipped model on a small focused set (issue 17): config, vocabulary checks, real values."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from molgen.checkpoint import load_model
from molgen.cli import build_parser, main
from molgen.cli.train import config_from_args
from molgen.config import TrainConfig, finetune_config, load_config
from molgen.errors import MolgenError
from molgen.finetune import SHIPPED, base_training_file, check_molecules, resolve_model_path
from molgen.resources import MODEL, MOSES_TRAIN, bundled

from conftest import ROOT

FOCUSED = ROOT / "data" / "focused" / "tyk2.csv"
BAD_ROWS = {  # line in the test file -> SMILES the shipped model cannot read
    3: "Ic1ccc(NC(=O)c2c(Cl)cccc2Cl)cn1",  # iodine: [I] is not among its 29 tokens
    5: "C[N+](C)(C)Cc1ccc(NC(=O)c2c(Cl)cccc2Cl)cc1",  # a charged atom: [N+1]
    7: "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC",  # 60 tokens, the cap is 56
    9: "Ic1ccccc1Br",
}


def focused_file(path: Path, n: int, bad: dict[int, str] | None = None) -> Path:
    """The first ``n`` molecules of the shipped TYK2 series as a SMILES file, with ``bad`` rows at those lines."""
    with open(FOCUSED, encoding="utf-8") as handle:
        good = [row["SMILES"] for row in csv.DictReader(handle)][:n]
    rows, bad = [], dict(bad or {})
    while good or bad:
        line = len(rows) + 2  # line 1 is the header
        rows.append(bad.pop(line) if line in bad else good.pop(0))
    path.write_text("\n".join(["SMILES", *rows]) + "\n")
    return path


# ----------------------------------------------------------------------------- config


def test_finetune_yaml_is_the_builtin_finetune_config_and_default_yaml_still_the_defaults():
    assert load_config(ROOT / "configs" / "finetune.yaml") == finetune_config()
    assert load_config(ROOT / "configs" / "default.yaml") == TrainConfig()


def test_init_from_starts_from_the_small_set_defaults_and_flags_override_them():
    parse = build_parser().parse_args
    config = config_from_args(parse(["train", "--init-from", "shipped", "--data", "x.csv", "--out", "r", "--lr", "1e-4"]))
    assert config.finetune.init_from == "shipped" and config.optim.lr == 1e-4
    assert (config.data.batch_size, config.data.val_fraction, config.trainer.max_steps) == (64, 0.1, 300)
    assert config.trainer.early_stopping_patience == 4 and config.objective.beta_warmup_molecules == 0
    assert config.objective.kl_target == TrainConfig().objective.kl_target  # the objective's KL target still applies
    plain = config_from_args(parse(["train", "--data", "x.csv", "--out", "r"]))
    assert plain.finetune.init_from is None and plain.trainer.max_steps == TrainConfig().trainer.max_steps
    with pytest.raises(MolgenError, match="--init-from starts a new fine-tune"):
        config_from_args(parse(["train", "--init-from", "shipped", "--resume", "--data", "x.csv", "--out", "r"]))


def test_the_shipped_name_the_run_folder_and_the_base_training_set_resolve(tmp_path):
    assert resolve_model_path(SHIPPED) == bundled(MODEL)
    assert base_training_file(bundled(MODEL), None)[0] == bundled(MOSES_TRAIN)
    (tmp_path / "run").mkdir()
    with pytest.raises(MolgenError, match="no such model file"):
        resolve_model_path(str(tmp_path / "run"))
    (tmp_path / "run" / "model.pt").write_bytes(b"")
    assert resolve_model_path(str(tmp_path / "run")) == tmp_path / "run" / "model.pt"
    assert base_training_file(tmp_path / "run" / "model.pt", None)[0] is None  # no config.yaml beside it


# ----------------------------------------------------------------------------- the vocabulary stays the model's


def test_molecules_outside_the_vocabulary_are_an_error_naming_the_tokens_and_lines(tmp_path, capsys):
    data = focused_file(tmp_path / "set.csv", 6, BAD_ROWS)
    _, tokenizer = load_model(bundled(MODEL))
    with pytest.raises(MolgenError) as err:
        check_molecules(data, tokenizer, 56)
    message = str(err.value)
    assert "[I] on lines 3, 9" in message and "[N+1] on line 5" in message
    assert "longer than the model's cap of 56 tokens (line 7)" in message and "--on-invalid skip" in message
    assert "the model knows no charges" in message
    code = main(["train", "--init-from", "shipped", "--data", str(data), "--out", str(tmp_path / "run")])
    assert code == 2 and "[I] on lines 3, 9" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started
    rejects = check_molecules(data, tokenizer, 56, on_invalid="skip")
    assert [r.line for r in rejects] == [3, 5, 7, 9] and "[I]" in rejects[0].reason


# ----------------------------------------------------------------------------- a real fine-tune


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """20 steps from the shipped model on 200 molecules of the TYK2 series (plus 4 unreadable rows, skipped)."""
    tmp = tmp_path_factory.mktemp("finetune")
    data = focused_file(tmp / "set.csv", 200, BAD_ROWS)
    out = tmp / "run"
    argv = ["train", "--init-from", "shipped", "--data", str(data), "--out", str(out), "--on-invalid", "skip",
            "--max-steps", "20", "--val-every", "10", "--batch-size", "32", "--lr", "1e-3", "--no-progress",
            "--threads", "1", "--set", "model.latent_dim=32", "--set", "finetune.eval_samples=200",
            "--set", f"finetune.base_train={ROOT / 'data' / 'sample.csv'}",
            "--set", "finetune.eval_constraints=strict"]  # validity as strict decoding gives it (the shipped default is relaxed)  # fmt: skip
    assert main(argv) == 0
    return out


def test_a_finetune_moves_the_samples_towards_the_set(finetuned):
    comparison = json.loads((finetuned / "summary.json").read_text())["finetune"]["comparison"]
    before, after = comparison["before"], comparison["after"]
    assert comparison["n"] == 200 and comparison["set_size"] == 200
    assert after["nn_tanimoto_to_set"] > before["nn_tanimoto_to_set"] + 0.05
    assert after["fcd_to_set"] < before["fcd_to_set"]
    assert after["valid"] >= 0.95 and before["novelty_vs_set"] == 1.0
    assert 0 <= after["novelty_vs_base_train"] <= 1 and after["novelty_vs_set"] <= 1


def test_the_finetuned_model_keeps_the_vocabulary_and_architecture_and_has_new_weights(finetuned):
    base, base_tokenizer = load_model(bundled(MODEL))
    model, tokenizer = load_model(finetuned / "model.pt")
    assert tokenizer == base_tokenizer and model.hparams_dict == base.hparams_dict  # model.latent_dim=32 was ignored
    assert load_config(finetuned / "config.yaml").model.latent_dim == base.hparams_dict["latent_dim"]
    assert not torch.equal(model.decoder.out.weight, base.decoder.out.weight)
    extra = torch.load(finetuned / "model.pt", weights_only=True)["extra"]["finetune"]
    assert extra["init_from"] == str(bundled(MODEL)) and extra["prior_refit"]["n"] == 180 * 20


def test_a_finetune_holds_out_a_tenth_and_lists_the_skipped_rows(finetuned):
    summary = json.loads((finetuned / "summary.json").read_text())
    assert summary["val"]["n_molecules"] == 20 and summary["global_step"] == 20
    assert summary["finetune"]["restored_from"] == summary["best_checkpoint"]
    with open(finetuned / "rejects.csv", encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [int(r["line"]) for r in rejects] == sorted(BAD_ROWS) and summary["finetune"]["rejects"]["count"] == 4
    assert "outside the model's vocabulary: [I]" in rejects[0]["reason"] and "[N+1]" in rejects[1]["reason"]
    assert "longer than the model's cap of 56" in rejects[2]["reason"]
