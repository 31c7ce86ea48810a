"""Stateful chunked training and prediction over long series (truncated BPTT).

A stateful estimator builds its recurrent layers with ``stateful=True``: each
call of the network starts from the states the previous call ended with, one
state row per parallel series ("stream"). Training walks the series in
chunks of ``chunk_length`` steps; the states enter a chunk as constants, so
gradients stop at chunk boundaries (truncated backpropagation through time)
and memory is bounded by one chunk's activations, not by the series.

This module holds the pieces that do not depend on the task: chunking,
reading and writing the states of a model, and rebuilding a model whose
states are sized for another number of streams. It calls only the public
API of the layers and of :class:`numrnn.Sequential`.
"""

import copy
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from numrnn import layers as nr_layers
from numrnn.models import Sequential
from numrnn.timeseries import chunk_bounds

__all__ = [
    "TimeSplit",
    "single_threaded_blas",
    "recurrent_layers",
    "model_states",
    "set_model_states",
    "stateful_copy",
    "with_fresh_states",
    "predict_chunks",
]


@dataclass(frozen=True)
class TimeSplit:
    """Early stopping for stateful fits: the last steps of every series are held out.

    Attributes
    ----------
    train_stop : int
        Steps ``[0, train_stop)`` are trained on.
    n_steps : int
        Padded length; steps ``[train_stop, n_steps)`` are validated on,
        continuing the states of the training pass.
    """

    train_stop: int
    n_steps: int


def single_threaded_blas():
    """Context manager limiting BLAS to one thread, for chunked work on few streams.

    The kernels multiply ``(n_streams, units)`` blocks at every step. With a
    few streams these products are tiny, and a multi-threaded BLAS spends
    far more time waking and synchronising its threads than computing:
    measured on a 2-core machine shared with other jobs, a stateful fit over
    10^5 steps (1 stream, 32 LSTM units, chunks of 200) took 6.3 s with
    OpenBLAS's default 2 threads and 1.0 s with 1 thread.
    """
    return threadpool_limits(limits=1, user_api="blas")


def recurrent_layers(model):
    """The recurrent layers of ``model`` (the ones that carry states), in order."""
    return [layer for layer in model.layers if isinstance(layer, nr_layers.RNN)]


def model_states(model):
    """Copies of the states of every stateful layer (None for a layer not yet called).

    Parameters
    ----------
    model : Sequential

    Returns
    -------
    list
        One entry per recurrent layer: a list of ``(n_streams, units)``
        arrays, or None.
    """
    return [layer.states for layer in recurrent_layers(model)]


def set_model_states(model, states):
    """Write states read by :func:`model_states` back into ``model``.

    Parameters
    ----------
    model : Sequential
    states : list
        As returned by :func:`model_states` for the same model.
    """
    for layer, layer_states in zip(recurrent_layers(model), states, strict=True):
        if layer_states is not None:
            layer.reset_states(layer_states)


def _clone_recurrent(layer, stateful):
    """A fresh copy of a recurrent layer (no states), with its weights when built."""
    config = layer.get_config()
    config["stateful"] = stateful
    clone = type(layer)(**config)
    if layer.built:
        clone.build(layer.input_shape)
        clone.set_weights(layer.get_weights())
    return clone


def stateful_copy(layer_list, owner):
    """Copies of user-given layers with every recurrent layer made stateful.

    Parameters
    ----------
    layer_list : list of Layer
        The ``layers`` hyperparameter of an estimator.
    owner : str
        Name of the estimator, for error messages.

    Returns
    -------
    list of Layer
        Deep copies; recurrent layers are rebuilt with ``stateful=True``
        (keeping their weights when built).

    Raises
    ------
    ValueError
        If a layer is ``Bidirectional``: the backward direction would need
        the chunks that come later.
    """
    result = []
    for layer in layer_list:
        if isinstance(layer, nr_layers.Bidirectional):
            raise ValueError(
                f"{owner}(stateful=True) cannot use Bidirectional layers: the backward "
                "direction would need the chunks that come later. Use forward-only layers."
            )
        if isinstance(layer, nr_layers.RNN):
            result.append(_clone_recurrent(layer, stateful=True))
        else:
            result.append(copy.deepcopy(layer))
    return result


def with_fresh_states(model):
    """A copy of ``model`` with the same weights and no states yet.

    Stateful layers fix their number of streams at their first call; this
    copy takes any number of streams at its next call.

    Parameters
    ----------
    model : Sequential
        A built model.

    Returns
    -------
    Sequential
    """
    fresh = []
    for layer in model.layers:
        if isinstance(layer, nr_layers.RNN):
            fresh.append(_clone_recurrent(layer, stateful=layer.stateful))
        else:
            fresh.append(copy.deepcopy(layer))
    new = Sequential(fresh, name=model.name)
    new.build(model.input_shape)
    new.set_weights(model.get_weights())
    return new


def n_streams(model):
    """Number of streams the model's states are sized for (None before its first call)."""
    for layer_states in model_states(model):
        if layer_states is not None:
            return int(layer_states[0].shape[0])
    return None


def predict_chunks(model, values, mask, chunk_length):
    """Run ``model`` over long series chunk by chunk, continuing its states.

    Parameters
    ----------
    model : Sequential
        A model with stateful recurrent layers (inference mode is used).
    values : ndarray of shape (n_streams, n_timesteps, n_features)
        The input, already in the model's dtype.
    mask : ndarray of bool, shape (n_streams, n_timesteps), or None
        True at real steps.
    chunk_length : int
        Steps per call; the result does not depend on it (up to rounding).

    Returns
    -------
    ndarray of shape (n_streams, n_timesteps, n_outputs), float64
        Per-step outputs; the model's states end where the series end.
    """
    out = None
    for start, stop in chunk_bounds(values.shape[1], chunk_length):
        chunk_mask = None if mask is None else mask[:, start:stop]
        chunk = model(values[:, start:stop], mask=chunk_mask)
        if out is None:
            out = np.empty(values.shape[:2] + chunk.shape[2:], dtype=np.float64)
        out[:, start:stop] = chunk
    return out
