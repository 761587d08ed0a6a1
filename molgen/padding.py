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


class TokenTable:
    """Every molecule of a TokenizedSet right-padded once into one int16 tensor [N, longest].

    A batch is then a gather by index. On an accelerator the table moves to the device with the
    first batch and stays there, so no batch is padded on the host and only the index crosses over.
    """

    def __init__(self, data: TokenizedSet, pad_id: int = 0) -> None:
        lengths = data.lengths.astype(np.int64)
        self.width = int(lengths.max()) if len(lengths) else 0
        table = np.full((len(lengths), self.width), pad_id, dtype=np.int16)
        table[np.arange(self.width) < lengths[:, None]] = data.ids[data.offsets[0] : data.offsets[-1]]
        self._tables = {torch.device("cpu"): (torch.from_numpy(table), torch.from_numpy(lengths))}

    def __len__(self) -> int:
        return len(self._tables[torch.device("cpu")][1])

    def batch(self, index: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens LongTensor[B, width], lengths LongTensor[B]) of the molecules at ``index``, on its
        device; ``width`` is the batch's longest length, known on the host (no device sync)."""
        device = index.device
        if device not in self._tables:
            tokens, lengths = self._tables[torch.device("cpu")]
            self._tables[device] = (tokens.to(device), lengths.to(device))
        tokens, lengths = self._tables[device]
        return tokens[index, :width].long(), lengths[index]
