"""Helpers shared by the reliability tests (issue 9): tiny models, CLI runs, tiny training flags."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from molgen.checkpoint import save_model
from molgen.cli import main
from molgen.model.vae import MoleculeVAE
from molgen.tokenizer import SelfiesTokenizer

from conftest import ROOT, SMALL_SMILES

TINY_MODEL = dict(emb_dim=8, enc_hidden=16, dec_hidden=16, latent_dim=4, n_components=2)

# a model of a few thousand parameters that trains a step in milliseconds on one core
TINY_TRAIN_FLAGS = [
    "--batch-size", "16", "--threads", "1", "--no-progress", "--precision", "32-true",
    "--set", "data.val_size=40", "--set", "data.diag_molecules=40", "--set", "trainer.log_every_n_steps=1",
    "--set", "model.emb_dim=8", "--set", "model.enc_hidden=16", "--set", "model.dec_hidden=16",
    "--set", "model.latent_dim=4", "--set", "model.n_components=2", "--set", "trainer.fcd_samples=0",
]  # fmt: skip



def sample_smiles(n: int = 200) -> list[str]:
    """The first ``n`` molecules of data/sample.csv (real MOSES molecules: no iodine)."""
    return (ROOT / "data" / "sample.csv").read_text().splitlines()[1 : n + 1]


def tiny_model(path: Path, max_len: int = 100, seed: int = 0) -> Path:
    """Write a small untrained VAE whose vocabulary covers SMALL_SMILES and ``sample_smiles()`` (no [I])."""
    torch.manual_seed(seed)
    tok = SelfiesTokenizer.build([*SMALL_SMILES, *sample_smiles()])
    model = MoleculeVAE(vocab_size=len(tok), max_len=max_len, **TINY_MODEL)
    with torch.no_grad():  # molecules end well before the cap
        model.decoder.out.bias[tok.eos_id] += 2.0
    save_model(path, model, tok)
    return path


def training_file(path: Path, n: int = 200) -> Path:
    """The first ``n`` molecules of data/sample.csv (real MOSES-like molecules)."""
    path.write_text("\n".join(["SMILES", *sample_smiles(n)]) + "\n")
    return path


def run_cli(capsys, argv: list[str]) -> tuple[int, str, str]:
    """Run ``molgen argv`` in-process; return (exit code, stdout, stderr)."""
    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code: int, err: str, *needles: str) -> str:
    """Exit code 2, exactly one line on stderr, no traceback, and every needle in the message."""
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert "Traceback" not in err
    assert err.startswith("molgen ") and ": error: " in err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def molgen_env(**extra: str) -> dict[str, str]:
    """Environment for ``python -m molgen`` subprocesses: the repository importable, one worker, one thread."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MOLGEN_WORKERS": "1", "OMP_NUM_THREADS": "1", **extra}
    env.pop("PYTHONWARNINGS", None)
    return env


def molgen_process(args: list[str], cwd: Path, **extra_env: str) -> subprocess.Popen:
    """Start ``python -m molgen args`` in ``cwd`` (stdout and stderr captured)."""
    return subprocess.Popen(
        [sys.executable, "-m", "molgen", *map(str, args)], cwd=cwd, env=molgen_env(**extra_env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def read_only_folder(path: Path):
    """Make ``path`` a folder nobody, root included, can create files in; return an undo function or None.

    Non-root users get chmod 0555. Root ignores permission bits, so for root the folder is made
    immutable with ``chattr +i`` (needs CAP_LINUX_IMMUTABLE and a filesystem that supports it).
    """
    path.mkdir(exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        return lambda: path.chmod(0o755)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode:
        return None

    def undo() -> None:
        subprocess.run(["chattr", "-i", str(path)], check=True)

    try:
        (path / "probe").touch()
    except OSError:
        return undo
    undo()
    return None
