"""Host time to build one training batch: padding each molecule (the loader before the token table)
against a gather from the TokenTable (the loader now), on the MOSES train split.

    PYTHONPATH=. .venv/bin/python benchmarks/batch_build.py [--batches 50]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from molgen.datamodule import BucketBatchSampler
from molgen.padding import TokenTable, pad_ids
from molgen.token_cache import load_tokenized


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/moses/train.csv.gz")
    parser.add_argument("--batches", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    _, data = load_tokenized(args.data)
    start = time.perf_counter()
    table = TokenTable(data)
    print(f"{len(data):,} molecules; table ({len(table):,}, {table.width}) int16 "
          f"built in {time.perf_counter() - start:.2f} s")
    lengths = data.lengths
    for batch_size in (256, 4096, 16384):
        batches = [np.asarray(b) for _, b in zip(range(args.batches), BucketBatchSampler(lengths, batch_size))]
        start = time.perf_counter()
        for b in batches:
            pad_ids([data.get(i) for i in b])
        padded = (time.perf_counter() - start) / len(batches)
        start = time.perf_counter()
        for b in batches:
            table.batch(torch.from_numpy(b), int(lengths[b].max()))
        gathered = (time.perf_counter() - start) / len(batches)
        print(f"batch {batch_size:>6}: pad each molecule {padded * 1e3:7.2f} ms, gather from the table "
              f"{gathered * 1e3:6.2f} ms ({padded / gathered:.1f}x)")


if __name__ == "__main__":
    main()
