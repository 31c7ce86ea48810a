"""Bidirectional wrapper with Keras 3 semantics."""

import numpy as np

from numrnn.kernels import get_backend
from numrnn.layers.base import Layer, on_device
from numrnn.layers.recurrent import RNN

MERGE_MODES = ("concat", "sum", "mul", "ave", None)


def _clone(layer, **overrides):
    config = layer.get_config()
    config.update(overrides)
    return type(layer)(**config)


def _derived_seed(seed):
    # A different but reproducible stream for the backward copy.
    return None if seed is None else int(np.random.SeedSequence(seed).generate_state(1)[0])


class Bidirectional(Layer):
    """Runs a recurrent layer forwards and a copy backwards, and merges them.

    As in Keras 3, the forward layer is a fresh copy of ``layer`` (same
    configuration, new weights); the backward layer is a copy with
    ``go_backwards`` flipped unless ``backward_layer`` is given. When the
    layer returns sequences, both directions emit zeros at masked steps
    (``zero_output_for_mask``), and the backward sequence is flipped back to
    input order before merging.

    Parameters
    ----------
    layer : SimpleRNN, LSTM or GRU
    merge_mode : {"concat", "sum", "mul", "ave", None}, default="concat"
        How to combine the two outputs; None returns both.
    backward_layer : SimpleRNN, LSTM or GRU, optional
        Used as the backward layer as given; it must have the opposite
        ``go_backwards`` and the same ``return_sequences``/``return_state``.
    dtype : str or numpy dtype, optional
        Float dtype of both directions. Defaults to ``layer.dtype``; a
        different dtype builds the forward (and derived backward) copy in it.
    name : str, optional
    device : {"cpu", "cuda", "auto"}, optional
        Where both directions run (see :class:`~numrnn.layers.RNN`). None
        (the default) keeps each direction's own ``device``: the copies of
        ``layer`` inherit ``layer.device``, a given ``backward_layer`` keeps
        its own. Setting ``bidirectional.device`` later sets both directions.

    Notes
    -----
    Outputs come in Keras order: ``[merged, forward states..., backward
    states...]`` with ``return_state``, and ``[forward, backward, states...]``
    when ``merge_mode`` is None. ``initial_state`` is a list holding the
    forward states then the backward states.
    """

    def __init__(
        self, layer, merge_mode="concat", backward_layer=None, dtype=None, name=None, device=None
    ):
        if not isinstance(layer, RNN):
            raise TypeError(
                f"Bidirectional expects a SimpleRNN, LSTM or GRU layer, got {type(layer).__name__}."
            )
        if merge_mode not in MERGE_MODES:
            raise ValueError(
                f"Unknown merge_mode {merge_mode!r}: expected one of "
                "'concat', 'sum', 'mul', 'ave' or None."
            )
        super().__init__(dtype=layer.dtype if dtype is None else dtype, name=name)
        self.merge_mode = merge_mode
        self.forward_layer = _clone(layer, name=f"forward_{layer.name}", dtype=self.dtype)
        if backward_layer is None:
            self.backward_layer = _clone(
                layer,
                dtype=self.dtype,
                go_backwards=not layer.go_backwards,
                seed=_derived_seed(layer.seed),
                name=f"backward_{layer.name}",
            )
        else:
            if not isinstance(backward_layer, RNN):
                raise TypeError(
                    "backward_layer must be a SimpleRNN, LSTM or GRU layer, got "
                    f"{type(backward_layer).__name__}."
                )
            for attr in ("return_sequences", "return_state", "stateful"):
                if getattr(backward_layer, attr) != getattr(layer, attr):
                    raise ValueError(
                        f"backward_layer.{attr} must equal the forward layer's "
                        f"({getattr(layer, attr)})."
                    )
            if backward_layer.go_backwards == layer.go_backwards:
                raise ValueError(
                    "backward_layer.go_backwards must be the opposite of the forward layer's."
                )
            if backward_layer.dtype != self.dtype:
                raise ValueError(
                    f"backward_layer has dtype {backward_layer.dtype}, but the "
                    f"Bidirectional layer runs in {self.dtype}: give both the same dtype."
                )
            self.backward_layer = backward_layer
        for sub in (self.forward_layer, self.backward_layer):
            sub.zero_output_for_mask = sub.return_sequences
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful
        if device is not None:
            self.device = device

    @property
    def device(self):
        """Device of the forward direction; setting it sets both directions."""
        return self.forward_layer.device

    @device.setter
    def device(self, value):
        self.forward_layer.device = value
        self.backward_layer.device = value

    def build(self, input_shape):
        for sub in (self.forward_layer, self.backward_layer):
            if not sub.built:
                sub.build(input_shape)
        super().build(input_shape)

    @property
    def weights(self):
        return self.forward_layer.weights + self.backward_layer.weights

    @property
    def states(self):
        if not self.stateful:
            return None
        fwd, bwd = self.forward_layer.states, self.backward_layer.states
        if fwd is None or bwd is None:
            return None
        return list(fwd) + list(bwd)

    def get_config(self):
        """Constructor arguments; the wrapped layers as ``{"class_name", "config"}``."""
        config = super().get_config()
        config["merge_mode"] = self.merge_mode
        for key, sub in (("layer", self.forward_layer), ("backward_layer", self.backward_layer)):
            config[key] = {"class_name": type(sub).__name__, "config": sub.get_config()}
        return config

    def reset_states(self):
        self.forward_layer.reset_states()
        self.backward_layer.reset_states()

    def _merged_units(self):
        f, b = self.forward_layer.units, self.backward_layer.units
        if self.merge_mode == "concat":
            return f + b
        if f != b:
            raise ValueError(
                f"merge_mode={self.merge_mode!r} needs equal units in both directions, "
                f"got {f} and {b}."
            )
        return f

    def compute_output_shape(self, input_shape):
        fwd = self.forward_layer.compute_output_shape(input_shape)
        bwd = self.backward_layer.compute_output_shape(input_shape)
        f_out, f_states = (fwd[0], fwd[1:]) if self.return_state else (fwd, [])
        b_out, b_states = (bwd[0], bwd[1:]) if self.return_state else (bwd, [])
        if self.merge_mode is None:
            outputs = [f_out, b_out]
        else:
            outputs = [tuple(f_out[:-1]) + (self._merged_units(),)]
        outputs = outputs + list(f_states) + list(b_states)
        return outputs[0] if len(outputs) == 1 else outputs

    @property
    def output_shape(self):
        shape = super().output_shape
        return shape[0] if isinstance(shape, list) else shape

    def compute_mask(self, inputs, mask):
        if isinstance(mask, list):
            mask = mask[0]
        output_mask = mask if self.return_sequences else None
        masks = [output_mask, output_mask] if self.merge_mode is None else [output_mask]
        if self.return_state:
            n_states = self.forward_layer._n_states + self.backward_layer._n_states
            masks += [None] * n_states
        return masks[0] if len(masks) == 1 else masks

    def _split_states(self, states):
        if states is None:
            return None, None
        n_fwd = self.forward_layer._n_states
        n_bwd = self.backward_layer._n_states
        if len(states) != n_fwd + n_bwd:
            raise ValueError(
                f"{self.name}: initial_state must hold {n_fwd + n_bwd} arrays "
                f"({n_fwd} forward then {n_bwd} backward), got {len(states)}."
            )
        return list(states[:n_fwd]), list(states[n_fwd:])

    def _forward(self, x, mask, initial_state, training):
        fwd_state, bwd_state = self._split_states(initial_state)
        fwd_out, fwd_cache = self.forward_layer._forward(x, mask, fwd_state, training)
        bwd_out, bwd_cache = self.backward_layer._forward(x, mask, bwd_state, training)
        y, y_rev = fwd_out[0], bwd_out[0]
        if on_device(y) or on_device(y_rev):
            return self._merge_device(fwd_out, bwd_out, fwd_cache, bwd_cache)
        if self.return_sequences:
            y_rev = np.ascontiguousarray(y_rev[:, ::-1])
        if self.merge_mode is None:
            merged = [y, y_rev]
        elif self.merge_mode == "concat":
            merged = [np.concatenate([y, y_rev], axis=-1)]
        elif self.merge_mode == "sum":
            merged = [y + y_rev]
        elif self.merge_mode == "mul":
            merged = [y * y_rev]
        else:
            merged = [(y + y_rev) / 2]
        outputs = merged + fwd_out[1:] + bwd_out[1:]
        return outputs, (fwd_cache, bwd_cache, y, y_rev)

    # -- device-resident path ---------------------------------------------------
    def _device_support(self):
        if self.merge_mode is None:
            return f"{self.name} has merge_mode=None (several outputs)"
        return self.forward_layer._device_support() or self.backward_layer._device_support()

    def _device_constants(self):
        return self.forward_layer._device_constants() + self.backward_layer._device_constants()

    def _merge_device(self, fwd_out, bwd_out, fwd_cache, bwd_cache):
        """Merge device outputs; the backward sequence is flipped inside the merge kernel."""
        if self.merge_mode is None:
            raise ValueError(
                f"{self.name}: merge_mode=None has no device path; use a merge mode, or "
                "host inputs."
            )
        backend = get_backend("cuda")
        y, y_raw = (backend.to_device(a) for a in (fwd_out[0], bwd_out[0]))
        code = backend.ops.MERGE_MODES[self.merge_mode]
        merged = backend.ops.merge(y, y_raw, self.return_sequences, code)
        outputs = [merged] + fwd_out[1:] + bwd_out[1:]
        cache = {"backend": backend, "fwd": fwd_cache, "bwd": bwd_cache, "y": y,
                 "y_raw": y_raw, "code": code}  # fmt: skip
        return outputs, cache

    def _backward_device(self, cache, cotangents):
        backend = cache["backend"]
        ops = backend.ops
        d = backend.to_device(cotangents[0])
        rest = cotangents[1:]
        d_y, d_raw = ops.merge_backward(
            d, cache["y"], cache["y_raw"], self.return_sequences, cache["code"]
        )
        n_fwd_states = self.forward_layer._n_states if self.return_state else 0
        g_f, dx_f, s_f = self.forward_layer._backward(
            cache["fwd"], [d_y] + list(rest[:n_fwd_states])
        )
        g_b, dx_b, s_b = self.backward_layer._backward(
            cache["bwd"], [d_raw] + list(rest[n_fwd_states:])
        )
        ops.add_(dx_f, dx_b)
        state_grads = None if s_f is None else s_f + s_b
        return g_f + g_b, dx_f, state_grads

    def _backward(self, cache, cotangents):
        if isinstance(cache, dict):
            return self._backward_device(cache, cotangents)
        fwd_cache, bwd_cache, y, y_rev = cache
        if self.merge_mode is None:
            d_y, d_rev = cotangents[0], cotangents[1]
            rest = cotangents[2:]
        else:
            d = cotangents[0]
            rest = cotangents[1:]
            if self.merge_mode == "concat":
                n_fwd = self.forward_layer.units
                d_y, d_rev = d[..., :n_fwd], d[..., n_fwd:]
            elif self.merge_mode == "sum":
                d_y, d_rev = d, d
            elif self.merge_mode == "mul":
                d_y, d_rev = d * y_rev, d * y
            else:
                d_y, d_rev = d / 2, d / 2
        if self.return_sequences:
            d_rev = d_rev[:, ::-1]
        n_fwd_states = self.forward_layer._n_states if self.return_state else 0
        fwd_cots = [np.ascontiguousarray(d_y)] + list(rest[:n_fwd_states])
        bwd_cots = [np.ascontiguousarray(d_rev)] + list(rest[n_fwd_states:])
        g_f, dx_f, s_f = self.forward_layer._backward(fwd_cache, fwd_cots)
        g_b, dx_b, s_b = self.backward_layer._backward(bwd_cache, bwd_cots)
        state_grads = None if s_f is None else s_f + s_b
        return g_f + g_b, dx_f + dx_b, state_grads
