"""`molgen score` against the MOSES reference implementation (`moses.get_all_metrics`).

    python benchmarks/moses_reference.py [--n 30000] [--seed 0] [--moses-python /tmp/moses-venv/bin/python]
    python benchmarks/moses_reference.py --sides moses        # one side now ...
    python benchmarks/moses_reference.py --reuse              # ... the other later, then the table

Draws N molecules with a fixed seed from the MOSES test split and N from the train split, scores
each file with `molgen score` (same machine, same run) and with `moses.get_all_metrics(gen,
n_jobs=2)` in the separate MOSES virtualenv (build it with `bash benchmarks/make_moses_venv.sh`),
prints the side-by-side table with the largest difference and the wall times, and appends them to
benchmarks/RESULTS.md.

Like for like: MOSES's `get_all_metrics` by default compares against statistics precomputed by the
MOSES authors and shipped in the wheel (`test_stats.npz`, `test_scaffolds_stats.npz`; FCD mu/sigma,
SNN fingerprints, fragment/scaffold counts, property values), computed from the same
test/test_scaffolds files that molgen reads from data/moses (the script checks the sha256 of both
copies). molgen computes its own statistics from those files once and caches them. The script also
reports the Fréchet distance between MOSES's shipped FCD statistics and molgen's. With
`--moses-reference files` MOSES instead recomputes every statistic from the files (slow: hours of
ChemNet on two cores).

This file is also the worker that runs inside the MOSES venv (`--worker`); it imports molgen only
in the driver and moses only in the worker.
"""
from __future__ import annotations

import argparse
import datetime
import gzip
import hashlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "moses"
TOLERANCE = 0.002
MOSES_KEYS = (
    "valid", "unique@1000", "unique@10000",
    "FCD/Test", "SNN/Test", "Frag/Test", "Scaf/Test",
    "FCD/TestSF", "SNN/TestSF", "Frag/TestSF", "Scaf/TestSF",
    "IntDiv", "IntDiv2", "Filters", "Novelty", "logP", "SA", "QED", "weight",
)  # fmt: skip


def _read_smiles(path: Path) -> list[str]:
    with gzip.open(path, "rt") as handle:
        lines = handle.read().splitlines()
    assert lines[0] == "SMILES", lines[0]
    return [line for line in lines[1:] if line]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- worker (inside the MOSES venv)


def worker(args: argparse.Namespace) -> None:
    """Run get_all_metrics on a .smi file and write the metrics, seconds and versions as JSON."""
    import warnings

    import numpy as np

    warnings.filterwarnings("ignore")
    import fcd_torch
    import moses
    import rdkit
    from moses.dataset import get_dataset, get_statistics

    gen = Path(args.worker).read_text().split()
    kwargs = {}
    if args.moses_reference == "files":
        kwargs = {"test": _read_smiles(DATA / "test.csv.gz"), "test_scaffolds": _read_smiles(DATA / "test_scaffolds.csv.gz")}
    started = time.perf_counter()
    metrics = moses.get_all_metrics(gen, n_jobs=2, **kwargs)
    seconds = time.perf_counter() - started
    stats = get_statistics("test")["FCD"]
    np.savez(args.worker_out + ".fcd.npz", mu=stats["mu"], sigma=stats["sigma"])
    package_data = Path(moses.__file__).parent / "dataset" / "data"
    out = {
        "metrics": {k: float(v) for k, v in metrics.items()},
        "seconds": seconds,
        "versions": {"rdkit": rdkit.__version__, "fcd_torch": getattr(fcd_torch, "__version__", "?"),
                     "numpy": np.__version__, "moses": "molsets 0.3.1"},
        "package_sha256": {name: _sha256(package_data / f"{name}.csv.gz") for name in ("test", "test_scaffolds", "train")},
        "train_size": len(get_dataset("train")),
    }  # fmt: skip
    Path(args.worker_out).write_text(json.dumps(out, indent=2))


# ---------------------------------------------------------------- driver (molgen venv)


def _timed(command: list[str]) -> dict:
    """Run a command; its wall time, CPU time (user + system of it and its waited-for descendants), load."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_seconds": wall, "cpu_seconds": cpu, "load_before": load, "load_after": os.getloadavg()[0],
            "finished": datetime.datetime.now().isoformat(timespec="seconds")}  # fmt: skip


def _run_side(args: argparse.Namespace, side: str, path: Path, out: Path) -> dict:
    """Score ``path`` with molgen or MOSES (or reuse an earlier result): {"result", "timing"}."""
    timing_path = out.with_suffix(".timing.json")
    if args.reuse and out.exists() and timing_path.exists():
        print(f"reusing {out}", flush=True)
        return {"result": json.loads(out.read_text()), "timing": json.loads(timing_path.read_text())}
    if side == "molgen":
        command = [sys.executable, "-m", "molgen", "score", str(path), "--out", str(out)]
    else:
        command = [args.moses_python, str(Path(__file__).resolve()), "--worker", str(path), "--worker-out", str(out),
                   "--moses-reference", args.moses_reference]  # fmt: skip
    print(f"$ {' '.join(command)}", flush=True)
    timing = _timed(command)
    timing_path.write_text(json.dumps(timing, indent=2))
    return {"result": json.loads(out.read_text()), "timing": timing}


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import rdkit  # the driver runs in molgen's venv; the worker never calls this
    import torch

    from molgen.metrics.similarity import kernel_available

    tanimoto = "AVX-512 popcount kernel" if kernel_available() else "portable int8 path"
    return (f"{platform.node()}: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"torch {torch.__version__}, RDKit {rdkit.__version__}, molgen Tanimoto: {tanimoto}")  # fmt: skip


def driver(args: argparse.Namespace) -> None:
    """Sample, score both ways, print and record the comparison."""
    import numpy as np

    from molgen.metrics.fcd import frechet_distance
    from molgen.metrics.reference import reference_stats

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    samples = {}
    for split in ("test", "train"):
        smiles = _read_smiles(DATA / f"{split}.csv.gz")
        path = work / f"{split}_{args.n}_seed{args.seed}.smi"
        path.write_text("\n".join(random.Random(args.seed).sample(smiles, args.n)) + "\n")
        samples[split] = path

    sides = args.sides.split(",")
    if args.warm and "molgen" in sides:
        print("warming molgen's reference cache ...", flush=True)
        _run_side(args, "molgen", samples["test"], work / "warmup.molgen.json")
    runs = {}
    for split, path in samples.items():
        for side in sides:
            runs[split, side] = _run_side(args, side, path, work / f"{split}.{side}.json")
    if sorted(sides) != ["molgen", "moses"]:
        return

    rows = []
    for split in samples:
        ours, theirs = runs[split, "molgen"]["result"], runs[split, "moses"]["result"]["metrics"]
        for key in MOSES_KEYS:
            a, b = ours.get(key), theirs.get(key)
            diff = abs(a - b) if a is not None and b is not None else float("nan")
            rows.append((split, key, a, b, diff))
    moses_info = runs["test", "moses"]["result"]
    ref = reference_stats(DATA / "test.csv.gz")
    with np.load(work / "test.moses.json.fcd.npz") as z:
        fcd_stats = frechet_distance(ref.fcd_mu, ref.fcd_sigma, z["mu"], z["sigma"])

    lines = [f"### molgen score vs moses.get_all_metrics ({datetime.date.today()})", ""]
    lines.append(f"Machine: {_machine()}. Samples: {args.n:,} molecules from each MOSES split, "
                 f"`random.Random({args.seed}).sample`. MOSES reference statistics: "
                 f"{'shipped in the molsets wheel' if args.moses_reference == 'package' else 'recomputed from the files'}.")  # fmt: skip
    same = all(moses_info["package_sha256"][n] == _sha256(DATA / f"{n}.csv.gz") for n in ("test", "test_scaffolds", "train"))
    lines.append(f"MOSES wheel data files identical to data/moses (sha256): {same}. "
                 f"FCD between MOSES's shipped test FCD statistics and molgen's cached ones: {fcd_stats:.5f}.")  # fmt: skip
    ours_v = runs["test", "molgen"]["result"]["versions"]
    lines.append(f"molgen side: rdkit {ours_v['rdkit']}, fcd-torch {ours_v['fcd_torch']}, torch {ours_v['torch']}; "
                 f"MOSES side: rdkit {moses_info['versions']['rdkit']}, numpy {moses_info['versions']['numpy']}.")  # fmt: skip
    lines += ["", "| split | metric | molgen | MOSES | abs diff |", "|---|---|---:|---:|---:|"]
    for split, key, a, b, diff in rows:
        flag = "" if diff <= TOLERANCE else " **over**"
        lines.append(f"| {split} | {key} | {a:.4f} | {b:.4f} | {diff:.5f}{flag} |")
    worst = max(rows, key=lambda r: -1 if r[4] != r[4] else r[4])
    lines += ["", f"Largest difference: {worst[4]:.5f} ({worst[0]} {worst[1]}); tolerance {TOLERANCE}.", ""]
    lines += ["| sample | tool | wall (s) | CPU user+sys (s) | load avg at start | finished |",
              "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for split in samples:
        for side, label in (("molgen", "`molgen score` process"), ("moses", "`get_all_metrics` process")):
            t = runs[split, side]["timing"]
            lines.append(f"| {split} | {label} | {t['wall_seconds']:.1f} | {t['cpu_seconds']:.1f} | "
                         f"{t['load_before']:.1f} | {t['finished']} |")  # fmt: skip
        ours_t, theirs_t = runs[split, "molgen"]["timing"], runs[split, "moses"]["timing"]
        call = runs[split, "moses"]["result"]["seconds"]
        lines.append(f"| {split} | speed-up | {theirs_t['wall_seconds'] / ours_t['wall_seconds']:.1f}x | "
                     f"{theirs_t['cpu_seconds'] / ours_t['cpu_seconds']:.1f}x | | (get_all_metrics call alone {call:.1f} s) |")  # fmt: skip
    warm = "warm (filled by a run before)" if args.warm else "as found"
    lines += ["", f"molgen's reference cache was {warm}; MOSES used its shipped statistics. The machine is shared "
              "with other work: wall times depend on its load (load average given), CPU seconds much less.", ""]  # fmt: skip
    text = "\n".join(lines)
    print(text)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as handle:
        handle.write("\n" + text + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--moses-python", default="/tmp/moses-venv/bin/python")
    parser.add_argument("--moses-reference", choices=("package", "files"), default="package")
    parser.add_argument("--work", default="/tmp/molgen-moses-bench", help="folder for samples and reports")
    parser.add_argument("--no-warm", dest="warm", action="store_false", help="do not warm molgen's cache first")
    parser.add_argument("--sides", default="molgen,moses", help="scorers to run (the table needs both)")
    parser.add_argument("--reuse", action="store_true", help="reuse results and timings already in --work")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
    else:
        driver(args)


if __name__ == "__main__":
    main()
