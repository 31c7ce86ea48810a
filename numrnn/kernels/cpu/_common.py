"""Shared pieces of the CPU recurrent kernels.

Conventions of every recurrent kernel in this package:

- Arrays are C-contiguous and share one float dtype per call.
- ``x`` is ``(B, T, F)`` in *input* order; per-step caches are ``(B, T, .)``
  indexed by input time ``t``; the output sequence ``out`` is ``(B, T, U)`` in
  *processing* order (reversed when ``go_backwards``), as Keras returns it.
- ``mask`` is bool ``(B, T)`` in input order (all True when there is none).
  A masked step holds the states; its output repeats the previous output
  (zeros before the first kept step), or is zero when ``zero_output_for_mask``.
- ``rec_mask`` ``(B, U)`` multiplies ``h_{t-1}`` before the recurrent product
  (Keras recurrent dropout); it is all ones when dropout is off.
- Forward kernels write caches that the matching backward kernel reads; the
  input projection for all steps and the weight gradients are single GEMMs
  outside the time loop.
"""

import numpy as np
from numba import njit

from numrnn.kernels import _math

JIT = {"cache": True, "error_model": "numpy", "nogil": True}

activate = njit(inline="always", **JIT)(_math.activate)
activation_grad = njit(inline="always", **JIT)(_math.activation_grad)


# Explicit loops instead of slice assignment: numba takes seconds to compile
# each array-to-array slice assignment, and these are the hot copies anyway.


@njit(**JIT)
def copy_into(dst, src):
    """``dst[:] = src`` for 1-D or 2-D arrays of the same shape."""
    if dst.ndim == 1:
        for i in range(dst.shape[0]):
            dst[i] = src[i]
    else:
        for i in range(dst.shape[0]):
            for j in range(dst.shape[1]):
                dst[i, j] = src[i, j]


@njit(**JIT)
def add_into(dst, src):
    """``dst += src`` for 1-D or 2-D arrays of the same shape."""
    if dst.ndim == 1:
        for i in range(dst.shape[0]):
            dst[i] += src[i]
    else:
        for i in range(dst.shape[0]):
            for j in range(dst.shape[1]):
                dst[i, j] += src[i, j]


@njit(**JIT)
def fill(dst, value):
    """``dst[:] = value`` for a 1-D array."""
    for i in range(dst.shape[0]):
        dst[i] = value


@njit(**JIT)
def step_index(s, n_steps, go_backwards):
    """Input-time index of processing step ``s``."""
    return n_steps - 1 - s if go_backwards else s


@njit(**JIT)
def input_projection(x, kernel, out):
    """``out[b, t] = x[b, t] @ kernel`` for all steps as one GEMM."""
    n_batch, n_steps, n_features = x.shape
    np.dot(
        x.reshape((n_batch * n_steps, n_features)),
        kernel,
        out.reshape((n_batch * n_steps, out.shape[2])),
    )


@njit(**JIT)
def save_step_states(t, h, rec_mask, h_prev, h_used, h_used_step):
    """Cache ``h_{t-1}`` raw and dropped, and fill the recurrent GEMM operand.

    ``rec_mask`` is ``(B, W)`` with ``W = k * U``: ``k = 1`` is one dropout
    mask for all gates, ``k = G`` one per gate (then the recurrent kernel is
    block-diagonal, ``(G*U, G*U)``).
    """
    n_batch, n_units = h.shape
    width = rec_mask.shape[1]
    for b in range(n_batch):
        for u in range(n_units):
            h_prev[b, t, u] = h[b, u]
        for j in range(width):
            v = h[b, j % n_units] * rec_mask[b, j]
            h_used[b, t, j] = v
            h_used_step[b, j] = v


@njit(**JIT)
def emit_output(out, s, b, h_new, keep, zero_output_for_mask):
    """Write the output of processing step ``s`` for sample ``b``."""
    row = out[b, s]
    if keep:
        copy_into(row, h_new)
    elif zero_output_for_mask or s == 0:
        fill(row, 0.0)
    else:
        copy_into(row, out[b, s - 1])


@njit(**JIT)
def output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_out):
    """Total cotangent reaching step ``s`` output of sample ``b``.

    For a kept step it is written into ``dh_out`` and the carry is cleared;
    for a masked step it is carried to the previous output (whose value the
    masked step repeated), unless masked outputs are zeros.
    """
    n_units = carry.shape[1]
    if keep:
        for u in range(n_units):
            dh_out[u] = d_out[b, s, u] + carry[b, u]
            carry[b, u] = 0.0
    elif zero_output_for_mask:
        for u in range(n_units):
            carry[b, u] = 0.0
    else:
        for u in range(n_units):
            carry[b, u] += d_out[b, s, u]


@njit(**JIT)
def input_and_kernel_grads(x, kernel, d_pre, d_x, d_kernel):
    """``d_x = d_pre @ kernel.T`` and ``d_kernel = x.T @ d_pre`` (one GEMM each)."""
    n_batch, n_steps, n_features = x.shape
    n_rows = n_batch * n_steps
    d_flat = d_pre.reshape((n_rows, d_pre.shape[2]))
    np.dot(d_flat, kernel.T, d_x.reshape((n_rows, n_features)))
    np.dot(x.reshape((n_rows, n_features)).T, d_flat, d_kernel)


@njit(**JIT)
def matmul_tn(a, b, out):
    """``out = a.T @ b`` for ``(B, T, K)`` and ``(B, T, M)`` stacks."""
    n_rows = a.shape[0] * a.shape[1]
    np.dot(a.reshape((n_rows, a.shape[2])).T, b.reshape((n_rows, b.shape[2])), out)


@njit(**JIT)
def column_sums(d_pre, out):
    """``out = d_pre.sum(axis=(0, 1))`` without a temporary."""
    fill(out, 0.0)
    for b in range(d_pre.shape[0]):
        for t in range(d_pre.shape[1]):
            row = d_pre[b, t]
            for j in range(row.shape[0]):
                out[j] += row[j]


@njit(**JIT)
def add_masked_state_grad(dh, dh_used, rec_mask):
    """``dh += fold(dh_used * rec_mask)``: the cotangent of ``h_{t-1}`` from the
    cotangent of its dropped copies ``(B, W)`` (summed over the per-gate copies)."""
    n_units = dh.shape[1]
    for b in range(dh.shape[0]):
        for j in range(dh_used.shape[1]):
            dh[b, j % n_units] += dh_used[b, j] * rec_mask[b, j]


@njit(**JIT)
def column_block(a, start, stop):
    """Contiguous copy of columns ``start:stop`` of the last axis (2-D or 3-D)."""
    width = stop - start
    flat = a.reshape((-1, a.shape[-1]))
    out = np.empty((flat.shape[0], width), dtype=a.dtype)
    for i in range(flat.shape[0]):
        for j in range(width):
            out[i, j] = flat[i, start + j]
    if a.ndim == 3:
        return out.reshape((a.shape[0], a.shape[1], width))
    return out.reshape((a.shape[0], width))


@njit(**JIT)
def join_columns(left, right, out):
    """``out = concatenate([left, right], axis=1)`` for 2-D arrays."""
    n_left = left.shape[1]
    for i in range(out.shape[0]):
        for j in range(n_left):
            out[i, j] = left[i, j]
        for j in range(right.shape[1]):
            out[i, n_left + j] = right[i, j]
