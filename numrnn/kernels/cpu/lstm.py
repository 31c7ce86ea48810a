"""LSTM forward and backward-through-time kernels (Keras gate order i, f, c, o),
and a forward kernel for outputs only (``lstm_infer``: no caches).

See ``_common`` for the array conventions shared by every recurrent kernel,
except one: the LSTM's caches are *time-major*, ``(T, B, .)`` (input time
order), so that each step reads and writes one contiguous block. The CUDA
twins keep ``(B, T, .)`` (:data:`TIME_MAJOR` tells the layers which).
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
    activation_grad,
    add_row_sums,
    all_finite,
    by_dtype,
    column_sums,
    copy_into,
    emit_output,
    fill,
    flat,
    gemm,
    is_plain_mask,
    output_cotangent,
    product,
    recurrent_state_grad,
    row_at,
    row_product,
    same_buffer,
    sigmoid_t,
    stash_rows,
    step_index,
    tanh_t,
    time_major_copy,
)
from numrnn.kernels.cpu._lanes import row_map
from numrnn.kernels.cpu._packed import kernel_panels, no_panels, used

#: the caches (``gates``, ``h_prev``, ``h_used``, ``c_prev``, ``c_act`` and
#: the backward's ``d_gates``) are ``(T, B, .)``
TIME_MAJOR = True


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


@njit(inline="always", **JIT)
def _sequence_at(a, b, s):
    # offset of the row of sample b, step s of a (B, T, .) array
    return (b * a.strides[0] + s * a.strides[1]) // a.itemsize


@njit(inline="always", **JIT)
def _gates_at(gates_t, b, n_units):
    # offsets of sample b's i, f, c, o blocks in the step's gate rows
    at = row_at(gates_t, b)
    return (at, at + n_units, at + 2 * n_units, at + 3 * n_units)


def _cell_math(v, reads):
    # one float32 tanh/sigmoid cell over a vector of units (_lanes): from the
    # four gate pre-activations (x W + h R), the bias blocks and the carry,
    # the activated gates, the new carry, its activation and the new state
    gate_i, gate_f, gate_c, gate_o, bias_i, bias_f, bias_c, bias_o, c_old = reads
    i = v.sigmoid(v.add(gate_i, bias_i))
    f = v.sigmoid(v.add(gate_f, bias_f))
    g = v.tanh(v.add(gate_c, bias_c))
    o = v.sigmoid(v.add(gate_o, bias_o))
    new = v.fma(f, c_old, v.mul(i, g))
    a = v.tanh(new)
    return i, f, g, o, new, a, v.mul(o, a)


def _forward_cell(v, reads):
    # the training cell (_lanes.row_map body): writes the activated gates,
    # the carry entering the step, the new carry, its activation and the new
    # state (as output and as state)
    i, f, g, o, new, a, h = _cell_math(v, reads)
    return i, f, g, o, reads[-1], new, a, h, h


def _infer_cell(v, reads):
    # the outputs-only cell: writes the new carry and state (output and state)
    _, _, _, _, new, _, h = _cell_math(v, reads)
    return new, h, h


_FORWARD_CELL = row_map(_forward_cell, 9)
_INFER_CELL = row_map(_infer_cell, 9)


@njit(**JIT)
def _cells_forward_lanes(
    gates_t, t, s, bias, mask, h, c, c_prev_t, c_act_t, out, scratch_h, scratch_c,
    zero_output_for_mask,
):  # fmt: skip
    # float32 tanh/sigmoid cells of step t for the whole batch, a vector of
    # units at a time (_lanes); a masked sample computes its cell (the
    # caches) into scratch rows and holds the states
    n_units = h.shape[1]
    reads = (gates_t, gates_t, gates_t, gates_t, bias, bias, bias, bias, c)
    gate_rows = (gates_t, gates_t, gates_t, gates_t)
    kept = reads + gate_rows + (c_prev_t, c, c_act_t, out, h)
    held = reads + gate_rows + (c_prev_t, scratch_c, c_act_t, scratch_h, scratch_h)
    bias_at = (0, n_units, 2 * n_units, 3 * n_units)
    for b in range(h.shape[0]):
        gates_at = _gates_at(gates_t, b, n_units)
        # the reads' offsets, then the written gates' (the same rows)
        shared_at = gates_at + bias_at + (row_at(c, b),) + gates_at
        if mask[b, t]:
            _FORWARD_CELL(
                n_units, kept,
                shared_at + (row_at(c_prev_t, b), row_at(c, b), row_at(c_act_t, b),
                            _sequence_at(out, b, s), row_at(h, b)),
            )  # fmt: skip
        else:
            _FORWARD_CELL(
                n_units, held, shared_at + (row_at(c_prev_t, b), 0, row_at(c_act_t, b), 0, 0)
            )
            emit_output(out, s, b, scratch_h, False, zero_output_for_mask)


@njit(inline="always", **JIT_FMA)
def _cell_loop(gates, biases, c_old, c_new, c_prev, c_act, h_new):
    # one sample's tanh/sigmoid cell: gates (4U) holds x W + h R on entry and
    # the activated gates on exit; biases are the bias's four blocks; reads
    # the carry from c_old, writes it to c_new (the same row for a kept step)
    # and the new state to h_new
    n_units = c_new.shape[0]
    gate_i, gate_f, gate_c, gate_o = _gate_blocks(gates, n_units)
    bias_i, bias_f, bias_c, bias_o = biases
    for u in range(n_units):
        i = sigmoid_t(gate_i[u] + bias_i[u])
        f = sigmoid_t(gate_f[u] + bias_f[u])
        g = tanh_t(gate_c[u] + bias_c[u])
        o = sigmoid_t(gate_o[u] + bias_o[u])
        gate_i[u] = i
        gate_f[u] = f
        gate_c[u] = g
        gate_o[u] = o
        old = c_old[u]
        c_prev[u] = old
        new = f * old + i * g
        a = tanh_t(new)
        c_new[u] = new
        c_act[u] = a
        h_new[u] = o * a


@njit(**JIT_FMA)
def _cells_forward_loops(
    gates_t, t, s, bias, mask, h, c, c_prev_t, c_act_t, out, scratch_h, scratch_c,
    zero_output_for_mask,
):  # fmt: skip
    # float64 tanh/sigmoid cells of step t (libm's functions do not
    # vectorise), one loop per sample
    # (no calls: at small U the per-call cost would exceed the arithmetic).
    # The kept and masked cases are separate inlined loops: one loop choosing
    # between state rows and scratch rows measured 2x slower per sample.
    biases = _gate_blocks(bias, h.shape[1])
    for b in range(h.shape[0]):
        if mask[b, t]:
            h_row = out[b, s]
            _cell_loop(gates_t[b], biases, c[b], c[b], c_prev_t[b], c_act_t[b], h_row)
            copy_into(h[b], h_row)
        else:
            # a masked step computes its cell (the caches) but holds the states
            _cell_loop(gates_t[b], biases, c[b], scratch_c, c_prev_t[b], c_act_t[b], scratch_h)
            emit_output(out, s, b, scratch_h, False, zero_output_for_mask)


#: tanh/sigmoid cells of a step: vector code in float32, loops otherwise
_cells_forward_fast = by_dtype(_cells_forward_lanes, _cells_forward_loops)


@njit(**JIT)
def _cells_forward_generic(
    gates_t, t, s, bias, mask, h, c, c_prev_t, c_act_t, out, scratch_h, scratch_c,
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
            gates_t[b], bias, c_row, c_prev_t[b], c_act_t[b], h_row,
            activation, recurrent_activation,
        )  # fmt: skip
        emit_output(out, s, b, h_row, keep, zero_output_for_mask)


@njit(**JIT)
def _whole_batch(gates, r0, r1):
    # a call over every row of the time-major caches, whose steps' rows then
    # follow each other: products over all steps can be single GEMMs
    return r0 == 0 and r1 == gates.shape[1]


@njit(inline="always", **JIT)
def _step_products(
    x, kernel, input_panels, h_used_t, recurrent_kernel, panels, t, gates_t, projected
):  # fmt: skip
    # gates_t = x[:, t] W + h_used_t R: the input product of the step (unless
    # done for all steps), then the recurrent one added in place; each over
    # its weights' panels, packed once per call, where the width allows
    if not projected:
        product(x[:, t], kernel, False, input_panels, gates_t, False)
    product(h_used_t, recurrent_kernel, False, panels, gates_t, True)


@njit(inline="always", **JIT)
def _input_panels(kernel, projected):
    # the input weights' panels for step-by-step input products (none when
    # the call projected every step at once)
    return no_panels(kernel) if projected else kernel_panels(kernel, False)


@njit(**JIT)
def _project_whole(x, kernel, gates, r0, r1):
    # the input product of every step in one GEMM when the call covers the
    # whole batch; else (a row block) the time loop does it step by step
    if not _whole_batch(gates, r0, r1):
        return False
    gemm(flat(time_major_copy(x)), False, kernel, False, flat(gates), False)
    return True


@njit(**JIT)
def _forward_fast(
    x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
    h_final, c_final, recurrent_kernel, bias, go_backwards, zero_output_for_mask, r0, r1,
):  # fmt: skip
    # tanh/sigmoid: the time loop over rows r0:r1 of the time-major caches
    n_steps = x.shape[1]
    n_units = h0.shape[1]
    h = h_final
    c = c_final
    copy_into(h, h0)
    copy_into(c, c0)
    dropped = not same_buffer(h_used, h_prev)
    scratch_h = np.empty(n_units, dtype=x.dtype)
    scratch_c = np.empty(n_units, dtype=x.dtype)
    projected = _project_whole(x, kernel, gates, r0, r1)
    input_panels = _input_panels(kernel, projected)
    panels = kernel_panels(recurrent_kernel, False)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        gates_t = gates[t, r0:r1]
        h_used_t = h_used[t, r0:r1]
        stash_rows(h, rec_mask, h_prev[t, r0:r1], h_used_t, dropped)
        _step_products(
            x, kernel, input_panels, h_used_t, recurrent_kernel, panels, t, gates_t, projected
        )
        _cells_forward_fast(
            gates_t, t, s, bias, mask, h, c, c_prev[t, r0:r1], c_act[t, r0:r1], out,
            scratch_h, scratch_c, zero_output_for_mask,
        )  # fmt: skip


@njit(**JIT)
def _forward_generic(
    x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
    h_final, c_final, recurrent_kernel, bias, go_backwards, zero_output_for_mask, r0, r1,
    activation, recurrent_activation,
):  # fmt: skip
    # any activations: the time loop over rows r0:r1 of the time-major caches
    n_steps = x.shape[1]
    n_units = h0.shape[1]
    h = h_final
    c = c_final
    copy_into(h, h0)
    copy_into(c, c0)
    dropped = not same_buffer(h_used, h_prev)
    scratch_h = np.empty(n_units, dtype=x.dtype)
    scratch_c = np.empty(n_units, dtype=x.dtype)
    projected = _project_whole(x, kernel, gates, r0, r1)
    input_panels = _input_panels(kernel, projected)
    panels = kernel_panels(recurrent_kernel, False)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        gates_t = gates[t, r0:r1]
        h_used_t = h_used[t, r0:r1]
        stash_rows(h, rec_mask, h_prev[t, r0:r1], h_used_t, dropped)
        _step_products(
            x, kernel, input_panels, h_used_t, recurrent_kernel, panels, t, gates_t, projected
        )
        _cells_forward_generic(
            gates_t, t, s, bias, mask, h, c, c_prev[t, r0:r1], c_act[t, r0:r1], out,
            scratch_h, scratch_c, activation, recurrent_activation, zero_output_for_mask,
        )  # fmt: skip


# argument positions of the compiled kernels: batch-major arrays (split into
# row blocks by _threads), the row bounds of the time-major caches, and batch
# sums (weight gradients)
_FORWARD_ROWS = (0, 3, 4, 5, 6, 7, 12, 13)
_FORWARD_BOUNDS = (18, 19)
_BACKWARD_ROWS = (0, 6, 7, 8, 9, 10, 12, 16, 17)
_BACKWARD_BOUNDS = (21, 22)
_BACKWARD_SUMS = (13, 14, 15)
# the backward kernels' argument types (``_ahead.signature``), for compiling
# one while a helper process compiles the forward kernel
_BACKWARD_TYPES = "3 2 3 3 3 3 m 2 3 2 2 3 3 2 2 1 2 2 2 b b i i"
_BACKWARD_TYPES_GENERIC = _BACKWARD_TYPES + " i i"
# the single-step kernels' argument types: the helper that compiles the
# forward kernel compiles the one a stateful layer's stream will call
_STEP_TYPES = "2 2 2 1 2 2 2"
_STEP_TYPES_GENERIC = "2 2 2 1 2 2 i i 2"


def _split_width(n_cols, dtype, transposed=False):
    # the widest gate row that splits into row blocks: any when the per-step
    # recurrent product (n_cols outputs) runs over packed panels, not the BLAS
    return None if used(n_cols, dtype, transposed) else _threads.MAX_WIDTH


def _fast(activation, recurrent_activation):
    return activation == TANH and recurrent_activation == SIGMOID


def lstm_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final, backward_follows=False,
    step_follows=False,
):  # fmt: skip
    """LSTM over a whole sequence.

    Writes ``out`` (B, T, U) in processing order, the final states
    ``h_final``/``c_final`` (B, U), and the time-major caches ``gates``
    (T, B, 4U) activated gates, ``h_prev``/``h_used`` (T, B, U) the state
    entering each step raw and after recurrent dropout (``h_used`` is
    (T, B, W)), ``c_prev`` and ``c_act`` (T, B, U) the carry entering each
    step and ``activation(c_t)``.

    The input projection is one GEMM over every step when the call covers
    the whole batch (step by step in a row block of the batch-parallel
    split); each step's recurrent product accumulates into its contiguous
    ``gates[t]``, over the weights packed once per call where ``_packed``
    allows (AVX-512, widths that fill its panels), else by a BLAS call.
    tanh/sigmoid cells (the default) run a vectorised loop compiled on its
    own; other activations a generic one.

    ``backward_follows``: a backward call follows (a training step); on a
    cold numba cache the two kernels then compile at once (``_ahead``).
    ``step_follows``: single-step calls (:func:`_lstm_step_fast` or
    :func:`_lstm_step`, a stateful layer's stream) may follow; the helper of
    a cold training step then compiles that kernel too.
    """
    n_batch = x.shape[0]
    args = (
        x, kernel, gates, mask, h0, c0, rec_mask, out, h_prev, h_used, c_prev, c_act,
        h_final, c_final, recurrent_kernel, bias, bool(go_backwards), bool(zero_output_for_mask),
        0, n_batch,
    )  # fmt: skip
    if _fast(activation, recurrent_activation):
        kernel_, extra = _forward_fast, ()
        backward, backward_types = _backward_fast, _BACKWARD_TYPES
        step = (_lstm_step_fast, _STEP_TYPES)
    else:
        kernel_, extra = _forward_generic, (int(activation), int(recurrent_activation))
        backward, backward_types = _backward_generic, _BACKWARD_TYPES_GENERIC
        step = (_lstm_step, _STEP_TYPES_GENERIC)
    max_width = _split_width(recurrent_kernel.shape[1], x.dtype)
    if backward_follows:
        _ahead.compile_pair(
            kernel_, args + extra, backward, backward_types, x.dtype,
            split=(_FORWARD_ROWS, gates, max_width), also=(step,) if step_follows else (),
        )  # fmt: skip
    _threads.call_in_blocks(
        kernel_, args + extra, _FORWARD_ROWS, (), gates, bounds=_FORWARD_BOUNDS,
        max_width=max_width,
    )  # fmt: skip


@njit(**JIT)
def _cells_infer_lanes(gates_t, t, s, bias, mask, h, c, out, zero_output_for_mask):
    # float32 tanh/sigmoid cells of step t with no caches, a vector of units
    # at a time (_lanes): a kept sample updates its states and output; a
    # masked one holds them (nothing to compute)
    n_units = h.shape[1]
    rows = (gates_t, gates_t, gates_t, gates_t, bias, bias, bias, bias, c, c, out, h)
    bias_at = (0, n_units, 2 * n_units, 3 * n_units)
    for b in range(h.shape[0]):
        if not mask[b, t]:
            emit_output(out, s, b, h[b], False, zero_output_for_mask)
            continue
        state_at = (row_at(c, b), row_at(c, b), _sequence_at(out, b, s), row_at(h, b))
        _INFER_CELL(n_units, rows, _gates_at(gates_t, b, n_units) + bias_at + state_at)


@njit(**JIT_FMA)
def _cells_infer_loops(gates_t, t, s, bias, mask, h, c, out, zero_output_for_mask):
    # float64 version of _cells_infer_lanes: one plain loop per kept sample
    n_units = h.shape[1]
    bias_i, bias_f, bias_c, bias_o = _gate_blocks(bias, n_units)
    for b in range(h.shape[0]):
        if not mask[b, t]:
            emit_output(out, s, b, h[b], False, zero_output_for_mask)
            continue
        gate_i, gate_f, gate_c, gate_o = _gate_blocks(gates_t[b], n_units)
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


_cells_infer_fast = by_dtype(_cells_infer_lanes, _cells_infer_loops)


@njit(**JIT)
def _infer_fast(
    x, kernel, mask, h0, c0, out, h_final, c_final, recurrent_kernel, bias,
    go_backwards, zero_output_for_mask,
):  # fmt: skip
    # tanh/sigmoid, outputs only: one step's gates (B, 4U) as work space, and
    # the recurrent product reads the state itself
    n_steps = x.shape[1]
    gates_t = np.empty((x.shape[0], kernel.shape[1]), dtype=x.dtype)
    copy_into(h_final, h0)
    copy_into(c_final, c0)
    input_panels = kernel_panels(kernel, False)
    panels = kernel_panels(recurrent_kernel, False)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        _step_products(
            x, kernel, input_panels, h_final, recurrent_kernel, panels, t, gates_t, False
        )
        _cells_infer_fast(gates_t, t, s, bias, mask, h_final, c_final, out, zero_output_for_mask)


_INFER_ROWS = (0, 2, 3, 4, 5, 6, 7)


def lstm_infer(
    x, kernel, recurrent_kernel, bias, mask, h0, c0,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, h_final, c_final,
):  # fmt: skip
    """LSTM over a whole sequence for outputs only (no backward pass follows).

    Same results as :func:`lstm_forward` without recurrent dropout, but no
    caches: nothing besides ``out``, ``h_final`` and ``c_final`` is written,
    and the only work space is one step's gates. Faster than
    :func:`lstm_forward` (most at small ``U``, where the caches' memory
    traffic weighs most; the docs' performance page has the numbers).
    tanh/sigmoid cells only: other activations raise ``ValueError`` (call
    :func:`lstm_forward`).
    """
    if not _fast(activation, recurrent_activation):
        raise ValueError(
            "lstm_infer runs tanh/sigmoid cells only; use lstm_forward for other activations"
        )
    args = (
        x, kernel, mask, h0, c0, out, h_final, c_final, recurrent_kernel, bias,
        bool(go_backwards), bool(zero_output_for_mask),
    )  # fmt: skip
    n_batch, n_steps = x.shape[0], x.shape[1]
    _threads.call_in_blocks(
        _infer_fast, args, _INFER_ROWS, (), (n_batch, n_steps, recurrent_kernel.shape[1]),
        max_width=_split_width(recurrent_kernel.shape[1], x.dtype),
    )  # fmt: skip


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


def _backward_cell(v, reads):
    # one tanh/sigmoid cell's gradients over a vector of units (_lanes.row_map
    # body): reads the step's output cotangent, the carried output cotangent
    # (masked steps after it), the recurrent one, the carry's, the activated
    # gates, the carry entering the step and its activation; writes the two
    # cleared cotangents, the four gate gradients and the carry's for step t-1
    d_out, carried, dh, dc, i, f, g, o, c_prev, a = reads
    one = v.const(1.0)
    total = v.add(v.add(d_out, carried), dh)
    d_c = v.fma(v.mul(total, o), v.sub(one, v.mul(a, a)), dc)
    zero = v.const(0.0)
    d_i = v.mul(v.mul(d_c, g), v.mul(i, v.sub(one, i)))
    d_f = v.mul(v.mul(d_c, c_prev), v.mul(f, v.sub(one, f)))
    d_g = v.mul(v.mul(d_c, i), v.sub(one, v.mul(g, g)))
    d_o = v.mul(v.mul(total, a), v.mul(o, v.sub(one, o)))
    return zero, zero, d_i, d_f, d_g, d_o, v.mul(d_c, f)


_BACKWARD_CELL = row_map(_backward_cell, 10)


@njit(**JIT)
def _cells_backward_fast(d_out, carry, dh, dc, gates_t, c_prev_t, c_act_t, mask, d_gates_t, t, s):
    # tanh/sigmoid cells of step t, kept samples, a vector of units at a time
    # (_lanes; any float dtype: no activations are computed)
    n_units = dh.shape[1]
    rows = (
        d_out, carry, dh, dc, gates_t, gates_t, gates_t, gates_t, c_prev_t, c_act_t,
        carry, dh, d_gates_t, d_gates_t, d_gates_t, d_gates_t, dc,
    )  # fmt: skip
    for b in range(dh.shape[0]):
        if not mask[b, t]:
            continue
        gates_at = _gates_at(gates_t, b, n_units)
        d_gates_at = _gates_at(d_gates_t, b, n_units)
        state_at = (row_at(carry, b), row_at(dh, b), row_at(dc, b))
        out_at = _sequence_at(d_out, b, s)
        _BACKWARD_CELL(
            n_units, rows,
            (out_at,) + state_at + gates_at + (row_at(c_prev_t, b), row_at(c_act_t, b))
            + state_at[:2] + d_gates_at + state_at[2:],
        )  # fmt: skip


@njit(**JIT)
def _masked_backward(d_out, carry, mask, d_gates_t, t, s, zero_output_for_mask, dh_total):
    # masked samples of step t: no cell gradient; their output cotangent is carried
    for b in range(mask.shape[0]):
        if not mask[b, t]:
            output_cotangent(d_out, carry, s, b, False, zero_output_for_mask, dh_total)
            fill(d_gates_t[b], 0.0)


#: a row block sums its shares of the weight gradients over up to
#: STAGE_STEPS steps (and about STAGE_ROWS rows) at a time, one GEMM each over
#: their rows gathered into a stage: one GEMM per step, only as deep as the
#: block's rows, reads and writes the whole gradient at every step (LSTM
#: (32,50,64,256), training: 16 steps 19.0-20.4 ms, 8 steps 19.9-25.2, one
#: step 24.9-29.6, three alternating runs)
STAGE_STEPS = 16
STAGE_ROWS = 512


@njit(**JIT)
def _new_stage(x, h_used, d_gates, whole):
    # room for the rows of the steps a row block stages (none for a
    # whole-batch call, whose weight gradients are single GEMMs after the loop)
    n_rows, n_steps = x.shape[0], x.shape[1]
    steps = min(STAGE_STEPS, max(1, STAGE_ROWS // max(1, n_rows)), n_steps)
    rows = 0 if whole else steps * n_rows
    return (
        np.empty((rows, x.shape[2]), dtype=x.dtype),
        np.empty((rows, h_used.shape[2]), dtype=x.dtype),
        np.empty((rows, d_gates.shape[2]), dtype=x.dtype),
    )


@njit(**JIT)
def _add_weight_grads(xs, hs, ds, d_kernel, d_recurrent_kernel):
    # d_kernel += xs.T @ ds and d_recurrent_kernel += hs.T @ ds, over rows
    # gathered from several steps (a stage, or every step of a whole batch)
    gemm(xs, True, ds, False, d_kernel, True)
    gemm(hs, True, ds, False, d_recurrent_kernel, True)


@njit(**JIT)
def _stage_step(stage, x_t, h_used_t, d_gates_t, done, last, d_kernel, d_recurrent_kernel, d_bias):
    # a row block's step (the done-th): its bias share at once, its rows into
    # the stage; a full stage, or the last step, goes into the weight gradients
    stage_x, stage_h, stage_d = stage
    n_rows = x_t.shape[0]
    at = done * n_rows % stage_x.shape[0]
    copy_into(stage_x[at : at + n_rows], x_t)
    copy_into(stage_h[at : at + n_rows], h_used_t)
    copy_into(stage_d[at : at + n_rows], d_gates_t)
    add_row_sums(d_gates_t, d_bias)
    if at + n_rows == stage_x.shape[0] or last:
        rows = at + n_rows
        _add_weight_grads(
            stage_x[:rows], stage_h[:rows], stage_d[:rows], d_kernel, d_recurrent_kernel
        )


@njit(inline="always", **JIT)
def _step_grads(
    whole, x, kernel, recurrent_kernel, panels_t, rec_mask, plain, h_used_t, d_gates_t, d_x, t, dh,
    dh_rec, stage, done, last, d_kernel, d_recurrent_kernel, d_bias,
):  # fmt: skip
    # after step t's cells: the state gradient for step t-1, the input
    # gradient of step t and (for a row block) the step's share of the weight
    # gradients, staged; a whole-batch call sums those after the loop
    # (_sequence_grads). Weight gradients after the loop measured 1.4-1.7x
    # slower for row blocks
    recurrent_state_grad(d_gates_t, recurrent_kernel, panels_t, rec_mask, plain, dh, dh_rec)
    gemm(d_gates_t, False, kernel, True, d_x[:, t], False)
    if not whole:
        _stage_step(
            stage, x[:, t], h_used_t, d_gates_t, done, last, d_kernel, d_recurrent_kernel, d_bias
        )


@njit(inline="always", **JIT)
def _sequence_grads(whole, x, kernel, h_used, d_gates, d_kernel, d_recurrent_kernel, d_bias):
    # a whole-batch call: the weight gradients over every step, one GEMM each
    # (the steps' rows follow each other in the time-major caches)
    if whole:
        _add_weight_grads(
            flat(time_major_copy(x)), flat(h_used), flat(d_gates), d_kernel, d_recurrent_kernel
        )
        column_sums(d_gates, d_bias)


@njit(**JIT)
def _backward_setup(
    x, gates, h_used, d_gates, r0, r1, d_h_final, d_c_final, d_h0, d_c0, rec_mask,
    recurrent_kernel, d_kernel, d_recurrent_kernel, d_bias,
):  # fmt: skip
    # initial cotangents into d_h0/d_c0 (the running ones), cleared batch
    # sums, and what the time loop needs: its buffers, the panels of R.T,
    # whether the call covers the whole batch, and a row block's stage
    copy_into(d_h0, d_h_final)
    copy_into(d_c0, d_c_final)
    d_kernel[:] = 0.0
    d_recurrent_kernel[:] = 0.0
    fill(d_bias, 0.0)
    n_batch, n_units = d_h0.shape
    plain = is_plain_mask(rec_mask, n_units)
    carry = np.zeros((n_batch, n_units), dtype=d_h0.dtype)
    dh_total = np.empty(n_units, dtype=d_h0.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=d_h0.dtype)
    whole = _whole_batch(gates, r0, r1)
    stage = _new_stage(x, h_used, d_gates, whole)
    return (
        plain, carry, dh_total, dh_rec, kernel_panels(recurrent_kernel, True), whole, stage
    )  # fmt: skip


@njit(**JIT)
def _backward_fast(
    x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
    recurrent_kernel, go_backwards, zero_output_for_mask, r0, r1,
):  # fmt: skip
    n_steps = x.shape[1]
    dh = d_h0
    dc = d_c0
    plain, carry, dh_total, dh_rec, panels_t, whole, stage = _backward_setup(
        x, gates, h_used, d_gates, r0, r1, d_h_final, d_c_final, d_h0, d_c0, rec_mask,
        recurrent_kernel, d_kernel, d_recurrent_kernel, d_bias,
    )  # fmt: skip
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        d_gates_t = d_gates[t, r0:r1]
        _cells_backward_fast(
            d_out, carry, dh, dc, gates[t, r0:r1], c_prev[t, r0:r1], c_act[t, r0:r1], mask,
            d_gates_t, t, s,
        )  # fmt: skip
        _masked_backward(d_out, carry, mask, d_gates_t, t, s, zero_output_for_mask, dh_total)
        _step_grads(
            whole, x, kernel, recurrent_kernel, panels_t, rec_mask, plain, h_used[t, r0:r1],
            d_gates_t, d_x, t, dh, dh_rec, stage, n_steps - 1 - s, s == 0, d_kernel,
            d_recurrent_kernel, d_bias,
        )  # fmt: skip
    _sequence_grads(whole, x, kernel, h_used, d_gates, d_kernel, d_recurrent_kernel, d_bias)


@njit(**JIT)
def _backward_generic(
    x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
    recurrent_kernel, go_backwards, zero_output_for_mask, r0, r1,
    activation, recurrent_activation,
):  # fmt: skip
    n_batch = d_h0.shape[0]
    n_steps = x.shape[1]
    dh = d_h0
    dc = d_c0
    plain, carry, dh_total, dh_rec, panels_t, whole, stage = _backward_setup(
        x, gates, h_used, d_gates, r0, r1, d_h_final, d_c_final, d_h0, d_c0, rec_mask,
        recurrent_kernel, d_kernel, d_recurrent_kernel, d_bias,
    )  # fmt: skip
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        gates_t = gates[t, r0:r1]
        c_prev_t = c_prev[t, r0:r1]
        c_act_t = c_act[t, r0:r1]
        d_gates_t = d_gates[t, r0:r1]
        for b in range(n_batch):
            keep = mask[b, t]
            _total_cotangent(d_out, carry, dh, s, b, keep, zero_output_for_mask, dh_total)
            if keep:
                _cell_backward_generic(
                    dh_total, dc[b], gates_t[b], c_prev_t[b], c_act_t[b],
                    activation, recurrent_activation, d_gates_t[b],
                )  # fmt: skip
            else:
                fill(d_gates_t[b], 0.0)
        _step_grads(
            whole, x, kernel, recurrent_kernel, panels_t, rec_mask, plain, h_used[t, r0:r1],
            d_gates_t, d_x, t, dh, dh_rec, stage, n_steps - 1 - s, s == 0, d_kernel,
            d_recurrent_kernel, d_bias,
        )  # fmt: skip
    _sequence_grads(whole, x, kernel, h_used, d_gates, d_kernel, d_recurrent_kernel, d_bias)


def lstm_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_used, c_prev, c_act,
    d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
):  # fmt: skip
    """Backpropagation through time for :func:`lstm_forward`.

    ``d_out`` (B, T, U, processing order), ``d_h_final`` and ``d_c_final`` are
    the cotangents of the outputs; ``gates``, ``h_used``, ``c_prev`` and
    ``c_act`` are the forward's time-major caches. Writes ``d_x`` (a
    zero-width ``(B, T, 0)`` array skips that product), the weight gradients
    and the initial-state gradients ``d_h0``/``d_c0``; ``d_gates`` (T, B, 4U)
    is work space holding the pre-activation gradients. The weight gradients
    are one GEMM each after the time loop for a call over the whole batch; a
    row block of the batch-parallel split sums them over groups of steps
    (:data:`STAGE_STEPS`), its rows gathered into a stage.
    """
    if d_out.strides[-1] != d_out.itemsize:
        # the cells read each output cotangent row as one contiguous run
        d_out = np.ascontiguousarray(d_out)
    args = (
        x, kernel, gates, h_used, c_prev, c_act, mask, rec_mask, d_out, d_h_final, d_c_final,
        d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
        recurrent_kernel, bool(go_backwards), bool(zero_output_for_mask), 0, x.shape[0],
    )  # fmt: skip
    if _fast(activation, recurrent_activation):
        kernel_, extra = _backward_fast, ()
    else:
        kernel_, extra = _backward_generic, (int(activation), int(recurrent_activation))
    _threads.call_in_blocks(
        kernel_, args + extra, _BACKWARD_ROWS, _BACKWARD_SUMS, gates, bounds=_BACKWARD_BOUNDS,
        max_width=_split_width(recurrent_kernel.shape[0], x.dtype, transposed=True),
    )  # fmt: skip


@njit(**JIT)
def _step_gates(x, kernel, recurrent_kernel, h):
    # the pre-activations x W + h R (B, 4U) of one streaming step
    n_batch, n_units = h.shape
    pre = np.empty((n_batch, 4 * n_units), dtype=x.dtype)
    for b in range(n_batch):
        row_product(x[b], kernel, pre[b], False)
        row_product(h[b], recurrent_kernel, pre[b], True)
    return pre


@njit(**JIT)
def _lstm_step(x, kernel, recurrent_kernel, bias, h, c, activation, recurrent_activation, out):
    """One LSTM step for streaming inference (no caches, no mask, no dropout).

    ``x`` (B, F); the states ``h`` and ``c`` (B, U) are updated in place and
    ``out`` (B, U) receives the new ``h``. Same formulas as
    :func:`lstm_forward` for a single step, for the low-latency
    one-step-at-a-time calls of stateful layers. Returns False, touching
    nothing, when ``x`` holds NaN or infinity (the caller then raises), else
    True. Any activations; :func:`_lstm_step_fast` serves tanh/sigmoid.
    """
    if not all_finite(x):
        return False
    pre = _step_gates(x, kernel, recurrent_kernel, h)
    scratch = np.empty(h.shape[1], dtype=x.dtype)
    for b in range(h.shape[0]):
        _cell_generic(
            pre[b], bias, c[b], scratch, scratch, out[b], activation, recurrent_activation
        )
        copy_into(h[b], out[b])
    return True


@njit(**JIT)
def _lstm_step_fast(x, kernel, recurrent_kernel, bias, h, c, out):
    """:func:`_lstm_step` for tanh/sigmoid cells: the outputs-only cells of
    the sequence kernels (vector code in float32). A kernel of its own, so
    that a stream compiles only the cells it uses (on a cold cache, its first
    step took 2.25 s against 2.9-3.0 s with both cell kinds in one kernel)."""
    if not all_finite(x):
        return False
    pre = _step_gates(x, kernel, recurrent_kernel, h)
    n_batch, n_units = h.shape
    kept = np.ones((n_batch, 1), dtype=np.bool_)
    _cells_infer_fast(pre, 0, 0, bias, kept, h, c, out.reshape((n_batch, 1, n_units)), False)
    return True
