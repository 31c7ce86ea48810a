"""Gate math shared by the CPU and CUDA kernels.

These are plain scalar Python functions. ``kernels/cpu`` compiles them with
``numba.njit`` and ``kernels/cuda`` with ``numba.cuda.jit(device=True)``, so
the formulas exist once. Activations arrive as integer codes (kernels take no
callables); derivatives are expressed through the activation's *output*, which
is what the forward pass caches.
"""

import math

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
