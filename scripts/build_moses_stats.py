"""Build the MOSES reference statistics that ship with molgen (molgen/metrics/data/moses_stats.npz).

    python scripts/build_moses_stats.py            # about 40 min on 2 idle cores
    python scripts/build_moses_stats.py --fingerprint-exceptions-only   # minutes: only those arrays

For data/moses/test.csv.gz and test_scaffolds.csv.gz: ChemNet mean and covariance, fragment and
scaffold counts, property columns (float32); for train.csv.gz: the rows whose RDKit canonical form
differs from their text; for test and test_scaffolds also the rows whose fast fingerprint (parsed
without sanitization) differs from the exact one. `molgen score` then needs only the fingerprints
(seconds, on the fast path) on first use.
Rebuild after a change of RDKit or fcd-torch (the file records the versions it was built with).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from molgen.files import atomic_path
from molgen.files import file_sha256
from molgen.metrics.reference import SHIPPED, build_shipped, fingerprint_exceptions, shipped_versions, versions

MOSES = Path(__file__).resolve().parents[1] / "data" / "moses"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SHIPPED)
    parser.add_argument("--fingerprint-exceptions-only", action="store_true",
                        help="recompute only the fingerprint exceptions and add them to the existing --out file")
    args = parser.parse_args()
    started = time.perf_counter()
    references = [MOSES / "test.csv.gz", MOSES / "test_scaffolds.csv.gz"]
    if args.fingerprint_exceptions_only:
        if shipped_versions(args.out).get("rdkit") != versions()["rdkit"]:
            raise SystemExit(f"{args.out} was built with another RDKit: rebuild it whole")
        with np.load(args.out, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
        for path in references:
            found = fingerprint_exceptions(path)
            print(f"{path.name}: {len(found['fingerprint_rows'])} fingerprint exceptions")
            arrays.update({f"reference-{file_sha256(path)}/{name}": value for name, value in found.items()})
    else:
        arrays = build_shipped(references, MOSES / "train.csv.gz")
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **arrays)
    print(f"{args.out}: {len(arrays)} arrays, {args.out.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
