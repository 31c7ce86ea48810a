"""Running numrnn on Dask: batch prediction, per-series stateful prediction,
and kernel compilation on workers.

numrnn grows no scheduler of its own. Grid searches run on a
``dask.distributed`` cluster through joblib's Dask backend, with nothing
from this module::

    from dask.distributed import Client
    import joblib

    client = Client(...)
    with joblib.parallel_backend("dask"):
        GridSearchCV(RNNClassifier(), grid, n_jobs=-1).fit(X, y)

This module adds what scikit-learn does not have:

- :func:`predict_dask_array`: ``map_blocks`` over chunks of sequences of a
  ``dask.array`` (data larger than memory);
- :func:`predict_dask_dataframe`: a long-format Dask DataFrame, partitioned
  by sequence id so that no sequence straddles two partitions;
- :func:`stateful_predict` and :func:`predict_series_dask`: long series run
  chunk by chunk with the recurrent state carried over, one task per series;
- :func:`warm_up` and :func:`kernel_compile_stats`: load (or compile) the
  kernels once per worker process and check that later tasks compile
  nothing.

Dask is optional: it is imported only when a function needs it.
"""

import copy
import importlib

import numpy as np
import pandas as pd

from numrnn import layers as _layers
from numrnn.models import Sequential

__all__ = [
    "kernel_compile_stats",
    "make_stateful",
    "predict_dask_array",
    "predict_dask_dataframe",
    "predict_series_dask",
    "stateful_predict",
    "warm_up",
]

_KERNEL_MODULES = (
    "numrnn.kernels.cpu._common",
    "numrnn.kernels.cpu.simple_rnn",
    "numrnn.kernels.cpu.lstm",
    "numrnn.kernels.cpu.gru",
)
_METHODS = ("predict", "predict_proba", "predict_log_proba", "decision_function")


def _dask(module):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"This numrnn function needs {module}: pip install 'numrnn[dask]'."
        ) from None


def _method(estimator, method):
    if method not in _METHODS or not hasattr(estimator, method):
        raise ValueError(
            f"method must be one of {_METHODS} that {type(estimator).__name__} has; got {method!r}."
        )
    return getattr(estimator, method)


# --------------------------------------------------------------------------
# Kernel compilation on workers
# --------------------------------------------------------------------------


def _dispatchers():
    from numba.core.dispatcher import Dispatcher

    found = []
    for name in _KERNEL_MODULES:
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, Dispatcher) and value not in found:
                found.append(value)
    return found


def kernel_compile_stats():
    """Count compiled, cache-loaded and resident CPU kernel signatures.

    Counts are for this process (on a Dask worker: that worker process).

    Returns
    -------
    dict
        ``compiled``: signatures numba compiled here (on-disk cache misses);
        ``loaded_from_cache``: signatures loaded from numba's on-disk cache;
        ``resident``: signatures held in memory, ready to run.

    Examples
    --------
    >>> from numrnn.parallel import kernel_compile_stats
    >>> sorted(kernel_compile_stats())
    ['compiled', 'loaded_from_cache', 'resident']
    """
    compiled = loaded = resident = 0
    for dispatcher in _dispatchers():
        stats = dispatcher.stats
        compiled += sum(stats.cache_misses.values())
        loaded += sum(stats.cache_hits.values())
        resident += len(dispatcher.overloads)
    return {"compiled": compiled, "loaded_from_cache": loaded, "resident": resident}


def warm_up(cells=("simple", "lstm", "gru"), dtypes=("float32", "float64"), backward=True):
    """Load (or compile) the CPU kernels in this process before real work.

    Runs each cell once on a tiny input for each dtype (GRU in both
    ``reset_after`` modes): a call, as predictions make it (for the LSTM
    that is a kernel of its own, which keeps no caches), and with
    ``backward`` a forward and backward pass, as training makes it. With numba's on-disk cache
    warm this takes milliseconds per kernel; otherwise it compiles and fills
    the cache. On a Dask cluster run it once per worker with
    ``client.run(warm_up)`` (or register it as a worker plugin) so the first
    task does not pay the loading time; later tasks in the same worker
    process reuse the loaded kernels either way.

    Parameters
    ----------
    cells : sequence of {"simple", "lstm", "gru"}, default=all three
        Which cells to load.
    dtypes : sequence of {"float32", "float64"}, default=both
        Which float dtypes.
    backward : bool, default=True
        Also load the training kernels (forward with caches, and backward).

    Returns
    -------
    dict
        :func:`kernel_compile_stats` after the warm-up.
    """
    classes = {"simple": [_layers.SimpleRNN], "lstm": [_layers.LSTM], "gru": [_layers.GRU]}
    for cell in cells:
        if cell not in classes:
            raise ValueError(f"Unknown cell {cell!r}: expected 'simple', 'lstm' or 'gru'.")
    for dtype in dtypes:
        x = np.zeros((1, 2, 1), dtype=dtype)
        for cell in cells:
            variants = [{}] if cell != "gru" else [{"reset_after": True}, {"reset_after": False}]
            for options in variants:
                layer = classes[cell][0](1, dtype=dtype, **options)
                layer(x)  # predictions (the LSTM's outputs-only kernel)
                if backward:
                    layer.vjp(x, [np.ones((1, 1), dtype=dtype)])
    return kernel_compile_stats()


# --------------------------------------------------------------------------
# Batch prediction: dask.array
# --------------------------------------------------------------------------


def _apply_method(block, estimator, method):
    return np.asarray(getattr(estimator, method)(block))


def predict_dask_array(estimator, X, *, method="predict"):
    """Predict over a ``dask.array`` of sequences, block by block.

    Each block of whole sequences goes through ``estimator.<method>`` with
    ``map_blocks``; the result is a lazy ``dask.array`` equal to the
    in-memory call on the computed ``X``.

    Parameters
    ----------
    estimator : fitted RNNClassifier or RNNRegressor
        Any fitted estimator taking 3-D ``(n, timesteps, features)`` (or the
        2-D univariate form it was fitted on) and returning arrays.
    X : dask.array.Array or array-like
        Sequences ``(n_sequences, timesteps, features)`` or ``(n_sequences,
        timesteps)``. Chunks along the first axis set the blocks; the other
        axes are merged into one chunk (a block holds whole sequences).
    method : str, default="predict"
        ``"predict"``, ``"predict_proba"``, ``"predict_log_proba"``.

    Returns
    -------
    dask.array.Array
        Lazy predictions, chunked like ``X`` along the first axis.

    Raises
    ------
    ImportError
        If dask is not installed.
    ValueError
        For a wrong number of dimensions, unknown chunk sizes or an unknown
        method.
    """
    da = _dask("dask.array")
    function = _method(estimator, method)
    X = da.asarray(X)
    if X.ndim not in (2, 3):
        raise ValueError(
            f"X must be 3-D (n_sequences, timesteps, features) or 2-D (n_sequences, "
            f"timesteps); got {X.ndim} dimensions."
        )
    if any(np.isnan(size) for size in X.shape):
        raise ValueError(
            "X has unknown chunk sizes; call X.compute_chunk_sizes() (or give lengths to "
            "to_dask_array) first."
        )
    X = X.rechunk({axis: -1 for axis in range(1, X.ndim)})
    # the output's trailing shape and dtype, from one all-zero sequence
    sample = np.asarray(function(np.zeros((1,) + X.shape[1:], dtype=X.dtype)))
    tail = sample.shape[1:]
    out_ndim = 1 + len(tail)
    kwargs = {}
    if out_ndim < X.ndim:
        kwargs["drop_axis"] = list(range(out_ndim, X.ndim))
    elif out_ndim > X.ndim:
        kwargs["new_axis"] = list(range(X.ndim, out_ndim))
    return X.map_blocks(
        _apply_method,
        estimator,
        method,
        dtype=sample.dtype,
        chunks=(X.chunks[0],) + tuple((size,) for size in tail),
        meta=np.empty((0,) * out_ndim, dtype=sample.dtype),
        **kwargs,
    )


# --------------------------------------------------------------------------
# Batch prediction: Dask DataFrame partitioned by sequence id
# --------------------------------------------------------------------------


def _by_sequence(df, sequence_id, time):
    """``df`` indexed by ``sequence_id`` with known divisions (whole sequences
    per partition)."""
    if df.index.name == sequence_id and df.known_divisions:
        grouped = df
    elif sequence_id in df.columns:
        grouped = df.set_index(sequence_id)
    elif df.index.name == sequence_id:
        grouped = df.reset_index().set_index(sequence_id)
    else:
        raise ValueError(
            f"No column or index named {sequence_id!r} (the sequence id) in the Dask "
            f"DataFrame; columns are {list(df.columns)}."
        )
    if time not in grouped.columns:
        raise ValueError(f"No time column {time!r}; columns are {list(grouped.columns)}.")
    return grouped


def _output_frame(values, index, columns):
    values = np.asarray(values)
    if values.ndim == 1:
        return pd.DataFrame({columns[0]: values}, index=index)
    return pd.DataFrame(values, index=index, columns=columns)


def _predict_partition(part, estimator, sequence_id, time, features, method, columns, empty):
    if len(part) == 0:
        return empty
    frame = part.reset_index().set_index([sequence_id, time])[features]
    result = getattr(estimator, method)(frame)
    if isinstance(result, (pd.Series, pd.DataFrame)):
        # per-step output, indexed like the frame: one row per (id, time)
        table = result.to_frame(columns[0]) if isinstance(result, pd.Series) else result
        table = table.reset_index(level=1)
        table.columns = [time] + list(columns)
        return table
    ids = frame.index.get_level_values(0).unique()  # estimator's order: first appearance
    return _output_frame(result, pd.Index(ids, name=sequence_id), columns)


def _columns(estimator, method, width):
    if method != "predict" and hasattr(estimator, "classes_") and width == len(estimator.classes_):
        return list(estimator.classes_)
    if width == 1:
        return ["prediction"]
    return [f"prediction_{i}" for i in range(width)]


def predict_dask_dataframe(estimator, df, *, sequence_id, time, features=None, method="predict"):
    """Predict over a long-format Dask DataFrame, one partition at a time.

    The frame holds one row per (sequence, time step). It is indexed by the
    sequence id (``set_index`` when needed, which shuffles once) so that
    every sequence lies in a single partition; each partition then goes to
    the estimator as a pandas frame with a ``(sequence id, time)``
    MultiIndex.

    Parameters
    ----------
    estimator : fitted RNNClassifier or RNNRegressor
        Fitted on sequences with the same feature columns.
    df : dask.dataframe.DataFrame
        Long format: the sequence id (a column, or the index with known
        divisions), a time column and the feature columns.
    sequence_id : str
        Name of the sequence id column (or index).
    time : str
        Name of the time column (steps are ordered by it).
    features : list of str, optional
        Feature columns; defaults to every column but ``time``.
    method : str, default="predict"
        ``"predict"``, ``"predict_proba"`` or ``"predict_log_proba"``.

    Returns
    -------
    dask.dataframe.DataFrame
        Indexed by sequence id. Per-sequence models give one row per
        sequence with a ``prediction`` column (``prediction_<i>`` for
        several outputs; one column per class for probabilities). Per-step
        models give one row per step with the ``time`` column and the same
        prediction columns. Rows follow the sorted sequence ids.

    Raises
    ------
    ImportError
        If dask is not installed.
    ValueError
        For missing columns or an unknown method.
    """
    dd_utils = _dask("dask.dataframe.utils")
    _method(estimator, method)
    grouped = _by_sequence(df, sequence_id, time)
    features = [c for c in grouped.columns if c != time] if features is None else list(features)
    missing = [c for c in features if c not in grouped.columns]
    if missing or not features:
        raise ValueError(f"Feature columns {missing or features} are not in the frame.")
    # the output columns and dtypes, from a one-row sample with the frame's dtypes
    sample = dd_utils.meta_nonempty(grouped._meta).iloc[:1]
    sample[features] = 0
    probe = getattr(estimator, method)(
        sample.reset_index().set_index([sequence_id, time])[features]
    )
    if isinstance(probe, pd.DataFrame):
        width = probe.shape[1]
    elif isinstance(probe, pd.Series):
        width = 1
    else:
        probe = np.asarray(probe)
        width = 1 if probe.ndim == 1 else probe.shape[1]
    columns = _columns(estimator, method, width)
    meta = _predict_partition(sample, estimator, sequence_id, time, features, method, columns, None)
    meta = meta.iloc[:0]
    return grouped.map_partitions(
        _predict_partition,
        estimator,
        sequence_id,
        time,
        features,
        method,
        columns,
        meta,
        meta=meta,
        align_dataframes=False,
    )


# --------------------------------------------------------------------------
# Stateful prediction of long series
# --------------------------------------------------------------------------


def _stateful_copy(layer):
    if isinstance(layer, _layers.Bidirectional):
        raise ValueError(
            f"{layer.name}: a Bidirectional layer needs the whole series (its backward "
            "direction starts at the end), so it cannot run chunk by chunk."
        )
    if isinstance(layer, _layers.TimeDistributed):
        config = layer.get_config()
        config.pop("layer")
        new = _layers.TimeDistributed(_stateful_copy(layer.layer), **config)
    else:
        config = layer.get_config()
        if isinstance(layer, _layers.RNN):
            config["stateful"] = True
        new = type(layer)(**config)
    if layer.built:
        shape = tuple(layer.input_shape)
        new.build(((1,) if isinstance(layer, _layers.RNN) else shape[:1]) + shape[1:])
        new.set_weights(layer.get_weights())
    return new


def make_stateful(model):
    """A copy of ``model`` whose recurrent layers are stateful (batch size 1).

    Parameters
    ----------
    model : Sequential
        A built model of numrnn layers (no ``Bidirectional``).

    Returns
    -------
    Sequential
        Same weights; recurrent layers carry their states from call to call.

    Raises
    ------
    ValueError
        If the model is not built or holds a ``Bidirectional`` layer.
    """
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a numrnn Sequential, got {type(model).__name__}.")
    if not model.built:
        raise ValueError("The model is not built: build it (or fit it) first.")
    copy_ = Sequential([_stateful_copy(layer) for layer in model.layers], name=model.name)
    shape = model.input_shape or model.layers[0].input_shape
    copy_.build((1,) + tuple(shape[1:]))
    return copy_


def stateful_predict(model, series, *, chunk_length=1024):
    """Run one long series through a model in chunks, carrying the state.

    Equal to calling the model on the whole series at once, with memory
    bounded by ``chunk_length``. The model is copied first (stateful, batch
    size 1) and starts from zero states, so concurrent calls never share
    states.

    Parameters
    ----------
    model : Sequential
        A built model whose recurrent layers all return sequences (a
        per-step model, e.g. ``RNNRegressor(...).fit(...).model_`` fitted
        on per-step targets).
    series : array-like of shape (n_steps, n_features) or (n_steps,)
        One series.
    chunk_length : int, default=1024
        Steps per call.

    Returns
    -------
    ndarray of shape (n_steps, n_outputs)
        The model's per-step outputs.

    Raises
    ------
    ValueError
        If a recurrent layer does not return sequences, the model holds a
        ``Bidirectional`` layer, or ``series`` has the wrong shape.
    """
    if not (isinstance(chunk_length, (int, np.integer)) and chunk_length >= 1):
        raise ValueError(f"chunk_length must be a positive int, got {chunk_length!r}.")
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a numrnn Sequential, got {type(model).__name__}.")
    for layer in model.layers:
        inner = layer.layer if isinstance(layer, _layers.TimeDistributed) else layer
        if isinstance(inner, _layers.RNN) and not inner.return_sequences:
            raise ValueError(
                f"{inner.name}: every recurrent layer must return sequences for per-step "
                "outputs over chunks (return_sequences=True)."
            )
    values = np.asarray(series)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or len(values) == 0:
        raise ValueError(
            f"series must be (n_steps, n_features) or (n_steps,) with at least one step; "
            f"got shape {np.shape(series)}."
        )
    running = make_stateful(model)
    running.reset_states()
    parts = []
    for start in range(0, len(values), int(chunk_length)):
        parts.append(running(values[None, start : start + int(chunk_length)])[0])
    return np.concatenate(parts, axis=0)


def _series_partition(part, model, sequence_id, time, features, chunk_length, columns, empty):
    if len(part) == 0:
        return empty
    frames = []
    for seq_id, rows in part.groupby(level=0, sort=False):
        rows = rows.sort_values(time, kind="stable")
        outputs = stateful_predict(model, rows[features].to_numpy(), chunk_length=chunk_length)
        frame = pd.DataFrame(outputs, columns=columns)
        frame.insert(0, time, rows[time].to_numpy())
        frame.index = pd.Index([seq_id] * len(frame), name=sequence_id)
        frames.append(frame)
    return pd.concat(frames)


def predict_series_dask(model, df, *, sequence_id, time, features=None, chunk_length=1024):
    """Stateful per-step prediction of many independent long series on Dask.

    Every series (all rows of one sequence id, ordered by ``time``) runs
    through :func:`stateful_predict` inside one task: the state is carried
    chunk by chunk along the series, and series run in parallel across
    partitions and workers. Partitioning by sequence id keeps each series in
    one partition.

    Parameters
    ----------
    model : Sequential
        A built per-step model (see :func:`stateful_predict`).
    df : dask.dataframe.DataFrame
        Long format: sequence id (column or index), time column, features.
    sequence_id, time : str
        Names of the id and time columns.
    features : list of str, optional
        Feature columns; defaults to every column but ``time``.
    chunk_length : int, default=1024
        Steps per model call.

    Returns
    -------
    dask.dataframe.DataFrame
        Indexed by sequence id: the ``time`` column and one column per
        model output (``output_0``, ``output_1``, ...).

    Raises
    ------
    ImportError
        If dask is not installed.
    ValueError
        For missing columns or a model that cannot run chunk by chunk.
    """
    _dask("dask.dataframe")
    grouped = _by_sequence(df, sequence_id, time)
    features = [c for c in grouped.columns if c != time] if features is None else list(features)
    missing = [c for c in features if c not in grouped.columns]
    if missing or not features:
        raise ValueError(f"Feature columns {missing or features} are not in the frame.")
    if not model.built:
        raise ValueError("The model is not built: build it (or fit it) first.")
    n_outputs = model.output_shape[-1]
    columns = [f"output_{i}" for i in range(n_outputs)]
    meta = pd.DataFrame(
        {time: pd.Series([], dtype=grouped._meta[time].dtype)}
        | {c: pd.Series([], dtype=model.layers[-1].dtype) for c in columns}
    )
    meta.index = pd.Index([], dtype=grouped._meta.index.dtype, name=sequence_id)
    return grouped.map_partitions(
        _series_partition,
        copy.deepcopy(model),
        sequence_id,
        time,
        features,
        chunk_length,
        columns,
        meta,
        meta=meta,
        align_dataframes=False,
    )
