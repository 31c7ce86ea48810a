"""LSTM forward and backward-through-time kernels (Keras gate order i, f, c, o).

See ``_common`` for the array conventions shared by every recurrent kernel.
"""

import numpy as np
from numba import njit

from numrnn.kernels.cpu._common import (
    JIT,
    activate,
    activation_grad,
    add_into,
    add_masked_state_grad,
    column_sums,
    copy_into,
    emit_output,
    fill,
    input_and_kernel_grads,
    input_projection,
    matmul_tn,
    output_cotangent,
    save_step_states,
    step_index,
)


@njit(**JIT)
def _cell_forward(gates, rec, bias, c_prev, activation, recurrent_activation, c_new, c_act, h_new):
    # gates holds x @ W on entry and the activated i, f, c, o on exit.
    n_units = c_prev.shape[0]
    for u in range(n_units):
        i = activate(recurrent_activation, gates[u] + rec[u] + bias[u])
        f = activate(
            recurrent_activation, gates[n_units + u] + rec[n_units + u] + bias[n_units + u]
        )
        g = activate(
            activation, gates[2 * n_units + u] + rec[2 * n_units + u] + bias[2 * n_units + u]
        )
        o = activate(
            recurrent_activation,
            gates[3 * n_units + u] + rec[3 * n_units + u] + bias[3 * n_units + u],
        )
        gates[u] = i
        gates[n_units + u] = f
        gates[2 * n_units + u] = g
        gates[3 * n_units + u] = o
        c = f * c_prev[u] + i * g
        a = activate(activation, c)
        c_new[u] = c
        c_act[u] = a
        h_new[u] = o * a


@njit(**JIT)
def lstm_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final,
):  # fmt: skip
    """LSTM over a whole sequence.

    Writes ``out`` (B, T, U) in processing order, the final states
    ``h_final``/``c_final`` (B, U), and the caches ``gates`` (B, T, 4U)
    activated gates, ``h_prev``/``h_used`` (B, T, U) the state entering each
    step raw and after recurrent dropout, ``c_prev`` and ``c_act`` (B, T, U)
    the carry entering each step and ``activation(c_t)``.
    """
    n_batch, n_steps, _ = x.shape
    n_units = h0.shape[1]
    input_projection(x, kernel, gates)
    h = h_final
    c = c_final
    copy_into(h, h0)
    copy_into(c, c0)
    h_step = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    rec = np.empty((n_batch, 4 * n_units), dtype=x.dtype)
    h_new = np.empty(n_units, dtype=x.dtype)
    c_new = np.empty(n_units, dtype=x.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        save_step_states(t, h, rec_mask, h_prev, h_used, h_step)
        for b in range(n_batch):
            copy_into(c_prev[b, t], c[b])
        np.dot(h_step, recurrent_kernel, rec)
        for b in range(n_batch):
            keep = mask[b, t]
            _cell_forward(
                gates[b, t], rec[b], bias, c[b], activation, recurrent_activation,
                c_new, c_act[b, t], h_new,
            )  # fmt: skip
            if keep:
                copy_into(h[b], h_new)
                copy_into(c[b], c_new)
            emit_output(out, s, b, h_new, keep, zero_output_for_mask)


@njit(**JIT)
def _cell_backward(dh, dc, gates, c_prev, c_act, activation, recurrent_activation, d_gates):
    # dh: cotangent of h_t (in), dc: of c_t (in) -> of c_{t-1} (out).
    n_units = dh.shape[0]
    for u in range(n_units):
        i = gates[u]
        f = gates[n_units + u]
        g = gates[2 * n_units + u]
        o = gates[3 * n_units + u]
        a = c_act[u]
        d_c = dc[u] + dh[u] * o * activation_grad(activation, a)
        d_gates[u] = d_c * g * activation_grad(recurrent_activation, i)
        d_gates[n_units + u] = d_c * c_prev[u] * activation_grad(recurrent_activation, f)
        d_gates[2 * n_units + u] = d_c * i * activation_grad(activation, g)
        d_gates[3 * n_units + u] = dh[u] * a * activation_grad(recurrent_activation, o)
        dc[u] = d_c * f


@njit(**JIT)
def lstm_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_used, c_prev, c_act,
    d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
):  # fmt: skip
    """Backpropagation through time for :func:`lstm_forward`.

    ``d_out`` (B, T, U, processing order), ``d_h_final`` and ``d_c_final`` are
    the cotangents of the outputs. Writes ``d_x``, the weight gradients and
    the initial-state gradients ``d_h0``/``d_c0``; ``d_gates`` (B, T, 4U) is
    work space holding the pre-activation gradients.
    """
    n_batch, n_steps, _ = x.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    dc = d_c0
    copy_into(dh, d_h_final)
    copy_into(dc, d_c_final)
    carry = np.zeros((n_batch, n_units), dtype=x.dtype)
    dh_total = np.empty(n_units, dtype=x.dtype)
    d_step = np.empty((n_batch, 4 * n_units), dtype=x.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        for b in range(n_batch):
            keep = mask[b, t]
            output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                add_into(dh_total, dh[b])
                _cell_backward(
                    dh_total, dc[b], gates[b, t], c_prev[b, t], c_act[b, t],
                    activation, recurrent_activation, d_step[b],
                )  # fmt: skip
                fill(dh[b], 0.0)
            else:
                fill(d_step[b], 0.0)
            copy_into(d_gates[b, t], d_step[b])
        np.dot(d_step, recurrent_kernel.T, dh_rec)
        add_masked_state_grad(dh, dh_rec, rec_mask)
    input_and_kernel_grads(x, kernel, d_gates, d_x, d_kernel)
    matmul_tn(h_used, d_gates, d_recurrent_kernel)
    column_sums(d_gates, d_bias)
