"""The MOSES side of the benchmarks; runs inside the MOSES virtualenv, never imports molgen.

    /tmp/moses-venv/bin/python benchmarks/moses_peer.py train  --data SLICE.csv --steps 5 --warmup 2 --json OUT
    /tmp/moses-venv/bin/python benchmarks/moses_peer.py sample --data SLICE.csv --n 30000 --out S.csv --json OUT

``train`` times MOSES's own VAE training step (``VAETrainer._train_epoch``: forward, KL + reconstruction
loss, backward, gradient clipping, Adam, its logging) on batches from its own DataLoader and collate
function (batch 512), the VAE configured as its published one (``--q_bidir``: bidirectional
GRU-256 encoder, 3x512 GRU decoder, z = 128). ``sample`` times ``VAE.sample`` at batch 512 from a
model (fresh init unless --model) and writes the strings to CSV the way MOSES's sample script
does (pandas ``to_csv``). Called by benchmarks/train_vs_moses.py and sample_vs_moses.py.

MOSES 0.3.1's sampler builds its end-of-sequence mask as ``torch.uint8``, which current torch
refuses as an index mask ("masked_fill_ only supports boolean masks"). The one-line fix (a bool
mask) is applied at run time to the installed source (``patch_sampler``); site-packages is not edited.
"""
from __future__ import annotations

import argparse
import inspect
import itertools
import json
import textwrap
import time
import warnings

warnings.filterwarnings("ignore")

import pandas as pd  # noqa: E402
import torch  # noqa: E402


def patch_sampler() -> str:
    """Recompile moses.vae.model.VAE.sample with a bool eos mask; returns the line that changed."""
    from moses.vae import model as vae_model

    source = textwrap.dedent(inspect.getsource(vae_model.VAE.sample))
    old = "eos_mask = torch.zeros(n_batch, dtype=torch.uint8,"
    if old not in source:
        return "no patch needed"
    namespace: dict = {}
    exec(compile(source.replace(old, "eos_mask = torch.zeros(n_batch, dtype=torch.bool,"), vae_model.__file__, "exec"),
         vae_model.__dict__, namespace)  # fmt: skip
    vae_model.VAE.sample = namespace["sample"]
    return f"{old} -> dtype=torch.bool"


def read_smiles(path: str) -> list[str]:
    """The SMILES column of a CSV slice of the MOSES train split."""
    return pd.read_csv(path)["SMILES"].tolist()


def build(smiles: list[str], batch: int):
    """MOSES's VAE (published configuration), trainer and vocabulary for these molecules."""
    from moses.vae.config import get_parser
    from moses.vae.model import VAE
    from moses.vae.trainer import VAETrainer

    config = get_parser().parse_args(["--q_bidir", "--n_batch", str(batch)])
    trainer = VAETrainer(config)
    vocab = trainer.get_vocabulary(smiles)
    torch.manual_seed(0)
    return VAE(vocab, config), trainer, vocab, config


def n_params(model) -> int:
    """Trainable parameters of the VAE (``model.vae``, as MOSES optimises them)."""
    return sum(p.numel() for p in model.vae.parameters() if p.requires_grad)


def train(args: argparse.Namespace) -> dict:
    """Steady-state molecules/s of MOSES's VAE training steps after ``warmup`` untimed steps."""
    from tqdm.auto import tqdm

    smiles = read_smiles(args.data)
    model, trainer, vocab, config = build(smiles, args.batch)
    loader = trainer.get_dataloader(model, smiles, shuffle=True)
    optimizer = torch.optim.Adam(trainer.get_optim_params(model), lr=config.lr_start)
    batches = iter(loader)
    counted = {"mol": 0, "tok": 0}

    def take(n: int):
        for batch in itertools.islice(batches, n):
            counted["mol"] += len(batch)
            counted["tok"] += sum(len(x) for x in batch)
            yield batch

    trainer._train_epoch(model, 0, tqdm(take(args.warmup), disable=True), 0.05, optimizer)
    counted.update(mol=0, tok=0)
    start, cpu = time.perf_counter(), time.process_time()
    trainer._train_epoch(model, 0, tqdm(take(args.steps), disable=True), 0.05, optimizer)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"mol_per_s": counted["mol"] / wall, "mol_per_cpu_s": counted["mol"] / cpu, "s_per_step": wall / args.steps,
            "tok_per_s": counted["tok"] / wall, "molecules": counted["mol"], "steps": args.steps, "wall_s": wall,
            "cpu_s": cpu, "parameters": n_params(model), "vocab": len(vocab), "batch": args.batch}  # fmt: skip


def sample(args: argparse.Namespace) -> dict:
    """Molecules/s of VAE.sample at batch ``batch`` for ``n`` molecules, written to CSV."""
    patch = patch_sampler()
    smiles = read_smiles(args.data)
    model, _, vocab, _ = build(smiles, args.batch)
    if args.model:
        model.load_state_dict(torch.load(args.model, map_location="cpu"))
    model.eval()
    torch.manual_seed(args.seed)
    start, cpu = time.perf_counter(), time.process_time()
    samples: list[str] = []
    while len(samples) < args.n:
        samples.extend(model.sample(min(args.batch, args.n - len(samples)), max_len=args.max_len))
    pd.DataFrame(samples, columns=["SMILES"]).to_csv(args.out, index=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"mol_per_s": args.n / wall, "mol_per_cpu_s": args.n / cpu, "wall_s": wall, "cpu_s": cpu, "n": args.n,
            "batch": args.batch, "max_len": args.max_len, "parameters": n_params(model), "vocab": len(vocab),
            "mean_length": sum(map(len, samples)) / len(samples), "patch": patch,
            "weights": args.model or "fresh init (seed 0)"}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("train", "sample"))
    parser.add_argument("--data", required=True, help="CSV with a SMILES column (the same slice molgen uses)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--n", type=int, default=30000)
    parser.add_argument("--max-len", type=int, default=100, help="MOSES sample script's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="MOSES VAE state dict (default: fresh init)")
    parser.add_argument("--out", default="/tmp/moses-peer-samples.csv")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import moses
    import rdkit

    result = train(args) if args.mode == "train" else sample(args)
    result.update(threads=args.threads, torch=torch.__version__, rdkit=rdkit.__version__,
                  moses=getattr(moses, "__version__", "0.3.1"))  # fmt: skip
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
