"""Build ``data/focused/tyk2.csv``: the fine-tuning example series (docs in ``data/README.md``).

    python scripts/build_focused_set.py SOURCE_CSV [--n 1000] [--out data/focused/tyk2.csv]

SOURCE_CSV is ``active_learning/data/tyk2_fep.csv`` of the MIT-licensed repository
PatWalters/practical_cheminformatics_tutorials (10,000 TYK2 inhibitors of one congeneric series with
FEP binding free energies, columns ligand_id, SMILES, dG_bind, dG_bind_err). Each molecule is
canonicalized with RDKit; kept are those the shipped model can read (its SELFIES vocabulary, at most
its max_len tokens) and that are in none of the MOSES splits; of those the ``--n`` with the lowest
dG_bind (the most potent by FEP; ties by ligand_id) are written as SMILES, ligand_id, dG_bind. The
counts of every step are printed.
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from molgen.checkpoint import load_model  # noqa: E402
from molgen.chemistry import canonical_or_reason  # noqa: E402
from molgen.errors import MolgenError  # noqa: E402
from molgen.metrics.reference import smiles_keys, training_keys  # noqa: E402
from molgen.resources import MODEL, MOSES_TEST, MOSES_TEST_SCAFFOLDS, MOSES_TRAIN, bundled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="tyk2_fep.csv")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=ROOT / "data/focused/tyk2.csv")
    args = parser.parse_args()
    model, tokenizer = load_model(bundled(MODEL))
    with open(args.source, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    dropped: Counter = Counter()
    kept: dict[str, tuple[float, int]] = {}
    for row in rows:
        canonical, _ = canonical_or_reason(row["SMILES"])
        if canonical is None:
            dropped["not a valid molecule"] += 1
            continue
        try:
            ids = tokenizer.encode(canonical)
        except MolgenError:
            dropped["SELFIES token outside the model's vocabulary"] += 1
            continue
        if len(ids) > model.max_len:
            dropped[f"longer than the model's {model.max_len} tokens"] += 1
            continue
        key = (float(row["dG_bind"]), int(row["ligand_id"]))
        if canonical in kept:
            dropped["duplicate of another row"] += 1
            kept[canonical] = min(kept[canonical], key)
            continue
        kept[canonical] = key
    candidates = list(kept)
    keys = smiles_keys(candidates)
    in_moses = np.zeros(len(candidates), dtype=bool)
    for split in (MOSES_TRAIN, MOSES_TEST, MOSES_TEST_SCAFFOLDS):
        split_keys, _ = training_keys(bundled(split))
        hit = np.isin(keys, split_keys)
        dropped[f"in MOSES {Path(split).name}"] += int((hit & ~in_moses).sum())
        in_moses |= hit
    usable = sorted((kept[c], c) for c, hit in zip(candidates, in_moses) if not hit)
    chosen = usable[: args.n]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["SMILES", "ligand_id", "dG_bind"])
        for (dg, ligand), smiles in chosen:
            writer.writerow([smiles, ligand, f"{dg:g}"])
    print(f"source rows: {len(rows)}")
    for reason, count in dropped.items():
        print(f"dropped, {reason}: {count}")
    print(f"usable: {len(usable)}; written: {len(chosen)} (lowest dG_bind, "
          f"{chosen[0][0][0]:g} to {chosen[-1][0][0]:g}) -> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
