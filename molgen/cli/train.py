"""`molgen train`: train a VAE (or, with --kind lm, the language-model baseline) on a SMILES file, or
fine-tune a trained model on a small set (--init-from MODEL, defaults of configs/finetune.yaml)."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from molgen.config import TrainConfig, apply_overrides, config_from_dict, finetune_config, load_config, parse_override
from molgen.errors import MolgenError


def _devices(text: str) -> int | str:
    return int(text) if text.lstrip("-").isdigit() else text


# CLI flag (argparse dest) -> dotted config key
FLAG_KEYS = {
    "data": "data.train",
    "val": "data.val",
    "smiles_column": "data.smiles_column",
    "constraints": "data.constraints",
    "on_invalid": "data.on_invalid",
    "batch_size": "data.batch_size",
    "kind": "model.kind",
    "max_steps": "trainer.max_steps",
    "max_time": "trainer.max_time",
    "max_epochs": "trainer.max_epochs",
    "val_every": "trainer.val_every_steps",
    "precision": "trainer.precision",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "seed": "trainer.seed",
    "threads": "trainer.threads",
    "lr": "optim.lr",
    "init_from": "finetune.init_from",
}


def add_args(parser: argparse.ArgumentParser) -> None:
    """Register the `train` options (every one also settable in the YAML config)."""
    io = parser.add_argument_group("data and output")
    io.add_argument("--data", metavar="FILE", help="training SMILES file (CSV/TSV/.smi, optionally .gz)")
    io.add_argument("--val", metavar="FILE", help="validation SMILES file (default: hold out data.val_size molecules)")
    io.add_argument("--out", metavar="DIR", help="run directory (config, metrics.csv, checkpoints, summary.json)")
    io.add_argument("--config", metavar="YAML", help="config file (e.g. configs/default.yaml); flags override it")
    io.add_argument("--resume", action="store_true", help="continue the run in --out from checkpoints/last.ckpt")
    io.add_argument("--resume-from", metavar="STATE",
                    help="continue the run saved in a training state (a packed state such as "
                         "checkpoints/molgen-moses.state.pt, or a last.ckpt) into a new --out; its config is the base")  # fmt: skip
    io.add_argument("--init-from", metavar="MODEL",
                    help="fine-tune this model on --data: a model file, a training .ckpt, a run folder, or 'shipped' "
                         "(the MOSES model); its vocabulary and architecture are kept, and the defaults become "
                         "configs/finetune.yaml's (lr 3e-4, batch 64, 300 steps, 10%% held out, early stopping)")  # fmt: skip
    io.add_argument("--smiles-column", help="name of the SMILES column (default: auto-detected)")
    io.add_argument("--constraints", choices=("strict", "relaxed"), help="SELFIES semantic constraints")
    io.add_argument("--on-invalid", choices=("error", "skip"), help="stop at an invalid row, or skip it")
    run_group = parser.add_argument_group("training")
    run_group.add_argument("--kind", choices=("vae", "lm"), help="vae (default) or the autoregressive LM baseline")
    run_group.add_argument("--model", dest="model_kind_flag", help=argparse.SUPPRESS)  # the old name of --kind
    run_group.add_argument("--max-steps", type=int, metavar="N", help="optimizer steps (-1: no step limit)")
    run_group.add_argument("--max-time", metavar="DD:HH:MM:SS", help="wall-clock budget of this stretch (not counting earlier ones)")
    run_group.add_argument("--max-epochs", type=int, metavar="N")
    run_group.add_argument("--val-every", type=int, metavar="STEPS", help="validate + checkpoint every STEPS steps")
    run_group.add_argument("--batch-size", type=int, metavar="N")
    run_group.add_argument("--lr", type=float)
    run_group.add_argument("--seed", type=int)
    run_group.add_argument("--no-restart", action="store_true", help="turn off mixture-collapse prevention (restarts of dead components)")
    run_group.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                           help="override any config key, e.g. --set model.latent_dim=32 (repeatable)")  # fmt: skip
    hw = parser.add_argument_group("hardware")
    hw.add_argument("--precision", help="Lightning precision: 32-true, bf16-mixed (default), 16-mixed on GPU")
    hw.add_argument("--accelerator", help="cpu, gpu or auto (default)")
    hw.add_argument("--devices", type=_devices, help="devices per node: N, -1 or auto")
    hw.add_argument("--num-nodes", type=int)
    hw.add_argument("--strategy", help="auto, ddp, ddp_spawn, ... (Lightning strategies)")
    hw.add_argument("--threads", type=int, help="torch threads per process")
    hw.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Merge defaults, the YAML file (or the resumed run's config.yaml) and command-line flags."""
    if getattr(args, "model_kind_flag", None) is not None:
        raise MolgenError(
            "train has no --model (a checkpoint in sample and evaluate): the model family is --kind vae|lm"
        )
    init_from = getattr(args, "init_from", None)
    if init_from and (args.resume or args.resume_from):
        raise MolgenError(
            "--init-from starts a new fine-tune; --resume and --resume-from continue a run (its config says where it started)"
        )
    if args.config:
        config = load_config(args.config)
    elif args.resume and args.out and (Path(args.out) / "config.yaml").is_file():
        config = load_config(Path(args.out) / "config.yaml")
    elif args.resume_from:
        from molgen.training_state import state_config

        config = config_from_dict(state_config(args.resume_from), source=args.resume_from)
    elif init_from:
        config = finetune_config()
    else:
        config = TrainConfig()
    overrides: dict[str, Any] = {}
    for dest, key in FLAG_KEYS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key] = value
    if args.out:
        overrides["out"] = args.out
    if args.no_restart:
        overrides["objective.restart_dead_components"] = False
    if args.no_progress:
        overrides["trainer.progress_bar"] = False
    overrides.update(parse_override(text) for text in args.set)
    return apply_overrides(config, overrides)


def run(args: argparse.Namespace) -> int:
    """Train and print where the results are."""
    config = config_from_args(args)
    if config.data.train is None:
        raise MolgenError("give the training data with --data FILE (or data.train in --config)")
    from molgen.train import is_rank_zero, train  # Lightning takes seconds to import: only when training

    summary = train(config, resume=args.resume, resume_from=args.resume_from)
    if is_rank_zero():
        val = summary["val"]
        diag = summary.get("diagnostics") or {}
        print(f"step {summary['global_step']}: val ELBO {val.get('elbo', float('nan')):.2f} nats/molecule "
              f"(rec {val.get('rec', float('nan')):.2f}, KL {val.get('kl', float('nan')):.2f})"
              + (f", active units {diag['active_units']}/{diag['latent_dim']}, N_eff {diag['n_eff']:.2f}"
                 if diag.get("active_units") is not None else ""))  # fmt: skip
        if "comparison" in summary.get("finetune", {}):
            from molgen.finetune import format_comparison

            print(format_comparison(summary["finetune"]["comparison"]))
        print(f"model: {summary['model_file']}  summary: {Path(config.out) / 'summary.json'}")
    return 0
