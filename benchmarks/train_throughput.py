"""Training throughput (molecules/s) of a model config on MOSES batches, fp32 vs bf16 autocast.

Times full optimizer steps (forward, KL estimator, backward, clipping, AdamW) on length-bucketed
batches of the first --rows molecules, the way `molgen train` builds them, and prints the machine.

    PYTHONPATH=. .venv/bin/python benchmarks/train_throughput.py --rows 50000 --steps 4 --warmup 1 --threads 1
    PYTHONPATH=. .venv/bin/python benchmarks/train_throughput.py --rows 50000 --steps 4 --warmup 1 --threads 1 \
        --set model.dec_hidden=384 --set model.enc_hidden=192 --precision bf16-mixed

On a shared machine wall-clock rates depend on the load; "mol per CPU-second" (process CPU time,
best with --threads 1, since idle OpenMP threads spin) is the steadier figure.
"""
from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from common import machine  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from molgen.config import TrainConfig, apply_overrides, load_config, parse_override
from molgen.datamodule import BucketBatchSampler
from molgen.model.vae import MoleculeVAE
from molgen.padding import pad_ids
from molgen.token_cache import load_tokenized
from molgen.train import model_hparams


def slice_file(path: str, rows: int) -> Path:
    """Write the header and first ``rows`` rows of a (gzipped) CSV to a temporary file."""
    opener = gzip.open if path.endswith(".gz") else open
    out = Path(tempfile.gettempdir()) / f"molgen-bench-{Path(path).name.split('.')[0]}-{rows}.csv"
    if not out.exists():
        with opener(path, "rt") as src, open(out, "w") as dst:
            for i, line in enumerate(src):
                if i > rows:
                    break
                dst.write(line)
    return out


def measure(config: TrainConfig, data, vocab_size: int, precision: str, steps: int, warmup: int) -> dict:
    """Molecules/s and tokens/s over ``steps`` timed optimizer steps after ``warmup`` untimed ones."""
    torch.manual_seed(0)
    max_len = int(data.lengths.max())
    model = MoleculeVAE(**model_hparams(config, vocab_size, max_len)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    sampler = BucketBatchSampler(data.lengths, config.data.batch_size, seed=0, bucket_batches=config.data.bucket_batches)
    batches = iter(sampler)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    n_mol = n_tok = 0
    start = cpu_start = 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start, cpu_start, n_mol, n_tok = time.perf_counter(), time.process_time(), 0, 0
        tokens, lengths = pad_ids([data.get(i) for i in next(batches)])
        with autocast:
            loss = model.elbo_terms(tokens, lengths, config.objective.kl_samples, 1.0)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
        opt.step()
        n_mol += len(lengths)
        n_tok += int(lengths.sum())
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return {"mol_per_s": n_mol / elapsed, "tok_per_s": n_tok / elapsed, "s_per_step": elapsed / steps,
            "mol_per_cpu_s": n_mol / cpu, "parameters": model.n_parameters()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/moses/train.csv.gz")
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--precision", action="append", choices=("32-true", "bf16-mixed"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config) if args.config else TrainConfig()
    config = apply_overrides(config, dict(parse_override(s) for s in args.set))
    tok, data = load_tokenized(slice_file(args.data, args.rows), constraints=config.data.constraints)
    print(f"machine: {machine()}")
    print(f"data: first {len(data)} molecules of {args.data}, vocabulary {len(tok)}, "
          f"mean {data.lengths.mean():.1f} tokens; batch {config.data.batch_size}")  # fmt: skip
    m = config.model
    print(f"model: {m.kind} emb {m.emb_dim}, enc {m.enc_layers}x{m.enc_hidden} bi-GRU, dec {m.dec_layers}x{m.dec_hidden} "
          f"GRU, z {m.latent_dim}, K {m.n_components}, KL samples {config.objective.kl_samples}")  # fmt: skip
    for precision in args.precision or ["32-true", "bf16-mixed"]:
        r = measure(config, data, len(tok), precision, args.steps, args.warmup)
        print(f"{precision:>10}: {r['mol_per_s']:7.1f} mol/s  {r['tok_per_s']:8.0f} tokens/s  "
              f"{r['s_per_step']:.3f} s/step  {r['mol_per_cpu_s']:6.1f} mol per CPU-second "
              f"({r['parameters']:,} parameters)", flush=True)  # fmt: skip
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())} (other processes share these cores: "
          "wall-clock figures fall with load; mol per CPU-second x cores approximates an idle machine)")


if __name__ == "__main__":
    main()
