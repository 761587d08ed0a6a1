"""`molgen sample`: a molecule library to CSV, every token drawn from the decoder's categorical."""
from __future__ import annotations

import argparse
import json

from molgen.device import DEVICE_HELP, resolve_device
from molgen.errors import MolgenError, check_molecule_count


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `sample` options."""
    parser.add_argument("--model", default=None, help="checkpoint (default: the shipped MOSES model in checkpoints/)")
    parser.add_argument("-n", "--n", type=int, required=True, help="number of molecules")
    parser.add_argument("--out", required=True, help="output CSV (written complete or not at all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (1 = the model's distribution)")
    parser.add_argument("--mode", choices=("sample", "greedy"), default="sample",
                        help="'sample' draws each token (default); 'greedy' takes the argmax (not a sample)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--component", type=int, default=None, help="draw z from this mixture component only")
    parser.add_argument("--unique", action="store_true", help="drop repeated molecules, keep drawing until n")
    parser.add_argument("--valid-only", action="store_true", help="drop invalid molecules, keep drawing until n")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the network (default 1: SELFIES decoding runs in parallel worker processes)")
    parser.add_argument("--constraints", choices=("strict", "relaxed"), default=None,
                        help="decode with these SELFIES constraints instead of the model's saved setting")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed", "32", "bf16"), default="32-true",
                        help="network precision, Lightning's names as in `molgen train` (32 and bf16: the old names)")
    parser.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_HELP}")


def run(args: argparse.Namespace) -> int:
    """Sample to CSV and print a one-line JSON summary."""
    from molgen.sample import Generator

    check_molecule_count(args.n, "-n")
    if args.threads <= 0:
        raise MolgenError(f"--threads must be positive, not {args.threads}")
    import torch

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    generator = Generator.load(args.model, precision=args.precision, constraints=args.constraints, device=device)
    summary = generator.write_csv(
        args.out, args.n, temperature=args.temperature, mode=args.mode, component=args.component,
        seed=args.seed, batch_size=args.batch_size, unique=args.unique, valid_only=args.valid_only,
    )  # fmt: skip
    print(json.dumps({"out": args.out, **{k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}}))
    return 0
