"""Shared helpers of the asv suite: data, layer factories, warm-up."""

import os
import warnings

import numpy as np

CELLS = ["simple", "lstm", "gru"]
DTYPES = ["float32", "float64"]


def layer_class(cell):
    """The numrnn layer class of a cell name (``simple``, ``lstm``, ``gru``)."""
    from numrnn import layers

    return {"simple": layers.SimpleRNN, "lstm": layers.LSTM, "gru": layers.GRU}[cell]


def sequences(batch, steps, features, dtype="float32", seed=0):
    """Standard-normal ``(batch, steps, features)`` inputs."""
    return np.random.default_rng(seed).normal(size=(batch, steps, features)).astype(dtype)


def cotangent_like(output, seed=1):
    """A fixed random cotangent of an output's shape and dtype."""
    return np.random.default_rng(seed).normal(size=output.shape).astype(output.dtype)


def quiet():
    """Silence the convergence warnings of short benchmark fits."""
    warnings.filterwarnings("ignore", message=".*(did not converge|Maximum number).*")
    try:
        from sklearn.exceptions import ConvergenceWarning

        warnings.filterwarnings("ignore", category=ConvergenceWarning)
    except ImportError:  # pragma: no cover - sklearn is a dependency
        pass


def thread_note():
    """The thread settings the run inherited (for the benchmark logs)."""
    keys = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
    return {k: os.environ.get(k) for k in keys}
