"""`molgen` command line: one module per verb, each a thin layer over the Python API."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from molgen import __version__
from molgen.cli import data, evaluate, interpolate, optimize, sample, score, train  # each imports its heavy libraries (Lightning, ...) in run()
from molgen.errors import MolgenError

#: verb -> (module with ``add_args(parser)`` and ``run(args)``, help text)
VERBS = {
    "train": (train, "train a VAE (or the autoregressive LM baseline) on a SMILES file"),
    "sample": (sample, "sample a molecule library (.csv, .smi, .sdf) from a trained model, or around molecules"),
    "interpolate": (interpolate, "molecules decoded along the latent line between two molecules"),
    "optimize": (optimize, "latent-space optimisation of a property (CMA-ES) against random sampling"),
    "evaluate": (evaluate, "held-out likelihood (ELBO, IWAE) and collapse diagnostics of a model"),
    "score": (score, "MOSES-compatible metrics of a generated set against reference sets"),
    "data": (data, "dataset utilities (statistics, MOSES splits)"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    parser = argparse.ArgumentParser(prog="molgen", description="SELFIES mixture-prior VAE for molecule generation.")
    parser.add_argument("--version", action="version", version=f"molgen {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, (module, help_text) in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        module.add_args(p)
        p.set_defaults(func=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv``, run the verb, print user errors on one line (exit code 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MolgenError as err:
        print(f"molgen {args.verb}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(f"molgen {args.verb}: interrupted" + (f": {_one_line(err)}" if str(err) else ""), file=sys.stderr)
        return 130


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (a library's multi-line text joined with ' | ')."""
    return " | ".join(part.strip() for part in str(err).splitlines() if part.strip())


if __name__ == "__main__":
    sys.exit(main())
