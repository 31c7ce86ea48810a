"""SimpleRNN forward and backward-through-time on CUDA.

``h_t = activation(x_t @ W + b + h_{t-1} @ R)``. Twins of
``numrnn.kernels.cpu.simple_rnn``: same function names, arguments and array
conventions. See ``numrnn.kernels.cuda._common`` for how host and device
arrays are handled.
"""

from numba import cuda

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


@kernel("i", "i", "i", "F3", "F2", "F1", "M2", "F2", "i", "?", "F3", "F2", "F3", "F3")
def _step_forward(
    s, t, t_next, states, rec, bias, mask, rec_mask, activation, zero_output_for_mask,
    out, h, h_prev, h_used,
):  # fmt: skip
    # One thread per (sample b, unit u); ``states`` holds x @ W on entry.
    u, b = cuda.grid(2)
    n_batch, n_units = h.shape
    if b >= n_batch or u >= n_units:
        return
    h_new = activate(activation, states[b, t, u] + rec[b, u] + bias[u])
    states[b, t, u] = h_new
    keep = mask[b, t]
    if keep:
        h[b, u] = h_new
    emit_output(out, s, b, u, h_new, keep, zero_output_for_mask)
    if t_next >= 0:
        save_state(t_next, b, u, h[b, u], rec_mask, h_prev, h_used)


def simple_rnn_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    out, states, h_prev, h_used, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """SimpleRNN over a whole sequence on the GPU; twin of ``cpu.simple_rnn.simple_rnn_forward``.

    ``backward_follows`` and ``step_follows`` (the CPU twin's compile
    hints) are ignored.

    Caches: ``states`` (B, T, U) the candidate state of each step,
    ``h_prev``/``h_used`` (B, T, U) the state entering each step. Arrays may
    be host or device arrays (host ones move once per call).

    Parameters
    ----------
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask : array
        ``x`` (B, T, F), ``kernel`` (F, U), ``recurrent_kernel`` (U, U),
        ``bias`` (U,), bool ``mask`` (B, T), ``h0`` (B, U), ``rec_mask`` (B, U).
    activation : int
        Activation code (``numrnn.kernels._math.ACTIVATION_CODES``).
    go_backwards, zero_output_for_mask : bool
        Process the steps in reverse; output zeros at masked steps.
    out, states, h_prev, h_used, h_final : array
        Written: the output sequence (B, T, U), the caches and the final
        state; ``h_used`` may be ``h_prev`` itself.

    Raises
    ------
    TypeError
        If the float arrays do not share one dtype (float32 or float64) or
        ``mask`` is not bool.
    ValueError
        If a shape does not match, an array is not C-contiguous, or the batch
        or the sequence is empty.
    """
    where = "simple_rnn_forward"
    n_batch, n_steps, n_units, _ = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, h0, rec_mask, 1
    )
    seq = (n_batch, n_steps, n_units)
    check_shapes(where, {
        "bias": (bias, (n_units,)), "out": (out, seq), "states": (states, seq),
        "h_prev": (h_prev, seq), "h_used": (h_used, seq),
        "h_final": (h_final, (n_batch, n_units)),
    })  # fmt: skip
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel, "bias": bias,
         "h0": h0, "rec_mask": rec_mask, "out": out, "states": states, "h_prev": h_prev,
         "h_used": h_used, "h_final": h_final},
        {"mask": mask},
    )  # fmt: skip
    io = Transfer()
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask = (
        io.input(a) for a in (x, kernel, recurrent_kernel, bias, mask, h0, rec_mask)
    )
    out, states, h_prev, h_used, h = (io.output(a) for a in (out, states, h_prev, h_used, h_final))
    rec = cuda.device_array((n_batch, n_units), dtype=dtype)
    matmul(flat(x), kernel, flat(states))
    copy(h, h0)
    launch_2d(save_step_states, n_batch, n_units,
              step_index(0, n_steps, go_backwards), h, rec_mask, h_prev, h_used)  # fmt: skip
    grid, block = grid_2d(n_batch, n_units)
    step = _step_forward[grid, block]
    activation = int(activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        t_next = step_index(s + 1, n_steps, go_backwards) if s + 1 < n_steps else -1
        matmul(h_used[:, t, :], recurrent_kernel, rec)
        step(
            s, t, t_next, states, rec, bias, mask, rec_mask, activation,
            zero_output_for_mask, out, h, h_prev, h_used,
        )  # fmt: skip
    io.finish()


@kernel("i", "i", "?", "F3", "M2", "F2", "i", "?", "F3", "F2", "F2", "F2", "F3")
def _step_backward(
    s, t, fold, states, mask, rec_mask, activation, zero_output_for_mask,
    d_out, dh_rec, carry, dh, d_pre,
):  # fmt: skip
    u, b = cuda.grid(2)
    n_batch, n_units = dh.shape
    if b >= n_batch or u >= n_units:
        return
    if fold:
        fold_state_grad(dh, dh_rec, rec_mask, b, u)
    if mask[b, t]:
        total = take_output_cotangent(d_out, carry, s, b, u)
        total += dh[b, u]
        d_pre[b, t, u] = total * activation_grad(activation, states[b, t, u])
        dh[b, u] = 0.0
    else:
        carry_output_cotangent(d_out, carry, s, b, u, zero_output_for_mask)
        d_pre[b, t, u] = 0.0


def simple_rnn_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    states, h_used,
    d_out, d_h_final,
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`simple_rnn_forward` on the GPU.

    Twin of ``cpu.simple_rnn.simple_rnn_backward``; ``d_pre`` (B, T, U) is
    work space holding the pre-activation gradients.

    Parameters
    ----------
    x, kernel, recurrent_kernel, mask, rec_mask : array
        As given to :func:`simple_rnn_forward`.
    activation : int
        Activation code.
    go_backwards, zero_output_for_mask : bool
        As given to :func:`simple_rnn_forward`.
    states, h_used : array
        The caches written by :func:`simple_rnn_forward`.
    d_out, d_h_final : array
        Cotangents of the output sequence and of the final state.
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0 : array
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
    where = "simple_rnn_backward"
    n_batch, n_steps, n_units, width = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, d_h0, rec_mask, 1
    )
    seq = (n_batch, n_steps, n_units)
    check_shapes(where, {
        "states": (states, seq), "h_used": (h_used, seq), "d_out": (d_out, seq),
        "d_h_final": (d_h_final, (n_batch, n_units)), "d_pre": (d_pre, seq),
        "d_x": (d_x, tuple(x.shape)), "d_kernel": (d_kernel, tuple(kernel.shape)),
        "d_recurrent_kernel": (d_recurrent_kernel, tuple(recurrent_kernel.shape)),
        "d_bias": (d_bias, (n_units,)),
    })  # fmt: skip
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel,
         "rec_mask": rec_mask, "states": states, "h_used": h_used, "d_out": d_out,
         "d_h_final": d_h_final, "d_pre": d_pre, "d_x": d_x, "d_kernel": d_kernel,
         "d_recurrent_kernel": d_recurrent_kernel, "d_bias": d_bias, "d_h0": d_h0},
        {"mask": mask},
    )  # fmt: skip
    io = Transfer()
    x, kernel, recurrent_kernel, mask, rec_mask, states, h_used, d_out, d_h_final = (
        io.input(a) for a in (x, kernel, recurrent_kernel, mask, rec_mask, states, h_used,
                              d_out, d_h_final)
    )  # fmt: skip
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, dh = (
        io.output(a) for a in (d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0)
    )
    carry = zeros((n_batch, n_units), dtype)
    dh_rec = cuda.device_array((n_batch, width), dtype=dtype)
    copy(dh, d_h_final)
    grid, block = grid_2d(n_batch, n_units)
    step = _step_backward[grid, block]
    activation = int(activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        step(
            s, t, s < n_steps - 1, states, mask, rec_mask, activation, zero_output_for_mask,
            d_out, dh_rec, carry, dh, d_pre,
        )  # fmt: skip
        matmul(d_pre[:, t, :], recurrent_kernel, dh_rec, trans_b=True)
    launch_2d(add_state_grad, n_batch, n_units, dh, dh_rec, rec_mask)
    weight_grads(x, kernel, d_pre, d_x, d_kernel)
    matmul(flat(h_used), flat(d_pre), d_recurrent_kernel, trans_a=True)
    sum_rows(flat(d_pre), d_bias)
    io.finish()
