"""What storing a model's weights as float16 changes (the shipped file's format; refit_prior.py --half).

    PYTHONPATH=. .venv/bin/python benchmarks/float16_weights.py [--model checkpoints/molgen-moses.pt] [--n 1000] [--test 500]

Prior-sampled molecules (drawn from the float32 model, seed 0): the mean of log p32(x|z) - log p16(x|z),
which estimates KL(p32 || p16) per molecule, and its mean absolute value; test molecules (the first
--test of data/moses/test.csv.gz): log p(x|mu) under each model's own posterior mean. One thread.
"""
from __future__ import annotations

import argparse
import copy
import gzip
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from molgen.checkpoint import load_model, round_weights_  # noqa: E402
from molgen.model.generate import draw_tokens  # noqa: E402
from molgen.padding import pad_ids  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="checkpoints/molgen-moses.pt")
    parser.add_argument("--n", type=int, default=1000, help="prior-sampled molecules")
    parser.add_argument("--test", type=int, default=500, help="test molecules")
    args = parser.parse_args()
    torch.set_num_threads(1)
    full, tokenizer = load_model(args.model)
    half = round_weights_(copy.deepcopy(full))
    generator = torch.Generator().manual_seed(0)
    z, _ = full.prior.sample(args.n, generator=generator)
    draws = draw_tokens(full, z, args.n, generator=generator)
    with torch.inference_mode():
        gap = (full.log_px_z(draws.tokens, draws.lengths, z) - half.log_px_z(draws.tokens, draws.lengths, z)).double()
    print(f"{args.n} prior samples: KL(p32 || p16) {gap.mean():.5f} +- {gap.std() / math.sqrt(args.n):.5f} nats/molecule, "
          f"mean |log p32 - log p16| {gap.abs().mean():.5f}, largest {gap.abs().max():.4f}")
    with gzip.open("data/moses/test.csv.gz", "rt") as handle:
        smiles = [line.split(",")[0] for line in handle.read().splitlines()[1 : args.test + 1]]
    tokens, lengths = pad_ids([tokenizer.encode(s) for s in smiles], full.pad_id)
    with torch.inference_mode():
        a = full.log_px_z(tokens, lengths, full.encode(tokens, lengths)[0])
        b = half.log_px_z(tokens, lengths, half.encode(tokens, lengths)[0])
    print(f"{len(smiles)} test molecules: log p(x|mu) float32 {a.mean():.4f}, float16 {b.mean():.4f}, "
          f"mean |difference| {(a - b).abs().mean():.5f}")


if __name__ == "__main__":
    main()
