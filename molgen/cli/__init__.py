"""`molgen` command line: one module per verb, each a thin layer over the Python API."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from molgen import __version__
from molgen.errors import MolgenError

VERBS = {
    "train": "train a VAE (or the autoregressive LM baseline) on a SMILES file",
    "sample": "sample a molecule library to CSV from a trained model",
    "evaluate": "held-out likelihood (ELBO, IWAE) and collapse diagnostics of a model",
    "score": "MOSES-compatible metrics of a generated set against reference sets",
    "data": "dataset utilities (statistics, MOSES splits)",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb."""
    parser = argparse.ArgumentParser(prog="molgen", description="SELFIES mixture-prior VAE for molecule generation.")
    parser.add_argument("--version", action="version", version=f"molgen {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb, help_text in VERBS.items():
        p = sub.add_parser(verb, help=help_text, description=help_text)
        module = _verb_module(verb)
        if module is not None:
            module.add_args(p)
            p.set_defaults(func=module.run)
        else:
            p.set_defaults(func=_not_built(verb))
    return parser


def _verb_module(verb: str):
    try:
        return importlib.import_module(f"molgen.cli.{verb}")
    except ModuleNotFoundError as err:
        if err.name == f"molgen.cli.{verb}":
            return None
        raise


def _not_built(verb: str):
    def run(args: argparse.Namespace) -> int:
        raise MolgenError(f"`molgen {verb}` is not built yet")

    return run


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
