"""CPU kernel internals: fast float32 activations, the BLAS wrapper, the
single-step streaming kernels and the layers' buffer reuse.

The recurrences themselves are checked against the numpy reference
(``test_recurrent_reference.py``), finite differences
(``test_layers_gradcheck.py``) and Keras (``test_keras_parity.py``).
"""

import math

import numpy as np
import pytest
from numba import njit

from numrnn import Sequential, layers
from numrnn.kernels import _math
from numrnn.kernels.cpu import _common

ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"]


# -- fast float32 tanh / sigmoid -------------------------------------------------

_tanh = njit(_math.tanh_f32)
_sigmoid = njit(_math.sigmoid_f32)


@njit
def _apply(fn_code, x, out):
    for i in range(x.shape[0]):
        if fn_code == 0:
            out[i] = _common.tanh_t(x[i])
        else:
            out[i] = _common.sigmoid_t(x[i])


def test_fast_tanh_and_sigmoid_are_accurate_float32():
    x = np.linspace(-40, 40, 400_001).astype(np.float32)
    exact = x.astype(np.float64)
    out = np.empty_like(x)
    _apply(0, x, out)
    assert np.abs(out - np.tanh(exact)).max() < 4e-7
    # relative accuracy near zero (tanh(x) ~ x)
    small = np.abs(exact) < 1e-2
    rel = np.abs(out[small] - np.tanh(exact[small])) / np.maximum(np.abs(exact[small]), 1e-30)
    assert rel.max() < 4e-7
    _apply(1, x, out)
    assert np.abs(out - 1.0 / (1.0 + np.exp(-exact))).max() < 2e-7
    assert out.dtype == np.float32


def test_fast_tanh_is_odd_saturates_and_propagates_nan():
    for v in (0.1, 1.0, 3.7, 8.9, 12.0):
        a = _tanh(np.float32(v))
        assert _tanh(np.float32(-v)) == -a
        assert abs(a) <= 1.0
    assert _tanh(np.float32(0.0)) == 0.0
    assert abs(_tanh(np.float32(np.inf)) - 1.0) < 2e-7
    assert math.isnan(_tanh(np.float32(np.nan)))
    assert math.isnan(_sigmoid(np.float32(np.nan)))
    assert 0.0 <= _sigmoid(np.float32(-np.inf)) < 1e-7


def test_float64_activations_are_exact():
    # libm (not the float32 approximation): within an ulp or two of numpy's
    x = np.linspace(-20, 20, 10_001)
    out = np.empty_like(x)
    _apply(0, x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=1e-15, atol=0)
    _apply(1, x, out)
    np.testing.assert_allclose(out, 1.0 / (1.0 + np.exp(-x)), rtol=1e-15, atol=0)


# -- BLAS wrapper ----------------------------------------------------------------


@njit
def _gemm(a, trans_a, b, trans_b, c, accumulate):
    _common.gemm(a, trans_a, b, trans_b, c, accumulate)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_gemm_on_strided_views(dtype, trans_a, trans_b, accumulate):
    rng = np.random.default_rng(0)
    m, n, k = 5, 7, 3
    # operands are column blocks of wider arrays: row strides differ from widths
    a_full = rng.normal(size=(k if trans_a else m, 11)).astype(dtype)
    b_full = rng.normal(size=(n if trans_b else k, 13)).astype(dtype)
    a = a_full[:, 2 : 2 + (m if trans_a else k)]
    b = b_full[:, 1 : 1 + (k if trans_b else n)]
    c_full = rng.normal(size=(m, 10)).astype(dtype)
    before = c_full.copy()
    c = c_full[:, 3 : 3 + n]
    _gemm(a, trans_a, b, trans_b, c, accumulate)
    expected = (a.T if trans_a else a) @ (b.T if trans_b else b)
    if accumulate:
        expected = expected + before[:, 3 : 3 + n]
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)
    # columns outside the view are untouched
    np.testing.assert_array_equal(c_full[:, :3], before[:, :3])
    np.testing.assert_array_equal(c_full[:, 3 + n :], before[:, 3 + n :])


def test_gemm_with_zero_depth():
    a = np.zeros((3, 0))
    b = np.zeros((0, 4))
    c = np.ones((3, 4))
    _gemm(a, False, b, False, c, True)
    np.testing.assert_array_equal(c, 1.0)
    _gemm(a, False, b, False, c, False)
    np.testing.assert_array_equal(c, 0.0)


# -- streaming single-step path ---------------------------------------------------


def _cell(name, **kwargs):
    if name == "GRU_v1":
        return layers.GRU(reset_after=False, **kwargs)
    return getattr(layers, name)(**kwargs)


def _count_kernel_steps(layer, monkeypatch):
    """A list that grows by one at each call of ``layer``'s single-step kernel."""
    calls = []
    step = layer._kernel_step
    monkeypatch.setattr(layer, "_kernel_step", lambda *a: calls.append(1) or step(*a))
    return calls


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU", "GRU_v1"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
# 37 units: whole vectors and a partial one in both dtypes (the LSTM's tanh/sigmoid
# cells are vector code)
@pytest.mark.parametrize("units", [4, 37])
def test_step_by_step_matches_whole_sequence(cell, activation, dtype, units, monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 6, 2)).astype(dtype)
    kwargs = {"activation": activation}
    if cell != "SimpleRNN":
        kwargs["recurrent_activation"] = "sigmoid" if activation == "tanh" else activation
    full = _cell(cell, units=units, return_sequences=True, seed=3, dtype=dtype, **kwargs)
    whole = full(x)
    stream = _cell(
        cell, units=units, return_sequences=True, stateful=True, seed=3, dtype=dtype, **kwargs
    )
    stream.build(x.shape)
    stream.set_weights(full.get_weights())
    stream.reset_states()
    kernel_steps = _count_kernel_steps(stream, monkeypatch)
    steps = [stream(np.ascontiguousarray(x[:, t : t + 1])) for t in range(x.shape[1])]
    assert len(kernel_steps) == x.shape[1]  # every step took the single-step kernel
    tol = 1e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(np.concatenate(steps, axis=1), whole, rtol=tol, atol=tol)
    assert steps[0].shape == (3, 1, units) and steps[0].dtype == np.dtype(dtype)


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU"])
def test_a_sequential_model_steps_through_the_single_step_kernel(cell, monkeypatch):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 5, 3)).astype("float32")
    whole = Sequential(
        [_cell(cell, units=6, return_sequences=True, seed=1), layers.Dense(2, seed=2)]
    )
    expected = whole(x)
    stream = Sequential(
        [
            _cell(cell, units=6, return_sequences=True, stateful=True, seed=1),
            layers.Dense(2, seed=2),
        ]
    )
    stream.build(x.shape)
    stream.set_weights(whole.get_weights())
    recurrent = stream.layers[0]
    kernel_steps = _count_kernel_steps(recurrent, monkeypatch)
    got = np.concatenate([stream(np.ascontiguousarray(x[:, t : t + 1])) for t in range(5)], axis=1)
    assert len(kernel_steps) == 5
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # a forward pass that keeps caches for a backward pass takes the full path
    stream.reset_states()
    stream.vjp(x[:, :1].copy(), [np.ones((2, 1, 2), dtype="float32")])
    assert len(kernel_steps) == 5


def test_stream_step_converts_slices_and_other_dtypes_as_the_full_path(monkeypatch):
    rng = np.random.default_rng(5)
    series = rng.normal(size=(3, 7, 2))  # float64 data, sliced step by step below
    whole = layers.LSTM(5, return_sequences=True, seed=2)(series.astype("float32"))
    stream = layers.LSTM(5, return_sequences=True, stateful=True, seed=2)
    stream.build(series.shape)
    kernel_steps = _count_kernel_steps(stream, monkeypatch)
    got = [stream(series[:, t : t + 1]) for t in range(7)]  # neither C-contiguous nor float32
    assert len(kernel_steps) == 7
    assert got[0].dtype == np.float32
    np.testing.assert_allclose(np.concatenate(got, axis=1), whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="numeric"):
        stream(np.full((3, 1, 2), "a"))


def test_stream_step_returns_state_copies_and_updates_states():
    layer = layers.LSTM(3, stateful=True, return_state=True, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 1, 4)).astype("float32")
    layer(x)  # creates the states through the full path
    out, h, c = layer(x)  # the single-step path
    np.testing.assert_array_equal(out, h)
    np.testing.assert_array_equal(h, layer.states[0])
    np.testing.assert_array_equal(c, layer.states[1])
    h[...] = 99.0  # a copy: the layer's state is not affected
    assert not np.any(layer.states[0] == 99.0)


def test_stream_step_keeps_the_full_path_errors():
    layer = layers.LSTM(3, stateful=True, seed=0)
    x = np.zeros((2, 1, 4), dtype="float32")
    layer(x)
    before = [s.copy() for s in layer.states]
    bad = x.copy()
    bad[0, 0, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        layer(bad)
    with pytest.raises(ValueError, match="batch size"):
        layer(np.zeros((3, 1, 4), dtype="float32"))
    for s, b in zip(layer.states, before):
        np.testing.assert_array_equal(s, b)


# -- buffer reuse -----------------------------------------------------------------


@pytest.mark.parametrize("cell", ["SimpleRNN", "LSTM", "GRU", "GRU_v1"])
def test_reused_buffers_never_clobber_a_live_cache(cell):
    """A forward call made while another call's cache is alive (here inside the
    cotangent function, between a forward and its backward pass) must not
    overwrite that cache."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 5, 3))
    other = rng.normal(size=(4, 5, 3))
    layer = _cell(cell, units=3, return_sequences=True, seed=1, dtype="float64")
    cot = rng.normal(size=(4, 5, 3))
    expected = layer.vjp(x, [cot])

    def cotangent(outputs):
        layer(other)  # reuses buffers only if no live cache holds them
        layer.vjp(other, [cot])
        return [cot]

    _, got = layer.value_and_vjp(x, cotangent)
    for g, e in zip(got[0], expected[0]):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[1], expected[1], rtol=1e-12, atol=1e-12)


def test_returned_sequences_are_fresh_arrays():
    layer = layers.LSTM(3, return_sequences=True, seed=0)
    x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype("float32")
    first = layer(x)
    kept = first.copy()
    second = layer(2 * x)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)
    last = layers.LSTM(3, seed=0)
    a = last(x)
    b = last(2 * x)
    assert not np.shares_memory(a, b)
