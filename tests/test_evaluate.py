import json

import pytest

from molgen.cli import main

from conftest import SAMPLE


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--data", str(SAMPLE), "--out", str(out), "--max-steps", "4", "--val-every", "4",
            "--batch-size", "32", "--set", "data.val_size=64", "--set", "data.diag_molecules=64",
            "--set", "model.dec_hidden=32", "--set", "model.enc_hidden=16", "--set", "model.emb_dim=8",
            "--set", "model.latent_dim=4", "--set", "model.n_components=3", "--precision", "32-true",
            "--set", "trainer.fcd_samples=0", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    return out


def test_evaluate_writes_report_and_plots(tiny_run, tmp_path, capsys):
    out = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    code = main(["evaluate", "--model", str(tiny_run / "model.pt"), "--data", str(SAMPLE), "--n", "40",
                 "--k", "10", "--out", str(out), "--plots", str(plots)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    lik = report["likelihood"]
    assert lik["n_molecules"] == 40 and set(lik["iwae_curve"]) == {"1", "10"}
    assert lik["iwae_nll"]["nats_per_molecule"] <= lik["elbo_nll"]["nats_per_molecule"] + 1.0
    for key in ("active_units", "mutual_info", "n_eff", "dead_components", "mi_x_k", "kl_per_dim"):
        assert key in report["diagnostics"]
    assert (plots / "iwae_curve.png").stat().st_size > 1000
    assert (plots / "mixture_usage.png").stat().st_size > 1000
    assert "-IWAE-10" in capsys.readouterr().out


def test_evaluate_on_the_cpu_device_gives_the_default_figures(tiny_run, capsys):
    import torch

    from molgen.evaluate import evaluate

    model = tiny_run / "model.pt"
    default = evaluate(model, SAMPLE, n=30, k=10, seed=2)
    cpu = evaluate(model, SAMPLE, n=30, k=10, seed=2, device="cpu")
    for report in (default, cpu):
        report.pop("seconds")
    assert cpu == default
    argv = ["evaluate", "--model", str(model), "--data", str(SAMPLE), "--n", "30", "--k", "10", "--seed", "2"]
    tables = {}
    for device in ("cpu", "auto") if not torch.cuda.is_available() else ("cpu",):  # auto is the CPU here
        assert main([*argv, "--device", device]) == 0
        tables[device] = capsys.readouterr().out
    assert len(set(tables.values())) == 1 and "-IWAE-10" in tables["cpu"]
