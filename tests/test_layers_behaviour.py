"""Behaviour of the layers beyond single-call numbers: dropout, stateful
layers, initialisers, masks between layers, and input errors."""

import numpy as np
import pytest

import numrnn
from numrnn import Sequential, layers

try:
    import reference as ref
except ImportError:  # pragma: no cover - run from the repository root
    from tests import reference as ref

RNG = np.random.default_rng(1234)


def _identity_simple_rnn(units, **kwargs):
    """A linear SimpleRNN whose output shows the dropout masks directly."""
    layer = layers.SimpleRNN(
        units, activation="linear", return_sequences=True, dtype="float64", **kwargs
    )
    layer.build((None, 6, units))
    layer.set_weights([np.eye(units), np.eye(units), np.zeros(units)])
    return layer


# -- dropout ------------------------------------------------------------------


def test_input_dropout_is_inverted_one_mask_per_sample_and_feature_per_call():
    rate = 0.4
    layer = _identity_simple_rnn(50, dropout=rate, seed=3)
    layer.set_weights([np.eye(50), np.zeros((50, 50)), np.zeros(50)])
    x = np.ones((40, 6, 50))
    out = layer(x, training=True)
    mask = out[:, 0, :]
    # the same mask at every step
    np.testing.assert_array_equal(out, np.repeat(mask[:, None, :], 6, axis=1))
    # inverted: kept values scaled by 1 / (1 - rate)
    assert set(np.unique(np.round(mask, 12))) == {0.0, round(1 / (1 - rate), 12)}
    assert abs((mask == 0).mean() - rate) < 0.05
    # a new mask on the next call; none at inference
    assert not np.array_equal(layer(x, training=True)[:, 0, :], mask)
    np.testing.assert_array_equal(layer(x, training=False), x)


def test_recurrent_dropout_reuses_one_mask_on_the_previous_state():
    rate = 0.5
    layer = _identity_simple_rnn(30, recurrent_dropout=rate, seed=5)
    x = np.zeros((20, 6, 30))
    x[:, 0, :] = 1.0
    out = layer(x, training=True)
    mask = out[:, 1, :] / out[:, 0, :]
    assert set(np.unique(np.round(mask, 12))) == {0.0, 2.0}
    # h_t = m * h_{t-1}: the same mask at every step
    np.testing.assert_allclose(out[:, 2, :], mask * out[:, 1, :])
    np.testing.assert_allclose(out[:, 5, :], mask**5 * out[:, 0, :])


@pytest.mark.parametrize(
    "name, gates, extra",
    [("LSTM", 4, {}), ("GRU", 3, {"reset_after": True}), ("GRU", 3, {"reset_after": False})],
)
@pytest.mark.parametrize("input_dropout", [0.0, 0.4])
def test_lstm_gru_recurrent_dropout_draws_one_mask_per_gate(name, gates, extra, input_dropout):
    """Keras 3: with ``recurrent_dropout > 0`` each gate gets its own input and
    recurrent mask. Checked against the numpy reference fed the same masks."""
    rng = np.random.default_rng(31)
    batch, steps, features, units = 5, 4, 3, 2
    x = rng.normal(size=(batch, steps, features))
    layer = getattr(layers, name)(
        units,
        dropout=input_dropout,
        recurrent_dropout=0.5,
        return_sequences=True,
        seed=0,
        dtype="float64",
        **extra,
    )
    layer.build(x.shape)
    drawn = {}

    def fake_mask(rate, shape, training):
        if not training or rate == 0.0:
            return None
        mask = rng.integers(0, 2, size=shape) / (1.0 - rate)
        drawn[len(shape)] = mask
        return mask

    layer._dropout_mask = fake_mask
    out = layer(x, training=True)
    rec = drawn[2].reshape(batch, gates, units).transpose(1, 0, 2)
    assert rec.shape == (gates, batch, units)
    assert not all(np.array_equal(rec[0], rec[k]) for k in range(1, gates))
    inp = drawn.get(3)
    if input_dropout:
        assert inp.shape == (gates, batch, features)
    expected, _ = getattr(ref, name.lower())(
        x,
        *layer.get_weights(),
        input_dropout_mask=inp,
        recurrent_dropout_mask=rec,
        **extra,
    )
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_dropout_is_reproducible_from_the_seed():
    x = RNG.normal(size=(4, 5, 3))
    outs = []
    for _ in range(2):
        layer = layers.GRU(4, dropout=0.3, recurrent_dropout=0.3, seed=11, dtype="float64")
        outs.append(layer(x, training=True))
    np.testing.assert_array_equal(outs[0], outs[1])


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
def test_training_vjp_uses_the_forward_pass_dropout_masks(cls):
    """Finite differences through a training-mode call whose masks are re-seeded."""
    x = RNG.normal(size=(4, 3, 5))
    layer = cls(3, dropout=0.5, recurrent_dropout=0.3, seed=2, dtype="float64")
    layer.build(x.shape)
    cot = RNG.normal(size=(4, 3))

    def loss(inp):
        layer._dropout_rng = np.random.default_rng(99)
        return float((layer(inp, training=True) * cot).sum())

    layer._dropout_rng = np.random.default_rng(99)
    _, d_x, _ = layer.vjp(x, [cot], training=True)
    eps = 1e-6
    numeric = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        numeric[idx] = (loss(xp) - loss(xm)) / (2 * eps)
    np.testing.assert_allclose(d_x, numeric, rtol=1e-6, atol=1e-8)
    assert np.any(d_x == 0.0)  # dropped inputs get no gradient


def test_dropout_layer():
    layer = layers.Dropout(0.5, seed=0, dtype="float64")
    x = np.ones((200, 10))
    np.testing.assert_array_equal(layer(x), x)
    y = layer(x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}
    _, d_x, _ = layer.vjp(x, [np.ones_like(x)], training=True)
    assert set(np.unique(d_x)) == {0.0, 2.0}


# -- stateful -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [layers.SimpleRNN, layers.LSTM, layers.GRU])
def test_stateful_calls_continue_one_long_sequence(cls):
    x = RNG.normal(size=(2, 8, 3))
    full = cls(4, return_sequences=True, dtype="float64", seed=1)
    stateful = cls(4, return_sequences=True, stateful=True, dtype="float64", seed=1)
    full.build(x.shape)
    stateful.build(x.shape)
    stateful.set_weights(full.get_weights())
    whole = full(x)
    parts = np.concatenate([stateful(x[:, :3]), stateful(x[:, 3:5]), stateful(x[:, 5:])], axis=1)
    np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-12)
    stateful.reset_states()
    assert all(np.all(s == 0) for s in stateful.states)
    np.testing.assert_allclose(stateful(x[:, :3]), whole[:, :3], rtol=1e-12, atol=1e-12)


def test_stateful_layer_rejects_another_batch_size():
    layer = layers.LSTM(3, stateful=True)
    layer(np.zeros((4, 2, 1), dtype="float32"))
    with pytest.raises(ValueError, match="batch size 4, got a batch of 5"):
        layer(np.zeros((5, 2, 1), dtype="float32"))


def test_states_of_one_layer_as_initial_state_of_another():
    x = RNG.normal(size=(2, 5, 3))
    encoder = layers.LSTM(4, stateful=True, dtype="float64", seed=0)
    encoder(x)
    decoder = layers.LSTM(4, return_sequences=True, dtype="float64", seed=1)
    out = decoder(x, initial_state=encoder.states)
    out_explicit = decoder(x, initial_state=[s.copy() for s in encoder.states])
    np.testing.assert_array_equal(out, out_explicit)
    _, h, c = layers.LSTM(4, return_state=True, dtype="float64", seed=0)(x), *encoder.states
    assert h.shape == c.shape == (2, 4)
    assert not np.allclose(decoder(x), out)


# -- weights and initialisers ----------------------------------------------------


def test_weight_layout_and_initialisers():
    lstm = layers.LSTM(5, seed=0)
    lstm.build((None, 7, 3))
    kernel, recurrent, bias = lstm.get_weights()
    assert kernel.shape == (3, 20) and recurrent.shape == (5, 20) and bias.shape == (20,)
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(bias, np.r_[np.zeros(5), np.ones(5), np.zeros(10)])
    limit = np.sqrt(6 / (3 + 20))
    assert np.abs(kernel).max() <= limit
    # orthogonal (5, 20): orthonormal rows
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(5), atol=1e-5)
    gru = layers.GRU(2, reset_after=False)
    gru.build((None, 1, 1))
    assert gru.get_weights()[2].shape == (6,)
    gru = layers.GRU(2)
    gru.build((None, 1, 1))
    assert gru.get_weights()[2].shape == (2, 6)
    assert len(layers.SimpleRNN(2, use_bias=False).build((None, 1, 1)) or []) == 0


def test_set_weights_checks_shapes_and_count():
    layer = layers.GRU(2)
    with pytest.raises(ValueError, match="not built"):
        layer.set_weights([])
    layer.build((None, 3, 4))
    with pytest.raises(ValueError, match="expects 3 weight arrays"):
        layer.set_weights([np.zeros((4, 6))])
    with pytest.raises(ValueError, match=r"shape \(4, 5\), expected \(4, 6\)"):
        layer.set_weights([np.zeros((4, 5)), np.zeros((2, 6)), np.zeros((2, 6))])


def test_floatx_changes_the_default_dtype():
    numrnn.config.set_floatx("float64")
    try:
        layer = layers.LSTM(2)
        assert layer(np.zeros((1, 2, 1))).dtype == np.float64
    finally:
        numrnn.config.set_floatx("float32")
    assert layers.LSTM(2)(np.zeros((1, 2, 1))).dtype == np.float32
    with pytest.raises(ValueError, match="floatx"):
        numrnn.config.set_floatx("float16")


# -- models ----------------------------------------------------------------------------


def test_summary_and_predict():
    model = Sequential([layers.Embedding(1000, 64), layers.LSTM(128), layers.Dense(10)])
    model.build((None, 12))
    lines = []
    model.summary(print_fn=lines.append)
    text = lines[0]
    for count in ("64,000", "98,816", "1,290", "Total params: 164,106"):
        assert count in text
    assert "(None, 12, 64)" in text and "(None, 128)" in text
    x = RNG.integers(1, 1000, size=(70, 12))
    np.testing.assert_allclose(model.predict(x, batch_size=32), model(x), rtol=1e-6, atol=1e-7)


def test_mask_propagates_from_embedding_through_return_sequences():
    x = np.array([[3, 4, 0, 0], [5, 0, 0, 0]])
    emb = layers.Embedding(10, 3, mask_zero=True, dtype="float64", seed=0)
    rnn1 = layers.LSTM(2, return_sequences=True, dtype="float64", seed=0)
    rnn2 = layers.GRU(2, dtype="float64", seed=0)
    model = Sequential([emb, rnn1, rnn2])
    out = model(x)
    # equals running each row on its unpadded prefix
    for i, n in enumerate([2, 1]):
        np.testing.assert_allclose(out[i], model(x[i : i + 1, :n])[0], rtol=1e-12)


# -- input errors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda l: l(np.zeros((2, 3))), ValueError, "expected a 3-D input"),
        (
            lambda l: l(np.zeros((2, 3, 5))),
            ValueError,
            "has 5 features, but the layer was built for 4",
        ),
        (
            lambda l: l(np.zeros((2, 3, 4)), mask=np.ones((2, 4), bool)),
            ValueError,
            "mask has shape",
        ),
        (
            lambda l: l(np.zeros((2, 3, 4)), initial_state=[np.zeros((2, 3))]),
            ValueError,
            "expects 2 state",
        ),
        (
            lambda l: l(np.zeros((2, 3, 4)), initial_state=[np.zeros((2, 3)), np.zeros((3, 3))]),
            ValueError,
            r"initial_state\[1\] has shape \(3, 3\)",
        ),
        (lambda l: l(np.full((2, 3, 4), np.nan)), ValueError, "NaN"),
        (lambda l: l(np.array([[["a"] * 4] * 3])), TypeError, "numeric"),
        (lambda l: l(np.zeros((2, 0, 4))), ValueError, "empty"),
    ],
)
def test_bad_input_gets_a_clear_error(call, error, match):
    layer = layers.LSTM(3)
    layer.build((None, None, 4))
    with pytest.raises(error, match=match):
        call(layer)


def test_nan_check_can_be_switched_off():
    numrnn.config.set_input_validation(False)
    try:
        out = layers.SimpleRNN(2)(np.full((1, 2, 1), np.nan, dtype="float32"))
    finally:
        numrnn.config.set_input_validation(True)
    assert np.isnan(out).all()


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: layers.LSTM(3, activation="swish"), "Unknown activation 'swish'"),
        (lambda: layers.GRU(3, recurrent_activation="softmax"), "Unknown recurrent_activation"),
        (lambda: layers.Bidirectional(layers.LSTM(3), merge_mode="max"), "Unknown merge_mode"),
        (lambda: layers.Dense(3, activation="gelu2"), "Unknown activation"),
        (lambda: layers.LSTM(0), "positive integer"),
        (lambda: layers.LSTM(3, dropout=1.5), r"dropout must be a float in \[0, 1\)"),
        (lambda: layers.LSTM(3, kernel_initializer="nope"), "Unknown kernel_initializer"),
    ],
)
def test_unknown_options_are_rejected_at_construction(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bidirectional_backward_layer_must_mirror_the_forward_layer():
    with pytest.raises(ValueError, match="go_backwards"):
        layers.Bidirectional(layers.LSTM(3), backward_layer=layers.LSTM(3))
    with pytest.raises(ValueError, match="return_sequences"):
        layers.Bidirectional(
            layers.LSTM(3), backward_layer=layers.LSTM(3, go_backwards=True, return_sequences=True)
        )
