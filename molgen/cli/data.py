"""`molgen data stats FILE` and `molgen data roundtrip FILE`."""
from __future__ import annotations

import argparse
import json
import time

from molgen.readers import ON_INVALID
from molgen.roundtrip import roundtrip_rate
from molgen.token_cache import dataset_stats
from molgen.tokenizer import CONSTRAINTS


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `data` sub-verbs."""
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="row count, invalid count, vocabulary size, token lengths")
    stats.add_argument("file")
    stats.add_argument("--smiles-column", default=None)
    stats.add_argument("--constraints", choices=CONSTRAINTS, default="strict")
    stats.add_argument("--on-invalid", choices=ON_INVALID, default="skip")
    stats.add_argument("--rejects", default=None, help="write invalid rows with reasons to this CSV")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rt = sub.add_parser("roundtrip", help="rate at which canonical SMILES -> SELFIES -> SMILES is exact")
    rt.add_argument("file")
    rt.add_argument("--smiles-column", default=None)
    rt.add_argument("--constraints", choices=CONSTRAINTS, default="strict")


def run(args: argparse.Namespace) -> int:
    """Run the chosen sub-verb and print its figures."""
    start = time.perf_counter()
    if args.action == "stats":
        result = dataset_stats(args.file, args.smiles_column, args.constraints, args.on_invalid, args.rejects)
    else:
        result = roundtrip_rate(args.file, args.smiles_column, args.constraints)
    result["seconds"] = round(time.perf_counter() - start, 2)
    if getattr(args, "json", False):
        print(json.dumps(result, indent=1))
    else:
        for key, value in result.items():
            if key != "failures":
                print(f"{key:>16}: {value:.3f}" if isinstance(value, float) else f"{key:>16}: {value}")
        for smiles, back in result.get("failures", [])[:10]:
            print(f"   mismatch: {smiles} -> {back}")
    return 0
