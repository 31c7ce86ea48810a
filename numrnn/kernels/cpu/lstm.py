"""LSTM forward and backward-through-time kernels (Keras gate order i, f, c, o),
and a forward kernel for outputs only (``lstm_infer``: no caches).

See ``_common`` for the array conventions shared by every recurrent kernel.
"""

import numpy as np
from numba import njit

from numrnn.kernels.cpu import _threads
from numrnn.kernels.cpu._common import (
    JIT,
    JIT_FMA,
    SIGMOID,
    TANH,
    act,
    activation_grad,
    all_finite,
    column_sums,
    copy_into,
    emit_output,
    fill,
    gemm,
    is_plain_mask,
    one_like,
    output_cotangent,
    project_inputs,
    recurrent_state_grad,
    row_product,
    same_buffer,
    sigmoid_t,
    stash_states,
    step_index,
    tanh_t,
    weight_grads,
)


@njit(**JIT)
def _cell_generic(gates, bias, c, c_prev, c_act, h, activation, recurrent_activation):
    # any activations, in the widest type (as the reference): gates holds
    # the pre-activations on entry and the activated gates on exit
    n_units = c.shape[0]
    for u in range(n_units):
        i = act(recurrent_activation, gates[u] + bias[u])
        f = act(recurrent_activation, gates[n_units + u] + bias[n_units + u])
        g = act(activation, gates[2 * n_units + u] + bias[2 * n_units + u])
        o = act(recurrent_activation, gates[3 * n_units + u] + bias[3 * n_units + u])
        gates[u] = i
        gates[n_units + u] = f
        gates[2 * n_units + u] = g
        gates[3 * n_units + u] = o
        old = c[u]
        c_prev[u] = old
        new = f * old + i * g
        a = act(activation, new)
        c[u] = new
        c_act[u] = a
        h[u] = o * a


@njit(inline="always", **JIT)
def _gate_blocks(row, n_units):
    """The i, f, c, o blocks of a 1-D gate row (views)."""
    return (
        row[:n_units], row[n_units : 2 * n_units], row[2 * n_units : 3 * n_units],
        row[3 * n_units :],
    )  # fmt: skip


@njit(**JIT_FMA)
def _cells_forward_fast(
    gates, t, s, bias, mask, h, c, c_prev, c_act, out, scratch_h, scratch_c, zero_output_for_mask
):  # fmt: skip
    # tanh/sigmoid cells of step t for the whole batch, in one loop per sample
    # (no calls: at small U the per-call cost would exceed the arithmetic).
    # gates[:, t] holds x W + h R on entry and the activated gates on exit.
    n_units = h.shape[1]
    bias_i, bias_f, bias_c, bias_o = _gate_blocks(bias, n_units)
    for b in range(h.shape[0]):
        gate_i, gate_f, gate_c, gate_o = _gate_blocks(gates[b, t], n_units)
        keep = mask[b, t]
        if keep:
            c_row = c[b]
            h_row = out[b, s]
        else:
            # a masked step computes its cell (the caches) but holds the states
            copy_into(scratch_c, c[b])
            c_row = scratch_c
            h_row = scratch_h
        cp = c_prev[b, t]
        ca = c_act[b, t]
        for u in range(n_units):
            i = sigmoid_t(gate_i[u] + bias_i[u])
            f = sigmoid_t(gate_f[u] + bias_f[u])
            g = tanh_t(gate_c[u] + bias_c[u])
            o = sigmoid_t(gate_o[u] + bias_o[u])
            gate_i[u] = i
            gate_f[u] = f
            gate_c[u] = g
            gate_o[u] = o
            old = c_row[u]
            cp[u] = old
            new = f * old + i * g
            a = tanh_t(new)
            c_row[u] = new
            ca[u] = a
            h_row[u] = o * a
        if keep:
            copy_into(h[b], h_row)
        else:
            emit_output(out, s, b, scratch_h, False, zero_output_for_mask)


@njit(**JIT)
def _cells_forward_generic(
    gates, t, s, bias, mask, h, c, c_prev, c_act, out, scratch_h, scratch_c,
    activation, recurrent_activation, zero_output_for_mask,
):  # fmt: skip
    for b in range(h.shape[0]):
        keep = mask[b, t]
        if keep:
            c_row = c[b]
            h_row = h[b]
        else:
            copy_into(scratch_c, c[b])
            c_row = scratch_c
            h_row = scratch_h
        _cell_generic(
            gates[b, t], bias, c_row, c_prev[b, t], c_act[b, t], h_row,
            activation, recurrent_activation,
        )  # fmt: skip
        emit_output(out, s, b, h_row, keep, zero_output_for_mask)


@njit(**JIT)
def _forward_fast(
    x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
    h_final, c_final, recurrent_kernel, bias, go_backwards, zero_output_for_mask,
):  # fmt: skip
    # tanh/sigmoid: the input projection, then the time loop
    project_inputs(x, kernel, gates)
    n_steps = gates.shape[1]
    n_units = h0.shape[1]
    h = h_final
    c = c_final
    copy_into(h, h0)
    copy_into(c, c0)
    dropped = not same_buffer(h_used, h_prev)
    scratch_h = np.empty(n_units, dtype=gates.dtype)
    scratch_c = np.empty(n_units, dtype=gates.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        stash_states(h, rec_mask, h_prev, h_used, t, dropped)
        gemm(h_used[:, t], False, recurrent_kernel, False, gates[:, t], True)
        _cells_forward_fast(
            gates, t, s, bias, mask, h, c, c_prev, c_act, out, scratch_h, scratch_c,
            zero_output_for_mask,
        )  # fmt: skip


@njit(**JIT)
def _forward_generic(
    x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
    h_final, c_final, recurrent_kernel, bias, go_backwards, zero_output_for_mask,
    activation, recurrent_activation,
):  # fmt: skip
    # any activations: the input projection, then the time loop
    project_inputs(x, kernel, gates)
    n_steps = gates.shape[1]
    n_units = h0.shape[1]
    h = h_final
    c = c_final
    copy_into(h, h0)
    copy_into(c, c0)
    dropped = not same_buffer(h_used, h_prev)
    scratch_h = np.empty(n_units, dtype=gates.dtype)
    scratch_c = np.empty(n_units, dtype=gates.dtype)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        stash_states(h, rec_mask, h_prev, h_used, t, dropped)
        gemm(h_used[:, t], False, recurrent_kernel, False, gates[:, t], True)
        _cells_forward_generic(
            gates, t, s, bias, mask, h, c, c_prev, c_act, out, scratch_h, scratch_c,
            activation, recurrent_activation, zero_output_for_mask,
        )  # fmt: skip


# argument positions of the compiled kernels: batch-major arrays (split into
# row blocks by _threads) and batch sums (weight gradients)
_FORWARD_ROWS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
_BACKWARD_ROWS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 16, 17)
_BACKWARD_SUMS = (13, 14, 15)


def _fast(activation, recurrent_activation):
    return activation == TANH and recurrent_activation == SIGMOID


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

    The input projection is one GEMM before the time loop. tanh/sigmoid
    cells (the default) run a vectorised loop compiled on its own; other
    activations a generic one.
    """
    args = (
        x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
        h_final, c_final, recurrent_kernel, bias, bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    if _fast(activation, recurrent_activation):
        kernel_, extra = _forward_fast, ()
    else:
        kernel_, extra = _forward_generic, (int(activation), int(recurrent_activation))
    _threads.call_in_blocks(kernel_, args + extra, _FORWARD_ROWS, (), gates)


@njit(**JIT_FMA)
def _cells_infer_fast(gates, t, s, bias, mask, h, c, out, zero_output_for_mask):
    # tanh/sigmoid cells of step t with no caches: a kept sample updates its
    # states and output in one loop; a masked one holds them (nothing to compute)
    n_units = h.shape[1]
    bias_i, bias_f, bias_c, bias_o = _gate_blocks(bias, n_units)
    for b in range(h.shape[0]):
        if not mask[b, t]:
            emit_output(out, s, b, h[b], False, zero_output_for_mask)
            continue
        gate_i, gate_f, gate_c, gate_o = _gate_blocks(gates[b, t], n_units)
        c_row = c[b]
        h_row = out[b, s]
        for u in range(n_units):
            i = sigmoid_t(gate_i[u] + bias_i[u])
            f = sigmoid_t(gate_f[u] + bias_f[u])
            g = tanh_t(gate_c[u] + bias_c[u])
            o = sigmoid_t(gate_o[u] + bias_o[u])
            new = f * c_row[u] + i * g
            c_row[u] = new
            h_row[u] = o * tanh_t(new)
        copy_into(h[b], h_row)


@njit(**JIT)
def _infer_fast(
    x, kernel, gates, mask, h0, c0, out, h_final, c_final, recurrent_kernel, bias,
    go_backwards, zero_output_for_mask,
):  # fmt: skip
    # tanh/sigmoid, outputs only: the recurrent product reads the state itself
    project_inputs(x, kernel, gates)
    n_steps = gates.shape[1]
    copy_into(h_final, h0)
    copy_into(c_final, c0)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        gemm(h_final, False, recurrent_kernel, False, gates[:, t], True)
        _cells_infer_fast(gates, t, s, bias, mask, h_final, c_final, out, zero_output_for_mask)


_INFER_ROWS = (0, 2, 3, 4, 5, 6, 7, 8)


def lstm_infer(
    x, kernel, recurrent_kernel, bias, mask, h0, c0,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_final, c_final,
):  # fmt: skip
    """LSTM over a whole sequence for outputs only (no backward pass follows).

    Same results as :func:`lstm_forward` without recurrent dropout, but no
    caches: ``gates`` (B, T, 4U) is work space, and nothing else is written
    besides ``out``, ``h_final`` and ``c_final``. Measured 1.05-1.46x faster
    than :func:`lstm_forward` (one thread; the most at small ``U``, where
    the caches' memory traffic weighs most). tanh/sigmoid cells only: other
    activations raise ``ValueError`` (call :func:`lstm_forward`).
    """
    if not _fast(activation, recurrent_activation):
        raise ValueError(
            "lstm_infer runs tanh/sigmoid cells only; use lstm_forward for other activations"
        )
    args = (
        x, kernel, gates, mask, h0, c0, out, h_final, c_final, recurrent_kernel, bias,
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    _threads.call_in_blocks(_infer_fast, args, _INFER_ROWS, (), gates)


@njit(**JIT_FMA)
def _cell_backward_generic(dh, dc, gates, c_prev, c_act, activation, recurrent_activation, d_gates):
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


@njit(**JIT_FMA)
def _total_cotangent(d_out, carry, dh, s, b, keep, zero_output_for_mask, dh_total):
    # dh_total = the cotangent of h_t of a kept step (its output's and the
    # next step's); dh[b] is cleared for the recurrent product to refill
    output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_total)
    if keep:
        dh_row = dh[b]
        for u in range(dh_row.shape[0]):
            dh_total[u] += dh_row[u]
            dh_row[u] = 0.0


@njit(**JIT_FMA)
def _cells_backward_fast(d_out, carry, dh, dc, gates, c_prev, c_act, mask, d_gates, t, s):
    # tanh/sigmoid cells of step t, whole batch, kept samples in one loop each
    n_units = dh.shape[1]
    one = one_like(dh)
    for b in range(dh.shape[0]):
        if not mask[b, t]:
            continue
        d_row = d_out[b, s]
        c_row = carry[b]
        dh_row = dh[b]
        dc_row = dc[b]
        gate_i, gate_f, gate_c, gate_o = _gate_blocks(gates[b, t], n_units)
        d_i, d_f, d_g, d_o = _gate_blocks(d_gates[b, t], n_units)
        cp = c_prev[b, t]
        ca = c_act[b, t]
        for u in range(n_units):
            total = d_row[u] + c_row[u] + dh_row[u]
            c_row[u] = 0.0
            dh_row[u] = 0.0
            i = gate_i[u]
            f = gate_f[u]
            g = gate_c[u]
            o = gate_o[u]
            a = ca[u]
            d_c = dc_row[u] + total * o * (one - a * a)
            d_i[u] = d_c * g * (i * (one - i))
            d_f[u] = d_c * cp[u] * (f * (one - f))
            d_g[u] = d_c * i * (one - g * g)
            d_o[u] = total * a * (o * (one - o))
            dc_row[u] = d_c * f


@njit(**JIT)
def _masked_backward(d_out, carry, mask, d_gates, t, s, zero_output_for_mask, dh_total):
    # masked samples of step t: no cell gradient; their output cotangent is carried
    for b in range(mask.shape[0]):
        if not mask[b, t]:
            output_cotangent(d_out, carry, s, b, False, zero_output_for_mask, dh_total)
            fill(d_gates[b, t], 0.0)


@njit(**JIT)
def _backward_fast(
    x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
    recurrent_kernel, go_backwards, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_steps, _ = gates.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    dc = d_c0
    copy_into(dh, d_h_final)
    copy_into(dc, d_c_final)
    plain = is_plain_mask(rec_mask, n_units)
    carry = np.zeros((n_batch, n_units), dtype=gates.dtype)
    dh_total = np.empty(n_units, dtype=gates.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=gates.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        _cells_backward_fast(d_out, carry, dh, dc, gates, c_prev, c_act, mask, d_gates, t, s)
        _masked_backward(d_out, carry, mask, d_gates, t, s, zero_output_for_mask, dh_total)
        recurrent_state_grad(d_gates[:, t], recurrent_kernel, rec_mask, plain, dh, dh_rec)
    weight_grads(x, kernel, h_used, d_gates, d_gates, d_x, d_kernel, d_recurrent_kernel)
    column_sums(d_gates, d_bias)


@njit(**JIT)
def _backward_generic(
    x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
    recurrent_kernel, go_backwards, zero_output_for_mask, activation, recurrent_activation,
):  # fmt: skip
    n_batch, n_steps, _ = gates.shape
    n_units = d_h0.shape[1]
    dh = d_h0
    dc = d_c0
    copy_into(dh, d_h_final)
    copy_into(dc, d_c_final)
    plain = is_plain_mask(rec_mask, n_units)
    carry = np.zeros((n_batch, n_units), dtype=gates.dtype)
    dh_total = np.empty(n_units, dtype=gates.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=gates.dtype)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        for b in range(n_batch):
            keep = mask[b, t]
            _total_cotangent(d_out, carry, dh, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                _cell_backward_generic(
                    dh_total, dc[b], gates[b, t], c_prev[b, t], c_act[b, t],
                    activation, recurrent_activation, d_gates[b, t],
                )  # fmt: skip
            else:
                fill(d_gates[b, t], 0.0)
        recurrent_state_grad(d_gates[:, t], recurrent_kernel, rec_mask, plain, dh, dh_rec)
    weight_grads(x, kernel, h_used, d_gates, d_gates, d_x, d_kernel, d_recurrent_kernel)
    column_sums(d_gates, d_bias)


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
    work space holding the pre-activation gradients. The weight gradients
    are one GEMM each after the time loop.
    """
    args = (
        x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
        d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
        recurrent_kernel, bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    if _fast(activation, recurrent_activation):
        kernel_, extra = _backward_fast, ()
    else:
        kernel_, extra = _backward_generic, (int(activation), int(recurrent_activation))
    _threads.call_in_blocks(
        kernel_, args + extra, _BACKWARD_ROWS, _BACKWARD_SUMS,
        gates,
    )  # fmt: skip


@njit(**JIT)
def _lstm_step(x, kernel, recurrent_kernel, bias, h, c, activation, recurrent_activation, out):
    """One LSTM step for streaming inference (no caches, no mask, no dropout).

    ``x`` (B, F); the states ``h`` and ``c`` (B, U) are updated in place and
    ``out`` (B, U) receives the new ``h``. Same formulas as
    :func:`lstm_forward` for a single step, for the low-latency
    one-step-at-a-time calls of stateful layers. Returns False, touching
    nothing, when ``x`` holds NaN or infinity (the caller then raises), else
    True.
    """
    if not all_finite(x):
        return False
    n_units = h.shape[1]
    pre = np.empty(4 * n_units, dtype=x.dtype)
    scratch = np.empty(n_units, dtype=x.dtype)
    for b in range(x.shape[0]):
        row_product(x[b], kernel, pre, False)
        row_product(h[b], recurrent_kernel, pre, True)
        _cell_generic(pre, bias, c[b], scratch, scratch, out[b], activation, recurrent_activation)
        copy_into(h[b], out[b])
    return True
