"""LSTM forward and backward-through-time on CUDA (Keras gate order i, f, c, o).

Twins of ``numrnn.kernels.cpu.lstm``: same function names, arguments and
array conventions. See ``numrnn.kernels.cuda._common`` for how host and
device arrays are handled.
"""

import numpy as np
from numba import cuda

from numrnn.kernels._math import SIGMOID, TANH
from numrnn.kernels.cuda._common import (
    Transfer,
    activate,
    activation_grad,
    add_state_grad,
    carry_output_cotangent,
    check_arrays,
    check_recurrent_shapes,
    check_shapes,
    copy,
    emit_output,
    flat,
    fold_state_grad,
    grid_2d,
    kernel,
    launch_2d,
    matmul,
    save_state,
    save_step_states,
    step_index,
    sum_rows,
    take_output_cotangent,
    weight_grads,
    zeros,
)

_N_GATES = 4
#: the caches are (B, T, .); the CPU twins' are time-major (T, B, .)
TIME_MAJOR = False


@kernel("i", "i", "i", "F3", "F2", "F1", "M2", "F2", "i", "i", "?",
        "F3", "F2", "F2", "F3", "F3", "F3", "F3")  # fmt: skip
def _step_forward(
    s, t, t_next, gates, rec, bias, mask, rec_mask,
    activation, recurrent_activation, zero_output_for_mask,
    out, h, c, h_prev, h_used, c_prev, c_act,
):  # fmt: skip
    # One thread per (sample b, unit u): gates of step t, new states, output,
    # and the cached state entering the next step t_next (none when -1).
    u, b = cuda.grid(2)
    n_batch, n_units = h.shape
    if b >= n_batch or u >= n_units:
        return
    i = activate(recurrent_activation, gates[b, t, u] + rec[b, u] + bias[u])
    f = activate(
        recurrent_activation,
        gates[b, t, n_units + u] + rec[b, n_units + u] + bias[n_units + u],
    )
    g = activate(
        activation,
        gates[b, t, 2 * n_units + u] + rec[b, 2 * n_units + u] + bias[2 * n_units + u],
    )
    o = activate(
        recurrent_activation,
        gates[b, t, 3 * n_units + u] + rec[b, 3 * n_units + u] + bias[3 * n_units + u],
    )
    gates[b, t, u] = i
    gates[b, t, n_units + u] = f
    gates[b, t, 2 * n_units + u] = g
    gates[b, t, 3 * n_units + u] = o
    c_old = c[b, u]
    c_prev[b, t, u] = c_old
    c_new = f * c_old + i * g
    a = activate(activation, c_new)
    c_act[b, t, u] = a
    h_new = o * a
    keep = mask[b, t]
    if keep:
        h[b, u] = h_new
        c[b, u] = c_new
    emit_output(out, s, b, u, h_new, keep, zero_output_for_mask)
    if t_next >= 0:
        save_state(t_next, b, u, h[b, u], rec_mask, h_prev, h_used)


def lstm_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final, backward_follows=False,
    step_follows=False,
):  # fmt: skip
    """LSTM over a whole sequence on the GPU; twin of ``cpu.lstm.lstm_forward``.

    ``backward_follows`` and ``step_follows`` (the CPU twin's compile
    hints) are ignored.

    Writes ``out`` (B, T, U) in processing order, the final states
    ``h_final``/``c_final`` (B, U), and the caches ``gates`` (B, T, 4U)
    activated gates, ``h_prev``/``h_used`` (B, T, U)/(B, T, W) the state
    entering each step raw and after recurrent dropout, ``c_prev`` and
    ``c_act`` (B, T, U) the carry entering each step and ``activation(c_t)``.
    Arrays may be host or device arrays (host ones move once per call).

    Parameters
    ----------
    x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask : array
        ``x`` (B, T, F), ``kernel`` (F, 4U), ``recurrent_kernel`` (W, 4U),
        ``bias`` (4U,), bool ``mask`` (B, T), ``h0``/``c0`` (B, U) and
        ``rec_mask`` (B, W), with ``W = U`` or ``4U`` (per-gate dropout).
    activation, recurrent_activation : int
        Activation codes (``numrnn.kernels._math.ACTIVATION_CODES``).
    go_backwards, zero_output_for_mask : bool
        Process the steps in reverse; output zeros at masked steps.
    out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final : array
        Written, as described above; ``h_used`` may be ``h_prev`` itself.

    Raises
    ------
    TypeError
        If the float arrays do not share one dtype (float32 or float64) or
        ``mask`` is not bool.
    ValueError
        If a shape does not match, an array is not C-contiguous, or the batch
        or the sequence is empty.
    """
    where = "lstm_forward"
    n_batch, n_steps, n_units, width = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, h0, rec_mask, _N_GATES
    )
    seq = (n_batch, n_steps, n_units)
    check_shapes(where, {
        "bias": (bias, (_N_GATES * n_units,)), "c0": (c0, (n_batch, n_units)),
        "out": (out, seq), "gates": (gates, (n_batch, n_steps, _N_GATES * n_units)),
        "h_prev": (h_prev, seq), "h_used": (h_used, (n_batch, n_steps, width)),
        "c_prev": (c_prev, seq), "c_act": (c_act, seq),
        "h_final": (h_final, (n_batch, n_units)), "c_final": (c_final, (n_batch, n_units)),
    })  # fmt: skip
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel, "bias": bias,
         "h0": h0, "c0": c0, "rec_mask": rec_mask, "out": out, "gates": gates,
         "h_prev": h_prev, "h_used": h_used, "c_prev": c_prev, "c_act": c_act,
         "h_final": h_final, "c_final": c_final},
        {"mask": mask},
    )  # fmt: skip
    io = Transfer()
    x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask = (
        io.input(a) for a in (x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask)
    )
    out, gates, h_prev, h_used, c_prev, c_act, h, c = (
        io.output(a) for a in (out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final)
    )
    rec = cuda.device_array((n_batch, _N_GATES * n_units), dtype=dtype)
    matmul(flat(x), kernel, flat(gates))
    copy(h, h0)
    copy(c, c0)
    launch_2d(save_step_states, n_batch, n_units,
              step_index(0, n_steps, go_backwards), h, rec_mask, h_prev, h_used)  # fmt: skip
    grid, block = grid_2d(n_batch, n_units)
    step = _step_forward[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        t_next = step_index(s + 1, n_steps, go_backwards) if s + 1 < n_steps else -1
        matmul(h_used[:, t, :], recurrent_kernel, rec)
        step(
            s, t, t_next, gates, rec, bias, mask, rec_mask,
            activation, recurrent_activation, zero_output_for_mask,
            out, h, c, h_prev, h_used, c_prev, c_act,
        )  # fmt: skip
    io.finish()


def lstm_infer(
    x, kernel, recurrent_kernel, bias, mask, h0, c0,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, h_final, c_final,
):  # fmt: skip
    """LSTM for outputs only on the GPU; twin of ``cpu.lstm.lstm_infer``.

    Runs :func:`lstm_forward` with its gates and caches in scratch device arrays
    (no recurrent dropout): a separate kernel would save the cache writes,
    which on the CPU are a large part of a step but not on a GPU. Same
    arguments, results and errors as the CPU twin; the layers call it on the
    CPU only.

    Raises
    ------
    ValueError
        For activations other than tanh/sigmoid, and as :func:`lstm_forward`.
    """
    if int(activation) != TANH or int(recurrent_activation) != SIGMOID:
        raise ValueError(
            "lstm_infer runs tanh/sigmoid cells only; use lstm_forward for other activations"
        )
    if len(out.shape) != 3:
        raise ValueError(f"lstm_infer: out has shape {tuple(out.shape)}, expected (B, T, U).")
    dtype = np.dtype(out.dtype)
    rec_mask = np.ones((out.shape[0], out.shape[2]), dtype=dtype)
    h_prev, c_prev, c_act = (cuda.device_array(out.shape, dtype=dtype) for _ in range(3))
    gates = cuda.device_array(out.shape[:2] + (_N_GATES * out.shape[2],), dtype=dtype)
    lstm_forward(
        x, kernel, recurrent_kernel, bias, mask, h0, c0, rec_mask,
        activation, recurrent_activation, go_backwards, zero_output_for_mask,
        out, gates, h_prev, h_prev, c_prev, c_act, h_final, c_final,
    )  # fmt: skip


@kernel("i", "i", "?", "F3", "F3", "F3", "M2", "F2", "i", "i", "?",
        "F3", "F2", "F2", "F2", "F2", "F3")  # fmt: skip
def _step_backward(
    s, t, fold, gates, c_prev, c_act, mask, rec_mask,
    activation, recurrent_activation, zero_output_for_mask,
    d_out, dh_rec, carry, dh, dc, d_gates,
):  # fmt: skip
    # One thread per (b, u). With ``fold`` it first adds the recurrent
    # cotangent of the step processed before (``dh_rec``, width W) into dh.
    u, b = cuda.grid(2)
    n_batch, n_units = dh.shape
    if b >= n_batch or u >= n_units:
        return
    if fold:
        fold_state_grad(dh, dh_rec, rec_mask, b, u)
    if mask[b, t]:
        total = take_output_cotangent(d_out, carry, s, b, u)
        total += dh[b, u]
        i = gates[b, t, u]
        f = gates[b, t, n_units + u]
        g = gates[b, t, 2 * n_units + u]
        o = gates[b, t, 3 * n_units + u]
        a = c_act[b, t, u]
        d_c = dc[b, u] + total * o * activation_grad(activation, a)
        d_gates[b, t, u] = d_c * g * activation_grad(recurrent_activation, i)
        d_gates[b, t, n_units + u] = (
            d_c * c_prev[b, t, u] * activation_grad(recurrent_activation, f)
        )
        d_gates[b, t, 2 * n_units + u] = d_c * i * activation_grad(activation, g)
        d_gates[b, t, 3 * n_units + u] = total * a * activation_grad(recurrent_activation, o)
        dc[b, u] = d_c * f
        dh[b, u] = 0.0
    else:
        carry_output_cotangent(d_out, carry, s, b, u, zero_output_for_mask)
        for k in range(4):
            d_gates[b, t, k * n_units + u] = 0.0


def lstm_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_used, c_prev, c_act,
    d_out, d_h_final, d_c_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0,
):  # fmt: skip
    """Backpropagation through time for :func:`lstm_forward` on the GPU.

    Twin of ``cpu.lstm.lstm_backward``: ``d_out`` (B, T, U, processing
    order), ``d_h_final`` and ``d_c_final`` are the cotangents of the
    outputs. Writes ``d_x``, the weight gradients and the initial-state
    gradients ``d_h0``/``d_c0``; ``d_gates`` (B, T, 4U) is work space holding
    the pre-activation gradients.

    Parameters
    ----------
    x, kernel, recurrent_kernel, mask, rec_mask : array
        As given to :func:`lstm_forward`.
    activation, recurrent_activation : int
        Activation codes.
    go_backwards, zero_output_for_mask : bool
        As given to :func:`lstm_forward`.
    gates, h_used, c_prev, c_act : array
        The caches written by :func:`lstm_forward`.
    d_out, d_h_final, d_c_final : array
        Cotangents of the output sequence and of the final states.
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0 : array
        Written: work space and the gradients, shaped like their primals.

    Raises
    ------
    TypeError
        If the float arrays do not share one dtype (float32 or float64) or
        ``mask`` is not bool.
    ValueError
        If a shape does not match, an array is not C-contiguous, or the batch
        or the sequence is empty.
    """
    where = "lstm_backward"
    n_batch, n_steps, n_units, width = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, d_h0, rec_mask, _N_GATES
    )
    seq = (n_batch, n_steps, n_units)
    state = (n_batch, n_units)
    check_shapes(where, {
        "gates": (gates, (n_batch, n_steps, _N_GATES * n_units)),
        "h_used": (h_used, (n_batch, n_steps, width)), "c_prev": (c_prev, seq),
        "c_act": (c_act, seq), "d_out": (d_out, seq), "d_h_final": (d_h_final, state),
        "d_c_final": (d_c_final, state), "d_gates": (d_gates, tuple(gates.shape)),
        "d_x": (d_x, tuple(x.shape)), "d_kernel": (d_kernel, tuple(kernel.shape)),
        "d_recurrent_kernel": (d_recurrent_kernel, tuple(recurrent_kernel.shape)),
        "d_bias": (d_bias, (_N_GATES * n_units,)), "d_c0": (d_c0, state),
    })  # fmt: skip
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel,
         "rec_mask": rec_mask, "gates": gates, "h_used": h_used, "c_prev": c_prev,
         "c_act": c_act, "d_out": d_out, "d_h_final": d_h_final, "d_c_final": d_c_final,
         "d_gates": d_gates, "d_x": d_x, "d_kernel": d_kernel,
         "d_recurrent_kernel": d_recurrent_kernel, "d_bias": d_bias, "d_h0": d_h0,
         "d_c0": d_c0},
        {"mask": mask},
    )  # fmt: skip
    io = Transfer()
    (x, kernel, recurrent_kernel, mask, rec_mask, gates, h_used, c_prev, c_act,
     d_out, d_h_final, d_c_final) = (
        io.input(a) for a in (x, kernel, recurrent_kernel, mask, rec_mask, gates, h_used,
                              c_prev, c_act, d_out, d_h_final, d_c_final)
    )  # fmt: skip
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, dh, dc = (
        io.output(a) for a in (d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0, d_c0)
    )
    carry = zeros((n_batch, n_units), dtype)
    dh_rec = cuda.device_array((n_batch, width), dtype=dtype)
    copy(dh, d_h_final)
    copy(dc, d_c_final)
    grid, block = grid_2d(n_batch, n_units)
    step = _step_backward[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        step(
            s, t, s < n_steps - 1, gates, c_prev, c_act, mask, rec_mask,
            activation, recurrent_activation, zero_output_for_mask,
            d_out, dh_rec, carry, dh, dc, d_gates,
        )  # fmt: skip
        matmul(d_gates[:, t, :], recurrent_kernel, dh_rec, trans_b=True)
    launch_2d(add_state_grad, n_batch, n_units, dh, dh_rec, rec_mask)
    weight_grads(x, kernel, d_gates, d_x, d_kernel)
    matmul(flat(h_used), flat(d_gates), d_recurrent_kernel, trans_a=True)
    sum_rows(flat(d_gates), d_bias)
    io.finish()
