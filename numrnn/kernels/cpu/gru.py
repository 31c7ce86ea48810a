"""GRU forward and backward-through-time kernels (Keras gate order z, r, h).

Two variants, as in Keras: ``reset_after=True`` (the default, cuDNN style:
the reset gate multiplies ``h_{t-1} @ R_h + b_rec_h``; bias ``(2, 3U)``) and
``reset_after=False`` (the reset gate multiplies ``h_{t-1}`` before its
product with ``R_h``; bias ``(3U,)``). See ``_common`` for the conventions.
"""

import numpy as np
from numba import njit

from numrnn.kernels.cpu._common import (
    JIT,
    activate,
    activation_grad,
    add_into,
    add_masked_state_grad,
    column_block,
    column_sums,
    copy_into,
    emit_output,
    fill,
    input_and_kernel_grads,
    input_projection,
    join_columns,
    matmul_tn,
    output_cotangent,
    save_step_states,
    step_index,
)


@njit(**JIT)
def _blend(z, h_prev, candidate):
    return z * h_prev + (1.0 - z) * candidate


# --- reset_after=True ------------------------------------------------------


@njit(**JIT)
def _cell_forward_ra(gates, rec, bias_in, h_prev, activation, recurrent_activation, rec_h, h_new):
    # gates: x @ W on entry, activated z, r, hh on exit; rec = h @ R + b_rec.
    n_units = h_prev.shape[0]
    for u in range(n_units):
        z = activate(recurrent_activation, gates[u] + bias_in[u] + rec[u])
        r = activate(
            recurrent_activation, gates[n_units + u] + bias_in[n_units + u] + rec[n_units + u]
        )
        rh = rec[2 * n_units + u]
        hh = activate(activation, gates[2 * n_units + u] + bias_in[2 * n_units + u] + r * rh)
        gates[u] = z
        gates[n_units + u] = r
        gates[2 * n_units + u] = hh
        rec_h[u] = rh
        h_new[u] = _blend(z, h_prev[u], hh)


@njit(**JIT)
def gru_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, rec_h, h_final,
):  # fmt: skip
    """GRU with ``reset_after=True``; ``bias`` is ``(2, 3U)`` (input, recurrent).

    Caches: ``gates`` (B, T, 3U) activated z, r, hh; ``h_prev``/``h_used``
    (B, T, U); ``rec_h`` (B, T, U) the recurrent candidate term
    ``h_used @ R_h + b_rec_h``.
    """
    n_batch, n_steps, _ = x.shape
    n_units = h0.shape[1]
    input_projection(x, kernel, gates)
    h = h_final
    copy_into(h, h0)
    h_step = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    rec = np.empty((n_batch, 3 * n_units), dtype=x.dtype)
    h_new = np.empty(n_units, dtype=x.dtype)
    bias_in = bias[0]
    bias_rec = bias[1]
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        save_step_states(t, h, rec_mask, h_prev, h_used, h_step)
        np.dot(h_step, recurrent_kernel, rec)
        for b in range(n_batch):
            keep = mask[b, t]
            rec_row = rec[b]
            add_into(rec_row, bias_rec)
            _cell_forward_ra(
                gates[b, t], rec_row, bias_in, h[b], activation, recurrent_activation,
                rec_h[b, t], h_new,
            )  # fmt: skip
            if keep:
                copy_into(h[b], h_new)
            emit_output(out, s, b, h_new, keep, zero_output_for_mask)


@njit(**JIT)
def _cell_backward_ra(
    dh, gates, h_prev, rec_h, activation, recurrent_activation, d_in, d_rec, dh_direct
):  # fmt: skip
    n_units = dh.shape[0]
    for u in range(n_units):
        z = gates[u]
        r = gates[n_units + u]
        hh = gates[2 * n_units + u]
        d_hh = dh[u] * (1.0 - z) * activation_grad(activation, hh)
        d_z = dh[u] * (h_prev[u] - hh) * activation_grad(recurrent_activation, z)
        d_r = d_hh * rec_h[u] * activation_grad(recurrent_activation, r)
        d_in[u] = d_z
        d_in[n_units + u] = d_r
        d_in[2 * n_units + u] = d_hh
        d_rec[u] = d_z
        d_rec[n_units + u] = d_r
        d_rec[2 * n_units + u] = d_hh * r
        dh_direct[u] = dh[u] * z


@njit(**JIT)
def gru_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_prev, h_used, rec_h,
    d_out, d_h_final,
    d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`gru_forward`.

    ``d_gates`` and ``d_rec`` (B, T, 3U) are work space: the gradients of
    the input-side and recurrent-side pre-activations. ``d_bias`` is (2, 3U).
    """
    n_batch, n_steps, _ = x.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    copy_into(dh, d_h_final)
    carry = np.zeros((n_batch, n_units), dtype=x.dtype)
    dh_total = np.empty(n_units, dtype=x.dtype)
    d_step = np.empty((n_batch, 3 * n_units), dtype=x.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=x.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        for b in range(n_batch):
            keep = mask[b, t]
            output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                add_into(dh_total, dh[b])
                _cell_backward_ra(
                    dh_total, gates[b, t], h_prev[b, t], rec_h[b, t],
                    activation, recurrent_activation, d_gates[b, t], d_step[b], dh[b],
                )  # fmt: skip
            else:
                fill(d_gates[b, t], 0.0)
                fill(d_step[b], 0.0)
            copy_into(d_rec[b, t], d_step[b])
        np.dot(d_step, recurrent_kernel.T, dh_rec)
        add_masked_state_grad(dh, dh_rec, rec_mask)
    input_and_kernel_grads(x, kernel, d_gates, d_x, d_kernel)
    matmul_tn(h_used, d_rec, d_recurrent_kernel)
    column_sums(d_gates, d_bias[0])
    column_sums(d_rec, d_bias[1])


# --- reset_after=False -----------------------------------------------------


@njit(**JIT)
def _gates_zr_forward(gates, rec_zr, bias, h_used, recurrent_activation, r_h):
    n_units = h_used.shape[0]
    for u in range(n_units):
        z = activate(recurrent_activation, gates[u] + bias[u] + rec_zr[u])
        r = activate(
            recurrent_activation, gates[n_units + u] + bias[n_units + u] + rec_zr[n_units + u]
        )
        gates[u] = z
        gates[n_units + u] = r
        r_h[u] = r * h_used[u]


@njit(**JIT)
def _candidate_forward(gates, rec_h, bias, h_prev, activation, h_new):
    n_units = h_prev.shape[0]
    for u in range(n_units):
        hh = activate(activation, gates[2 * n_units + u] + bias[2 * n_units + u] + rec_h[u])
        gates[2 * n_units + u] = hh
        h_new[u] = _blend(gates[u], h_prev[u], hh)


@njit(**JIT)
def gru_forward_reset_before(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, r_h, h_final,
):  # fmt: skip
    """GRU with ``reset_after=False``; ``bias`` is ``(3U,)``.

    Caches: ``gates`` (B, T, 3U) activated z, r, hh; ``h_prev`` (B, T, U),
    ``h_used`` (B, T, W); ``r_h`` (B, T, U) = ``r * h_used``, the operand of
    ``R_h``. With per-gate dropout (``W = 3U``) the candidate's dropped state
    is the last ``U`` columns of ``h_used``.
    """
    n_batch, n_steps, _ = x.shape
    n_units = h0.shape[1]
    width = rec_mask.shape[1]
    offset = width - n_units
    input_projection(x, kernel, gates)
    kernel_zr = column_block(recurrent_kernel, 0, 2 * n_units)
    kernel_h = column_block(recurrent_kernel[offset:], 2 * n_units, 3 * n_units)
    h = h_final
    copy_into(h, h0)
    h_step = np.empty((n_batch, width), dtype=x.dtype)
    rh_step = np.empty((n_batch, n_units), dtype=x.dtype)
    rec_zr = np.empty((n_batch, 2 * n_units), dtype=x.dtype)
    rec_h = np.empty((n_batch, n_units), dtype=x.dtype)
    h_new = np.empty(n_units, dtype=x.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        save_step_states(t, h, rec_mask, h_prev, h_used, h_step)
        np.dot(h_step, kernel_zr, rec_zr)
        for b in range(n_batch):
            _gates_zr_forward(
                gates[b, t], rec_zr[b], bias, h_step[b, offset:], recurrent_activation, rh_step[b]
            )
            copy_into(r_h[b, t], rh_step[b])
        np.dot(rh_step, kernel_h, rec_h)
        for b in range(n_batch):
            keep = mask[b, t]
            _candidate_forward(gates[b, t], rec_h[b], bias, h[b], activation, h_new)
            if keep:
                copy_into(h[b], h_new)
            emit_output(out, s, b, h_new, keep, zero_output_for_mask)


@njit(**JIT)
def _candidate_backward(dh, gates, h_prev, activation, recurrent_activation, d_gates, dh_direct):
    n_units = dh.shape[0]
    for u in range(n_units):
        z = gates[u]
        hh = gates[2 * n_units + u]
        d_gates[u] = dh[u] * (h_prev[u] - hh) * activation_grad(recurrent_activation, z)
        d_gates[2 * n_units + u] = dh[u] * (1.0 - z) * activation_grad(activation, hh)
        dh_direct[u] = dh[u] * z


@njit(**JIT)
def _reset_backward(d_rh, gates, h_used, recurrent_activation, d_gates, d_zr, d_hu_from_r):
    # d_rh: cotangent of r * h_used.
    n_units = d_rh.shape[0]
    for u in range(n_units):
        r = gates[n_units + u]
        d_gates[n_units + u] = d_rh[u] * h_used[u] * activation_grad(recurrent_activation, r)
        d_zr[u] = d_gates[u]
        d_zr[n_units + u] = d_gates[n_units + u]
        d_hu_from_r[u] = d_rh[u] * r


@njit(**JIT)
def gru_backward_reset_before(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_prev, h_used, r_h,
    d_out, d_h_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`gru_forward_reset_before`.

    ``d_gates`` (B, T, 3U) is work space; ``d_bias`` is (3U,).
    """
    n_batch, n_steps, _ = x.shape
    n_units = d_h0.shape[1]
    width = rec_mask.shape[1]
    offset = width - n_units
    kernel_zr = column_block(recurrent_kernel, 0, 2 * n_units)
    kernel_h = column_block(recurrent_kernel[offset:], 2 * n_units, 3 * n_units)
    dh = d_h0
    copy_into(dh, d_h_final)
    carry = np.zeros((n_batch, n_units), dtype=x.dtype)
    dh_total = np.empty(n_units, dtype=x.dtype)
    d_cand = np.zeros((n_batch, n_units), dtype=x.dtype)
    d_zr = np.zeros((n_batch, 2 * n_units), dtype=x.dtype)
    d_rh = np.empty((n_batch, n_units), dtype=x.dtype)
    d_hu = np.empty((n_batch, width), dtype=x.dtype)
    d_hu_from_r = np.zeros((n_batch, n_units), dtype=x.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        for b in range(n_batch):
            keep = mask[b, t]
            output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                add_into(dh_total, dh[b])
                _candidate_backward(
                    dh_total, gates[b, t], h_prev[b, t], activation, recurrent_activation,
                    d_gates[b, t], dh[b],
                )  # fmt: skip
                copy_into(d_cand[b], d_gates[b, t, 2 * n_units :])
            else:
                fill(d_gates[b, t], 0.0)
                fill(d_cand[b], 0.0)
        np.dot(d_cand, kernel_h.T, d_rh)
        for b in range(n_batch):
            if mask[b, t]:
                _reset_backward(
                    d_rh[b], gates[b, t], h_used[b, t, offset:], recurrent_activation,
                    d_gates[b, t], d_zr[b], d_hu_from_r[b],
                )  # fmt: skip
            else:
                fill(d_zr[b], 0.0)
                fill(d_hu_from_r[b], 0.0)
        np.dot(d_zr, kernel_zr.T, d_hu)
        for b in range(n_batch):
            add_into(d_hu[b, offset:], d_hu_from_r[b])
        add_masked_state_grad(dh, d_hu, rec_mask)
    input_and_kernel_grads(x, kernel, d_gates, d_x, d_kernel)
    d_zr_all = column_block(d_gates, 0, 2 * n_units)
    d_h_all = column_block(d_gates, 2 * n_units, 3 * n_units)
    d_rec_zr = np.empty((width, 2 * n_units), dtype=x.dtype)
    d_rec_h = np.zeros((width, n_units), dtype=x.dtype)
    matmul_tn(h_used, d_zr_all, d_rec_zr)
    matmul_tn(r_h, d_h_all, d_rec_h[offset:])
    join_columns(d_rec_zr, d_rec_h, d_recurrent_kernel)
    column_sums(d_gates, d_bias)
