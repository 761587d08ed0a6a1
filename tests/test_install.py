"""`pip install .` gives a working molgen: the wheel carries the shipped model, the MOSES splits and
their statistics, and `molgen sample` / `molgen score` work from a folder outside the checkout."""
from __future__ import annotations

import csv
import json
import os
import site
import subprocess
import sys
import zipfile

import pytest

from conftest import ROOT


def _run(argv, cwd, env=None, timeout=900):
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, argv))}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_the_wheel_samples_and_scores_from_a_folder_outside_the_checkout(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", wheels, ROOT], cwd=tmp_path)
    (wheel,) = wheels.glob("molgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("molgen/_bundled/checkpoints/molgen-moses.pt", "molgen/_bundled/data/moses/test.csv.gz",
                 "molgen/_bundled/data/moses/train.csv.gz", "molgen/metrics/data/moses_stats.npz"):  # fmt: skip
        assert name in names, name
    # a fresh environment: molgen from the wheel only; its dependencies seen through a .pth file
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    (purelib,) = (venv / "lib").glob("python*/site-packages")
    deps = [p for p in site.getsitepackages() if os.path.isdir(p)]
    (purelib / "molgen_test_deps.pth").write_text("\n".join(deps) + "\n")
    _run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", "--no-index", wheel],
         cwd=tmp_path)  # fmt: skip
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["MOLGEN_CACHE_DIR"] = str(tmp_path / "empty-cache")
    where = _run([venv / "bin" / "python", "-c", "import molgen, molgen.resources as r; print(molgen.__file__, r.bundled(r.MODEL))"],
                 cwd=work, env=env).stdout  # fmt: skip
    assert str(venv) in where and str(ROOT) not in where  # the installed copy, not the checkout
    _run([venv / "bin" / "molgen", "sample", "-n", "100", "--out", "x.csv", "--seed", "0"], cwd=work, env=env)
    with open(work / "x.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == 100
    scored = _run([venv / "bin" / "molgen", "score", "x.csv", "--out", "report.json"], cwd=work, env=env)
    report = json.loads((work / "report.json").read_text())
    assert report["counts"]["input"] == 100 and 0 < report["FCD/Test"] < 100 and 0 <= report["Novelty"] <= 1
    assert report["references"]["test"]["statistics"].startswith("shipped")
    assert str(venv) in report["references"]["test"]["path"]
    assert "reference fingerprints of test.csv.gz" in scored.stderr  # progress is shown off a terminal
