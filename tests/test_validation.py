"""Tests for input canonicalisation: numrnn._validation and numrnn.timeseries."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from numrnn import _validation, timeseries

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------
# timeseries helpers
# --------------------------------------------------------------------------


def test_pad_and_unpad_roundtrip():
    sequences = [RNG.normal(size=(3, 2)), RNG.normal(size=(5, 2)), RNG.normal(size=(1, 2))]
    padded, mask, lengths = timeseries.pad_and_mask(sequences, dtype=np.float32)
    assert padded.shape == (3, 5, 2) and padded.dtype == np.float32
    np.testing.assert_array_equal(lengths, [3, 5, 1])
    np.testing.assert_array_equal(mask.sum(axis=1), lengths)
    assert np.all(padded[~mask] == 0)
    for original, restored in zip(
        sequences, timeseries.unpad_sequences(padded, lengths), strict=True
    ):
        np.testing.assert_allclose(restored, original.astype(np.float32))


def test_pad_univariate_sequences():
    padded, mask, _ = timeseries.pad_and_mask([np.arange(3.0), np.arange(2.0)])
    assert padded.shape == (2, 3, 1)
    np.testing.assert_array_equal(mask, [[True, True, True], [True, True, False]])


@pytest.mark.parametrize(
    "sequences, match",
    [
        ([], "0 sequences"),
        ([np.zeros((0, 2))], "empty"),
        ([np.zeros((2, 2)), np.zeros((3, 3))], "same number of features"),
        ([np.zeros((2, 2, 2))], "2-D"),
    ],
)
def test_pad_errors(sequences, match):
    with pytest.raises(ValueError, match=match):
        timeseries.pad_and_mask(sequences)


def _long_frame():
    # sequence "b" appears first; rows are shuffled and times are unsorted
    rows = [
        ("b", 2, 12.0),
        ("a", 1, 1.0),
        ("b", 0, 10.0),
        ("a", 0, 0.0),
        ("b", 1, 11.0),
    ]
    frame = pd.DataFrame(rows, columns=["id", "time", "x"]).set_index(["id", "time"])
    frame["z"] = -frame["x"]
    return frame


def test_frame_layout_orders_ids_by_appearance_and_rows_by_time():
    frame = _long_frame()
    padded, mask, layout = timeseries.frame_to_padded(frame)
    assert list(layout.sequence_ids) == ["b", "a"]
    np.testing.assert_array_equal(layout.lengths, [3, 2])
    np.testing.assert_array_equal(padded[0, :, 0], [10.0, 11.0, 12.0])
    np.testing.assert_array_equal(padded[1, :2, 0], [0.0, 1.0])
    np.testing.assert_array_equal(mask, [[True, True, True], [True, True, False]])
    # gather returns values in the frame's own row order
    np.testing.assert_array_equal(layout.gather(padded)[:, 0], frame["x"].to_numpy())


def test_frame_with_datetime_times():
    times = pd.to_datetime(["2024-01-03", "2024-01-01", "2024-01-02"])
    frame = pd.DataFrame(
        {"x": [3.0, 1.0, 2.0]}, index=pd.MultiIndex.from_arrays([["s"] * 3, times])
    )
    padded, _, _ = timeseries.frame_to_padded(frame)
    np.testing.assert_array_equal(padded[0, :, 0], [1.0, 2.0, 3.0])


def test_frame_errors():
    frame = _long_frame()
    with pytest.raises(ValueError, match="2-level MultiIndex"):
        timeseries.frame_layout(frame.reset_index(drop=True).index)
    duplicated = pd.concat([frame, frame.iloc[:1]])
    with pytest.raises(ValueError, match="more than once"):
        timeseries.frame_to_padded(duplicated)
    with pytest.raises(TypeError, match="not numeric"):
        timeseries.frame_to_padded(frame.assign(label="word"))


# --------------------------------------------------------------------------
# X
# --------------------------------------------------------------------------


def test_input_kinds():
    assert _validation.input_kind(np.zeros((2, 3))) == "tabular"
    assert _validation.input_kind(np.zeros((2, 3)).tolist()) == "tabular"
    assert _validation.input_kind(pd.DataFrame(np.zeros((2, 3)))) == "tabular"
    assert _validation.input_kind(np.zeros((2, 3, 1))) == "array"
    assert _validation.input_kind([np.zeros((2, 1)), np.zeros((2, 1))]) == "array"
    assert _validation.input_kind([np.zeros((2, 1)), np.zeros((3, 1))]) == "ragged"
    assert _validation.input_kind([np.zeros(2), np.zeros(3)]) == "ragged"
    assert _validation.input_kind(_long_frame()) == "frame"
    assert _validation.input_kind(_long_frame()["x"]) == "frame"


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.zeros(3), ValueError, "Expected 2D array, got 1D"),
        (np.zeros((2, 2, 2, 2)), ValueError, "got 4D"),
        (None, TypeError, "X is None"),
        ("abc", TypeError, "array-like"),
        (sp.csr_matrix(np.eye(3)), TypeError, "Sparse"),
        (pd.Series([1.0, 2.0]), ValueError, "Series"),
    ],
)
def test_input_kind_errors(X, error, match):
    with pytest.raises(error, match=match):
        _validation.input_kind(X)


def test_check_sequences_forms_agree():
    array = RNG.normal(size=(2, 3, 2))
    from_array = _validation.check_sequences(array, dtype=np.float32)
    from_list = _validation.check_sequences(list(array), dtype=np.float32)
    rows = [(i, t, *array[i, t]) for i in range(2) for t in range(3)]
    frame = pd.DataFrame(rows, columns=["id", "t", "u", "v"]).set_index(["id", "t"])
    from_frame = _validation.check_sequences(frame, dtype=np.float32)
    for data in (from_array, from_list, from_frame):
        assert data.values.dtype == np.float32
        assert data.mask is None
        np.testing.assert_array_equal(data.values, array.astype(np.float32))
    np.testing.assert_array_equal(from_frame.feature_names, ["u", "v"])


def test_check_sequences_ragged_has_mask():
    data = _validation.check_sequences([np.ones((2, 1)), np.ones((4, 1))], dtype=np.float64)
    assert data.kind == "ragged"
    np.testing.assert_array_equal(data.lengths, [2, 4])
    np.testing.assert_array_equal(data.mask.sum(axis=1), [2, 4])


@pytest.mark.parametrize("value, match", [(np.nan, "contains NaN"), (np.inf, "infinity")])
def test_non_finite_values_rejected_in_every_form(value, match):
    array = np.ones((2, 3, 1))
    array[1, 2, 0] = value
    ragged = [np.ones((2, 1)), array[1]]
    frame = pd.DataFrame(
        {"x": array[:, :, 0].ravel()},
        index=pd.MultiIndex.from_product([[0, 1], [0, 1, 2]]),
    )
    for X in (array, ragged, frame):
        with pytest.raises(ValueError, match=match):
            _validation.check_sequences(X, dtype=np.float64)


def test_non_numeric_and_empty_inputs():
    with pytest.raises(TypeError, match="numbers only"):
        _validation.check_sequences(np.array([[["a"]]]), dtype=np.float64)
    with pytest.raises(TypeError, match="numbers only"):
        _validation.check_sequences([np.array(["a", "b"]), np.array(["c"])], dtype=np.float64)
    objects = np.empty((1, 2, 1), dtype=object)
    objects[0, 0, 0] = {"a": 1}
    objects[0, 1, 0] = 1.0
    with pytest.raises(TypeError, match="argument must be .* string.* number"):
        _validation.check_sequences(objects, dtype=np.float64)
    with pytest.raises(ValueError, match="Complex data not supported"):
        _validation.check_sequences(np.ones((1, 2, 1)) * 1j, dtype=np.float64)
    with pytest.raises(ValueError, match="0 sample"):
        _validation.check_sequences(np.zeros((0, 3, 1)), dtype=np.float64)
    with pytest.raises(ValueError, match="0 time step"):
        _validation.check_sequences(np.zeros((2, 0, 1)), dtype=np.float64)
    with pytest.raises(ValueError, match="0 feature"):
        _validation.check_sequences(np.zeros((2, 3, 0)), dtype=np.float64)


def test_from_tabular():
    data = _validation.from_tabular(np.arange(6.0).reshape(2, 3), dtype=np.float32)
    assert data.values.shape == (2, 3, 1) and data.kind == "tabular" and data.mask is None


# --------------------------------------------------------------------------
# y
# --------------------------------------------------------------------------


def _array_data(n=4, t=3, f=1):
    return _validation.check_sequences(np.zeros((n, t, f)), dtype=np.float64)


def test_targets_per_sequence_and_per_step_auto():
    data = _array_data()
    assert not _validation.check_targets(np.arange(4), data).per_step
    assert not _validation.check_targets(np.zeros((4, 2)), data).per_step  # 2 outputs
    assert _validation.check_targets(np.zeros((4, 3)), data).per_step  # T == 3
    assert _validation.check_targets(np.zeros((4, 3, 2)), data).per_step
    assert not _validation.check_targets(np.zeros((4, 3)), data, per_step=False).per_step


def test_targets_ragged_lists_are_padded():
    data = _validation.check_sequences([np.ones((2, 1)), np.ones((3, 1))], dtype=np.float64)
    targets = _validation.check_targets([np.array([1, 2]), np.array([3, 4, 5])], data)
    assert targets.per_step
    np.testing.assert_array_equal(targets.values[1], [3, 4, 5])
    np.testing.assert_array_equal(targets.values[0, :2], [1, 2])
    np.testing.assert_array_equal(targets.mask, data.mask)
    with pytest.raises(ValueError, match="has 3 steps but its targets have 2"):
        _validation.check_targets([np.array([1, 2]), np.array([3, 4])], data, per_step=True)
    # equally long sequences: a list of per-step lists is a (N, T) array, read as per step
    data = _validation.check_sequences([np.ones((2, 1)), np.ones((2, 1))], dtype=np.float64)
    assert _validation.check_targets([[1, 2], [3, 4]], data).per_step


def test_targets_aligned_with_pandas_index():
    frame = _long_frame()
    data = _validation.check_sequences(frame, dtype=np.float64)
    per_step = _validation.check_targets(frame["x"] * 2, data)
    assert per_step.per_step
    np.testing.assert_array_equal(per_step.values[0], [20.0, 22.0, 24.0])
    # shuffled per-step targets align by index, not by position
    shuffled = (frame["x"] * 2).sample(frac=1, random_state=1)
    np.testing.assert_array_equal(_validation.check_targets(shuffled, data).values, per_step.values)
    by_id = pd.Series({"a": 0, "b": 1})
    per_sequence = _validation.check_targets(by_id, data)
    assert not per_sequence.per_step
    np.testing.assert_array_equal(per_sequence.values, [1, 0])  # order of X: b, a
    with pytest.raises(ValueError, match="no target for 1 row"):
        _validation.check_targets((frame["x"] * 2).iloc[:-1], data)


def test_target_errors():
    data = _array_data()
    with pytest.raises(ValueError, match="requires y to be passed"):
        _validation.check_targets(None, data)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _validation.check_targets(np.arange(3), data)
    with pytest.raises(ValueError, match="per_step=True needs"):
        _validation.check_targets(np.arange(4), data, per_step=True)
    with pytest.raises(ValueError, match="per_step=False"):
        _validation.check_targets(np.zeros((4, 3, 1)), data, per_step=False)
    with pytest.raises(ValueError, match="Per-step targets have 5 steps"):
        _validation.check_targets(np.zeros((4, 5)), data, per_step=True)


def test_sample_weight_validation():
    np.testing.assert_array_equal(_validation.check_sample_weight(None, 3), np.ones(3))
    np.testing.assert_array_equal(_validation.check_sample_weight(2, 3), [2.0, 2.0, 2.0])
    with pytest.raises(ValueError, match="expected \\(3,\\)"):
        _validation.check_sample_weight(np.ones(4), 3)
    with pytest.raises(ValueError, match="Negative"):
        _validation.check_sample_weight([1, -1, 1], 3)
    with pytest.raises(ValueError, match="weights are zero"):
        _validation.check_sample_weight(np.zeros(3), 3)


def test_format_step_output():
    frame = _long_frame()
    data = _validation.check_sequences(frame, dtype=np.float64)
    series = _validation.format_step_output(data.values[..., 0], data)
    assert series.index.equals(frame.index)
    np.testing.assert_array_equal(series.to_numpy(), frame["x"].to_numpy())
    ragged = _validation.check_sequences([np.ones((2, 1)), np.ones((3, 1))], dtype=np.float64)
    parts = _validation.format_step_output(ragged.values, ragged)
    assert [p.shape for p in parts] == [(2, 1), (3, 1)]


# --------------------------------------------------------------------------
# Keras-compatible pad_sequences (expected values checked against
# keras.utils.pad_sequences 3.15)
# --------------------------------------------------------------------------


def test_pad_sequences_matches_keras_defaults():
    sequences = [[1], [2, 3], [4, 5, 6]]
    padded = timeseries.pad_sequences(sequences)
    assert padded.dtype == np.int32
    np.testing.assert_array_equal(padded, [[0, 0, 1], [0, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(
        timeseries.pad_sequences(sequences, maxlen=2), [[0, 1], [2, 3], [5, 6]]
    )
    np.testing.assert_array_equal(
        timeseries.pad_sequences(sequences, maxlen=2, padding="post", truncating="post"),
        [[1, 0], [2, 3], [4, 5]],
    )
    np.testing.assert_array_equal(
        timeseries.pad_sequences(sequences, value=-1.5, dtype="float32"),
        [[-1.5, -1.5, 1.0], [-1.5, 2.0, 3.0], [4.0, 5.0, 6.0]],
    )
    # empty sequences are rows of padding; floats are cast to the int dtype
    np.testing.assert_array_equal(timeseries.pad_sequences([[1, 2], [], [3]]),
                                  [[1, 2], [0, 0], [0, 3]])  # fmt: skip
    np.testing.assert_array_equal(timeseries.pad_sequences([[1.7, 2.2]]), [[1, 2]])
    assert timeseries.pad_sequences([], maxlen=3).shape == (0, 3)
    assert timeseries.pad_sequences(sequences, maxlen=0).shape == (3, 0)
    strings = timeseries.pad_sequences([["a"], ["b", "c"]], dtype=object, value="")
    assert strings.tolist() == [["", "a"], ["b", "c"]]


def test_pad_sequences_multivariate_and_errors():
    padded = timeseries.pad_sequences(
        [np.ones((2, 3)), np.zeros((1, 3))], dtype="float64", padding="post"
    )
    assert padded.shape == (2, 2, 3)
    np.testing.assert_array_equal(padded[1, 1], [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='Padding type "mid" not understood'):
        timeseries.pad_sequences([[1]], padding="mid")
    with pytest.raises(ValueError, match='Truncating type "mid" not understood'):
        timeseries.pad_sequences([[1]], truncating="mid")
    with pytest.raises(ValueError, match="different from expected shape"):
        timeseries.pad_sequences([np.ones((2, 3)), np.zeros((1, 2))])
    with pytest.raises(ValueError, match="dtype=object"):
        timeseries.pad_sequences([[1]], value="x")
    with pytest.raises(ValueError, match="non-negative"):
        timeseries.pad_sequences([[1]], maxlen=-1)
    with pytest.raises(ValueError, match="not a sequence"):
        timeseries.pad_sequences([1, 2])


# --------------------------------------------------------------------------
# Lists of sequences <-> MultiIndex frames, sliding windows, chunks
# --------------------------------------------------------------------------


def test_sequences_frame_roundtrip():
    sequences = [RNG.normal(size=(3, 2)), RNG.normal(size=(5, 2))]
    frame = timeseries.sequences_to_frame(sequences, ids=["x", "y"], columns=["a", "b"])
    assert frame.index.names == ["id", "time"] and list(frame.columns) == ["a", "b"]
    assert len(frame) == 8
    back, ids = timeseries.frame_to_sequences(frame.sample(frac=1.0, random_state=0))
    order = {name: i for i, name in enumerate(["x", "y"])}
    for seq_id, seq in zip(ids, back, strict=True):
        np.testing.assert_array_equal(seq, sequences[order[seq_id]])
    # the frame is accepted by the estimators' validation like the list
    data = _validation.check_sequences(frame, dtype=np.float64)
    listed = _validation.check_sequences(sequences, dtype=np.float64)
    np.testing.assert_array_equal(data.values, listed.values)
    dated = timeseries.sequences_to_frame(
        [np.arange(2.0)], times=[pd.date_range("2020", periods=2, freq="D")]
    )
    assert dated.index.get_level_values("time")[1] == pd.Timestamp("2020-01-02")
    with pytest.raises(ValueError, match="ids"):
        timeseries.sequences_to_frame(sequences, ids=["x"])
    with pytest.raises(ValueError, match="unique"):
        timeseries.sequences_to_frame(sequences, ids=["x", "x"])
    with pytest.raises(ValueError, match="column names"):
        timeseries.sequences_to_frame(sequences, columns=["a"])
    with pytest.raises(ValueError, match="time labels"):
        timeseries.sequences_to_frame(sequences, times=[range(3), range(4)])
    with pytest.raises(TypeError, match="pandas"):
        timeseries.frame_to_sequences(np.zeros((3, 2)))


def test_sliding_windows():
    series = pd.Series(np.arange(10.0))
    windows, targets = timeseries.sliding_windows(series, 4)
    assert windows.shape == (6, 4, 1) and targets.shape == (6,)
    np.testing.assert_array_equal(windows[2, :, 0], [2, 3, 4, 5])
    np.testing.assert_array_equal(targets, np.arange(4.0, 10.0))
    windows, targets = timeseries.sliding_windows(series, 3, horizon=2, stride=3)
    np.testing.assert_array_equal(windows[:, 0, 0], [0, 3])
    np.testing.assert_array_equal(targets, [[3, 4], [6, 7]])
    frame = pd.DataFrame({"a": np.arange(8.0), "b": -np.arange(8.0)})
    windows, targets = timeseries.sliding_windows(frame, 3, target="b")
    assert windows.shape == (5, 3, 2)
    np.testing.assert_array_equal(targets, -np.arange(3.0, 8.0))
    _, both = timeseries.sliding_windows(frame, 3, horizon=2, target=["a", "b"])
    assert both.shape == (4, 2, 2)
    _, first = timeseries.sliding_windows(frame.to_numpy(), 3, target=0)
    np.testing.assert_array_equal(first, np.arange(3.0, 8.0))
    with pytest.raises(ValueError, match="at least 12"):
        timeseries.sliding_windows(series, 10, horizon=2)
    with pytest.raises(ValueError, match="window_length must be a positive int"):
        timeseries.sliding_windows(series, 0)
    with pytest.raises(ValueError, match="not among the columns"):
        timeseries.sliding_windows(frame, 3, target="c")
    with pytest.raises(ValueError, match="MultiIndex"):
        timeseries.sliding_windows(_long_frame(), 1)


def test_chunk_bounds():
    assert timeseries.chunk_bounds(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert timeseries.chunk_bounds(6, 3) == [(0, 3), (3, 6)]
    assert timeseries.chunk_bounds(2, 10) == [(0, 2)]
    with pytest.raises(ValueError, match="positive"):
        timeseries.chunk_bounds(5, 0)


# --------------------------------------------------------------------------
# Long series (stateful estimators)
# --------------------------------------------------------------------------


def test_check_series_forms():
    one = _validation.check_series(np.arange(6.0), dtype=np.float32)
    assert one.kind == "series" and one.values.shape == (1, 6, 1) and one.mask is None
    two_d = _validation.check_series(np.zeros((6, 3)), dtype=np.float64)
    assert two_d.values.shape == (1, 6, 3)
    index = pd.date_range("2020", periods=6, freq="D")
    frame = pd.DataFrame({"a": np.arange(6.0), "b": 1.0}, index=index)
    data = _validation.check_series(frame, dtype=np.float64)
    assert data.time_index.equals(index) and list(data.feature_names) == ["a", "b"]
    several = _validation.check_series(np.zeros((2, 6, 3)), dtype=np.float64)
    assert several.kind == "array" and several.n_sequences == 2
    ragged = _validation.check_series([np.zeros((4, 2)), np.zeros((2, 2))], dtype=np.float64)
    assert ragged.kind == "ragged" and ragged.mask.sum() == 6
    assert _validation.check_series(_long_frame(), dtype=np.float64).kind == "frame"
    with pytest.raises(ValueError, match="NaN"):
        _validation.check_series([1.0, np.nan, 2.0], dtype=np.float64)
    with pytest.raises(ValueError, match="not sorted"):
        _validation.check_series(frame.iloc[::-1], dtype=np.float64)
    with pytest.raises(ValueError, match="duplicate"):
        _validation.check_series(pd.concat([frame, frame]), dtype=np.float64)
    with pytest.raises(TypeError, match="not numeric"):
        _validation.check_series(frame.assign(c="x"), dtype=np.float64)
    with pytest.raises(ValueError, match="shape"):
        _validation.check_series(np.zeros((2, 2, 2, 2)), dtype=np.float64)
    with pytest.raises(TypeError, match="X is None"):
        _validation.check_series(None, dtype=np.float64)
    with pytest.raises(TypeError, match="Sparse"):
        _validation.check_series(sp.csr_matrix(np.eye(3)), dtype=np.float64)


def test_check_series_targets_and_output():
    index = pd.date_range("2020", periods=5, freq="D")
    data = _validation.check_series(pd.Series(np.arange(5.0), index=index), dtype=np.float64)
    shuffled = pd.Series(np.arange(5.0) * 10, index=index).iloc[[4, 2, 0, 1, 3]]
    targets = _validation.check_series_targets(shuffled, data)
    assert targets.per_step and targets.values.shape == (1, 5)
    np.testing.assert_array_equal(targets.values[0], np.arange(5.0) * 10)  # aligned by label
    assert _validation.check_series_targets(np.zeros((5, 2)), data).values.shape == (1, 5, 2)
    with pytest.raises(ValueError, match="one target per time step"):
        _validation.check_series_targets(np.zeros(4), data)
    with pytest.raises(ValueError, match="no target"):
        _validation.check_series_targets(pd.Series(1.0, index=index[:4]), data)
    out = _validation.format_step_output(np.arange(5.0)[None], data)
    assert isinstance(out, pd.Series) and out.index.equals(index)
    wide = _validation.format_step_output(np.zeros((1, 5, 2)), data, columns=["p", "q"])
    assert list(wide.columns) == ["p", "q"]
    plain = _validation.check_series(np.arange(5.0), dtype=np.float64)
    assert _validation.format_step_output(np.zeros((1, 5)), plain).shape == (5,)
