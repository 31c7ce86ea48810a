"""Slow, plain-numpy reference implementations of the Keras 3 layers.

Everything here is written for readability, not speed: the recurrent layers
loop over time steps one at a time and compute every gate with a plain matrix
product, always in float64. The fast numba layers of numrnn are tested
against these functions (``tests/test_recurrent_reference.py``).

Weights use the Keras layout:

- ``kernel``: ``(features, G * units)``;
- ``recurrent_kernel``: ``(units, G * units)``;
- ``bias``: ``(G * units,)``, or ``None`` when ``use_bias=False``; for a GRU
  with ``reset_after=True`` the bias is ``(2, 3 * units)``: row 0 is the
  input bias, row 1 the recurrent bias.

with ``G = 1`` (SimpleRNN), ``4`` (LSTM, gates ``i, f, c, o``) or ``3`` (GRU,
gates ``z, r, h``).

Sequence semantics (Keras 3, TensorFlow backend):

- ``mask`` is bool ``(batch, timesteps)``, True = keep. At a masked step the
  states are carried over unchanged and the output repeats the previous
  step's output (zeros before the first kept step, even with an
  ``initial_state``: that is the TensorFlow backend, which the Keras
  fixtures in tests/fixtures/keras come from; Keras's JAX/numpy backends
  repeat the initial ``h`` there instead). With
  ``zero_output_for_mask=True`` a masked step outputs zeros instead.
- ``go_backwards=True`` reverses the time axis of the inputs and of the mask
  before processing; the output sequence is returned in processing order
  (that is, reversed with respect to the inputs).
- The "last output" (``return_sequences=False``) is the last element of the
  processing-order output sequence, so with ``zero_output_for_mask=True`` and
  a masked last step it is zeros.
- Dropout masks (``input_dropout_mask`` ``(batch, features)`` and
  ``recurrent_dropout_mask`` ``(batch, units)``, or ``(gates, batch, n)``
  stacks with one mask per gate for LSTM/GRU) are fixed for the whole
  sequence: ``x_t`` is multiplied by the input mask at every step and
  ``h_{t-1}`` by the recurrent mask before it enters the recurrent matmul.
  For the GRU the undropped ``h_{t-1}`` is used in
  ``h = z * h_{t-1} + (1 - z) * hh``; for the LSTM the cell state ``c`` is
  never dropped.
"""

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "GATES",
    "get_activation",
    "bidirectional",
    "dense",
    "embedding",
    "gru",
    "keras_outputs",
    "lstm",
    "masking",
    "random_recurrent_weights",
    "recurrent_layer",
    "simple_rnn",
    "time_distributed_dense",
]


# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------


def _linear(x):
    return np.asarray(x, dtype=np.float64)


def _tanh(x):
    return np.tanh(x)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _hard_sigmoid(x):
    # Keras 3 definition: relu6(x + 3) / 6 == clip(x / 6 + 0.5, 0, 1).
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


def _relu(x):
    return np.maximum(x, 0.0)


def _softmax(x):
    shifted = x - np.max(x, axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=-1, keepdims=True)


ACTIVATIONS = {
    "linear": _linear,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "relu": _relu,
    "softmax": _softmax,
}


def get_activation(name):
    """Return the reference activation function called ``name``.

    ``None`` means linear, as in Keras.
    """
    if name is None:
        return _linear
    if callable(name):
        return name
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"reference has no activation {name!r}") from None


# --------------------------------------------------------------------------
# the time loop shared by every recurrent layer
# --------------------------------------------------------------------------


def _f64(a):
    return None if a is None else np.asarray(a, dtype=np.float64)


def _run_sequence(step, x, states, mask, go_backwards, zero_output_for_mask):
    """Run ``step`` over the time axis of ``x`` with Keras mask semantics.

    ``step(x_t, states) -> (output_t, new_states)`` works on a whole batch.
    Returns ``(outputs (B, T, U) in processing order, final_states list)``.
    """
    batch, timesteps, _ = x.shape
    if mask is None:
        mask = np.ones((batch, timesteps), dtype=bool)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (batch, timesteps):
        raise ValueError(f"mask shape {mask.shape} != {(batch, timesteps)}")

    if go_backwards:
        x = x[:, ::-1]
        mask = mask[:, ::-1]

    outputs = []
    previous_output = None
    for t in range(timesteps):
        output, new_states = step(x[:, t, :], states)
        keep = mask[:, t][:, None]  # (B, 1), broadcasts over units
        if previous_output is None:
            previous_output = np.zeros_like(output)
        if zero_output_for_mask:
            output = np.where(keep, output, 0.0)
        else:
            output = np.where(keep, output, previous_output)
        states = [np.where(keep, new, old) for new, old in zip(new_states, states, strict=True)]
        outputs.append(output)
        previous_output = output
    return np.stack(outputs, axis=1), states


def _initial_states(initial_state, batch, units, count):
    if initial_state is None:
        return [np.zeros((batch, units)) for _ in range(count)]
    if len(initial_state) != count:
        raise ValueError(f"expected {count} initial states, got {len(initial_state)}")
    states = [np.array(s, dtype=np.float64) for s in initial_state]
    for s in states:
        if s.shape != (batch, units):
            raise ValueError(f"initial state shape {s.shape} != {(batch, units)}")
    return states


def _dropout_masks(input_dropout_mask, recurrent_dropout_mask, batch, features, units, gates):
    """Masks as ``(gates, batch, n)`` stacks: one per gate (Keras 3 draws one
    per gate for LSTM/GRU with ``recurrent_dropout > 0``); a single 2-D mask
    is shared by every gate."""
    out = []
    for mask, n in ((input_dropout_mask, features), (recurrent_dropout_mask, units)):
        mask = np.ones((batch, n)) if mask is None else np.asarray(mask, dtype=np.float64)
        if mask.ndim == 2:
            mask = np.broadcast_to(mask, (gates, batch, n))
        assert mask.shape == (gates, batch, n), mask.shape
        out.append(mask)
    return out


def _check_weights(x, kernel, recurrent_kernel, gates):
    features = x.shape[2]
    units = recurrent_kernel.shape[0]
    if kernel.shape != (features, gates * units):
        raise ValueError(f"kernel shape {kernel.shape} != {(features, gates * units)}")
    if recurrent_kernel.shape != (units, gates * units):
        raise ValueError(
            f"recurrent_kernel shape {recurrent_kernel.shape} != {(units, gates * units)}"
        )
    return features, units


# --------------------------------------------------------------------------
# SimpleRNN
# --------------------------------------------------------------------------


def simple_rnn(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    mask=None,
    initial_state=None,
    go_backwards=False,
    zero_output_for_mask=False,
    input_dropout_mask=None,
    recurrent_dropout_mask=None,
):
    """Reference SimpleRNN: ``h_t = act(x_t W + b + h_{t-1} R)``.

    Returns ``(outputs (B, T, U) in processing order, [h])``.
    """
    x, kernel, recurrent_kernel, bias = map(_f64, (x, kernel, recurrent_kernel, bias))
    act = get_activation(activation)
    batch = x.shape[0]
    features, units = _check_weights(x, kernel, recurrent_kernel, 1)
    if bias is None:
        bias = np.zeros(units)
    assert bias.shape == (units,)
    (dp,), (rdp,) = _dropout_masks(
        input_dropout_mask, recurrent_dropout_mask, batch, features, units, 1
    )

    def step(x_t, states):
        (h_prev,) = states
        h = act((x_t * dp) @ kernel + bias + (h_prev * rdp) @ recurrent_kernel)
        return h, [h]

    states = _initial_states(initial_state, batch, units, 1)
    return _run_sequence(step, x, states, mask, go_backwards, zero_output_for_mask)


# --------------------------------------------------------------------------
# LSTM
# --------------------------------------------------------------------------


def lstm(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    recurrent_activation="sigmoid",
    mask=None,
    initial_state=None,
    go_backwards=False,
    zero_output_for_mask=False,
    input_dropout_mask=None,
    recurrent_dropout_mask=None,
):
    """Reference LSTM, gates in Keras order ``i, f, c, o``.

    ``z = x W + h R + b``; ``i = ra(z_i)``, ``f = ra(z_f)``, ``g = act(z_c)``,
    ``o = ra(z_o)``; ``c = f * c + i * g``; ``h = o * act(c)``.

    Returns ``(outputs (B, T, U) in processing order, [h, c])``.
    """
    x, kernel, recurrent_kernel, bias = map(_f64, (x, kernel, recurrent_kernel, bias))
    act = get_activation(activation)
    ract = get_activation(recurrent_activation)
    batch = x.shape[0]
    features, units = _check_weights(x, kernel, recurrent_kernel, 4)
    if bias is None:
        bias = np.zeros(4 * units)
    assert bias.shape == (4 * units,)
    dp, rdp = _dropout_masks(input_dropout_mask, recurrent_dropout_mask, batch, features, units, 4)
    u = units

    def step(x_t, states):
        h_prev, c_prev = states
        z = bias + np.concatenate(
            [
                (x_t * dp[k]) @ kernel[:, k * u : (k + 1) * u]
                + (h_prev * rdp[k]) @ recurrent_kernel[:, k * u : (k + 1) * u]
                for k in range(4)
            ],
            axis=1,
        )
        i = ract(z[:, 0 * u : 1 * u])
        f = ract(z[:, 1 * u : 2 * u])
        g = act(z[:, 2 * u : 3 * u])
        o = ract(z[:, 3 * u : 4 * u])
        c = f * c_prev + i * g
        h = o * act(c)
        return h, [h, c]

    states = _initial_states(initial_state, batch, units, 2)
    return _run_sequence(step, x, states, mask, go_backwards, zero_output_for_mask)


# --------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------


def gru(
    x,
    kernel,
    recurrent_kernel,
    bias=None,
    activation="tanh",
    recurrent_activation="sigmoid",
    reset_after=True,
    mask=None,
    initial_state=None,
    go_backwards=False,
    zero_output_for_mask=False,
    input_dropout_mask=None,
    recurrent_dropout_mask=None,
):
    """Reference GRU, gates in Keras order ``z, r, h``.

    ``reset_after=True`` (bias ``(2, 3U)``)::

        xz, xr, xh = x W + b_in;  rz, rr, rh = h R + b_rec
        z = ra(xz + rz); r = ra(xr + rr); hh = act(xh + r * rh)

    ``reset_after=False`` (bias ``(3U,)``)::

        z = ra(x W_z + b_z + h R_z); r = ra(x W_r + b_r + h R_r)
        hh = act(x W_h + b_h + (r * h) R_h)

    and in both cases ``h = z * h_prev + (1 - z) * hh``.

    Returns ``(outputs (B, T, U) in processing order, [h])``.
    """
    x, kernel, recurrent_kernel, bias = map(_f64, (x, kernel, recurrent_kernel, bias))
    act = get_activation(activation)
    ract = get_activation(recurrent_activation)
    batch = x.shape[0]
    features, units = _check_weights(x, kernel, recurrent_kernel, 3)
    u = units
    if reset_after:
        if bias is None:
            bias = np.zeros((2, 3 * units))
        assert bias.shape == (2, 3 * units), bias.shape
        input_bias, recurrent_bias = bias[0], bias[1]
    else:
        if bias is None:
            bias = np.zeros(3 * units)
        assert bias.shape == (3 * units,), bias.shape
        input_bias, recurrent_bias = bias, None
    dp, rdp = _dropout_masks(input_dropout_mask, recurrent_dropout_mask, batch, features, units, 3)

    w_z, w_r, w_h = kernel[:, :u], kernel[:, u : 2 * u], kernel[:, 2 * u :]
    r_z = recurrent_kernel[:, :u]
    r_r = recurrent_kernel[:, u : 2 * u]
    r_h = recurrent_kernel[:, 2 * u :]
    b_z, b_r, b_h = input_bias[:u], input_bias[u : 2 * u], input_bias[2 * u :]

    def step(x_t, states):
        (h_prev,) = states
        # dropped inputs/state per gate; the blend below uses the undropped h
        x_z = (x_t * dp[0]) @ w_z + b_z
        x_r = (x_t * dp[1]) @ w_r + b_r
        x_h = (x_t * dp[2]) @ w_h + b_h
        h_z, h_r, h_h = (h_prev * rdp[k] for k in range(3))
        if reset_after:
            rb_z = recurrent_bias[:u]
            rb_r = recurrent_bias[u : 2 * u]
            rb_h = recurrent_bias[2 * u :]
            z = ract(x_z + h_z @ r_z + rb_z)
            r = ract(x_r + h_r @ r_r + rb_r)
            hh = act(x_h + r * (h_h @ r_h + rb_h))
        else:
            z = ract(x_z + h_z @ r_z)
            r = ract(x_r + h_r @ r_r)
            hh = act(x_h + (r * h_h) @ r_h)
        h = z * h_prev + (1.0 - z) * hh
        return h, [h]

    states = _initial_states(initial_state, batch, units, 1)
    return _run_sequence(step, x, states, mask, go_backwards, zero_output_for_mask)


_RECURRENT = {"SimpleRNN": simple_rnn, "LSTM": lstm, "GRU": gru}


def _recurrent_fn(rnn):
    if callable(rnn):
        return rnn
    return _RECURRENT[rnn]


# --------------------------------------------------------------------------
# layer-level wrappers: Keras output lists
# --------------------------------------------------------------------------


def keras_outputs(outputs, states, return_sequences=False, return_state=False):
    """Turn ``(outputs, states)`` of a reference run into Keras's outputs.

    Returns a list ``[out, *states]`` when ``return_state`` and otherwise a
    list with one array, ``out`` being the whole (processing-order) sequence
    when ``return_sequences`` and its last element otherwise.
    """
    out = outputs if return_sequences else outputs[:, -1, :]
    if return_state:
        return [out, *states]
    return [out]


def recurrent_layer(
    rnn,
    x,
    weights,
    return_sequences=False,
    return_state=False,
    **kwargs,
):
    """Reference of a whole recurrent layer call, as a list of outputs.

    ``rnn`` is ``simple_rnn``, ``lstm``, ``gru`` or their Keras class name;
    ``weights`` is the Keras ``get_weights()`` list (``[kernel,
    recurrent_kernel]`` or ``[kernel, recurrent_kernel, bias]``); ``kwargs``
    go to the reference function (activation, mask, initial_state, ...).
    """
    fn = _recurrent_fn(rnn)
    weights = list(weights)
    bias = weights[2] if len(weights) == 3 else None
    outputs, states = fn(x, weights[0], weights[1], bias, **kwargs)
    return keras_outputs(outputs, states, return_sequences, return_state)


def bidirectional(
    rnn,
    x,
    forward_weights,
    backward_weights,
    merge_mode="concat",
    return_sequences=False,
    return_state=False,
    mask=None,
    initial_state=None,
    forward_kwargs=None,
    backward_kwargs=None,
    backward_rnn=None,
):
    """Reference Bidirectional wrapper, as a list of outputs in Keras order.

    The forward layer runs as is; the backward layer runs with
    ``go_backwards=True``. Both get ``zero_output_for_mask=return_sequences``
    (Keras forces it). When returning sequences the backward output is
    flipped back to input order before merging. ``initial_state`` is split in
    half: the first half goes to the forward layer, the rest to the backward
    layer. Outputs: ``[merged, fwd states..., bwd states...]``; merge_mode
    None: ``[fwd, bwd, fwd states..., bwd states...]`` (without states unless
    ``return_state``).
    """
    fwd_fn = _recurrent_fn(rnn)
    bwd_fn = fwd_fn if backward_rnn is None else _recurrent_fn(backward_rnn)
    forward_kwargs = dict(forward_kwargs or {})
    backward_kwargs = dict(forward_kwargs if backward_kwargs is None else backward_kwargs)
    for kw in (forward_kwargs, backward_kwargs):
        kw.pop("go_backwards", None)
        kw["zero_output_for_mask"] = return_sequences

    if initial_state is not None:
        half = len(initial_state) // 2
        fwd_state, bwd_state = list(initial_state[:half]), list(initial_state[half:])
    else:
        fwd_state = bwd_state = None

    def run(fn, weights, state, go_backwards, kw):
        weights = list(weights)
        bias = weights[2] if len(weights) == 3 else None
        return fn(
            x,
            weights[0],
            weights[1],
            bias,
            mask=mask,
            initial_state=state,
            go_backwards=go_backwards,
            **kw,
        )

    y_seq, fwd_states = run(fwd_fn, forward_weights, fwd_state, False, forward_kwargs)
    y_rev_seq, bwd_states = run(bwd_fn, backward_weights, bwd_state, True, backward_kwargs)

    if return_sequences:
        y = y_seq
        y_rev = y_rev_seq[:, ::-1, :]  # back to input order
    else:
        y = y_seq[:, -1, :]
        y_rev = y_rev_seq[:, -1, :]

    if merge_mode == "concat":
        merged = [np.concatenate([y, y_rev], axis=-1)]
    elif merge_mode == "sum":
        merged = [y + y_rev]
    elif merge_mode == "mul":
        merged = [y * y_rev]
    elif merge_mode == "ave":
        merged = [(y + y_rev) / 2.0]
    elif merge_mode is None:
        merged = [y, y_rev]
    else:
        raise ValueError(f"unknown merge_mode {merge_mode!r}")

    if return_state:
        return merged + list(fwd_states) + list(bwd_states)
    return merged


# --------------------------------------------------------------------------
# non-recurrent layers
# --------------------------------------------------------------------------


def dense(x, kernel, bias=None, activation=None):
    """Reference Dense: ``act(x @ kernel + bias)`` over the last axis."""
    x, kernel, bias = map(_f64, (x, kernel, bias))
    y = x @ kernel
    if bias is not None:
        y = y + bias
    return get_activation(activation)(y)


def time_distributed_dense(x, kernel, bias=None, activation=None):
    """Reference TimeDistributed(Dense): Dense applied at every time step."""
    x = _f64(x)
    steps = [dense(x[:, t], kernel, bias, activation) for t in range(x.shape[1])]
    return np.stack(steps, axis=1)


def embedding(ids, embeddings, mask_zero=False):
    """Reference Embedding: ``embeddings[ids]``, and the mask ``ids != 0``.

    Returns ``(outputs, mask)``; ``mask`` is None unless ``mask_zero``.
    """
    ids = np.asarray(ids)
    out = _f64(embeddings)[ids]
    mask = (ids != 0) if mask_zero else None
    return out, mask


def masking(x, mask_value=0.0):
    """Reference Masking: ``(x * keep, keep)`` with ``keep = any(x != mask_value)``."""
    x = _f64(x)
    keep = np.any(x != mask_value, axis=-1)
    return x * keep[..., None], keep


# --------------------------------------------------------------------------
# Keras-layout random weights for tests
# --------------------------------------------------------------------------

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}


def random_recurrent_weights(
    rng, kind, features, units, use_bias=True, reset_after=True, scale=0.5, dtype=np.float64
):
    """Random Keras-layout weights ``[kernel, recurrent_kernel(, bias)]``.

    ``kind`` is ``"SimpleRNN"``, ``"LSTM"`` or ``"GRU"``. Biases are nonzero
    (a zero bias would hide a bias bug). The arrays are rounded to ``dtype``.
    """
    gates = GATES[kind]
    kernel = rng.normal(scale=scale, size=(features, gates * units))
    recurrent = rng.normal(scale=scale, size=(units, gates * units))
    weights = [kernel, recurrent]
    if use_bias:
        if kind == "GRU" and reset_after:
            bias = rng.normal(scale=scale, size=(2, gates * units))
        else:
            bias = rng.normal(scale=scale, size=(gates * units,))
        weights.append(bias)
    return [np.asarray(w, dtype=dtype) for w in weights]
