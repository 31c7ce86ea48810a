"""Gate math shared by the CPU and CUDA kernels.

These are plain scalar Python functions. ``kernels/cpu`` compiles them with
``numba.njit`` and ``kernels/cuda`` with ``numba.cuda.jit(device=True)``, so
the formulas exist once. Activations arrive as integer codes (kernels take no
callables); derivatives are expressed through the activation's *output*, which
is what the forward pass caches.
"""

import math

import numpy as np

LINEAR = 0
TANH = 1
SIGMOID = 2
HARD_SIGMOID = 3
RELU = 4

ACTIVATION_CODES = {
    "linear": LINEAR,
    "tanh": TANH,
    "sigmoid": SIGMOID,
    "hard_sigmoid": HARD_SIGMOID,
    "relu": RELU,
}


def activate(code, v):
    """Apply the activation ``code`` to the scalar ``v``."""
    if code == TANH:
        return math.tanh(v)
    if code == SIGMOID:
        return 1.0 / (1.0 + math.exp(-v))
    if code == HARD_SIGMOID:
        # Keras 3: relu6(x + 3) / 6 == clip(x / 6 + 1/2, 0, 1)
        return min(max(v / 6.0 + 0.5, 0.0), 1.0)
    if code == RELU:
        return max(v, 0.0)
    return v + 0.0


def activation_grad(code, y):
    """Derivative of activation ``code`` at the point whose output is ``y``."""
    if code == TANH:
        return 1.0 - y * y
    if code == SIGMOID:
        return y * (1.0 - y)
    if code == HARD_SIGMOID:
        return 1.0 / 6.0 if 0.0 < y < 1.0 else 0.0
    if code == RELU:
        return 1.0 if y > 0.0 else 0.0
    return 1.0


# -- fast float32 tanh and sigmoid ----------------------------------------------
#
# ``math.tanh``/``math.exp`` cost about 10 ns an element and keep a loop from
# vectorising. For float32 the kernels use instead a rational approximation
# fitted for numrnn (a weighted least-squares fit of the minimax error, on
# [0, 9]):
#
#     tanh(x) ~= x * P(x^2) / Q(x^2),  |x| clamped to 9,
#
# with P and Q of degree 4 in x^2 and P(0) = Q(0) = 1, so that tanh is odd,
# exact at 0 and saturates at +-1. Evaluated in float32 its error is below
# 4e-7 absolute and relative (about 3 float32 ulps); in exact arithmetic the
# fit is within 2e-8. ``sigmoid(x) = (1 + tanh(x / 2)) / 2`` inherits half
# that absolute error. float64 kernels keep the exact libm functions.
# Every constant is float32 so that float32 arithmetic stays float32.

_TANH_CLAMP = np.float32(9.0)
_TANH_P1 = np.float32(0.13380314929104306)
_TANH_P2 = np.float32(0.0034947551644129936)
_TANH_P3 = np.float32(2.0596028297312956e-05)
_TANH_P4 = np.float32(1.3337974990538376e-08)
_TANH_Q1 = np.float32(0.4671363235261759)
_TANH_Q2 = np.float32(0.025873779980827835)
_TANH_Q3 = np.float32(0.00032842992004405313)
_TANH_Q4 = np.float32(7.769425603791603e-07)
_F32_HALF = np.float32(0.5)
_F32_ONE = np.float32(1.0)


def tanh_f32(v):
    """float32 ``tanh(v)`` by a rational approximation (error below 4e-7).

    NaN propagates; +-inf give +-1.
    """
    x = min(max(v, -_TANH_CLAMP), _TANH_CLAMP)
    s = x * x
    p = _F32_ONE + s * (_TANH_P1 + s * (_TANH_P2 + s * (_TANH_P3 + s * _TANH_P4)))
    q = _F32_ONE + s * (_TANH_Q1 + s * (_TANH_Q2 + s * (_TANH_Q3 + s * _TANH_Q4)))
    r = x * p / q
    return r if v == v else v


def sigmoid_f32(v):
    """float32 logistic sigmoid, ``(1 + tanh(v / 2)) / 2`` with the
    approximation of :func:`tanh_f32` (error below 2e-7). NaN propagates."""
    x = min(max(_F32_HALF * v, -_TANH_CLAMP), _TANH_CLAMP)
    s = x * x
    p = _F32_ONE + s * (_TANH_P1 + s * (_TANH_P2 + s * (_TANH_P3 + s * _TANH_P4)))
    q = _F32_ONE + s * (_TANH_Q1 + s * (_TANH_Q2 + s * (_TANH_Q3 + s * _TANH_Q4)))
    r = _F32_HALF + _F32_HALF * (x * p / q)
    return r if v == v else v
