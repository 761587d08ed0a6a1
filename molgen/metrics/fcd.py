"""Fréchet ChemNet Distance with fcd-torch's ChemNet: activations in large batches, Gaussian
statistics (mean, covariance) and the Fréchet distance between two of them.

fcd-torch's own pipeline (a DataLoader of float64 one-hot arrays) is replaced by compact token
indices made in the worker processes; the network, its weights and its input encoding (fcd-torch's
``get_one_hot`` padded to 350 symbols, scaled by 1/35) are fcd-torch's.

ChemNet reads every SMILES padded to 350 symbols (88 positions after its two strided convolutions,
of which a MOSES molecule fills ~12), and its padding costs most of the work. ``_PaddingAwareChemNet``
computes the same function with the redundant part done once: the convolutions have no bias, so a
padded position feeds exact zeros to the LSTMs; the first LSTM reads the sequence reversed, so every
molecule starts it with the same run of zero inputs from the zero state (one shared trajectory,
computed once); and the second LSTM's inputs at padded positions are that trajectory's outputs, the
same for every molecule, so their input projections are computed once too. Only the second LSTM's
recurrence over the padded positions remains per molecule.
"""
from __future__ import annotations

import copy
import functools
from typing import Callable

import numpy as np
import torch
from fcd_torch import FCD
from fcd_torch.utils import get_one_hot

from molgen.device import ieee_fp32, resolve_device

PAD_LEN = 350
N_SYMBOLS = 35
_NO_SYMBOL = 255


def chemnet_tokens(smiles: str) -> np.ndarray:
    """ChemNet input of a canonical SMILES as symbol indices (uint8, length 350; 255 = padding)."""
    one_hot = get_one_hot(smiles, PAD_LEN)
    return np.where(one_hot.any(axis=1), one_hot.argmax(axis=1), _NO_SYMBOL).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _chemnet() -> torch.nn.Module:
    return FCD(device="cpu", n_jobs=1).model.eval()


class _PaddingAwareChemNet:
    """fcd-torch's ChemNet (``_chemnet()``: convolutions, reversed LSTM-128, LSTM-512, last output)
    evaluated without recomputing what padding makes identical for every molecule (module docstring)."""

    def __init__(self, model: torch.nn.Sequential) -> None:
        self.features = model[:7]  # same-padding convolutions + SELU, then [B, T, 32]
        self.lstm1, self.lstm2 = model[8], model[11]
        self.device = self.lstm2.weight_hh_l0.device
        with torch.inference_mode():
            self.steps = self.features(torch.zeros(1, N_SYMBOLS, PAD_LEN, device=self.device)).shape[1]
            outputs, self.h_zero, self.c_zero = self._zero_trajectory()
            # the second LSTM's input projection at forward position t reads step T-1-t of the trajectory
            self.gates2 = outputs.flip(0) @ self.lstm2.weight_ih_l0.T + self.lstm2.bias_ih_l0 + self.lstm2.bias_hh_l0

    def _zero_trajectory(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first LSTM run on zero inputs from the zero state: outputs [T, H] and the states
        h, c [T + 1, H] after 0..T steps."""
        hidden = self.lstm1.hidden_size
        h, c = torch.zeros(1, 1, hidden, device=self.device), torch.zeros(1, 1, hidden, device=self.device)
        zero_input = torch.zeros(1, 1, self.lstm1.input_size, device=self.device)
        outs, hs, cs = [], [h[0, 0]], [c[0, 0]]
        for _ in range(self.steps):
            out, (h, c) = self.lstm1(zero_input, (h, c))
            outs.append(out[0, 0])
            hs.append(h[0, 0])
            cs.append(c[0, 0])
        return torch.stack(outs), torch.stack(hs), torch.stack(cs)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Penultimate activations [B, 512] of one-hot input [B, 35, 350] (as ``_chemnet()(batch)``)."""
        x = self.features(batch)  # [B, T, 32]
        b, steps = x.shape[0], self.steps
        used = x.abs().amax(dim=2) > 0
        m = int(used.nonzero()[:, 1].max()) + 1 if used.any() else 1  # positions past m are all zero input
        start = (self.h_zero[steps - m].expand(1, b, -1).contiguous(), self.c_zero[steps - m].expand(1, b, -1).contiguous())
        out1, _ = self.lstm1(x[:, :m].flip(1), start)  # the reversed LSTM over the first m positions
        _, (h, c) = self.lstm2(out1.flip(1))  # forward LSTM over positions 0..m-1
        h, c = h[0].clone(), c[0].clone()
        w_hh = self.lstm2.weight_hh_l0.T
        hidden = self.lstm2.hidden_size
        gates, tanh_c = torch.empty(b, 4 * hidden, device=self.device), torch.empty(b, hidden, device=self.device)
        i, f, g, o = gates.chunk(4, dim=1)  # views, refreshed by every addmm below
        for t in range(m, steps):  # padded positions: input projections precomputed; buffers reused
            torch.addmm(self.gates2[t], h, w_hh, out=gates)
            gates[:, : 2 * hidden].sigmoid_()
            g.tanh_()
            o.sigmoid_()
            c.mul_(f).addcmul_(i, g)
            torch.tanh(c, out=tanh_c)
            torch.mul(o, tanh_c, out=h)
        return h


@functools.lru_cache(maxsize=2)
def _fast_chemnet(device: torch.device = torch.device("cpu")) -> _PaddingAwareChemNet:
    """The padding-aware ChemNet on ``device`` (a copy of ``_chemnet()`` off the CPU)."""
    model = _chemnet() if device.type == "cpu" else copy.deepcopy(_chemnet()).to(device)
    return _PaddingAwareChemNet(model)


def chemnet_activations(
    tokens: np.ndarray,
    batch_size: int = 1024,
    progress: Callable[[int], None] | None = None,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """ChemNet penultimate activations (float32 [n, 512]) of token rows from ``chemnet_tokens``.

    Rows are batched by length so that each batch's padding is shared as widely as possible.
    ``device``: where the network runs ("cpu", "cuda", "cuda:N" or "auto"); a GPU gives the CPU's
    activations up to float rounding (fp32, no TF32).
    """
    device = resolve_device(device)
    out = np.empty((len(tokens), 512), dtype=np.float32)
    scale = np.float32(1.0 / N_SYMBOLS)
    order = np.argsort((tokens != _NO_SYMBOL).sum(axis=1), kind="stable")
    with ieee_fp32(device):
        model = _fast_chemnet(device)  # built outside inference mode: its weights stay ordinary tensors
        with torch.inference_mode():
            for start in range(0, len(tokens), batch_size):
                index = order[start : start + batch_size]
                rows = torch.from_numpy(tokens[index].astype(np.int64)).to(device)
                one_hot = torch.zeros(len(rows), PAD_LEN, N_SYMBOLS + 1, device=device)
                one_hot.scatter_(2, rows.clamp(max=N_SYMBOLS).unsqueeze(2), scale)
                batch = one_hot[:, :, :N_SYMBOLS].transpose(1, 2)
                out[index] = model(batch).cpu().numpy()
                if progress is not None:
                    progress(len(rows))
    return out


def gaussian(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) of activations, in float64; needs at least two rows."""
    if len(activations) < 2:
        raise ValueError("FCD needs at least two molecules")
    return activations.mean(axis=0, dtype=np.float64), np.cov(activations.T.astype(np.float64))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance |mu1 - mu2|^2 + tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)) between two Gaussians.

    The trace of the matrix square root is taken from the eigenvalues of the symmetric
    s1^(1/2) sigma2 s1^(1/2) (same spectrum as sigma1 sigma2): the same number as fcd-torch's
    ``scipy.linalg.sqrtm`` route, ~50x faster and without complex round-off on singular covariances.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    values, vectors = np.linalg.eigh(sigma1)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    product = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)
