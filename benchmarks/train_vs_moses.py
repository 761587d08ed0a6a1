"""Training throughput, molgen vs the MOSES VAE, measured back to back on the same data slice.

    PYTHONPATH=. .venv/bin/python benchmarks/train_vs_moses.py [--rows 20000] [--steps 5] [--warmup 2]

molgen: full optimizer steps (benchmarks/train_throughput.measure: forward, 8-sample KL estimator,
backward, clipping, AdamW, on length-bucketed batches) after warm-up steps, for
  1. the default model (configs/default.yaml: batch 256), fp32 and bf16-mixed;
  2. a model sized like the MOSES VAE (1-layer bidirectional GRU-256 encoder, 3x512 GRU decoder,
     z = 128, embedding width about MOSES's one-hot vocabulary), batch 512, fp32 and bf16-mixed.
Peer: MOSES's own VAE training step (benchmarks/moses_peer.py in the MOSES venv), batch 512, fp32,
the same first --rows molecules of data/moses/train.csv.gz. One torch thread on both sides.
The ratio is taken at (near) equal parameter count, and reported for wall-clock molecules/s and for
molecules per CPU-second (steadier on a loaded machine).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    DEFAULT_PEER_PYTHON, ensure_peer, load_average, machine, report, run_peer, slice_csv,
)  # fmt: skip
from benchmarks.train_throughput import measure  # noqa: E402
from molgen.config import TrainConfig, apply_overrides  # noqa: E402
from molgen.token_cache import load_tokenized  # noqa: E402

MOSES_SIZED = {"model.enc_hidden": 256, "model.enc_layers": 1, "model.dec_hidden": 512, "model.dec_layers": 3,
               "model.latent_dim": 128, "data.batch_size": 512}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="first ROWS molecules of the MOSES train split")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--emb-dim", type=int, default=32, help="embedding width of the MOSES-sized molgen model")
    parser.add_argument("--moses-python", default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--no-default", action="store_true", help="skip the default-size model")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    peer = ensure_peer(args.moses_python)
    data_path = slice_csv(args.rows)
    tok, data = load_tokenized(data_path)
    print(f"machine: {machine()}")
    print(f"data: first {len(data)} molecules of data/moses/train.csv.gz ({data_path}), SELFIES vocabulary {len(tok)}")

    configs = [] if args.no_default else [("default", TrainConfig())]
    sized = dict(MOSES_SIZED, **{"model.emb_dim": args.emb_dim})
    configs.append(("MOSES-sized", apply_overrides(TrainConfig(), sized)))
    rows = []
    for name, config in configs:
        for precision in ("32-true", "bf16-mixed"):
            load = os.getloadavg()[0]
            r = measure(config, data, len(tok), precision, args.steps, args.warmup)
            r.update(name=name, precision=precision, batch=config.data.batch_size, load=load)
            rows.append(r)
            print(f"molgen {name:>11} {precision:>10} batch {r['batch']}: {r['mol_per_s']:7.1f} mol/s  "
                  f"{r['mol_per_cpu_s']:6.1f} mol/CPU-s  {r['s_per_step']:.2f} s/step  {r['parameters']:,} params  "
                  f"(load {load:.1f})", flush=True)  # fmt: skip
    p = run_peer(peer, ["train", "--data", str(data_path), "--steps", str(args.steps), "--warmup", str(args.warmup)])
    print(f"MOSES VAE         32-true batch {p['batch']}: {p['mol_per_s']:7.1f} mol/s  {p['mol_per_cpu_s']:6.1f} mol/CPU-s  "
          f"{p['s_per_step']:.2f} s/step  {p['parameters']:,} params  (load {p['load_before']:.1f})")  # fmt: skip

    lines = [f"Data: first {len(data):,} molecules of data/moses/train.csv.gz (both sides). {args.warmup} warm-up + "
             f"{args.steps} timed optimizer steps per row; 1 torch thread per side; the peer ran right after molgen.", "",
             "| model | precision | batch | parameters | mol/s (wall) | mol per CPU-s | s/step | load avg (1 min) at start |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| molgen {r['name']} | {r['precision']} | {r['batch']} | {r['parameters']:,} | {r['mol_per_s']:.1f} | "
                     f"{r['mol_per_cpu_s']:.1f} | {r['s_per_step']:.2f} | {r['load']:.1f} |")  # fmt: skip
    lines.append(f"| MOSES VAE (molsets 0.3.1) | 32-true | {p['batch']} | {p['parameters']:,} | {p['mol_per_s']:.1f} | "
                 f"{p['mol_per_cpu_s']:.1f} | {p['s_per_step']:.2f} | {p['load_before']:.1f} |")  # fmt: skip
    lines.append("")
    summary = []
    for r in rows:
        if r["name"] != "MOSES-sized":
            continue
        wall, cpu = r["mol_per_s"] / p["mol_per_s"], r["mol_per_cpu_s"] / p["mol_per_cpu_s"]
        summary.append(f"molgen MOSES-sized {r['precision']} / MOSES VAE: **{wall:.2f}x** wall, **{cpu:.2f}x** per CPU-second "
                       f"(parameters {r['parameters']:,} vs {p['parameters']:,}; bar 3x, goal 10x)")  # fmt: skip
    lines += [f"- {s}" for s in summary]
    lines.append(f"- load average after: {load_average()}")
    report("Training throughput: molgen vs MOSES VAE", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
