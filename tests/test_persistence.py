"""numrnn.persistence: safe save/load round trips and attacks on the format."""

import io
import json
import pickle
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from numrnn import RNNClassifier, RNNRegressor, Sequential, layers
from numrnn.persistence import FORMAT_VERSION, FormatError, load, register_layer, save

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(max_iter=3, learning_rate_init=0.01, random_state=0)


def _data(n=24, t=6, f=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, f))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def fitted_classifier():
    X, y = _data()
    clf = RNNClassifier(units=(4,), bidirectional=True, head_units=(3,), **FAST).fit(X, y)
    return clf, X, y


@pytest.fixture(params=["zip", "directory"])
def fmt(request):
    return request.param


def _path(tmp_path, fmt, name="obj"):
    return tmp_path / (f"{name}.zip" if fmt == "zip" else name)


def _roundtrip(obj, tmp_path, fmt="zip", **load_kwargs):
    path = _path(tmp_path, fmt)
    save(obj, path, format=fmt)
    return load(path, **load_kwargs)


def _assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------


def test_classifier_roundtrip_is_bit_identical(fitted_classifier, tmp_path, fmt):
    clf, X, y = fitted_classifier
    again = _roundtrip(clf, tmp_path, fmt)
    assert type(again) is RNNClassifier
    assert again.get_params() == clf.get_params()
    assert again.get_params()["units"] == (4,)  # tuples stay tuples
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    np.testing.assert_array_equal(again.predict(X), clf.predict(X))
    for name in ("classes_", "n_features_in_", "n_iter_", "loss_curve_", "n_outputs_"):
        np.testing.assert_array_equal(getattr(again, name), getattr(clf, name))
    assert again.validation_scores_ is None and again.best_validation_score_ is None
    _assert_same_weights(again.model_, clf.model_)
    assert again.score(X, y) == clf.score(X, y)


def test_continued_training_after_load_matches(fitted_classifier, tmp_path):
    # optimizer slots, iteration count and random generators come back too
    clf, X, y = fitted_classifier
    again = _roundtrip(clf, tmp_path)
    original = pickle.loads(pickle.dumps(clf))
    original.partial_fit(X, y)
    again.partial_fit(X, y)
    _assert_same_weights(again.model_, original.model_)
    assert again.loss_curve_ == original.loss_curve_


def test_string_labels_and_dataframe_input(tmp_path):
    X, y = _data(n=18, t=4, f=2, seed=1)
    labels = np.array(["cat", "dog", "emu"], dtype=object)[np.arange(len(y)) % 3]
    rows = [(f"s{i}", step, *X[i, step]) for i in range(len(X)) for step in range(X.shape[1])]
    frame = pd.DataFrame(rows, columns=["id", "time", "a", "b"]).set_index(["id", "time"])
    clf = RNNClassifier(units=(3,), cell="gru", **FAST).fit(frame, labels)
    again = _roundtrip(clf, tmp_path)
    assert again.classes_.dtype == clf.classes_.dtype
    np.testing.assert_array_equal(again.classes_, clf.classes_)
    assert again.feature_names_in_.dtype == object
    np.testing.assert_array_equal(again.feature_names_in_, ["a", "b"])
    np.testing.assert_array_equal(again.predict(frame), clf.predict(frame))
    np.testing.assert_array_equal(again.predict_proba(frame), clf.predict_proba(frame))


def test_regressor_float64_ragged_per_step(tmp_path, fmt):
    rng = np.random.default_rng(2)
    lengths = rng.integers(2, 7, size=15)
    X = [rng.normal(size=(n, 2)) for n in lengths]
    y = [x.sum(axis=1) for x in X]
    reg = RNNRegressor(cell="simple", units=(3, 2), dtype="float64", **FAST).fit(X, y)
    again = _roundtrip(reg, tmp_path, fmt)
    assert again.model_.layers[0].dtype == np.float64
    for a, b in zip(again.predict(X), reg.predict(X)):
        np.testing.assert_array_equal(a, b)


def test_estimator_with_layers_parameter(tmp_path):
    X, y = _data(n=16, t=5, f=2, seed=3)
    body = [layers.Masking(), layers.LSTM(3, return_sequences=True), layers.GRU(2)]
    reg = RNNRegressor(layers=body, **FAST).fit(X, y.astype(float))
    again = _roundtrip(reg, tmp_path)
    assert [type(la) for la in again.layers] == [type(la) for la in body]
    assert [la.get_config() for la in again.layers] == [la.get_config() for la in body]
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))


def test_unfitted_estimator_roundtrip(tmp_path):
    clf = RNNClassifier(units=(5, 2), cell="gru", class_weight={0: 1.0, 1: 2.5}, alpha=0.0)
    again = _roundtrip(clf, tmp_path)
    assert again.get_params() == clf.get_params()
    assert not hasattr(again, "model_")


def _float_model():
    return Sequential(
        [
            layers.Input(shape=(5, 3)),
            layers.Masking(mask_value=0.0),
            layers.Bidirectional(
                layers.GRU(3, reset_after=False, return_sequences=True, seed=1), merge_mode="sum"
            ),
            layers.TimeDistributed(layers.Dense(4, activation="tanh", seed=2)),
            layers.Dropout(0.3, seed=3),
            layers.SimpleRNN(2, go_backwards=True, seed=4),
            layers.Dense(1, seed=5),
        ],
        name="float_model",
    )


def test_sequential_roundtrip_all_layer_kinds(tmp_path, fmt):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    x[0, :2] = 0.0  # masked steps
    model = _float_model()
    again = _roundtrip(model, tmp_path, fmt)
    assert again.name == "float_model"
    assert [la.name for la in again.layers] == [la.name for la in model.layers]
    assert again.layers[1].backward_layer.name == model.layers[1].backward_layer.name
    _assert_same_weights(again, model)
    np.testing.assert_array_equal(again(x), model(x))
    # dropout and recurrent generators come back too: training outputs match
    np.testing.assert_array_equal(again(x, training=True), model(x, training=True))

    tokens = Sequential(
        [
            layers.Embedding(7, 3, mask_zero=True, dtype="float64"),
            layers.LSTM(2, dtype="float64"),
            layers.Dense(1, dtype="float64"),
        ]
    )
    ids = np.array([[1, 2, 0, 0], [3, 4, 5, 6]])
    tokens.build(ids.shape)
    expected = tokens(ids)
    (tmp_path / "tokens").mkdir()
    restored = _roundtrip(tokens, tmp_path / "tokens", fmt)
    np.testing.assert_array_equal(restored(ids), expected)


def test_stateful_states_restored_only_when_asked(tmp_path):
    rng = np.random.default_rng(5)
    model = Sequential(
        [
            layers.Input(shape=(4, 2), batch_size=3),
            layers.LSTM(3, stateful=True, return_sequences=True, seed=0),
            layers.Bidirectional(layers.GRU(2, stateful=True, seed=1)),
            layers.Dense(1, seed=2),
        ]
    )
    chunk1, chunk2 = rng.normal(size=(2, 3, 4, 2)).astype("float32")
    model(chunk1)
    path = tmp_path / "stateful.zip"
    save(model, path)
    with_states = load(path, restore_states=True)
    without = load(path)
    assert with_states.layers[0].states is not None
    for a, b in zip(with_states.layers[0].states, model.layers[0].states):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(with_states.layers[1].states, model.layers[1].states):
        np.testing.assert_array_equal(a, b)
    assert all(not s.any() for s in without.layers[0].states)
    expected = model(chunk2)
    np.testing.assert_array_equal(with_states(chunk2), expected)
    model.reset_states()
    np.testing.assert_array_equal(without(chunk2), model(chunk2))
    assert not np.array_equal(without(chunk2), expected)


def test_unbuilt_model_and_single_layer(tmp_path):
    model = Sequential([layers.LSTM(3, seed=0), layers.Dense(2, seed=1)])
    again = _roundtrip(model, tmp_path)
    assert not again.built
    x = np.random.default_rng(6).normal(size=(2, 4, 5)).astype("float32")
    np.testing.assert_array_equal(again(x), model(x))

    layer = layers.GRU(4, return_sequences=True, seed=3)
    layer.build((None, None, 5))
    (tmp_path / "layer").mkdir()
    restored = _roundtrip(layer, tmp_path / "layer")
    assert isinstance(restored, layers.GRU) and restored.get_config() == layer.get_config()
    np.testing.assert_array_equal(restored(x), layer(x))


def test_generic_attribute_values_roundtrip(tmp_path):
    """Values a forecaster may keep: pandas indexes, timestamps, numpy scalars..."""
    reg = RNNRegressor()
    values = {
        "daily_": pd.date_range("2024-03-30", periods=4, freq="D", tz="Europe/Berlin", name="t"),
        "hourly_": pd.date_range("2024-01-01", periods=3, freq="h"),
        "irregular_": pd.DatetimeIndex(["2024-01-01", "2024-01-05"]),
        "months_": pd.period_range("2020-01", periods=3, freq="M"),
        "deltas_": pd.timedelta_range("1s", periods=3, freq="s"),
        "range_": pd.RangeIndex(2, 20, 3, name="step"),
        "ids_": pd.Index(["a", "b", "c"], name="id"),
        "object_ids_": pd.Index(np.array(["x", "y"], dtype=object)),
        "ints_": pd.Index([3, 1, 2], dtype="int32"),
        "multi_": pd.MultiIndex.from_product([["a", "b"], [0, 1]], names=["id", "time"]),
        "series_": pd.Series([1.5, 2.5], index=pd.Index(["u", "v"]), name="y"),
        "frame_": pd.DataFrame({"a": [1, 2], "b": ["p", "q"]}, index=pd.RangeIndex(2)),
        "last_time_": pd.Timestamp("2024-01-02 03:04:05.123456", tz="UTC"),
        "step_": pd.Timedelta("90min"),
        "period_": pd.Period("2024-05", freq="M"),
        "freq_": pd.tseries.frequencies.to_offset("15min"),
        "scalar_": np.float32(1.25),
        "count_": np.int64(7),
        "flag_": np.bool_(True),
        "dtype_": np.dtype("float32"),
        "nested_": {1: (2.0, float("inf")), "k": [None, float("nan"), "s"], (1, "a"): {}},
        "tricky_": {"__kind__": "not a tag"},
        "bytes_": np.array([b"ab", b"c"]),
        "when_": np.array(["2024-01-01T00:00"], dtype="datetime64[m]"),
    }
    for key, value in values.items():
        setattr(reg, key, value)
    again = _roundtrip(reg, tmp_path)
    for key, value in values.items():
        restored = getattr(again, key)
        assert type(restored) is type(value), key
        if isinstance(value, pd.Index):
            pd.testing.assert_index_equal(restored, value, exact=True)
            assert getattr(restored, "freq", None) == getattr(value, "freq", None), key
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(restored, value)
        elif isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(restored, value)
        elif isinstance(value, np.ndarray):
            assert restored.dtype == value.dtype
            np.testing.assert_array_equal(restored, value)
        elif key == "nested_":
            assert set(restored) == set(value) and restored[1] == value[1]
            assert restored["k"][0] is None and np.isnan(restored["k"][1])
        elif isinstance(value, np.generic):
            assert restored.dtype == value.dtype and restored == value
        else:
            assert restored == value, key


# --------------------------------------------------------------------------
# What save refuses
# --------------------------------------------------------------------------


def test_save_rejects_what_the_format_cannot_hold(tmp_path):
    path = tmp_path / "x.zip"
    with pytest.raises(TypeError, match="random_state"):
        save(RNNClassifier(random_state=np.random.RandomState(0)), path)
    reg = RNNRegressor()
    reg.callback_ = lambda: None
    with pytest.raises(TypeError, match="attribute 'callback_'.*pickle"):
        save(reg, path)
    reg = RNNRegressor()
    reg.mixed_ = np.array(["a", 1], dtype=object)
    with pytest.raises(TypeError, match="object array"):
        save(reg, path)
    with pytest.raises(TypeError, match="not registered"):
        save(LogisticRegression(), path)
    layer = layers.LSTM(2, kernel_initializer=lambda shape, dtype, rng: np.zeros(shape, dtype))
    with pytest.raises(TypeError, match="kernel_initializer"):
        save(layer, path)
    with pytest.raises(TypeError, match="expects a numrnn estimator"):
        save({"a": 1}, path)
    with pytest.raises(ValueError, match="Unknown format"):
        save(reg, path, format="pickle")
    assert not path.exists()


def test_save_does_not_clobber(tmp_path):
    model = Sequential([layers.Dense(1)])
    path = tmp_path / "m.zip"
    save(model, path)
    with pytest.raises(FileExistsError):
        save(model, path)
    save(model, path, overwrite=True)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="other files"):
        save(model, folder, format="directory", overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"


def test_register_layer_rejects_non_layers():
    with pytest.raises(TypeError, match="Layer subclass"):
        register_layer(dict)


# --------------------------------------------------------------------------
# Pickle and joblib keep working
# --------------------------------------------------------------------------


def test_pickle_and_joblib_still_work(fitted_classifier, tmp_path):
    clf, X, _ = fitted_classifier
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(clf)).predict_proba(X),
                                  clf.predict_proba(X))  # fmt: skip
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "clf.joblib").predict_proba(X), clf.predict_proba(X)
    )


# --------------------------------------------------------------------------
# Attacks: every tampered file raises FormatError and executes nothing
# --------------------------------------------------------------------------


class _Marker:
    """Unpickling this creates ``path`` (proof that code ran)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _read_parts(path):
    with zipfile.ZipFile(path) as archive:
        manifest = json.loads(archive.read("numrnn.json"))
        with np.load(io.BytesIO(archive.read("arrays.npz")), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    return manifest, arrays


def _write_parts(path, manifest, arrays=None, arrays_bytes=None, extra=None):
    if arrays_bytes is None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        arrays_bytes = buffer.getvalue()
    manifest_bytes = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("numrnn.json", manifest_bytes)
        archive.writestr("arrays.npz", arrays_bytes)
        for name, data in (extra or {}).items():
            archive.writestr(name, data)


@pytest.fixture
def saved(tmp_path, fitted_classifier):
    clf = fitted_classifier[0]
    path = tmp_path / "good.zip"
    save(clf, path)
    return path


def _tamper(saved, tmp_path, edit_manifest=None, edit_arrays=None, **kwargs):
    manifest, arrays = _read_parts(saved)
    if edit_manifest is not None:
        edit_manifest(manifest)
    if edit_arrays is not None:
        edit_arrays(arrays)
    target = tmp_path / "tampered.zip"
    _write_parts(target, manifest, arrays, **kwargs)
    return target


def _first_layer(manifest):
    return manifest["object"]["attributes"]["model_"]["layers"][0]


def _set(key, value):
    def edit(manifest):
        manifest[key] = value

    return edit


ATTACKS = {
    "newer format version": (_set("format_version", FORMAT_VERSION + 1), "newer"),
    "format version as text": (_set("format_version", "1"), "format_version"),
    "not a numrnn file": (_set("format", "keras"), "Not a numrnn file"),
    "unknown layer": (
        lambda m: _first_layer(m).update({"class": "Lambda"}),
        "unknown layer class 'Lambda'",
    ),
    "unknown estimator": (
        lambda m: m["object"].update({"class": "os.system"}),
        "unknown estimator class 'os.system'",
    ),
    "sklearn estimator not registered": (
        lambda m: m["object"].update({"class": "LogisticRegression"}),
        "unknown estimator class",
    ),
    "unknown value kind": (
        lambda m: m["object"]["attributes"].update(
            {"n_iter_": {"__kind__": "pickle", "data": "gASV"}}
        ),
        "unknown value kind 'pickle'",
    ),
    "dunder attribute": (
        lambda m: m["object"]["attributes"].update({"__class__": 1}),
        "not a valid fitted attribute",
    ),
    "method shadowing attribute": (
        lambda m: m["object"]["attributes"].update({"predict": "x"}),
        "not a valid fitted attribute",
    ),
    "unknown parameter": (
        lambda m: m["object"]["params"].update({"evil": 1}),
        "no parameter",
    ),
    "invalid parameter value": (
        lambda m: _first_layer(m)["forward_layer"]["config"].update({"units": -3}),
        "cannot rebuild",
    ),
    "manifest shape edited": (
        lambda m: _first_layer(m)["forward_layer"]["weights"][0].update({"shape": [9, 16]}),
        "inconsistent",
    ),
    "missing array key": (
        lambda m: _first_layer(m)["forward_layer"]["weights"][0].update({"key": "zz"}),
        "missing",
    ),
    "extra keys in an entry": (
        lambda m: _first_layer(m).update({"code": "import os"}),
        "unexpected keys",
    ),
    "bad generator": (
        lambda m: m["object"]["attributes"]["_rng"]["state"].update({"bit_generator": "Evil"}),
        "unknown bit generator",
    ),
    "states on a stateless layer": (
        lambda m: _first_layer(m)["forward_layer"].update(
            {"states": _first_layer(m)["forward_layer"]["weights"][:2]}
        ),
        "not stateful",
    ),
}


@pytest.mark.parametrize("case", sorted(ATTACKS))
def test_tampered_manifest_raises(case, saved, tmp_path):
    edit, message = ATTACKS[case]
    target = _tamper(saved, tmp_path, edit_manifest=edit)
    with pytest.raises(FormatError, match=message):
        load(target)


def test_wrong_array_shapes_and_dtypes(saved, tmp_path):
    manifest, arrays = _read_parts(saved)
    entry = _first_layer(manifest)["forward_layer"]["weights"][0]
    key = entry["key"]
    # array swapped for another shape, manifest untouched
    arrays_wrong = dict(arrays, **{key: np.zeros((5, 16), arrays[key].dtype)})
    target = tmp_path / "shape.zip"
    _write_parts(target, manifest, arrays_wrong)
    with pytest.raises(FormatError, match="inconsistent"):
        load(target)
    # array and manifest changed together: the layer still refuses the shape
    entry["shape"] = [5, 16]
    _write_parts(target, manifest, arrays_wrong)
    with pytest.raises(FormatError, match=r"weight 0 has shape \(5, 16\).*expects \(2, 16\)"):
        load(target)
    # float64 weights for a float32 layer
    entry["shape"] = list(arrays[key].shape)
    entry["dtype"] = "<f8"
    _write_parts(target, manifest, dict(arrays, **{key: arrays[key].astype(np.float64)}))
    with pytest.raises(FormatError, match="dtype float64"):
        load(target)


def test_npy_header_is_checked_before_reading(saved, tmp_path):
    # a header claiming 4 TB of data must be refused before numpy allocates it
    manifest, arrays = _read_parts(saved)
    key = _first_layer(manifest)["forward_layer"]["weights"][0]["key"]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as npz:
        for name, array in arrays.items():
            member = io.BytesIO()
            if name == key:
                header = {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
                np.lib.format.write_array_header_1_0(member, header)
            else:
                np.save(member, array)
            npz.writestr(f"{name}.npy", member.getvalue())
    target = tmp_path / "header.zip"
    _write_parts(target, manifest, arrays_bytes=buffer.getvalue())
    with pytest.raises(FormatError, match=r"shape \[1000000000000\].*inconsistent"):
        load(target)


def test_unreferenced_array_is_rejected(saved, tmp_path):
    target = _tamper(saved, tmp_path, edit_arrays=lambda a: a.update(extra=np.zeros(3)))
    with pytest.raises(FormatError, match="does not mention"):
        load(target)


def test_object_array_is_never_unpickled(saved, tmp_path):
    marker = tmp_path / "pwned"
    manifest, arrays = _read_parts(saved)
    key = _first_layer(manifest)["forward_layer"]["weights"][0]["key"]
    arrays[key] = np.array([_Marker(marker)], dtype=object)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # pickles the object array
    target = tmp_path / "object.zip"
    _write_parts(target, manifest, arrays_bytes=buffer.getvalue())
    with pytest.raises(FormatError, match="pickle"):
        load(target)
    # a raw pickle instead of the npz archive
    _write_parts(target, manifest, arrays_bytes=pickle.dumps(_Marker(marker)))
    with pytest.raises(FormatError, match="npz"):
        load(target)
    assert not marker.exists()


def test_extra_or_missing_zip_members(saved, tmp_path):
    manifest, arrays = _read_parts(saved)
    target = tmp_path / "extra.zip"
    _write_parts(target, manifest, arrays, extra={"payload.pkl": b"x"})
    with pytest.raises(FormatError, match="exactly"):
        load(target)
    with zipfile.ZipFile(target, "w") as archive:
        archive.writestr("numrnn.json", json.dumps(manifest))
    with pytest.raises(FormatError, match="exactly"):
        load(target)


@pytest.mark.parametrize(
    "text, message",
    [
        (b'{"format": "numrnn", "format_version": 1, "object": ', "not valid JSON"),
        (b'{"format": "numrnn", "format_version": 1, "object": NaN}', "non-standard"),
        (b'{"format": "numrnn", "format": "numrnn", "format_version": 1}', "repeats"),
        (b"\xff\xfe", "UTF-8"),
        (b"[1, 2]", "JSON object"),
        (b'{"format": "numrnn", "format_version": 1, "object": ' + b"[" * 100000, "nested"),
    ],
)
def test_malformed_manifest(text, message, saved, tmp_path):
    _, arrays = _read_parts(saved)
    target = tmp_path / "bad.zip"
    _write_parts(target, text, arrays)
    with pytest.raises(FormatError, match=message):
        load(target)


def test_truncated_and_corrupted_archives(saved, tmp_path):
    data = saved.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 100):
        target = tmp_path / f"cut{cut}.zip"
        target.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="zip"):
            load(target)
    corrupted = bytearray(data)
    start = data.index(b"numrnn.json") + 60  # inside the compressed manifest
    corrupted[start : start + 20] = bytes(20)
    target = tmp_path / "corrupt.zip"
    target.write_bytes(bytes(corrupted))
    with pytest.raises(FormatError):
        load(target)
    (tmp_path / "empty.zip").write_bytes(b"")
    with pytest.raises(FormatError, match="not a numrnn file"):
        load(tmp_path / "empty.zip")
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "nowhere.zip")


def test_tampered_directory(tmp_path):
    model = Sequential([layers.Input(shape=(3, 2)), layers.GRU(2, seed=0)])
    folder = tmp_path / "model"
    save(model, folder, format="directory")
    (folder / "arrays.npz").unlink()
    with pytest.raises(FormatError, match="missing"):
        load(folder)
    save(model, folder, format="directory", overwrite=True)
    manifest = json.loads((folder / "numrnn.json").read_text())
    manifest["format_version"] = 99
    (folder / "numrnn.json").write_text(json.dumps(manifest))
    with pytest.raises(FormatError, match="version 99"):
        load(folder)


def test_forecaster_roundtrip_keeps_the_carried_state(tmp_path):
    import numrnn

    if not hasattr(numrnn, "RNNForecaster"):
        pytest.skip("RNNForecaster is not available")
    index = pd.date_range("2024-01-01", periods=80, freq="D")
    y = pd.Series(np.sin(np.arange(80) / 4.0), index=index, name="y")
    forecaster = numrnn.RNNForecaster(units=4, lags=2, **FAST).fit(y[:70])
    path = tmp_path / "forecaster.zip"
    save(forecaster, path)
    again = load(path)  # estimators get their states back by default
    pd.testing.assert_series_equal(again.predict(5), forecaster.predict(5))
    assert again.freq_ == forecaster.freq_ and again.cutoff_ == forecaster.cutoff_
    forecaster.update(y[70:])
    again.update(y[70:])
    pd.testing.assert_series_equal(again.predict(3), forecaster.predict(3))
    reset = load(path, restore_states=False)
    for layer in reset.regressor_.model_.layers:
        if getattr(layer, "stateful", False) and layer.states is not None:
            assert not any(state.any() for state in layer.states)
    manifest, arrays = _read_parts(path)
    manifest["object"]["attributes"]["_transform"]["class"] = "subprocess.Popen"
    target = tmp_path / "tampered.zip"
    _write_parts(target, manifest, arrays)
    with pytest.raises(FormatError, match="unknown record class 'subprocess.Popen'"):
        load(target)
