"""`molgen train` on the CPU: one process with T threads against DDP ranks of one thread each.

The fused GRU's step kernel runs on one thread, and small GEMMs split over two threads wait on
each other, so two 1-thread processes can train more molecules per second than one 2-thread
process. This runs the real training loop (data, validation off, checkpoints at the end) for each
layout at the same global batch and prints the median `train/mol_per_s` (over all ranks) after
the first --skip logged steps.

    PYTHONPATH=. .venv/bin/python benchmarks/train_ddp_cpu.py --steps 200 --batch 256

DDP ranks get --batch / ranks molecules each, so the optimizer sees the same batch size.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import load_average, machine  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]


def layout_flags(ranks: int, threads: int, batch: int) -> list[str]:
    """`molgen train` flags for ``ranks`` processes of ``threads`` threads at a global batch of ``batch``."""
    flags = ["--threads", str(threads), "--batch-size", str(batch // ranks)]
    if ranks > 1:
        flags += ["--devices", str(ranks), "--strategy", "ddp", "--accelerator", "cpu"]
    return flags


def median_rate(metrics: Path, skip: int) -> tuple[float, int]:
    """Median of the logged train/mol_per_s after the first ``skip`` rows that have one, and the count."""
    rates = [float(r["train/mol_per_s"]) for r in csv.DictReader(open(metrics, encoding="utf-8")) if r.get("train/mol_per_s")]
    rates = rates[skip:]
    if not rates:
        raise SystemExit(f"{metrics}: no train/mol_per_s after the first {skip} rows; give more --steps")
    return statistics.median(rates), len(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "moses" / "train.csv.gz"))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256, help="global batch (molecules per optimizer step)")
    parser.add_argument("--skip", type=int, default=2, help="logged rows left out at the start (warm-up)")
    parser.add_argument("--precision", default="bf16-mixed")
    parser.add_argument("--layout", action="append", metavar="RANKSxTHREADS",
                        help="e.g. 1x2 (one process, 2 threads) or 2x1 (two DDP ranks); default both")  # fmt: skip
    args = parser.parse_args()
    print(f"machine: {machine()}")
    for layout in args.layout or ["1x2", "2x1"]:
        ranks, threads = (int(x) for x in layout.split("x"))
        out = Path(tempfile.mkdtemp(prefix=f"molgen-ddp-{layout}-"))
        cmd = [sys.executable, "-m", "molgen", "train", "--data", args.data, "--out", str(out), "--max-steps", str(args.steps),
               "--val-every", str(10 * args.steps), "--precision", args.precision, "--seed", "0", "--no-progress",
               "--set", "trainer.fcd_samples=0", "--set", "trainer.log_every_n_steps=10", *layout_flags(ranks, threads, args.batch)]  # fmt: skip
        load = load_average()
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
        rate, n = median_rate(out / "metrics.csv", args.skip)
        print(f"{layout}: {ranks} process(es) x {threads} thread(s), batch {args.batch // ranks} per rank: "
              f"median {rate:7.1f} mol/s over {n} logged steps (load average at start {load})", flush=True)


if __name__ == "__main__":
    main()
