"""GRUSequence (molgen/nn/gru.py + _gru_cell.c) computes torch's GRU: outputs, states and gradients."""
import math

import pytest
import torch

from molgen.nn import gru as fused
from molgen.nn.decoder import GRUDecoder
from molgen.nn.gru import gru_forward, use_gru_sequence

pytestmark = pytest.mark.skipif(not fused.available(), reason="the _gru_cell kernel was not built (no C compiler)")


def _grads(outputs, inputs):
    y, h = outputs
    loss = (y * torch.linspace(-1, 1, y.shape[-1])).square().sum() + h.sin().sum()
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("layers", [1, 2])
def test_float32_matches_torch_gru_values_and_gradients(layers):
    torch.manual_seed(0)
    gru = torch.nn.GRU(12, 16, num_layers=layers, batch_first=True)
    x = torch.randn(5, 9, 12, requires_grad=True)
    h0 = torch.randn(layers, 5, 16, requires_grad=True)
    inputs = [x, h0, *gru.parameters()]
    assert use_gru_sequence(x, gru)
    got = gru_forward(gru, x, h0)
    expected = gru(x, h0)
    torch.testing.assert_close(got[0], expected[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got[1], expected[1], atol=1e-6, rtol=1e-5)
    for a, b in zip(_grads(got, inputs), _grads(expected, inputs)):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


def test_bf16_autocast_stays_close_to_float32():
    """bf16 matmuls and saved tensors, float32 gates and running state: within bf16 rounding of the
    float32 function; outputs in bf16 (torch's CPU GRU returns float32 under autocast)."""
    torch.manual_seed(1)
    gru = torch.nn.GRU(32, 64, batch_first=True)
    x = torch.randn(8, 20, 32, requires_grad=True)
    h0 = torch.zeros(1, 8, 64)
    inputs = [x, *gru.parameters()]
    reference = gru(x, h0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = gru_forward(gru, x, h0)
    assert got[0].dtype == torch.bfloat16
    assert (got[0].float() - reference[0]).abs().max() < 0.03
    for a, b in zip(_grads(got, inputs), _grads(reference, inputs)):
        cosine = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
        assert cosine > 0.999
        assert a.dtype == b.dtype == torch.float32


def test_torch_gru_without_grad_or_when_switched_off(monkeypatch):
    gru = torch.nn.GRU(4, 4, batch_first=True)
    x = torch.randn(2, 3, 4)
    with torch.no_grad():
        assert not use_gru_sequence(x, gru)
    assert use_gru_sequence(x, gru)
    monkeypatch.setenv("MOLGEN_TORCH_GRU", "1")
    assert not fused.available() and not use_gru_sequence(x, gru)


def test_decoder_training_forward_equals_inference_forward():
    """The decoder's logits are the same function on the fused (grad) and torch (no-grad) paths."""
    torch.manual_seed(2)
    decoder = GRUDecoder(vocab_size=11, pad_id=0, emb_dim=8, hidden=24, layers=2, latent_dim=5)
    tokens, z = torch.randint(1, 11, (3, 7)), torch.randn(3, 5)
    h = decoder.initial_state(z, 3)
    trained, h_trained = decoder(tokens, z, h)
    with torch.no_grad():
        inferred, h_inferred = decoder(tokens, z, h)
    torch.testing.assert_close(trained.detach(), inferred, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h_trained.detach(), h_inferred, atol=1e-6, rtol=1e-5)


def test_kernel_tanh_approximation_is_float32_accurate():
    worst = max(abs(fused._kernel.tanh(x / 100) - math.tanh(x / 100)) for x in range(-1200, 1201))
    assert worst < 5e-7
    assert fused._kernel.tanh(1e4) == pytest.approx(1.0, abs=1e-6)
    assert fused._kernel.tanh(-1e4) == pytest.approx(-1.0, abs=1e-6)
