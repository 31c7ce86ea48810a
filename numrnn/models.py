"""``Sequential``: a stack of layers with mask propagation and a vjp."""

from contextlib import contextmanager

import numpy as np

from numrnn.kernels import check_device, get_backend
from numrnn.layers.base import (
    Layer,
    as_list,
    check_cotangents,
    check_float_input,
    check_mask,
    forward_only,
    on_device,
    outputs_only,
    unwrap,
)
from numrnn.layers.core import Input


class Sequential:
    """A linear stack of numrnn layers, like ``keras.Sequential``.

    Parameters
    ----------
    layers : list of Layer, optional
        The layers, optionally preceded by an :class:`~numrnn.layers.Input`
        giving the input shape.
    name : str, default="sequential"
    device : {"cpu", "cuda", "auto"}, optional
        Where the recurrent layers run (see :class:`~numrnn.layers.RNN`). When
        given, it is set on every layer that has a ``device`` (the recurrent
        layers and ``Bidirectional``), including layers added later with
        :meth:`add`, overriding their own setting; None (the default) leaves
        each layer's ``device`` alone. In an ordinary call Dense, Embedding
        and the other layers compute with numpy on the host, and on CUDA the
        recurrent layers move their inputs to the GPU and their outputs back
        once per call. Inside :meth:`resident` (the estimators' CUDA fits)
        the weights stay on the GPU and Dense, Dropout, TimeDistributed and
        Bidirectional run there too.

    Notes
    -----
    ``mask`` and ``initial_state`` go to the first layer. Masks propagate as in
    Keras 3.15: ``Embedding(mask_zero=True)`` and ``Masking`` create one,
    recurrent layers pass it on only with ``return_sequences`` (unreversed
    even after ``go_backwards``), Dense/Dropout/TimeDistributed pass it on.
    """

    def __init__(self, layers=None, name="sequential", device=None):
        self.name = name
        self.layers = []
        self._input_shape = None
        self._device = None if device is None else check_device(device)
        for layer in layers or []:
            self.add(layer)

    @property
    def device(self):
        """The device set on the layers, or None when each layer keeps its own.

        Setting it (to ``"cpu"``, ``"cuda"`` or ``"auto"``) sets it on every
        layer that has a ``device``.
        """
        return self._device

    @device.setter
    def device(self, value):
        self._device = None if value is None else check_device(value)
        if self._device is not None:
            for layer in self.layers:
                _set_device(layer, self._device)

    def add(self, layer):
        """Append a layer (or an ``Input`` as the first element)."""
        if isinstance(layer, Input):
            if self.layers:
                raise ValueError("An Input can only be the first element of a Sequential.")
            self._input_shape = layer.batch_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential expects numrnn layers, got {type(layer).__name__}.")
        if self._device is not None:
            _set_device(layer, self._device)
        self.layers.append(layer)
        if self._input_shape is not None:
            self.build(self._input_shape)

    # -- building ------------------------------------------------------------
    @property
    def built(self):
        return bool(self.layers) and all(layer.built for layer in self.layers)

    def build(self, input_shape):
        """Build every layer for inputs of ``input_shape`` (batch may be None)."""
        shape = tuple(input_shape)
        self._input_shape = shape
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            out = layer.compute_output_shape(shape)
            if isinstance(out, list):
                raise ValueError(
                    f"Layer {layer.name!r} has several outputs; a Sequential needs "
                    "single-output layers (return_state=False, merge_mode not None)."
                )
            shape = (shape[0],) + tuple(out[1:])
        return self

    @property
    def input_shape(self):
        return self._input_shape

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.layers else None

    # -- weights -------------------------------------------------------------
    @property
    def weights(self):
        """The live weight arrays of all layers, in ``get_weights()`` order."""
        return [w for layer in self.layers for w in layer.weights]

    trainable_weights = weights

    def get_weights(self):
        """Copies of every layer's weights, layer after layer, in Keras order.

        Inside :meth:`resident` the device weights are copied to the host first.
        """
        residency = getattr(self, "_residency", None)
        if residency is not None:
            residency.sync_to_host()
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set all weights from a list in ``get_weights()`` order."""
        self._require_built()
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(f"Model expects {expected} weight arrays, got {len(weights)}.")
        start = 0
        for layer in self.layers:
            n = len(layer.weights)
            layer.set_weights(weights[start : start + n])
            start += n
        residency = getattr(self, "_residency", None)
        if residency is not None:
            residency.push_to_device()

    def count_params(self):
        """Total number of scalar weights."""
        self._require_built()
        return sum(layer.count_params() for layer in self.layers)

    def reset_states(self):
        """Reset the states of every stateful layer."""
        for layer in self.layers:
            layer.reset_states()

    def _require_built(self):
        if not self.built:
            raise ValueError(
                "The model is not built: call build(input_shape), start it with an "
                "Input(shape=...), or call it on data first."
            )

    # -- calls ---------------------------------------------------------------
    def _forward(self, x, mask, initial_state, training):
        if not self.layers:
            raise ValueError("The Sequential model has no layers.")
        if not self.built:
            self.build(np.shape(x))
        caches = []
        state = as_list(initial_state)
        # an outputs-only inference call lets each layer take its single-step
        # shortcut (a stateful recurrent layer fed one step), as its own call would
        stepping = not training and outputs_only()
        for layer in self.layers:
            outputs = None
            if stepping and mask is None and state is None:
                outputs = layer._stream_step(x)
            if outputs is None:
                outputs, cache = layer._forward(x, mask, state, bool(training))
            else:
                cache = None
            mask = layer.compute_mask(x, mask)
            x = outputs[0]
            state = None
            caches.append(cache)
        return x, caches

    def __call__(self, x, mask=None, initial_state=None, training=False):
        residency = getattr(self, "_residency", None)
        if residency is not None and not on_device(x):
            return residency.call(x, mask=mask, initial_state=initial_state, training=training)
        with forward_only():
            return self._forward(x, mask, initial_state, training)[0]

    def predict(self, x, batch_size=32, mask=None):
        """Outputs for ``x`` in batches of ``batch_size`` (inference mode)."""
        x = np.asarray(x)
        if batch_size is None or batch_size >= len(x):
            return self(x, mask=mask)
        parts = []
        for start in range(0, len(x), batch_size):
            stop = start + batch_size
            part_mask = None if mask is None else np.asarray(mask)[start:stop]
            parts.append(self(x[start:stop], mask=part_mask))
        return np.concatenate(parts, axis=0)

    def value_and_vjp(
        self, x, cotangent_fn, mask=None, initial_state=None, training=False, input_grad=True
    ):
        """Forward pass and its vjp in one go (dropout masks drawn once).

        ``cotangent_fn(output)`` returns the cotangent of the output (an
        array, or a list holding one array). Returns ``(output, (weight_grads,
        input_grad, initial_state_grads))``. With ``input_grad=False`` the
        input gradient is None, and a recurrent first layer skips computing it
        (as a training loop wants: its input is data).
        """
        output, caches = self._forward(x, mask, initial_state, training)
        (cotangent,) = check_cotangents(cotangent_fn(output), [output], self.name)
        weight_grads = []
        grad = cotangent
        state_grads = None
        first = self.layers[0]
        for layer, cache in zip(reversed(self.layers), reversed(caches)):
            wanted = input_grad or layer is not first
            grads, grad, state_grads = layer._backward_wanting(cache, [grad], wanted)
            weight_grads[:0] = grads
        return output, (weight_grads, grad, state_grads)

    def vjp(self, x, cotangents, mask=None, initial_state=None, training=False, input_grad=True):
        """Vector-Jacobian product; same contract as :meth:`Layer.vjp`."""
        return self.value_and_vjp(
            x, lambda _: cotangents, mask, initial_state, training, input_grad
        )[1]

    # -- device residency ----------------------------------------------------
    def device_support(self):
        """Whether :meth:`resident` can run this model, and if not, why.

        Returns
        -------
        str or None
            None when every layer has a device path (recurrent layers that
            are not stateful and return no states, with ``device`` resolving
            to CUDA; Bidirectional with a merge mode; Dense; Dropout;
            TimeDistributed of those), else a sentence naming the first layer
            that has none (Embedding, Masking, custom layers, ...).
        """
        if not self.layers:
            return "the model has no layers"
        for layer in self.layers:
            reason = layer._device_support()
            if reason is not None:
                return reason
        return None

    @contextmanager
    def resident(self):
        """Context manager: keep the weights on the CUDA device for a whole fit.

        On entry every weight is uploaded once to a device twin; inside,
        layers fed device arrays use the twins and keep outputs and
        gradients on the device (see :class:`Residency`). On exit, also on
        an exception, the twins are copied back into the host arrays, which
        are then current again (for pickling, ``get_weights`` or a CPU
        predict).

        Yields
        ------
        Residency

        Raises
        ------
        ValueError
            If a layer has no device path (see :meth:`device_support`), the
            model is not built, or it is already resident.
        """
        self._require_built()
        if getattr(self, "_residency", None) is not None:
            raise ValueError(f"{self.name} is already resident on the device.")
        reason = self.device_support()
        if reason is not None:
            raise ValueError(f"{self.name} cannot be trained on the device: {reason}.")
        backend = get_backend("cuda")
        params = self.trainable_weights
        constants = [c for layer in self.layers for c in layer._device_constants()]
        with backend.resident(params + constants) as twins:
            self._residency = Residency(self, backend, params, twins[: len(params)])
            try:
                yield self._residency
            finally:
                self._residency = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_residency", None)  # device twins never travel with the model
        return state

    # -- display -------------------------------------------------------------
    def summary(self, print_fn=None):
        """Print a Keras-style table of layers, output shapes and parameter counts."""
        self._require_built()
        rows = [
            (f"{layer.name} ({type(layer).__name__})", str(layer.output_shape),
             f"{layer.count_params():,}")
            for layer in self.layers
        ]  # fmt: skip
        headers = ("Layer (type)", "Output Shape", "Param #")
        widths = [max(len(r[i]) for r in rows + [headers]) + 2 for i in range(3)]
        line = "".join(h.ljust(w) for h, w in zip(headers, widths))
        rule = "-" * len(line)
        text = [f'Model: "{self.name}"', rule, line, rule]
        text += ["".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        text += [rule, f"Total params: {self.count_params():,}", rule]
        (print_fn or print)("\n".join(text))


class Residency:
    """The device twins of a :class:`Sequential`'s weights during :meth:`Sequential.resident`.

    Parameters
    ----------
    model : Sequential
    backend : numrnn.kernels.cuda.CudaBackend
    params : list of ndarray
        The host weights, in ``get_weights()`` order.
    twins : list of device arrays
        Their device twins, parallel to ``params``.
    """

    def __init__(self, model, backend, params, twins):
        self.model = model
        self.backend = backend
        self.params = list(params)
        self.twins = list(twins)
        self._step_buffers = None

    @property
    def ops(self):
        """The device operations (``numrnn.kernels.cuda.ops``)."""
        return self.backend.ops

    def snapshot(self):
        """Device copies of the current device weights (nothing crosses to the host)."""
        return [self.ops.copy_new(t) for t in self.twins]

    def step_snapshot(self):
        """Like :meth:`snapshot`, into device buffers reused from call to call.

        For the rollback of one training step: the previous step snapshot is
        overwritten.
        """
        if self._step_buffers is None:
            self._step_buffers = [self.ops.empty(t.shape, t.dtype) for t in self.twins]
        for buffer, twin in zip(self._step_buffers, self.twins, strict=True):
            self.ops.copy_(buffer, twin)
        return self._step_buffers

    def restore(self, snapshot):
        """Copy a :meth:`snapshot` back into the device weights, on the device."""
        if len(snapshot) != len(self.twins):
            raise ValueError(
                f"A snapshot of {len(snapshot)} arrays cannot restore {len(self.twins)} weights."
            )
        for twin, saved in zip(self.twins, snapshot, strict=True):
            self.ops.copy_(twin, saved)

    def sync_to_host(self):
        """Copy the device weights into the host arrays (a transfer of every weight)."""
        for param, twin in zip(self.params, self.twins, strict=True):
            twin.copy_to_host(param)

    def push_to_device(self):
        """Copy the host arrays into the device weights (a transfer of every weight)."""
        for param, twin in zip(self.params, self.twins, strict=True):
            twin.copy_to_device(param)

    def upload(self, array, dtype=None):
        """One batch input on the device (a C-contiguous copy in ``dtype``)."""
        if array is None or on_device(array):
            return array
        return self.backend.to_device(np.ascontiguousarray(array, dtype=dtype))

    def forward(self, x, mask=None, training=False):
        """Forward pass of device ``x`` (and mask); returns ``(output, caches)``."""
        return self.model._forward(x, mask, None, training)

    def value_and_grads(self, x, cotangent_fn, mask=None, training=True):
        """Forward and backward pass on the device.

        Parameters
        ----------
        x : device array
        cotangent_fn : callable
            ``cotangent_fn(output)`` receives the device output and returns
            its device cotangent.
        mask : device bool array, optional
        training : bool, default=True

        Returns
        -------
        output : device array
        grads : list of device arrays
            Parallel to the model's weights.
        """
        output, caches = self.forward(x, mask, training)
        grad = cotangent_fn(output)
        grads = []
        for layer, cache in zip(reversed(self.model.layers), reversed(caches)):
            layer_grads, grad, _ = layer._backward(cache, [grad])
            grads[:0] = layer_grads
        return output, grads

    def call(self, x, mask=None, initial_state=None, training=False):
        """The model on host ``x``, computed with the device weights; host output.

        Only ``x``, the mask and the output cross (this serves ``predict``
        during a resident fit, e.g. for validation scores).
        """
        if initial_state is not None:
            raise ValueError("A resident model takes no initial_state.")
        first = self.model.layers[0]
        x = check_float_input(x, first.dtype, self.model.name)
        mask = check_mask(mask, x.shape[:2], self.model.name)
        output, _ = self.forward(self.upload(x), self.upload(mask), training)
        return self.backend.to_host(output)


def _set_device(layer, device):
    if hasattr(layer, "device"):
        layer.device = device
    inner = getattr(layer, "layer", None)  # TimeDistributed
    if inner is not None and hasattr(inner, "device"):
        inner.device = device


__all__ = ["Residency", "Sequential", "unwrap"]
