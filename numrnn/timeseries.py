"""Conversions between sequence collections, padded arrays and pandas data.

Recurrent layers take padded 3-D arrays ``(n_sequences, n_timesteps,
n_features)`` with a boolean mask ``(n_sequences, n_timesteps)`` (True =
real step). These helpers build them from ragged lists of sequences and
from pandas frames in long format, and map per-step results back.

Padding is always at the end of a sequence ("post" padding), with zeros.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = [
    "pad_sequences",
    "unpad_sequences",
    "FrameLayout",
    "frame_layout",
    "frame_to_padded",
]


def pad_sequences(sequences, *, dtype=np.float64):
    """Stack sequences of different lengths into a zero-padded 3-D array.

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
    non_numeric = [
        str(name)
        for name, col_dtype in frame.dtypes.items()
        if not pd.api.types.is_numeric_dtype(col_dtype)
    ]
    if non_numeric:
        raise TypeError(
            f"Columns {non_numeric} are not numeric; every feature column must hold numbers."
        )
    values = frame.to_numpy(dtype=dtype, na_value=np.nan)
    padded = layout.scatter(values, fill_value=0)
    mask = layout.scatter(np.ones(len(frame), dtype=bool), fill_value=False)
    return padded, mask, layout
