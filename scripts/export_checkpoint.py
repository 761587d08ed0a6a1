"""Export a training checkpoint (Lightning .ckpt, or a packed training state) to a small weights-only model file.

    python scripts/export_checkpoint.py runs/vae-strict/checkpoints/last.ckpt checkpoints/molgen-moses.pt [--constraints relaxed] [--half]

The output holds weights, vocabulary and plain-type hyper-parameters only (no optimizer state),
loads with torch.load(weights_only=True), and records where it came from. ``--constraints`` sets the
SELFIES decoding saved with the vocabulary (the model's default decoding; training never depends on
it, since valid molecules tokenize identically under both): relaxed means invalid draws are redrawn.
``--half`` stores the weights as float16 (half the size; the shipped file's format).
"""
from __future__ import annotations

import argparse

import torch

from molgen.checkpoint import load_model, save_model
from molgen.tokenizer import CONSTRAINTS, SelfiesTokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("target")
    parser.add_argument("--constraints", choices=CONSTRAINTS, default=None, help="default decoding (default: the run's own)")
    parser.add_argument("--half", action="store_true", help="store the weights as float16")
    args = parser.parse_args()
    model, tokenizer = load_model(args.source)
    if args.constraints is not None:
        tokenizer = SelfiesTokenizer(tokenizer.tokens, args.constraints)
    raw = torch.load(args.source, map_location="cpu", weights_only=True)
    extra = {"source": args.source, "global_step": int(raw.get("global_step", -1)), "epoch": int(raw.get("epoch", -1))}
    save_model(args.target, model, tokenizer, extra=extra, half=args.half)
    print(f"{args.target}: {model.n_parameters():,} parameters, step {extra['global_step']}, {tokenizer.constraints} SELFIES")


if __name__ == "__main__":
    main()
