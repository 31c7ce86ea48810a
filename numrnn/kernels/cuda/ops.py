"""Device operations of the device-resident training path (``numba.cuda``).

The recurrent kernels (``simple_rnn``, ``lstm``, ``gru``) cover the cells;
this module holds everything else a training step needs so that weights,
gradients and optimizer slots never leave the GPU during a fit:

- Dense layers: bias add and activation (and their gradients), softmax;
- recurrent-layer plumbing: input dropout masks and their gradient,
  block-diagonal kernels for per-gate recurrent dropout, the cotangent of a
  last-step-only output;
- Bidirectional: the concat/sum/mul/ave merges with the time reversal of the
  backward direction, and their gradients;
- losses: per-entry values and gradients of MSE, MAE, Huber and the
  from-logits cross-entropies, with entry weights and masks;
- reductions into a small "scalars" array (loss sums, squared norms, counts
  of non-finite values), summed in float64: only that array comes back to
  the host;
- optimizer updates (SGD with (Nesterov) momentum, Adam, RMSprop) and
  gradient clipping, in place on device arrays.

Every function takes device arrays, Python ints/floats/bools only, with one
float dtype per call (the model's; sums and loss terms are computed in
float64 inside the kernels); launchers allocate their results on the
device. Formulas follow the numpy code they replace
(``numrnn.activations``, ``numrnn.losses``, ``numrnn.optimizers``) operation
for operation, so results agree within floating-point rounding.
The matrix products reuse the tiled GEMM of ``_common``; launch geometry
follows :func:`numrnn.kernels.cuda.set_launch_config`.
"""

import math

import numba
import numpy as np
from numba import cuda

from numrnn.kernels.cuda._common import _LAUNCH, kernel, launch_2d, matmul, sum_rows

__all__ = [
    "DENSE_ACTIVATIONS",
    "LOSS_KINDS",
    "MERGE_MODES",
    "activation_backward",
    "adam_update",
    "add_",
    "apply_input_dropout",
    "axpy_",
    "block_diagonal",
    "clip_by_norm_",
    "clip_by_value_",
    "copy_",
    "copy_new",
    "count_nonfinite",
    "dense_backward",
    "dense_forward",
    "diagonal_blocks",
    "empty",
    "fill_",
    "fold_input_dropout",
    "last_step",
    "loss_value_and_grad",
    "merge",
    "merge_backward",
    "multiply",
    "ones_mask",
    "rmsprop_update",
    "scatter_last_step",
    "sgd_momentum_update",
    "sgd_update",
    "sum_squares",
    "zeros",
]

#: Dense activation name -> kernel code (the first five are the recurrent codes)
DENSE_ACTIVATIONS = {
    "linear": 0,
    "tanh": 1,
    "sigmoid": 2,
    "hard_sigmoid": 3,
    "relu": 4,
    "softplus": 5,
    "softmax": 6,
}
_LINEAR, _TANH, _SIGMOID, _HARD_SIGMOID, _RELU, _SOFTPLUS, _SOFTMAX = range(7)

#: Bidirectional merge mode -> kernel code
MERGE_MODES = {"concat": 0, "sum": 1, "mul": 2, "ave": 3}

#: loss kind -> kernel code
LOSS_KINDS = {
    "mse": 0,
    "mae": 1,
    "huber": 2,
    "binary_crossentropy": 3,
    "categorical_crossentropy": 4,
    "sparse_categorical_crossentropy": 5,
}

# the reductions run in one block; its shared buffer holds one value per thread
_REDUCE_THREADS = 1024


# -- device functions ------------------------------------------------------------


@cuda.jit(device=True)
def _sigmoid(v):
    e = math.exp(-abs(v))
    if v >= 0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)


@cuda.jit(device=True)
def _sign(v):
    if v > 0:
        return 1.0
    if v < 0:
        return -1.0
    return v * 0.0  # 0 stays 0, NaN stays NaN (as numpy.sign)


@cuda.jit(device=True)
def dense_activate(code, v):
    """Dense activation ``code`` at ``v`` (NaN propagates, as in numpy)."""
    if code == _TANH:
        return math.tanh(v)
    if code == _SIGMOID:
        return _sigmoid(v)
    if code == _HARD_SIGMOID:
        r = v / 6.0 + 0.5
        if r < 0.0:
            return 0.0
        if r > 1.0:
            return 1.0
        return r
    if code == _RELU:
        if v > 0 or v != v:
            return v
        return v * 0.0
    if code == _SOFTPLUS:
        return max(v, 0.0) + math.log1p(math.exp(-abs(v)))
    return v


@cuda.jit(device=True)
def dense_activation_grad(code, z, y, dy):
    """Cotangent of the pre-activation ``z`` (output ``y``, output cotangent ``dy``)."""
    if code == _RELU:
        return dy * (1.0 if z > 0 else 0.0)
    if code == _SIGMOID:
        return dy * y * (1.0 - y)
    if code == _TANH:
        return dy * (1.0 - y * y)
    if code == _HARD_SIGMOID:
        return dy * (1.0 if -3.0 < z < 3.0 else 0.0) / 6.0
    if code == _SOFTPLUS:
        return dy * _sigmoid(z)
    return dy


# -- element-wise kernels (flat 1-D views) ------------------------------------------


@kernel("F1", "F1")
def _copy_1d(dst, src):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = src[i]


@kernel("F1", "f")
def _fill_1d(dst, value):
    i = cuda.grid(1)
    if i < dst.shape[0]:
        dst[i] = value


@kernel("M1")
def _fill_true(mask):
    i = cuda.grid(1)
    if i < mask.shape[0]:
        mask[i] = True


@kernel("F1", "F1")
def _add_inplace(a, b):
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = a[i] + b[i]


@kernel("F1", "f", "F1")
def _axpy(y, alpha, x):
    i = cuda.grid(1)
    if i < y.shape[0]:
        y[i] = y[i] + alpha * x[i]


@kernel("F1", "F1", "F1")
def _multiply(out, a, b):
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] * b[i]


# -- Dense -----------------------------------------------------------------------


@kernel("F2", "F1", "?", "i", "F2")
def _bias_activation(z, bias, use_bias, activation, y):
    j, i = cuda.grid(2)
    if i < z.shape[0] and j < z.shape[1]:
        v = z[i, j]
        if use_bias:
            v = v + bias[j]
            z[i, j] = v
        y[i, j] = dense_activate(activation, v)


@kernel("F2", "F2")
def _softmax_rows(z, y):
    i = cuda.grid(1)
    if i < z.shape[0]:
        n = z.shape[1]
        top = z[i, 0]
        for k in range(1, n):
            if z[i, k] > top:
                top = z[i, k]
        total = z[i, 0] * 0.0
        for k in range(n):
            e = math.exp(z[i, k] - top)
            y[i, k] = e
            total += e
        for k in range(n):
            y[i, k] = y[i, k] / total


@kernel("F2", "F2", "F2", "i", "F2")
def _activation_backward(z, y, dy, activation, dz):
    j, i = cuda.grid(2)
    if i < z.shape[0] and j < z.shape[1]:
        dz[i, j] = dense_activation_grad(activation, z[i, j], y[i, j], dy[i, j])


@kernel("F2", "F2", "F2")
def _softmax_backward(y, dy, dz):
    i = cuda.grid(1)
    if i < y.shape[0]:
        total = y[i, 0] * 0.0
        for k in range(y.shape[1]):
            total += dy[i, k] * y[i, k]
        for k in range(y.shape[1]):
            dz[i, k] = y[i, k] * (dy[i, k] - total)


# -- recurrent-layer plumbing ------------------------------------------------------


@kernel("F3", "F3", "F3")
def _input_dropout(x, masks, x_in):
    # x_in[b, t, k*F + f] = x[b, t, f] * masks[k, b, f]
    c, r = cuda.grid(2)
    n_steps = x.shape[1]
    n_features = x.shape[2]
    if r < x.shape[0] * n_steps and c < x_in.shape[2]:
        b = r // n_steps
        t = r - b * n_steps
        k = c // n_features
        f = c - k * n_features
        x_in[b, t, c] = x[b, t, f] * masks[k, b, f]


@kernel("F3", "F3", "F3")
def _input_dropout_grad(d_x_in, masks, d_x):
    # d_x[b, t, f] = sum_k d_x_in[b, t, k*F + f] * masks[k, b, f], k in order
    f, r = cuda.grid(2)
    n_steps = d_x.shape[1]
    n_features = d_x.shape[2]
    if r < d_x.shape[0] * n_steps and f < n_features:
        b = r // n_steps
        t = r - b * n_steps
        total = d_x_in[b, t, f] * masks[0, b, f]
        for k in range(1, masks.shape[0]):
            total += d_x_in[b, t, k * n_features + f] * masks[k, b, f]
        d_x[b, t, f] = total


@kernel("F2", "i", "F2")
def _block_diagonal(matrix, n_blocks, out):
    # (R, n*C) -> (n*R, n*C) with column block k at block row k
    c, r = cuda.grid(2)
    if r < out.shape[0] and c < out.shape[1]:
        rows = matrix.shape[0]
        width = out.shape[1] // n_blocks
        k = r // rows
        if c // width == k:
            out[r, c] = matrix[r - k * rows, c]
        else:
            out[r, c] = 0.0


@kernel("F2", "i", "F2")
def _diagonal_blocks(matrix, n_blocks, out):
    # inverse of _block_diagonal: (n*R, n*C) -> (R, n*C), block k from block row k
    c, r = cuda.grid(2)
    if r < out.shape[0] and c < out.shape[1]:
        width = out.shape[1] // n_blocks
        k = c // width
        out[r, c] = matrix[k * out.shape[0] + r, c]


@kernel("F2", "F3")
def _scatter_last_step(d_last, d_out):
    # d_out[:, -1] = d_last, zeros elsewhere; columns run over (t, u)
    c, b = cuda.grid(2)
    n_steps = d_out.shape[1]
    n_units = d_out.shape[2]
    if b < d_out.shape[0] and c < n_steps * n_units:
        t = c // n_units
        u = c - t * n_units
        if t == n_steps - 1:
            d_out[b, t, u] = d_last[b, u]
        else:
            d_out[b, t, u] = 0.0


@kernel("F2", "F3A")
def _last_step(dst, sequence):
    j, i = cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = sequence[i, sequence.shape[1] - 1, j]


# -- Bidirectional merges ------------------------------------------------------------


@kernel("F3", "F3", "?", "i", "F3")
def _merge(fwd, bwd, reverse, mode, out):
    # bwd is in processing order; with ``reverse`` its step T-1-t is input step t
    j, r = cuda.grid(2)
    n_steps = out.shape[1]
    if r < out.shape[0] * n_steps and j < out.shape[2]:
        b = r // n_steps
        t = r - b * n_steps
        tb = n_steps - 1 - t if reverse else t
        n_fwd = fwd.shape[2]
        if mode == 0:
            if j < n_fwd:
                out[b, t, j] = fwd[b, t, j]
            else:
                out[b, t, j] = bwd[b, tb, j - n_fwd]
        elif mode == 1:
            out[b, t, j] = fwd[b, t, j] + bwd[b, tb, j]
        elif mode == 2:
            out[b, t, j] = fwd[b, t, j] * bwd[b, tb, j]
        else:
            out[b, t, j] = (fwd[b, t, j] + bwd[b, tb, j]) / 2


@kernel("F3", "F3", "F3", "?", "i", "F3", "F3")
def _merge_backward(d, fwd, bwd, reverse, mode, d_fwd, d_bwd):
    # thread (b, s, j): d_fwd at input step s and d_bwd at processing step s
    j, r = cuda.grid(2)
    n_steps = d.shape[1]
    n_fwd = d_fwd.shape[2]
    n_bwd = d_bwd.shape[2]
    if r >= d.shape[0] * n_steps:
        return
    b = r // n_steps
    s = r - b * n_steps
    if j < n_fwd:
        tb = n_steps - 1 - s if reverse else s
        if mode == 0 or mode == 1:
            d_fwd[b, s, j] = d[b, s, j]
        elif mode == 2:
            d_fwd[b, s, j] = d[b, s, j] * bwd[b, tb, j]
        else:
            d_fwd[b, s, j] = d[b, s, j] / 2
    if j < n_bwd:
        t = n_steps - 1 - s if reverse else s
        if mode == 0:
            d_bwd[b, s, j] = d[b, t, n_fwd + j]
        elif mode == 1:
            d_bwd[b, s, j] = d[b, t, j]
        elif mode == 2:
            d_bwd[b, s, j] = d[b, t, j] * fwd[b, t, j]
        else:
            d_bwd[b, s, j] = d[b, t, j] / 2


# -- losses (one thread per entry) ------------------------------------------------------


@cuda.jit(device=True)
def _skip_uncounted(e, counted, entry, grad):
    """Zero loss and gradient for entry ``e`` when it does not count; True then."""
    if counted[e]:
        return False
    entry[e] = 0.0
    for k in range(grad.shape[1]):
        grad[e, k] = 0.0
    return True


@kernel("F2", "F2", "M1", "F1", "d", "i", "d", "F1", "F2")
def _regression_loss(pred, true, counted, weights, grad_denominator, kind, delta, entry, grad):
    e = cuda.grid(1)
    if e >= pred.shape[0]:
        return
    n_out = pred.shape[1]
    if _skip_uncounted(e, counted, entry, grad):
        return
    weight = weights[e] + 0.0  # float64
    scale = weight / grad_denominator
    total = 0.0
    for k in range(n_out):
        diff = (pred[e, k] + 0.0) - true[e, k]
        if kind == 0:
            value = diff * diff
            slope = 2.0 * diff
        elif kind == 1:
            value = abs(diff)
            slope = _sign(diff)
        else:
            size = abs(diff)
            if size <= delta:
                value = 0.5 * diff * diff
                slope = diff
            else:
                value = delta * (size - 0.5 * delta)
                slope = delta * _sign(diff)
        total += value
        grad[e, k] = slope * scale
    entry[e] = weight * (total / n_out)


@kernel("F2", "F2", "M1", "F1", "d", "F1", "F2")
def _binary_crossentropy(logits, true, counted, weights, grad_denominator, entry, grad):
    e = cuda.grid(1)
    if e >= logits.shape[0]:
        return
    n_out = logits.shape[1]
    if _skip_uncounted(e, counted, entry, grad):
        return
    weight = weights[e] + 0.0  # float64
    scale = weight / grad_denominator
    total = 0.0
    for k in range(n_out):
        z = logits[e, k] + 0.0  # float64
        y = true[e, k] + 0.0
        total += max(z, 0.0) + math.log1p(math.exp(-abs(z))) - y * z
        grad[e, k] = (_sigmoid(z) - y) * scale
    entry[e] = weight * (total / n_out)


@cuda.jit(device=True)
def _log_sum_exp_parts(logits, e):
    """(max, log(sum(exp(z - max)))) of row ``e``, in float64."""
    top = logits[e, 0] + 0.0
    for k in range(1, logits.shape[1]):
        if logits[e, k] > top:
            top = logits[e, k] + 0.0
    total = 0.0
    for k in range(logits.shape[1]):
        total += math.exp((logits[e, k] + 0.0) - top)
    return top, math.log(total)


@kernel("F2", "F2", "M1", "F1", "d", "F1", "F2")
def _categorical_crossentropy(logits, true, counted, weights, grad_denominator, entry, grad):
    e = cuda.grid(1)
    if e >= logits.shape[0]:
        return
    n_out = logits.shape[1]
    if _skip_uncounted(e, counted, entry, grad):
        return
    weight = weights[e] + 0.0  # float64
    scale = weight / grad_denominator
    top, lse = _log_sum_exp_parts(logits, e)
    total = 0.0
    y_sum = 0.0
    for k in range(n_out):
        y_sum += true[e, k]
    for k in range(n_out):
        log_p = ((logits[e, k] + 0.0) - top) - lse
        y = true[e, k] + 0.0
        total += y * log_p
        grad[e, k] = (math.exp(log_p) * y_sum - y) * scale
    entry[e] = weight * -total


@kernel("F2", "F1", "M1", "F1", "d", "F1", "F2")
def _sparse_crossentropy(logits, labels, counted, weights, grad_denominator, entry, grad):
    e = cuda.grid(1)
    if e >= logits.shape[0]:
        return
    n_out = logits.shape[1]
    if _skip_uncounted(e, counted, entry, grad):
        return
    weight = weights[e] + 0.0  # float64
    scale = weight / grad_denominator
    top, lse = _log_sum_exp_parts(logits, e)
    label = int(labels[e])
    picked = 0.0
    for k in range(n_out):
        log_p = ((logits[e, k] + 0.0) - top) - lse
        slope = math.exp(log_p)
        if k == label:
            picked = log_p
            slope = slope - 1.0
        grad[e, k] = slope * scale
    entry[e] = weight * -picked


# -- reductions into the float64 scalars array (one block) -------------------------


_SUM, _SUM_SQUARES, _COUNT_NONFINITE = 0, 1, 2


@kernel("F1", "F1", "i", "i", "d", "?")
def _reduce_into(values, out, slot, op, divisor, accumulate):
    # out[slot] (+)= reduce(values) / divisor, in float64, by one block:
    # op 0 sums, 1 sums squares, 2 counts NaN and infinities
    buffer = cuda.shared.array(_REDUCE_THREADS, numba.float64)
    tid = cuda.threadIdx.x
    n_threads = cuda.blockDim.x
    partial = 0.0
    for i in range(tid, values.shape[0], n_threads):
        v = values[i] + 0.0  # float64
        if op == _SUM:
            partial += v
        elif op == _SUM_SQUARES:
            partial += v * v
        elif not (v == v and abs(v) < math.inf):
            partial += 1.0
    buffer[tid] = partial
    cuda.syncthreads()
    if tid == 0:
        total = 0.0
        for k in range(n_threads):
            total += buffer[k]
        total = total / divisor
        if accumulate:
            total += out[slot]
        out[slot] = total


# -- clipping and optimizer updates (flat 1-D views, in place) ------------------------


@kernel("F1", "F1", "i", "d")
def _clip_by_norm(g, sums, slot, clipnorm):
    i = cuda.grid(1)
    if i < g.shape[0]:
        norm = math.sqrt(sums[slot] + 0.0)
        if norm > clipnorm:
            g[i] = g[i] * (clipnorm / norm)


@kernel("F1", "f")
def _clip_by_value(g, limit):
    i = cuda.grid(1)
    if i < g.shape[0]:
        v = g[i]
        if v > limit:
            g[i] = limit
        elif v < -limit:
            g[i] = -limit


@kernel("F1", "F1", "f")
def _sgd(param, grad, learning_rate):
    i = cuda.grid(1)
    if i < param.shape[0]:
        param[i] = param[i] - learning_rate * grad[i]


@kernel("F1", "F1", "F1", "f", "f", "?")
def _sgd_momentum(param, grad, velocity, learning_rate, momentum, nesterov):
    i = cuda.grid(1)
    if i < param.shape[0]:
        g = grad[i]
        v = velocity[i] * momentum
        v = v - learning_rate * g
        velocity[i] = v
        if nesterov:
            param[i] = param[i] + (momentum * v - learning_rate * g)
        else:
            param[i] = param[i] + v


@kernel("F1", "F1", "F1", "F1", "f", "f", "f", "f")
def _adam(param, grad, m, v, step_size, one_minus_beta_1, one_minus_beta_2, epsilon):
    i = cuda.grid(1)
    if i < param.shape[0]:
        g = grad[i]
        m_i = m[i] + (g - m[i]) * one_minus_beta_1
        v_i = v[i] + (g * g - v[i]) * one_minus_beta_2
        m[i] = m_i
        v[i] = v_i
        param[i] = param[i] - step_size * m_i / (math.sqrt(v_i) + epsilon)


@kernel("F1", "F1", "F1", "F1", "F1", "f", "f", "f", "f", "f", "?", "?")
def _rmsprop(
    param, grad, mean_square, mean_grad, momentum_buffer, learning_rate, rho, one_minus_rho,
    epsilon, momentum, centered, use_momentum,
):  # fmt: skip
    i = cuda.grid(1)
    if i < param.shape[0]:
        g = grad[i]
        ms = mean_square[i] * rho
        ms = ms + one_minus_rho * g * g
        mean_square[i] = ms
        if centered:
            mg = mean_grad[i] * rho
            mg = mg + one_minus_rho * g
            mean_grad[i] = mg
            denominator = ms - mg * mg + epsilon
        else:
            denominator = ms + epsilon
        increment = learning_rate * g / math.sqrt(denominator)
        if use_momentum:
            mom = momentum_buffer[i] * momentum
            mom = mom + increment
            momentum_buffer[i] = mom
            param[i] = param[i] - mom
        else:
            param[i] = param[i] - increment


# -- host launchers ---------------------------------------------------------------------


def _threads():
    bx, by = _LAUNCH["block"]
    return bx * by


def _launch_1d(kern, n, *args):
    if n == 0:
        return
    threads = _threads()
    kern[(math.ceil(n / threads),), (threads,)](*args)


def _reduce_launch(kern, *args):
    kern[(1,), (min(_threads(), _REDUCE_THREADS),)](*args)


def _flat(array):
    """A 1-D view of a C-contiguous device array."""
    return array.reshape(int(np.prod(array.shape, dtype=np.int64)))


def _scalar(dtype, value):
    return np.dtype(dtype).type(value)


def _as_3d(array):
    """``(B, U)`` viewed as ``(B, 1, U)``; 3-D arrays pass through."""
    if len(array.shape) == 2:
        return array.reshape(array.shape[0], 1, array.shape[1])
    return array


def empty(shape, dtype):
    """An uninitialised device array."""
    return cuda.device_array(tuple(shape), dtype=dtype)


def zeros(shape, dtype):
    """A device array of zeros, cleared on the device (nothing is uploaded)."""
    array = empty(shape, dtype)
    fill_(array, 0.0)
    return array


def fill_(array, value):
    """``array[...] = value`` for a float (float32/float64) device array."""
    _launch_1d(_fill_1d, array.size, _flat(array), _scalar(array.dtype, value))


def ones_mask(shape):
    """A bool device array of True (an all-kept mask), set on the device."""
    mask = cuda.device_array(tuple(shape), dtype=np.bool_)
    _launch_1d(_fill_true, mask.size, _flat(mask))
    return mask


def copy_(dst, src):
    """``dst[...] = src`` between device arrays of one shape and dtype (no host trip)."""
    _launch_1d(_copy_1d, dst.size, _flat(dst), _flat(src))


def copy_new(src):
    """A new device array holding a copy of device array ``src``."""
    dst = empty(src.shape, src.dtype)
    copy_(dst, src)
    return dst


def add_(a, b):
    """``a += b`` in place (same shape)."""
    _launch_1d(_add_inplace, a.size, _flat(a), _flat(b))


def axpy_(y, alpha, x):
    """``y += alpha * x`` in place, ``alpha`` cast to the arrays' dtype."""
    _launch_1d(_axpy, y.size, _flat(y), _scalar(y.dtype, alpha), _flat(x))


def multiply(a, b):
    """``a * b`` (same shape) as a new device array."""
    out = empty(a.shape, a.dtype)
    _launch_1d(_multiply, out.size, _flat(out), _flat(a), _flat(b))
    return out


def dense_forward(x, kernel_, bias, activation):
    """``z = x @ kernel + bias`` and ``y = activation(z)`` for 2-D ``x``.

    Parameters
    ----------
    x : device array (N, F)
    kernel_ : device array (F, U)
    bias : device array (U,) or None
    activation : int
        A code of :data:`DENSE_ACTIVATIONS`.

    Returns
    -------
    z, y : device arrays (N, U)
        ``y`` is ``z`` itself for the linear activation.
    """
    n_rows, n_units = x.shape[0], kernel_.shape[1]
    z = empty((n_rows, n_units), x.dtype)
    matmul(x, kernel_, z)
    if activation == _SOFTMAX:
        if bias is not None:
            _bias_add(z, bias)
        y = empty(z.shape, z.dtype)
        _launch_1d(_softmax_rows, n_rows, z, y)
        return z, y
    if activation == _LINEAR:
        if bias is not None:
            _bias_add(z, bias)
        return z, z
    y = empty(z.shape, z.dtype)
    launch_2d(
        _bias_activation, n_rows, n_units, z, z[0] if bias is None else bias,
        bias is not None, int(activation), y,
    )  # fmt: skip
    return z, y


def _bias_add(z, bias):
    launch_2d(_bias_activation, z.shape[0], z.shape[1], z, bias, True, _LINEAR, z)


def activation_backward(z, y, dy, activation):
    """Cotangent of the Dense pre-activation ``z`` (2-D); ``dy`` itself when linear."""
    if activation == _LINEAR:
        return dy
    dz = empty(z.shape, z.dtype)
    if activation == _SOFTMAX:
        _launch_1d(_softmax_backward, z.shape[0], y, dy, dz)
    else:
        launch_2d(_activation_backward, z.shape[0], z.shape[1], z, y, dy, int(activation), dz)
    return dz


def dense_backward(x, kernel_, z, y, dy, activation, use_bias):
    """Gradients of :func:`dense_forward`.

    Returns
    -------
    d_kernel : device array (F, U)
    d_bias : device array (U,) or None
    d_x : device array (N, F)
    """
    dz = activation_backward(z, y, dy, activation)
    d_kernel = empty(kernel_.shape, kernel_.dtype)
    matmul(x, dz, d_kernel, trans_a=True)
    d_bias = None
    if use_bias:
        d_bias = empty((kernel_.shape[1],), kernel_.dtype)
        sum_rows(dz, d_bias)
    d_x = empty(x.shape, x.dtype)
    matmul(dz, kernel_, d_x, trans_b=True)
    return d_kernel, d_bias, d_x


def apply_input_dropout(x, masks):
    """Per-mask dropped copies of ``x`` side by side: ``(B, T, n*F)`` from ``x``
    ``(B, T, F)`` and ``masks`` ``(n, B, F)``."""
    n_batch, n_steps, n_features = x.shape
    x_in = empty((n_batch, n_steps, masks.shape[0] * n_features), x.dtype)
    launch_2d(_input_dropout, n_batch * n_steps, x_in.shape[2], x, masks, x_in)
    return x_in


def fold_input_dropout(d_x_in, masks, n_features):
    """Gradient of :func:`apply_input_dropout`: ``(B, T, F)``."""
    n_batch, n_steps = d_x_in.shape[0], d_x_in.shape[1]
    d_x = empty((n_batch, n_steps, n_features), d_x_in.dtype)
    launch_2d(_input_dropout_grad, n_batch * n_steps, n_features, d_x_in, masks, d_x)
    return d_x


def block_diagonal(matrix, n_blocks):
    """``(R, n*C)`` -> block-diagonal ``(n*R, n*C)``, column block k at block row k."""
    rows, cols = matrix.shape
    out = empty((n_blocks * rows, cols), matrix.dtype)
    launch_2d(_block_diagonal, out.shape[0], cols, matrix, int(n_blocks), out)
    return out


def diagonal_blocks(matrix, n_blocks):
    """Inverse of :func:`block_diagonal` (for gradients): ``(R, n*C)``."""
    rows = matrix.shape[0] // n_blocks
    out = empty((rows, matrix.shape[1]), matrix.dtype)
    launch_2d(_diagonal_blocks, rows, matrix.shape[1], matrix, int(n_blocks), out)
    return out


def scatter_last_step(d_last, n_steps):
    """``(B, T, U)`` cotangent that is ``d_last`` at the last step, zero elsewhere."""
    n_batch, n_units = d_last.shape
    d_out = empty((n_batch, n_steps, n_units), d_last.dtype)
    launch_2d(_scatter_last_step, n_batch, n_steps * n_units, d_last, d_out)
    return d_out


def last_step(sequence):
    """``sequence[:, -1]`` of a ``(B, T, U)`` device array, as a new device array."""
    n_batch, _, n_units = sequence.shape
    out = empty((n_batch, n_units), sequence.dtype)
    launch_2d(_last_step, n_batch, n_units, out, sequence)
    return out


def merge(fwd, bwd, reverse, mode):
    """Merge the two directions of a Bidirectional layer.

    Parameters
    ----------
    fwd, bwd : device arrays (B, T, U) or (B, U)
        Forward output and backward output (processing order).
    reverse : bool
        Flip ``bwd`` in time first (sequences).
    mode : int
        A code of :data:`MERGE_MODES`.

    Returns
    -------
    device array
        ``(B, T, Uf + Ub)`` for concat, else the common shape.
    """
    f3, b3 = _as_3d(fwd), _as_3d(bwd)
    width = f3.shape[2] + b3.shape[2] if mode == 0 else f3.shape[2]
    out = empty((f3.shape[0], f3.shape[1], width), fwd.dtype)
    launch_2d(_merge, f3.shape[0] * f3.shape[1], width, f3, b3, bool(reverse), int(mode), out)
    if len(fwd.shape) == 2:
        return out.reshape(out.shape[0], out.shape[2])
    return out


def merge_backward(d, fwd, bwd, reverse, mode):
    """Cotangents ``(d_fwd, d_bwd)`` of :func:`merge` (``d_bwd`` in processing order)."""
    d3, f3, b3 = _as_3d(d), _as_3d(fwd), _as_3d(bwd)
    d_fwd = empty(f3.shape, d.dtype)
    d_bwd = empty(b3.shape, d.dtype)
    width = max(f3.shape[2], b3.shape[2])
    launch_2d(
        _merge_backward, d3.shape[0] * d3.shape[1], width, d3, f3, b3, bool(reverse), int(mode),
        d_fwd, d_bwd,
    )  # fmt: skip
    if len(fwd.shape) == 2:
        return d_fwd.reshape(*fwd.shape), d_bwd.reshape(*bwd.shape)
    return d_fwd, d_bwd


def loss_value_and_grad(kind, pred, true, counted, weights, n_counted, output_divisor, out, slot,
                        delta=1.0):  # fmt: skip
    """Per-entry loss and gradient of a batch, the weighted sum into ``out[slot]``.

    Parameters
    ----------
    kind : int
        A code of :data:`LOSS_KINDS`.
    pred : device array (E, K)
        Predictions (logits for the cross-entropies), entries flattened.
    true : device array
        ``(E, K)`` targets, or ``(E,)`` class labels (whole numbers) for the
        sparse cross-entropy, in ``pred``'s dtype.
    counted : device bool array (E,)
        Entries that count.
    weights : device array (E,)
        Entry weights, in ``pred``'s dtype.
    n_counted : int
        Number of counted entries (> 0).
    output_divisor : int
        ``K`` for losses that average their outputs, 1 for those that sum them.
    out : device array
        Receives ``sum(weights * entry_loss) / n_counted`` at ``slot`` (the
        kernels compute in float64 and store in ``out``'s dtype, which is
        ``pred``'s).
    slot : int
    delta : float, default=1.0
        Huber's threshold.

    Returns
    -------
    device array (E, K)
        Gradient of the value with respect to ``pred``, in ``pred``'s dtype.
    """
    n_entries = pred.shape[0]
    grad = empty(pred.shape, pred.dtype)
    entry = empty((n_entries,), pred.dtype)
    grad_denominator = float(n_counted * output_divisor)
    if kind <= 2:
        _launch_1d(_regression_loss, n_entries, pred, true, counted, weights, grad_denominator,
                   int(kind), float(delta), entry, grad)  # fmt: skip
    elif kind == 3:
        _launch_1d(_binary_crossentropy, n_entries, pred, true, counted, weights,
                   grad_denominator, entry, grad)  # fmt: skip
    elif kind == 4:
        _launch_1d(_categorical_crossentropy, n_entries, pred, true, counted, weights,
                   grad_denominator, entry, grad)  # fmt: skip
    else:
        _launch_1d(_sparse_crossentropy, n_entries, pred, true, counted, weights,
                   grad_denominator, entry, grad)  # fmt: skip
    _reduce_launch(_reduce_into, entry, out, int(slot), _SUM, float(n_counted), False)
    return grad


def sum_squares(array, out, slot, accumulate=True):
    """``out[slot] (+)= sum(array ** 2)``, summed in float64 (``out`` has ``array``'s dtype)."""
    _reduce_launch(_reduce_into, _flat(array), out, int(slot), _SUM_SQUARES, 1.0, bool(accumulate))


def count_nonfinite(array, out, slot):
    """``out[slot] += number of NaN/inf values of array``."""
    _reduce_launch(_reduce_into, _flat(array), out, int(slot), _COUNT_NONFINITE, 1.0, True)


def clip_by_norm_(grad, sums, slot, clipnorm):
    """Scale ``grad`` in place to L2 norm ``clipnorm`` when ``sqrt(sums[slot])`` exceeds it."""
    _launch_1d(_clip_by_norm, grad.size, _flat(grad), sums, int(slot), float(clipnorm))


def clip_by_value_(grad, limit):
    """Clip ``grad`` in place to ``[-limit, limit]`` (NaN stays NaN)."""
    _launch_1d(_clip_by_value, grad.size, _flat(grad), _scalar(grad.dtype, limit))


def sgd_update(param, grad, learning_rate):
    """``param -= learning_rate * grad`` in place."""
    _launch_1d(_sgd, param.size, _flat(param), _flat(grad), _scalar(param.dtype, learning_rate))


def sgd_momentum_update(param, grad, velocity, learning_rate, momentum, nesterov):
    """SGD step with (Nesterov) momentum, ``param`` and ``velocity`` in place."""
    dtype = param.dtype
    _launch_1d(_sgd_momentum, param.size, _flat(param), _flat(grad), _flat(velocity),
               _scalar(dtype, learning_rate), _scalar(dtype, momentum), bool(nesterov))  # fmt: skip


def adam_update(param, grad, m, v, step_size, beta_1, beta_2, epsilon):
    """Adam step with the bias-corrected ``step_size``; param and moments in place."""
    dtype = param.dtype
    _launch_1d(_adam, param.size, _flat(param), _flat(grad), _flat(m), _flat(v),
               _scalar(dtype, step_size), _scalar(dtype, 1.0 - beta_1),
               _scalar(dtype, 1.0 - beta_2), _scalar(dtype, epsilon))  # fmt: skip


def rmsprop_update(param, grad, mean_square, mean_grad, momentum_buffer, learning_rate, rho,
                   epsilon, momentum, centered):  # fmt: skip
    """RMSprop step; ``mean_grad``/``momentum_buffer`` may be None when unused."""
    dtype = param.dtype
    flat_ms = _flat(mean_square)
    _launch_1d(
        _rmsprop, param.size, _flat(param), _flat(grad), flat_ms,
        flat_ms if mean_grad is None else _flat(mean_grad),
        flat_ms if momentum_buffer is None else _flat(momentum_buffer),
        _scalar(dtype, learning_rate), _scalar(dtype, rho), _scalar(dtype, 1.0 - rho),
        _scalar(dtype, epsilon), _scalar(dtype, momentum), bool(centered),
        momentum_buffer is not None,
    )  # fmt: skip
