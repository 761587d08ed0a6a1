"""Training compute of a packed run state (or a run's metrics.csv): molecules seen and the wall time of its training steps.

    python scripts/training_compute.py checkpoints/molgen-moses.state.pt
    python scripts/training_compute.py runs/lm/metrics.csv

Each logged training row covers the molecules since the previous row at that row's throughput
(`train/mol_per_s`), so the sum is the time spent in training steps; validation is not included.
"""
from __future__ import annotations

import argparse
import csv
import io


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("state", help="a packed training state, or a run's metrics.csv")
    args = parser.parse_args()
    if args.state.endswith(".csv"):
        text = open(args.state, encoding="utf-8").read()
    else:
        from molgen.training_state import state_metrics

        text = state_metrics(args.state)
    seen, seconds = 0.0, 0.0
    for row in csv.DictReader(io.StringIO(text)):
        if row.get("train/mol_per_s"):
            molecules = float(row["train/molecules"])
            seconds += (molecules - seen) / float(row["train/mol_per_s"])
            seen = molecules
    print(f"{args.state}: {seen:,.0f} molecules in {seconds / 3600:.1f} h of training steps (validation excluded)")


if __name__ == "__main__":
    main()
