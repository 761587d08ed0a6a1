"""`molgen sample`: a molecule library (.csv, .smi or .sdf), every token drawn from the decoder's categorical."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from molgen.device import DEVICE_HELP
from molgen.errors import MolgenError


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `sample` options."""
    parser.add_argument("--model", default=None,
                        help="checkpoint (default: the shipped MOSES model in checkpoints/; with --near its 24-nat-latent "
                             "sibling, checkpoints/molgen-moses-kl24.pt)")  # fmt: skip
    parser.add_argument("-n", "--n", type=int, required=True, help="number of molecules (per seed molecule with --near)")
    parser.add_argument("--out", required=True,
                        help="output file: .csv (every column), .smi or .sdf (valid molecules, columns as SD tags); "
                             "written complete or not at all")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (1 = the model's distribution)")
    parser.add_argument("--mode", choices=("sample", "greedy"), default="sample",
                        help="'sample' draws each token (default); 'greedy' takes the argmax (not a sample)")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--component", type=int, default=None, help="draw z from this mixture component only")
    parser.add_argument("--near", metavar="SMILES|FILE",
                        help="sample around a molecule (or each molecule of a SMILES file): z from its posterior q(z|x); "
                             "adds seed_smiles and similarity (Tanimoto, Morgan r=2) columns")  # fmt: skip
    parser.add_argument("--sigma", type=float, default=1.0,
                        help="with --near: z = mu + sigma * std * eps (1: the posterior itself; smaller: closer)")
    parser.add_argument("--scaffold", metavar="SMARTS",
                        help="keep only molecules that contain this substructure (SMARTS or SMILES), drawing until n")
    parser.add_argument("--unique", action="store_true", help="drop repeated molecules, keep drawing until n")
    validity = parser.add_mutually_exclusive_group()
    validity.add_argument("--valid-only", dest="valid_only", action="store_true", default=None,
                          help="drop invalid molecules, keep drawing until n (the default under relaxed constraints)")
    validity.add_argument("--keep-invalid", dest="valid_only", action="store_false",
                          help="write invalid draws too, as rows with valid=false (the default under strict constraints)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the network (default 1: SELFIES decoding runs in parallel worker processes)")
    parser.add_argument("--constraints", choices=("strict", "relaxed"), default=None,
                        help="decode with these SELFIES constraints instead of the model's saved setting")
    parser.add_argument("--precision", choices=("32-true", "bf16-mixed", "32", "bf16"), default="32-true",
                        help="network precision, Lightning's names as in `molgen train` (32 and bf16: the old names)")
    parser.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_HELP}")


def seed_molecules(near: str) -> list[str]:
    """The seeds of ``--near``: the molecules of a SMILES file when ``near`` names one, else ``near`` itself."""
    if Path(near).is_file():
        from molgen.readers import read_column

        return read_column(near)
    return [near]


def run(args: argparse.Namespace) -> int:
    """Sample to a file and print a one-line JSON summary."""
    from molgen.sample import NEAR_CHECKPOINT, Generator

    if args.threads <= 0:
        raise MolgenError(f"--threads must be positive, not {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    model = args.model or (NEAR_CHECKPOINT if args.near else None)
    generator = Generator.load(model, precision=args.precision, constraints=args.constraints, device=args.device)
    summary = generator.write(
        args.out, args.n, temperature=args.temperature, mode=args.mode, component=args.component,
        seed=args.seed, batch_size=args.batch_size, unique=args.unique, valid_only=args.valid_only,
        near=seed_molecules(args.near) if args.near else None, sigma=args.sigma, scaffold=args.scaffold,
    )  # fmt: skip
    rounded = {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}
    print(json.dumps({"out": args.out, "model": str(generator.path), **rounded}))
    return 0
