"""Products over packed weight panels (``numrnn.kernels.cpu._packed``).

The tiles run on any CPU (the tests below call them directly); the kernels
use them only where numba compiles for AVX-512 (``_packed.ENABLED``), and
the LSTM tests then run the panels, else the BLAS at the same sizes.

The tiles are checked against float64 numpy products for every row-tile
remainder (6, 4, 2, 1 rows), depths below, at and across the depth block,
one and several panels, full and half panels, and operands that are views
with wider rows. Then the LSTM kernels that use them: sizes where the
panels run (float64: 32 units for both the forward product and the
backward's transposed one, 16 for the backward's over half panels;
float32: 64 and 32) are compared with the plain-numpy reference, checked by
finite differences, and split into row blocks against the serial call.
"""

import numpy as np
import pytest

from numrnn import layers
from numrnn.kernels.cpu import _packed, _threads
from numrnn.kernels.cpu._common import recurrent_state_grad
from numrnn.kernels.cpu._packed import no_panels

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    import gradcheck as gc
    import reference as ref
except ImportError:  # tests is a package
    from tests import gradcheck as gc
    from tests import reference as ref

DTYPES = ["float32", "float64"]


def _width(dtype):
    return _packed.panel_width(np.dtype(dtype).itemsize)


def _view(rng, rows, cols, dtype, pad=3):
    # a view whose rows are `pad` elements wider than its own rows
    full = rng.normal(size=(rows, cols + pad)).astype(dtype)
    return full[:, pad:]


def _bound(a, w, c0, dtype):
    # elementwise error bound of a rounded dot product accumulated onto c0
    eps = np.finfo(dtype).eps
    depth = a.shape[1]
    magnitude = np.abs(a).astype(np.float64) @ np.abs(w).astype(np.float64)
    return 2 * (depth + 2) * eps * (magnitude + np.abs(c0)) + np.finfo(dtype).tiny


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 6, 7, 11, 13])
@pytest.mark.parametrize("depth", [1, 5, 128, 129, 300])
@pytest.mark.parametrize("panels", [1, 3])
@pytest.mark.parametrize("half", [False, True])
def test_packed_product_matches_numpy(dtype, rows, depth, panels, half):
    # full panels, and half panels (outputs that fill half panels only)
    rng = np.random.default_rng(rows * 1000 + depth)
    width = _width(dtype) // 2 if half else _width(dtype)
    n_cols = panels * width
    a = _view(rng, rows, depth, dtype)
    w = rng.normal(size=(depth, n_cols)).astype(dtype)
    c = _view(rng, rows, n_cols, dtype)
    c0 = c.astype(np.float64)
    want = c0 + a.astype(np.float64) @ w.astype(np.float64)
    packed = _packed.pack_panels(w, False)
    assert packed.shape == (panels, depth, width)
    # packed_product runs full panels; packed_product_t full and half ones
    products = [_packed.packed_product_t] + ([] if half else [_packed.packed_product])
    for product in products:
        got = c.copy()
        product(a, packed, got)
        error = np.abs(got - want)
        assert np.all(error <= _bound(a, w, c0, dtype)), f"max error {error.max()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_widths", [2, 3])
def test_pack_panels_layouts(dtype, n_widths):
    # 2 full panels; 3 half panels where the columns fill no full one
    rng = np.random.default_rng(0)
    half = _width(dtype) // 2
    width = half if n_widths == 3 else _width(dtype)
    w = rng.normal(size=(7, n_widths * half * (2 if n_widths == 2 else 1))).astype(dtype)
    packed = _packed.pack_panels(w, False)
    n_panels = w.shape[1] // width
    want = w.reshape(7, n_panels, width).transpose(1, 0, 2)
    np.testing.assert_array_equal(packed, want)
    # transposed: the panels of w.T, read from w (N, K) itself
    np.testing.assert_array_equal(_packed.pack_panels(np.ascontiguousarray(w.T), True), want)
    assert _packed.fits(w.shape[1], dtype, half=True)
    assert _packed.fits(w.shape[1], dtype) == (n_widths == 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(4, 10), (0, 64), (4, 0), (3, 96), (3, 40)])
def test_pack_panels_is_empty_where_the_panels_do_not_fit(dtype, shape):
    w = np.ones(shape, dtype=dtype)
    fits = shape[0] > 0 and _packed.fits(shape[1], dtype, half=True)
    packed = _packed.pack_panels(w, False)
    assert (packed.shape[0] > 0) == fits
    assert fits == (shape[0] > 0 and shape[1] > 0 and shape[1] % (_width(dtype) // 2) == 0)
    if not fits:
        assert packed.shape == (0, 0, _width(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("plain", [True, False])
@pytest.mark.parametrize("half", [False, True])
def test_recurrent_state_grad_over_panels_matches_the_blas(dtype, plain, half):
    # dh += fold((d_pre @ R.T) * rec_mask): the panels of R.T against the BLAS,
    # with and without recurrent dropout (per-gate copies folded back); U
    # outputs on full panels, or on half panels
    rng = np.random.default_rng(1)
    units = _width(dtype) // 2 if half else _width(dtype)
    n_batch, gates = 5, 4
    recurrent = rng.normal(size=(units, gates * units)).astype(dtype)
    if not plain:
        recurrent = rng.normal(size=(gates * units, gates * units)).astype(dtype)
    d_pre = rng.normal(size=(n_batch, gates * units)).astype(dtype)
    width = recurrent.shape[0]
    rec_mask = (rng.random((n_batch, width)) < 0.7).astype(dtype) / 0.7
    if plain:
        rec_mask[:] = 1.0  # no dropout: the kernels then skip the mask
    dh0 = rng.normal(size=(n_batch, units)).astype(dtype)
    results = []
    for panels in (_packed.pack_panels(recurrent, True), no_panels(dh0)):
        dh = dh0.copy()
        dh_rec = np.full((n_batch, width), np.nan, dtype=dtype)  # overwritten, never read
        recurrent_state_grad(d_pre, recurrent, panels, rec_mask, plain, dh, dh_rec)
        results.append(dh)
    assert _packed.pack_panels(recurrent, True).shape[0] > 0
    tol = 1e-12 if dtype == "float64" else 2e-5
    np.testing.assert_allclose(results[0], results[1], rtol=tol, atol=tol)
    want = dh0.astype(np.float64)
    folded = (d_pre.astype(np.float64) @ recurrent.T.astype(np.float64)) * rec_mask
    for k in range(width // units):
        want = want + folded[:, k * units : (k + 1) * units]
    np.testing.assert_allclose(results[0], want, rtol=tol, atol=tol)


# -- the LSTM kernels over panels ---------------------------------------------

# units at which both the forward product (4U outputs) and the backward's
# transposed one (U outputs) run over panels
PANEL_UNITS = {"float64": _width("float64"), "float32": _width("float32")}
# F: deep enough for the step-by-step input products to run over panels too
B, T, F = 5, 4, _packed.MIN_DEPTH
MASK = np.ones((B, T), dtype=bool)
MASK[1] = False
MASK[2, :2] = False
MASK[4, 2] = False


def _units(dtype, half):
    # full: both products over full panels; half: the backward's over half panels
    return PANEL_UNITS[dtype] // 2 if half else PANEL_UNITS[dtype]


def _lstm(dtype, seed=0, half=False, **options):
    units = _units(dtype, half)
    assert _packed.fits(4 * units, dtype) and _packed.fits(units, dtype, half=True)
    # the kernels use the panels on AVX-512 targets; elsewhere these tests
    # check the same sizes through the BLAS
    assert _packed.used(4 * units, dtype) == _packed.ENABLED
    assert _packed.used(units, dtype, transposed=True) == _packed.ENABLED
    rng = np.random.default_rng(seed)
    weights = ref.random_recurrent_weights(rng, "LSTM", F, units, dtype=np.dtype(dtype))
    layer = layers.LSTM(units, dtype=dtype, seed=3, **options)
    layer.build((None, T, F))
    layer.set_weights([w.astype(dtype) for w in weights])
    return layer, weights, rng


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("half", [False, True])
def test_lstm_over_panels_matches_the_reference(dtype, go_backwards, half):
    options = {"return_sequences": True, "return_state": True, "go_backwards": go_backwards}
    layer, weights, rng = _lstm(dtype, half=half, **options)
    units = _units(dtype, half)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    init = [rng.normal(scale=0.5, size=(B, units)).astype(dtype) for _ in range(2)]
    want = ref.recurrent_layer(
        "LSTM", x.astype(np.float64), weights, True, True, mask=MASK,
        initial_state=[s.astype(np.float64) for s in init], go_backwards=go_backwards,
    )  # fmt: skip
    tol = 1e-10 if dtype == "float64" else 1e-5
    # outputs only (lstm_infer) and the training forward (lstm_forward)
    inferred = layer(x, mask=MASK, initial_state=init)
    trained, _ = layer.value_and_vjp(
        x, lambda outs: [np.zeros_like(o) for o in outs], mask=MASK, initial_state=init
    )
    for got in (inferred, trained):
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("options", [{}, {"go_backwards": True, "return_sequences": True}])
@pytest.mark.parametrize("half", [False, True])
def test_lstm_vjp_over_panels_by_finite_differences(options, half):
    layer, weights, rng = _lstm("float64", seed=2, half=half, **options)
    units = _units("float64", half)
    n_batch, n_steps = 2, 3
    x = rng.normal(size=(n_batch, n_steps, F))
    mask = np.array([[True, False, True], [True, True, True]])
    init = [rng.normal(scale=0.5, size=(n_batch, units)) for _ in range(2)]
    out = layer(x, mask=mask, initial_state=init)
    cots = [rng.normal(size=out.shape)]
    gc.check_layer_vjp(layer, weights, x, cots, mask=mask, initial_state=init)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("options", [{}, {"recurrent_dropout": 0.4, "dropout": 0.2}])
@pytest.mark.parametrize("half", [False, True])
def test_lstm_row_blocks_over_panels_give_the_serial_numbers(monkeypatch, dtype, options, half):
    # 9 rows in 3 blocks (3 rows each: the 2- and 1-row tiles), every output
    # and gradient against one serial call; the panels lift the width limit
    monkeypatch.setattr(_threads, "MIN_ROWS", 2)
    monkeypatch.setattr(_threads, "MIN_WORK", 0)
    monkeypatch.setattr(_threads, "MAX_WIDTH", 1)
    calls = []
    real = _threads.n_blocks

    def counting(*args):
        calls.append(real(*args))
        return calls[-1]

    monkeypatch.setattr(_threads, "n_blocks", counting)
    n_batch = 9
    units = _units(dtype, half)

    def run():
        layer, _, rng = _lstm(dtype, seed=4, half=half, return_sequences=True, **options)
        x = rng.normal(size=(n_batch, T, F)).astype(dtype)
        mask = np.ones((n_batch, T), dtype=bool)
        mask[3, 1:] = False
        cots = [rng.normal(size=(n_batch, T, units)).astype(dtype)]
        outputs, (weight_grads, x_grad, _) = layer.value_and_vjp(
            x, lambda _: cots, mask=mask, training=bool(options)
        )
        return [*outputs, *weight_grads, x_grad]

    monkeypatch.setattr(_threads, "_thread_budget", lambda: 3)
    split = run()
    # the width limit (forced to 1 here) holds for BLAS products only
    assert calls and all(n == (3 if _packed.ENABLED else 1) for n in calls), calls
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 1)
    serial = run()
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == "float64" else {"rtol": 2e-5, "atol": 1e-6}
    for got, want in zip(split, serial, strict=True):
        np.testing.assert_allclose(got, want, **tol)
