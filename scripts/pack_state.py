"""Pack a run's last checkpoint and metrics into the compact training state that is committed.

    python scripts/pack_state.py runs/moses checkpoints/molgen-moses.state.pt

The next stretch, on any machine: ``molgen train --resume-from checkpoints/molgen-moses.state.pt --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from molgen.training_state import pack_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder of `molgen train` (holds checkpoints/last.ckpt)")
    parser.add_argument("dest", type=Path, help="packed state file to write")
    args = parser.parse_args()
    metrics = args.run / "metrics.csv"
    info = pack_state(args.run / "checkpoints" / "last.ckpt", args.dest, metrics if metrics.is_file() else None)
    print(f"{args.dest}: step {info['global_step']}, epoch {info['epoch']}, {info['molecules']:,} molecules, "
          f"{info['bytes'] / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
