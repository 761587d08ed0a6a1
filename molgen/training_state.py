"""A training run's state as one compact file that travels between machines.

``pack_state`` turns a run's ``last.ckpt`` (Lightning: weights, AdamW moments, loop counters, the
epoch's batch position, molgen's molecules-seen count, restart count and RNG state, the run's
config) into a file about half its size, or a quarter when the weights are those of a model file
beside it (a sixth with that file's weights in float16):

- the AdamW moments are stored in 8 bits per value, in blocks of 64. The second moment v in log
  space (uint8 between the block's smallest and largest non-zero value, 0 meaning exactly 0), so
  each value keeps its relative precision (within 0.45 % per decade the block spans) whatever its
  magnitude. The first moment m as m/√v, the normalised step AdamW takes, int8 against the block's
  largest: a parameter with a small gradient keeps its step, which quantising m itself against the
  block's largest m would round to zero. Both are running averages that the next steps overwrite
  (β₁ = 0.9, β₂ = 0.999);
- with ``weights_from`` (the model file exported from the same checkpoint, e.g. the shipped
  ``molgen-moses.pt``), the tensors that file holds bit for bit, or rounded to float16 when it
  stores float16, are left out and recorded by name and sha256; the prior, which the export
  refits, stays in the state;
- with ``half_weights``, the weights the state keeps itself are stored as float16 too (a state
  committed between ships). Weights from a float16 source resume as the rounded values: a relative
  change of at most 2⁻¹¹ (0.05 %), about the size of one AdamW step at lr 1e-4 on this model's weights;
- with ``moments=False`` the AdamW moments are left out altogether: the stretch resumed from it
  starts them afresh, as AdamW does at a run's start, under a learning-rate warm-up of at least
  ``FRESH_MOMENTS_WARMUP`` molecules (``molgen.model.lightning``; that stretch only, the config is
  not changed). m averages over ~10 steps and v over ~1,000, so they are rebuilt early in the
  stretch; a state that must continue bit for bit keeps them;
- the machine-specific parts (callback states holding this machine's paths) are dropped.

``read_checkpoint`` reads any of these back as a full Lightning checkpoint (older states with
bfloat16 moments too), and ``molgen train --resume-from FILE --out DIR`` continues the run from it
on any machine.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import torch

from molgen.checkpoint import read_torch_file
from molgen.errors import MolgenError
from molgen.files import atomic_path

CONFIG_KEY = "molgen_config"  # the run's TrainConfig as a plain dict, written into every training checkpoint
METRICS_KEY = "molgen_metrics"  # the run's metrics.csv as text, in packed states
PACKING_KEY = "molgen_packing"  # how a packed state was compacted: {"moments", "weights_from", "half_weights"}
DROPPED = ("callbacks",)  # ModelCheckpoint states: paths on the machine that wrote them
BLOCK = 64  # values per quantisation block
MODULE_PREFIX = "model."  # the Lightning module's name for the model whose weights a model file holds
MOMENTS = ("exp_avg", "exp_avg_sq")  # AdamW's m and v


def quantize(tensor: torch.Tensor, mode: str) -> dict:
    """8-bit blockwise code of ``tensor``: ``linear`` (signed, int8 against each block's absmax) or
    ``log`` (non-negative, uint8 between each block's smallest and largest non-zero log; 0 is 0)."""
    x = tensor.detach().float().flatten()
    n = x.numel()
    blocks = torch.nn.functional.pad(x, (0, (-n) % BLOCK)).view(-1, BLOCK)
    if mode == "linear":
        scale = blocks.abs().amax(dim=1)
        q = torch.round(blocks / scale.clamp_min(1e-38)[:, None] * 127).to(torch.int8)
        return {"mode": mode, "shape": list(tensor.shape), "q": q.flatten()[:n].clone(), "scale": scale}
    if mode != "log":
        raise ValueError(f"unknown quantisation mode {mode!r}")
    if (x < 0).any():
        raise ValueError("log quantisation needs non-negative values")
    nonzero = blocks > 0
    logs = torch.where(nonzero, blocks.clamp_min(1e-38).log(), torch.zeros_like(blocks))
    lo = torch.where(nonzero, logs, torch.full_like(logs, float("inf"))).amin(dim=1)
    hi = torch.where(nonzero, logs, torch.full_like(logs, float("-inf"))).amax(dim=1)
    empty = ~nonzero.any(dim=1)
    lo, hi = torch.where(empty, 0.0, lo), torch.where(empty, 0.0, hi)
    span = (hi - lo).clamp_min(1e-12)[:, None]
    code = 1 + torch.round((logs - lo[:, None]) / span * 254)
    q = torch.where(nonzero, code, torch.zeros_like(code)).to(torch.uint8)
    return {"mode": mode, "shape": list(tensor.shape), "q": q.flatten()[:n].clone(), "lo": lo, "hi": hi}


def dequantize(code: dict) -> torch.Tensor:
    """The float32 tensor an 8-bit ``quantize`` code stands for."""
    q, shape = code["q"], code["shape"]
    n = q.numel()
    padded = torch.nn.functional.pad(q.float(), (0, (-n) % BLOCK)).view(-1, BLOCK)
    if code["mode"] == "linear":
        values = padded / 127 * code["scale"][:, None]
    else:
        lo, hi = code["lo"][:, None], code["hi"][:, None]
        values = torch.where(padded > 0, torch.exp(lo + (padded - 1) / 254 * (hi - lo)), torch.zeros_like(padded))
    return values.flatten()[:n].view(shape)


def pack_moments(exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor) -> dict:
    """AdamW's moments of one parameter as 8-bit codes: v in log space, m as the normalised step m/√v."""
    v = exp_avg_sq.detach().float().clamp_min(0)
    root = v.sqrt()
    step = torch.where(root > 0, exp_avg.detach().float() / root.clamp_min(1e-38), torch.zeros_like(root))
    return {"exp_avg": quantize(step, "linear"), "exp_avg_sq": quantize(v, "log")}


def unpack_moments(exp_avg: dict, exp_avg_sq: dict) -> dict:
    """The float32 moments that ``pack_moments`` codes stand for."""
    v = dequantize(exp_avg_sq)
    return {"exp_avg": dequantize(exp_avg) * v.sqrt(), "exp_avg_sq": v}


def _tensors_sha256(tensors: list[torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _model_weights(path: Path) -> dict[str, torch.Tensor]:
    data = read_torch_file(path, "cpu")
    weights = data.get("state_dict")
    if data.get("format") != "molgen-model" or not isinstance(weights, dict):
        raise MolgenError(f"{path}: not a molgen model file; weights can only be shared with one")
    return weights


def restore_packed(data: dict, path: Path) -> dict:
    """Undo the packing of a state read from ``path``: weights back from the model file, moments to float32."""
    packing = data.pop(PACKING_KEY, None) or {}
    shared = packing.get("weights_from")
    if shared:
        model_path = path.parent / shared["file"]
        if not model_path.is_file():
            raise MolgenError(f"{path}: its weights are in {shared['file']} beside it, and {model_path} does not exist")
        weights = _model_weights(model_path)
        missing = [k for k in shared["keys"] if k not in weights]
        tensors = [weights[k] for k in shared["keys"] if k in weights]
        if missing or _tensors_sha256(tensors) != shared["sha256"]:
            raise MolgenError(
                f"{path}: its weights are those of {model_path} at step {data.get('global_step')}, and that file now "
                "holds other weights; restore the model file of the same commit (git checkout) or pack the state with its weights"
            )
        for key, tensor in zip(shared["keys"], tensors):
            data["state_dict"][MODULE_PREFIX + key] = tensor.float() if tensor.dtype == torch.float16 else tensor
    for key in packing.get("half_weights", []):
        data["state_dict"][key] = data["state_dict"][key].float()
    for optimizer in data["optimizer_states"]:
        for param_state in optimizer.get("state", {}).values():
            if all(isinstance(param_state.get(key), dict) for key in MOMENTS):
                param_state.update(unpack_moments(param_state["exp_avg"], param_state["exp_avg_sq"]))
    return data


def _read_state_file(path: Path) -> dict:
    data = read_torch_file(path, "cpu")
    if "state_dict" not in data or "optimizer_states" not in data or "loops" not in data:
        raise MolgenError(f"{path}: not a training state (no optimizer or loop state); a model file cannot be resumed")
    return data


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A training checkpoint or packed state as a full Lightning checkpoint (weights restored, 8-bit
    moments decoded), loaded with ``weights_only=True``; MolgenError when it is not one."""
    return restore_packed(_read_state_file(Path(path)), Path(path))


@contextlib.contextmanager
def unpacked(path: str | os.PathLike) -> Iterator[Path]:
    """Yield ``path`` itself when it is a plain checkpoint, else a temporary full checkpoint made from
    the packed state (Lightning's ``ckpt_path`` and ``load_model`` read files, not dicts)."""
    path = Path(path)
    raw = _read_state_file(path)
    if not raw.get(PACKING_KEY):
        yield path
        return
    data = restore_packed(raw, path)
    with tempfile.TemporaryDirectory(prefix="molgen-state-") as folder:
        full = Path(folder) / "state.ckpt"
        torch.save(data, full)
        del data, raw
        yield full


def state_config(path: str | os.PathLike) -> dict:
    """The config dict a training state was written with; MolgenError if it has none."""
    config = _read_state_file(Path(path)).get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise MolgenError(f"{path}: the training state holds no run config (written by an older molgen)")
    return config


def state_metrics(path: str | os.PathLike) -> str:
    """The ``metrics.csv`` text a packed state carries (the weights are not needed to read it)."""
    text = _read_state_file(Path(path)).get(METRICS_KEY)
    if not isinstance(text, str):
        raise MolgenError(f"{path}: the training state carries no metrics (packed without the run's metrics.csv)")
    return text


def _holds(weight: torch.Tensor | None, stored: torch.Tensor) -> bool:
    """Whether a model file's ``stored`` tensor is the checkpoint's ``weight``, bit for bit or rounded to float16."""
    if weight is None or weight.shape != stored.shape:
        return False
    if stored.dtype == torch.float16 and weight.dtype == torch.float32:
        return torch.equal(weight.half(), stored)
    return weight.dtype == stored.dtype and torch.equal(weight, stored)


def pack_state(
    checkpoint: str | os.PathLike,
    dest: str | os.PathLike,
    metrics: str | os.PathLike | None = None,
    weights_from: str | os.PathLike | None = None,
    half_weights: bool = False,
    moments: bool = True,
) -> dict:
    """Write the compact travelling state of ``checkpoint`` to ``dest`` (atomically), with the run's
    ``metrics.csv`` text inside when given (the curves travel with the run). With ``weights_from``, a
    model file in ``dest``'s folder exported from this checkpoint, the weights it holds unchanged
    (or rounded to its float16) are left out (the prior it refitted stays in). With
    ``half_weights`` the float32 weights kept in the state are stored as float16. With
    ``moments=False`` the optimizer's moments are left out (the resumed stretch warms its lr
    up). Return the state's summary."""
    data = read_checkpoint(checkpoint)
    if metrics is not None:
        data[METRICS_KEY] = Path(metrics).read_text(encoding="utf-8")
    for key in DROPPED:
        data.pop(key, None)
    if moments:
        for optimizer in data["optimizer_states"]:
            for param_state in optimizer.get("state", {}).values():
                if all(isinstance(param_state.get(key), torch.Tensor) for key in MOMENTS):
                    param_state.update(pack_moments(param_state["exp_avg"], param_state["exp_avg_sq"]))
        packing: dict = {"moments": f"8-bit, blocks of {BLOCK}: v in log space, m as m/sqrt(v)"}
    else:
        for optimizer in data["optimizer_states"]:
            optimizer["state"] = {}  # AdamW starts afresh (its per-parameter step count too)
        packing = {"moments": "none: AdamW starts afresh, under an lr warm-up"}
    if weights_from is not None:
        model_path = Path(weights_from)
        if model_path.resolve().parent != Path(dest).resolve().parent:
            raise MolgenError(f"{model_path}: the model file that holds the weights must be in the state's folder ({Path(dest).parent})")
        weights, state = _model_weights(model_path), data["state_dict"]
        keys = [k for k, v in weights.items() if _holds(state.get(MODULE_PREFIX + k), v)]
        if not keys:
            raise MolgenError(f"{model_path}: holds none of the checkpoint's weights (exported from another checkpoint?)")
        for key in keys:
            del state[MODULE_PREFIX + key]
        packing["weights_from"] = {"file": model_path.name, "keys": keys, "sha256": _tensors_sha256([weights[k] for k in keys])}
    if half_weights:
        state = data["state_dict"]
        packing["half_weights"] = [k for k, v in state.items() if v.dtype == torch.float32]
        for key in packing["half_weights"]:
            state[key] = state[key].half()
    data[PACKING_KEY] = packing
    with atomic_path(dest) as tmp:
        torch.save(data, tmp)
    molgen = data.get("molgen", {})
    shared = packing.get("weights_from", {}).get("keys", [])
    return {
        "global_step": int(data.get("global_step", 0)),
        "epoch": int(data.get("epoch", 0)),
        "molecules": int(molgen.get("molecules", 0)),
        "bytes": Path(dest).stat().st_size,
        "shared_tensors": len(shared),
        "moments": moments,
    }
