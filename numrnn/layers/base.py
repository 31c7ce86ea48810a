"""Layer base class: weights, build, the call/vjp protocol, input checks.

Every layer implements two private methods that models chain:

- ``_forward(x, mask, initial_state, training)`` returns ``(outputs, cache)``
  where ``outputs`` is a list in Keras order;
- ``_backward(cache, cotangents)`` returns ``(weight_grads, input_grad,
  initial_state_grads)``, with ``cotangents`` one array per output.

The public ``__call__``/``vjp``/``value_and_vjp`` wrap them.
"""

import contextvars
import itertools
import sys
from collections import defaultdict

import numpy as np

from numrnn import config

_NAME_COUNTERS = defaultdict(itertools.count)


class _ScopedFlag:
    """A flag that is True inside ``with flag.scope():`` for the code run there
    (a context variable: threads and nested calls each see their own)."""

    def __init__(self, name):
        self._var = contextvars.ContextVar(name, default=False)

    def scope(self):
        return _FlagScope(self._var)

    def get(self):
        return self._var.get()


class _FlagScope:
    """``with`` block of :meth:`_ScopedFlag.scope` (a class, not a generator:
    entering and leaving cost 0.4 us, not 1.2, on every layer and model call)."""

    __slots__ = ("_var", "_token")

    def __init__(self, var):
        self._var = var

    def __enter__(self):
        self._token = self._var.set(True)

    def __exit__(self, *exc_info):
        self._var.reset(self._token)
        return False


#: set while a call needs outputs only: no backward pass will read the
#: caches of the forward passes run meanwhile, so layers may skip them
_FORWARD_ONLY = _ScopedFlag("numrnn_forward_only")
#: set while the backward pass of a layer whose input gradient nobody reads
#: runs (the first layer of a model in training): it may skip that gradient
_INPUT_GRAD_UNUSED = _ScopedFlag("numrnn_input_grad_unused")


def forward_only():
    """Mark the forward passes run inside (``with forward_only():``) as outputs-only."""
    return _FORWARD_ONLY.scope()


def outputs_only():
    """Whether the forward pass running now needs no caches (inside :func:`forward_only`)."""
    return _FORWARD_ONLY.get()


def input_grad_unused():
    """Mark the backward pass run inside (``with input_grad_unused():``) as one whose
    input gradient is not read."""
    return _INPUT_GRAD_UNUSED.scope()


def input_grad_wanted():
    """False inside :func:`input_grad_unused`: the running backward pass may return None."""
    return not _INPUT_GRAD_UNUSED.get()


def _snake_case(name):
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


def _default_name(cls):
    base = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}.get(
        cls.__name__, _snake_case(cls.__name__)
    )
    n = next(_NAME_COUNTERS[base])
    return base if n == 0 else f"{base}_{n}"


def on_device(array):
    """True when ``array`` is a CUDA device array (of numba's or its simulator's).

    Never imports ``numba.cuda``: without it loaded no device array exists.
    """
    if array is None or isinstance(array, np.ndarray):
        return False
    common = sys.modules.get("numrnn.kernels.cuda._common")
    return common is not None and common.is_device_array(array)


def as_list(value):
    """Wrap a single array in a list; pass lists and tuples through as lists."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def unwrap(outputs):
    """A single output as an array, several as a list (Keras's convention)."""
    return outputs[0] if len(outputs) == 1 else outputs


def check_rate(value, name):
    """Validate a dropout-style rate in [0, 1)."""
    if not isinstance(value, (int, float, np.floating)) or not 0.0 <= float(value) < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}.")
    return float(value)


def check_positive_int(value, name):
    """Validate a strictly positive integer hyperparameter."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


class Layer:
    """Base class of numrnn layers.

    Parameters
    ----------
    dtype : str or numpy dtype, optional
        Float dtype of weights and outputs; defaults to ``numrnn.config.floatx()``
        at construction time.
    name : str, optional
        Layer name, shown by ``Sequential.summary()``.
    """

    #: whether the layer consumes a mask (else it ignores and passes it on)
    supports_masking = True
    #: whether ``_backward`` skips the input gradient inside
    #: :func:`input_grad_unused` (returning None for it)
    _skips_unused_input_grad = False

    def __init__(self, dtype=None, name=None):
        self.dtype = config.resolve_dtype(dtype)
        self.name = name if name is not None else _default_name(type(self))
        self.built = False
        self.input_shape = None
        self._weights = []

    # -- weights -----------------------------------------------------------
    @property
    def weights(self):
        """The live weight arrays, in ``get_weights()`` order."""
        return list(self._weights)

    @property
    def trainable_weights(self):
        """Same as :attr:`weights` (every numrnn weight is trainable)."""
        return self.weights

    def get_weights(self):
        """Return copies of the weights in Keras order."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Set the weights from a list in Keras order and shapes.

        The layer must be built (call ``build(input_shape)`` first).
        """
        current = self.weights
        if not self.built:
            raise ValueError(
                f"Layer {self.name!r} is not built yet: call build(input_shape) "
                "or call the layer on data before set_weights()."
            )
        weights = list(weights)
        if len(weights) != len(current):
            raise ValueError(
                f"Layer {self.name!r} expects {len(current)} weight arrays, got {len(weights)}."
            )
        for i, (dst, src) in enumerate(zip(current, weights)):
            src = np.asarray(src)
            if src.shape != dst.shape:
                raise ValueError(
                    f"Weight {i} of layer {self.name!r} has shape {src.shape}, "
                    f"expected {dst.shape}."
                )
            dst[...] = src

    def get_config(self):
        """Constructor arguments, enough to rebuild an unbuilt copy of the layer.

        Returns
        -------
        dict
            JSON-friendly values keyed by constructor argument name; the
            base class holds ``dtype`` and ``name``, subclasses add theirs.
        """
        return {"dtype": self.dtype.name, "name": self.name}

    def count_params(self):
        """Number of scalar weights (the layer must be built)."""
        if not self.built:
            raise ValueError(f"Layer {self.name!r} is not built: its size is not known yet.")
        return int(sum(w.size for w in self.weights))

    # -- shapes ------------------------------------------------------------
    def build(self, input_shape):
        """Create the weights for inputs of ``input_shape`` (batch may be None)."""
        self.input_shape = tuple(input_shape)
        self.built = True

    @property
    def output_shape(self):
        """Output shape for the built input shape (batch dimension None)."""
        if not self.built:
            raise ValueError(f"Layer {self.name!r} is not built yet.")
        return self.compute_output_shape((None,) + tuple(self.input_shape[1:]))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def compute_mask(self, inputs, mask):
        """Mask for the outputs: by default the input mask passes through."""
        return mask

    def _ensure_built(self, x):
        if not self.built:
            self.build(np.shape(x))

    # -- calls -------------------------------------------------------------
    def _stream_step(self, x):
        """The outputs of an inference call on ``x`` (no mask, no initial
        state) by a low-latency shortcut, or None where the layer has none
        for ``x``: then the full forward pass runs. Stateful recurrent
        layers fed one step at a time have one."""
        return None

    def __call__(self, x, mask=None, initial_state=None, training=False):
        with forward_only():
            outputs, _ = self._forward_checked(x, mask, initial_state, training)
        return unwrap(outputs)

    def vjp(self, x, cotangents, mask=None, initial_state=None, training=False, input_grad=True):
        """Vector-Jacobian product of the layer at ``x``.

        Parameters
        ----------
        x : ndarray
            The input.
        cotangents : list of ndarray
            One array per output, in output order, each of its output's shape.
        mask, initial_state, training
            As for calling the layer.
        input_grad : bool, default=True
            False when the input gradient is not wanted: it is returned as
            None, and the recurrent layers skip computing it.

        Returns
        -------
        weight_grads : list of ndarray
            Parallel to ``get_weights()``.
        input_grad : ndarray or None
            None for integer inputs, and with ``input_grad=False``.
        initial_state_grads : list of ndarray or None
            None when no initial state was given.
        """
        _, grads = self.value_and_vjp(
            x, lambda outputs: cotangents, mask=mask, initial_state=initial_state,
            training=training, input_grad=input_grad,
        )  # fmt: skip
        return grads

    def value_and_vjp(
        self, x, cotangent_fn, mask=None, initial_state=None, training=False, input_grad=True
    ):
        """Forward pass and its vjp in one go (dropout masks drawn once).

        ``cotangent_fn(outputs)`` receives the outputs (an array, or a list
        when several) and returns the list of cotangents. Returns
        ``(outputs, (weight_grads, input_grad, initial_state_grads))``;
        ``input_grad`` is None with ``input_grad=False`` (see :meth:`vjp`).
        """
        outputs, cache = self._forward_checked(x, mask, initial_state, training)
        cotangents = check_cotangents(cotangent_fn(unwrap(outputs)), outputs, self.name)
        return unwrap(outputs), self._backward_wanting(cache, cotangents, input_grad)

    def _backward_wanting(self, cache, cotangents, input_grad):
        """:meth:`_backward`, told whether its input gradient is read."""
        if input_grad or not self._skips_unused_input_grad:
            grads = self._backward(cache, cotangents)
        else:
            with input_grad_unused():
                grads = self._backward(cache, cotangents)
        weight_grads, d_x, state_grads = grads
        return weight_grads, d_x if input_grad else None, state_grads

    def _forward_checked(self, x, mask, initial_state, training):
        self._ensure_built(x)
        return self._forward(x, mask, as_list(initial_state), bool(training))

    def _forward(self, x, mask, initial_state, training):
        raise NotImplementedError

    def _backward(self, cache, cotangents):
        raise NotImplementedError

    def reset_states(self):
        """Reset the states of stateful sub-layers (a no-op for stateless layers)."""

    # -- device-resident training ---------------------------------------------
    def _device_support(self):
        """None when the layer can run on device arrays in a resident fit, else why not.

        Layers that take device inputs (recurrent layers, Bidirectional,
        Dense, TimeDistributed, Dropout) override this; see
        :meth:`numrnn.Sequential.resident`.
        """
        return f"{type(self).__name__} layers have no device path"

    def _device_constants(self):
        """Host arrays, other than the weights, that a resident fit keeps on the device."""
        return []

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r}>"


def check_cotangents(cotangents, outputs, name):
    """Validate cotangents against outputs: one array per output, same shapes."""
    cotangents = as_list(cotangents)
    if cotangents is None or len(cotangents) != len(outputs):
        raise ValueError(
            f"{name}: expected {len(outputs)} cotangent array(s), one per output, "
            f"got {0 if cotangents is None else len(cotangents)}."
        )
    result = []
    for i, (cot, out) in enumerate(zip(cotangents, outputs)):
        cot = np.asarray(cot)
        if cot.shape != out.shape:
            raise ValueError(
                f"{name}: cotangent {i} has shape {cot.shape}, expected the output's {out.shape}."
            )
        result.append(np.ascontiguousarray(cot, dtype=out.dtype))
    return result


def check_float_input(x, dtype, name, ndim=None, n_features=None):
    """Canonicalise a float input: an ndarray of ``dtype``, C-contiguous.

    Raises TypeError for non-numeric data and ValueError for a wrong ndim, a
    feature count other than the built one, or NaN/inf (when validation is on).
    """
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name}: input could not be converted to an array ({exc}).") from exc
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numeric input, got dtype {arr.dtype}.")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(
            f"{name}: expected a {ndim}-D input (batch, timesteps, features), "
            f"got shape {arr.shape}."
        )
    if n_features is not None and arr.shape[-1] != n_features:
        raise ValueError(
            f"{name}: input has {arr.shape[-1]} features, but the layer was built for {n_features}."
        )
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if config.input_validation() and not np.isfinite(arr).all():
        raise ValueError(f"{name}: input contains NaN or infinity.")
    return arr


def check_mask(mask, batch_shape, name):
    """Canonicalise a mask to a C-contiguous bool array of ``batch_shape``."""
    if mask is None:
        return None
    arr = np.asarray(mask)
    if arr.shape != tuple(batch_shape):
        raise ValueError(
            f"{name}: mask has shape {arr.shape}, expected (batch, timesteps) = "
            f"{tuple(batch_shape)}."
        )
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: mask must be boolean, got dtype {arr.dtype}.")
        arr = arr != 0
    return np.ascontiguousarray(arr)
