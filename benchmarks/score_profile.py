"""Where `molgen score` spends its time: wall, CPU and system seconds of each stage on one SMILES file.

    PYTHONPATH=. .venv/bin/python benchmarks/score_profile.py [FILE] [--n 30000]

FILE defaults to 30,000 molecules drawn with `random.Random(0)` from the MOSES test split (the
sample of benchmarks/moses_reference.py). Reference statistics must already be cached (run
`molgen score` once); the stages are those of molgen.metrics.score_set: per-molecule description
in worker processes, ChemNet activations, SNN against test and scaffold-test, IntDiv.
"""
from __future__ import annotations

import argparse
import gzip
import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, load_average, report  # noqa: E402


class Stages:
    """Wall, CPU (this process and its workers) and system seconds since the previous stage."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, float]] = []
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float]:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return time.perf_counter(), cpu, own.ru_stime + kids.ru_stime

    def done(self, name: str) -> None:
        now = self._now()
        self.rows.append((name, *(a - b for a, b in zip(now, self._last))))
        self._last = now
        print(f"{name:<28}{self.rows[-1][1]:8.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help="SMILES, one per line (default: the MOSES test sample)")
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    if args.file:
        smiles = Path(args.file).read_text().split()[: args.n]
        source = args.file
    else:
        with gzip.open(ROOT / "data" / "moses" / "test.csv.gz", "rt") as handle:
            test = handle.read().split()[1:]
        smiles = random.Random(0).sample(test, args.n)
        source = f"{args.n:,} molecules of data/moses/test.csv.gz, random.Random(0).sample"

    load = load_average()
    stages = Stages()
    from molgen.metrics.fcd import chemnet_activations, gaussian
    from molgen.metrics.molecules import describe
    from molgen.metrics.reference import reference_stats, training_keys
    from molgen.metrics.similarity import internal_diversity, nearest_similarity

    stages.done("imports")
    test = reference_stats(ROOT / "data" / "moses" / "test.csv.gz")
    scaffolds = reference_stats(ROOT / "data" / "moses" / "test_scaffolds.csv.gz")
    training_keys(ROOT / "data" / "moses" / "train.csv.gz")
    stages.done("cached reference statistics")
    table = describe(smiles, generated=True)
    stages.done("describe (2 worker processes)")
    gaussian(chemnet_activations(table.chemnet_tokens))
    stages.done("ChemNet activations")
    nearest_similarity(table.fingerprints, test.fingerprints)
    stages.done("SNN/Test")
    nearest_similarity(table.fingerprints, scaffolds.fingerprints)
    stages.done("SNN/TestSF")
    internal_diversity(table.fingerprints)
    stages.done("IntDiv, IntDiv2")

    total = [sum(r[i] for r in stages.rows) for i in (1, 2, 3)]
    lines = [f"Load average at start: {load}. Input: {source}.", "",
             "| stage | wall (s) | CPU (s) | of which system (s) |", "|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {name} | {wall:.1f} | {cpu:.1f} | {sys_:.1f} |" for name, wall, cpu, sys_ in stages.rows]
    lines.append(f"| total | {total[0]:.1f} | {total[1]:.1f} | {total[2]:.1f} |")
    report("Profile: `molgen score` stages", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
