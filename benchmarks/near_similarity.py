"""How close `molgen sample --near` stays to its seed: mean Tanimoto to the seed of molecules drawn
around it, against molecules drawn from the prior, for a few settings of --sigma and --temperature.

    PYTHONPATH=. .venv/bin/python benchmarks/near_similarity.py [--seeds 16] [--n 50] [--sampling-seed 0] [--no-record]

Seeds: the first --seeds molecules of data/sample.csv; the model `molgen sample --near` loads (or --model); Tanimoto on Morgan
radius 2, 1,024 bits (the `similarity` column); an invalid draw counts as similarity 0. "distinct":
distinct canonical SMILES among a seed's molecules over their number; "the seed": the fraction that
is the seed itself (what a near-sampler should not return); both averaged over seeds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import ROOT, load_average, report  # noqa: E402
from molgen.chemistry import canonicalize  # noqa: E402
from molgen.library import tanimoto_to  # noqa: E402
from molgen.metrics.molecules import parse  # noqa: E402
from molgen.sample import NEAR_CHECKPOINT, Generator  # noqa: E402

SETTINGS = [(1.0, 1.0), (0.5, 1.0), (0.0, 1.0), (1.0, 0.7), (0.5, 0.7), (1.0, 0.5), (0.5, 0.5), (0.0, 0.5)]  # (sigma, T)


def spread(rows: list[dict], seeds: list[str]) -> tuple[float, float]:
    """(distinct fraction, fraction equal to the seed) of each seed's molecules, averaged over seeds."""
    distinct, itself = [], []
    for seed in seeds:
        seed_key = canonicalize(seed)  # rows name their seed by its canonical SMILES
        own = [r["SMILES"] for r in rows if r["seed_smiles"] == seed_key]
        distinct.append(len({s for s in own if s}) / len(own))
        itself.append(sum(s == seed_key for s in own) / len(own))
    return float(np.mean(distinct)), float(np.mean(itself))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=16)
    parser.add_argument("--n", type=int, default=50, help="molecules per seed and setting")
    parser.add_argument("--model", default=None, help="model file (default: the one `molgen sample --near` loads)")
    parser.add_argument("--sampling-seed", type=int, default=0, help="seed of every draw (prior and near)")
    parser.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = (ROOT / "data" / "sample.csv").read_text().splitlines()[1 : 1 + args.seeds]
    gen = Generator.load(args.model or NEAR_CHECKPOINT)
    load = load_average()
    prior = [parse(r["SMILES"]) for r in gen.sample(4 * args.n, seed=args.sampling_seed) if r["SMILES"]]
    prior_sim = np.mean([np.mean([tanimoto_to(m, s) for m in prior] + [0.0] * (4 * args.n - len(prior))) for s in seeds])
    lines = [
        f"{gen.path.relative_to(ROOT) if gen.path.is_relative_to(ROOT) else gen.path}, {args.seeds} seeds (data/sample.csv), {args.n} molecules per seed and setting, sampling seed "
        f"{args.sampling_seed}; load average {load}.",
        "",
        "| latent | temperature | mean Tanimoto to the seed | gap over prior samples | valid | distinct | the seed |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| prior p(z) | 1.0 | {prior_sim:.3f} | | | | |",
    ]
    for sigma, temperature in SETTINGS:
        rows = gen.sample(args.n, seed=args.sampling_seed, near=seeds, sigma=sigma, temperature=temperature)
        sim = np.mean([r["similarity"] or 0.0 for r in rows])
        valid = np.mean([r["valid"] for r in rows])
        distinct, itself = spread(rows, seeds)
        lines.append(f"| q(z\\|x), sigma {sigma} | {temperature} | {sim:.3f} | {sim - prior_sim:+.3f} | {valid:.3f} "
                     f"| {distinct:.3f} | {itself:.3f} |")  # fmt: skip
    report("Sampling around a molecule: similarity to the seed", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
