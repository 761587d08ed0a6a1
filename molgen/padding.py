"""Right padding: the one place where id sequences of different lengths become a batch tensor."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from molgen.token_cache import TokenizedSet


def pad_ids(seqs: Sequence[Sequence[int] | np.ndarray], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id sequences into (tokens LongTensor[B, longest], lengths LongTensor[B])."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    width = int(lengths.max()) if len(seqs) else 0
    tokens = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    if len(seqs):  # a boolean mask fills row by row, so each row gets its own ids in order
        tokens[torch.arange(width) < lengths[:, None]] = torch.from_numpy(np.concatenate(seqs).astype(np.int64))
    return tokens, lengths


def pad_molecules(
    data: TokenizedSet, index: Sequence[int] | np.ndarray | None = None, pad_id: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pad_ids`` of the molecules of ``data`` at ``index`` (all when None), in that order."""
    index = range(len(data)) if index is None else index
    return pad_ids([data.get(i) for i in index], pad_id)
