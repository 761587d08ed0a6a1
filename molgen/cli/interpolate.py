"""`molgen interpolate A B`: molecules decoded along the line between two molecules' posterior means."""
from __future__ import annotations

import argparse
import json

from molgen.device import DEVICE_HELP


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `interpolate` options."""
    parser.add_argument("start", metavar="A", help="first molecule (SMILES)")
    parser.add_argument("end", metavar="B", help="last molecule (SMILES)")
    parser.add_argument("--steps", type=int, default=8, help="points on the line, A and B included (default 8)")
    parser.add_argument("--model", default=None, help="checkpoint (default: checkpoints/molgen-moses-kl24.pt, the shipped "
                        "model's sibling with a 24-nat latent)")
    parser.add_argument("--out", help="write .csv, .smi or .sdf (default: print one row per line)")
    parser.add_argument("--mode", choices=("sample", "greedy"), default="sample",
                        help="'sample' draws each token (default); 'greedy' takes the argmax (not a sample)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_HELP}")


def run(args: argparse.Namespace) -> int:
    """Decode the path and write it (or print it)."""
    from molgen.formats import write_molecules
    from molgen.sample import NEAR_CHECKPOINT, Generator

    generator = Generator.load(args.model or NEAR_CHECKPOINT, device=args.device)
    rows = generator.interpolation_rows(
        args.start, args.end, args.steps, mode=args.mode, temperature=args.temperature, seed=args.seed
    )
    if args.out:
        summary = write_molecules(args.out, rows)
        print(json.dumps({"out": args.out, **summary}))
    else:
        for row in rows:
            print(f"{row['step']}\t{row['t']:.3f}\t{row['SMILES'] or '(invalid)'}")
    return 0
