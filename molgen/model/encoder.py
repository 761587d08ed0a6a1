"""Encoder q(z|x): embedding -> bidirectional GRU (packed, so padding changes nothing) -> GELU MLP -> (mu, log sigma^2)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

LOGVAR_RANGE = (-6.0, 2.0)


class GRUEncoder(nn.Module):
    """Maps token ids [B, L] (right-padded, no <bos>) and lengths [B] to mu, logvar [B, D]."""

    def __init__(self, vocab_size: int, pad_id: int, emb_dim: int, hidden: int, layers: int, latent_dim: int) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.gru = nn.GRU(emb_dim, hidden, num_layers=layers, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, 2 * latent_dim))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar), each [B, D] float32; logvar clamped to [-6, 2]."""
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h_n = self.gru(packed)  # [layers * 2, B, H]; the final states of the last layer are the last two
        features = torch.cat([h_n[-2], h_n[-1]], dim=-1)
        mu, logvar = self.head(features).float().chunk(2, dim=-1)
        return mu, logvar.clamp(*LOGVAR_RANGE)
