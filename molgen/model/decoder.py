"""Decoder p(x|z): GRU over token embeddings with z appended at every step; initial state tanh(W z)."""
from __future__ import annotations

import torch
from torch import nn


class GRUDecoder(nn.Module):
    """Autoregressive GRU; ``latent_dim = 0`` makes it a plain language model with a learned initial state."""

    def __init__(self, vocab_size: int, pad_id: int, emb_dim: int, hidden: int, layers: int, latent_dim: int) -> None:
        super().__init__()
        self.layers, self.hidden, self.latent_dim = layers, hidden, latent_dim
        self.embed = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.gru = nn.GRU(emb_dim + latent_dim, hidden, num_layers=layers, batch_first=True)
        if latent_dim:
            self.init_state = nn.Linear(latent_dim, layers * hidden)
        else:
            self.h0 = nn.Parameter(torch.zeros(layers, 1, hidden))
        self.out = nn.Linear(hidden, vocab_size)

    def initial_state(self, z: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """GRU state [layers, B, H]: tanh(W z), or the learned state when there is no latent."""
        if self.latent_dim:
            h = torch.tanh(self.init_state(z))
            return h.view(-1, self.layers, self.hidden).transpose(0, 1).contiguous()
        return torch.tanh(self.h0).expand(-1, batch_size, -1).contiguous()

    def forward(self, inputs: torch.Tensor, z: torch.Tensor | None, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [B, L, V] (float32) and the final state for input ids [B, L]."""
        x = self.embed(inputs)
        if self.latent_dim:
            x = torch.cat([x, z.to(x.dtype).unsqueeze(1).expand(-1, x.size(1), -1)], dim=-1)
        y, h = self.gru(x, h.to(x.dtype))
        return self.out(y).float(), h
