"""SimpleRNN forward and backward-through-time kernels.

``h_t = activation(x_t @ W + b + h_{t-1} @ R)``. See ``_common`` for the
array conventions shared by every recurrent kernel.
"""

import numpy as np
from numba import njit

from numrnn.kernels.cpu import _ahead, _threads
from numrnn.kernels.cpu._common import (
    JIT,
    JIT_FMA,
    TANH,
    activate_row,
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
    stash_states,
    step_index,
    weight_grads,
)
from numrnn.kernels.cpu._packed import no_panels


@njit(**JIT)
def _cells_forward(states, t, s, bias, mask, h, out, activation, zero_output_for_mask):
    # states[:, t] holds x W + h R on entry and the new candidate states on exit.
    for b in range(h.shape[0]):
        row = states[b, t]
        activate_row(row, bias, activation)
        keep = mask[b, t]
        if keep:
            copy_into(h[b], row)
        emit_output(out, s, b, row, keep, zero_output_for_mask)


@njit(**JIT)
def _forward_loop(
    x, kernel, states, mask, h0, rec_mask, out, h_prev, h_used, h_final,
    recurrent_kernel, bias, activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    # the input projection, then the time loop
    project_inputs(x, kernel, states)
    n_steps = states.shape[1]
    h = h_final
    copy_into(h, h0)
    dropped = not same_buffer(h_used, h_prev)
    for s in range(n_steps):
        t = step_index(s, n_steps, go_backwards)
        stash_states(h, rec_mask, h_prev, h_used, t, dropped)
        gemm(h_used[:, t], False, recurrent_kernel, False, states[:, t], True)
        _cells_forward(states, t, s, bias, mask, h, out, activation, zero_output_for_mask)


# argument positions of the compiled loops: batch-major arrays (split into row
# blocks by _threads) and batch sums (weight gradients)
_FORWARD_ROWS = (0, 2, 3, 4, 5, 6, 7, 8, 9)
_BACKWARD_ROWS = (0, 2, 3, 4, 5, 6, 7, 8, 9, 13)
_BACKWARD_SUMS = (10, 11, 12)
# the backward loop's argument types (``_ahead.signature``), for compiling it
# while a helper process compiles the forward loop
_BACKWARD_TYPES = "3 2 3 3 m 2 3 2 3 3 2 2 1 2 2 i b b"
# the single-step kernel's argument types: the helper that compiles the
# forward loop compiles it for a stateful layer's stream
_STEP_TYPES = "2 2 2 1 2 i 2"


def simple_rnn_forward(
    x, kernel, recurrent_kernel, bias, mask, h0, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    out, states, h_prev, h_used, h_final, backward_follows=False, step_follows=False,
):  # fmt: skip
    """SimpleRNN over a whole sequence.

    Caches: ``states`` (B, T, U) the candidate state of each step,
    ``h_prev``/``h_used`` (B, T, U) the state entering each step.

    ``backward_follows``: a backward call follows (a training step); on a
    cold numba cache the two kernels then compile at once (``_ahead``).
    ``step_follows``: single-step calls (:func:`_simple_rnn_step`, a stateful
    layer's stream) may follow; the helper of a cold training step then
    compiles that kernel too.
    """
    batch = (x, kernel, states, mask, h0, rec_mask, out, h_prev, h_used, h_final)
    shared = (
        recurrent_kernel,
        bias,
        int(activation),
        bool(go_backwards),
        bool(zero_output_for_mask),
    )
    if backward_follows:
        _ahead.compile_pair(
            _forward_loop, batch + shared, _backward_loop, _BACKWARD_TYPES, x.dtype,
            split=(_FORWARD_ROWS, states, _threads.MAX_WIDTH),
            also=((_simple_rnn_step, _STEP_TYPES),) if step_follows else (),
        )  # fmt: skip
    _threads.call_in_blocks(_forward_loop, batch + shared, _FORWARD_ROWS, (), states)


@njit(**JIT_FMA)
def _cells_backward(
    d_out, carry, dh, states, mask, d_pre, t, s, activation, zero_output_for_mask
):  # fmt: skip
    n_batch, n_units = dh.shape
    for b in range(n_batch):
        keep = mask[b, t]
        d_row = d_pre[b, t]
        output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, d_row)
        if keep:
            dh_row = dh[b]
            state = states[b, t]
            if activation == TANH:
                one = one_like(state)
                for u in range(n_units):
                    y = state[u]
                    d_row[u] = (d_row[u] + dh_row[u]) * (one - y * y)
                    dh_row[u] = 0.0
            else:
                for u in range(n_units):
                    d_row[u] = (d_row[u] + dh_row[u]) * activation_grad(activation, state[u])
                    dh_row[u] = 0.0
        else:
            fill(d_row, 0.0)


@njit(**JIT)
def _backward_loop(
    x, kernel, states, h_used, mask, rec_mask, d_out, d_h_final,
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    recurrent_kernel, activation, go_backwards, zero_output_for_mask,
):  # fmt: skip
    n_batch, n_steps, n_units = states.shape
    dh = d_h0
    copy_into(dh, d_h_final)
    plain = is_plain_mask(rec_mask, n_units)
    carry = np.zeros((n_batch, n_units), dtype=states.dtype)
    dh_rec = np.empty((n_batch, rec_mask.shape[1]), dtype=states.dtype)
    panels_t = no_panels(dh)  # the BLAS for the recurrent state gradient
    for s in range(n_steps - 1, -1, -1):
        t = step_index(s, n_steps, go_backwards)
        _cells_backward(
            d_out, carry, dh, states, mask, d_pre, t, s, activation, zero_output_for_mask
        )
        recurrent_state_grad(d_pre[:, t], recurrent_kernel, panels_t, rec_mask, plain, dh, dh_rec)
    weight_grads(x, kernel, h_used, d_pre, d_pre, d_x, d_kernel, d_recurrent_kernel)
    column_sums(d_pre, d_bias)


def simple_rnn_backward(
    x, kernel, recurrent_kernel, mask, rec_mask,
    activation, go_backwards, zero_output_for_mask,
    states, h_used,
    d_out, d_h_final,
    d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
):  # fmt: skip
    """Backpropagation through time for :func:`simple_rnn_forward`."""
    batch = (
        x, kernel, states, h_used, mask, rec_mask, d_out, d_h_final,
        d_pre, d_x, d_kernel, d_recurrent_kernel, d_bias, d_h0,
    )  # fmt: skip
    shared = (recurrent_kernel, int(activation), bool(go_backwards), bool(zero_output_for_mask))
    _threads.call_in_blocks(_backward_loop, batch + shared, _BACKWARD_ROWS, _BACKWARD_SUMS, states)


@njit(**JIT)
def _simple_rnn_step(x, kernel, recurrent_kernel, bias, h, activation, out):
    """One SimpleRNN step for streaming inference (no caches, mask or dropout).

    ``x`` (B, F); the state ``h`` (B, U) is updated in place and ``out``
    (B, U) receives it. Returns False, touching nothing, when ``x`` holds
    NaN or infinity, else True.
    """
    if not all_finite(x):
        return False
    for b in range(x.shape[0]):
        row = out[b]
        row_product(x[b], kernel, row, False)
        row_product(h[b], recurrent_kernel, row, True)
        activate_row(row, bias, activation)
        copy_into(h[b], row)
    return True
