"""Tokenization of the MOSES train split: first run (empty cache) vs cached reload, in seconds.

    PYTHONPATH=. .venv/bin/python benchmarks/tokenize_moses.py               # all 1,584,663 molecules
    PYTHONPATH=. .venv/bin/python benchmarks/tokenize_moses.py --rows 100000 # quick: the first 100,000

``molgen.token_cache.load_tokenized`` reads, canonicalizes (RDKit) and SELFIES-encodes every molecule in
$MOLGEN_WORKERS processes (default: every core), builds the vocabulary and writes the token cache;
the reload reads that cache. Both use a fresh temporary cache folder, so nothing earlier is reused.
The full split takes about 7 minutes of 2-core time on an idle machine; --rows gives a quick run.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import TRAIN, load_average, machine, report, slice_csv  # noqa: E402
from molgen.parallel import n_workers  # noqa: E402
from molgen.token_cache import load_tokenized  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="only the first ROWS molecules (default: all)")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    path = slice_csv(args.rows)
    print(f"machine: {machine()}")
    timings = []
    with tempfile.TemporaryDirectory(prefix="molgen-tok-bench-") as cache:
        for label in ("first run (empty cache)", "cached reload"):
            load = os.getloadavg()[0]
            start, cpu = time.perf_counter(), time.process_time()
            tok, data = load_tokenized(path, cache_dir=cache)
            timings.append((label, time.perf_counter() - start, time.process_time() - cpu, load))
            print(f"{label}: {timings[-1][1]:.1f} s ({len(data):,} molecules, vocabulary {len(tok)}, load {load:.1f})",
                  flush=True)  # fmt: skip
    which = "the whole MOSES train split" if args.rows is None else f"the first {args.rows:,} rows (--rows)"
    lines = [f"Input: {which} of {TRAIN.relative_to(TRAIN.parents[2])}, {len(data):,} molecules, SELFIES vocabulary "
             f"{len(tok)}; {n_workers()} tokenizer processes; fresh temporary cache folder.", "",
             "| run | wall (s) | main-process CPU (s) | molecules/s | load avg (1 min) at start |", "|---|---:|---:|---:|---:|"]  # fmt: skip
    for label, wall, cpu, load in timings:
        lines.append(f"| {label} | {wall:.2f} | {cpu:.2f} | {len(data) / wall:,.0f} | {load:.1f} |")
    lines += ["", f"- reload is {timings[0][1] / timings[1][1]:.0f}x faster than the first run; "
              f"load average after: {load_average()}"]  # fmt: skip
    report("Tokenization of the MOSES train split", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
