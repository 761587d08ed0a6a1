"""Training compute of a packed run state: molecules seen and the wall time of its training steps.

    python scripts/training_compute.py checkpoints/molgen-moses.state.pt

Each logged training row covers the molecules since the previous row at that row's throughput
(`train/mol_per_s`), so the sum is the time spent in training steps; validation is not included.
"""
from __future__ import annotations

import argparse
import csv
import io

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state")
    args = parser.parse_args()
    metrics = torch.load(args.state, map_location="cpu", weights_only=True)["molgen_metrics"]
    text = metrics.decode() if isinstance(metrics, bytes) else str(metrics)
    seen, seconds = 0.0, 0.0
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("train/mol_per_s"):
            molecules = float(row["train/molecules"])
            seconds += (molecules - seen) / float(row["train/mol_per_s"])
            seen = molecules
    print(f"{args.state}: {seen:,.0f} molecules in {seconds / 3600:.1f} h of training steps (validation excluded)")


if __name__ == "__main__":
    main()
