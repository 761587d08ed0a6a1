"""GRU layers for CPU training: the whole sequence as one autograd node with hand-written BPTT.

torch's CPU GRU runs each time step as a small autograd graph, and in training most of its time
goes to bookkeeping rather than the matmuls: a concatenation for every chunked gate in backward,
a [3H, H] weight-gradient matmul and add at every step, dtype copies under autocast, and ~25
elementwise kernels per step. ``GRUSequence`` computes the same function (ATen's ``gru_cell``
equations) with the matmuls in torch and each step's gate arithmetic fused into one pass of a C
kernel (``_gru_cell.c``), in each direction; the weight gradient is one [3H, L*B] x [L*B, H]
matmul after the loop. Under bf16 autocast the matmuls run in bf16 (as in torch's GRU, whose
linear maps autocast casts), the gate arithmetic and the running state in float32, and what is
saved for backward and the outputs in bf16 (torch's are float32).

It is used for CPU training when the kernel was built (``molgen.nn.gru.available()``). On a GPU,
without grad, or without the kernel, molgen runs torch's GRU (cuDNN on a GPU), which computes the
same function up to float rounding (tests/test_gru.py).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

try:
    from molgen.nn import _gru_cell as _kernel
except ImportError:  # built at install when a C compiler is there
    _kernel = None


def available() -> bool:
    """Whether the fused kernel is built and not switched off (``MOLGEN_TORCH_GRU=1`` switches it off)."""
    return _kernel is not None and os.environ.get("MOLGEN_TORCH_GRU", "") in ("", "0")


def _matmul_dtype(device_type: str) -> torch.dtype:
    if torch.is_autocast_enabled(device_type) and torch.get_autocast_dtype(device_type) == torch.bfloat16:
        return torch.bfloat16
    return torch.float32


class GRUSequence(torch.autograd.Function):
    """States h_0..h_L of one GRU layer from the input projections gi_t = W_ih x_t + b_ih.

    Everything saved for backward (gates, states, W_hh h + b_hh) is in the matmul dtype: under
    bf16 that halves the memory the step kernels stream, which is what bounds them. The running
    state is float32 in both dtypes.
    """

    @staticmethod
    def forward(ctx, gi: torch.Tensor, h0: torch.Tensor, w_hh: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
        """gi [L, B, 3H] (bf16 or float32: the matmul dtype), h0 [B, H] float32 -> states [L + 1, B, H]
        in the matmul dtype, h0 first."""
        steps, batch, three_h = gi.shape
        hidden = three_h // 3
        dtype, bf16 = gi.dtype, gi.dtype == torch.bfloat16
        w_t, b = w_hh.to(dtype).T, b_hh.to(dtype)
        hs = torch.empty(steps + 1, batch, hidden, dtype=dtype)  # the states, saved and returned
        hs[0] = h0
        # float32 running state: the rows of hs itself, or two buffers used in turn under bf16
        state = [h0.clone(), torch.empty_like(h0)] if bf16 else None
        gh = torch.empty(steps, batch, three_h, dtype=dtype)
        rz = torch.empty(steps, batch, 2 * hidden, dtype=dtype)
        n = torch.empty(steps, batch, hidden, dtype=dtype)
        for t in range(steps):
            torch.addmm(b, hs[t], w_t, out=gh[t])
            h, h_next = (state[t % 2], state[(t + 1) % 2]) if bf16 else (hs[t], hs[t + 1])
            _kernel.forward(batch, hidden, bf16, gi[t].data_ptr(), gh[t].data_ptr(), h.data_ptr(),
                            rz[t].data_ptr(), n[t].data_ptr(), h_next.data_ptr(), hs[t + 1].data_ptr())  # fmt: skip
        ctx.save_for_backward(hs, rz, n, gh, w_hh)
        return hs

    @staticmethod
    def backward(ctx, grad_hs: torch.Tensor):
        hs, rz, n, gh, w_hh = ctx.saved_tensors
        steps, batch, hidden = n.shape
        dtype, bf16 = gh.dtype, gh.dtype == torch.bfloat16
        w = w_hh.to(dtype)
        grad_hs = grad_hs.to(dtype).contiguous()
        dgi = torch.empty(steps, batch, 3 * hidden, dtype=dtype)
        dgh = torch.empty(steps, batch, 3 * hidden, dtype=dtype)
        dh = grad_hs[steps].float()  # dL/dh_L (a copy)
        d_b = torch.zeros(3 * hidden)
        for t in range(steps - 1, -1, -1):
            # gate gradients from dL/dh_{t+1}, and dh <- dh u + dL/dh_t (the output's own gradient)
            _kernel.backward(batch, hidden, bf16, dh.data_ptr(), grad_hs[t].data_ptr(), rz[t].data_ptr(),
                             n[t].data_ptr(), gh[t].data_ptr(), hs[t].data_ptr(), dgi[t].data_ptr(), dgh[t].data_ptr(), d_b.data_ptr())  # fmt: skip
            dh.add_(torch.mm(dgh[t], w))  # + the recurrence through W_hh
        flat = dgh.view(steps * batch, 3 * hidden)
        d_w = torch.mm(flat.T, hs[:steps].reshape(steps * batch, hidden)).float()
        return dgi, dh, d_w, d_b


def gru_layer(
    x: torch.Tensor, h0: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One GRU layer over time-major ``x`` [L, B, E] from ``h0`` [B, H]: outputs [L, B, H] and h_L [B, H],
    float32, or bf16 under bf16 autocast (where the matmuls run in bf16)."""
    dtype = _matmul_dtype(x.device.type)
    with torch.autocast(x.device.type, enabled=False):
        gi = F.linear(x.to(dtype), w_ih.to(dtype), b_ih.to(dtype)).contiguous()
        hs = GRUSequence.apply(gi, h0.float().contiguous(), w_hh, b_hh)
    return hs[1:], hs[-1]


def use_gru_sequence(x: torch.Tensor, gru: nn.GRU) -> bool:
    """Whether ``GRUSequence`` replaces torch's GRU: CPU training (grad enabled) of a GRU with biases,
    with the kernel built."""
    return x.device.type == "cpu" and torch.is_grad_enabled() and gru.bias and available()


def layer_weights(gru: nn.GRU, layer: int, suffix: str = "") -> list[torch.Tensor]:
    """[W_ih, W_hh, b_ih, b_hh] of one layer (``suffix="_reverse"``: its backward direction)."""
    return [getattr(gru, f"{name}_l{layer}{suffix}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]


def gru_forward(gru: nn.GRU, x: torch.Tensor, h0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``gru(x, h0)`` for a unidirectional batch-first GRU (x [B, L, E], h0 [layers, B, H]): by
    ``GRUSequence`` in CPU training (outputs bf16 under bf16 autocast), by torch's GRU otherwise."""
    if not use_gru_sequence(x, gru):
        return gru(x, h0.to(x.dtype))
    inputs = x.transpose(0, 1)
    states = []
    for layer in range(gru.num_layers):
        if layer and gru.dropout > 0:
            inputs = F.dropout(inputs, gru.dropout, gru.training)
        inputs, last = gru_layer(inputs, h0[layer], *layer_weights(gru, layer))
        states.append(last)
    return inputs.transpose(0, 1), torch.stack(states)
