"""Forward passes that need outputs only run the LSTM kernel without caches.

``layer(x)``, ``Sequential(x)``/``predict`` (and so the estimators'
predictions) mark their forward passes as outputs-only; a tanh/sigmoid LSTM
without recurrent dropout then calls ``lstm_infer``, which writes no caches.
It must give the numbers of the training forward (``lstm_forward``) in every
case the layer supports, and the paths that need caches must keep them.
"""

import numpy as np
import pytest

from numrnn import Sequential, layers
from numrnn.kernels.cpu import _threads
from numrnn.kernels.cpu import lstm as cpu_lstm
from numrnn.layers.base import outputs_only

B, T, F, U = 9, 6, 3, 5


def _mask():
    mask = np.ones((B, T), dtype=bool)
    mask[1] = False  # a fully masked sample
    mask[2, :3] = False  # leading masked steps
    mask[4, 2] = False  # one step in the middle
    mask[6, -2:] = False  # trailing steps
    return mask


def _refuse(*args, **kwargs):
    raise AssertionError("this path should not run here")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
@pytest.mark.parametrize("return_sequences", [True, False])
def test_outputs_only_call_gives_the_training_forward(
    dtype, go_backwards, zero_output_for_mask, return_sequences
):
    rng = np.random.default_rng(7)
    layer = layers.LSTM(
        U, return_sequences=return_sequences, return_state=True, go_backwards=go_backwards,
        zero_output_for_mask=zero_output_for_mask, seed=2, dtype=dtype,
    )  # fmt: skip
    x = rng.normal(size=(B, T, F)).astype(dtype)
    initial = [rng.normal(size=(B, U)).astype(dtype) for _ in range(2)]
    called = layer(x, mask=_mask(), initial_state=initial)
    trained, _ = layer.value_and_vjp(
        x, lambda outs: [np.ones_like(o) for o in outs], mask=_mask(), initial_state=initial
    )
    tol = {"rtol": 1e-13, "atol": 1e-14} if dtype == "float64" else {"rtol": 1e-6, "atol": 1e-7}
    for got, want in zip(called, trained, strict=True):
        np.testing.assert_allclose(got, want, **tol)
    # the states of a fully masked sample are its initial states
    np.testing.assert_array_equal(called[1][1], initial[0][1])
    np.testing.assert_array_equal(called[2][1], initial[1][1])


def test_calls_and_predictions_take_the_kernel_without_caches(monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, T, F)).astype("float32")
    layer = layers.LSTM(U, return_sequences=True, seed=0)
    model = Sequential([layers.LSTM(U, return_sequences=True, seed=1), layers.Dense(2)])
    bidirectional = layers.Bidirectional(layers.LSTM(U, seed=3))
    expected = [layer(x), model(x), bidirectional(x)]
    monkeypatch.setattr(cpu_lstm, "lstm_forward", _refuse)
    got = [layer(x), model(x), bidirectional(x)]
    assert np.array_equal(model.predict(x, batch_size=4), expected[1])
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    # a backward pass still needs (and takes) the kernel with caches
    with pytest.raises(AssertionError, match="should not run"):
        layer.vjp(x, [np.ones((B, T, U), "float32")])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_predictions_take_the_kernel_without_caches(monkeypatch):
    from numrnn import RNNRegressor

    rng = np.random.default_rng(1)
    X = rng.normal(size=(12, T, F)).astype("float32")
    y = X[:, :, 0].sum(axis=1)
    reg = RNNRegressor(units=(U,), max_iter=2, batch_size=6, random_state=0).fit(X, y)
    expected = reg.predict(X)
    monkeypatch.setattr(cpu_lstm, "lstm_forward", _refuse)
    np.testing.assert_array_equal(reg.predict(X), expected)


@pytest.mark.parametrize(
    ("options", "training"),
    [
        ({"recurrent_dropout": 0.3}, True),  # the recurrent mask needs the cached kernel
        ({"activation": "relu"}, False),
        ({"recurrent_activation": "hard_sigmoid"}, False),
    ],
)
def test_other_cases_keep_the_kernel_with_caches(monkeypatch, options, training):
    x = np.random.default_rng(2).normal(size=(B, T, F)).astype("float32")
    layer = layers.LSTM(U, seed=0, **options)
    monkeypatch.setattr(cpu_lstm, "lstm_infer", _refuse)
    assert layer(x, training=training).shape == (B, U)


def test_the_outputs_only_mark_covers_calls_and_nothing_else():
    seen = []

    class Probe(layers.Layer):
        fail = False

        def _forward(self, x, mask, initial_state, training):
            seen.append(outputs_only())
            if self.fail:
                raise RuntimeError("probe failed")
            return [x], None

        def _backward(self, cache, cotangents):
            return [], cotangents[0], None

    probe = Probe()
    x = np.zeros((2, 3, 1))
    probe(x)
    probe.vjp(x, [x])
    model = Sequential([probe])
    model(x)
    model.value_and_vjp(x, lambda out: out)
    probe.fail = True
    with pytest.raises(RuntimeError, match="probe failed"):
        probe(x)
    assert seen == [True, False, True, False, True]
    assert not outputs_only()


def test_infer_kernel_refuses_other_activations():
    args = [np.zeros(1)] * 7
    with pytest.raises(ValueError, match="tanh/sigmoid cells only"):
        cpu_lstm.lstm_infer(*args, 5, 2, False, False, None, None, None)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_row_blocks_of_the_kernel_without_caches_give_the_serial_numbers(monkeypatch, dtype):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    initial = [rng.normal(size=(B, U)).astype(dtype) for _ in range(2)]
    layer = layers.LSTM(U, return_sequences=True, return_state=True, seed=5, dtype=dtype)
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 1)
    serial = layer(x, mask=_mask(), initial_state=initial)
    monkeypatch.setattr(_threads, "MIN_ROWS", 2)
    monkeypatch.setattr(_threads, "MIN_WORK", 0)
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 3)
    blocks = []
    real = cpu_lstm._infer_fast

    def counting(*args):
        blocks.append(args[0].shape[0])
        real(*args)

    monkeypatch.setattr(cpu_lstm, "_infer_fast", counting)
    split = layer(x, mask=_mask(), initial_state=initial)
    assert blocks == [3, 3, 3]
    for got, want in zip(split, serial, strict=True):
        np.testing.assert_array_equal(got, want)
