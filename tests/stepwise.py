"""Reference computations by plain loops over MoleculeVAE.decoder_step, for tests to compare against."""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from molgen.model.vae import MoleculeVAE


def lm_log_likelihood(model: MoleculeVAE, molecules: Iterable[Sequence[int]]) -> torch.Tensor:
    """log p(x) of a language model (kind="lm") for each id sequence (SELFIES ids then <eos>): the sum of
    each token's teacher-forced log-probability, one molecule and one decoder_step at a time, in float64 [N]."""
    out = []
    with torch.no_grad():
        for ids in molecules:
            h, prev, total = model.decoder_init(None, 1), torch.tensor([model.bos_id]), 0.0
            for token in (int(i) for i in ids):
                logits, h = model.decoder_step(prev, None, h)
                total += float(torch.log_softmax(logits.double(), -1)[0, token])
                prev = torch.tensor([token])
            out.append(total)
    return torch.tensor(out, dtype=torch.float64)
