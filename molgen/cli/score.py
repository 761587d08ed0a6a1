"""`molgen score`: MOSES-compatible metrics of a generated set (CSV or .smi) against the MOSES splits."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from molgen.data import read_column
from molgen.errors import MolgenError
from molgen.files import atomic_open, check_output_path

MOSES_DIR = Path(__file__).resolve().parents[2] / "data" / "moses"


def add_args(parser: argparse.ArgumentParser) -> None:
    """Arguments of `molgen score`."""
    parser.add_argument("file", type=Path, help="generated SMILES: CSV/TSV (SMILES column) or .smi, gzipped or not")
    parser.add_argument("--smiles-column", help="column holding the SMILES (default: found automatically)")
    parser.add_argument("--train", type=Path, default=MOSES_DIR / "train.csv.gz", help="training set, for Novelty")
    parser.add_argument("--test", type=Path, default=MOSES_DIR / "test.csv.gz", help="test set (*/Test metrics)")
    parser.add_argument(
        "--test-scaffolds", type=Path, default=MOSES_DIR / "test_scaffolds.csv.gz", help="scaffold test set (*/TestSF)"
    )
    parser.add_argument("--n", type=int, default=30000, help="score the first N rows of FILE (default 30000; 0 = all)")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    parser.add_argument("--plots", type=Path, help="write property-distribution and molecule-grid PNGs here")
    parser.add_argument("--cache-dir", type=Path, help="reference-statistics cache (default $MOLGEN_CACHE_DIR/reference)")


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

    if args.n < 0:
        raise MolgenError(f"--n must be 0 (all) or positive, got {args.n}")
    for name in ("test", "test_scaffolds", "train"):
        path = getattr(args, name)
        if not path.exists():
            raise MolgenError(f"--{name.replace('_', '-')} {path}: no such file")
    if args.out is not None:
        check_output_path(args.out)
    if args.plots is not None:
        args.plots.mkdir(parents=True, exist_ok=True)
    smiles = read_column(args.file, args.smiles_column)
    if args.n:
        smiles = smiles[: args.n]
    scored = score_set(smiles, args.test, args.test_scaffolds, args.train, cache_dir=args.cache_dir)
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
