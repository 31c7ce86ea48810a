"""Stateful chunked fitting over long series: RNNRegressor/RNNClassifier(stateful=True)."""

import copy
import pickle
import tracemalloc
import warnings

import numpy as np
import pandas as pd
import pytest

from numrnn import RNNClassifier, RNNRegressor, Sequential, layers, losses, timeseries

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def _series(n_steps=120, n_features=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_steps, n_features))
    y = np.convolve(X[:, 0], np.ones(4) / 4, mode="full")[:n_steps] + 0.3 * X[:, -1]
    return X, y


def _stateless_twin(model, cell, units, n_features, dtype):
    """The same network without stateful layers: one unchunked pass over a whole series."""
    twin = Sequential(
        [
            CELLS[cell](units, return_sequences=True, dtype=dtype),
            layers.TimeDistributed(layers.Dense(1, dtype=dtype)),
        ]
    )
    twin.build((None, None, n_features))
    twin.set_weights(model.get_weights())
    return twin


# --------------------------------------------------------------------------
# Chunked prediction equals one pass over the whole series
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_chunked_prediction_equals_one_unchunked_pass(cell, dtype):
    X, y = _series(n_steps=157)
    reg = RNNRegressor(
        cell=cell, units=(5,), stateful=True, chunk_length=20, max_iter=2,
        learning_rate_init=0.01, random_state=0, dtype=dtype,
    ).fit(X, y)  # fmt: skip
    twin = _stateless_twin(reg.model_, cell, 5, 2, dtype)
    reference = np.asarray(twin(X[None].astype(dtype)), dtype=np.float64)[0, :, 0]
    tol = TOLERANCE[dtype]
    for chunk_length in (1, 7, 157, 1000):
        reg.reset_states()
        reg.set_params(chunk_length=chunk_length)
        np.testing.assert_allclose(reg.predict(X), reference, rtol=tol, atol=tol)
    # several calls continue the state: the same values again
    reg.reset_states()
    reg.set_params(chunk_length=13)
    parts = [reg.predict(X[:50]), reg.predict(X[50:51]), reg.predict(X[51:])]
    np.testing.assert_allclose(np.concatenate(parts), reference, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_chunked_prediction_of_ragged_series_equals_masked_unchunked_pass(dtype):
    rng = np.random.default_rng(1)
    lengths = (90, 61, 17)
    X = [rng.normal(size=(n, 3)) for n in lengths]
    y = [x[:, 0].cumsum() * 0.1 for x in X]
    reg = RNNRegressor(
        units=(4,), stateful=True, chunk_length=16, max_iter=2, random_state=0, dtype=dtype
    ).fit(X, y)
    padded, mask, _ = timeseries.pad_and_mask(X, dtype=dtype)
    twin = _stateless_twin(reg.model_, "lstm", 4, 3, dtype)
    reference = np.asarray(twin(padded, mask=mask), dtype=np.float64)[:, :, 0]
    reg.reset_states()
    reg.set_params(chunk_length=9)
    predicted = reg.predict(X)
    tol = TOLERANCE[dtype]
    assert [len(p) for p in predicted] == list(lengths)
    for index, length in enumerate(lengths):
        np.testing.assert_allclose(predicted[index], reference[index, :length], rtol=tol, atol=tol)
        # the padded tails of the other series do not touch this one
        reg.reset_states()
        alone = reg.predict(X[index])
        np.testing.assert_allclose(alone, reference[index, :length], rtol=tol, atol=tol)


# --------------------------------------------------------------------------
# Truncated BPTT and state resets, replicated by hand with the layer API
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_stop_at_chunk_boundaries_and_states_reset_each_epoch(cell):
    X, y = _series(n_steps=30, n_features=2, seed=3)
    chunk, rate = 10, 0.05
    reg = RNNRegressor(
        cell=cell, units=(3,), stateful=True, chunk_length=chunk, optimizer="sgd", momentum=0.0,
        learning_rate_init=rate, alpha=0.0, random_state=0, dtype="float64",
    )  # fmt: skip
    reg.partial_fit(X, y)
    assert all(np.abs(s).max() > 0 for s in reg.model_.layers[0].states)
    weights = reg.model_.get_weights()
    reg.partial_fit(X, y)

    recurrent = CELLS[cell](3, return_sequences=True, return_state=True, dtype="float64")
    recurrent.build((None, None, 2))
    twin = _stateless_twin(reg.model_, cell, 3, 2, "float64")
    n_recurrent = len(recurrent.get_weights())
    states = None  # the second epoch starts from zero states again
    saw_state_gradient = False
    for start in range(0, 30, chunk):
        x = X[None, start : start + chunk]
        target = y[None, start : start + chunk, None]
        twin.set_weights(weights)
        recurrent.set_weights(weights[:n_recurrent])
        _, (grads, _, state_grads) = twin.value_and_vjp(
            x, lambda out, t=target: losses.mean_squared_error(t, out)[1], initial_state=states
        )
        if state_grads is not None:
            # the loss does depend on the entry state; truncated BPTT drops that path
            saw_state_gradient |= max(np.abs(g).max() for g in state_grads) > 1e-8
        states = recurrent(x, initial_state=states)[1:]  # the states carried on, as constants
        weights = [w - rate * g for w, g in zip(weights, grads, strict=True)]
    assert saw_state_gradient
    for expected, actual in zip(weights, reg.model_.get_weights(), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-10, atol=1e-12)


def test_every_epoch_starts_from_zero_states(monkeypatch):
    X, y = _series(n_steps=45)
    entry_states = []
    original = layers.LSTM._forward

    def spy(self, x, mask, initial_state, training):
        entry_states.append(None if self.states is None else self.states[0].copy())
        return original(self, x, mask, initial_state, training)

    monkeypatch.setattr(layers.LSTM, "_forward", spy)
    RNNRegressor(units=(3,), stateful=True, chunk_length=15, max_iter=3, random_state=0).fit(X, y)
    assert len(entry_states) == 9  # 3 epochs x 3 chunks
    for call, state in enumerate(entry_states):
        if call % 3 == 0:
            assert state is None or not state.any()
        else:
            assert np.abs(state).max() > 0


def test_fit_memory_is_bounded_by_the_chunk_not_the_series():
    """Peak traced memory of a fit grows with the data arrays only, not with activations."""

    def fit_peak(n_steps):
        X, y = _series(n_steps=n_steps, n_features=1)
        reg = RNNRegressor(units=(16,), stateful=True, chunk_length=50, max_iter=1,
                           random_state=0, dtype="float64")  # fmt: skip
        reg.fit(X[:100], y[:100])  # warm up kernels and caches outside the measurement
        tracemalloc.start()
        reg.fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = fit_peak(2_000), fit_peak(20_000)
    # data copies grow by ~18_000 steps x a few float64 (< 1 MB); one full-series
    # pass would need 18_000 x 16 units x (4 gates + 4 caches) x 8 bytes > 18 MB more
    assert large - small < 2_000_000, (small, large)


# --------------------------------------------------------------------------
# Predict continues the state; reset_states
# --------------------------------------------------------------------------


def test_predict_continues_from_the_last_state_unless_reset():
    X, y = _series(n_steps=80)
    reg = RNNRegressor(units=(4,), stateful=True, chunk_length=16, max_iter=2, random_state=0)
    reg.fit(X, y)
    after_fit = [s.copy() for s in reg.model_.layers[0].states]
    assert np.abs(after_fit[0]).max() > 0
    continued = reg.predict(X[:10])
    reg.reset_states()
    assert not any(s.any() for s in reg.model_.layers[0].states)
    fresh = reg.predict(X[:10])
    assert not np.allclose(continued, fresh)
    again = reg.predict(X[:10])  # continues after the first 10 steps
    assert not np.allclose(again, fresh)
    reg.reset_states()
    np.testing.assert_array_equal(reg.predict(X[:10]), fresh)
    # after fit the state is where training ended: a clone refitted the same way agrees
    twin = RNNRegressor(units=(4,), stateful=True, chunk_length=16, max_iter=2, random_state=0)
    np.testing.assert_array_equal(twin.fit(X, y).predict(X[:10]), continued)


def test_other_number_of_series_needs_reset_states():
    X, y = _series(n_steps=40)
    reg = RNNRegressor(units=(3,), stateful=True, chunk_length=8, max_iter=1, random_state=0)
    reg.fit(np.stack([X, X[::-1]]), np.stack([y, y[::-1]]))
    with pytest.raises(ValueError, match="reset_states"):
        reg.predict(X)
    reg.reset_states()
    one = reg.predict(X)
    reg.reset_states()
    both = reg.predict(np.stack([X, X[::-1]]))
    np.testing.assert_allclose(both[0], one, rtol=1e-5, atol=1e-6)


def test_reset_states_requires_a_fit_and_returns_self():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        RNNRegressor(stateful=True).reset_states()
    X, y = _series(n_steps=30)
    reg = RNNRegressor(units=(3,), stateful=True, chunk_length=10, max_iter=1).fit(X, y)
    assert reg.reset_states() is reg
    # harmless on a non-stateful estimator
    plain = RNNRegressor(units=(3,), max_iter=1).fit(np.stack([X] * 3), y[:3])
    assert plain.reset_states() is plain


# --------------------------------------------------------------------------
# Input forms and outputs
# --------------------------------------------------------------------------


def test_input_forms_give_matching_outputs():
    X, y = _series(n_steps=60)
    params = dict(units=(3,), stateful=True, chunk_length=16, max_iter=2, random_state=0)
    index = pd.date_range("2021-01-01", periods=60, freq="h")
    frame = pd.DataFrame(X, index=index, columns=["a", "b"])
    from_array = RNNRegressor(**params).fit(X, y)
    from_frame = RNNRegressor(**params).fit(frame, pd.Series(y, index=index))
    np.testing.assert_array_equal(
        from_array.model_.get_weights()[0], from_frame.model_.get_weights()[0]
    )
    assert from_frame.n_features_in_ == 2
    np.testing.assert_array_equal(from_frame.feature_names_in_, ["a", "b"])
    from_frame.reset_states()
    out = from_frame.predict(frame)
    assert isinstance(out, pd.Series) and out.index.equals(index)
    from_array.reset_states()
    np.testing.assert_array_equal(out.to_numpy(), from_array.predict(X))
    # a univariate Series and a 1-D array are one series with one feature
    uni = RNNRegressor(**params).fit(pd.Series(X[:, 0], index=index), y)
    assert uni.n_features_in_ == 1
    uni.reset_states()
    assert uni.predict(X[:, 0]).shape == (60,)


def test_several_series_as_3d_array_and_multiindex_frame():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3, 40, 2))
    y = X[:, :, 0] - X[:, :, 1]
    params = dict(units=(3,), stateful=True, chunk_length=12, max_iter=2, random_state=0)
    reg = RNNRegressor(**params).fit(X, y)
    reg.reset_states()
    out = reg.predict(X)
    assert out.shape == (3, 40)
    frame = timeseries.sequences_to_frame(list(X), ids=["p", "q", "r"], columns=["u", "v"])
    targets = pd.Series(y.reshape(-1), index=frame.index)
    from_frame = RNNRegressor(**params).fit(frame, targets)
    from_frame.reset_states()
    out_frame = from_frame.predict(frame)
    assert isinstance(out_frame, pd.Series) and out_frame.index.equals(frame.index)
    np.testing.assert_allclose(out_frame.to_numpy(), out.reshape(-1), rtol=1e-6)
    # two outputs per step
    two = RNNRegressor(**params).fit(X, np.stack([y, -y], axis=-1))
    two.reset_states()
    assert two.predict(X).shape == (3, 40, 2)


def test_masked_tails_and_ragged_fit_equal_multiindex_fit():
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(n, 2)) for n in (50, 23)]
    y = [x.sum(axis=1) for x in X]
    params = dict(units=(3,), stateful=True, chunk_length=10, max_iter=2, random_state=0,
                  dtype="float64")  # fmt: skip
    ragged = RNNRegressor(**params).fit(X, y)
    frame = timeseries.sequences_to_frame(X)
    from_frame = RNNRegressor(**params).fit(frame, pd.Series(np.concatenate(y), index=frame.index))
    for a, b in zip(ragged.model_.get_weights(), from_frame.model_.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # after predicting both, the short series' state is the one at its last real step
    ragged.reset_states()
    ragged.predict(X)
    both = ragged.model_.layers[0].states
    ragged.reset_states()
    ragged.predict(X[1])
    alone = ragged.model_.layers[0].states
    for a, b in zip(both, alone, strict=True):
        np.testing.assert_allclose(a[1], b[0], rtol=1e-12)


def test_sample_weight_per_series():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 30, 1))
    y = np.stack([X[0, :, 0], -X[1, :, 0]])
    params = dict(units=(3,), stateful=True, chunk_length=10, max_iter=3, random_state=0,
                  dtype="float64")  # fmt: skip
    only_first = RNNRegressor(**params).fit(X, y, sample_weight=[1.0, 0.0])
    first_alone = RNNRegressor(**params).fit(X[:1], y[:1])
    for a, b in zip(only_first.model_.get_weights(), first_alone.model_.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_stateful_classifier_labels_every_step():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1))
    labels = np.where(np.convolve(X[:, 0], np.ones(3), mode="full")[:300] > 0, "up", "down")
    clf = RNNClassifier(units=(8,), stateful=True, chunk_length=50, max_iter=30,
                        learning_rate_init=0.02, random_state=0)  # fmt: skip
    clf.fit(X, labels)
    clf.reset_states()
    predicted = clf.predict(X)
    assert predicted.shape == (300,) and set(predicted) <= {"up", "down"}
    clf.reset_states()
    assert clf.predict_proba(X).shape == (300, 2)
    clf.reset_states()
    assert clf.score(X, labels) > 0.8
    three = np.digitize(X[:, 0], [-0.5, 0.5])
    multi = RNNClassifier(units=(4,), stateful=True, chunk_length=50, max_iter=2, random_state=0)
    multi.fit(X, three)
    multi.reset_states()
    assert multi.predict_proba(X).shape == (300, 3)


def test_regressor_learns_a_long_memory_task_across_chunks():
    """y[t] = x[t - 3]: with chunk_length=2 the answer often lies in the previous chunk."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 1))
    y = np.concatenate([np.zeros(3), X[:-3, 0]])
    reg = RNNRegressor(units=(16,), stateful=True, chunk_length=8, max_iter=40,
                       learning_rate_init=0.01, random_state=0)  # fmt: skip
    reg.fit(X, y)
    reg.reset_states()
    assert reg.score(X, y) > 0.9


# --------------------------------------------------------------------------
# Early stopping, partial_fit, warm_start, escape hatch, pickling
# --------------------------------------------------------------------------


def test_early_stopping_holds_out_the_end_of_the_series():
    X, y = _series(n_steps=200)
    reg = RNNRegressor(units=(4,), stateful=True, chunk_length=20, max_iter=6,
                       early_stopping=True, validation_fraction=0.25, n_iter_no_change=50,
                       learning_rate_init=0.01, random_state=0)  # fmt: skip
    reg.fit(X, y)
    assert len(reg.validation_scores_) == 6
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    assert reg.best_loss_ is None
    with pytest.raises(ValueError, match="validation part is too small"):
        RNNRegressor(stateful=True, early_stopping=True, validation_fraction=0.01).fit(
            X[:20], y[:20]
        )


def test_partial_fit_and_warm_start_with_another_number_of_series():
    X, y = _series(n_steps=40)
    reg = RNNRegressor(units=(3,), stateful=True, chunk_length=10, random_state=0)
    reg.partial_fit(X, y)
    reg.partial_fit(np.stack([X, X]), np.stack([y, y]))
    assert reg.n_iter_ == 2
    reg.reset_states()
    assert reg.predict(np.stack([X, X, X])).shape == (3, 40)
    warm = RNNRegressor(units=(3,), stateful=True, chunk_length=10, max_iter=2, warm_start=True)
    warm.fit(X, y).fit(X, y)
    assert warm.n_iter_ == 4
    with pytest.raises(ValueError, match="stateful"):
        warm.set_params(stateful=False).fit(np.stack([X] * 3), y[:3])


def test_layers_escape_hatch_is_made_stateful():
    X, y = _series(n_steps=60)
    body = [layers.GRU(4, return_sequences=True), layers.LSTM(3, return_sequences=True)]
    reg = RNNRegressor(layers=body, stateful=True, chunk_length=16, max_iter=1, random_state=0)
    reg.fit(X, y)
    assert all(layer.stateful for layer in reg.model_.layers[:2])
    assert not body[0].stateful  # the user's layers are untouched
    reg.reset_states()
    assert reg.predict(X).shape == (60,)
    bidirectional = [layers.Bidirectional(layers.LSTM(3, return_sequences=True))]
    with pytest.raises(ValueError, match="Bidirectional"):
        RNNRegressor(layers=bidirectional, stateful=True).fit(X, y)


def test_pickle_keeps_weights_and_states():
    X, y = _series(n_steps=50)
    reg = RNNRegressor(units=(3,), stateful=True, chunk_length=10, max_iter=1, random_state=0)
    reg.fit(X, y)
    restored = pickle.loads(pickle.dumps(reg))
    np.testing.assert_array_equal(restored.predict(X[:5]), reg.predict(X[:5]))
    deep = copy.deepcopy(reg)
    np.testing.assert_array_equal(deep.predict(X[:5]), reg.predict(X[:5]))


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(bidirectional=True), "cannot be bidirectional"),
        (dict(per_step=False), "per_step=False"),
        (dict(chunk_length=0), "chunk_length must be a positive int"),
        (dict(chunk_length=2.5), "chunk_length must be a positive int"),
        (dict(stateful="yes"), "stateful must be True or False"),
    ],
)
def test_bad_stateful_options(params, match):
    X, y = _series(n_steps=20)
    with pytest.raises(ValueError, match=match):
        RNNRegressor(**{"stateful": True, **params}).fit(X, y)


def test_bad_series_inputs_leave_a_fitted_estimator_unchanged():
    X, y = _series(n_steps=40)
    reg = RNNRegressor(units=(3,), stateful=True, chunk_length=10, max_iter=1, random_state=0)
    reg.fit(X, y)
    weights = reg.model_.get_weights()
    states = reg.model_.layers[0].states
    unsorted = pd.DataFrame(X, index=pd.Index(np.arange(40)[::-1]))
    bad_fits = [
        ((X, y[:-1]), ValueError, "one target per time step"),
        ((X[:, :, None, None], y), ValueError, "shape"),
        ((np.where(X > 1, np.nan, X), y), ValueError, "NaN"),
        ((unsorted, y), ValueError, "not sorted"),
        ((None, y), TypeError, "X is None"),
        ((X, None), ValueError, "requires y"),
    ]
    for (bad_X, bad_y), error, match in bad_fits:
        with pytest.raises(error, match=match):
            reg.fit(bad_X, bad_y)
        for a, b in zip(weights, reg.model_.get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(states, reg.model_.layers[0].states, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="expecting 2 features"):
        reg.predict(X[:, :1])
    frame = pd.DataFrame(X, columns=["a", "b"])
    named = RNNRegressor(units=(3,), stateful=True, chunk_length=10, max_iter=1).fit(frame, y)
    with pytest.raises(ValueError, match="feature names"):
        named.predict(frame.rename(columns={"a": "c"}))
    index = pd.date_range("2020", periods=40, freq="D")
    with pytest.raises(ValueError, match="no target"):
        RNNRegressor(stateful=True).fit(
            pd.DataFrame(X, index=index), pd.Series(y, index=index + pd.Timedelta("1D"))
        )


def test_non_stateful_estimators_are_unchanged_by_the_new_options():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 6, 2))
    y = X[:, :, 0].mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = RNNRegressor(units=(3,), max_iter=2, random_state=0).fit(X, y)
        b = RNNRegressor(units=(3,), max_iter=2, random_state=0, chunk_length=2).fit(X, y)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert not a.model_.layers[0].stateful
