"""Keras weight initialisers, drawn from a numpy ``Generator``.

The algorithms follow Keras 3 (fans, limits, the orthogonal QR with sign
correction); the random streams are numpy's, so values differ from Keras's
while their distributions match.
"""

import numpy as np

INITIALIZERS = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "orthogonal",
    "random_normal",
    "random_uniform",
    "zeros",
    "ones",
)


def _fans(shape):
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))
    return shape[-2] * receptive, shape[-1] * receptive


def _orthogonal(shape, rng):
    n_rows = int(np.prod(shape[:-1]))
    n_cols = shape[-1]
    a = rng.standard_normal((max(n_rows, n_cols), min(n_rows, n_cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if n_rows < n_cols:
        q = q.T
    return q.reshape(shape)


def check_initializer(name, argument):
    """Validate an initializer name (or callable) at construction time."""
    if callable(name) or name in INITIALIZERS:
        return name
    raise ValueError(
        f"Unknown {argument} {name!r}: expected a callable or one of {', '.join(INITIALIZERS)}."
    )


def initialize(name, shape, dtype, rng):
    """Draw an array of ``shape`` and ``dtype`` with initializer ``name``.

    Parameters
    ----------
    name : str or callable
        A Keras initializer name, or ``callable(shape, dtype, rng)``.
    shape : tuple of int
    dtype : numpy dtype
    rng : numpy.random.Generator
    """
    shape = tuple(int(s) for s in shape)
    if callable(name):
        values = np.asarray(name(shape, dtype, rng))
        if values.shape != shape:
            raise ValueError(f"Initializer returned shape {values.shape}, expected {shape}.")
        return values.astype(dtype)
    fan_in, fan_out = _fans(shape)
    if name == "zeros":
        values = np.zeros(shape)
    elif name == "ones":
        values = np.ones(shape)
    elif name == "orthogonal":
        values = _orthogonal(shape, rng)
    elif name == "random_normal":
        values = rng.normal(0.0, 0.05, shape)
    elif name == "random_uniform":
        values = rng.uniform(-0.05, 0.05, shape)
    else:
        family, law = name.split("_")
        fan = {"glorot": (fan_in + fan_out) / 2.0, "he": fan_in / 2.0, "lecun": fan_in}[family]
        if law == "uniform":
            limit = np.sqrt(3.0 / fan)
            values = rng.uniform(-limit, limit, shape)
        else:
            # Keras draws a truncated normal at two standard deviations.
            std = np.sqrt(1.0 / fan) / 0.87962566103423978
            values = rng.normal(0.0, std, shape)
            bad = np.abs(values) > 2 * std
            while bad.any():
                values[bad] = rng.normal(0.0, std, int(bad.sum()))
                bad = np.abs(values) > 2 * std
    return np.ascontiguousarray(values, dtype=dtype)
