"""`molgen score`: MOSES-compatible metrics of a generated set (CSV or .smi) against the MOSES splits."""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

from molgen.device import DEVICE_HELP, resolve_device
from molgen.errors import MolgenError
from molgen.files import atomic_open, check_output_path
from molgen.readers import read_column
from molgen.resources import MOSES_TEST, MOSES_TEST_SCAFFOLDS, MOSES_TRAIN, bundled

DEFAULT_N = 30000  # rows scored by default: MOSES's sample size (a seeded random subset of a larger file)


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of `molgen score`."""
    parser.add_argument("file", type=Path, help="generated SMILES: CSV/TSV (SMILES column) or .smi, gzipped or not")
    parser.add_argument("--smiles-column", help="column holding the SMILES (default: found automatically)")
    parser.add_argument("--train", type=Path, default=bundled(MOSES_TRAIN), help="training set, for Novelty (default: MOSES train)")
    parser.add_argument("--test", type=Path, default=bundled(MOSES_TEST), help="test set (*/Test metrics; default: MOSES test)")
    parser.add_argument(
        "--test-scaffolds", type=Path, default=bundled(MOSES_TEST_SCAFFOLDS), help="scaffold test set (*/TestSF; default: MOSES)"
    )
    rows = parser.add_mutually_exclusive_group()
    rows.add_argument("--n", type=int, metavar="N",
                      help=f"score a random subset of N rows of FILE, kept in file order (default {DEFAULT_N}; "
                           "0 = all)")  # fmt: skip
    rows.add_argument("--first", type=int, metavar="N", help="score the first N rows of FILE instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --n subset (default 0)")
    parser.add_argument("--device", default="auto", help=f"where ChemNet runs: {DEVICE_HELP}")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--plots", type=Path, help="write property-distribution and molecule-grid PNGs here")
    parser.add_argument("--cache-dir", type=Path, help="reference-statistics cache (default $MOLGEN_CACHE_DIR/reference)")


def check_rows(n: int | None, first: int | None, seed: int) -> None:
    """MolgenError for a negative ``--n``, a ``--first`` below 1 or a negative ``--seed``."""
    if n is not None and n < 0:
        raise MolgenError(f"--n must be 0 (all) or positive, got {n}")
    if first is not None and first < 1:
        raise MolgenError(f"--first must be positive, got {first}")
    if seed < 0:
        raise MolgenError(f"--seed must be 0 or positive, got {seed}")


def select_rows(smiles: list[str], n: int | None = None, first: int | None = None, seed: int = 0) -> list[str]:
    """The rows to score: the first ``first``, or ``n`` (default ``DEFAULT_N``; 0 = all) drawn without
    replacement by ``numpy.random.default_rng(seed).choice`` and kept in file order."""
    check_rows(n, first, seed)
    if first is not None:
        return smiles[:first]
    n = DEFAULT_N if n is None else n
    if n == 0 or n >= len(smiles):
        return smiles
    index = np.sort(np.random.default_rng(seed).choice(len(smiles), size=n, replace=False))
    return [smiles[i] for i in index]


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def run(args: argparse.Namespace) -> int:
    """Score ``args.file``, print the table, write the JSON report and plots."""
    from molgen.metrics import format_table, score_set
    from molgen.plots import plot_molecule_grid, plot_property_distributions

    check_rows(args.n, args.first, args.seed)
    device = resolve_device(args.device)
    for name in ("test", "test_scaffolds", "train"):
        path = getattr(args, name)
        if not path.exists():
            raise MolgenError(f"--{name.replace('_', '-')} {path}: no such file")
    if args.out is not None:
        check_output_path(args.out)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
    rows = read_column(args.file, args.smiles_column)
    smiles = select_rows(rows, args.n, args.first, args.seed)
    if len(smiles) < len(rows):
        how = "the first ones" if args.first is not None else f"a random subset, --seed {args.seed}"
        print(f"molgen score: scoring {len(smiles):,} of the {len(rows):,} rows of {args.file} ({how})",
              file=sys.stderr)  # fmt: skip
    scored = score_set(smiles, args.test, args.test_scaffolds, args.train, cache_dir=args.cache_dir, device=device)
    report = {"file": str(args.file), **scored.report}
    print(format_table(report))
    if args.out is not None:
        with atomic_open(args.out, "w") as handle:
            json.dump(_json_safe(report), handle, indent=2)
            handle.write("\n")
        print(f"report: {args.out}")
    if args.plots is not None:
        generated, test = scored.generated.properties, scored.test.properties
        plot_property_distributions(generated, test, args.plots / "properties.png")
        plot_property_distributions(
            generated,
            test,
            args.plots / "structure.png",
            names=("rings", "aromatic_rings", "aromatic_atom_fraction"),
        )
        plot_molecule_grid(scored.generated.smiles, args.plots / "molecules.png")
        print(f"plots: {args.plots}")
    return 0
