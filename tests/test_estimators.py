"""Behaviour of RNNClassifier and RNNRegressor: inputs, training loop, errors."""

import pickle
import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from numrnn import RNNClassifier, RNNRegressor, Sequential, layers

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(units=(6,), max_iter=8, learning_rate_init=0.01, random_state=0)


def _sequences(n=40, t=7, f=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, f))
    y_binary = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    y_three = np.digitize(X[:, :, 0].sum(axis=1), [-1.0, 1.0])
    y_real = X[:, :, 0].mean(axis=1) + 0.5 * X[:, -1, -1]
    return X, y_binary, y_three, y_real


def _ragged(n=30, f=2, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 9, size=n)
    X = [rng.normal(size=(length, f)) for length in lengths]
    return X, lengths


def _to_frame(sequences, ids=None):
    rows = []
    for index, seq in enumerate(sequences):
        seq_id = f"s{index}" if ids is None else ids[index]
        for step, values in enumerate(np.atleast_2d(seq.T).T):
            rows.append((seq_id, step, *values))
    n_features = np.atleast_2d(sequences[0].T).T.shape[1]
    columns = ["id", "time"] + [f"f{i}" for i in range(n_features)]
    return pd.DataFrame(rows, columns=columns).set_index(["id", "time"])


def _weights_equal(model_a, model_b):
    weights_a, weights_b = model_a.get_weights(), model_b.get_weights()
    return len(weights_a) == len(weights_b) and all(
        np.array_equal(a, b) for a, b in zip(weights_a, weights_b, strict=True)
    )


# --------------------------------------------------------------------------
# Basic fitting, targets, output shapes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["lstm", "gru", "simple"])
def test_classifier_binary_and_multiclass(cell):
    X, y_binary, y_three, _ = _sequences()
    binary = RNNClassifier(cell=cell, **FAST).fit(X, y_binary)
    assert binary.n_outputs_ == 1 and binary.out_activation_ == "logistic"
    proba = binary.predict_proba(X)
    assert proba.shape == (40, 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(binary.classes_[proba.argmax(axis=1)], binary.predict(X))
    np.testing.assert_allclose(np.exp(binary.predict_log_proba(X)), proba, rtol=1e-10)
    multi = RNNClassifier(cell=cell, **FAST).fit(X, y_three)
    assert multi.n_outputs_ == 3 and multi.out_activation_ == "softmax"
    assert multi.predict_proba(X).shape == (40, 3)
    assert set(multi.predict(X)) <= {0, 1, 2}


def test_string_labels():
    X, y_binary, _, _ = _sequences()
    labels = np.array(["no", "yes"])[y_binary]
    clf = RNNClassifier(**FAST).fit(X, labels)
    np.testing.assert_array_equal(clf.classes_, ["no", "yes"])
    assert set(clf.predict(X)) <= {"no", "yes"}


def test_learns_a_sequence_task():
    X, y_binary, _, y_real = _sequences(n=120, t=10)
    clf = RNNClassifier(units=(12,), max_iter=60, learning_rate_init=0.01, random_state=0)
    assert clf.fit(X, y_binary).score(X, y_binary) > 0.9
    reg = RNNRegressor(units=(12,), max_iter=60, learning_rate_init=0.01, random_state=0)
    assert reg.fit(X, y_real).score(X, y_real) > 0.8


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_regressor_losses_and_output_shapes(loss):
    X, _, _, y_real = _sequences()
    reg = RNNRegressor(loss=loss, **FAST).fit(X, y_real)
    assert reg.predict(X).shape == (40,) and reg.predict(X).dtype == np.float64
    two = np.column_stack([y_real, -y_real])
    reg2 = RNNRegressor(loss=loss, **FAST).fit(X, two)
    assert reg2.n_outputs_ == 2 and reg2.predict(X).shape == (40, 2)
    column = RNNRegressor(loss=loss, **FAST).fit(X, y_real[:, None])
    assert column.predict(X).shape == (40, 1)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_architecture_options(bidirectional):
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(
        units=(5, 4),
        bidirectional=bidirectional,
        merge_mode="sum",
        dropout=0.2,
        recurrent_dropout=0.1,
        head_units=(3,),
        head_activation="tanh",
        cell="gru",
        max_iter=3,
        random_state=0,
    ).fit(X, y_binary)
    names = [type(layer).__name__ for layer in clf.model_.layers]
    recurrent = "Bidirectional" if bidirectional else "GRU"
    assert names == [recurrent, recurrent, "Dense", "Dense"]
    assert clf.model_.layers[0].output_shape[-1] == 5  # merge_mode="sum"
    assert clf.predict(X).shape == (40,)


def test_model_is_usable_on_its_own():
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(dtype="float64", **FAST).fit(X, y_binary)
    assert isinstance(clf.model_, Sequential)
    logits = clf.model_(X)
    proba = 1.0 / (1.0 + np.exp(-logits[:, 0]))
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], proba, rtol=1e-12)


# --------------------------------------------------------------------------
# Input forms
# --------------------------------------------------------------------------


def test_two_dimensional_X_is_univariate_sequences():
    X, y_binary, _, _ = _sequences(f=1)
    X2d = X[:, :, 0]
    clf2d = RNNClassifier(dtype="float64", **FAST).fit(X2d, y_binary)
    assert clf2d.n_features_in_ == 7  # columns, as scikit-learn counts them
    clf3d = RNNClassifier(dtype="float64", **FAST).fit(X, y_binary)
    assert clf3d.n_features_in_ == 1
    np.testing.assert_allclose(clf2d.predict_proba(X2d), clf3d.predict_proba(X), rtol=1e-12)
    # a 3-D fit predicts 2-D univariate sequences of any length
    assert clf3d.predict(X2d[:, :4]).shape == (40,)
    with pytest.raises(ValueError, match="X has 4 features, but RNNClassifier is expecting 7"):
        clf2d.predict(X2d[:, :4])
    with pytest.raises(ValueError, match="fitted on a 2-D X"):
        clf2d.predict(X)


def test_dataframe_columns_give_feature_names():
    X, y_binary, _, _ = _sequences(f=1)
    frame = pd.DataFrame(X[:, :, 0], columns=[f"t{i}" for i in range(7)])
    clf = RNNClassifier(**FAST).fit(frame, y_binary)
    np.testing.assert_array_equal(clf.feature_names_in_, frame.columns)


def test_ragged_list_padding_is_masked():
    X, _ = _ragged()
    y = np.array([int(seq[:, 0].sum() > 0) for seq in X])
    clf = RNNClassifier(dtype="float64", **FAST).fit(X, y)
    together = clf.predict_proba(X)
    alone = np.vstack([clf.predict_proba([seq]) for seq in X])
    np.testing.assert_allclose(together, alone, rtol=1e-10, atol=1e-12)
    # the same sequence with a garbage tail beyond its length is a different input,
    # but padding added by numrnn never leaks into predictions
    padded_longer = X + [np.zeros((20, 2))]
    np.testing.assert_allclose(clf.predict_proba(padded_longer)[:-1], together, rtol=1e-10)


def test_ragged_univariate_list():
    X, _ = _ragged(f=1)
    univariate = [seq[:, 0] for seq in X]
    y = np.array([seq.sum() for seq in univariate])
    reg = RNNRegressor(dtype="float64", **FAST).fit(univariate, y)
    np.testing.assert_allclose(
        reg.predict(univariate), RNNRegressor(dtype="float64", **FAST).fit(X, y).predict(X)
    )


def test_pandas_frame_matches_arrays():
    X, y_binary, _, _ = _sequences(n=12, t=5)
    frame = _to_frame(list(X)).sample(frac=1.0, random_state=0)  # shuffled rows
    clf_frame = RNNClassifier(dtype="float64", **FAST)
    # per-sequence labels aligned by sequence id (given in another order)
    labels = pd.Series(y_binary, index=[f"s{i}" for i in range(12)]).iloc[::-1]
    clf_frame.fit(frame, labels)
    np.testing.assert_array_equal(clf_frame.feature_names_in_, ["f0", "f1"])
    ids = pd.unique(frame.index.get_level_values(0))
    order = [int(i[1:]) for i in ids]  # sequences in order of first appearance
    clf_array = RNNClassifier(dtype="float64", **FAST).fit(X[order], y_binary[order])
    np.testing.assert_allclose(
        clf_frame.predict_proba(frame), clf_array.predict_proba(X[order]), rtol=1e-12
    )
    # score aligns per-sequence labels by id, like fit
    assert clf_frame.score(frame, labels) == clf_array.score(X[order], y_binary[order])
    with pytest.raises(ValueError, match="feature names should match"):
        clf_frame.predict(frame.rename(columns={"f0": "other"}))


# --------------------------------------------------------------------------
# Per-step targets (sequence labelling)
# --------------------------------------------------------------------------


def test_per_step_arrays():
    X, _, _, _ = _sequences()
    y_steps = (X[:, :, 0] > 0).astype(int)
    clf = RNNClassifier(**FAST).fit(X, y_steps)
    assert clf.per_step_
    assert type(clf.model_.layers[-1]).__name__ == "TimeDistributed"
    assert clf.predict(X).shape == (40, 7)
    assert clf.predict_proba(X).shape == (40, 7, 2)
    assert 0.0 <= clf.score(X, y_steps) <= 1.0
    reg = RNNRegressor(**FAST).fit(X, np.stack([X[:, :, 0], X[:, :, 1]], axis=-1))
    assert reg.predict(X).shape == (40, 7, 2)


def test_per_step_ragged_excludes_padding_from_loss_and_score():
    X, lengths = _ragged()
    y_steps = [(seq[:, 0] > 0).astype(int) for seq in X]
    clf = RNNClassifier(units=(8,), max_iter=30, learning_rate_init=0.02, random_state=0)
    clf.fit(X, y_steps)
    predictions = clf.predict(X)
    assert [len(p) for p in predictions] == list(lengths)
    score = clf.score(X, y_steps)
    expected = np.mean(np.concatenate(predictions) == np.concatenate(y_steps))
    assert score == pytest.approx(expected)
    assert score > 0.85
    # a padded (N, T) target array gives the same fit: padded entries never count
    padded = np.full((len(X), lengths.max()), 7)
    for index, labels in enumerate(y_steps):
        padded[index, : len(labels)] = labels
    padded_fit = clone(clf).set_params(per_step=True).fit(X, padded)
    np.testing.assert_array_equal(padded_fit.classes_, [0, 1])  # 7 sits only in padding
    assert _weights_equal(padded_fit.model_, clf.model_)


def test_per_step_early_stopping():
    X, _ = _ragged(n=40)
    y_steps = [seq[:, 0] * 2.0 for seq in X]
    reg = RNNRegressor(**{**FAST, "max_iter": 6}, early_stopping=True).fit(X, y_steps)
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    assert [len(p) for p in reg.predict(X)] == [len(seq) for seq in X]


def test_per_step_pandas_targets_and_output():
    X, _ = _ragged(n=10)
    frame = _to_frame(X)
    target = (frame["f0"] > 0).astype(int)
    shuffled = frame.sample(frac=1.0, random_state=3)
    clf = RNNClassifier(**FAST).fit(shuffled, target.sample(frac=1.0, random_state=4))
    predicted = clf.predict(shuffled)
    assert isinstance(predicted, pd.Series) and predicted.index.equals(shuffled.index)
    proba = clf.predict_proba(shuffled)
    assert isinstance(proba, pd.DataFrame) and list(proba.columns) == [0, 1]
    assert 0.0 <= clf.score(shuffled, target) <= 1.0


def test_per_step_option_resolves_ambiguity():
    X, _, _, _ = _sequences(t=2)
    y = np.column_stack([X[:, 0, 0], X[:, 1, 0]])  # (N, 2) with T == 2
    assert RNNRegressor(**FAST).fit(X, y).per_step_
    explicit = RNNRegressor(per_step=False, **FAST).fit(X, y)
    assert not explicit.per_step_ and explicit.predict(X).shape == (40, 2)


# --------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------


@pytest.mark.parametrize("estimator_class", [RNNClassifier, RNNRegressor])
def test_same_random_state_gives_bit_identical_weights(estimator_class):
    X, y_binary, _, y_real = _sequences()
    y = y_binary if estimator_class is RNNClassifier else y_real
    params = dict(units=(5,), max_iter=4, dropout=0.3, recurrent_dropout=0.2, batch_size=8)
    first = estimator_class(random_state=11, **params).fit(X, y)
    second = estimator_class(random_state=11, **params).fit(X, y)
    assert _weights_equal(first.model_, second.model_)
    assert first.loss_curve_ == second.loss_curve_
    other = estimator_class(random_state=12, **params).fit(X, y)
    assert not _weights_equal(first.model_, other.model_)


def test_loss_curve_and_convergence_warning():
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(**FAST)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.fit(X, y_binary)
    assert clf.n_iter_ == 8 and len(clf.loss_curve_) == 8
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    # a large tol stops early without the warning
    stopped = RNNClassifier(**{**FAST, "max_iter": 50}, tol=10.0, n_iter_no_change=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        stopped.fit(X, y_binary)
    assert stopped.n_iter_ == 4  # as MLPClassifier: stop once the count exceeds n_iter_no_change


def test_early_stopping_restores_best_weights(monkeypatch):
    X, y_binary, _, _ = _sequences(n=60)
    clf = RNNClassifier(
        **{**FAST, "max_iter": 30}, early_stopping=True, n_iter_no_change=3, validation_fraction=0.2
    )
    recorded = []
    original = RNNClassifier._predict_outputs

    def record(self, model, data, indices=None):
        if indices is not None:  # a validation pass: remember the weights it saw
            recorded.append(model.get_weights())
        return original(self, model, data, indices)

    scores = iter([0.5, 0.6, 0.9, 0.7, 0.8, 0.85, 0.6, 0.6, 0.6])
    monkeypatch.setattr(RNNClassifier, "_predict_outputs", record)
    monkeypatch.setattr(RNNClassifier, "_score_outputs", lambda *args: next(scores))
    clf.fit(X, y_binary)
    assert clf.n_iter_ == 7  # best at epoch 3, then 4 epochs without improvement
    assert clf.validation_scores_ == [0.5, 0.6, 0.9, 0.7, 0.8, 0.85, 0.6]
    assert clf.best_validation_score_ == 0.9
    assert clf.best_loss_ is None
    for restored, best in zip(clf.model_.get_weights(), recorded[2], strict=True):
        np.testing.assert_array_equal(restored, best)


def test_early_stopping_real_scores():
    X, y_binary, _, y_real = _sequences(n=80)
    clf = RNNClassifier(**{**FAST, "max_iter": 20}, early_stopping=True).fit(X, y_binary)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    reg = RNNRegressor(**{**FAST, "max_iter": 20}, early_stopping=True).fit(X, y_real)
    assert reg.best_validation_score_ == max(reg.validation_scores_)
    with pytest.raises(ValueError, match="validation set is too small"):
        RNNClassifier(**FAST, early_stopping=True).fit(X[:8], y_binary[:8])


def test_warm_start_continues():
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(**FAST, warm_start=True).fit(X, y_binary)
    first_model = clf.model_
    clf.fit(X, y_binary)
    assert clf.n_iter_ == 16 and len(clf.loss_curve_) == 16
    assert clf.model_ is not first_model  # trained on a copy, committed at the end
    cold = RNNClassifier(**FAST).fit(X, y_binary)
    cold.fit(X, y_binary)
    assert cold.n_iter_ == 8
    with pytest.raises(ValueError, match="not in classes"):
        clf.fit(X, y_binary + 5)


def test_partial_fit():
    X, _, y_three, y_real = _sequences()
    clf = RNNClassifier(**FAST)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y_three)
    assert not hasattr(clf, "model_")
    clf.partial_fit(X[:20], y_three[:20], classes=[0, 1, 2])
    clf.partial_fit(X[20:], y_three[20:])
    assert clf.n_iter_ == 2
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match=r"labels \[7\] that are not in classes"):
        clf.partial_fit(X[:5], np.array([0, 1, 7, 1, 0]))
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X, y_three, classes=[0, 1])
    # a batch with a single class is fine once classes are known
    clf.partial_fit(X[:4], np.zeros(4, dtype=int))
    reg = RNNRegressor(**FAST).partial_fit(X, y_real).partial_fit(X, y_real)
    assert reg.n_iter_ == 2 and len(reg.loss_curve_) == 2


def test_sample_weight_and_class_weight():
    X, y_binary, _, _ = _sequences(n=60)
    common = dict(dtype="float64", units=(6,), max_iter=5, random_state=0, shuffle=False)
    common["batch_size"] = 100
    # zero weights are the same as dropping the samples (one full batch, no shuffling)
    weights = np.ones(60)
    weights[::3] = 0.0
    weighted = RNNClassifier(**common).fit(X, y_binary, sample_weight=weights)
    dropped = RNNClassifier(**common).fit(X[weights > 0], y_binary[weights > 0])
    np.testing.assert_allclose(weighted.predict_proba(X), dropped.predict_proba(X), rtol=1e-9)
    # a heavy class weight pushes every prediction to that class
    heavy = RNNClassifier(
        units=(6,), max_iter=40, learning_rate_init=0.02, random_state=0, class_weight={0: 50, 1: 1}
    ).fit(X, y_binary)
    assert np.mean(heavy.predict(X) == 0) > 0.9
    balanced = RNNClassifier(**FAST, class_weight="balanced").fit(X, y_binary)
    assert balanced.score(X, y_binary) > 0.5
    with pytest.raises(ValueError, match="partial_fit"):
        RNNClassifier(**FAST, class_weight="balanced").partial_fit(X, y_binary, classes=[0, 1])


def test_per_step_class_weight():
    X, lengths = _ragged()
    y_steps = [(seq[:, 0] > 0).astype(int) for seq in X]
    clf = RNNClassifier(**FAST, class_weight={0: 1.0, 1: 3.0}).fit(X, y_steps)
    assert len(clf.predict(X)) == len(lengths)


def test_l2_penalty_shrinks_kernels_not_biases():
    X, _, _, y_real = _sequences()
    base = dict(units=(6,), max_iter=20, learning_rate_init=0.01, random_state=0)
    free = RNNRegressor(alpha=0.0, **base).fit(X, y_real)
    strong = RNNRegressor(alpha=50.0, **base).fit(X, y_real)
    kernel_norm = lambda model: np.linalg.norm(model.layers[-1].kernel)  # noqa: E731
    assert kernel_norm(strong.model_) < 0.7 * kernel_norm(free.model_)
    assert strong.loss_curve_[0] > free.loss_curve_[0]  # the penalty is part of the loss


def test_penalty_skips_every_bias():
    from numrnn.estimators._base import _penalized_flags

    model = Sequential(
        [
            layers.Bidirectional(layers.GRU(3, return_sequences=True)),
            layers.LSTM(2, return_sequences=True),
            layers.TimeDistributed(layers.Dense(2)),
        ]
    )
    model.build((None, None, 4))
    flags = _penalized_flags(model)
    # kernel, recurrent kernel, bias (x2 directions), LSTM x3, Dense kernel + bias
    assert flags == [True, True, False] * 3 + [True, False]


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_optimizers_and_clipping(optimizer):
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(**FAST, optimizer=optimizer, clipnorm=1.0).fit(X, y_binary)
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    RNNClassifier(**FAST, optimizer=optimizer, clipvalue=0.1).fit(X, y_binary)


def test_verbose_progress_bar(capsys):
    X, y_binary, _, _ = _sequences()
    RNNClassifier(**FAST, verbose=1, early_stopping=True).fit(X, y_binary)
    captured = capsys.readouterr()
    output = captured.err + captured.out
    assert "loss=" in output and "val_score=" in output


def test_layers_escape_hatch():
    X, y_binary, _, _ = _sequences()
    body = [layers.GRU(5, return_sequences=True, seed=1), layers.LSTM(4, seed=2)]
    clf = RNNClassifier(layers=body, max_iter=3, random_state=0).fit(X, y_binary)
    assert [type(layer).__name__ for layer in clf.model_.layers] == ["GRU", "LSTM", "Dense"]
    assert not body[0].built  # the given layers are copied, never trained
    again = RNNClassifier(layers=body, max_iter=3, random_state=0).fit(X, y_binary)
    assert _weights_equal(clf.model_, again.model_)
    cloned = clone(clf)
    assert cloned.layers is not body and len(cloned.layers) == 2


# --------------------------------------------------------------------------
# Failures: errors and nothing lost
# --------------------------------------------------------------------------


def _snapshot(estimator):
    return dict(estimator.__dict__), estimator.model_.get_weights()


def _assert_unchanged(estimator, snapshot):
    attributes, weights = snapshot
    assert estimator.__dict__.keys() == attributes.keys()
    for key, value in attributes.items():
        assert estimator.__dict__[key] is value, key
    for current, saved in zip(estimator.model_.get_weights(), weights, strict=True):
        np.testing.assert_array_equal(current, saved)


BAD_FITS = [
    (lambda X, y: (np.where(X > 2, np.nan, X), y), ValueError, "NaN"),
    (lambda X, y: (np.where(X > 2, np.inf, X), y), ValueError, "infinity"),
    (lambda X, y: (X, np.where(np.arange(len(y)) == 3, np.nan, y)), ValueError, "NaN"),
    (lambda X, y: (X[:, :, 0].ravel(), y), ValueError, "got 1D"),
    (lambda X, y: (X[None], y), ValueError, "got 4D"),
    (lambda X, y: (X[:0], y[:0]), ValueError, "0 sample"),
    (lambda X, y: (X[:, :, :0], y), ValueError, "0 feature"),
    (lambda X, y: (X, y[:-1]), ValueError, "inconsistent numbers of samples"),
    (lambda X, y: (X.astype(str), y), TypeError, "numbers only"),
]


@pytest.mark.parametrize("make_bad, error, match", BAD_FITS)
def test_bad_input_errors_leave_fitted_estimator_unchanged(make_bad, error, match):
    X, y_binary, _, _ = _sequences()
    for estimator, y in ((RNNClassifier(**FAST), y_binary), (RNNRegressor(**FAST), y_binary * 1.0)):
        estimator.fit(X, y)
        snapshot = _snapshot(estimator)
        predictions = estimator.predict(X)
        bad_X, bad_y = make_bad(X, y)
        with pytest.raises(error, match=match):
            estimator.fit(bad_X, bad_y)
        _assert_unchanged(estimator, snapshot)
        np.testing.assert_array_equal(estimator.predict(X), predictions)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"cell": "transformer"}, "Unknown cell 'transformer'"),
        ({"optimizer": "adagrad"}, "Unknown optimizer"),
        ({"merge_mode": None}, "Unknown merge_mode"),
        ({"units": ()}, "units must hold at least one"),
        ({"units": (4, -1)}, "units must hold positive ints"),
        ({"head_activation": "gelu"}, "Unknown head_activation"),
        ({"per_step": "yes"}, "per_step must be"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"max_iter": 0}, "max_iter must be a positive int"),
        ({"dropout": 1.0}, "dropout must be a float in"),
        ({"learning_rate_init": -1.0}, "learning_rate_init"),
        ({"clipnorm": 1.0, "clipvalue": 1.0}, "at most one of clipnorm and clipvalue"),
        ({"validation_fraction": 1.5}, "validation_fraction"),
        ({"dtype": "float16"}, "Unknown dtype"),
        ({"random_state": "seed"}, "random_state must be"),
        ({"class_weight": "heavy"}, "class_weight must be"),
    ],
)
def test_unknown_options_are_named(params, match):
    X, y_binary, _, _ = _sequences()
    with pytest.raises(ValueError, match=match):
        RNNClassifier(**{**FAST, **params}).fit(X, y_binary)


def test_regressor_unknown_loss_and_bad_layers():
    X, _, _, y_real = _sequences()
    with pytest.raises(ValueError, match="Unknown loss 'hinge'"):
        RNNRegressor(loss="hinge").fit(X, y_real)
    with pytest.raises(TypeError, match="layers must be None or a non-empty list"):
        RNNRegressor(layers=["lstm"]).fit(X, y_real)


def test_predict_errors():
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(**FAST)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.fit(X, y_binary)
    with pytest.raises(ValueError, match="X has 3 features per time step, but RNNClassifier"):
        clf.predict(np.concatenate([X, X[:, :, :1]], axis=2))
    with pytest.raises(ValueError, match="X has 1 features per time step"):
        clf.predict(X[:, :, 0])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.full((2, 7, 2), np.nan))
    with pytest.raises(TypeError, match="Sparse"):
        import scipy.sparse as sp

        clf.predict(sp.csr_matrix(np.ones((3, 3))))


def test_one_class_is_an_error():
    X, _, _, _ = _sequences()
    with pytest.raises(ValueError, match="only 1 class"):
        RNNClassifier(**FAST).fit(X, np.ones(40))
    with pytest.raises(ValueError, match="Unknown label type"):
        RNNClassifier(**FAST).fit(X, np.linspace(0, 1, 40))


def _failing_loss(estimator_class, fail_at_call, exception):
    original = estimator_class._loss_function
    calls = {"n": 0}

    def loss_function(self):
        inner = original(self)

        def wrapped(y_true, y_pred, **kwargs):
            calls["n"] += 1
            if calls["n"] == fail_at_call:
                if exception is None:
                    value, grad = inner(y_true, y_pred, **kwargs)
                    return float("nan"), grad
                raise exception
            return inner(y_true, y_pred, **kwargs)

        return wrapped

    return loss_function


def test_non_finite_loss_stops_and_keeps_last_finite_weights(monkeypatch):
    X, _, _, y_real = _sequences()
    params = dict(units=(5,), max_iter=10, batch_size=40, random_state=0)  # 1 batch per epoch
    reference = RNNRegressor(**{**params, "max_iter": 3}).fit(X, y_real)
    monkeypatch.setattr(
        RNNRegressor, "_loss_function", _failing_loss(RNNRegressor, 4, exception=None)
    )
    reg = RNNRegressor(**params)
    with pytest.raises(ValueError, match="non-finite .* epoch 4"):
        reg.fit(X, y_real)
    assert reg.n_iter_ == 3 and len(reg.loss_curve_) == 3
    assert _weights_equal(reg.model_, reference.model_)
    assert np.isfinite(reg.predict(X)).all()


def test_overflowing_targets_give_a_clear_error():
    X, _, _, y_real = _sequences()
    reg = RNNRegressor(**FAST).fit(X, y_real)
    weights = reg.model_.get_weights()
    with pytest.raises(ValueError, match="non-finite"):
        reg.set_params(warm_start=True).fit(X, y_real * 1e200)
    assert all(np.array_equal(a, b) for a, b in zip(reg.model_.get_weights(), weights, strict=True))


def test_keyboard_interrupt_keeps_last_completed_epoch(monkeypatch):
    X, y_binary, _, _ = _sequences()
    params = dict(units=(5,), max_iter=10, batch_size=20, random_state=0)  # 2 batches per epoch
    reference = RNNClassifier(**{**params, "max_iter": 2}).fit(X, y_binary)
    monkeypatch.setattr(
        RNNClassifier,
        "_loss_function",
        _failing_loss(RNNClassifier, 6, exception=KeyboardInterrupt),  # epoch 3, batch 2
    )
    clf = RNNClassifier(**params)
    with pytest.warns(UserWarning, match="interrupted after 2 epoch"):
        clf.fit(X, y_binary)
    assert clf.n_iter_ == 2
    assert _weights_equal(clf.model_, reference.model_)


def test_keyboard_interrupt_during_validation(monkeypatch):
    X, y_binary, _, _ = _sequences(n=60)
    scores = iter([0.7, 0.6])

    def score_then_interrupt(*args):
        value = next(scores, None)
        if value is None:
            raise KeyboardInterrupt
        return value

    monkeypatch.setattr(RNNClassifier, "_score_outputs", score_then_interrupt)
    clf = RNNClassifier(**{**FAST, "max_iter": 10}, early_stopping=True)
    with pytest.warns(UserWarning, match="interrupted after 2 epoch"):
        clf.fit(X, y_binary)
    assert clf.n_iter_ == 2 and len(clf.loss_curve_) == 2
    assert clf.validation_scores_ == [0.7, 0.6] and clf.best_validation_score_ == 0.7


def test_keyboard_interrupt_in_first_epoch_propagates(monkeypatch):
    X, y_binary, _, _ = _sequences()
    monkeypatch.setattr(
        RNNClassifier, "_loss_function", _failing_loss(RNNClassifier, 1, KeyboardInterrupt)
    )
    clf = RNNClassifier(**FAST)
    with pytest.raises(KeyboardInterrupt):
        clf.fit(X, y_binary)
    assert not hasattr(clf, "model_")


# --------------------------------------------------------------------------
# scikit-learn integration
# --------------------------------------------------------------------------


def test_pipeline_with_transformer():
    X, y_binary, _, _ = _sequences(f=1)
    pipe = make_pipeline(StandardScaler(), RNNClassifier(**FAST))
    pipe.fit(X[:, :, 0], y_binary)
    assert pipe.predict(X[:, :, 0]).shape == (40,)
    assert 0.0 <= pipe.score(X[:, :, 0], y_binary) <= 1.0


def test_grid_search_parallel_and_cross_val_score():
    X, y_binary, _, y_real = _sequences(n=48, f=1)
    X2d = X[:, :, 0]
    search = GridSearchCV(
        RNNClassifier(units=(4,), max_iter=3, random_state=0),
        {"cell": ["lstm", "gru"], "learning_rate_init": [0.01, 0.03]},
        cv=2,
        n_jobs=2,
    ).fit(X2d, y_binary)
    assert search.best_params_["cell"] in ("lstm", "gru")
    scores = cross_val_score(RNNRegressor(**FAST), X, y_real, cv=3)
    assert scores.shape == (3,)


def test_clone_pickle_and_joblib_roundtrip(tmp_path):
    X, y_binary, _, _ = _sequences()
    clf = RNNClassifier(**FAST).fit(X, y_binary)
    assert not hasattr(clone(clf), "model_")
    assert clone(clf).get_params() == clf.get_params()
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    path = tmp_path / "model.joblib"
    joblib.dump(clf, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(X), clf.predict_proba(X))
    # training continues identically after a round trip
    clf.set_params(warm_start=True)
    restored.set_params(warm_start=True)
    assert _weights_equal(clf.fit(X, y_binary).model_, restored.fit(X, y_binary).model_)
