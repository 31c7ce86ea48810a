"""The ``device=`` argument: validation, resolution, errors and propagation.

These tests run in every mode (plain, simulator, GPU): the resolution cases
replace ``numrnn.kernels.cuda_status`` with fixed answers, and the one test
that looks at the real environment adapts to it.
"""

import importlib.util
import pickle

import numpy as np
import pytest

import numrnn.kernels as kernels
from numrnn import Sequential
from numrnn.kernels import DeviceUnavailableError, check_device, resolve_device
from numrnn.layers import GRU, LSTM, Bidirectional, Dense, SimpleRNN, TimeDistributed

NO_GPU = (False, False, "no CUDA GPU or driver was found (test)")
SIMULATOR = (True, True, "numba's CUDA simulator (test)")
GPU = (True, False, "a CUDA GPU (test)")


@pytest.mark.parametrize("value", ["cpu", "CUDA", " Auto "])
def test_check_device_canonicalises(value):
    assert check_device(value) == value.strip().lower()


def test_check_device_rejects_bad_values():
    with pytest.raises(ValueError, match="one of 'cpu', 'cuda' or 'auto'; got 'gpu'"):
        check_device("gpu")
    with pytest.raises(TypeError, match="one of 'cpu', 'cuda' or 'auto'; got 0"):
        check_device(0)


def test_layers_and_models_validate_device_at_construction():
    with pytest.raises(ValueError, match="device must be one of"):
        LSTM(2, device="gpu")
    with pytest.raises(ValueError, match="device must be one of"):
        Sequential([LSTM(2)], device="tpu")
    layer = SimpleRNN(2)
    with pytest.raises(TypeError, match="device must be one of"):
        layer.device = None
    assert layer.device == "cpu"


@pytest.mark.parametrize("status", [NO_GPU, SIMULATOR, GPU], ids=["none", "sim", "gpu"])
def test_resolution(monkeypatch, status):
    monkeypatch.setattr(kernels, "cuda_status", lambda: status)
    available, simulator, _ = status
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if available and not simulator else "cpu")
    if available:
        assert resolve_device("cuda") == "cuda"
    else:
        with pytest.raises(DeviceUnavailableError, match="no CUDA GPU or driver was found"):
            resolve_device("cuda")


def test_cuda_without_gpu_raises_and_auto_falls_back(monkeypatch):
    monkeypatch.setattr(kernels, "cuda_status", lambda: NO_GPU)
    x = np.random.default_rng(0).standard_normal((2, 3, 2)).astype("float32")
    cpu = LSTM(3, seed=1)
    auto = LSTM(3, seed=1, device="auto")
    gpu = LSTM(3, seed=1, device="cuda")
    expected = cpu(x)
    np.testing.assert_array_equal(auto(x), expected)
    with pytest.raises(DeviceUnavailableError, match=r"device='cuda' cannot run here"):
        gpu(x)
    model = Sequential([GRU(2, seed=2), Dense(1, seed=3)], device="cuda")
    with pytest.raises(DeviceUnavailableError, match="Use device='cpu'"):
        model(x)
    model.device = "auto"
    assert model(x).shape == (2, 1)


def test_missing_numba_cuda_is_named(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        if name == "numba_cuda":
            return None
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    available, simulator, reason = kernels._probe_cuda()
    assert not available and not simulator
    assert "numba-cuda is not installed" in reason and "numrnn[cuda]" in reason
    monkeypatch.setattr(kernels, "cuda_status", lambda: (available, simulator, reason))
    with pytest.raises(DeviceUnavailableError, match="numba-cuda is not installed"):
        resolve_device("cuda")
    assert resolve_device("auto") == "cpu"


def test_real_environment():
    """Where CUDA cannot run (no numba-cuda or no GPU) device='cuda' says why."""
    available, simulator, reason = kernels.cuda_status()
    if available:
        pytest.skip(f"CUDA can run here ({reason}); covered by test_cuda_layers.py")
    layer = SimpleRNN(2, device="cuda")
    x = np.zeros((1, 2, 1), dtype="float32")
    with pytest.raises(DeviceUnavailableError) as info:
        layer(x)
    assert reason in str(info.value)
    assert resolve_device("auto") == "cpu"
    assert LSTM(2, device="auto")(x).shape == (1, 2)


def test_sequential_sets_device_on_every_recurrent_layer():
    model = Sequential(
        [Bidirectional(LSTM(2, return_sequences=True)), TimeDistributed(Dense(2)), GRU(2)],
        device="AUTO",
    )
    assert model.device == "auto"
    bidirectional, _, gru = model.layers
    assert bidirectional.forward_layer.device == "auto"
    assert bidirectional.backward_layer.device == "auto"
    assert gru.device == "auto"
    later = SimpleRNN(2)
    model.add(later)
    assert later.device == "auto"
    model.device = "cpu"
    assert {bidirectional.device, gru.device, later.device} == {"cpu"}
    untouched = Sequential([LSTM(2, device="cuda")])
    assert untouched.device is None and untouched.layers[0].device == "cuda"


def test_device_survives_config_clone_and_pickle():
    layer = GRU(2, reset_after=False, device="cuda")
    assert layer.get_config()["device"] == "cuda"
    assert GRU(**layer.get_config()).device == "cuda"
    wrapped = Bidirectional(layer)
    assert wrapped.device == "cuda" and wrapped.backward_layer.device == "cuda"
    assert Bidirectional(layer, device="cpu").backward_layer.device == "cpu"
    assert pickle.loads(pickle.dumps(layer)).device == "cuda"
