"""Decoder p(x|z): GRU over token embeddings with z appended at every step; initial state tanh(W z)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from molgen.nn.gru import gru_forward


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
        y, h = gru_forward(self.gru, x, h)
        return self.out(y).float(), h


class DecoderStepper:
    """``GRUDecoder.forward`` on one token, arranged for sampling (same function up to float rounding).

    The first layer's input projection W_ih [e; z] + b is split into a per-token table
    W_e E + b [V, 3H] and a per-sequence latent term W_z z [B, 3H], both made once instead of at
    every step (27% of a step's multiply-adds in the shipped model). ``select`` narrows the batch to
    the sequences still being written. The GRU cell follows ATen's ``gru_cell`` formula.
    """

    def __init__(self, decoder: GRUDecoder, z: torch.Tensor | None) -> None:
        self.decoder, gru = decoder, decoder.gru
        emb_dim = decoder.embed.embedding_dim
        w_ih = gru.weight_ih_l0
        self.table = torch.addmm(gru.bias_ih_l0, decoder.embed.weight, w_ih[:, :emb_dim].T)
        self.latent = z.float() @ w_ih[:, emb_dim:].T if decoder.latent_dim else None

    def select(self, keep: torch.Tensor) -> None:
        """Keep only the sequences at positions ``keep`` of the current batch, in that order."""
        if self.latent is not None:
            self.latent = self.latent[keep]

    def __call__(self, tokens: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits [A, V] (float32) and the new state [layers, A, H] (float32) for the previous ids
        [A] and state h [layers, A, H] of the current batch."""
        gru = self.decoder.gru
        x = self.table[tokens]
        if self.latent is not None:
            x += self.latent
        states = []
        for layer in range(self.decoder.layers):
            if layer:
                x = F.linear(x, getattr(gru, f"weight_ih_l{layer}"), getattr(gru, f"bias_ih_l{layer}"))
            hh = F.linear(h[layer], getattr(gru, f"weight_hh_l{layer}"), getattr(gru, f"bias_hh_l{layer}"))
            x = _gru_cell(x.float(), hh.float(), h[layer].float())
            states.append(x)
        return self.decoder.out(x).float(), torch.stack(states)


def _gru_cell(igates: torch.Tensor, hgates: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """ATen's gru_cell after its two linear maps: reset and update gates (one sigmoid over both),
    the new gate, then h' = (h - n) * u + n."""
    hidden = h.shape[-1]
    reset, update = (hgates[:, : 2 * hidden] + igates[:, : 2 * hidden]).sigmoid_().chunk(2, dim=1)
    new = igates[:, 2 * hidden :].add(hgates[:, 2 * hidden :] * reset).tanh_()
    return (h - new).mul_(update).add_(new)
