"""CUDA kernels against the CPU kernels: outputs, caches, final states, gradients.

Runs where the CUDA kernels can run: under numba's simulator
(``NUMBA_ENABLE_CUDASIM=1``) or on a GPU; skipped otherwise. Every case
calls the same launcher of ``numrnn.kernels.cpu`` and ``numrnn.kernels.cuda``
on the same inputs and compares every array the kernels write. Thread blocks
are ``2 x 2`` and GEMM tiles ``2 x 2`` so that the tiny shapes (batch 4,
units 3) span several blocks in both grid dimensions, with partial blocks.
"""

import numpy as np
import pytest

from numrnn.kernels import _math, cuda_status

_AVAILABLE, _SIMULATOR, _REASON = cuda_status()
pytestmark = pytest.mark.skipif(
    not _AVAILABLE, reason=f"the CUDA kernels cannot run here: {_REASON}"
)

B, T, F, U = 4, 3, 2, 3
# row 0 all kept, row 1 fully masked, row 2 masked at both ends (the first
# output is a masked one), row 3 masked in the middle
MASK = np.array(
    [[True, True, True], [False, False, False], [False, True, False], [True, False, True]]
)
# float32: summation orders differ (tiled GEMM against BLAS), and the CPU float32
# kernels may use approximate tanh/sigmoid (error below 4e-7 per evaluation).
TOL = {"float32": {"rtol": 1e-4, "atol": 1e-5}, "float64": {"rtol": 1e-10, "atol": 1e-12}}
GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3}
MODULES = {"simple_rnn": "simple_rnn", "lstm": "lstm", "gru": "gru", "gru_reset_before": "gru"}
FORWARD = {
    "simple_rnn": "simple_rnn_forward",
    "lstm": "lstm_forward",
    "gru": "gru_forward",
    "gru_reset_before": "gru_forward_reset_before",
}
BACKWARD = {
    "simple_rnn": "simple_rnn_backward",
    "lstm": "lstm_backward",
    "gru": "gru_backward",
    "gru_reset_before": "gru_backward_reset_before",
}
# cell, activation, recurrent activation, go_backwards, zero_output_for_mask,
# recurrent dropout (None: h_used aliases h_prev; "shared": one (B, U) mask;
# "per_gate": a (B, G*U) mask and a (G*U, G*U) recurrent kernel)
CASES = [
    ("simple_rnn", "tanh", None, False, False, None),
    ("simple_rnn", "sigmoid", None, True, False, "shared"),
    ("simple_rnn", "hard_sigmoid", None, False, True, None),
    ("simple_rnn", "relu", None, True, True, "shared"),
    ("simple_rnn", "linear", None, False, False, "shared"),
    ("lstm", "tanh", "sigmoid", False, False, None),
    ("lstm", "relu", "hard_sigmoid", True, True, "shared"),
    ("lstm", "linear", "tanh", True, False, "per_gate"),
    ("gru", "tanh", "sigmoid", False, False, None),
    ("gru", "hard_sigmoid", "relu", True, False, "per_gate"),
    ("gru", "sigmoid", "linear", False, True, "shared"),
    ("gru_reset_before", "tanh", "sigmoid", False, False, None),
    ("gru_reset_before", "relu", "hard_sigmoid", True, True, "shared"),
    ("gru_reset_before", "linear", "sigmoid", False, False, "per_gate"),
]


def _case_id(case):
    cell, act, rec_act, backwards, zero_out, dropout = case
    parts = [cell, act, rec_act or "", "back" if backwards else "fwd"]
    parts += ["zero_out"] if zero_out else []
    parts += [dropout] if dropout else []
    return "-".join(p for p in parts if p)


def _inputs(cell, dropout, dtype, seed):
    rng = np.random.default_rng(seed)
    n_gates = GATES[cell]
    width = n_gates * U if dropout == "per_gate" else U

    def rand(*shape, scale=1.0):
        return np.ascontiguousarray(rng.standard_normal(shape) * scale, dtype=dtype)

    inputs = {
        "x": rand(B, T, F),
        "kernel": rand(F, n_gates * U, scale=0.6),
        "recurrent_kernel": rand(width, n_gates * U, scale=0.6),
        "bias": rand(2, n_gates * U, scale=0.3) if cell == "gru" else rand(n_gates * U, scale=0.3),
        "mask": MASK.copy(),
        "h0": rand(B, U, scale=0.5),
        "c0": rand(B, U, scale=0.5),
        "d_out": rand(B, T, U),
        "d_h_final": rand(B, U),
        "d_c_final": rand(B, U),
    }
    if dropout is None:
        inputs["rec_mask"] = np.ones((B, U), dtype=dtype)
    else:
        keep = rng.random((B, width)) >= 0.3
        inputs["rec_mask"] = np.ascontiguousarray(keep / 0.7, dtype=dtype)
    return inputs, width


# the caches (and the backward's gate-gradient work space) that a kernel
# module keeps time-major, (T, B, .), when its TIME_MAJOR is set
TIME_MAJOR_NAMES = ("gates", "h_prev", "h_used", "c_prev", "c_act", "d_gates")


def _time_major(module):
    return getattr(module, "TIME_MAJOR", False)


def _as_batch_major(buffers, time_major):
    """``buffers`` with every time-major array as a (B, T, .) copy (aliases kept)."""
    if not time_major:
        return buffers
    out = {}
    for name, array in buffers.items():
        out[name] = array.transpose(1, 0, 2).copy() if name in TIME_MAJOR_NAMES else array
    if "h_prev" in buffers and buffers["h_used"] is buffers["h_prev"]:
        out["h_used"] = out["h_prev"]
    return out


def _forward_buffers(cell, width, dtype, alias, time_major=False):
    n_gates = GATES[cell]
    seq = (B, T, U)
    shapes = {"out": seq}
    if cell == "simple_rnn":
        shapes.update(states=seq, h_prev=seq, h_used=(B, T, width), h_final=(B, U))
    elif cell == "lstm":
        steps = (T, B) if time_major else (B, T)
        shapes.update(gates=steps + (n_gates * U,), h_prev=steps + (U,),
                      h_used=steps + (width,), c_prev=steps + (U,), c_act=steps + (U,),
                      h_final=(B, U), c_final=(B, U))  # fmt: skip
    else:
        extra = "rec_h" if cell == "gru" else "r_h"
        shapes.update(gates=(B, T, n_gates * U), h_prev=seq, h_used=(B, T, width))
        shapes[extra] = seq
        shapes["h_final"] = (B, U)
    buffers = {name: np.full(shape, np.nan, dtype=dtype) for name, shape in shapes.items()}
    if alias:  # as the layers do without recurrent dropout
        buffers["h_used"] = buffers["h_prev"]
    return buffers


def _codes(activation, recurrent_activation):
    codes = [_math.ACTIVATION_CODES[activation]]
    if recurrent_activation is not None:
        codes.append(_math.ACTIVATION_CODES[recurrent_activation])
    return codes


def _run_forward(module, cell, inputs, buffers, codes, go_backwards, zero_output_for_mask):
    i = inputs
    head = [i["x"], i["kernel"], i["recurrent_kernel"], i["bias"], i["mask"], i["h0"]]
    if cell == "lstm":
        head.append(i["c0"])
    head.append(i["rec_mask"])
    flags = [*codes, go_backwards, zero_output_for_mask]
    getattr(module, FORWARD[cell])(*head, *flags, *buffers.values())


def _backward_buffers(cell, inputs, dtype, time_major=False):
    x, kernel, rk, bias = (inputs[k] for k in ("x", "kernel", "recurrent_kernel", "bias"))
    n_gates = GATES[cell]
    names = {"simple_rnn": ["d_pre"], "lstm": ["d_gates"], "gru": ["d_gates", "d_rec"],
             "gru_reset_before": ["d_gates"]}[cell]  # fmt: skip
    steps = (T, B) if time_major else (B, T)
    buffers = {name: np.full(steps + (n_gates * U,), np.nan, dtype=dtype) for name in names}
    buffers.update(
        d_x=np.full(x.shape, np.nan, dtype=dtype),
        d_kernel=np.full(kernel.shape, np.nan, dtype=dtype),
        d_recurrent_kernel=np.full(rk.shape, np.nan, dtype=dtype),
        d_bias=np.full(bias.shape, np.nan, dtype=dtype),
        d_h0=np.full((B, U), np.nan, dtype=dtype),
    )
    if cell == "lstm":
        buffers["d_c0"] = np.full((B, U), np.nan, dtype=dtype)
    return buffers


def _run_backward(module, cell, inputs, caches, buffers, codes, go_backwards, zero_out):
    i = inputs
    head = [i["x"], i["kernel"], i["recurrent_kernel"], i["mask"], i["rec_mask"]]
    flags = [*codes, go_backwards, zero_out]
    cache_names = {
        "simple_rnn": ["states", "h_used"],
        "lstm": ["gates", "h_used", "c_prev", "c_act"],
        "gru": ["gates", "h_prev", "h_used", "rec_h"],
        "gru_reset_before": ["gates", "h_prev", "h_used", "r_h"],
    }[cell]
    cots = [i["d_out"], i["d_h_final"]] + ([i["d_c_final"]] if cell == "lstm" else [])
    getattr(module, BACKWARD[cell])(
        *head, *flags, *[caches[n] for n in cache_names], *cots, *buffers.values()
    )


def _modules(cell):
    import importlib

    name = MODULES[cell]
    cpu = importlib.import_module(f"numrnn.kernels.cpu.{name}")
    gpu = importlib.import_module(f"numrnn.kernels.cuda.{name}")
    return cpu, gpu


def _assert_all_close(expected, actual, dtype, what):
    assert expected.keys() == actual.keys()
    for name in expected:
        assert np.isfinite(actual[name]).all(), f"{what}: {name} holds unwritten (NaN) entries"
        np.testing.assert_allclose(
            actual[name], expected[name], err_msg=f"{what}: {name}", **TOL[dtype]
        )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_forward_and_backward_match_cpu(case, dtype, small_blocks):
    cell, activation, recurrent_activation, go_backwards, zero_out, dropout = case
    cpu, gpu = _modules(cell)
    inputs, width = _inputs(cell, dropout, dtype, seed=len(cell) + 7 * CASES.index(case))
    codes = _codes(activation, recurrent_activation)
    alias = dropout is None

    cpu_time_major = _time_major(cpu)
    assert not _time_major(gpu)
    expected = _forward_buffers(cell, width, dtype, alias, cpu_time_major)
    _run_forward(cpu, cell, inputs, expected, codes, go_backwards, zero_out)
    actual = _forward_buffers(cell, width, dtype, alias)
    _run_forward(gpu, cell, inputs, actual, codes, go_backwards, zero_out)
    expected_batch_major = _as_batch_major(expected, cpu_time_major)
    _assert_all_close(expected_batch_major, actual, dtype, f"{FORWARD[cell]}")

    # the backward passes both read the CPU caches (in each one's layout), so
    # they see identical inputs
    grads_cpu = _backward_buffers(cell, inputs, dtype, cpu_time_major)
    _run_backward(cpu, cell, inputs, expected, grads_cpu, codes, go_backwards, zero_out)
    grads_gpu = _backward_buffers(cell, inputs, dtype)
    _run_backward(gpu, cell, inputs, expected_batch_major, grads_gpu, codes, go_backwards,
                  zero_out)  # fmt: skip
    _assert_all_close(
        _as_batch_major(grads_cpu, cpu_time_major), grads_gpu, dtype, f"{BACKWARD[cell]}"
    )
    # the fully masked row outputs zeros, keeps its initial state and passes the
    # final state's cotangent through unchanged
    assert not actual["out"][1].any()
    np.testing.assert_array_equal(actual["h_final"][1], inputs["h0"][1])
    np.testing.assert_array_equal(grads_gpu["d_h0"][1], inputs["d_h_final"][1])
    if cell == "lstm":
        np.testing.assert_array_equal(grads_gpu["d_c0"][1], inputs["d_c_final"][1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("go_backwards", "zero_out"), [(False, False), (True, True)])
def test_lstm_infer_matches_cpu(dtype, go_backwards, zero_out, small_blocks):
    cpu, gpu = _modules("lstm")
    inputs, _ = _inputs("lstm", None, dtype, seed=11)
    codes = _codes("tanh", "sigmoid")
    i = inputs
    head = [i["x"], i["kernel"], i["recurrent_kernel"], i["bias"], i["mask"], i["h0"], i["c0"]]
    results = []
    for module in (cpu, gpu):
        written = {
            "out": np.full((B, T, U), np.nan, dtype=dtype),
            "h_final": np.full((B, U), np.nan, dtype=dtype),
            "c_final": np.full((B, U), np.nan, dtype=dtype),
        }
        module.lstm_infer(*head, *codes, go_backwards, zero_out, *written.values())
        results.append(written)
    _assert_all_close(results[0], results[1], dtype, "lstm_infer")
    np.testing.assert_array_equal(results[1]["h_final"][1], i["h0"][1])  # fully masked row
    with pytest.raises(ValueError, match="tanh/sigmoid cells only"):
        gpu.lstm_infer(*head, *_codes("relu", "sigmoid"), False, False, *results[1].values())


def test_device_arrays_are_used_in_place(small_blocks):
    """Device arguments are written in place and give the host path's numbers."""
    from numba import cuda

    cpu, gpu = _modules("lstm")
    dtype = "float32"
    inputs, width = _inputs("lstm", "shared", dtype, seed=3)
    codes = _codes("tanh", "sigmoid")
    host = _forward_buffers("lstm", width, dtype, alias=False)
    _run_forward(gpu, "lstm", inputs, host, codes, True, False)

    device_inputs = {k: cuda.to_device(v) for k, v in inputs.items()}
    device = {
        k: cuda.to_device(v) for k, v in _forward_buffers("lstm", width, dtype, False).items()
    }
    _run_forward(gpu, "lstm", device_inputs, device, codes, True, False)
    for name, array in device.items():
        np.testing.assert_array_equal(array.copy_to_host(), host[name], err_msg=name)

    grads_host = _backward_buffers("lstm", inputs, dtype)
    _run_backward(gpu, "lstm", inputs, host, grads_host, codes, True, False)
    grads_device = {
        k: cuda.to_device(v) for k, v in _backward_buffers("lstm", inputs, dtype).items()
    }
    _run_backward(gpu, "lstm", device_inputs, device, grads_device, codes, True, False)
    for name, array in grads_device.items():
        np.testing.assert_array_equal(array.copy_to_host(), grads_host[name], err_msg=name)


def _lstm_forward_args(dtype="float32"):
    inputs, width = _inputs("lstm", None, dtype, seed=5)
    buffers = _forward_buffers("lstm", width, dtype, alias=True)
    i = inputs
    return [i["x"], i["kernel"], i["recurrent_kernel"], i["bias"], i["mask"], i["h0"], i["c0"],
            i["rec_mask"], 1, 2, False, False, *buffers.values()]  # fmt: skip


def test_launcher_rejects_mixed_dtypes(small_blocks):
    from numrnn.kernels.cuda import lstm

    args = _lstm_forward_args()
    args[1] = args[1].astype(np.float64)
    with pytest.raises(TypeError, match="kernel is float64, expected float32"):
        lstm.lstm_forward(*args)


def test_launcher_rejects_wrong_shapes(small_blocks):
    from numrnn.kernels.cuda import lstm

    args = _lstm_forward_args()
    args[2] = args[2][:, :-1].copy()
    with pytest.raises(ValueError, match="recurrent_kernel has shape"):
        lstm.lstm_forward(*args)
    args = _lstm_forward_args()
    args[4] = args[4][:, :2].copy()
    with pytest.raises(ValueError, match="mask has shape"):
        lstm.lstm_forward(*args)


def test_launcher_rejects_non_contiguous_arrays(small_blocks):
    from numrnn.kernels.cuda import lstm

    args = _lstm_forward_args()
    args[0] = np.asfortranarray(args[0])
    with pytest.raises(ValueError, match="x must be C-contiguous"):
        lstm.lstm_forward(*args)


def test_launch_config_validation_and_restore():
    from numrnn.kernels.cuda import get_launch_config, launch_config, set_launch_config

    before = get_launch_config()
    with launch_config(block=(4, 1), tile=3) as inside:
        assert inside == {"block": (4, 1), "tile": 3}
    assert get_launch_config() == before
    with pytest.raises(ValueError, match="more than 1024 threads"):
        set_launch_config(block=(64, 32))
    with pytest.raises(ValueError, match="tile must be at most 32"):
        set_launch_config(tile=33)
    with pytest.raises(TypeError, match="positive integer"):
        set_launch_config(tile=2.0)
    assert get_launch_config() == before
