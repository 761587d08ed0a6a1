"""A training run's state as one compact file that travels between machines.

``pack_state`` turns a run's ``last.ckpt`` (Lightning: weights, AdamW moments, loop counters, the
epoch's batch position, molgen's molecules-seen count, restart count and RNG state, the run's
config) into a file about two thirds its size: the AdamW moments are stored in bfloat16 (8 bits of
mantissa: ample for running averages, which AdamW only divides and square-roots) and the
machine-specific parts (callback states holding this machine's paths) are dropped.
``molgen train --resume-from FILE --out DIR`` continues the run from it on any machine: PyTorch's
optimizer casts the moments back to the parameters' dtype on load.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from molgen.checkpoint import read_torch_file
from molgen.errors import MolgenError
from molgen.files import atomic_path

CONFIG_KEY = "molgen_config"  # the run's TrainConfig as a plain dict, written into every training checkpoint
METRICS_KEY = "molgen_metrics"  # the run's metrics.csv as text, in packed states
DROPPED = ("callbacks",)  # ModelCheckpoint states: paths on the machine that wrote them


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint or packed state, loaded with ``weights_only=True``; MolgenError when it is not one."""
    path = Path(path)
    data = read_torch_file(path, "cpu")
    if "state_dict" not in data or "optimizer_states" not in data or "loops" not in data:
        raise MolgenError(f"{path}: not a training state (no optimizer or loop state); a model file cannot be resumed")
    return data


def state_config(path: str | os.PathLike) -> dict:
    """The config dict a training state was written with; MolgenError if it has none."""
    config = read_checkpoint(path).get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise MolgenError(f"{path}: the training state holds no run config (written by an older molgen)")
    return config


def pack_state(checkpoint: str | os.PathLike, dest: str | os.PathLike, metrics: str | os.PathLike | None = None) -> dict:
    """Write the compact travelling state of ``checkpoint`` to ``dest`` (atomically), with the run's
    ``metrics.csv`` text inside when given (the curves travel with the run); return its summary."""
    data = read_checkpoint(checkpoint)
    if metrics is not None:
        data[METRICS_KEY] = Path(metrics).read_text(encoding="utf-8")
    for key in DROPPED:
        data.pop(key, None)
    for optimizer in data["optimizer_states"]:
        for param_state in optimizer.get("state", {}).values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in param_state and param_state[key].is_floating_point():
                    param_state[key] = param_state[key].to(torch.bfloat16)
    with atomic_path(dest) as tmp:
        torch.save(data, tmp)
    molgen = data.get("molgen", {})
    return {
        "global_step": int(data.get("global_step", 0)),
        "epoch": int(data.get("epoch", 0)),
        "molecules": int(molgen.get("molecules", 0)),
        "bytes": Path(dest).stat().st_size,
    }
