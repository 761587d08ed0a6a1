"""`--device` for sample, evaluate and score: one resolve_device, CPU draws, clear errors for a missing GPU."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from molgen.cli import main
from molgen.device import ieee_fp32, resolve_device
from molgen.errors import MolgenError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the messages of a machine without a GPU")


def test_auto_is_cuda_when_torch_finds_a_gpu_else_cpu():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device() == resolve_device("auto")


@NO_CUDA
def test_auto_is_the_cpu_on_this_machine():
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name", ["cpu", " CPU ", torch.device("cpu")])
def test_cpu_names(name):
    assert resolve_device(name) == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "mps", "cpu:0", ""])
def test_unknown_device_names_are_user_errors(name):
    with pytest.raises(MolgenError) as err:
        resolve_device(name)
    assert str(err.value) == f"device must be auto, cpu, cuda or cuda:N, not {name!r}"


@NO_CUDA
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:3"])
def test_an_unavailable_cuda_device_is_named(name):
    with pytest.raises(MolgenError) as err:
        resolve_device(name)
    assert str(err.value) == (
        f"device {name!r} is not available: torch {torch.__version__} sees no CUDA GPU (use cpu or auto)"
    )


def test_a_cuda_index_past_the_last_gpu_is_named():  # on any machine
    with pytest.raises(MolgenError, match=r"^device 'cuda:99' is not available: torch "):
        resolve_device("cuda:99")


def test_ieee_fp32_turns_off_tf32_in_cudnn_on_cuda_only():
    saved = torch.backends.cudnn.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = True
        with ieee_fp32(torch.device("cpu")):
            assert torch.backends.cudnn.allow_tf32
        with ieee_fp32(torch.device("cuda")):  # only flips a flag: runs without a GPU
            assert not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32 = saved


@NO_CUDA
@pytest.mark.parametrize("verb", ["sample", "evaluate", "score"])
def test_every_verb_refuses_a_missing_gpu_on_one_line(verb, tmp_path, capsys):
    argv = {
        "sample": ["sample", "-n", "5", "--out", str(tmp_path / "lib.csv")],
        "evaluate": ["evaluate", "--model", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.csv")],
        "score": ["score", str(tmp_path / "gen.smi")],
    }[verb]
    assert main([*argv, "--device", "cuda:1"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"molgen {verb}: error: device 'cuda:1' is not available: torch {torch.__version__} sees no CUDA GPU "
        "(use cpu or auto)\n"
    )
    assert list(tmp_path.iterdir()) == []  # refused before any work


def test_chemnet_on_the_cpu_device_is_the_default():
    from molgen.metrics.fcd import chemnet_activations, chemnet_tokens

    tokens = np.stack([chemnet_tokens(s) for s in ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]])
    default = chemnet_activations(tokens, batch_size=2)
    assert np.array_equal(chemnet_activations(tokens, batch_size=2, device="cpu"), default)
    assert np.array_equal(chemnet_activations(tokens, batch_size=2, device=torch.device("cpu")), default)
