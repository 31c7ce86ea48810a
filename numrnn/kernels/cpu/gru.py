"""GRU forward and backward-through-time kernels (Keras gate order z, r, h).

Two variants, as in Keras: ``reset_after=True`` (the default, cuDNN style:
the reset gate multiplies ``h_{t-1} @ R_h + b_rec_h``; bias ``(2, 3U)``) and
``reset_after=False`` (the reset gate multiplies ``h_{t-1}`` before its
product with ``R_h``; bias ``(3U,)``). See ``_common`` for the conventions.
"""

import numpy as np
from numba import njit

from numrnn.kernels.cpu import _ahead, _threads
from numrnn.kernels.cpu._common import (
    JIT,
    JIT_FMA,
    SIGMOID,
    TANH,
    act,
    activate_row,
    activation_grad,
    all_finite,
    column_sums,
    copy_into,
    emit_output,
    fill,
    flat,
    gemm,
    is_plain_mask,
    one_like,
    output_cotangent,
    project_inputs,
    recurrent_state_grad,
    row_product,
    same_buffer,
    sigmoid_row,
    sigmoid_t,
    stash_states,
    step_index,
    tanh_row,
    tanh_t,
    weight_grads,
)
from numrnn.kernels.cpu._packed import no_panels


@njit(**JIT_FMA)
def _blend_row(z, h_prev, candidate, h_new):
    # h_new = z * h_prev + (1 - z) * candidate
    one = one_like(h_new)
    for u in range(h_new.shape[0]):
        zu = z[u]
        h_new[u] = zu * h_prev[u] + (one - zu) * candidate[u]


@njit(inline="always", **JIT)
def _blend(z, h_prev, candidate):
    return z * h_prev + (1.0 - z) * candidate


@njit(**JIT)
def _commit(h, out, s, b, h_new, keep, zero_output_for_mask):
    if keep:
        copy_into(h[b], h_new)
    emit_output(out, s, b, h_new, keep, zero_output_for_mask)


def _fast(activation, recurrent_activation):
    return activation == TANH and recurrent_activation == SIGMOID


_fast_codes = njit(inline="always", **JIT)(_fast)


# --- reset_after=True ------------------------------------------------------


@njit(**JIT_FMA)
def _cell_fast_ra(row, rec, bias_in, bias_rec, h_prev, rec_h, h_new):
    # tanh/sigmoid cell of one sample in one vectorised loop. row: x W on
    # entry, activated z, r, hh on exit; rec = h R; rec_h = h R_h + b_rec_h.
    n_units = h_prev.shape[0]
    one = one_like(h_new)
    x_z = row[:n_units]
    x_r = row[n_units : 2 * n_units]
    x_h = row[2 * n_units :]
    r_z = rec[:n_units]
    r_r = rec[n_units : 2 * n_units]
    r_h = rec[2 * n_units :]
    bi_z = bias_in[:n_units]
    bi_r = bias_in[n_units : 2 * n_units]
    bi_h = bias_in[2 * n_units :]
    br_z = bias_rec[:n_units]
    br_r = bias_rec[n_units : 2 * n_units]
    br_h = bias_rec[2 * n_units :]
    for u in range(n_units):
        z = sigmoid_t(x_z[u] + bi_z[u] + (r_z[u] + br_z[u]))
        r = sigmoid_t(x_r[u] + bi_r[u] + (r_r[u] + br_r[u]))
        rh = r_h[u] + br_h[u]
        hh = tanh_t(x_h[u] + bi_h[u] + r * rh)
        x_z[u] = z
        x_r[u] = r
        x_h[u] = hh
        rec_h[u] = rh
        h_new[u] = z * h_prev[u] + (one - z) * hh


@njit(**JIT)
def _cell_generic_ra(gates, rec, bias_in, bias_rec, h_prev, activation, recurrent_activation,
                     rec_h, h_new):  # fmt: skip
    # any activations, computed in the widest type as the reference does
    n_units = h_prev.shape[0]
    for u in range(n_units):
        z = act(recurrent_activation, gates[u] + bias_in[u] + (rec[u] + bias_rec[u]))
        r = act(
            recurrent_activation,
            gates[n_units + u] + bias_in[n_units + u] + (rec[n_units + u] + bias_rec[n_units + u]),
        )
        rh = rec[2 * n_units + u] + bias_rec[2 * n_units + u]
        hh = act(activation, gates[2 * n_units + u] + bias_in[2 * n_units + u] + r * rh)
        gates[u] = z
        gates[n_units + u] = r
        gates[2 * n_units + u] = hh
        rec_h[u] = rh
        h_new[u] = _blend(z, h_prev[u], hh)


@njit(**JIT)
def _cells_forward_ra(
    gates, rec, t, s, bias, mask, h, rec_h, out, h_new,
    activation, recurrent_activation, zero_output_for_mask,
):  # fmt: skip
    n_batch = h.shape[0]
    bias_in = bias[0]
    bias_rec = bias[1]
    fast = _fast_codes(activation, recurrent_activation)
    for b in range(n_batch):
        row = gates[b, t]
        rec_row = rec[b]
        if fast:
            _cell_fast_ra(row, rec_row, bias_in, bias_rec, h[b], rec_h[b, t], h_new)
        else:
            _cell_generic_ra(
                row, rec_row, bias_in, bias_rec, h[b], activation, recurrent_activation,
                rec_h[b, t], h_new,
            )  # fmt: skip
        _commit(h, out, s, b, h_new, mask[b, t], zero_output_for_mask)


@njit(**JIT)
def _forward_loop_ra(
    x, kernel, gates, mask, h0, rec_mask, out, h_prev, h_used, rec_h, h_final,
    recurrent_kernel, bias, activation, recurrent_activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    project_inputs(x, kernel, gates)
    n_batch, n_steps, _ = gates.shape
    n_units = h0.shape[1]
    h = h_final
    copy_into(h, h0)
    dropped = not same_buffer(h_used, h_prev)
    rec = np.empty((n_batch, 3 * n_units), dtype=gates.dtype)
    h_new = np.empty(n_units, dtype=gates.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        stash_states(h, rec_mask, h_prev, h_used, t, dropped)
        gemm(h_used[:, t], False, recurrent_kernel, False, rec, False)
        _cells_forward_ra(
            gates, rec, t, s, bias, mask, h, rec_h, out, h_new,
            activation, recurrent_activation, zero_output_for_mask,
        )  # fmt: skip


# argument positions of the compiled loops: batch-major arrays (split into row
# blocks by _threads) and batch sums (weight gradients)
_FORWARD_ROWS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10)
_BACKWARD_ROWS_RA = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16)
_BACKWARD_SUMS_RA = (13, 14, 15)
_BACKWARD_ROWS_RB = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 15)
_BACKWARD_SUMS_RB = (12, 13, 14)
# the backward loops' argument types (``_ahead.signature``), for compiling
# them while a helper process compiles the forward loop
_BACKWARD_TYPES_RA = "3 2 3 3 3 3 m 2 3 2 3 3 3 2 2 2 2 2 i i b b"
_BACKWARD_TYPES_RB = "3 2 3 3 3 3 m 2 3 2 3 3 2 2 1 2 2 i i b b"
# the single-step kernels' argument types: the helper that compiles the
# forward loop compiles the one a stateful layer's stream will call
_STEP_TYPES_FAST = "2 2 2 2 2 2"
_STEP_TYPES_RA = "2 2 2 2 2 i i 2"
_STEP_TYPES_RB = "2 2 2 1 2 i i 2"


def gru_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, rec_h, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """GRU with ``reset_after=True``; ``bias`` is ``(2, 3U)`` (input, recurrent).

    Caches: ``gates`` (B, T, 3U) activated z, r, hh; ``h_prev``/``h_used``
    (B, T, U); ``rec_h`` (B, T, U) the recurrent candidate term
    ``h_used @ R_h + b_rec_h``.

    ``backward_follows``: a backward call follows (a training step); on a
    cold numba cache the two kernels then compile at once (``_ahead``).
    ``step_follows``: single-step calls (:func:`_gru_step_fast` or
    :func:`_gru_step`, a stateful layer's stream) may follow; the helper of
    a cold training step then compiles that kernel too.
    """
    batch = (x, kernel, gates, mask, h0, rec_mask, out, h_prev, h_used, rec_h, h_final)
    shared = (
        recurrent_kernel, bias, int(activation), int(recurrent_activation),
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    if backward_follows:
        if _fast(activation, recurrent_activation):
            step = (_gru_step_fast, _STEP_TYPES_FAST)
        else:
            step = (_gru_step, _STEP_TYPES_RA)
        _ahead.compile_pair(
            _forward_loop_ra, batch + shared, _backward_loop_ra,
            _BACKWARD_TYPES_RA, x.dtype, split=(_FORWARD_ROWS, gates, _threads.MAX_WIDTH),
            also=(step,) if step_follows else (),
        )  # fmt: skip
    _threads.call_in_blocks(_forward_loop_ra, batch + shared, _FORWARD_ROWS, (), gates)


@njit(**JIT_FMA)
def _cell_backward_ra(
    dh, gates, h_prev, rec_h, activation, recurrent_activation, d_in, d_rec, dh_direct
):  # fmt: skip
    n_units = dh.shape[0]
    if _fast_codes(activation, recurrent_activation):
        one = one_like(dh)
        for u in range(n_units):
            z = gates[u]
            r = gates[n_units + u]
            hh = gates[2 * n_units + u]
            d_hh = dh[u] * (one - z) * (one - hh * hh)
            d_z = dh[u] * (h_prev[u] - hh) * (z * (one - z))
            d_r = d_hh * rec_h[u] * (r * (one - r))
            d_in[u] = d_z
            d_in[n_units + u] = d_r
            d_in[2 * n_units + u] = d_hh
            d_rec[u] = d_z
            d_rec[n_units + u] = d_r
            d_rec[2 * n_units + u] = d_hh * r
            dh_direct[u] = dh[u] * z
    else:
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


@njit(**JIT_FMA)
def _cells_backward_ra(
    d_out, carry, dh, dh_total, gates, h_prev, rec_h, mask, d_gates, d_rec, t, s,
    activation, recurrent_activation, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_units = dh.shape
    for b in range(n_batch):
        keep = mask[b, t]
        output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
        if keep:
            dh_row = dh[b]
            for u in range(n_units):
                dh_total[u] += dh_row[u]
            _cell_backward_ra(
                dh_total, gates[b, t], h_prev[b, t], rec_h[b, t],
                activation, recurrent_activation, d_gates[b, t], d_rec[b, t], dh_row,
            )  # fmt: skip
        else:
            fill(d_gates[b, t], 0.0)
            fill(d_rec[b, t], 0.0)


@njit(**JIT)
def _backward_loop_ra(
    x, kernel, gates, h_prev, h_used, rec_h, mask, rec_mask, d_out, d_h_final,
    d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    recurrent_kernel, activation, recurrent_activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_steps, _ = gates.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    copy_into(dh, d_h_final)
    plain = is_plain_mask(rec_mask, n_units)
    carry = np.zeros((n_batch, n_units), dtype=gates.dtype)
    dh_total = np.empty(n_units, dtype=gates.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=gates.dtype)
    panels_t = no_panels(dh)  # the BLAS for the recurrent state gradient
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        _cells_backward_ra(
            d_out, carry, dh, dh_total, gates, h_prev, rec_h, mask, d_gates, d_rec, t, s,
            activation, recurrent_activation, zero_output_for_mask,
        )  # fmt: skip
        recurrent_state_grad(d_rec[:, t], recurrent_kernel, panels_t, rec_mask, plain, dh, dh_rec)
    weight_grads(x, kernel, h_used, d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel)
    column_sums(d_gates, d_bias[0])
    column_sums(d_rec, d_bias[1])


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
    batch = (
        x, kernel, gates, h_prev, h_used, rec_h, mask, rec_mask, d_out, d_h_final,
        d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    )  # fmt: skip
    shared = (
        recurrent_kernel, int(activation), int(recurrent_activation),
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    _threads.call_in_blocks(
        _backward_loop_ra, batch + shared, _BACKWARD_ROWS_RA, _BACKWARD_SUMS_RA, gates
    )


# --- reset_after=False -----------------------------------------------------


@njit(**JIT)
def _gates_zr_rb(gates, t, bias, h_used, r_h, offset, recurrent_activation):
    # z and r from x W + h R_zr (already summed in gates[:, t]); r_h = r * h_used
    n_units = r_h.shape[2]
    two = 2 * n_units
    for b in range(gates.shape[0]):
        row = gates[b, t]
        used = h_used[b, t][offset:]
        dst = r_h[b, t]
        if recurrent_activation == SIGMOID:
            sigmoid_row(row[:two], bias[:two])
            for u in range(n_units):
                dst[u] = row[n_units + u] * used[u]
        else:
            for u in range(n_units):
                z = act(recurrent_activation, row[u] + bias[u])
                r = act(recurrent_activation, row[n_units + u] + bias[n_units + u])
                row[u] = z
                row[n_units + u] = r
                dst[u] = r * used[u]


@njit(**JIT)
def _cells_forward_rb(
    gates, t, s, bias, mask, h, out, h_new, activation, recurrent_activation, zero_output_for_mask
):  # fmt: skip
    n_units = h.shape[1]
    two = 2 * n_units
    fast = _fast_codes(activation, recurrent_activation)
    for b in range(h.shape[0]):
        row = gates[b, t]
        h_row = h[b]
        if fast:
            tanh_row(row[two:], bias[two:])
            _blend_row(row[:n_units], h_row, row[two:], h_new)
        else:
            for u in range(n_units):
                hh = act(activation, row[two + u] + bias[two + u])
                row[two + u] = hh
                h_new[u] = _blend(row[u], h_row[u], hh)
        _commit(h, out, s, b, h_new, mask[b, t], zero_output_for_mask)


@njit(**JIT)
def _forward_loop_rb(
    x, kernel, gates, mask, h0, rec_mask, out, h_prev, h_used, r_h, h_final,
    recurrent_kernel, bias, activation, recurrent_activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    project_inputs(x, kernel, gates)
    n_steps = gates.shape[1]
    n_units = h0.shape[1]
    two = 2 * n_units
    offset = rec_mask.shape[1] - n_units
    kernel_zr = recurrent_kernel[:, :two]
    kernel_h = recurrent_kernel[offset:, two:]
    h = h_final
    copy_into(h, h0)
    dropped = not same_buffer(h_used, h_prev)
    h_new = np.empty(n_units, dtype=gates.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        stash_states(h, rec_mask, h_prev, h_used, t, dropped)
        gemm(h_used[:, t], False, kernel_zr, False, gates[:, t, :two], True)
        _gates_zr_rb(gates, t, bias, h_used, r_h, offset, recurrent_activation)
        gemm(r_h[:, t], False, kernel_h, False, gates[:, t, two:], True)
        _cells_forward_rb(
            gates, t, s, bias, mask, h, out, h_new, activation, recurrent_activation,
            zero_output_for_mask,
        )  # fmt: skip


def gru_forward_reset_before(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, r_h, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """GRU with ``reset_after=False``; ``bias`` is ``(3U,)``.

    Caches: ``gates`` (B, T, 3U) activated z, r, hh; ``h_prev`` (B, T, U),
    ``h_used`` (B, T, W); ``r_h`` (B, T, U) = ``r * h_used``, the operand of
    ``R_h``. With per-gate dropout (``W = 3U``) the candidate's dropped state
    is the last ``U`` columns of ``h_used``.

    ``backward_follows``: a backward call follows (a training step); on a
    cold numba cache the two kernels then compile at once (``_ahead``).
    ``step_follows``: single-step calls (:func:`_gru_step_reset_before`, a
    stateful layer's stream) may follow; the helper of a cold training step
    then compiles that kernel too.
    """
    batch = (x, kernel, gates, mask, h0, rec_mask, out, h_prev, h_used, r_h, h_final)
    shared = (
        recurrent_kernel, bias, int(activation), int(recurrent_activation),
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    if backward_follows:
        _ahead.compile_pair(
            _forward_loop_rb, batch + shared, _backward_loop_rb,
            _BACKWARD_TYPES_RB, x.dtype, split=(_FORWARD_ROWS, gates, _threads.MAX_WIDTH),
            also=((_gru_step_reset_before, _STEP_TYPES_RB),) if step_follows else (),
        )  # fmt: skip
    _threads.call_in_blocks(_forward_loop_rb, batch + shared, _FORWARD_ROWS, (), gates)


@njit(**JIT_FMA)
def _candidate_backward_rb(dh, gates, h_prev, activation, recurrent_activation, d_gates):
    # d_gates: z and hh columns; dh becomes its direct part dh * z
    n_units = dh.shape[0]
    if _fast_codes(activation, recurrent_activation):
        one = one_like(dh)
        for u in range(n_units):
            z = gates[u]
            hh = gates[2 * n_units + u]
            d = dh[u]
            d_gates[u] = d * (h_prev[u] - hh) * (z * (one - z))
            d_gates[2 * n_units + u] = d * (one - z) * (one - hh * hh)
            dh[u] = d * z
    else:
        for u in range(n_units):
            z = gates[u]
            hh = gates[2 * n_units + u]
            d = dh[u]
            d_gates[u] = d * (h_prev[u] - hh) * activation_grad(recurrent_activation, z)
            d_gates[2 * n_units + u] = d * (1.0 - z) * activation_grad(activation, hh)
            dh[u] = d * z


@njit(**JIT_FMA)
def _cells_backward_rb(
    d_out, carry, dh, dh_total, gates, h_prev, mask, d_gates, t, s,
    activation, recurrent_activation, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_units = dh.shape
    for b in range(n_batch):
        keep = mask[b, t]
        output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
        if keep:
            dh_row = dh[b]
            for u in range(n_units):
                dh_row[u] += dh_total[u]
            _candidate_backward_rb(
                dh_row, gates[b, t], h_prev[b, t], activation, recurrent_activation, d_gates[b, t]
            )
        else:
            fill(d_gates[b, t], 0.0)


@njit(**JIT_FMA)
def _reset_backward_rb(d_rh, gates, h_used, offset, recurrent_activation, d_gates, t):
    # d_rh (B, U): cotangent of r * h_used. Writes the r column of d_gates and
    # turns d_rh into d_rh * r, the cotangent reaching h_used through r * h_used.
    n_batch, n_units = d_rh.shape
    for b in range(n_batch):
        row = gates[b, t]
        used = h_used[b, t]
        d_row = d_gates[b, t]
        d = d_rh[b]
        for u in range(n_units):
            r = row[n_units + u]
            d_row[n_units + u] = d[u] * used[offset + u] * activation_grad(recurrent_activation, r)
            d[u] = d[u] * r


@njit(**JIT)
def _backward_loop_rb(
    x, kernel, gates, h_prev, h_used, r_h, mask, rec_mask, d_out, d_h_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    recurrent_kernel, activation, recurrent_activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_steps, _ = gates.shape
    n_units = d_h0.shape[1]
    two = 2 * n_units
    width = rec_mask.shape[1]
    offset = width - n_units
    kernel_zr = recurrent_kernel[:, :two]
    kernel_h = recurrent_kernel[offset:, two:]
    dh = d_h0
    copy_into(dh, d_h_final)
    carry = np.zeros((n_batch, n_units), dtype=gates.dtype)
    dh_total = np.empty(n_units, dtype=gates.dtype)
    d_rh = np.empty((n_batch, n_units), dtype=gates.dtype)
    d_hu = np.empty((n_batch, width), dtype=gates.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        _cells_backward_rb(
            d_out, carry, dh, dh_total, gates, h_prev, mask, d_gates, t, s,
            activation, recurrent_activation, zero_output_for_mask,
        )  # fmt: skip
        d_step = d_gates[:, t]
        gemm(d_step[:, two:], False, kernel_h, True, d_rh, False)
        _reset_backward_rb(d_rh, gates, h_used, offset, recurrent_activation, d_gates, t)
        gemm(d_step[:, :two], False, kernel_zr, True, d_hu, False)
        # the cotangent of the dropped state (z, r products, and the candidate's
        # r * h_used in the last U columns), folded onto dh through the mask
        for b in range(n_batch):
            dst = dh[b]
            src = d_hu[b]
            m = rec_mask[b]
            via_r = d_rh[b]
            for j in range(offset):
                dst[j % n_units] += src[j] * m[j]
            for u in range(n_units):
                dst[u] += (src[offset + u] + via_r[u]) * m[offset + u]
    _weight_grads_rb(x, kernel, h_used, r_h, d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias)


@njit(**JIT)
def _weight_grads_rb(x, kernel, h_used, r_h, d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias):
    n_units = r_h.shape[2]
    two = 2 * n_units
    offset = h_used.shape[2] - n_units
    d_flat = flat(d_gates)
    gemm(d_flat, False, kernel, True, flat(d_x), False)
    gemm(flat(x), True, d_flat, False, d_kernel, False)
    gemm(flat(h_used), True, d_flat[:, :two], False, d_recurrent_kernel[:, :two], False)
    for i in range(offset):
        fill(d_recurrent_kernel[i, two:], 0.0)
    gemm(flat(r_h), True, d_flat[:, two:], False, d_recurrent_kernel[offset:, two:], False)
    column_sums(d_gates, d_bias)


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
    batch = (
        x, kernel, gates, h_prev, h_used, r_h, mask, rec_mask, d_out, d_h_final,
        d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    )  # fmt: skip
    shared = (
        recurrent_kernel, int(activation), int(recurrent_activation),
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    _threads.call_in_blocks(
        _backward_loop_rb, batch + shared, _BACKWARD_ROWS_RB, _BACKWARD_SUMS_RB, gates
    )


@njit(**JIT)
def _step_products_ra(x, kernel, recurrent_kernel, h):
    # x W and h R (each B, 3U) of one streaming step
    n_batch, n_units = h.shape
    gates = np.empty((n_batch, 3 * n_units), dtype=x.dtype)
    rec = np.empty((n_batch, 3 * n_units), dtype=x.dtype)
    for b in range(n_batch):
        row_product(x[b], kernel, gates[b], False)
        row_product(h[b], recurrent_kernel, rec[b], False)
    return gates, rec


@njit(**JIT)
def _gru_step(x, kernel, recurrent_kernel, bias, h, activation, recurrent_activation, out):
    """One GRU step (``reset_after=True``) for streaming inference.

    ``x`` (B, F); the state ``h`` (B, U) is updated in place and ``out``
    (B, U) receives it. ``bias`` is (2, 3U). Returns False, touching
    nothing, when ``x`` holds NaN or infinity, else True. Any activations;
    :func:`_gru_step_fast` serves tanh/sigmoid.
    """
    if not all_finite(x):
        return False
    gates, rec = _step_products_ra(x, kernel, recurrent_kernel, h)
    rec_h = np.empty(h.shape[1], dtype=x.dtype)
    for b in range(h.shape[0]):
        _cell_generic_ra(
            gates[b], rec[b], bias[0], bias[1], h[b], activation, recurrent_activation, rec_h,
            out[b],
        )  # fmt: skip
        copy_into(h[b], out[b])
    return True


@njit(**JIT)
def _gru_step_fast(x, kernel, recurrent_kernel, bias, h, out):
    """:func:`_gru_step` for tanh/sigmoid cells (the sequence kernels'
    vectorised cell), a kernel of its own so that a stream compiles only
    the cells it uses."""
    if not all_finite(x):
        return False
    gates, rec = _step_products_ra(x, kernel, recurrent_kernel, h)
    rec_h = np.empty(h.shape[1], dtype=x.dtype)
    for b in range(h.shape[0]):
        _cell_fast_ra(gates[b], rec[b], bias[0], bias[1], h[b], rec_h, out[b])
        copy_into(h[b], out[b])
    return True


@njit(**JIT)
def _gru_step_reset_before(
    x, kernel, recurrent_kernel, bias, h, activation, recurrent_activation, out
):  # fmt: skip
    """One GRU step (``reset_after=False``) for streaming inference; ``bias`` is (3U,).

    Returns False, touching nothing, when ``x`` holds NaN or infinity, else True.
    """
    if not all_finite(x):
        return False
    n_units = h.shape[1]
    two = 2 * n_units
    gates = np.empty(3 * n_units, dtype=x.dtype)
    r_h = np.empty(n_units, dtype=x.dtype)
    for b in range(x.shape[0]):
        h_row = h[b]
        row_product(x[b], kernel, gates, False)
        row_product(h_row, recurrent_kernel[:, :two], gates[:two], True)
        # whole rows per activation: one branch on the code, then loops that vectorise
        activate_row(gates[:two], bias[:two], recurrent_activation)
        for u in range(n_units):
            r_h[u] = gates[n_units + u] * h_row[u]
        row_product(r_h, recurrent_kernel[:, two:], gates[two:], True)
        activate_row(gates[two:], bias[two:], activation)
        _blend_row(gates[:n_units], h_row, gates[two:], out[b])
        copy_into(h_row, out[b])
    return True
