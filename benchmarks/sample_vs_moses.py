"""Sampling throughput end to end (to CSV), molgen vs the MOSES VAE sampler, back to back.

    PYTHONPATH=. .venv/bin/python benchmarks/sample_vs_moses.py [--n 30000]

molgen: ``Generator.write`` (what ``molgen sample -n N`` runs: prior draw, autoregressive
sampling at batch 1024, SELFIES -> canonical SMILES with RDKit, CSV) with the shipped checkpoint
checkpoints/molgen-moses.pt when it exists, else a default-size model from a fresh init (the
script says which), with 1 torch thread + 1 process and with 2 torch threads + 2 decoding workers.
Peer: MOSES's ``VAE.sample`` at batch 512, max_len 100 (its sample script's defaults; its uint8-mask
bug on current torch patched at run time, see benchmarks/moses_peer.py), strings to CSV, 1 thread,
from a fresh init unless --moses-model. MOSES writes raw decoder strings; molgen also canonicalizes.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import (  # noqa: E402
    DEFAULT_PEER_PYTHON, ensure_peer, load_average, machine, report, run_peer, slice_csv,
)  # fmt: skip
from molgen.config import TrainConfig  # noqa: E402
from molgen.model.vae import MoleculeVAE  # noqa: E402
from molgen.sample import DEFAULT_CHECKPOINT, Generator  # noqa: E402
from molgen.token_cache import load_tokenized  # noqa: E402
from molgen.train import model_hparams  # noqa: E402


def molgen_generator(checkpoint: Path, data_path: Path) -> tuple[Generator, str]:
    """The shipped model, or a fresh default-size one with the vocabulary of the data slice; and which."""
    if checkpoint.exists():
        return Generator.load(checkpoint), f"trained checkpoint {checkpoint.name}"
    tok, data = load_tokenized(data_path)
    torch.manual_seed(0)
    model = MoleculeVAE(**model_hparams(TrainConfig(), len(tok), int(data.lengths.max())))
    return Generator(model, tok), f"default-size model, fresh init (no {checkpoint.name}), max_len {model.max_len}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30000, help="molecules per run")
    parser.add_argument("--rows", type=int, default=20000, help="data slice for the vocabularies of fresh models")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--moses-model", default=None, help="trained MOSES VAE state dict (default: fresh init)")
    parser.add_argument("--moses-python", default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--threads", default="1,2", help="torch threads (= decoding workers) per molgen run")
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    peer = ensure_peer(args.moses_python)
    data_path = slice_csv(args.rows)
    generator, which = molgen_generator(args.checkpoint, data_path)
    print(f"machine: {machine()}")
    print(f"molgen model: {which}, {generator.model.n_parameters():,} parameters")
    out_dir = Path(tempfile.mkdtemp(prefix="molgen-sample-bench-"))
    rows = []
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        os.environ["MOLGEN_WORKERS"] = str(threads)
        load = os.getloadavg()[0]
        cpu = time.process_time()
        r = generator.write(out_dir / f"molgen-{threads}.csv", args.n, seed=0, progress=False)
        r.update(threads=threads, load=load, cpu_s=time.process_time() - cpu)
        rows.append(r)
        print(f"molgen {threads} thread(s): {r['molecules_per_second']:.1f} mol/s, {r['seconds']:.1f} s, "
              f"valid {r['valid_fraction']:.3f} (load {load:.1f})", flush=True)  # fmt: skip
    torch.set_num_threads(1)
    p = run_peer(peer, ["sample", "--data", str(data_path), "--n", str(args.n), "--out", str(out_dir / "moses.csv")]
                 + (["--model", args.moses_model] if args.moses_model else []))  # fmt: skip
    print(f"MOSES VAE 1 thread: {p['mol_per_s']:.1f} mol/s, {p['wall_s']:.1f} s (load {p['load_before']:.1f})")

    lines = [f"{args.n:,} molecules per run, written to CSV. molgen: {which} "
             f"({generator.model.n_parameters():,} parameters), `Generator.write` (= `molgen sample`), batch 1024, fp32. "
             f"MOSES: VAE ({p['parameters']:,} parameters, {p['weights']}) `VAE.sample` at batch {p['batch']}, "
             f"max_len {p['max_len']}, runtime patch `{p['patch']}`; the peer ran right after molgen.", "",
             "| sampler | torch threads | decode workers | mol/s (wall) | seconds | mol per CPU-s (main process) | load avg (1 min) at start |",
             "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| molgen | {r['threads']} | {r['threads'] if r['threads'] > 1 else 'in-process'} | "
                     f"{r['molecules_per_second']:.1f} | {r['seconds']:.1f} | {args.n / r['cpu_s']:.1f} | {r['load']:.1f} |")  # fmt: skip
    lines.append(f"| MOSES VAE (molsets 0.3.1) | 1 | - | {p['mol_per_s']:.1f} | {p['wall_s']:.1f} | "
                 f"{p['mol_per_cpu_s']:.1f} | {p['load_before']:.1f} |")  # fmt: skip
    lines.append("")
    for r in rows:
        lines.append(f"- molgen ({r['threads']} thread(s)) / MOSES VAE (1 thread): **{r['molecules_per_second'] / p['mol_per_s']:.2f}x** "
                     "wall (bar 5x, goal 10x)")  # fmt: skip
    one = [r for r in rows if r["threads"] == 1]
    if one:
        lines.append(f"- 1 thread, per CPU-second: **{(args.n / one[0]['cpu_s']) / p['mol_per_cpu_s']:.2f}x**")
    lines.append(f"- load average after: {load_average()}")
    report("Sampling throughput to CSV: molgen vs MOSES VAE", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
