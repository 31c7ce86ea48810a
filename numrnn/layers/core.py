"""Non-recurrent layers: Dense, Embedding, Masking, Dropout, TimeDistributed, Input."""

import numpy as np

from numrnn import activations
from numrnn.initializers import check_initializer, initialize
from numrnn.kernels import get_backend
from numrnn.layers.base import (
    Layer,
    check_float_input,
    check_positive_int,
    check_rate,
    on_device,
)


def _check_device_input(x, dtype, name, min_ndim=1, n_features=None):
    """Shape and dtype checks of a device input (the host checks cast instead)."""
    shape = tuple(x.shape)  # (the simulator's shapes take no negative index)
    if np.dtype(x.dtype) != dtype:
        raise TypeError(
            f"{name}: a device input must have the layer's dtype {dtype}, got {x.dtype}."
        )
    if len(shape) < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim}-D input, got shape {shape}.")
    if n_features is not None and shape[-1] != n_features:
        raise ValueError(
            f"{name}: input has {shape[-1]} features, but the layer was built for {n_features}."
        )


class Input:
    """Marks the input shape of a :class:`~numrnn.Sequential` (like ``keras.Input``).

    Parameters
    ----------
    shape : tuple
        Shape of one sample, without the batch dimension, e.g. ``(timesteps,
        features)`` (``timesteps`` may be None).
    batch_size : int, optional
        Fixed batch size (needed only by stateful layers).
    """

    def __init__(self, shape, batch_size=None):
        self.shape = tuple(shape)
        self.batch_size = batch_size

    @property
    def batch_shape(self):
        return (self.batch_size,) + self.shape


class Dense(Layer):
    """Densely connected layer on the last axis: ``activation(x @ kernel + bias)``.

    Parameters
    ----------
    units : int
    activation : str, optional
        ``linear`` (None), ``relu``, ``sigmoid``, ``tanh``, ``softmax``,
        ``hard_sigmoid`` or ``softplus``.
    use_bias : bool, default=True
    kernel_initializer : str, default="glorot_uniform"
    bias_initializer : str, default="zeros"
    seed : int, optional
        Seeds the initial weights.
    dtype, name : optional
    """

    def __init__(self, units, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 seed=None, dtype=None, name=None):  # fmt: skip
        super().__init__(dtype=dtype, name=name)
        self.units = check_positive_int(units, "units")
        self.activation = activations.check_dense_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer")
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def get_config(self):
        """Constructor arguments (see :meth:`Layer.get_config`)."""
        config = super().get_config()
        config.update(
            units=self.units,
            activation=self.activation,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            seed=self.seed,
        )
        return config

    def build(self, input_shape):
        """Create ``kernel (input_dim, units)`` and ``bias (units,)``."""
        n_in = input_shape[-1]
        if n_in is None:
            raise ValueError(f"{self.name}: the last input dimension must be known to build.")
        self.kernel = initialize(self.kernel_initializer, (n_in, self.units), self.dtype, self._rng)
        self._weights = [self.kernel]
        if self.use_bias:
            self.bias = initialize(self.bias_initializer, (self.units,), self.dtype, self._rng)
            self._weights.append(self.bias)
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def _forward(self, x, mask, initial_state, training):
        if on_device(x):
            return self._forward_device(x)
        x = check_float_input(x, self.dtype, self.name, n_features=self.kernel.shape[0])
        if x.ndim < 2:
            raise ValueError(f"{self.name}: expected at least 2-D input, got shape {x.shape}.")
        z = x @ self.kernel
        if self.use_bias:
            z += self.bias
        y = activations.apply(self.activation, z)
        return [y], (x, z, y)

    def _backward(self, cache, cotangents):
        if isinstance(cache, dict):
            return self._backward_device(cache, cotangents)
        x, z, y = cache
        dz = activations.backprop(self.activation, z, y, cotangents[0])
        n_in = x.shape[-1]
        x2 = x.reshape(-1, n_in)
        dz2 = dz.reshape(-1, self.units)
        grads = [x2.T @ dz2]
        if self.use_bias:
            grads.append(dz2.sum(axis=0))
        return grads, dz @ self.kernel.T, None

    # -- device-resident path ---------------------------------------------------
    def _device_support(self):
        return None

    def _forward_device(self, x):
        """Forward pass on a device input (weights via ``backend.to_device``)."""
        _check_device_input(x, self.dtype, self.name, 2, self.kernel.shape[0])
        backend = get_backend("cuda")
        ops = backend.ops
        shape = tuple(x.shape)
        lead = shape[:-1]
        n_rows = int(np.prod(lead))
        x2 = x.reshape(n_rows, shape[-1])
        kernel = backend.to_device(self.kernel)
        bias = backend.to_device(self.bias) if self.use_bias else None
        code = ops.DENSE_ACTIVATIONS[self.activation]
        z, y = ops.dense_forward(x2, kernel, bias, code)
        output = y if len(lead) == 1 else y.reshape(*lead, self.units)
        cache = {"backend": backend, "x": x2, "x_shape": tuple(x.shape), "kernel": kernel,
                 "z": z, "y": y, "code": code}  # fmt: skip
        return [output], cache

    def _backward_device(self, cache, cotangents):
        backend = cache["backend"]
        z = cache["z"]
        dy = backend.to_device(cotangents[0]).reshape(*z.shape)
        d_kernel, d_bias, d_x = backend.ops.dense_backward(
            cache["x"], cache["kernel"], z, cache["y"], dy, cache["code"], self.use_bias
        )
        grads = [d_kernel] + ([d_bias] if self.use_bias else [])
        return grads, d_x.reshape(*cache["x_shape"]), None


class Embedding(Layer):
    """Turns non-negative integer indices into dense vectors.

    Parameters
    ----------
    input_dim : int
        Vocabulary size (largest index + 1).
    output_dim : int
        Dimension of the vectors.
    embeddings_initializer : str, default="random_uniform"
    mask_zero : bool, default=False
        Index 0 is padding: the layer emits a mask that is False there.
    seed, dtype, name : optional
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="random_uniform",
                 mask_zero=False, seed=None, dtype=None, name=None):  # fmt: skip
        super().__init__(dtype=dtype, name=name)
        self.input_dim = check_positive_int(input_dim, "input_dim")
        self.output_dim = check_positive_int(output_dim, "output_dim")
        self.embeddings_initializer = check_initializer(
            embeddings_initializer, "embeddings_initializer"
        )
        self.mask_zero = bool(mask_zero)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def get_config(self):
        """Constructor arguments (see :meth:`Layer.get_config`)."""
        config = super().get_config()
        config.update(
            input_dim=self.input_dim,
            output_dim=self.output_dim,
            embeddings_initializer=self.embeddings_initializer,
            mask_zero=self.mask_zero,
            seed=self.seed,
        )
        return config

    def build(self, input_shape):
        """Create ``embeddings (input_dim, output_dim)``."""
        self.embeddings = initialize(
            self.embeddings_initializer, (self.input_dim, self.output_dim), self.dtype, self._rng
        )
        self._weights = [self.embeddings]
        super().build(input_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def compute_mask(self, inputs, mask):
        if not self.mask_zero:
            return None
        return np.asarray(inputs) != 0

    def _indices(self, x):
        arr = np.asarray(x)
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise ValueError(f"{self.name}: indices must be whole numbers.")
            arr = arr.astype(np.int64)
        elif arr.dtype.kind not in "iub":
            raise TypeError(f"{self.name}: expected integer indices, got dtype {arr.dtype}.")
        if arr.size and (arr.min() < 0 or arr.max() >= self.input_dim):
            raise ValueError(
                f"{self.name}: indices must lie in [0, {self.input_dim}), got "
                f"values in [{arr.min()}, {arr.max()}]."
            )
        return arr

    def _forward(self, x, mask, initial_state, training):
        idx = self._indices(x)
        return [self.embeddings[idx]], idx

    def _backward(self, cache, cotangents):
        idx = cache
        grad = np.zeros_like(self.embeddings)
        np.add.at(grad, idx.reshape(-1), cotangents[0].reshape(-1, self.output_dim))
        return [grad], None, None


class Masking(Layer):
    """Masks time steps whose features all equal ``mask_value``.

    The output mask is ``any(x != mask_value, axis=-1)``; masked steps of the
    output are zeroed, as in Keras.

    Parameters
    ----------
    mask_value : float, default=0.0
    dtype, name : optional
    """

    def __init__(self, mask_value=0.0, dtype=None, name=None):
        super().__init__(dtype=dtype, name=name)
        self.mask_value = mask_value

    def get_config(self):
        """Constructor arguments (see :meth:`Layer.get_config`)."""
        config = super().get_config()
        config["mask_value"] = self.mask_value
        return config

    def compute_mask(self, inputs, mask):
        return np.any(np.asarray(inputs) != self.mask_value, axis=-1)

    def _forward(self, x, mask, initial_state, training):
        x = np.asarray(x)
        keep = np.any(x != self.mask_value, axis=-1, keepdims=True)
        x = check_float_input(x, self.dtype, self.name)
        return [x * keep], keep

    def _backward(self, cache, cotangents):
        return [], cotangents[0] * cache, None


class Dropout(Layer):
    """Inverted dropout: in training, zero a fraction ``rate`` of the inputs and
    scale the rest by ``1 / (1 - rate)``; the identity otherwise.

    Parameters
    ----------
    rate : float
    seed : int, optional
    dtype, name : optional
    """

    def __init__(self, rate, seed=None, dtype=None, name=None):
        super().__init__(dtype=dtype, name=name)
        self.rate = check_rate(rate, "rate")
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def get_config(self):
        """Constructor arguments (see :meth:`Layer.get_config`)."""
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config

    def _forward(self, x, mask, initial_state, training):
        device = on_device(x)
        if device:
            _check_device_input(x, self.dtype, self.name)
        else:
            x = check_float_input(x, self.dtype, self.name)
        if not training or self.rate == 0.0:
            return [x], None
        scale = ((self._rng.random(x.shape) >= self.rate) / (1.0 - self.rate)).astype(self.dtype)
        if device:
            # the mask is drawn on the host (same generator, same numbers) and uploaded
            backend = get_backend("cuda")
            scale = backend.to_device(scale)
            return [backend.ops.multiply(x, scale)], scale
        return [x * scale], scale

    def _backward(self, cache, cotangents):
        if cache is None:
            return [], cotangents[0], None
        if on_device(cache):
            backend = get_backend("cuda")
            return [], backend.ops.multiply(backend.to_device(cotangents[0]), cache), None
        return [], cotangents[0] * cache, None

    def _device_support(self):
        return None


class TimeDistributed(Layer):
    """Applies a layer to every time step of a ``(batch, timesteps, ...)`` input.

    Parameters
    ----------
    layer : Layer
        The layer applied at each step (for example a :class:`Dense`).
    dtype : str or numpy dtype, optional
        Defaults to ``layer.dtype``; when given it must equal it (the wrapper
        never casts the inner layer's weights).
    name : str, optional
    """

    def __init__(self, layer, dtype=None, name=None):
        if not isinstance(layer, Layer):
            raise TypeError(f"TimeDistributed expects a numrnn layer, got {type(layer).__name__}.")
        super().__init__(dtype=layer.dtype if dtype is None else dtype, name=name)
        if self.dtype != layer.dtype:
            raise ValueError(
                f"TimeDistributed dtype {self.dtype} differs from the wrapped layer's "
                f"dtype {layer.dtype}: build the inner layer with dtype={str(self.dtype)!r}."
            )
        self.layer = layer

    def get_config(self):
        """Constructor arguments; the wrapped layer as ``{"class_name", "config"}``
        (the Keras convention)."""
        config = super().get_config()
        config["layer"] = {
            "class_name": type(self.layer).__name__,
            "config": self.layer.get_config(),
        }
        return config

    def build(self, input_shape):
        if len(input_shape) < 3:
            raise ValueError(
                f"{self.name}: expected input of at least 3 dims (batch, timesteps, ...), "
                f"got shape {tuple(input_shape)}."
            )
        if not self.layer.built:
            self.layer.build((None,) + tuple(input_shape[2:]))
        super().build(input_shape)

    @property
    def weights(self):
        return self.layer.weights

    def compute_output_shape(self, input_shape):
        inner = self.layer.compute_output_shape((None,) + tuple(input_shape[2:]))
        return tuple(input_shape[:2]) + tuple(inner[1:])

    def _forward(self, x, mask, initial_state, training):
        if not on_device(x):
            x = np.asarray(x)
        shape = tuple(x.shape)
        if len(shape) < 3:
            raise ValueError(
                f"{self.name}: expected input of at least 3 dims (batch, timesteps, ...), "
                f"got shape {shape}."
            )
        batch, steps = shape[:2]
        flat = x.reshape(*((batch * steps,) + shape[2:]))
        outputs, cache = self.layer._forward(flat, None, None, training)
        y = outputs[0]
        return [y.reshape(*((batch, steps) + tuple(y.shape)[1:]))], (cache, shape)

    def _backward(self, cache, cotangents):
        inner_cache, x_shape = cache
        d = cotangents[0]
        d_flat = d.reshape(*((x_shape[0] * x_shape[1],) + tuple(d.shape)[2:]))
        grads, d_x, _ = self.layer._backward(inner_cache, [d_flat])
        return grads, None if d_x is None else d_x.reshape(*x_shape), None

    def _device_support(self):
        return self.layer._device_support()
