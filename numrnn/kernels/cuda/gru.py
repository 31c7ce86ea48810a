"""GRU forward and backward-through-time on CUDA (Keras gate order z, r, h).

Twins of ``numrnn.kernels.cpu.gru``, both variants: ``reset_after=True``
(``gru_forward``/``gru_backward``, bias ``(2, 3U)``) and
``reset_after=False`` (``gru_forward_reset_before``/
``gru_backward_reset_before``, bias ``(3U,)``). Same function names,
arguments and array conventions; see ``numrnn.kernels.cuda._common`` for how
host and device arrays are handled.
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
    zero,
    zeros,
)

_N_GATES = 3


def _forward_checks(
    where, x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    out, gates, h_prev, h_used, extra, extra_name, h_final, bias_shape,
):  # fmt: skip
    n_batch, n_steps, n_units, width = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, h0, rec_mask, _N_GATES
    )
    seq = (n_batch, n_steps, n_units)
    check_shapes(where, {
        "bias": (bias, bias_shape(n_units)), "out": (out, seq),
        "gates": (gates, (n_batch, n_steps, _N_GATES * n_units)), "h_prev": (h_prev, seq),
        "h_used": (h_used, (n_batch, n_steps, width)), extra_name: (extra, seq),
        "h_final": (h_final, (n_batch, n_units)),
    })  # fmt: skip
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel, "bias": bias,
         "h0": h0, "rec_mask": rec_mask, "out": out, "gates": gates, "h_prev": h_prev,
         "h_used": h_used, extra_name: extra, "h_final": h_final},
        {"mask": mask},
    )  # fmt: skip
    return n_batch, n_steps, n_units, width, dtype


def _backward_checks(
    where, x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev, h_used, extra,
    extra_name, d_out, d_h_final, work, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    bias_shape,
):  # fmt: skip
    n_batch, n_steps, n_units, width = check_recurrent_shapes(
        where, x, kernel, recurrent_kernel, mask, d_h0, rec_mask, _N_GATES
    )
    seq = (n_batch, n_steps, n_units)
    gate_seq = (n_batch, n_steps, _N_GATES * n_units)
    shapes = {
        "gates": (gates, gate_seq), "h_prev": (h_prev, seq),
        "h_used": (h_used, (n_batch, n_steps, width)), extra_name: (extra, seq),
        "d_out": (d_out, seq), "d_h_final": (d_h_final, (n_batch, n_units)),
        "d_x": (d_x, tuple(x.shape)), "d_kernel": (d_kernel, tuple(kernel.shape)),
        "d_recurrent_kernel": (d_recurrent_kernel, tuple(recurrent_kernel.shape)),
        "d_bias": (d_bias, bias_shape(n_units)),
    }  # fmt: skip
    shapes.update({name: (array, gate_seq) for name, array in work.items()})
    check_shapes(where, shapes)
    dtype = check_arrays(
        where,
        {"x": x, "kernel": kernel, "recurrent_kernel": recurrent_kernel,
         "rec_mask": rec_mask, "gates": gates, "h_prev": h_prev, "h_used": h_used,
         extra_name: extra, "d_out": d_out, "d_h_final": d_h_final, "d_x": d_x,
         "d_kernel": d_kernel, "d_recurrent_kernel": d_recurrent_kernel, "d_bias": d_bias,
         "d_h0": d_h0, **work},
        {"mask": mask},
    )  # fmt: skip
    return n_batch, n_steps, n_units, width, dtype


# --- reset_after=True ------------------------------------------------------


@kernel("i", "i", "i", "F3", "F2", "F2", "M2", "F2", "i", "i", "?",
        "F3", "F2", "F3", "F3", "F3")  # fmt: skip
def _step_forward_ra(
    s, t, t_next, gates, rec, bias, mask, rec_mask,
    activation, recurrent_activation, zero_output_for_mask,
    out, h, h_prev, h_used, rec_h,
):  # fmt: skip
    # rec = h_used @ R (without the recurrent bias, added here as on the CPU).
    u, b = cuda.grid(2)
    n_batch, n_units = h.shape
    if b >= n_batch or u >= n_units:
        return
    rec_z = rec[b, u] + bias[1, u]
    rec_r = rec[b, n_units + u] + bias[1, n_units + u]
    rh = rec[b, 2 * n_units + u] + bias[1, 2 * n_units + u]
    z = activate(recurrent_activation, gates[b, t, u] + bias[0, u] + rec_z)
    r = activate(recurrent_activation, gates[b, t, n_units + u] + bias[0, n_units + u] + rec_r)
    hh = activate(activation, gates[b, t, 2 * n_units + u] + bias[0, 2 * n_units + u] + r * rh)
    gates[b, t, u] = z
    gates[b, t, n_units + u] = r
    gates[b, t, 2 * n_units + u] = hh
    rec_h[b, t, u] = rh
    h_new = z * h[b, u] + (1.0 - z) * hh
    keep = mask[b, t]
    if keep:
        h[b, u] = h_new
    emit_output(out, s, b, u, h_new, keep, zero_output_for_mask)
    if t_next >= 0:
        save_state(t_next, b, u, h[b, u], rec_mask, h_prev, h_used)


def gru_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, rec_h, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """GRU with ``reset_after=True`` on the GPU; twin of ``cpu.gru.gru_forward``.

    ``backward_follows`` and ``step_follows`` (the CPU twin's compile
    hints) are ignored.

    ``bias`` is ``(2, 3U)`` (input, recurrent). Caches: ``gates`` (B, T, 3U)
    activated z, r, hh; ``h_prev``/``h_used`` (B, T, U)/(B, T, W); ``rec_h``
    (B, T, U) the recurrent candidate term ``h_used @ R_h + b_rec_h``.

    Parameters
    ----------
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask : array
        ``x`` (B, T, F), ``kernel`` (F, 3U), ``recurrent_kernel`` (W, 3U),
        ``bias`` (2, 3U), bool ``mask`` (B, T), ``h0`` (B, U) and ``rec_mask``
        (B, W), with ``W = U`` or ``3U`` (per-gate dropout).
    activation, recurrent_activation : int
        Activation codes (``numrnn.kernels._math.ACTIVATION_CODES``).
    go_backwards, zero_output_for_mask : bool
        Process the steps in reverse; output zeros at masked steps.
    out, gates, h_prev, h_used, rec_h, h_final : array
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
    n_batch, n_steps, n_units, _, dtype = _forward_checks(
        "gru_forward", x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
        out, gates, h_prev, h_used, rec_h, "rec_h", h_final, lambda u: (2, _N_GATES * u),
    )  # fmt: skip
    io = Transfer()
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask = (
        io.input(a) for a in (x, kernel, recurrent_kernel, bias, mask, h0, rec_mask)
    )
    out, gates, h_prev, h_used, rec_h, h = (
        io.output(a) for a in (out, gates, h_prev, h_used, rec_h, h_final)
    )
    rec = cuda.device_array((n_batch, _N_GATES * n_units), dtype=dtype)
    matmul(flat(x), kernel, flat(gates))
    copy(h, h0)
    launch_2d(save_step_states, n_batch, n_units,
              step_index(0, n_steps, go_backwards), h, rec_mask, h_prev, h_used)  # fmt: skip
    grid, block = grid_2d(n_batch, n_units)
    step = _step_forward_ra[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        t_next = step_index(s + 1, n_steps, go_backwards) if s + 1 < n_steps else -1
        matmul(h_used[:, t, :], recurrent_kernel, rec)
        step(
            s, t, t_next, gates, rec, bias, mask, rec_mask,
            activation, recurrent_activation, zero_output_for_mask,
            out, h, h_prev, h_used, rec_h,
        )  # fmt: skip
    io.finish()


@kernel("i", "i", "?", "F3", "F3", "F3", "M2", "F2", "i", "i", "?",
        "F3", "F2", "F2", "F2", "F3", "F3")  # fmt: skip
def _step_backward_ra(
    s, t, fold, gates, h_prev, rec_h, mask, rec_mask,
    activation, recurrent_activation, zero_output_for_mask,
    d_out, dh_rec, carry, dh, d_gates, d_rec,
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
        z = gates[b, t, u]
        r = gates[b, t, n_units + u]
        hh = gates[b, t, 2 * n_units + u]
        d_hh = total * (1.0 - z) * activation_grad(activation, hh)
        d_z = total * (h_prev[b, t, u] - hh) * activation_grad(recurrent_activation, z)
        d_r = d_hh * rec_h[b, t, u] * activation_grad(recurrent_activation, r)
        d_gates[b, t, u] = d_z
        d_gates[b, t, n_units + u] = d_r
        d_gates[b, t, 2 * n_units + u] = d_hh
        d_rec[b, t, u] = d_z
        d_rec[b, t, n_units + u] = d_r
        d_rec[b, t, 2 * n_units + u] = d_hh * r
        dh[b, u] = total * z
    else:
        carry_output_cotangent(d_out, carry, s, b, u, zero_output_for_mask)
        for k in range(3):
            d_gates[b, t, k * n_units + u] = 0.0
            d_rec[b, t, k * n_units + u] = 0.0


def gru_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_prev, h_used, rec_h,
    d_out, d_h_final,
    d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`gru_forward` on the GPU.

    Twin of ``cpu.gru.gru_backward``: ``d_gates`` and ``d_rec`` (B, T, 3U)
    are work space, the gradients of the input-side and recurrent-side
    pre-activations. ``d_bias`` is (2, 3U).

    Parameters
    ----------
    x, kernel, recurrent_kernel, mask, rec_mask : array
        As given to :func:`gru_forward`.
    activation, recurrent_activation : int
        Activation codes.
    go_backwards, zero_output_for_mask : bool
        As given to :func:`gru_forward`.
    gates, h_prev, h_used, rec_h : array
        The caches written by :func:`gru_forward`.
    d_out, d_h_final : array
        Cotangents of the output sequence and of the final state.
    d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0 : array
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
    n_batch, n_steps, n_units, width, dtype = _backward_checks(
        "gru_backward", x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev, h_used,
        rec_h, "rec_h", d_out, d_h_final, {"d_gates": d_gates, "d_rec": d_rec}, d_x, d_kernel,
        d_recurrent_kernel, d_bias, d_h0, lambda u: (2, _N_GATES * u),
    )  # fmt: skip
    io = Transfer()
    x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev, h_used, rec_h, d_out, d_h_final = (
        io.input(a) for a in (x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev,
                              h_used, rec_h, d_out, d_h_final)
    )  # fmt: skip
    d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, dh = (
        io.output(a) for a in (d_gates, d_rec, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0)
    )
    carry = zeros((n_batch, n_units), dtype)
    dh_rec = cuda.device_array((n_batch, width), dtype=dtype)
    copy(dh, d_h_final)
    grid, block = grid_2d(n_batch, n_units)
    step = _step_backward_ra[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        step(
            s, t, s < n_steps - 1, gates, h_prev, rec_h, mask, rec_mask,
            activation, recurrent_activation, zero_output_for_mask,
            d_out, dh_rec, carry, dh, d_gates, d_rec,
        )  # fmt: skip
        matmul(d_rec[:, t, :], recurrent_kernel, dh_rec, trans_b=True)
    launch_2d(add_state_grad, n_batch, n_units, dh, dh_rec, rec_mask)
    weight_grads(x, kernel, d_gates, d_x, d_kernel)
    matmul(flat(h_used), flat(d_rec), d_recurrent_kernel, trans_a=True)
    sum_rows(flat(d_gates), d_bias[0])
    sum_rows(flat(d_rec), d_bias[1])
    io.finish()


# --- reset_after=False -----------------------------------------------------


@kernel("i", "F3", "F2", "F1", "F3", "i", "F3")
def _gates_zr_forward(t, gates, rec_zr, bias, h_used, recurrent_activation, r_h):
    # z and r of step t, and the operand r * h_used of the candidate's product.
    u, b = cuda.grid(2)
    n_batch, n_units = rec_zr.shape[0], r_h.shape[2]
    if b >= n_batch or u >= n_units:
        return
    offset = h_used.shape[2] - n_units
    z = activate(recurrent_activation, gates[b, t, u] + bias[u] + rec_zr[b, u])
    r = activate(
        recurrent_activation, gates[b, t, n_units + u] + bias[n_units + u] + rec_zr[b, n_units + u]
    )
    gates[b, t, u] = z
    gates[b, t, n_units + u] = r
    r_h[b, t, u] = r * h_used[b, t, offset + u]


@kernel("i", "i", "i", "F3", "F2", "F1", "M2", "F2", "i", "?", "F3", "F2", "F3", "F3")
def _candidate_forward(
    s, t, t_next, gates, rec_h, bias, mask, rec_mask, activation, zero_output_for_mask,
    out, h, h_prev, h_used,
):  # fmt: skip
    u, b = cuda.grid(2)
    n_batch, n_units = h.shape
    if b >= n_batch or u >= n_units:
        return
    hh = activate(activation, gates[b, t, 2 * n_units + u] + bias[2 * n_units + u] + rec_h[b, u])
    gates[b, t, 2 * n_units + u] = hh
    z = gates[b, t, u]
    h_new = z * h[b, u] + (1.0 - z) * hh
    keep = mask[b, t]
    if keep:
        h[b, u] = h_new
    emit_output(out, s, b, u, h_new, keep, zero_output_for_mask)
    if t_next >= 0:
        save_state(t_next, b, u, h[b, u], rec_mask, h_prev, h_used)


def gru_forward_reset_before(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    out, gates, h_prev, h_used, r_h, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """GRU with ``reset_after=False`` on the GPU; twin of ``cpu.gru.gru_forward_reset_before``.

    ``backward_follows`` and ``step_follows`` (the CPU twin's compile
    hints) are ignored.

    ``bias`` is ``(3U,)``. Caches: ``gates`` (B, T, 3U) activated z, r, hh;
    ``h_prev`` (B, T, U), ``h_used`` (B, T, W); ``r_h`` (B, T, U) =
    ``r * h_used``, the operand of ``R_h``. With per-gate dropout
    (``W = 3U``) the candidate's dropped state is the last ``U`` columns of
    ``h_used``.

    Parameters
    ----------
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask : array
        As for :func:`gru_forward`, except ``bias`` (3U,).
    activation, recurrent_activation : int
        Activation codes.
    go_backwards, zero_output_for_mask : bool
        Process the steps in reverse; output zeros at masked steps.
    out, gates, h_prev, h_used, r_h, h_final : array
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
    n_batch, n_steps, n_units, width, dtype = _forward_checks(
        "gru_forward_reset_before", x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
        out, gates, h_prev, h_used, r_h, "r_h", h_final, lambda u: (_N_GATES * u,),
    )  # fmt: skip
    offset = width - n_units
    io = Transfer()
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask = (
        io.input(a) for a in (x, kernel, recurrent_kernel, bias, mask, h0, rec_mask)
    )
    out, gates, h_prev, h_used, r_h, h = (
        io.output(a) for a in (out, gates, h_prev, h_used, r_h, h_final)
    )
    kernel_zr = recurrent_kernel[:, : 2 * n_units]
    kernel_h = recurrent_kernel[offset:, 2 * n_units :]
    rec_zr = cuda.device_array((n_batch, 2 * n_units), dtype=dtype)
    rec_h = cuda.device_array((n_batch, n_units), dtype=dtype)
    matmul(flat(x), kernel, flat(gates))
    copy(h, h0)
    launch_2d(save_step_states, n_batch, n_units,
              step_index(0, n_steps, go_backwards), h, rec_mask, h_prev, h_used)  # fmt: skip
    grid, block = grid_2d(n_batch, n_units)
    gates_step = _gates_zr_forward[grid, block]
    candidate_step = _candidate_forward[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        t_next = step_index(s + 1, n_steps, go_backwards) if s + 1 < n_steps else -1
        matmul(h_used[:, t, :], kernel_zr, rec_zr)
        gates_step(t, gates, rec_zr, bias, h_used, recurrent_activation, r_h)
        matmul(r_h[:, t, :], kernel_h, rec_h)
        candidate_step(
            s, t, t_next, gates, rec_h, bias, mask, rec_mask, activation,
            zero_output_for_mask, out, h, h_prev, h_used,
        )  # fmt: skip
    io.finish()


@kernel("i", "i", "?", "F3", "F3", "M2", "F2", "i", "i", "?", "F3", "F2", "F2", "F2", "F3")
def _candidate_backward(
    s, t, fold, gates, h_prev, mask, rec_mask,
    activation, recurrent_activation, zero_output_for_mask,
    d_out, d_hu, carry, dh, d_gates,
):  # fmt: skip
    # Cotangent of the output of step t into z and the candidate; ``d_hu``
    # (B, W) is the cotangent of h_used at the step processed before.
    u, b = cuda.grid(2)
    n_batch, n_units = dh.shape
    if b >= n_batch or u >= n_units:
        return
    if fold:
        fold_state_grad(dh, d_hu, rec_mask, b, u)
    if mask[b, t]:
        total = take_output_cotangent(d_out, carry, s, b, u)
        total += dh[b, u]
        z = gates[b, t, u]
        hh = gates[b, t, 2 * n_units + u]
        d_gates[b, t, u] = total * (h_prev[b, t, u] - hh) * activation_grad(recurrent_activation, z)
        d_gates[b, t, 2 * n_units + u] = total * (1.0 - z) * activation_grad(activation, hh)
        dh[b, u] = total * z
    else:
        carry_output_cotangent(d_out, carry, s, b, u, zero_output_for_mask)
        for k in range(3):
            d_gates[b, t, k * n_units + u] = 0.0


@kernel("i", "F3", "F3", "M2", "i", "F2", "F3", "F2")
def _reset_backward(t, gates, h_used, mask, recurrent_activation, d_rh, d_gates, d_hu):
    # d_rh: cotangent of r * h_used. Starts d_hu (B, W) for the accumulating
    # GEMM that adds the z/r part: zeros, and d_rh * r in the candidate's columns.
    u, b = cuda.grid(2)
    n_batch, n_units = d_rh.shape
    if b >= n_batch or u >= n_units:
        return
    offset = d_hu.shape[1] - n_units
    for k in range(offset // n_units):
        d_hu[b, k * n_units + u] = 0.0
    if mask[b, t]:
        r = gates[b, t, n_units + u]
        d_gates[b, t, n_units + u] = (
            d_rh[b, u] * h_used[b, t, offset + u] * activation_grad(recurrent_activation, r)
        )
        d_hu[b, offset + u] = d_rh[b, u] * r
    else:
        d_hu[b, offset + u] = 0.0


def gru_backward_reset_before(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, recurrent_activation, go_backwards, zero_output_for_mask,
    gates, h_prev, h_used, r_h,
    d_out, d_h_final,
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`gru_forward_reset_before` on the GPU.

    Twin of ``cpu.gru.gru_backward_reset_before``: ``d_gates`` (B, T, 3U) is
    work space; ``d_bias`` is (3U,).

    Parameters
    ----------
    x, kernel, recurrent_kernel, mask, rec_mask : array
        As given to :func:`gru_forward_reset_before`.
    activation, recurrent_activation : int
        Activation codes.
    go_backwards, zero_output_for_mask : bool
        As given to :func:`gru_forward_reset_before`.
    gates, h_prev, h_used, r_h : array
        The caches written by :func:`gru_forward_reset_before`.
    d_out, d_h_final : array
        Cotangents of the output sequence and of the final state.
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0 : array
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
    n_batch, n_steps, n_units, width, dtype = _backward_checks(
        "gru_backward_reset_before", x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev,
        h_used, r_h, "r_h", d_out, d_h_final, {"d_gates": d_gates}, d_x, d_kernel,
        d_recurrent_kernel, d_bias, d_h0, lambda u: (_N_GATES * u,),
    )  # fmt: skip
    offset = width - n_units
    io = Transfer()
    x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev, h_used, r_h, d_out, d_h_final = (
        io.input(a) for a in (x, kernel, recurrent_kernel, mask, rec_mask, gates, h_prev,
                              h_used, r_h, d_out, d_h_final)
    )  # fmt: skip
    d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, dh = (
        io.output(a) for a in (d_gates, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0)
    )
    kernel_zr = recurrent_kernel[:, : 2 * n_units]
    kernel_h = recurrent_kernel[offset:, 2 * n_units :]
    carry = zeros((n_batch, n_units), dtype)
    d_rh = cuda.device_array((n_batch, n_units), dtype=dtype)
    d_hu = cuda.device_array((n_batch, width), dtype=dtype)
    copy(dh, d_h_final)
    grid, block = grid_2d(n_batch, n_units)
    candidate_step = _candidate_backward[grid, block]
    reset_step = _reset_backward[grid, block]
    activation, recurrent_activation = int(activation), int(recurrent_activation)
    zero_output_for_mask = bool(zero_output_for_mask)
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        candidate_step(
            s, t, s < n_steps - 1, gates, h_prev, mask, rec_mask,
            activation, recurrent_activation, zero_output_for_mask,
            d_out, d_hu, carry, dh, d_gates,
        )  # fmt: skip
        matmul(d_gates[:, t, 2 * n_units :], kernel_h, d_rh, trans_b=True)
        reset_step(t, gates, h_used, mask, recurrent_activation, d_rh, d_gates, d_hu)
        matmul(d_gates[:, t, : 2 * n_units], kernel_zr, d_hu, trans_b=True, accumulate=True)
    launch_2d(add_state_grad, n_batch, n_units, dh, d_hu, rec_mask)
    weight_grads(x, kernel, d_gates, d_x, d_kernel)
    d_flat = flat(d_gates)
    matmul(flat(h_used), d_flat[:, : 2 * n_units], d_recurrent_kernel[:, : 2 * n_units],
           trans_a=True)  # fmt: skip
    zero(d_recurrent_kernel[:offset, 2 * n_units :])
    matmul(flat(r_h), d_flat[:, 2 * n_units :], d_recurrent_kernel[offset:, 2 * n_units :],
           trans_a=True)  # fmt: skip
    sum_rows(d_flat, d_bias)
    io.finish()
