"""Where and how the networks of `sample`, `evaluate` and `score` run: one ``--device`` and one
``--precision`` vocabulary for every verb.

``resolve_device`` turns "auto" (the default on the command line: "cuda" when torch finds a GPU,
else "cpu"), "cpu", "cuda" or "cuda:N" into a ``torch.device``; a CUDA device that is not there is
a MolgenError naming it. Random numbers stay on CPU generators whatever the device, so a seed draws
the same stream everywhere and a GPU gives the CPU's numbers up to float rounding.
"""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch

from molgen.errors import MolgenError

#: the sampler's ``--precision`` values, Lightning's names as in `molgen train`
PRECISIONS = ("32-true", "bf16-mixed")
#: the short names the sampler took before, still accepted
PRECISION_ALIASES = {"32": "32-true", "fp32": "32-true", "bf16": "bf16-mixed"}
DEVICE_HELP = 'auto (default: "cuda" when torch finds a GPU, else "cpu"), cpu, cuda or cuda:N'
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The ``torch.device`` for "auto", "cpu", "cuda" or "cuda:N" (or a ``torch.device``).

    Raises MolgenError for another name or for a CUDA device that torch cannot see.
    """
    name = str(device).strip().lower()
    if not _DEVICE.fullmatch(name):
        raise MolgenError(f"device must be auto, cpu, cuda or cuda:N, not {str(device)!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise MolgenError(
            f"device {name!r} is not available: torch {torch.__version__} sees no CUDA GPU (use cpu or auto)"
        )
    count = torch.cuda.device_count()
    if ":" in name and int(name.split(":")[1]) >= count:
        raise MolgenError(
            f"device {name!r} is not available: torch sees {count} CUDA device(s), cuda:0..cuda:{count - 1}"
        )
    return torch.device(name)


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """On CUDA, fp32 convolutions and RNNs without TF32 tensor cores (cuDNN uses them by default),
    so that a GPU gives the CPU's numbers up to float rounding; nothing changes on a CPU."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved


def resolve_precision(precision: str) -> str:
    """Lightning's name of a sampler precision: "32-true" or "bf16-mixed" ("32" and "bf16" are aliases)."""
    name = PRECISION_ALIASES.get(str(precision), str(precision))
    if name not in PRECISIONS:
        raise MolgenError(f"precision must be 32-true or bf16-mixed (or 32, bf16), not {precision!r}")
    return name


def autocast(precision: str, device_type: str = "cpu") -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device_type`` for ``precision="bf16-mixed"`` ("bf16"), a no-op for "32-true" ("32")."""
    if resolve_precision(precision) == "bf16-mixed":
        return torch.autocast(device_type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
