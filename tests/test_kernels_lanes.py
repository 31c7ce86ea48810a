"""Elementwise row maps as explicit vector code (``numrnn.kernels.cpu._lanes``),
and the cache-line aligned buffers that the kernels write.

A map is checked against numpy for counts below, at and across the vector
width (the last partial vector runs under a lane mask), in place and at
offsets, with the elements around each row left untouched. Then the LSTM
cells that use it, at unit counts that leave a partial vector: backward
gradients by float64 finite differences and float32 against float64, output
cotangent views, and the float32 forward and outputs-only cells against the
reference; all with masked samples.
"""

import numpy as np
import pytest
from numba import njit

from numrnn import layers
from numrnn.kernels.cpu import _lanes

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    import gradcheck as gc
    import reference as ref
except ImportError:  # tests is a package
    from tests import gradcheck as gc
    from tests import reference as ref

DTYPES = ["float32", "float64"]


def _body(v, reads):
    a, b, c = reads
    return v.fma(a, b, c), v.sub(a, v.mul(b, v.const(2.0))), v.add(a, c)


_MAP = _lanes.row_map(_body, 3)


@njit(cache=False)
def _apply(count, a, b, c, out, a_at, b_at, c_at, out_at):
    # reads a, b, c; writes fma(a, b, c) in place over a, a - 2 b into out
    # and a + c into the second row of out
    _MAP(count, (a, b, c, a, out, out), (a_at, b_at, c_at, a_at, out_at, out_at + count + 1))


def _lanes_count(dtype):
    return _lanes.VECTOR_BYTES // np.dtype(dtype).itemsize


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extra", [0, 1, -1, "width", "width+1", "2width+3"])
def test_row_map_matches_numpy_around_the_vector_width(dtype, extra):
    width = _lanes_count(dtype)
    count = {"width": width, "width+1": width + 1, "2width+3": 2 * width + 3}.get(extra)
    if count is None:
        count = {0: 0, 1: 1, -1: width - 1}[extra]
    rng = np.random.default_rng(count)
    size = 2 * count + 9
    a = rng.normal(size=size).astype(dtype)
    b = rng.normal(size=(2, size)).astype(dtype)
    c = rng.normal(size=size).astype(dtype)
    out = np.full((2, size), 7.0, dtype=dtype)
    a0, b0, c0, out0 = a.copy(), b.copy(), c.copy(), out.copy()
    a_at, b_at, c_at, out_at = 3, size + 2, 5, 1
    _apply(count, a, b, c, out, a_at, b_at, c_at, out_at)

    ra = a0[a_at : a_at + count].astype(np.float64)
    rb = b0.reshape(-1)[b_at : b_at + count].astype(np.float64)
    rc = c0[c_at : c_at + count].astype(np.float64)
    tol = 1e-6 if dtype == "float32" else 1e-14
    want_a, want_out = a0.copy(), out0.copy().reshape(-1)
    want_a[a_at : a_at + count] = ra * rb + rc
    want_out[out_at : out_at + count] = ra - 2 * rb
    second = out_at + count + 1
    want_out[second : second + count] = ra + rc
    # the rows' neighbours (the masked lanes of the last vector) are untouched
    np.testing.assert_allclose(a, want_a, rtol=tol, atol=tol)
    np.testing.assert_allclose(out.reshape(-1), want_out, rtol=tol, atol=tol)
    np.testing.assert_array_equal(b, b0)
    np.testing.assert_array_equal(c, c0)


def test_row_map_refuses_rows_of_mixed_dtypes():
    a = np.zeros(4, dtype=np.float32)
    b = np.zeros(4, dtype=np.float64)
    with pytest.raises(Exception, match="(?i)typing|implementation"):
        _apply(4, a, b, a, np.zeros((2, 9), dtype=np.float32), 0, 0, 0, 0)


# -- the LSTM backward cells --------------------------------------------------

B, T, F = 3, 4, 2
MASK = np.ones((B, T), dtype=bool)
MASK[1, 1:3] = False
MASK[2, 0] = False


def _units(dtype):
    # a full vector and a partial one
    return _lanes_count(dtype) + 3


def _layer(dtype, units, weights, **options):
    layer = layers.LSTM(units, dtype=dtype, seed=3, return_sequences=True, **options)
    layer.build((None, T, F))
    layer.set_weights([w.astype(dtype) for w in weights])
    return layer


@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm_backward_cells_with_a_partial_vector_by_finite_differences(go_backwards):
    units = _units("float64")
    rng = np.random.default_rng(5)
    weights = ref.random_recurrent_weights(rng, "LSTM", F, units, dtype=np.float64)
    layer = _layer("float64", units, weights, go_backwards=go_backwards)
    x = rng.normal(size=(B, T, F))
    init = [rng.normal(scale=0.5, size=(B, units)) for _ in range(2)]
    cots = [rng.normal(size=(B, T, units))]
    gc.check_layer_vjp(layer, weights, x, cots, mask=MASK, initial_state=init)


def test_lstm_backward_cells_float32_match_float64():
    units = _units("float32")
    rng = np.random.default_rng(6)
    weights = ref.random_recurrent_weights(rng, "LSTM", F, units, dtype=np.float64)
    x = rng.normal(size=(B, T, F))
    init = [rng.normal(scale=0.5, size=(B, units)) for _ in range(2)]
    cots = [rng.normal(size=(B, T, units))]
    grads = {}
    for dtype in DTYPES:
        layer = _layer(dtype, units, weights)
        weight_grads, input_grad, state_grads = layer.vjp(
            x.astype(dtype), [c.astype(dtype) for c in cots], mask=MASK,
            initial_state=[s.astype(dtype) for s in init],
        )  # fmt: skip
        grads[dtype] = list(weight_grads) + [input_grad] + list(state_grads)
    for got, want in zip(grads["float32"], grads["float64"], strict=True):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


# -- cache-line aligned workspace buffers ----------------------------------------


@pytest.mark.parametrize("shape", [0, 7, (3, 5), (4, 2, 33)])
@pytest.mark.parametrize("dtype", ["float32", "float64", "bool"])
def test_aligned_empty_starts_on_a_cache_line(shape, dtype):
    from numrnn.kernels import CACHE_LINE, aligned_empty

    for _ in range(8):  # several allocations: numpy alone gives 16-byte alignment
        arr = aligned_empty(shape, dtype)
        # (an empty array has no data to align)
        assert arr.size == 0 or arr.ctypes.data % CACHE_LINE == 0
        assert arr.shape == ((shape,) if isinstance(shape, int) else shape)
        assert arr.dtype == np.dtype(dtype)
        assert arr.flags.c_contiguous and arr.flags.writeable
        arr[...] = 1
        assert np.all(arr == 1)


def test_lstm_kernel_buffers_are_aligned_and_reused():
    from numrnn.kernels import CACHE_LINE
    from numrnn.layers import recurrent

    layer = layers.LSTM(5, return_sequences=True, seed=0)
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype("float32")
    layer.vjp(x, [np.ones((3, 4, 5), dtype="float32")])
    arrays = dict(recurrent._WORKSPACES[layer].arrays)
    assert {name for name, _ in arrays} >= {"gates", "d_gates"}
    assert all(a.ctypes.data % CACHE_LINE == 0 for a in arrays.values())
    layer.vjp(x, [np.ones((3, 4, 5), dtype="float32")])
    again = recurrent._WORKSPACES[layer].arrays
    assert all(again[k] is a for k, a in arrays.items())


@pytest.mark.parametrize("view", ["rows apart", "columns apart", "reversed steps"])
def test_lstm_backward_reads_output_cotangent_views(view):
    # the cells read d_out rows at their strides (a Bidirectional half, a
    # reversed sequence) or from a contiguous copy (columns apart)
    from numrnn.kernels.cpu import lstm

    units = _units("float32")
    layer = _layer("float32", units, ref.random_recurrent_weights(
        np.random.default_rng(7), "LSTM", F, units, dtype=np.float64))  # fmt: skip
    rng = np.random.default_rng(8)
    x = rng.normal(size=(B, T, F)).astype("float32")
    cot = rng.normal(size=(B, T, units)).astype("float32")
    wide = np.zeros((B, T, 2 * units), dtype="float32")
    if view == "rows apart":
        wide[..., :units] = cot
        d_out = wide[..., :units]
    elif view == "columns apart":
        wide[..., ::2] = cot
        d_out = wide[..., ::2]
    else:
        d_out = np.ascontiguousarray(cot[:, ::-1])[:, ::-1]
    np.testing.assert_array_equal(d_out, cot)
    grads = {}
    real = lstm.lstm_backward
    for name, given in (("view", d_out), ("copy", cot)):

        def backward(*args, given=given):
            args = list(args)
            args[13] = given  # d_out
            return real(*args)

        lstm.lstm_backward = backward
        try:
            grads[name] = layer.vjp(x, [np.zeros_like(cot)], mask=MASK)
        finally:
            lstm.lstm_backward = real

    def flat(g):
        weight_grads, input_grad, _ = g
        return [*weight_grads, input_grad]

    assert len(flat(grads["view"])) == 4
    for got, want in zip(flat(grads["view"]), flat(grads["copy"]), strict=True):
        np.testing.assert_array_equal(got, want)


# -- the LSTM forward cells (float32) --------------------------------------------


@pytest.mark.parametrize("units", [5, 16, 19, 37])
@pytest.mark.parametrize("options", [{}, {"go_backwards": True}, {"zero_output_for_mask": True}])
def test_lstm_forward_cells_float32_match_the_reference(units, options):
    # vector code for the float32 cells: below, at and across the vector
    # width, masked samples (computed into scratch rows, states held); the
    # training forward and the outputs-only call
    rng = np.random.default_rng(units)
    weights = ref.random_recurrent_weights(rng, "LSTM", F, units, dtype=np.float64)
    layer = _layer("float32", units, weights, return_state=True, **options)
    x = rng.normal(size=(B, T, F))
    init = [rng.normal(scale=0.5, size=(B, units)) for _ in range(2)]
    want = ref.recurrent_layer(
        "LSTM", x, weights, True, True, mask=MASK, initial_state=init,
        go_backwards=options.get("go_backwards", False),
        zero_output_for_mask=options.get("zero_output_for_mask", False),
    )  # fmt: skip
    x32, init32 = x.astype("float32"), [s.astype("float32") for s in init]
    trained, _ = layer.value_and_vjp(
        x32, lambda outs: [np.zeros_like(o) for o in outs], mask=MASK, initial_state=init32
    )
    inferred = layer(x32, mask=MASK, initial_state=init32)
    for got in (trained, inferred):
        for g, w in zip(got, want, strict=True):
            assert g.dtype == np.float32
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=2e-6)
