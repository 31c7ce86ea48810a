"""SimpleRNN forward and backward-through-time kernels.

``h_t = activation(x_t @ W + b + h_{t-1} @ R)``. See ``_common`` for the
array conventions shared by every recurrent kernel.
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
def _cell_forward(pre, rec, bias, activation, h_new):
    # pre: x @ W on entry, the new state on exit.
    for u in range(pre.shape[0]):
        h = activate(activation, pre[u] + rec[u] + bias[u])
        pre[u] = h
        h_new[u] = h


@njit(**JIT)
def simple_rnn_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    out, states, h_prev, h_used, h_final,
):  # fmt: skip
    """SimpleRNN over a whole sequence.

    Caches: ``states`` (B, T, U) the candidate state of each step,
    ``h_prev``/``h_used`` (B, T, U) the state entering each step.
    """
    n_batch, n_steps, _ = x.shape
    n_units = h0.shape[1]
    input_projection(x, kernel, states)
    h = h_final
    copy_into(h, h0)
    h_step = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    rec = np.empty((n_batch, n_units), dtype=x.dtype)
    h_new = np.empty(n_units, dtype=x.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        save_step_states(t, h, rec_mask, h_prev, h_used, h_step)
        np.dot(h_step, recurrent_kernel, rec)
        for b in range(n_batch):
            keep = mask[b, t]
            _cell_forward(states[b, t], rec[b], bias, activation, h_new)
            if keep:
                copy_into(h[b], h_new)
            emit_output(out, s, b, h_new, keep, zero_output_for_mask)


@njit(**JIT)
def _cell_backward(dh, state, activation, d_pre):
    for u in range(dh.shape[0]):
        d_pre[u] = dh[u] * activation_grad(activation, state[u])


@njit(**JIT)
def simple_rnn_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    states, h_used,
    d_out, d_h_final,
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`simple_rnn_forward`."""
    n_batch, n_steps, _ = x.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    copy_into(dh, d_h_final)
    carry = np.zeros((n_batch, n_units), dtype=x.dtype)
    dh_total = np.empty(n_units, dtype=x.dtype)
    d_step = np.empty((n_batch, n_units), dtype=x.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        for b in range(n_batch):
            keep = mask[b, t]
            output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                add_into(dh_total, dh[b])
                _cell_backward(dh_total, states[b, t], activation, d_step[b])
                fill(dh[b], 0.0)
            else:
                fill(d_step[b], 0.0)
            copy_into(d_pre[b, t], d_step[b])
        np.dot(d_step, recurrent_kernel.T, dh_rec)
        add_masked_state_grad(dh, dh_rec, rec_mask)
    input_and_kernel_grads(x, kernel, d_pre, d_x, d_kernel)
    matmul_tn(h_used, d_pre, d_recurrent_kernel)
    column_sums(d_pre, d_bias)
