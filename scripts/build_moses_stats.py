"""Build the MOSES reference statistics that ship with molgen (molgen/metrics/data/moses_stats.npz).

    python scripts/build_moses_stats.py            # about 40 min on 2 idle cores

For data/moses/test.csv.gz and test_scaffolds.csv.gz: ChemNet mean and covariance, fragment and
scaffold counts, property columns (float32); for train.csv.gz: the rows whose RDKit canonical form
differs from their text. `molgen score` then needs only the fingerprints (seconds) on first use.
Rebuild after a change of RDKit or fcd-torch (the file records the versions it was built with).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from molgen.files import atomic_path
from molgen.metrics.reference import SHIPPED, build_shipped

MOSES = Path(__file__).resolve().parents[1] / "data" / "moses"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED)
    args = parser.parse_args()
    started = time.perf_counter()
    arrays = build_shipped([MOSES / "test.csv.gz", MOSES / "test_scaffolds.csv.gz"], MOSES / "train.csv.gz")
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    print(f"{args.out}: {len(arrays)} arrays, {args.out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
