"""Atomic outputs, a shared token cache, and byte-identical samples (issue 9, parts 5 and 6).

CSV, JSON, YAML, model files and token caches are written under a temporary name beside the target
and renamed: a crash (an exception, or SIGKILL of the process) in the middle of a write leaves the
previous file as it was. Two processes that fill the same token cache at once do not corrupt it.
(Checkpoints written during training are covered in test_reliability_checkpoints.py.)
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import molgen.library as library_module
import molgen.token_cache as token_cache_module
from molgen.evaluate import evaluate
from molgen.files import atomic_open, atomic_path
from molgen.sample import Generator
from molgen.token_cache import load_tokenized

from reliability_fixtures import molgen_env, molgen_process, run_cli, tiny_model, training_file

PREVIOUS = "SMILES\nprevious,complete,file\n"


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ----------------------------------------------------------------------------- the primitives


@pytest.mark.parametrize("opener", ["atomic_open", "atomic_path"])
def test_error_mid_write_keeps_the_previous_file(opener, tmp_path):
    target = tmp_path / "out.csv"
    target.write_text(PREVIOUS)
    with pytest.raises(RuntimeError, match="crash"):
        if opener == "atomic_open":
            with atomic_open(target, "w") as handle:
                handle.write("SMILES\nhalf of the new")
                handle.flush()
                raise RuntimeError("crash")
        else:
            with atomic_path(target) as tmp:
                tmp.write_text("SMILES\nhalf of the new")
                raise RuntimeError("crash")
    assert target.read_text() == PREVIOUS
    assert _temp_files(tmp_path) == []


def test_new_file_appears_whole_and_with_the_usual_permissions(tmp_path):
    target = tmp_path / "out.csv"
    with atomic_open(target, "w") as handle:
        handle.write("SMILES\nCCO\n")
        assert not target.exists()  # nothing at the final name until the write is complete
    assert target.read_text() == "SMILES\nCCO\n"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600


# ----------------------------------------------------------------------------- sample CSV


def test_sampler_error_mid_write_keeps_the_previous_csv(tmp_path, monkeypatch):
    gen = Generator.load(tiny_model(tmp_path / "model.pt"))
    target = tmp_path / "lib.csv"
    target.write_text(PREVIOUS)
    real = library_module.decode_rows
    calls = {"n": 0}

    def failing(args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        return real(args)

    monkeypatch.setattr(library_module, "decode_rows", failing)
    monkeypatch.setenv("MOLGEN_WORKERS", "1")
    with pytest.raises(OSError, match="No space left"):
        gen.write(target, 500, batch_size=50, progress=False)
    assert target.read_text() == PREVIOUS
    assert _temp_files(tmp_path) == []


@pytest.mark.slow
def test_sigkill_while_sampling_keeps_the_previous_csv(tmp_path):
    tiny_model(tmp_path / "model.pt")
    target = tmp_path / "lib.csv"
    target.write_text(PREVIOUS)
    process = molgen_process(["sample", "--model", "model.pt", "-n", 10**8, "--batch-size", 256, "--out", "lib.csv"],
                             cwd=tmp_path)  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.stat().st_size > 10_000 for p in tmp_path.glob(".lib.csv.*.tmp")):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "sampling never started writing"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert target.read_text() == PREVIOUS  # the half-written library is only ever under the temporary name


# ----------------------------------------------------------------------------- JSON report


def test_error_while_writing_the_evaluation_report_keeps_the_previous_one(tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "model.pt")
    data = training_file(tmp_path / "data.csv", 20)
    report = tmp_path / "report.json"
    report.write_text('{"previous": true}')
    real_dump = json.dump

    def half_dump(obj, handle, **kwargs):
        handle.write('{"likelihood": {"n_molec')
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(json, "dump", half_dump)
    with pytest.raises(OSError, match="No space left"):
        evaluate(model, data, n=4, k=2, out=report)
    monkeypatch.setattr(json, "dump", real_dump)
    assert json.loads(report.read_text()) == {"previous": True}
    assert _temp_files(tmp_path) == []
    evaluate(model, data, n=4, k=2, out=report)
    assert json.loads(report.read_text())["likelihood"]["n_molecules"] == 4


# ----------------------------------------------------------------------------- token cache


def _only_cache_file(cache: Path) -> Path:
    files = [p for p in cache.iterdir() if p.suffix == ".npz"]
    assert len(files) == 1, files
    return files[0]


def test_error_while_writing_the_token_cache_keeps_the_previous_cache(tmp_path, monkeypatch):
    data = training_file(tmp_path / "data.csv", 50)
    cache = tmp_path / "cache"
    tok, first = load_tokenized(data, cache_dir=cache)
    cache_file = _only_cache_file(cache)
    before = cache_file.read_bytes()

    def half_savez(handle, **arrays):
        handle.write(b"PK\x03\x04 half a cache")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_cache_module, "_load_cache", lambda path: None)  # tokenize and write the cache again
    monkeypatch.setattr(np, "savez", half_savez)
    with pytest.raises(OSError, match="No space left"):
        load_tokenized(data, cache_dir=cache)
    assert cache_file.read_bytes() == before
    assert _temp_files(cache) == []


def test_damaged_cache_is_rebuilt_not_trusted(tmp_path):
    data = training_file(tmp_path / "data.csv", 50)
    cache = tmp_path / "cache"
    tok, first = load_tokenized(data, cache_dir=cache)
    cache_file = _only_cache_file(cache)
    cache_file.write_bytes(cache_file.read_bytes()[:300])  # e.g. a copy cut short
    tok2, again = load_tokenized(data, cache_dir=cache)
    assert tok2 == tok and np.array_equal(again.ids, first.ids) and np.array_equal(again.offsets, first.offsets)
    assert again.smiles == first.smiles and np.array_equal(again.lines, first.lines)


_CACHE_WORKER = """
import hashlib, os, sys
from pathlib import Path
from molgen.token_cache import load_tokenized
data, cache, rounds = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
digests = set()
for i in range(rounds):
    if i % 2 == 0:  # drop the cache now and then, so that both processes write it again and again
        for p in cache.glob("*.npz"):
            p.unlink(missing_ok=True)
    tok, d = load_tokenized(data, cache_dir=cache)
    digests.add(hashlib.sha256(d.ids.tobytes() + d.offsets.tobytes() + "|".join(tok.tokens).encode()).hexdigest())
print(" ".join(sorted(digests)))
"""


@pytest.mark.slow
def test_two_processes_sharing_a_token_cache_do_not_corrupt_it(tmp_path):
    data = training_file(tmp_path / "data.csv", 300)
    cache = tmp_path / "cache"
    cache.mkdir()
    args = [sys.executable, "-c", _CACHE_WORKER, str(data), str(cache), "16"]
    workers = [subprocess.Popen(args, env=molgen_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]  # fmt: skip
    results = [w.communicate(timeout=300) for w in workers]
    for w, (out, err) in zip(workers, results):
        assert w.returncode == 0, err[-3000:]
    tok, d = load_tokenized(data, cache_dir=cache)
    expected = hashlib.sha256(d.ids.tobytes() + d.offsets.tobytes() + "|".join(tok.tokens).encode()).hexdigest()
    assert [out.split() for out, _ in results] == [[expected], [expected]]
    assert _temp_files(cache) == []
    reference = training_file(tmp_path / "fresh.csv", 300)
    _, fresh = load_tokenized(reference, cache_dir=tmp_path / "other-cache")
    assert np.array_equal(fresh.ids, d.ids)


# ----------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_sample_csv(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MOLGEN_WORKERS", "1")  # (worker counts are compared across processes below)
    model = tiny_model(tmp_path / "model.pt")
    for name, seed in (("a.csv", 11), ("b.csv", 11), ("c.csv", 12)):
        code, _, err = run_cli(capsys, ["sample", "--model", model, "-n", 400, "--seed", seed, "--batch-size", 128,
                                        "--out", tmp_path / name])  # fmt: skip
        assert code == 0, err
    a = (tmp_path / "a.csv").read_bytes()
    assert a == (tmp_path / "b.csv").read_bytes()
    assert a != (tmp_path / "c.csv").read_bytes()


@pytest.mark.slow
def test_same_seed_gives_byte_identical_csv_across_processes_and_worker_counts(tmp_path):
    tiny_model(tmp_path / "model.pt")
    runs = [("a.csv", "1", "0"), ("b.csv", "2", "12345")]  # (output, MOLGEN_WORKERS, PYTHONHASHSEED)
    for name, workers, hashseed in runs:
        argv = [sys.executable, "-m", "molgen", "sample", "--model", "model.pt", "-n", "1500", "--seed", "5",
                "--batch-size", "512", "--out", name]  # fmt: skip
        env = molgen_env(MOLGEN_WORKERS=workers, PYTHONHASHSEED=hashseed)
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert len((tmp_path / "a.csv").read_text().splitlines()) == 1501
