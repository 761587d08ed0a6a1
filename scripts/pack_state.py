"""Pack a run's last checkpoint and metrics into the compact training state that is committed.

    python scripts/pack_state.py runs/moses checkpoints/molgen-moses.state.pt [--weights-from checkpoints/molgen-moses.pt] [--half-weights] [--no-moments]

With --weights-from (the model file exported from the same last.ckpt, in the state's folder) the
weights that file holds are not stored a second time (molgen.training_state). With --half-weights
the weights the state keeps itself are stored as float16 (a state committed between ships). With
--no-moments the AdamW moments are left out: the stretch resumed from it rebuilds them under an lr
warm-up (at least 100,000 molecules), and a ship adds ~4 MB less.

The next stretch, on any machine: ``molgen train --resume-from checkpoints/molgen-moses.state.pt --out DIR``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from molgen.training_state import pack_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="run folder of `molgen train` (holds checkpoints/last.ckpt and metrics.csv), "
                        "or a packed state file (a GPU stretch's, say: its metrics travel inside; a bare .ckpt file brings none)")
    parser.add_argument("dest", type=Path, help="packed state file to write")
    parser.add_argument("--weights-from", type=Path, help="model file beside DEST exported from the same checkpoint")
    parser.add_argument("--half-weights", action="store_true", help="store the weights kept in the state as float16")
    parser.add_argument("--no-moments", action="store_true", help="leave out AdamW's moments (rebuilt under an lr warm-up)")
    args = parser.parse_args()
    source = args.run if args.run.is_file() else args.run / "checkpoints" / "last.ckpt"
    metrics = args.run / "metrics.csv"
    info = pack_state(source, args.dest, metrics if metrics.is_file() else None,
                      weights_from=args.weights_from, half_weights=args.half_weights, moments=not args.no_moments)  # fmt: skip
    shared = f", {info['shared_tensors']} tensors shared with {args.weights_from}" if args.weights_from else ""
    shared += "" if info["moments"] else ", no optimizer moments"
    print(f"{args.dest}: step {info['global_step']}, epoch {info['epoch']}, {info['molecules']:,} molecules, "
          f"{info['bytes'] / 1e6:.1f} MB{shared}")


if __name__ == "__main__":
    main()
