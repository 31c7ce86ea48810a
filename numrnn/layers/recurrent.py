"""Recurrent layers with Keras 3 semantics: SimpleRNN, LSTM and GRU.

The layer owns the weights (Keras layout), the sequence semantics
(``return_sequences``, ``return_state``, ``stateful``, dropout masks) and
input checks; the numba kernels do the time loop: ``numrnn.kernels.cpu``, or
their CUDA twins in ``numrnn.kernels.cuda`` when ``device="cuda"``.
"""

import weakref

import numpy as np

from numrnn.activations import recurrent_activation_code
from numrnn.initializers import check_initializer, initialize
from numrnn.kernels import DeviceUnavailableError, check_device, get_backend, resolve_device
from numrnn.kernels._math import SIGMOID, TANH
from numrnn.layers.base import (
    Layer,
    check_float_input,
    check_mask,
    check_positive_int,
    check_rate,
    input_grad_wanted,
    on_device,
    outputs_only,
    unwrap,
)


class RNN(Layer):
    """Base of the recurrent layers (not used directly).

    Parameters
    ----------
    units : int
        Dimensionality of the output space and of the states.
    activation : str, default="tanh"
        One of ``tanh``, ``sigmoid``, ``hard_sigmoid``, ``relu``, ``linear``.
    use_bias : bool, default=True
    kernel_initializer, recurrent_initializer, bias_initializer : str or callable
        Keras initializer names (``glorot_uniform``, ``orthogonal``, ``zeros``, ...)
        or ``callable(shape, dtype, rng)``.
    dropout, recurrent_dropout : float, default=0.0
        Fraction of the inputs / of the recurrent state to drop in training.
        As in Keras 3, one mask per sample and feature is drawn per call and
        reused at every step; masks are inverted (kept values scaled by
        ``1 / (1 - rate)``).
    seed : int, optional
        Seeds the initial weights and the dropout masks.
    return_sequences : bool, default=False
        Return the whole output sequence instead of the last output.
    return_state : bool, default=False
        Also return the final states, after the output.
    go_backwards : bool, default=False
        Process the sequence in reverse; the returned sequence is in
        processing order (reversed), as in Keras.
    stateful : bool, default=False
        Carry the final states of a call over as the initial states of the
        next; the batch size is then fixed.
    zero_output_for_mask : bool, default=False
        Masked steps output zeros instead of repeating the previous output.
    dtype : str, optional
    name : str, optional
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where the recurrent kernels run. ``"cuda"`` runs the ``numba.cuda``
        twins of the CPU kernels on an NVIDIA GPU (needs the ``cuda`` extra,
        numba-cuda, and a GPU, else the call raises
        :class:`numrnn.kernels.DeviceUnavailableError`); ``"auto"`` picks
        ``"cuda"`` when numba-cuda and a real GPU are present and the CPU
        otherwise. The device is resolved at each call, so a model built on
        one machine runs on another. On CUDA the inputs and weights move to
        the GPU once per call, the forward caches stay there until the
        backward pass, and outputs and gradients come back as numpy arrays;
        results match the CPU kernels up to floating-point rounding. During
        a device-resident fit (:meth:`numrnn.Sequential.resident`) the
        weights stay on the GPU and a device input gives device outputs and
        gradients instead. It can be changed after construction
        (``layer.device = "cuda"``).
    """

    _skips_unused_input_grad = True
    _n_gates = 1
    _n_states = 1

    def __init__(
        self,
        units,
        activation="tanh",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        zero_output_for_mask=False,
        dtype=None,
        name=None,
        device="cpu",
    ):
        super().__init__(dtype=dtype, name=name)
        self.device = device
        self.units = check_positive_int(units, "units")
        self.activation = activation
        self._activation_code = recurrent_activation_code(activation, "activation")
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer")
        self.recurrent_initializer = check_initializer(
            recurrent_initializer, "recurrent_initializer"
        )
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer")
        self.dropout = check_rate(dropout, "dropout")
        self.recurrent_dropout = check_rate(recurrent_dropout, "recurrent_dropout")
        self.seed = seed
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)  # accepted for Keras compatibility; no effect
        self.zero_output_for_mask = bool(zero_output_for_mask)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self._init_rng = np.random.default_rng(seeds[0])
        self._dropout_rng = np.random.default_rng(seeds[1])
        self._states = None
        self._n_features = None

    def get_config(self):
        """Constructor arguments, enough to rebuild an unbuilt copy of the layer."""
        config = {
            "units": self.units,
            "activation": self.activation,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "recurrent_initializer": self.recurrent_initializer,
            "bias_initializer": self.bias_initializer,
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "dtype": self.dtype.name,
            "name": self.name,
            "device": self.device,
        }
        for extra in ("recurrent_activation", "unit_forget_bias", "reset_after"):
            if hasattr(self, extra):
                config[extra] = getattr(self, extra)
        return config

    @property
    def device(self):
        """Where the kernels run: ``"cpu"``, ``"cuda"`` or ``"auto"`` (see the class doc)."""
        return self._device

    @device.setter
    def device(self, value):
        self._device = check_device(value, f"{self.name}: device")

    # -- weights -----------------------------------------------------------
    def _bias_shape(self):
        return (self._n_gates * self.units,)

    def _initial_bias(self):
        return initialize(self.bias_initializer, self._bias_shape(), self.dtype, self._init_rng)

    def build(self, input_shape):
        """Create kernel ``(features, G*units)``, recurrent kernel ``(units, G*units)``
        and bias, G being 1, 4 and 3 for SimpleRNN, LSTM and GRU."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name}: expected input shape (batch, timesteps, features), "
                f"got {input_shape}."
            )
        n_features = input_shape[-1]
        if n_features is None:
            raise ValueError(f"{self.name}: the feature dimension must be known to build.")
        width = self._n_gates * self.units
        self._n_features = int(n_features)
        self.kernel = initialize(
            self.kernel_initializer, (self._n_features, width), self.dtype, self._init_rng
        )
        self.recurrent_kernel = initialize(
            self.recurrent_initializer, (self.units, width), self.dtype, self._init_rng
        )
        self.bias = self._initial_bias() if self.use_bias else None
        self._zero_bias = np.zeros(self._bias_shape(), dtype=self.dtype)
        self._weights = [self.kernel, self.recurrent_kernel] + (
            [self.bias] if self.use_bias else []
        )
        super().build(input_shape)
        if self.stateful and input_shape[0] is not None:
            self._states = self._zero_states(int(input_shape[0]))

    def compute_output_shape(self, input_shape):
        batch, steps = input_shape[0], input_shape[1]
        output = (batch, steps, self.units) if self.return_sequences else (batch, self.units)
        if self.return_state:
            return [output] + [(batch, self.units)] * self._n_states
        return output

    @property
    def output_shape(self):
        shape = super().output_shape
        return shape[0] if self.return_state else shape

    def compute_mask(self, inputs, mask):
        # Keras 3: the input mask passes on unchanged with return_sequences,
        # even after go_backwards reversed the outputs.
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * self._n_states
        return output_mask

    # -- states ------------------------------------------------------------
    def _zero_states(self, batch_size):
        return [np.zeros((batch_size, self.units), dtype=self.dtype) for _ in range(self._n_states)]

    @property
    def states(self):
        """Copies of the current states of a stateful layer (None otherwise)."""
        if self._states is None:
            return None
        return [s.copy() for s in self._states]

    def reset_states(self, states=None):
        """Reset a stateful layer's states to zeros, or to ``states``."""
        if not self.stateful:
            return
        if self._states is None:
            if states is None:
                return
            batch = np.shape(as_first(states))[0]
            self._states = self._zero_states(batch)
        if states is None:
            for s in self._states:
                s[...] = 0.0
        else:
            new = self._check_states(states, self._states[0].shape[0], "reset_states")
            for dst, src in zip(self._states, new):
                dst[...] = src

    reset_state = reset_states

    def _check_states(self, states, batch_size, what):
        if len(states) != self._n_states:
            raise ValueError(
                f"{self.name}: {what} expects {self._n_states} state array(s) "
                f"of shape (batch, {self.units}), got {len(states)}."
            )
        result = []
        for i, s in enumerate(states):
            arr = check_float_input(s, self.dtype, f"{self.name}: {what}[{i}]")
            if arr.shape != (batch_size, self.units):
                raise ValueError(
                    f"{self.name}: {what}[{i}] has shape {arr.shape}, expected "
                    f"(batch, units) = ({batch_size}, {self.units})."
                )
            result.append(arr)
        return result

    def _entry_states(self, initial_state, batch_size):
        if initial_state is not None:
            return self._check_states(initial_state, batch_size, "initial_state")
        if self.stateful:
            if self._states is None:
                self._states = self._zero_states(batch_size)
            elif self._states[0].shape[0] != batch_size:
                raise ValueError(
                    f"{self.name}: this stateful layer holds states for batch size "
                    f"{self._states[0].shape[0]}, got a batch of {batch_size}. Feed "
                    "batches of the same size, or rebuild the layer."
                )
            return [s.copy() for s in self._states]
        return self._zero_states(batch_size)

    # -- dropout -----------------------------------------------------------
    def _dropout_mask(self, rate, shape, training):
        if not training or rate == 0.0:
            return None
        keep = self._dropout_rng.random(shape) >= rate
        return (keep / (1.0 - rate)).astype(self.dtype)

    def _draw_dropout_masks(self, n_batch, n_features, training):
        """``(per_gate, input_masks, rec_mask)`` of one call, drawn from the layer's
        generator: input masks ``(k, B, F)`` and the recurrent mask ``(B, k*U)``
        (``k`` = the number of gates with per-gate recurrent dropout, else 1),
        None where that dropout is off."""
        n_gates = self._n_gates
        per_gate = training and self.recurrent_dropout > 0 and n_gates > 1
        n_masks = n_gates if per_gate else 1
        input_masks = self._dropout_mask(self.dropout, (n_masks, n_batch, n_features), training)
        rec_mask = self._dropout_mask(
            self.recurrent_dropout, (n_batch, n_masks * self.units), training
        )
        return per_gate, input_masks, rec_mask

    def _effective_operands(self, x, training):
        """Inputs, kernels and recurrent mask the kernel sees, after dropout.

        Keras 3 draws one input mask ``(B, F)`` and one recurrent mask
        ``(B, U)`` per call. LSTM and GRU with ``recurrent_dropout > 0`` draw
        one of each *per gate*; numrnn runs that case as one wider product:
        the per-gate inputs side by side against a block-diagonal kernel.
        """
        n_batch, _, n_features = x.shape
        n_gates = self._n_gates
        per_gate, input_masks, rec_mask = self._draw_dropout_masks(n_batch, n_features, training)
        kernel, recurrent = self.kernel, self.recurrent_kernel
        if input_masks is None:
            x_in = x
        else:
            x_in = np.concatenate([x * m[:, None, :] for m in input_masks], axis=-1)
            if per_gate:
                kernel = _block_diagonal(kernel, n_gates)
        if per_gate:
            recurrent = _block_diagonal(recurrent, n_gates)
        if rec_mask is None:
            rec_mask = np.ones((n_batch, self.units), dtype=self.dtype)
            rec_dropout = False
        else:
            rec_dropout = True
        return x_in, kernel, recurrent, input_masks, rec_mask, rec_dropout

    # -- streaming ------------------------------------------------------------
    def __call__(self, x, mask=None, initial_state=None, training=False):
        if mask is None and initial_state is None and not training:
            outputs = self._stream_step(x)
            if outputs is not None:
                return unwrap(outputs)
        return super().__call__(x, mask=mask, initial_state=initial_state, training=training)

    def _stream_step(self, x):
        """Low-latency path for a stateful layer fed one step at a time.

        Taken only for a built stateful CPU layer called for inference on a
        numeric ``(B, 1, F)`` ndarray (converted to a C-contiguous one of the
        layer's dtype, as the full path does), without mask or initial
        state, whose states already exist for batch ``B``; it calls the
        cell's single-step CPU kernel (``numrnn.kernels.cpu.<cell>._*_step``,
        CPU only, so private: no CUDA twin), which updates the states in place and
        keeps no caches. Anything else returns None and takes the full
        path, which also raises the errors; so does an input holding NaN or
        infinity (the kernel checks it first and then touches nothing).
        Every check here costs a few tens of nanoseconds against a step of
        about 1 us, so each attribute is read once.
        """
        states = self._states
        if (
            states is None
            or not self.stateful
            or self._device != "cpu"
            or type(x) is not np.ndarray
        ):
            return None
        shape = x.shape
        if (
            len(shape) != 3
            or shape[1] != 1
            or shape[2] != self._n_features
            or shape[0] != states[0].shape[0]
        ):
            return None
        if x.dtype != self.dtype or not x.flags.c_contiguous:
            if x.dtype.kind not in "biuf":
                return None
            # as the full path converts it (a slice of a longer array, float64 data)
            x = np.ascontiguousarray(x, dtype=self.dtype)
        n_batch = shape[0]
        out = np.empty((n_batch, self.units), dtype=self.dtype)
        if not self._kernel_step(x.reshape(n_batch, shape[2]), out):
            return None  # NaN/inf input: the kernel touched nothing
        output = out.reshape(n_batch, 1, self.units) if self.return_sequences else out
        if self.return_state:
            return [output] + [s.copy() for s in states]
        return [output]

    def _fast_cells(self):
        """Whether the cells are tanh/sigmoid ones (gated layers), which have
        kernels of their own."""
        return self._activation_code == TANH and self._recurrent_code == SIGMOID

    def _bias_or_zeros(self):
        """The bias the kernels take: zeros for a layer without one."""
        return self.bias if self.use_bias else self._zero_bias

    def _kernel_step(self, x, out):
        """One step of the CPU kernel on ``x`` (B, F), states updated in place.

        Returns False (nothing changed) when ``x`` holds NaN or infinity.
        """
        raise NotImplementedError

    # -- forward / backward --------------------------------------------------
    def _forward(self, x, mask, initial_state, training):
        if on_device(x):
            return self._forward_device(x, mask, initial_state, training)
        x = check_float_input(x, self.dtype, self.name, ndim=3, n_features=self._n_features)
        n_batch, n_steps, _ = x.shape
        if n_steps == 0 or n_batch == 0:
            raise ValueError(f"{self.name}: got an empty input of shape {x.shape}.")
        mask = check_mask(mask, (n_batch, n_steps), self.name)
        states = self._entry_states(initial_state, n_batch)
        backend = get_backend(self.device)
        x_in, kernel, recurrent, input_masks, rec_mask, rec_dropout = self._effective_operands(
            x, training
        )
        kernel_mask = np.ones((n_batch, n_steps), dtype=bool) if mask is None else mask
        bias = self._bias_or_zeros()
        # one transfer per operand and call (identity on the CPU)
        x_in, kernel, recurrent, bias, kernel_mask, rec_mask = (
            backend.to_device(a) for a in (x_in, kernel, recurrent, bias, kernel_mask, rec_mask)
        )
        states = [backend.to_device(s) for s in states]
        out, final_states, cache = self._run_kernels(
            backend, x_in, kernel, recurrent, bias, kernel_mask, states, rec_mask, rec_dropout,
            input_masks, initial_state,
        )  # fmt: skip
        final_states = [backend.to_host(s) for s in final_states]
        if self.stateful:
            for dst, src in zip(self._states, final_states):
                dst[...] = src
        output = backend.to_host(out) if self.return_sequences else backend.last_step(out)
        outputs = [output] + (list(final_states) if self.return_state else [])
        return outputs, cache

    def _run_kernels(
        self, backend, x_in, kernel, recurrent, bias, kernel_mask, states, rec_mask, rec_dropout,
        input_masks, initial_state,
    ):  # fmt: skip
        """The forward kernel on operands already on ``backend``'s device.

        Returns ``(out, final_states, cache)``: the output sequence (on the
        device; a fresh array when it is returned to the caller, else a
        workspace buffer), the final states and the cache for
        :meth:`_backward`.
        """
        lease = _lease_workspace(self)
        n_batch, n_steps, _ = x_in.shape
        out_shape = (n_batch, n_steps, self.units)
        # the returned sequence is the caller's; only a last-step-only one is internal
        out = (
            backend.empty(out_shape, self.dtype)
            if self.return_sequences
            else self._buffer(backend, "out", out_shape)
        )
        final_states, caches = self._kernel_forward(
            backend, x_in, kernel, recurrent, bias, kernel_mask, states, rec_mask, rec_dropout, out
        )
        cache = {
            "backend": backend,
            "x": x_in,
            "kernel": kernel,
            "recurrent_kernel": recurrent,
            "mask": kernel_mask,
            "rec_mask": rec_mask,
            "input_masks": input_masks,
            "caches": caches,
            "has_initial_state": initial_state is not None,
            "workspace": lease,
        }
        return out, final_states, cache

    def _backward(self, cache, cotangents):
        if cache.get("device"):
            return self._backward_device(cache, cotangents)
        backend = cache["backend"]
        x = cache["x"]
        n_batch, n_steps, _ = x.shape
        if self.return_sequences:
            d_out = cotangents[0]
        else:
            d_out = np.zeros((n_batch, n_steps, self.units), dtype=self.dtype)
            d_out[:, -1] = cotangents[0]
        if self.return_state:
            d_states = cotangents[1:]
        else:
            d_states = self._zero_states(n_batch)
        d_out = backend.to_device(d_out)
        d_states = [backend.to_device(d) for d in d_states]
        d_x, d_kernel, d_recurrent, d_bias, d_states0 = self._kernel_backward(
            cache, d_out, d_states
        )
        d_x, d_kernel, d_recurrent, d_bias = (
            backend.to_host(a) for a in (d_x, d_kernel, d_recurrent, d_bias)
        )
        d_states0 = [backend.to_host(d) for d in d_states0]
        input_masks = cache["input_masks"]
        if d_x.shape[-1] == 0 and x.shape[-1] > 0:
            d_x = None  # skipped (see _grad_buffers)
        elif input_masks is not None:
            n_features = self._n_features
            d_x = sum(
                d_x[..., k * n_features : (k + 1) * n_features] * m[:, None, :]
                for k, m in enumerate(input_masks)
            )
        if d_kernel.shape != self.kernel.shape:
            d_kernel = _diagonal_blocks(d_kernel, self._n_gates)
        if d_recurrent.shape != self.recurrent_kernel.shape:
            d_recurrent = _diagonal_blocks(d_recurrent, self._n_gates)
        weight_grads = [d_kernel, d_recurrent] + ([d_bias] if self.use_bias else [])
        state_grads = d_states0 if cache["has_initial_state"] else None
        return weight_grads, d_x, state_grads

    # -- device-resident path ---------------------------------------------------
    def _device_support(self):
        if self.stateful:
            return f"{self.name} is stateful"
        if self.return_state:
            return f"{self.name} returns its states"
        try:
            resolved = resolve_device(self.device)
        except DeviceUnavailableError as exc:
            return f"{self.name} cannot run on CUDA: {exc}"
        if resolved != "cuda":
            return f"{self.name} runs on the CPU (device={self.device!r})"
        return None

    def _device_constants(self):
        return [] if self.use_bias else [self._zero_bias]

    def _forward_device(self, x, mask, initial_state, training):
        """:meth:`_forward` for a device input: everything stays on the device.

        The weights come from ``backend.to_device`` (their resident twins
        during a resident fit, else one upload per call); the dropout masks
        are drawn on the host from the layer's generator, exactly as on the
        host path, and uploaded; outputs and caches are device arrays.
        """
        backend = get_backend(self.device)
        if backend.name != "cuda":
            # a CPU layer fed a device array computes on the host
            return self._forward(x.copy_to_host(), mask, initial_state, training)
        ops = backend.ops
        if len(x.shape) != 3:
            raise ValueError(
                f"{self.name}: expected a 3-D input (batch, timesteps, features), "
                f"got shape {tuple(x.shape)}."
            )
        n_batch, n_steps, n_features = x.shape
        if n_steps == 0 or n_batch == 0:
            raise ValueError(f"{self.name}: got an empty input of shape {tuple(x.shape)}.")
        if n_features != self._n_features:
            raise ValueError(
                f"{self.name}: input has {n_features} features, but the layer was built for "
                f"{self._n_features}."
            )
        if np.dtype(x.dtype) != self.dtype:
            raise TypeError(
                f"{self.name}: a device input must have the layer's dtype {self.dtype}, "
                f"got {x.dtype}."
            )
        if mask is None:
            kernel_mask = ops.ones_mask((n_batch, n_steps))
        elif on_device(mask):
            if tuple(mask.shape) != (n_batch, n_steps) or np.dtype(mask.dtype) != np.bool_:
                raise ValueError(
                    f"{self.name}: mask must be a bool (batch, timesteps) = "
                    f"{(n_batch, n_steps)} array, got {mask.dtype} {tuple(mask.shape)}."
                )
            kernel_mask = mask
        else:
            kernel_mask = backend.to_device(check_mask(mask, (n_batch, n_steps), self.name))
        if initial_state is None and not self.stateful:
            states = [ops.zeros((n_batch, self.units), self.dtype) for _ in range(self._n_states)]
        else:
            states = [backend.to_device(s) for s in self._entry_states(initial_state, n_batch)]
        # the same draws, in the same order, as _effective_operands
        n_gates = self._n_gates
        per_gate, input_masks, rec_mask = self._draw_dropout_masks(n_batch, n_features, training)
        kernel = backend.to_device(self.kernel)
        recurrent = backend.to_device(self.recurrent_kernel)
        if input_masks is None:
            x_in = x
        else:
            input_masks = backend.to_device(input_masks)
            x_in = ops.apply_input_dropout(x, input_masks)
            if per_gate:
                kernel = ops.block_diagonal(kernel, n_gates)
        if per_gate:
            recurrent = ops.block_diagonal(recurrent, n_gates)
        if rec_mask is None:
            rec_mask = ops.empty((n_batch, self.units), self.dtype)
            ops.fill_(rec_mask, 1.0)
            rec_dropout = False
        else:
            rec_mask = backend.to_device(rec_mask)
            rec_dropout = True
        bias = backend.to_device(self._bias_or_zeros())
        out, final_states, cache = self._run_kernels(
            backend, x_in, kernel, recurrent, bias, kernel_mask, states, rec_mask, rec_dropout,
            input_masks, initial_state,
        )  # fmt: skip
        cache["device"] = True
        if self.stateful:
            for dst, src in zip(self._states, final_states):
                dst[...] = backend.to_host(src)
        output = out if self.return_sequences else ops.last_step(out)
        outputs = [output] + (list(final_states) if self.return_state else [])
        return outputs, cache

    def _backward_device(self, cache, cotangents):
        """:meth:`_backward` of :meth:`_forward_device`: device gradients."""
        backend = cache["backend"]
        ops = backend.ops
        x = cache["x"]
        n_batch, n_steps, _ = x.shape
        cotangents = [backend.to_device(c) for c in cotangents]
        if self.return_sequences:
            d_out = cotangents[0]
        else:
            d_out = ops.scatter_last_step(cotangents[0], n_steps)
        if self.return_state:
            d_states = cotangents[1:]
        else:
            d_states = [ops.zeros((n_batch, self.units), self.dtype) for _ in range(self._n_states)]
        d_x, d_kernel, d_recurrent, d_bias, d_states0 = self._kernel_backward(
            cache, d_out, d_states
        )
        input_masks = cache["input_masks"]
        if input_masks is not None:
            d_x = ops.fold_input_dropout(d_x, input_masks, self._n_features)
        if tuple(d_kernel.shape) != self.kernel.shape:
            d_kernel = ops.diagonal_blocks(d_kernel, self._n_gates)
        if tuple(d_recurrent.shape) != self.recurrent_kernel.shape:
            d_recurrent = ops.diagonal_blocks(d_recurrent, self._n_gates)
        weight_grads = [d_kernel, d_recurrent] + ([d_bias] if self.use_bias else [])
        state_grads = d_states0 if cache["has_initial_state"] else None
        return weight_grads, d_x, state_grads

    def _activation_codes(self):
        return self._activation_code, 0

    def _kernel_forward(
        self, backend, x, kernel, recurrent, bias, mask, states, rec_mask, rec_dropout, out
    ):
        """Run the forward kernel of ``backend`` (arrays already on its device).

        Returns ``(final_states, caches)``; the caches stay on the device for
        :meth:`_kernel_backward`.
        """
        raise NotImplementedError

    def _kernel_backward(self, cache, d_out, d_states):
        """Run the backward kernel; returns ``(d_x, d_kernel, d_rec, d_bias, d_states0)``
        as arrays of the cache's backend."""
        raise NotImplementedError

    @staticmethod
    def _cache_steps(x, time_major):
        """The leading axes of a per-step cache for input ``x``: (B, T), or
        (T, B) for kernels whose caches are time-major."""
        return (x.shape[1], x.shape[0]) if time_major else (x.shape[0], x.shape[1])

    def _step_buffers(self, backend, x, n, rec_mask, rec_dropout, time_major=False):
        """``n`` (B, T, U) cache buffers plus ``h_used`` (B, T, W), which aliases
        ``h_prev`` (the first buffer) when there is no recurrent dropout;
        ``(T, B, .)`` when ``time_major``."""
        shape = self._cache_steps(x, time_major)
        buffers = [self._buffer(backend, f"cache{i}", shape + (self.units,)) for i in range(n)]
        if rec_dropout:
            h_used = self._buffer(backend, "h_used", shape + (rec_mask.shape[1],))
        else:
            h_used = buffers[0]
        return buffers, h_used

    def _buffer(self, backend, name, shape, lease=None):
        """An uninitialised kernel buffer, reused from call to call.

        Fresh arrays cost page faults on first touch, about as much as the
        kernels' own work; so the forward caches and the backward work space
        live in a per-layer workspace and are reused while no live cache
        holds them (see :func:`_lease_workspace`). Never used for arrays the
        caller receives. ``lease``: the workspace of a forward cache (in the
        backward pass); default, the one the current forward call leased.
        """
        ws = lease.workspace if lease is not None else _WORKSPACES[self]
        key = (name, backend.name)
        arr = ws.arrays.get(key)
        if arr is None or tuple(arr.shape) != tuple(shape) or arr.dtype != self.dtype:
            arr = backend.workspace_empty(shape, self.dtype)
            ws.arrays[key] = arr
        return arr

    def _grad_buffers(self, cache):
        backend = cache["backend"]
        x = cache["x"]
        # an input gradient nobody reads (CPU): zero columns, so the kernels
        # skip its product (every kernel writes d_x through one GEMM)
        skip = backend.name == "cpu" and not input_grad_wanted()
        return (
            backend.empty(x.shape[:2] + (0,) if skip else x.shape, self.dtype),
            backend.empty(cache["kernel"].shape, self.dtype),
            backend.empty(cache["recurrent_kernel"].shape, self.dtype),
            backend.empty(self._bias_shape(), self.dtype),
            [backend.empty((x.shape[0], self.units), self.dtype) for _ in range(self._n_states)],
        )


class _Workspace:
    """Kernel buffers of one layer, by name (see :meth:`RNN._buffer`)."""

    __slots__ = ("arrays", "lease")

    def __init__(self):
        self.arrays = {}
        self.lease = None


class _Lease:
    """Held by a forward cache: its workspace is busy while the lease lives."""

    __slots__ = ("workspace", "__weakref__")

    def __init__(self, workspace):
        self.workspace = workspace


# layer -> its current workspace; outside the layer so that pickles and
# copies of layers never carry buffers
_WORKSPACES = weakref.WeakKeyDictionary()


_CPU = []


def _cpu_kernels():
    """The CPU kernel backend, looked up once (the streaming path's hot loop)."""
    if not _CPU:
        _CPU.append(get_backend("cpu"))
    return _CPU[0]


def _lease_workspace(layer):
    """Lease the layer's workspace for one forward call.

    A workspace whose previous lease is still alive (a cache kept for a
    later backward pass) is left to that cache, and the layer gets a new
    one; so a buffer is only reused once nothing can read it any more.
    """
    ws = _WORKSPACES.get(layer)
    if ws is None or (ws.lease is not None and ws.lease() is not None):
        ws = _Workspace()
        _WORKSPACES[layer] = ws
    lease = _Lease(ws)
    ws.lease = weakref.ref(lease)
    return lease


def _block_diagonal(matrix, n_blocks):
    """``(R, n*C)`` -> block-diagonal ``(n*R, n*C)`` with column block k at (k, k)."""
    rows, cols = matrix.shape
    width = cols // n_blocks
    out = np.zeros((n_blocks * rows, cols), dtype=matrix.dtype)
    for k in range(n_blocks):
        out[k * rows : (k + 1) * rows, k * width : (k + 1) * width] = matrix[
            :, k * width : (k + 1) * width
        ]
    return out


def _diagonal_blocks(matrix, n_blocks):
    """Inverse of :func:`_block_diagonal` (for gradients): keep the diagonal blocks."""
    rows = matrix.shape[0] // n_blocks
    width = matrix.shape[1] // n_blocks
    return np.concatenate(
        [matrix[k * rows : (k + 1) * rows, k * width : (k + 1) * width] for k in range(n_blocks)],
        axis=1,
    )


def as_first(states):
    return states[0] if isinstance(states, (list, tuple)) else states


class SimpleRNN(RNN):
    """Fully-connected RNN: ``h_t = activation(x_t W + h_{t-1} R + b)``.

    Weights (Keras layout): ``kernel (features, units)``, ``recurrent_kernel
    (units, units)``, ``bias (units,)``. See :class:`RNN` for the arguments.
    """

    def _kernel_forward(
        self, backend, x, kernel, recurrent, bias, mask, states, rec_mask, rec_dropout, out
    ):
        n_batch, n_steps, _ = x.shape
        gates = self._buffer(backend, "gates", (n_batch, n_steps, self.units))
        (h_prev,), h_used = self._step_buffers(backend, x, 1, rec_mask, rec_dropout)
        h_final = backend.empty((n_batch, self.units), self.dtype)
        backend.simple_rnn.simple_rnn_forward(
            x, kernel, recurrent, bias, mask, states[0], rec_mask,
            self._activation_code, self.go_backwards, self.zero_output_for_mask,
            out, gates, h_prev, h_used, h_final, backward_follows=not outputs_only(),
            step_follows=self.stateful,
        )  # fmt: skip
        return [h_final], (gates, h_used)

    def _kernel_step(self, x, out):
        return _cpu_kernels().simple_rnn._simple_rnn_step(
            x, self.kernel, self.recurrent_kernel, self._bias_or_zeros(), self._states[0],
            self._activation_code, out,
        )  # fmt: skip

    def _kernel_backward(self, cache, d_out, d_states):
        x = cache["x"]
        gates, h_used = cache["caches"]
        d_x, d_kernel, d_rec, d_bias, (d_h0,) = self._grad_buffers(cache)
        d_pre = self._buffer(cache["backend"], "d_gates", gates.shape, cache["workspace"])
        cache["backend"].simple_rnn.simple_rnn_backward(
            x, cache["kernel"], cache["recurrent_kernel"], cache["mask"], cache["rec_mask"],
            self._activation_code, self.go_backwards, self.zero_output_for_mask,
            gates, h_used, d_out, d_states[0],
            d_pre, d_x, d_kernel, d_rec, d_bias, d_h0,
        )  # fmt: skip
        return d_x, d_kernel, d_rec, d_bias, [d_h0]


class LSTM(RNN):
    """Long short-term memory layer (Keras gate order i, f, c, o).

    Weights (Keras layout): ``kernel (features, 4*units)``, ``recurrent_kernel
    (units, 4*units)``, ``bias (4*units,)``. States ``[h, c]``.

    Parameters
    ----------
    units : int
    activation : str, default="tanh"
    recurrent_activation : str, default="sigmoid"
    unit_forget_bias : bool, default=True
        Initialise the forget-gate bias to ones (the rest by ``bias_initializer``).
    **kwargs
        The other arguments of :class:`RNN`.
    """

    _n_gates = 4
    _n_states = 2

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 unit_forget_bias=True, **kwargs):  # fmt: skip
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        self._recurrent_code = recurrent_activation_code(
            recurrent_activation, "recurrent_activation"
        )
        self.unit_forget_bias = bool(unit_forget_bias)

    def _initial_bias(self):
        bias = super()._initial_bias()
        if self.unit_forget_bias:
            bias[self.units : 2 * self.units] = 1.0
        return bias

    def _kernel_forward(
        self, backend, x, kernel, recurrent, bias, mask, states, rec_mask, rec_dropout, out
    ):
        n_batch = x.shape[0]
        h_final = backend.empty((n_batch, self.units), self.dtype)
        c_final = backend.empty((n_batch, self.units), self.dtype)
        if backend.name == "cpu" and outputs_only() and not rec_dropout and self._fast_cells():
            # no backward pass follows: the kernel that keeps no caches
            backend.lstm.lstm_infer(
                x, kernel, recurrent, bias, mask, states[0], states[1],
                self._activation_code, self._recurrent_code, self.go_backwards,
                self.zero_output_for_mask, out, h_final, c_final,
            )  # fmt: skip
            return [h_final, c_final], None
        # the CPU kernels keep time-major caches (T, B, .), the CUDA ones (B, T, .)
        time_major = backend.lstm.TIME_MAJOR
        gates = self._buffer(backend, "gates", self._cache_steps(x, time_major) + (4 * self.units,))
        (h_prev, c_prev, c_act), h_used = self._step_buffers(
            backend, x, 3, rec_mask, rec_dropout, time_major
        )
        backend.lstm.lstm_forward(
            x, kernel, recurrent, bias, mask, states[0], states[1], rec_mask,
            self._activation_code, self._recurrent_code, self.go_backwards,
            self.zero_output_for_mask,
            out, gates, h_prev, h_used, c_prev, c_act, h_final, c_final,
            backward_follows=not outputs_only(), step_follows=self.stateful,
        )  # fmt: skip
        return [h_final, c_final], (gates, h_used, c_prev, c_act)

    def _kernel_step(self, x, out):
        kernels = _cpu_kernels().lstm
        h, c = self._states
        kernel, recurrent, bias = self.kernel, self.recurrent_kernel, self._bias_or_zeros()
        if self._fast_cells():
            return kernels._lstm_step_fast(x, kernel, recurrent, bias, h, c, out)
        return kernels._lstm_step(
            x, kernel, recurrent, bias, h, c, self._activation_code, self._recurrent_code, out
        )

    def _kernel_backward(self, cache, d_out, d_states):
        x = cache["x"]
        gates, h_used, c_prev, c_act = cache["caches"]
        d_x, d_kernel, d_rec, d_bias, (d_h0, d_c0) = self._grad_buffers(cache)
        d_gates = self._buffer(cache["backend"], "d_gates", gates.shape, cache["workspace"])
        cache["backend"].lstm.lstm_backward(
            x, cache["kernel"], cache["recurrent_kernel"], cache["mask"], cache["rec_mask"],
            self._activation_code, self._recurrent_code, self.go_backwards,
            self.zero_output_for_mask,
            gates, h_used, c_prev, c_act, d_out, d_states[0], d_states[1],
            d_gates, d_x, d_kernel, d_rec, d_bias, d_h0, d_c0,
        )  # fmt: skip
        return d_x, d_kernel, d_rec, d_bias, [d_h0, d_c0]


class GRU(RNN):
    """Gated recurrent unit layer (Keras gate order z, r, h).

    Weights (Keras layout): ``kernel (features, 3*units)``, ``recurrent_kernel
    (units, 3*units)``, ``bias (2, 3*units)`` (input and recurrent biases)
    when ``reset_after=True`` (the default), ``(3*units,)`` otherwise.

    Parameters
    ----------
    units : int
    activation : str, default="tanh"
    recurrent_activation : str, default="sigmoid"
    reset_after : bool, default=True
        Apply the reset gate after the recurrent product (cuDNN convention).
    **kwargs
        The other arguments of :class:`RNN`.
    """

    _n_gates = 3

    def __init__(self, units, activation="tanh", recurrent_activation="sigmoid",
                 reset_after=True, **kwargs):  # fmt: skip
        super().__init__(units, activation=activation, **kwargs)
        self.recurrent_activation = recurrent_activation
        self._recurrent_code = recurrent_activation_code(
            recurrent_activation, "recurrent_activation"
        )
        self.reset_after = bool(reset_after)

    def _bias_shape(self):
        width = 3 * self.units
        return (2, width) if self.reset_after else (width,)

    def _kernel_forward(
        self, backend, x, kernel, recurrent, bias, mask, states, rec_mask, rec_dropout, out
    ):
        n_batch, n_steps, _ = x.shape
        gates = self._buffer(backend, "gates", (n_batch, n_steps, 3 * self.units))
        (h_prev, extra), h_used = self._step_buffers(backend, x, 2, rec_mask, rec_dropout)
        h_final = backend.empty((n_batch, self.units), self.dtype)
        kernels = backend.gru
        forward = kernels.gru_forward if self.reset_after else kernels.gru_forward_reset_before
        forward(
            x, kernel, recurrent, bias, mask, states[0], rec_mask,
            self._activation_code, self._recurrent_code, self.go_backwards,
            self.zero_output_for_mask,
            out, gates, h_prev, h_used, extra, h_final, backward_follows=not outputs_only(),
            step_follows=self.stateful,
        )  # fmt: skip
        return [h_final], (gates, h_prev, h_used, extra)

    def _kernel_step(self, x, out):
        kernels = _cpu_kernels().gru
        h = self._states[0]
        kernel, recurrent, bias = self.kernel, self.recurrent_kernel, self._bias_or_zeros()
        if self.reset_after and self._fast_cells():
            return kernels._gru_step_fast(x, kernel, recurrent, bias, h, out)
        step = kernels._gru_step if self.reset_after else kernels._gru_step_reset_before
        return step(x, kernel, recurrent, bias, h, self._activation_code, self._recurrent_code, out)

    def _kernel_backward(self, cache, d_out, d_states):
        x = cache["x"]
        gates, h_prev, h_used, extra = cache["caches"]
        d_x, d_kernel, d_rec, d_bias, (d_h0,) = self._grad_buffers(cache)
        backend = cache["backend"]
        d_gates = self._buffer(backend, "d_gates", gates.shape, cache["workspace"])
        common = (
            x, cache["kernel"], cache["recurrent_kernel"], cache["mask"], cache["rec_mask"],
            self._activation_code, self._recurrent_code, self.go_backwards,
            self.zero_output_for_mask, gates, h_prev, h_used, extra, d_out, d_states[0],
        )  # fmt: skip
        if self.reset_after:
            backend.gru.gru_backward(
                *common, d_gates, self._buffer(backend, "d_rec", gates.shape, cache["workspace"]),
                d_x, d_kernel, d_rec, d_bias, d_h0,
            )  # fmt: skip
        else:
            backend.gru.gru_backward_reset_before(
                *common, d_gates, d_x, d_kernel, d_rec, d_bias, d_h0
            )
        return d_x, d_kernel, d_rec, d_bias, [d_h0]
