"""Element-wise activations for the numpy layers (Dense), with derivatives.

Recurrent kernels use the integer codes of ``numrnn.kernels._math``; this
module resolves names for both and computes the Dense activations.
"""

import numpy as np

from numrnn.kernels._math import ACTIVATION_CODES

DENSE_ACTIVATIONS = ("linear", "relu", "sigmoid", "tanh", "softmax", "hard_sigmoid", "softplus")


def recurrent_activation_code(name, argument="activation"):
    """Integer code of a recurrent-kernel activation, or a clear ValueError."""
    key = "linear" if name is None else name
    if not isinstance(key, str) or key not in ACTIVATION_CODES:
        raise ValueError(
            f"Unknown {argument} {name!r}: recurrent layers support "
            f"{', '.join(sorted(ACTIVATION_CODES))}."
        )
    return ACTIVATION_CODES[key]


def check_dense_activation(name):
    """Return the canonical activation name for Dense, or raise ValueError."""
    key = "linear" if name is None else name
    if not isinstance(key, str) or key not in DENSE_ACTIVATIONS:
        raise ValueError(
            f"Unknown activation {name!r}: expected one of {', '.join(DENSE_ACTIVATIONS)}."
        )
    return key


def apply(name, z):
    """Apply the Dense activation ``name`` to pre-activations ``z``."""
    if name == "linear":
        return z
    if name == "relu":
        return np.maximum(z, 0)
    if name == "sigmoid":
        # Stable for large |z| in both directions.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)
    if name == "tanh":
        return np.tanh(z)
    if name == "hard_sigmoid":
        return np.clip(z / 6 + 0.5, 0, 1)
    if name == "softplus":
        return np.logaddexp(z, 0).astype(z.dtype, copy=False)
    if name == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"Unknown activation {name!r}")


def backprop(name, z, y, dy):
    """Cotangent of the pre-activation ``z`` given output ``y`` and its cotangent ``dy``."""
    if name == "linear":
        return dy
    if name == "relu":
        return dy * (z > 0)
    if name == "sigmoid":
        return dy * y * (1 - y)
    if name == "tanh":
        return dy * (1 - y * y)
    if name == "hard_sigmoid":
        return dy * ((z > -3) & (z < 3)) / 6
    if name == "softplus":
        return dy * apply("sigmoid", z)
    if name == "softmax":
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))
    raise ValueError(f"Unknown activation {name!r}")
