"""Library-wide defaults, read at call time.

``set_floatx`` changes the default float dtype of layers created afterwards
(and of estimators that do not set ``dtype``), as ``keras.config.set_floatx``
does.
"""

import numpy as np

_FLOATX = "float32"
_VALID_FLOATX = ("float32", "float64")


def floatx():
    """Return the default float dtype name, ``'float32'`` or ``'float64'``."""
    return _FLOATX


def set_floatx(value):
    """Set the default float dtype, ``'float32'`` or ``'float64'``.

    Parameters
    ----------
    value : str or numpy dtype
        The new default float dtype.
    """
    global _FLOATX
    name = np.dtype(value).name if not isinstance(value, str) else value
    if name not in _VALID_FLOATX:
        raise ValueError(f"Unknown floatx {value!r}: expected one of {', '.join(_VALID_FLOATX)}.")
    _FLOATX = name


def resolve_dtype(dtype=None):
    """Return the numpy dtype for ``dtype``, or the current floatx when None."""
    name = floatx() if dtype is None else np.dtype(dtype).name
    if name not in _VALID_FLOATX:
        raise ValueError(f"Unsupported dtype {dtype!r}: expected float32 or float64.")
    return np.dtype(name)


_INPUT_VALIDATION = True


def input_validation():
    """Whether layers check their inputs for NaN and infinity (default True)."""
    return _INPUT_VALIDATION


def set_input_validation(enabled):
    """Turn the NaN/infinity check on layer inputs on or off.

    Parameters
    ----------
    enabled : bool
    """
    global _INPUT_VALIDATION
    _INPUT_VALIDATION = bool(enabled)
