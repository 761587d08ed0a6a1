"""Export a training checkpoint (Lightning .ckpt) to a small weights-only model file.

    python scripts/export_checkpoint.py runs/vae-strict/checkpoints/last.ckpt checkpoints/molgen-moses.pt

The output holds weights, vocabulary and plain-type hyper-parameters only (no optimizer state),
loads with torch.load(weights_only=True), and records where it came from.
"""
from __future__ import annotations

import argparse

import torch

from molgen.checkpoint import load_model, save_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args()
    model, tokenizer = load_model(args.source)
    raw = torch.load(args.source, map_location="cpu", weights_only=True)
    extra = {"source": args.source, "global_step": int(raw.get("global_step", -1)), "epoch": int(raw.get("epoch", -1))}
    save_model(args.target, model, tokenizer, extra=extra)
    print(f"{args.target}: {model.n_parameters():,} parameters, step {extra['global_step']}")


if __name__ == "__main__":
    main()
