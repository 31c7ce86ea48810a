"""Layers and models with ``device="cuda"`` against the same ones on the CPU.

Runs under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU;
skipped otherwise. Each test builds two copies with identical weights and
seeds (hence identical dropout masks), one per device, and compares outputs,
states and every gradient of ``value_and_vjp``.
"""

import pickle

import numpy as np
import pytest

from numrnn import Sequential
from numrnn.kernels import cuda_status, resolve_device
from numrnn.layers import GRU, LSTM, Bidirectional, Dense, SimpleRNN

_AVAILABLE, _SIMULATOR, _REASON = cuda_status()
pytestmark = pytest.mark.skipif(
    not _AVAILABLE, reason=f"the CUDA kernels cannot run here: {_REASON}"
)

B, T, F = 4, 3, 2
MASK = np.array(
    [[True, True, True], [False, False, False], [False, True, False], [True, False, True]]
)
# float32: summation orders differ (tiled GEMM against BLAS), and the CPU float32
# kernels may use approximate tanh/sigmoid (error below 4e-7 per evaluation).
TOL = {"float32": {"rtol": 1e-4, "atol": 1e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


def _pair(make, dtype):
    """The same layer (or model) on the CPU and on CUDA, with equal weights."""
    cpu, gpu = make("cpu"), make("cuda")
    for model in (cpu, gpu):
        model.build((None, T, F))
    gpu.set_weights(cpu.get_weights())
    return cpu, gpu


def _compare(cpu, gpu, x, dtype, seed, **kwargs):
    rng = np.random.default_rng(seed)
    cotangents = {}

    def cotangent_fn(outputs):
        outs = outputs if isinstance(outputs, list) else [outputs]
        if "value" not in cotangents:
            cotangents["value"] = [rng.standard_normal(o.shape).astype(dtype) for o in outs]
        return cotangents["value"]

    out_cpu, grads_cpu = cpu.value_and_vjp(x, cotangent_fn, **kwargs)
    out_gpu, grads_gpu = gpu.value_and_vjp(x, cotangent_fn, **kwargs)
    tol = TOL[dtype]
    outs_cpu = out_cpu if isinstance(out_cpu, list) else [out_cpu]
    outs_gpu = out_gpu if isinstance(out_gpu, list) else [out_gpu]
    assert len(outs_cpu) == len(outs_gpu)
    for i, (a, b) in enumerate(zip(outs_cpu, outs_gpu)):
        assert isinstance(b, np.ndarray) and b.dtype == np.dtype(dtype)
        np.testing.assert_allclose(b, a, err_msg=f"output {i}", **tol)
    weight_cpu, input_cpu, state_cpu = grads_cpu
    weight_gpu, input_gpu, state_gpu = grads_gpu
    assert len(weight_cpu) == len(weight_gpu)
    for i, (a, b) in enumerate(zip(weight_cpu, weight_gpu)):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, err_msg=f"weight gradient {i}", **tol)
    np.testing.assert_allclose(input_gpu, input_cpu, err_msg="input gradient", **tol)
    if state_cpu is None:
        assert state_gpu is None
    else:
        for i, (a, b) in enumerate(zip(state_cpu, state_gpu)):
            np.testing.assert_allclose(b, a, err_msg=f"initial-state gradient {i}", **tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lstm_with_dropout_states_and_mask(dtype, small_blocks):
    def make(device):
        return LSTM(3, dropout=0.25, recurrent_dropout=0.3, return_sequences=True,
                    return_state=True, seed=11, dtype=dtype, device=device)  # fmt: skip

    cpu, gpu = _pair(make, dtype)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, F)).astype(dtype)
    states = [rng.standard_normal((B, 3)).astype(dtype) for _ in range(2)]
    _compare(cpu, gpu, x, dtype, seed=1, mask=MASK, initial_state=states, training=True)


def test_gru_reset_before_without_bias_backwards(small_blocks):
    def make(device):
        return GRU(3, reset_after=False, use_bias=False, go_backwards=True, activation="relu",
                   seed=2, device=device)  # fmt: skip

    cpu, gpu = _pair(make, "float32")
    x = np.random.default_rng(1).standard_normal((B, T, F)).astype("float32")
    _compare(cpu, gpu, x, "float32", seed=2, mask=MASK)


def test_sequential_with_bidirectional_on_cuda(small_blocks):
    def make(device):
        return Sequential(
            [Bidirectional(SimpleRNN(3, return_sequences=True, seed=4, dtype="float64"),
                           merge_mode="sum"),
             GRU(2, seed=5, dtype="float64"), Dense(2, seed=6, dtype="float64")],
            device=device,
        )  # fmt: skip

    cpu, gpu = _pair(make, "float64")
    assert gpu.layers[0].forward_layer.device == "cuda"
    assert gpu.layers[0].backward_layer.device == "cuda"
    x = np.random.default_rng(2).standard_normal((B, T, F))
    _compare(cpu, gpu, x, "float64", seed=3, mask=MASK)


def test_stateful_layer_carries_states_on_cuda(small_blocks):
    def make(device):
        return LSTM(3, stateful=True, seed=7, device=device)

    cpu, gpu = _pair(make, "float32")
    rng = np.random.default_rng(3)
    for _ in range(2):
        x = rng.standard_normal((B, T, F)).astype("float32")
        np.testing.assert_allclose(gpu(x), cpu(x), **TOL["float32"])
        for a, b in zip(cpu.states, gpu.states):
            np.testing.assert_allclose(b, a, **TOL["float32"])
    # the layer keeps no device arrays between calls: it pickles
    clone = pickle.loads(pickle.dumps(gpu))
    assert clone.device == "cuda"


def test_auto_device_resolution():
    expected = "cpu" if _SIMULATOR else "cuda"
    assert resolve_device("auto") == expected
    assert resolve_device("cuda") == "cuda"
