"""`molgen evaluate`: ELBO, IWAE bound and collapse diagnostics on held-out molecules."""
from __future__ import annotations

import argparse

from molgen.device import DEVICE_HELP, resolve_device
from molgen.readers import ON_INVALID


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `evaluate` options."""
    parser.add_argument("--model", required=True, help="checkpoint to evaluate")
    parser.add_argument("--data", required=True, help="held-out SMILES file (e.g. data/moses/test.csv.gz)")
    parser.add_argument("--n", type=int, default=2000, help="molecules in the seeded subset")
    parser.add_argument("--k", type=int, default=1000, help="importance samples for the IWAE bound")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the report as JSON")
    parser.add_argument("--plots", default=None, help="folder for the IWAE-vs-K and mixture-usage plots")
    parser.add_argument("--smiles-column", default=None)
    parser.add_argument("--on-invalid", choices=ON_INVALID, default="error")
    parser.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_HELP}")


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the table."""
    from molgen.evaluate import evaluate, format_report

    report = evaluate(
        args.model, args.data, n=args.n, k=args.k, seed=args.seed, out=args.out, plots=args.plots,
        smiles_column=args.smiles_column, on_invalid=args.on_invalid, device=resolve_device(args.device),
    )  # fmt: skip
    print(format_report(report))
    return 0
