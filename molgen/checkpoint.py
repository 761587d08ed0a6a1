"""Model files: weights + vocabulary + plain-type hyper-parameters, loadable with weights_only=True.

``save_model`` writes a small file ``{"format": "molgen-model", "version": 1, "hparams", "vocab",
"state_dict", "extra"}``; ``load_model`` reads it or a Lightning ``.ckpt`` written by training.
With ``half=True`` the floating weights are stored as float16 (half the file; the shipped model):
they load into the float32 model as the rounded values, so the file is exactly the model it
describes once ``round_weights_`` has been applied before anything is measured on it.
Nothing is unpickled beyond tensors and plain containers, so no code runs on load.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from molgen.errors import MolgenError
from molgen.files import atomic_path
from molgen.model import VERSION
from molgen.model.vae import MoleculeVAE
from molgen.tokenizer import SelfiesTokenizer

FORMAT = "molgen-model"


def round_weights_(model: torch.nn.Module, dtype: torch.dtype = torch.float16) -> torch.nn.Module:
    """Round ``model``'s floating parameters and buffers to ``dtype`` in place (they stay float32):
    the model a ``save_model(..., half=True)`` file loads as, to fit or measure before saving."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype))
    return model


def save_model(
    path: str | os.PathLike,
    model: MoleculeVAE,
    tokenizer: SelfiesTokenizer,
    extra: dict | None = None,
    half: bool = False,
) -> None:
    """Write weights, vocabulary and hyper-parameters of ``model`` to ``path`` (atomically); with
    ``half`` the floating weights as float16."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "hparams": dict(model.hparams_dict),
        "vocab": tokenizer.to_dict(),
        "state_dict": state,
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_torch_file(path: Path, map_location: str | torch.device) -> dict:
    """A molgen model file or training checkpoint as a dict (weights_only=True); MolgenError naming what is wrong."""
    if not path.exists():
        raise MolgenError(f"{path}: no such model file")
    if path.is_dir():
        raise MolgenError(f"{path}: is a folder; give the model file (e.g. {path / 'model.pt'})")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # a torch zip archive, or torch's legacy pickle format
        raise MolgenError(f"{path}: not a molgen model file ({'empty file' if not head else 'not a PyTorch file'})")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [type(err).__name__]
        what = next((line for line in lines if "GLOBAL" in line), lines[0])  # e.g. "... GLOBAL posix.system ..."
        raise MolgenError(f"{path}: refusing to load: the file holds pickled objects or code ({what[:200]})") from None
    except Exception as err:  # torch.load raises many types (RuntimeError, EOFError, KeyError, ...) on damaged files
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise MolgenError(f"{path}: not a readable molgen model file (truncated or corrupt: {first})") from None
    if not isinstance(data, dict):
        raise MolgenError(f"{path}: not a molgen model file")
    return data


def _from_lightning(path: Path, data: dict) -> tuple[dict, dict, dict]:
    hp = data.get("hyper_parameters")
    if not isinstance(hp, dict) or not isinstance(hp.get("model"), dict) or "vocab" not in hp:
        raise MolgenError(f"{path}: a Lightning checkpoint, but not one written by molgen train")
    molgen = data.get("molgen")
    version = molgen.get("version", VERSION) if isinstance(molgen, dict) else VERSION
    if version != VERSION:
        raise MolgenError(f"{path}: training checkpoint version {version!r}; this molgen reads version {VERSION}")
    state = {k[len("model.") :]: v for k, v in data["state_dict"].items() if k.startswith("model.")}
    return hp["model"], hp["vocab"], state


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[MoleculeVAE, SelfiesTokenizer]:
    """Load (model in eval mode, tokenizer) from a molgen model file, a training ``.ckpt`` or a packed training state."""
    path = Path(path)
    data = read_torch_file(path, map_location)
    if data.get("format") == FORMAT:
        if data.get("version") != VERSION:
            raise MolgenError(
                f"{path}: model file version {data.get('version')!r}; this molgen reads version {VERSION}"
            )
        hparams, vocab, state = data.get("hparams"), data.get("vocab"), data.get("state_dict")
    elif "state_dict" in data and "hyper_parameters" in data:
        from molgen.training_state import PACKING_KEY, restore_packed  # imports this module

        if data.get(PACKING_KEY):  # a packed state: weights from the model file beside it, float16 ones widened
            data = restore_packed(data, path)
        hparams, vocab, state = _from_lightning(path, data)
    else:
        raise MolgenError(f"{path}: not a molgen model file (no 'format' key and not a Lightning checkpoint)")
    if not isinstance(hparams, dict) or not isinstance(vocab, dict) or not isinstance(state, dict):
        raise MolgenError(f"{path}: damaged molgen model file (missing hparams, vocab or weights)")
    tokenizer = SelfiesTokenizer.from_dict(vocab)
    try:
        model = MoleculeVAE(**hparams)
    except (TypeError, ValueError) as err:
        raise MolgenError(f"{path}: incompatible model hyper-parameters: {err}") from None
    if hparams.get("vocab_size") != len(tokenizer):
        raise MolgenError(f"{path}: vocabulary has {len(tokenizer)} tokens but the model expects {hparams.get('vocab_size')}")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise MolgenError(f"{path}: weights do not match the model: {str(err).splitlines()[0][:300]}") from None
    model.to(map_location).eval()
    return model, tokenizer
