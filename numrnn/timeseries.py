"""Conversions between sequence collections, padded arrays and pandas data.

Recurrent layers take padded 3-D arrays ``(n_sequences, n_timesteps,
n_features)`` with a boolean mask ``(n_sequences, n_timesteps)`` (True =
real step). These helpers build them from ragged lists of sequences and
from pandas frames in long format, and map per-step results back:

- :func:`pad_sequences`: Keras-compatible padding and truncation (one array);
- :func:`pad_and_mask`: zero padding at the end plus the mask and lengths,
  as the estimators use it;
- :func:`sequences_to_frame` / :func:`frame_to_sequences`: lists of
  sequences to and from a ``(sequence id, time)`` MultiIndex DataFrame;
- :func:`sliding_windows`: fixed-length windows and the values that follow
  them, from one long series, for training a non-stateful model;
- :func:`chunk_bounds`: the chunks of a long series that stateful training
  and prediction walk through.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "pad_sequences",
    "pad_and_mask",
    "unpad_sequences",
    "sequences_to_frame",
    "frame_to_sequences",
    "sliding_windows",
    "chunk_bounds",
    "FrameLayout",
    "frame_layout",
    "frame_to_padded",
]


def _as_2d_arrays(sequences):
    """The sequences as 2-D arrays (a 1-D one becomes one feature column)."""
    arrays = [np.asarray(seq) for seq in sequences]
    if not arrays:
        raise ValueError("Found 0 sequences; at least 1 is required.")
    arrays = [a[:, None] if a.ndim == 1 else a for a in arrays]
    for index, array in enumerate(arrays):
        if array.ndim != 2:
            raise ValueError(
                f"Sequence {index} has {array.ndim} dimensions; each sequence must be "
                "2-D (n_timesteps, n_features) or 1-D (n_timesteps,)."
            )
    return arrays


def _non_numeric_columns(frame):
    """Names (as strings) of the columns of ``frame`` whose dtype is not numeric."""
    return [
        str(name)
        for name, col_dtype in frame.dtypes.items()
        if not pd.api.types.is_numeric_dtype(col_dtype)
    ]


def pad_and_mask(sequences, *, dtype=np.float64):
    """Stack sequences of different lengths into a zero-padded 3-D array.

    Padding goes at the end of each sequence ("post"); the mask tells real
    steps from padding. For Keras's ``pad_sequences`` (pre/post padding and
    truncation, one array) see :func:`pad_sequences`.

    Parameters
    ----------
    sequences : sequence of array-like
        Each of shape ``(length_i, n_features)``, or ``(length_i,)`` for a
        univariate sequence (read as one feature). All must have the same
        number of features and at least one step.
    dtype : numpy dtype, default=np.float64
        Dtype of the padded array.

    Returns
    -------
    padded : ndarray of shape (n_sequences, max_length, n_features)
        The sequences, zero-padded at the end.
    mask : ndarray of bool, shape (n_sequences, max_length)
        True at real steps, False at padding.
    lengths : ndarray of int, shape (n_sequences,)
        Length of each sequence.

    Raises
    ------
    ValueError
        If the list is empty, a sequence is empty or has more than two
        dimensions, or the sequences disagree on the number of features.
    """
    arrays = _as_2d_arrays(sequences)
    for index, array in enumerate(arrays):
        if array.shape[0] == 0:
            raise ValueError(f"Sequence {index} is empty; every sequence needs at least 1 step.")
    n_features = arrays[0].shape[1]
    for index, array in enumerate(arrays):
        if array.shape[1] != n_features:
            raise ValueError(
                f"Sequence {index} has {array.shape[1]} features but sequence 0 has "
                f"{n_features}; all sequences must have the same number of features."
            )
    lengths = np.array([a.shape[0] for a in arrays], dtype=np.intp)
    padded = np.zeros((len(arrays), int(lengths.max()), n_features), dtype=dtype)
    for index, array in enumerate(arrays):
        padded[index, : lengths[index]] = array
    mask = np.arange(padded.shape[1])[None, :] < lengths[:, None]
    return padded, mask, lengths


def unpad_sequences(padded, lengths):
    """Split a padded array back into a list of sequences.

    Parameters
    ----------
    padded : ndarray of shape (n_sequences, max_length, ...)
        Padded per-step values.
    lengths : array-like of int, shape (n_sequences,)
        Number of real steps of each sequence.

    Returns
    -------
    list of ndarray
        ``padded[i, :lengths[i]]`` for each sequence ``i``.
    """
    return [padded[index, :length] for index, length in enumerate(lengths)]


@dataclass
class FrameLayout:
    """Where each row of a long-format frame lands in the padded array.

    Attributes
    ----------
    sequence_ids : pandas.Index
        The sequence ids, in order of first appearance in the frame.
    lengths : ndarray of int, shape (n_sequences,)
        Number of rows (steps) of each sequence.
    row_sequence : ndarray of int, shape (n_rows,)
        Sequence position of each row, in the frame's row order.
    row_step : ndarray of int, shape (n_rows,)
        Time-step position of each row within its sequence (rows sorted by
        time within a sequence).
    index : pandas.MultiIndex
        The frame's original index.
    """

    sequence_ids: pd.Index
    lengths: np.ndarray
    row_sequence: np.ndarray
    row_step: np.ndarray
    index: pd.MultiIndex

    @property
    def n_sequences(self):
        """Number of sequences."""
        return len(self.sequence_ids)

    @property
    def max_length(self):
        """Length of the longest sequence."""
        return int(self.lengths.max())

    def scatter(self, row_values, fill_value=0):
        """Place per-row values at their (sequence, step) positions.

        Parameters
        ----------
        row_values : ndarray of shape (n_rows, ...)
            Values in the frame's row order.
        fill_value : scalar, default=0
            Value at padded positions.

        Returns
        -------
        ndarray of shape (n_sequences, max_length, ...)
            The padded array.
        """
        row_values = np.asarray(row_values)
        out = np.full(
            (self.n_sequences, self.max_length) + row_values.shape[1:],
            fill_value,
            dtype=row_values.dtype,
        )
        out[self.row_sequence, self.row_step] = row_values
        return out

    def gather(self, padded):
        """Read per-row values from a padded array, in the frame's row order.

        Parameters
        ----------
        padded : ndarray of shape (n_sequences, max_length, ...)
            Per-step values.

        Returns
        -------
        ndarray of shape (n_rows, ...)
            The value for each row of the frame.
        """
        return np.asarray(padded)[self.row_sequence, self.row_step]


def frame_layout(index):
    """Describe how a ``(sequence id, time)`` MultiIndex maps to padded arrays.

    Sequences are ordered by first appearance of their id; rows of a sequence
    are ordered by time (whatever their order in the frame).

    Parameters
    ----------
    index : pandas.MultiIndex with 2 levels
        ``(sequence id, time)`` for each row.

    Returns
    -------
    FrameLayout
        The mapping.

    Raises
    ------
    ValueError
        If the index does not have exactly 2 levels, holds missing values,
        or a ``(sequence id, time)`` pair repeats.
    """
    if not isinstance(index, pd.MultiIndex) or index.nlevels != 2:
        levels = index.nlevels if isinstance(index, pd.MultiIndex) else 1
        raise ValueError(
            "A pandas frame of sequences needs a 2-level MultiIndex (sequence id, time); "
            f"got an index with {levels} level(s)."
        )
    if len(index) == 0:
        raise ValueError("Found a frame with 0 rows; at least 1 row is required.")
    ids = index.get_level_values(0)
    times = index.get_level_values(1)
    if ids.hasnans or times.hasnans:
        raise ValueError("The (sequence id, time) index contains missing values.")
    if index.has_duplicates:
        duplicate = index[index.duplicated()][0]
        raise ValueError(
            f"The (sequence id, time) pair {duplicate!r} appears more than once; "
            "each sequence may hold one row per time."
        )
    sequence_codes, sequence_ids = pd.factorize(ids, sort=False)
    time_codes, _ = pd.factorize(times, sort=True)
    # stable sort by (sequence, time): the step of each row is its rank in its sequence
    order = np.lexsort((time_codes, sequence_codes))
    lengths = np.bincount(sequence_codes, minlength=len(sequence_ids)).astype(np.intp)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    row_step = np.empty(len(index), dtype=np.intp)
    row_step[order] = np.arange(len(index)) - starts[sequence_codes[order]]
    return FrameLayout(
        sequence_ids=pd.Index(sequence_ids),
        lengths=lengths,
        row_sequence=sequence_codes.astype(np.intp),
        row_step=row_step,
        index=index,
    )


def frame_to_padded(frame, *, dtype=np.float64):
    """Convert a long-format frame of sequences into a padded 3-D array.

    Parameters
    ----------
    frame : pandas.DataFrame or pandas.Series
        One row per (sequence id, time), indexed by a 2-level MultiIndex;
        each column is a feature (a Series is one feature).
    dtype : numpy dtype, default=np.float64
        Dtype of the padded array.

    Returns
    -------
    padded : ndarray of shape (n_sequences, max_length, n_features)
        Sequences in order of first appearance, rows sorted by time.
    mask : ndarray of bool, shape (n_sequences, max_length)
        True at real steps.
    layout : FrameLayout
        The row mapping, to align per-step targets and outputs.

    Raises
    ------
    TypeError
        If a column is not numeric.
    ValueError
        If the index is not a valid ``(sequence id, time)`` MultiIndex.
    """
    if isinstance(frame, pd.Series):
        frame = frame.to_frame()
    layout = frame_layout(frame.index)
    non_numeric = _non_numeric_columns(frame)
    if non_numeric:
        raise TypeError(
            f"Columns {non_numeric} are not numeric; every feature column must hold numbers."
        )
    values = frame.to_numpy(dtype=dtype, na_value=np.nan)
    padded = layout.scatter(values, fill_value=0)
    mask = layout.scatter(np.ones(len(frame), dtype=bool), fill_value=False)
    return padded, mask, layout


# --------------------------------------------------------------------------
# Keras-compatible padding
# --------------------------------------------------------------------------

_PAD_SIDES = ("pre", "post")


def pad_sequences(
    sequences, maxlen=None, dtype="int32", padding="pre", truncating="pre", value=0.0
):
    """Pad (and truncate) sequences to one length, like ``keras.utils.pad_sequences``.

    Parameters
    ----------
    sequences : sequence of array-like
        Each of shape ``(length_i,)`` or ``(length_i, *sample_shape)``; every
        non-empty sequence must have the same ``sample_shape``. Empty
        sequences give rows made only of ``value``.
    maxlen : int, default=None
        Length of the result; None means the longest sequence.
    dtype : str or numpy dtype, default='int32'
        Dtype of the result (Keras's default; pass ``'float32'`` for real
        values, ``object`` for strings).
    padding : {'pre', 'post'}, default='pre'
        Pad before or after each sequence.
    truncating : {'pre', 'post'}, default='pre'
        Drop values from the beginning or the end of sequences longer than
        ``maxlen``.
    value : float or str, default=0.0
        Padding value.

    Returns
    -------
    ndarray of shape ``(n_sequences, maxlen) + sample_shape``
        The padded sequences.

    Raises
    ------
    ValueError
        For an unknown ``padding``/``truncating``, a negative ``maxlen``,
        sequences whose sample shapes differ, or a string ``value`` with a
        non-string ``dtype``.

    Examples
    --------
    >>> from numrnn.timeseries import pad_sequences
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]]).tolist()
    [[0, 0, 1], [0, 2, 3], [4, 5, 6]]
    >>> pad_sequences([[1], [2, 3], [4, 5, 6]], maxlen=2, padding="post").tolist()
    [[1, 0], [2, 3], [5, 6]]
    """
    if padding not in _PAD_SIDES:
        raise ValueError(f'Padding type "{padding}" not understood: expected "pre" or "post".')
    if truncating not in _PAD_SIDES:
        raise ValueError(
            f'Truncating type "{truncating}" not understood: expected "pre" or "post".'
        )
    if isinstance(sequences, (str, bytes)) or not hasattr(sequences, "__len__"):
        raise TypeError(f"sequences must be a list of sequences; got {type(sequences).__name__}.")
    lengths = []
    sample_shape = None
    for index, seq in enumerate(sequences):
        if not hasattr(seq, "__len__"):
            raise ValueError(
                f"sequences[{index}] is a {type(seq).__name__}, not a sequence; pass a list "
                "of sequences (lists or arrays)."
            )
        lengths.append(len(seq))
        if sample_shape is None and len(seq):
            sample_shape = np.asarray(seq).shape[1:]
    sample_shape = () if sample_shape is None else sample_shape
    if maxlen is None:
        maxlen = max(lengths, default=0)
    elif isinstance(maxlen, (bool, np.bool_)) or not isinstance(maxlen, (int, np.integer)):
        raise TypeError(f"maxlen must be None or a non-negative int; got {maxlen!r}.")
    elif maxlen < 0:
        raise ValueError(f"maxlen must be None or a non-negative int; got {maxlen}.")
    dtype = np.dtype(dtype)
    if isinstance(value, str) and dtype.kind not in "OUS":
        raise ValueError(
            f"dtype {dtype} is not compatible with the string padding value {value!r}: "
            "set dtype=object for variable-length strings."
        )
    out = np.full((len(lengths), maxlen) + tuple(sample_shape), value, dtype=dtype)
    if maxlen == 0:
        return out
    for index, seq in enumerate(sequences):
        if not len(seq):
            continue
        kept = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        kept = np.asarray(kept, dtype=dtype)
        if kept.shape[1:] != tuple(sample_shape):
            raise ValueError(
                f"Shape of sample {kept.shape[1:]} of sequence at position {index} is "
                f"different from expected shape {tuple(sample_shape)}."
            )
        if padding == "post":
            out[index, : len(kept)] = kept
        else:
            out[index, maxlen - len(kept) :] = kept
    return out


# --------------------------------------------------------------------------
# Lists of sequences <-> long-format frames
# --------------------------------------------------------------------------


def sequences_to_frame(sequences, ids=None, columns=None, times=None):
    """Stack a list of sequences into a long DataFrame indexed by (sequence id, time).

    Parameters
    ----------
    sequences : sequence of array-like
        Each of shape ``(length_i, n_features)`` or ``(length_i,)``.
    ids : sequence, default=None
        One id per sequence; default ``0, 1, ...``.
    columns : sequence of str, default=None
        Feature names; default ``'f0', 'f1', ...``.
    times : sequence of array-like, default=None
        The time label of each step of each sequence (for example a
        DatetimeIndex per sequence); default ``0 .. length_i - 1``.

    Returns
    -------
    pandas.DataFrame
        One row per step, indexed by a MultiIndex named ``('id', 'time')``,
        one column per feature: the form the estimators accept.

    Raises
    ------
    ValueError
        If ``ids``, ``columns`` or ``times`` do not match the sequences, or
        the sequences disagree on the number of features.
    """
    arrays = _as_2d_arrays(sequences)
    n_features = arrays[0].shape[1]
    if any(a.shape[1] != n_features for a in arrays):
        raise ValueError("All sequences must have the same number of features.")
    ids = list(range(len(arrays))) if ids is None else list(ids)
    if len(ids) != len(arrays):
        raise ValueError(f"Got {len(ids)} ids for {len(arrays)} sequences; pass one id each.")
    if len(set(ids)) != len(ids):
        raise ValueError("The sequence ids must be unique.")
    columns = [f"f{i}" for i in range(n_features)] if columns is None else list(columns)
    if len(columns) != n_features:
        raise ValueError(
            f"Got {len(columns)} column names for {n_features} features; pass one name each."
        )
    if times is None:
        step_labels = [np.arange(len(a)) for a in arrays]
    else:
        step_labels = list(times)
        if len(step_labels) != len(arrays):
            raise ValueError(
                f"Got {len(step_labels)} time indexes for {len(arrays)} sequences; pass one each."
            )
        for index, (labels, array) in enumerate(zip(step_labels, arrays, strict=True)):
            if len(labels) != len(array):
                raise ValueError(
                    f"Sequence {index} has {len(array)} steps but {len(labels)} time labels."
                )
    id_level = np.repeat(np.asarray(ids, dtype=object), [len(a) for a in arrays])
    time_level = pd.Index(np.concatenate([np.asarray(t) for t in step_labels]))
    index = pd.MultiIndex.from_arrays([id_level, time_level], names=["id", "time"])
    values = np.concatenate(arrays, axis=0)
    return pd.DataFrame(values, index=index, columns=columns)


def frame_to_sequences(frame):
    """Split a long DataFrame indexed by (sequence id, time) into a list of arrays.

    Parameters
    ----------
    frame : pandas.DataFrame or pandas.Series
        One row per (sequence id, time), each column a feature.

    Returns
    -------
    sequences : list of ndarray
        One ``(length_i, n_features)`` array per sequence (``(length_i,)``
        for a Series), rows sorted by time, in order of first appearance of
        the ids.
    ids : pandas.Index
        The sequence ids, in the same order.

    Raises
    ------
    ValueError
        If the index is not a 2-level ``(sequence id, time)`` MultiIndex
        without duplicates.
    """
    if not isinstance(frame, (pd.DataFrame, pd.Series)):
        raise TypeError(f"frame must be a pandas DataFrame or Series; got {type(frame).__name__}.")
    layout = frame_layout(frame.index)
    values = frame.to_numpy()
    order = np.lexsort((layout.row_step, layout.row_sequence))
    ordered = values[order]
    bounds = np.cumsum(layout.lengths)[:-1]
    return list(np.split(ordered, bounds)), layout.sequence_ids


# --------------------------------------------------------------------------
# Windows and chunks of one long series
# --------------------------------------------------------------------------


def _series_values(data, name):
    if isinstance(data, (pd.Series, pd.DataFrame)):
        if isinstance(data.index, pd.MultiIndex):
            raise ValueError(f"{name} must be one series indexed by time, not a MultiIndex frame.")
        values = data.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.asarray(data)
        if values.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric; got dtype {values.dtype}.")
    if values.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be 1-D (n_timesteps,) or 2-D (n_timesteps, n_features); got "
            f"shape {values.shape}."
        )
    return values


def sliding_windows(data, window_length, *, horizon=1, stride=1, target=None):
    """Cut one long series into fixed-length input windows and the values that follow.

    For training a non-stateful model on a long series: window ``i`` holds
    the steps ``[i*stride, i*stride + window_length)`` and its target the
    ``horizon`` steps right after it.

    Parameters
    ----------
    data : pandas.Series, pandas.DataFrame or array-like
        The series, ``(n_timesteps,)`` or ``(n_timesteps, n_features)``.
    window_length : int
        Steps per input window.
    horizon : int, default=1
        Number of future steps in each target.
    stride : int, default=1
        Steps between the starts of consecutive windows.
    target : label or list of labels, default=None
        DataFrame column(s) (or integer positions for arrays) to predict;
        None means every column.

    Returns
    -------
    windows : ndarray of shape (n_windows, window_length, n_features)
        The inputs (a copy, ready for ``fit``).
    targets : ndarray
        ``(n_windows,)`` for one target column and ``horizon=1``,
        ``(n_windows, horizon)`` for one column, ``(n_windows, n_targets)``
        for several columns and ``horizon=1``, else ``(n_windows, horizon,
        n_targets)``.

    Raises
    ------
    ValueError
        If the series is shorter than ``window_length + horizon`` or an
        argument is not a positive int.

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn.timeseries import sliding_windows
    >>> X, y = sliding_windows(np.arange(6.0), 3)
    >>> X[:, :, 0].tolist(), y.tolist()
    ([[0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]], [3.0, 4.0, 5.0])
    """
    for name, value in (("window_length", window_length), ("horizon", horizon),
                        ("stride", stride)):  # fmt: skip
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{name} must be a positive int; got {value!r}.")
        if value < 1:
            raise ValueError(f"{name} must be a positive int; got {value}.")
    values = _series_values(data, "data")
    if values.ndim == 1:
        values = values[:, None]
    n_steps = values.shape[0]
    if n_steps < window_length + horizon:
        raise ValueError(
            f"The series has {n_steps} steps; window_length={window_length} plus "
            f"horizon={horizon} needs at least {window_length + horizon}."
        )
    if target is None:
        columns = np.arange(values.shape[1])
    else:
        labels = list(target) if isinstance(target, (list, tuple, np.ndarray)) else [target]
        if isinstance(data, pd.DataFrame):
            missing = [label for label in labels if label not in data.columns]
            if missing:
                raise ValueError(f"target {missing} not among the columns {list(data.columns)}.")
            columns = np.asarray([data.columns.get_loc(label) for label in labels])
        else:
            columns = np.asarray(labels)
            if (
                columns.dtype.kind not in "iu"
                or (columns < 0).any()
                or (columns >= values.shape[1]).any()
            ):
                raise ValueError(
                    f"target must hold column positions in [0, {values.shape[1]}) for "
                    f"array data; got {target!r}."
                )
    n_windows = (n_steps - window_length - horizon) // stride + 1
    starts = np.arange(n_windows) * stride
    view = np.lib.stride_tricks.sliding_window_view(values, window_length, axis=0)
    windows = np.ascontiguousarray(view[starts].transpose(0, 2, 1))
    future = np.lib.stride_tricks.sliding_window_view(values[window_length:], horizon, axis=0)
    targets = np.ascontiguousarray(future[starts][:, columns].transpose(0, 2, 1))
    if len(columns) == 1 and not (target is not None and isinstance(target, (list, tuple))):
        targets = targets[:, :, 0]
        if horizon == 1:
            targets = targets[:, 0]
    elif horizon == 1:
        targets = targets[:, 0]
    return windows, targets


def chunk_bounds(n_steps, chunk_length):
    """The ``(start, stop)`` steps of consecutive chunks covering a series.

    Parameters
    ----------
    n_steps : int
        Length of the series.
    chunk_length : int
        Steps per chunk; the last chunk may be shorter.

    Returns
    -------
    list of tuple of int
        ``[(0, L), (L, 2L), ..., (kL, n_steps)]``.
    """
    if isinstance(chunk_length, (bool, np.bool_)) or not isinstance(
        chunk_length, (int, np.integer)
    ):
        raise TypeError(f"chunk_length must be a positive int; got {chunk_length!r}.")
    if chunk_length < 1:
        raise ValueError(f"chunk_length must be a positive int; got {chunk_length}.")
    return [
        (start, min(start + int(chunk_length), int(n_steps)))
        for start in range(0, int(n_steps), int(chunk_length))
    ]
