"""Input canonicalisation for the estimators, with clear error messages.

Every accepted form of ``X`` becomes a :class:`SequenceData`: a float array
``(n_sequences, n_timesteps, n_features)`` plus a boolean mask
``(n_sequences, n_timesteps)`` (None when every sequence has every step).

Accepted forms of ``X``
-----------------------
- ``"tabular"``: a 2-D array-like (ndarray, nested list, plain DataFrame)
  of shape ``(n_sequences, n_timesteps)``; each row is a univariate
  sequence. scikit-learn sees this as ordinary tabular data, so the
  estimators validate it with :func:`sklearn.utils.validation.validate_data`
  (feature names, feature count) and then call :func:`from_tabular`.
- ``"array"``: a 3-D array-like ``(n_sequences, n_timesteps, n_features)``.
- ``"ragged"``: a list or tuple of 2-D ``(length_i, n_features)`` or 1-D
  ``(length_i,)`` arrays whose lengths differ; zero-padded at the end and
  masked.
- ``"frame"``: a pandas DataFrame (or Series) with a 2-level MultiIndex
  ``(sequence id, time)``, one row per step and one column per feature;
  sequences in order of first appearance, rows sorted by time.

For stateful (chunked) training over long series, :func:`check_series`
reads ``X`` differently: a 1-D array or a Series is one univariate series,
a 2-D array or a plain DataFrame indexed by time is *one* series
``(n_timesteps, n_features)`` (kind ``"series"``), while 3-D arrays, ragged
lists and MultiIndex frames are several parallel series.
:func:`check_series_targets` aligns per-step targets with them.

Targets (:func:`check_targets`) are one per sequence, ``(N,)`` or
``(N, n_outputs)``, or one per step, ``(N, T)`` or ``(N, T, n_outputs)``,
padded like ``X`` (ragged per-step targets come as a list of arrays, pandas
per-step targets indexed like ``X``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_array

from numrnn import timeseries

__all__ = [
    "SequenceData",
    "TargetData",
    "input_kind",
    "check_sequences",
    "from_tabular",
    "check_targets",
    "check_sample_weight",
    "check_series",
    "check_series_targets",
    "format_step_output",
]

_KINDS = ("tabular", "array", "ragged", "frame", "series")


@dataclass
class SequenceData:
    """A batch of sequences in canonical form.

    Attributes
    ----------
    values : ndarray of shape (n_sequences, n_timesteps, n_features)
        Float values, zero at padded steps.
    mask : ndarray of bool, shape (n_sequences, n_timesteps), or None
        True at real steps; None when no step is padded.
    lengths : ndarray of int, shape (n_sequences,)
        Number of real steps of each sequence.
    kind : {'tabular', 'array', 'ragged', 'frame', 'series'}
        The form ``X`` came in (decides the form of per-step outputs);
        ``'series'`` is one long series (``n_sequences == 1``).
    layout : FrameLayout or None
        For pandas input: where each row of the frame went.
    feature_names : ndarray of object or None
        Column names of a pandas frame of sequences, when all are strings.
    time_index : pandas.Index or None
        For one series given as pandas: its time index.
    """

    values: np.ndarray
    mask: np.ndarray | None
    lengths: np.ndarray
    kind: str
    layout: timeseries.FrameLayout | None = None
    feature_names: np.ndarray | None = None
    time_index: pd.Index | None = None

    @property
    def n_sequences(self):
        """Number of sequences."""
        return self.values.shape[0]

    @property
    def n_timesteps(self):
        """Padded length."""
        return self.values.shape[1]

    @property
    def n_features(self):
        """Features per step."""
        return self.values.shape[2]

    def step_mask(self):
        """The mask, or an all-True mask when nothing is padded."""
        if self.mask is None:
            return np.ones(self.values.shape[:2], dtype=bool)
        return self.mask


@dataclass
class TargetData:
    """Targets in canonical form.

    Attributes
    ----------
    values : ndarray
        ``(N,)`` / ``(N, k)`` per sequence, ``(N, T)`` / ``(N, T, k)`` per
        step (padded entries hold a copy of a real entry).
    per_step : bool
        Whether there is one target per time step.
    mask : ndarray of bool or None
        For per-step targets, the steps that count (None: all).
    """

    values: np.ndarray
    per_step: bool
    mask: np.ndarray | None = None


# --------------------------------------------------------------------------
# X
# --------------------------------------------------------------------------


def _is_sparse(X):
    return hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse")


def _sparse_error():
    return TypeError(
        "Sparse input is not supported: numrnn needs dense sequences. "
        "Convert X with X.toarray() first."
    )


def input_kind(X):
    """Name the form of ``X``: 'tabular', 'array', 'ragged' or 'frame'.

    Parameters
    ----------
    X : object
        Candidate input.

    Returns
    -------
    str
        One of ``'tabular'`` (2-D), ``'array'`` (3-D), ``'ragged'`` (list of
        sequences of different lengths) or ``'frame'`` (pandas with a
        MultiIndex).

    Raises
    ------
    TypeError
        For sparse matrices, strings, scalars and None.
    ValueError
        For arrays with fewer than 2 or more than 3 dimensions.
    """
    if X is None:
        raise TypeError(
            "X is None; expected sequences: a 3-D array (n_sequences, n_timesteps, "
            "n_features), a 2-D array of univariate sequences, a list of arrays or a "
            "pandas DataFrame indexed by (sequence id, time)."
        )
    if _is_sparse(X):
        raise _sparse_error()
    if isinstance(X, (pd.DataFrame, pd.Series)):
        if isinstance(X.index, pd.MultiIndex):
            return "frame"
        if isinstance(X, pd.Series):
            raise ValueError(
                "Expected 2D array, got a pandas Series (1D) instead: pass a DataFrame, "
                "or index the Series by a (sequence id, time) MultiIndex."
            )
        return "tabular"
    if isinstance(X, (str, bytes)) or np.isscalar(X):
        raise TypeError(f"X must be an array-like of sequences; got {type(X).__name__}.")
    if isinstance(X, (list, tuple)) and _is_ragged(X):
        return "ragged"
    ndim = np.asarray(X).ndim
    if ndim == 2:
        return "tabular"
    if ndim == 3:
        return "array"
    if ndim == 1 and len(X) > 0 and all(np.asarray(item).ndim == 2 for item in X):
        return "ragged"  # e.g. an object array of 2-D sequences
    raise ValueError(
        f"Expected 2D array, got {ndim}D array instead: X must be 3-D (n_sequences, "
        "n_timesteps, n_features), 2-D (n_sequences, n_timesteps) for univariate "
        "sequences, or a list of per-sequence arrays. Reshape your data: a single sequence with "
        "X[None] and a 1-D array of values with X.reshape(1, -1)."
    )


def _is_ragged(items):
    """True when ``items`` is a list of sequences numpy cannot stack."""
    if len(items) == 0:
        return False
    shapes = set()
    for item in items:
        shape = np.shape(item) if not isinstance(item, (str, bytes)) else ()
        if len(shape) == 0:
            return False  # a flat list of numbers: not a collection of sequences
        shapes.add(shape)
    return len(shapes) > 1


def _as_numeric(array, input_name):
    """Convert to a numeric ndarray or raise a TypeError/ValueError saying why."""
    array = np.asarray(array)
    kind = array.dtype.kind
    if kind == "c":
        raise ValueError(f"Complex data not supported in {input_name}; pass real numbers.")
    if kind in "biuf":
        return array
    if kind == "O":
        try:
            return array.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{input_name} must hold numbers only; converting it to float failed: {exc}"
            ) from exc
    raise TypeError(
        f"{input_name} must hold numbers only; got dtype {array.dtype} "
        "(strings, dates or other non-numeric values)."
    )


def _check_finite(values, input_name):
    if np.isnan(values).any():
        raise ValueError(
            f"Input {input_name} contains NaN. numrnn needs finite values: fill or drop "
            "missing values first (padding of ragged sequences is handled for you)."
        )
    if np.isinf(values).any():
        raise ValueError(
            f"Input {input_name} contains infinity or a value too large for "
            f"dtype('{values.dtype}')."
        )


def _check_not_empty(n_sequences, n_timesteps, n_features, shape):
    if n_sequences == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={shape}) while a minimum of 1 is required."
        )
    if n_timesteps == 0:
        raise ValueError(
            f"Found sequences with 0 time step(s) (shape={shape}) while a minimum of 1 is required."
        )
    if n_features == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={shape}) while a minimum of 1 is required."
        )


def from_tabular(X2d, *, dtype):
    """Wrap validated 2-D data ``(N, T)`` as univariate sequences ``(N, T, 1)``.

    Parameters
    ----------
    X2d : ndarray of shape (n_sequences, n_timesteps)
        Already validated (finite, numeric) values.
    dtype : numpy dtype
        Float dtype of the result.

    Returns
    -------
    SequenceData
        Kind ``'tabular'``, no mask.
    """
    X2d = np.asarray(X2d)
    values = np.ascontiguousarray(X2d[:, :, None], dtype=dtype)
    lengths = np.full(values.shape[0], values.shape[1], dtype=np.intp)
    return SequenceData(values=values, mask=None, lengths=lengths, kind="tabular")


def check_sequences(X, *, dtype, kind=None):
    """Validate a 3-D array, ragged list or pandas frame of sequences.

    Parameters
    ----------
    X : array-like, list of array-like, or pandas DataFrame/Series
        The sequences (see the module docstring). 2-D arrays are accepted
        too and read as univariate sequences (without the feature-name and
        feature-count bookkeeping the estimators add for them).
    dtype : numpy dtype
        Float dtype of the canonical values.
    kind : str, optional
        The result of :func:`input_kind`, when already known.

    Returns
    -------
    SequenceData
        The canonical form.

    Raises
    ------
    TypeError
        For non-numeric or sparse data.
    ValueError
        For NaN/inf, empty input, wrong dimensions or inconsistent feature counts.
    """
    kind = input_kind(X) if kind is None else kind
    if kind == "frame":
        frame = X.to_frame() if isinstance(X, pd.Series) else X
        complex_columns = [
            str(name) for name, dt in frame.dtypes.items() if pd.api.types.is_complex_dtype(dt)
        ]
        if complex_columns:
            raise ValueError(f"Complex data not supported (columns {complex_columns}).")
        if frame.shape[1] == 0:
            _check_not_empty(1, 1, 0, frame.shape)
        values, mask, layout = timeseries.frame_to_padded(frame, dtype=dtype)
        _check_finite(values, "X")
        names = np.asarray(frame.columns, dtype=object)
        feature_names = names if all(isinstance(n, str) for n in names) else None
        return SequenceData(
            values=values,
            mask=None if mask.all() else mask,
            lengths=layout.lengths,
            kind="frame",
            layout=layout,
            feature_names=feature_names,
        )
    if kind == "ragged":
        sequences = []
        for index, seq in enumerate(X):
            if _is_sparse(seq):
                raise _sparse_error()
            sequences.append(_as_numeric(seq, f"X[{index}]"))
        values, mask, lengths = timeseries.pad_and_mask(sequences, dtype=dtype)
        _check_not_empty(*values.shape, values.shape)
        _check_finite(values, "X")
        return SequenceData(
            values=values, mask=None if mask.all() else mask, lengths=lengths, kind="ragged"
        )
    if kind not in ("array", "tabular"):
        raise ValueError(f"Unknown input kind {kind!r}; expected one of {_KINDS}.")
    array = check_array(
        _as_numeric(X, "X"),
        dtype=None,
        allow_nd=True,
        ensure_all_finite=False,
        ensure_2d=True,
        ensure_min_samples=0,
        ensure_min_features=0,
        input_name="X",
    )
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(
            f"Expected a 3-D array (n_sequences, n_timesteps, n_features); got shape {array.shape}."
        )
    _check_not_empty(*array.shape, array.shape)
    values = np.ascontiguousarray(array, dtype=dtype)
    _check_finite(values, "X")
    lengths = np.full(values.shape[0], values.shape[1], dtype=np.intp)
    return SequenceData(values=values, mask=None, lengths=lengths, kind=kind)


# --------------------------------------------------------------------------
# y
# --------------------------------------------------------------------------


def _pad_ragged_targets(items, data):
    arrays = [np.asarray(item) for item in items]
    if len(arrays) != data.n_sequences:
        raise ValueError(
            f"X has {data.n_sequences} sequences but y has {len(arrays)} entries; they must match."
        )
    trailing = {a.shape[1:] for a in arrays}
    if len(trailing) != 1 or any(a.ndim not in (1, 2) for a in arrays):
        raise ValueError(
            "Per-step targets must be arrays of shape (length_i,) or (length_i, n_outputs), "
            "the same for every sequence."
        )
    for index, (array, length) in enumerate(zip(arrays, data.lengths, strict=True)):
        if array.shape[0] != length:
            raise ValueError(
                f"Sequence {index} has {length} steps but its targets have "
                f"{array.shape[0]}; per-step targets need one entry per step."
            )
    fill = arrays[0].reshape(-1)[0] if arrays[0].size else 0
    dtype = np.result_type(*[a.dtype for a in arrays])
    out = np.full((data.n_sequences, data.n_timesteps) + arrays[0].shape[1:], fill, dtype=dtype)
    for index, array in enumerate(arrays):
        out[index, : array.shape[0]] = array
    return out


def _fill_padding(values, mask):
    """Copy a real entry into padded positions (keeps labels valid, values finite)."""
    if mask is None or mask.all():
        return values
    values = values.copy()
    values[~mask] = values[mask][0]
    return values


def _frame_targets(y, data, per_step):
    layout = data.layout
    if isinstance(y.index, pd.MultiIndex):
        if per_step is False:
            raise ValueError(
                "y is indexed by (sequence id, time) like X, which means per-step targets, "
                "but per_step=False."
            )
        if y.index.has_duplicates:
            raise ValueError("y's (sequence id, time) index has duplicate entries.")
        missing = layout.index.difference(y.index)
        if len(missing):
            raise ValueError(
                f"y has no target for {len(missing)} row(s) of X, e.g. {missing[0]!r}; "
                "per-step targets must cover every (sequence id, time) of X."
            )
        rows = y.reindex(layout.index).to_numpy()
        return layout.scatter(rows, fill_value=rows.reshape(-1)[0]), True
    ids = layout.sequence_ids
    if len(y) == len(ids) and y.index.isin(ids).all() and not y.index.has_duplicates:
        return y.loc[ids].to_numpy(), False
    return None, None  # fall back to positional handling


def check_targets(y, data, *, per_step="auto"):
    """Canonicalise ``y`` for the sequences ``data``.

    Parameters
    ----------
    y : array-like, list of array-like, or pandas Series/DataFrame
        One target per sequence, ``(N,)`` or ``(N, n_outputs)``, or one per
        step: ``(N, T)`` / ``(N, T, n_outputs)`` arrays, a list of
        ``(length_i,)`` / ``(length_i, n_outputs)`` arrays, or pandas
        targets indexed like a pandas ``X``. A pandas ``y`` indexed by
        sequence id aligns by id.
    data : SequenceData
        The validated ``X``.
    per_step : {'auto', True, False}, default='auto'
        Whether ``y`` has one target per step. With 'auto', a 2-D array
        is per step when its second dimension equals the number of time
        steps of ``X`` (and that is more than 1).

    Returns
    -------
    TargetData
        Values not yet converted to float (labels stay labels).

    Raises
    ------
    ValueError
        If ``y`` is None, empty, or its shape does not fit ``X``.
    TypeError
        If ``y`` is sparse.
    """
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    if _is_sparse(y):
        raise TypeError("Sparse targets are not supported; pass a dense array.")
    n_sequences, n_timesteps = data.n_sequences, data.n_timesteps
    values = None
    step = None
    if isinstance(y, (pd.Series, pd.DataFrame)):
        if data.kind == "frame":
            values, step = _frame_targets(y, data, per_step)
        if values is None:
            values = y.to_numpy()
    elif isinstance(y, (list, tuple)) and _is_ragged(y):
        if per_step is False:
            raise ValueError("y is a list of arrays of different lengths but per_step=False.")
        values, step = _pad_ragged_targets(y, data), True
    elif isinstance(y, (list, tuple)) and data.mask is not None and per_step is not False:
        lengths = [len(item) if np.ndim(item) >= 1 else -1 for item in y]
        if per_step is True or lengths == list(data.lengths):
            # one array per sequence, with one entry per step
            values, step = _pad_ragged_targets(y, data), True
    if values is None:
        values = np.asarray(y)
    if step is None:
        if values.ndim == 0:
            raise ValueError(f"y must be an array-like of targets; got the scalar {y!r}.")
        if values.shape[0] == 0:
            raise ValueError("Found y with 0 sample(s) while a minimum of 1 is required.")
        if (
            data.kind == "frame"
            and values.shape[0] == len(data.layout.row_sequence)
            and values.shape[0] != n_sequences
            and per_step is not False
        ):
            values, step = data.layout.scatter(values, fill_value=values.reshape(-1)[0]), True
        else:
            if values.shape[0] != n_sequences:
                raise ValueError(
                    f"Found input variables with inconsistent numbers of samples: X has "
                    f"{n_sequences} sequences but y has {values.shape[0]} entries."
                )
            step = _decide_per_step(values, n_timesteps, per_step)
    if step and values.shape[1] != n_timesteps:
        raise ValueError(f"Per-step targets have {values.shape[1]} steps but X has {n_timesteps}.")
    if step and values.ndim > 3 or not step and values.ndim > 2:
        raise ValueError(f"y has too many dimensions: shape {values.shape}.")
    mask = data.mask if step else None
    if step:
        values = _fill_padding(values, mask)
    return TargetData(values=values, per_step=bool(step), mask=mask)


def _decide_per_step(values, n_timesteps, per_step):
    if per_step not in ("auto", True, False):
        raise ValueError(f"per_step must be 'auto', True or False; got {per_step!r}.")
    if values.ndim == 1:
        if per_step is True:
            raise ValueError(
                "per_step=True needs y of shape (n_sequences, n_timesteps[, n_outputs]); "
                f"got shape {values.shape}."
            )
        return False
    if values.ndim == 3:
        if per_step is False:
            raise ValueError(
                f"y of shape {values.shape} is 3-D, which means per-step targets, but "
                "per_step=False."
            )
        return True
    if values.ndim == 2:
        if per_step == "auto":
            return values.shape[1] == n_timesteps and n_timesteps > 1
        return bool(per_step)
    raise ValueError(f"y has too many dimensions: shape {values.shape}.")


def check_sample_weight(sample_weight, n_sequences, *, dtype=np.float64):
    """Validate per-sequence weights.

    Parameters
    ----------
    sample_weight : array-like of shape (n_sequences,), scalar or None
        Weights; None means equal weights.
    n_sequences : int
        Number of sequences.
    dtype : numpy dtype, default=np.float64
        Dtype of the result.

    Returns
    -------
    ndarray of shape (n_sequences,)
        Non-negative, finite weights, not all zero.
    """
    if sample_weight is None:
        return np.ones(n_sequences, dtype=dtype)
    if np.isscalar(sample_weight):
        weights = np.full(n_sequences, sample_weight)
    else:
        weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must be numeric; got dtype {weights.dtype}.")
    weights = weights.astype(dtype)
    if weights.ndim != 1 or weights.shape[0] != n_sequences:
        raise ValueError(
            f"sample_weight.shape == {weights.shape}, expected ({n_sequences},): one weight "
            "per sequence."
        )
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight contains NaN or infinity.")
    if (weights < 0).any():
        raise ValueError("Negative values in sample_weight are not allowed.")
    if not weights.any():
        raise ValueError(
            "All sample weights are zero: at least one sample needs a non-zero weight."
        )
    return weights


# --------------------------------------------------------------------------
# Long series (stateful, chunked training)
# --------------------------------------------------------------------------


def _check_time_index(index, input_name):
    if index.has_duplicates:
        raise ValueError(
            f"The time index of {input_name} has duplicate labels, e.g. "
            f"{index[index.duplicated()][0]!r}; one row per time step is expected."
        )
    try:
        ordered = index.is_monotonic_increasing
    except TypeError:  # labels that cannot be compared: keep the row order
        ordered = True
    if not ordered:
        raise ValueError(
            f"The time index of {input_name} is not sorted; sort it first "
            f"({input_name}.sort_index())."
        )


def check_series(X, *, dtype):
    """Validate the input of a stateful (chunked) fit or predict.

    Parameters
    ----------
    X : array-like, list of array-like, or pandas Series/DataFrame
        One long series: a 1-D array or a Series (univariate), a 2-D array
        ``(n_timesteps, n_features)`` or a DataFrame indexed by time (one
        column per feature). Several parallel series: a 3-D array
        ``(n_series, n_timesteps, n_features)``, a list of arrays of
        different lengths (tails padded and masked) or a DataFrame indexed
        by a ``(series id, time)`` MultiIndex.
    dtype : numpy dtype
        Float dtype of the canonical values.

    Returns
    -------
    SequenceData
        Kind ``'series'`` for one series (``n_sequences == 1``), else the
        kind :func:`check_sequences` gives.

    Raises
    ------
    TypeError
        For non-numeric, sparse or missing data.
    ValueError
        For NaN/inf, empty input, an unsorted or duplicated time index, or
        arrays of more than 3 dimensions.
    """
    if X is None:
        raise TypeError(
            "X is None; expected one long series (a 1-D/2-D array, Series or DataFrame "
            "indexed by time) or several (a 3-D array, a list of arrays or a DataFrame "
            "indexed by (series id, time))."
        )
    if _is_sparse(X):
        raise _sparse_error()
    if isinstance(X, (pd.Series, pd.DataFrame)):
        if isinstance(X.index, pd.MultiIndex):
            return check_sequences(X, dtype=dtype, kind="frame")
        frame = X.to_frame() if isinstance(X, pd.Series) else X
        non_numeric = timeseries._non_numeric_columns(frame)
        if non_numeric:
            raise TypeError(
                f"Columns {non_numeric} of X are not numeric; every feature column must "
                "hold numbers."
            )
        if any(pd.api.types.is_complex_dtype(dt) for dt in frame.dtypes):
            raise ValueError("Complex data not supported in X; pass real numbers.")
        _check_not_empty(1, frame.shape[0], frame.shape[1], frame.shape)
        _check_time_index(frame.index, "X")
        values = np.ascontiguousarray(frame.to_numpy(dtype=dtype, na_value=np.nan)[None])
        _check_finite(values, "X")
        names = np.asarray(frame.columns, dtype=object)
        feature_names = names if all(isinstance(n, str) for n in names) else None
        return SequenceData(
            values=values,
            mask=None,
            lengths=np.array([values.shape[1]], dtype=np.intp),
            kind="series",
            feature_names=feature_names,
            time_index=frame.index,
        )
    if isinstance(X, (str, bytes)) or np.isscalar(X):
        raise TypeError(f"X must be an array-like series; got {type(X).__name__}.")
    if isinstance(X, (list, tuple)) and _is_ragged(X):
        return check_sequences(X, dtype=dtype, kind="ragged")
    array = _as_numeric(X, "X")
    if array.ndim == 3:
        return check_sequences(array, dtype=dtype, kind="array")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(
            f"Expected one series (1-D or 2-D (n_timesteps, n_features)) or several "
            f"(3-D (n_series, n_timesteps, n_features)); got an array of shape {array.shape}."
        )
    _check_not_empty(1, *array.shape, array.shape)
    values = np.ascontiguousarray(array[None], dtype=dtype)
    _check_finite(values, "X")
    return SequenceData(
        values=values,
        mask=None,
        lengths=np.array([values.shape[1]], dtype=np.intp),
        kind="series",
    )


def check_series_targets(y, data):
    """Per-step targets aligned with the series of :func:`check_series`.

    Parameters
    ----------
    y : array-like, list of array-like, or pandas Series/DataFrame
        For one series: ``(n_timesteps,)`` or ``(n_timesteps, n_outputs)``,
        or pandas indexed like a pandas ``X`` (aligned by label). For
        several series: as :func:`check_targets` takes per-step targets.
    data : SequenceData
        The validated ``X``.

    Returns
    -------
    TargetData
        Per-step targets of shape ``(n_series, n_timesteps[, n_outputs])``.

    Raises
    ------
    ValueError
        If ``y`` is None or does not have one entry per step of ``X``.
    """
    if data.kind != "series":
        return check_targets(y, data, per_step=True)
    if y is None:
        raise ValueError("This estimator requires y to be passed, but the target y is None.")
    if _is_sparse(y):
        raise TypeError("Sparse targets are not supported; pass a dense array.")
    n_steps = data.n_timesteps
    if isinstance(y, (pd.Series, pd.DataFrame)):
        if isinstance(y.index, pd.MultiIndex):
            raise ValueError(
                "y is indexed by a MultiIndex but X is one series indexed by time; index "
                "both the same way."
            )
        index = data.time_index
        if index is not None and not y.index.equals(index):
            if y.index.has_duplicates:
                raise ValueError("y's time index has duplicate labels.")
            missing = index.difference(y.index)
            if len(missing):
                raise ValueError(
                    f"y has no target for {len(missing)} time step(s) of X, e.g. "
                    f"{missing[0]!r}; per-step targets must cover every step of X."
                )
            y = y.reindex(index)
        values = y.to_numpy()
    else:
        values = np.asarray(y)
    if values.ndim == 0:
        raise ValueError(f"y must be an array-like of per-step targets; got the scalar {y!r}.")
    if values.ndim > 2:
        raise ValueError(
            f"For one series y must be (n_timesteps,) or (n_timesteps, n_outputs); got "
            f"shape {values.shape}."
        )
    if values.shape[0] != n_steps:
        raise ValueError(
            f"X has {n_steps} time steps but y has {values.shape[0]}; a stateful fit needs "
            "one target per time step."
        )
    return TargetData(values=values[None], per_step=True, mask=None)


# --------------------------------------------------------------------------
# Per-step outputs back in the user's form
# --------------------------------------------------------------------------


def format_step_output(values, data, columns=None):
    """Return per-step results in the form ``X`` came in.

    Parameters
    ----------
    values : ndarray of shape (n_sequences, n_timesteps, ...)
        Per-step results (padded).
    data : SequenceData
        The input they belong to.
    columns : sequence, optional
        Column labels for a trailing axis when returning a DataFrame.

    Returns
    -------
    ndarray, list of ndarray, or pandas Series/DataFrame
        Arrays for array input, one array per sequence (padding removed)
        for ragged input, and for pandas input a Series (or DataFrame when
        there is a trailing axis) indexed like ``X``. One long series
        (kind ``'series'``) gives ``(n_timesteps, ...)``, as pandas indexed
        by its time index when it came as pandas.
    """
    if data.kind == "ragged":
        return timeseries.unpad_sequences(values, data.lengths)
    if data.kind == "series":
        rows = values[0]
        if data.time_index is None:
            return rows
        if rows.ndim == 1:
            return pd.Series(rows, index=data.time_index)
        return pd.DataFrame(rows, index=data.time_index, columns=columns)
    if data.kind == "frame":
        rows = data.layout.gather(values)
        if rows.ndim == 1:
            return pd.Series(rows, index=data.layout.index)
        return pd.DataFrame(rows, index=data.layout.index, columns=columns)
    return values
