"""A training step skips the input gradient of the model's first layer.

``Sequential.value_and_vjp(..., input_grad=False)`` (what the estimators'
training loop calls) returns None for the input gradient, and a recurrent
first layer then hands its CPU kernel a zero-width ``d_x``, so the kernel
skips that product. Every weight gradient must stay the same.
"""

import numpy as np
import pytest

from numrnn import RNNRegressor, Sequential, layers
from numrnn.kernels.cpu import _threads
from numrnn.kernels.cpu import gru as cpu_gru
from numrnn.kernels.cpu import lstm as cpu_lstm
from numrnn.kernels.cpu import simple_rnn as cpu_simple
from numrnn.layers.base import input_grad_unused, input_grad_wanted

B, T, F, U = 9, 6, 3, 4
CELLS = {  # kernel module, backward kernel, gates
    "LSTM": (cpu_lstm, "lstm_backward", 4),
    "GRU": (cpu_gru, "gru_backward", 3),
    "SimpleRNN": (cpu_simple, "simple_rnn_backward", 1),
}


@pytest.fixture
def d_x_widths(monkeypatch):
    """Record the last-axis width of the ``d_x`` each backward kernel receives."""
    widths = []
    for module, name, _ in CELLS.values():
        real = getattr(module, name)
        position = list(real.__code__.co_varnames).index("d_x")

        def spy(*args, _real=real, _position=position):
            widths.append(args[_position].shape[-1])
            return _real(*args)

        monkeypatch.setattr(module, name, spy)
    return widths


def _model(cell, dtype, **options):
    """The same model on every call: seeded recurrent layers (weights and
    dropout masks) and a Dense layer with fixed weights."""
    first = getattr(layers, cell)(U, return_sequences=True, seed=0, dtype=dtype, **options)
    dense = layers.Dense(1, dtype=dtype)
    model = Sequential([first, layers.LSTM(2, seed=1, dtype=dtype), dense])
    model.build((B, T, F))
    dense.set_weights([np.full((2, 1), 0.5, dtype=dtype), np.full((1,), 0.1, dtype=dtype)])
    return model


def _mask():
    mask = np.ones((B, T), dtype=bool)
    mask[2, :2] = False
    mask[5] = False
    return mask


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("options", [{}, {"dropout": 0.3, "recurrent_dropout": 0.2}])
def test_first_layer_skips_its_input_gradient(d_x_widths, cell, dtype, options):
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(dtype)
    results = []
    for input_grad in (True, False):
        model = _model(cell, dtype, **options)  # same seeds: same dropout masks
        out, (grads, d_x, _) = model.value_and_vjp(
            x, lambda o: np.ones_like(o), mask=_mask(), training=True, input_grad=input_grad
        )
        results.append((out, grads, d_x))
    # with the input gradient: full width for both recurrent layers (the first's
    # is k * F wide with per-gate input dropout); without: zero width for the
    # first, full for the second (its input gradient is read)
    assert d_x_widths[0] == d_x_widths[2] == U
    assert d_x_widths[1] in (F, CELLS[cell][2] * F)
    assert d_x_widths[3] == 0
    assert len(d_x_widths) == 4
    assert results[0][2].shape == (B, T, F)
    assert results[1][2] is None
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert len(results[0][1]) == len(results[1][1])
    for with_dx, without_dx in zip(results[0][1], results[1][1], strict=True):
        np.testing.assert_array_equal(with_dx, without_dx)


def test_a_wrapped_first_layer_still_computes_it(d_x_widths):
    # only layers that declare it skip; Bidirectional runs its two LSTMs as usual
    model = Sequential([layers.Bidirectional(layers.LSTM(U, seed=0)), layers.Dense(1)])
    x = np.random.default_rng(4).normal(size=(B, T, F)).astype("float32")
    _, (grads, d_x, _) = model.value_and_vjp(x, lambda o: np.ones_like(o), input_grad=False)
    assert d_x is None
    assert d_x_widths == [F, F]
    _, (expected, _, _) = model.value_and_vjp(x, lambda o: np.ones_like(o))
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_row_blocks_with_a_skipped_input_gradient(monkeypatch):
    x = np.random.default_rng(5).normal(size=(B, T, F))
    grads = {}
    for blocks in (1, 3):
        monkeypatch.setattr(_threads, "MIN_ROWS", 2)
        monkeypatch.setattr(_threads, "MIN_WORK", 0)
        monkeypatch.setattr(_threads, "_thread_budget", lambda blocks=blocks: blocks)
        model = _model("LSTM", "float64")
        _, (grads[blocks], _, _) = model.value_and_vjp(
            x, lambda o: np.ones_like(o), mask=_mask(), input_grad=False
        )
    for split, serial in zip(grads[3], grads[1], strict=True):
        np.testing.assert_allclose(split, serial, rtol=1e-12, atol=1e-13)


def test_the_mark_is_scoped():
    assert input_grad_wanted()
    with pytest.raises(RuntimeError):
        with input_grad_unused():
            assert not input_grad_wanted()
            raise RuntimeError
    assert input_grad_wanted()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_training_skips_the_input_gradient(d_x_widths):
    X = np.random.default_rng(6).normal(size=(12, T, F)).astype("float32")
    RNNRegressor(units=(U,), max_iter=2, batch_size=6, random_state=0).fit(X, X.sum(axis=(1, 2)))
    assert d_x_widths and set(d_x_widths) == {0}


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_layer_vjp_without_the_input_gradient(d_x_widths, cell):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(B, T, F))
    layer = getattr(layers, cell)(U, return_sequences=True, seed=2, dtype="float64")
    cotangents = [rng.normal(size=(B, T, U))]
    with_dx = layer.vjp(x, cotangents, mask=_mask())
    without_dx = layer.vjp(x, cotangents, mask=_mask(), input_grad=False)
    assert d_x_widths == [F, 0]
    assert with_dx[1].shape == (B, T, F) and without_dx[1] is None
    for got, want in zip(without_dx[0], with_dx[0], strict=True):
        np.testing.assert_array_equal(got, want)
    # a layer that does not skip it still returns None when it is not wanted
    bidirectional = layers.Bidirectional(layers.LSTM(U, seed=0, dtype="float64"))
    grads = bidirectional.vjp(x, [np.ones((B, 2 * U))], input_grad=False)
    assert grads[1] is None and len(grads[0]) == 6
