"""Weights from Keras 3 and PyTorch into numrnn layers.

numrnn layers use Keras's weight layout, so Keras arrays go in unchanged;
PyTorch's recurrent weights are transposed, their gates reordered and their
biases combined. Neither framework is needed here: Keras files are read with
h5py (the ``interop`` extra) and PyTorch ``state_dict`` values may be
tensors or numpy arrays.

Keras 3
-------
- :func:`load_keras_weights` reads a ``.weights.h5`` file written by
  ``model.save_weights(...)`` into a numrnn ``Sequential`` (or one layer).
- :func:`load_keras_arrays` takes the list of ``model.get_weights()`` (or
  an ``.npz`` file written by ``numpy.savez(path, *model.get_weights())``).
- :func:`read_keras_weights` lists the arrays of a ``.weights.h5`` file.

PyTorch
-------
- :func:`layers_from_torch` builds numrnn layers from the ``state_dict`` of
  ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN`` (stacked and bidirectional too).
- :func:`torch_to_keras_weights` converts one layer and direction to the
  ``[kernel, recurrent_kernel, bias]`` list of ``set_weights``.
"""

import os
import re

import numpy as np

from numrnn import layers as _layers
from numrnn.models import Sequential

__all__ = [
    "layers_from_torch",
    "load_keras_arrays",
    "load_keras_weights",
    "read_keras_weights",
    "torch_to_keras_weights",
]

# Keras 3 names the group of a layer inside a model's file after its class,
# in snake case, with _1, _2, ... for repeats of a class.
_KERAS_GROUPS = {
    _layers.SimpleRNN: "simple_rnn",
    _layers.LSTM: "lstm",
    _layers.GRU: "gru",
    _layers.Dense: "dense",
    _layers.Embedding: "embedding",
    _layers.Masking: "masking",
    _layers.Dropout: "dropout",
    _layers.TimeDistributed: "time_distributed",
    _layers.Bidirectional: "bidirectional",
}
_TORCH_CELLS = {
    "lstm": (_layers.LSTM, 4),
    "gru": (_layers.GRU, 3),
    "simple": (_layers.SimpleRNN, 1),
}


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError(
            "Reading Keras .weights.h5 files needs h5py: pip install 'numrnn[interop]' "
            "(or pass the arrays of model.get_weights() to load_keras_arrays)."
        ) from None
    return h5py


# --------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------


def _vars(group, where):
    """The arrays of a Keras ``vars`` group, in index order ("0", "1", ...)."""
    if group is None:
        return []
    names = list(group.keys())
    if sorted(names, key=lambda n: int(n) if n.isdigit() else -1) != [
        str(i) for i in range(len(names))
    ]:
        raise ValueError(f"{where}: expected datasets named 0..{len(names) - 1}, found {names}.")
    return [np.asarray(group[str(i)][()]) for i in range(len(names))]


def read_keras_weights(path):
    """List every weight array of a Keras 3 ``.weights.h5`` file.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``keras.Model.save_weights``.

    Returns
    -------
    dict of str to list of ndarray
        For each ``vars`` group holding arrays, its path in the file (for
        example ``"layers/lstm/cell/vars"`` or
        ``"layers/bidirectional/forward_layer/cell/vars"``) and its arrays
        in Keras order.

    Raises
    ------
    ImportError
        If h5py is not installed.
    ValueError
        If the file is not a Keras weights file.
    """
    h5py = _h5py()
    result = {}
    with _open_h5(h5py, path) as handle:

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars" and len(obj):
                result[name] = _vars(obj, name)

        handle.visititems(visit)
    return result


def _open_h5(h5py, path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file: {path!r}.")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path!r} is not an HDF5 file ({exc}).") from None


def _keras_keys(layers):
    counts = {}
    keys = []
    for layer in layers:
        base = _KERAS_GROUPS.get(type(layer))
        if base is None:
            raise TypeError(
                f"No Keras counterpart is known for {type(layer).__name__}; pass keys= to "
                "name the file's groups explicitly."
            )
        n = counts.get(base, 0)
        counts[base] = n + 1
        keys.append(base if n == 0 else f"{base}_{n}")
    return keys


def _subgroup(group, name):
    return group[name] if name in group else None


def _keras_layer_arrays(group, layer, where, used):
    """The arrays of ``layer`` from its group in a Keras file (Keras order)."""
    if isinstance(layer, _layers.Bidirectional):
        forward = _required(group, "forward_layer", where)
        backward = _required(group, "backward_layer", where)
        return _keras_layer_arrays(
            forward, layer.forward_layer, f"{where}/forward_layer", used
        ) + _keras_layer_arrays(backward, layer.backward_layer, f"{where}/backward_layer", used)
    if isinstance(layer, _layers.TimeDistributed):
        inner = _required(group, "layer", where)
        return _keras_layer_arrays(inner, layer.layer, f"{where}/layer", used)
    if isinstance(layer, _layers.RNN):
        cell = _required(group, "cell", where)
        vars_group = _required(cell, "vars", f"{where}/cell")
        used.add(vars_group.name)
        return _vars(vars_group, f"{where}/cell/vars")
    vars_group = _subgroup(group, "vars")
    if vars_group is not None:
        used.add(vars_group.name)
    return _vars(vars_group, f"{where}/vars")


def _required(group, name, where):
    if name not in group:
        raise ValueError(
            f"{where}: the Keras file has no {name!r} group here (found {sorted(group.keys())}); "
            "the numrnn layer does not match the Keras layer stored at this place."
        )
    return group[name]


def _check_and_set(layer, arrays, where):
    expected = layer.weights
    if len(arrays) != len(expected):
        raise ValueError(
            f"{where}: the Keras file holds {len(arrays)} arrays for numrnn layer "
            f"{layer.name!r} ({type(layer).__name__}), which has {len(expected)} weights."
        )
    for i, (array, current) in enumerate(zip(arrays, expected)):
        if array.shape != current.shape:
            raise ValueError(
                f"{where}: array {i} has shape {array.shape}, numrnn layer {layer.name!r} "
                f"expects {current.shape} (check units, input features and reset_after)."
            )
    if arrays:
        layer.set_weights(arrays)


def load_keras_weights(target, path, *, keys=None):
    """Load a Keras 3 ``.weights.h5`` file into a numrnn model or layer.

    The numrnn model must mirror the Keras one: the same layer classes in the
    same order with the same sizes (``Input`` is not a layer). Keras stores
    each layer of a ``Sequential`` under ``layers/<class in snake case>``
    with ``_1``, ``_2``, ... for repeated classes (``lstm``, ``lstm_1``,
    ``dense``), whatever the layers' names; numrnn computes the same keys.

    Parameters
    ----------
    target : Sequential or Layer
        A built numrnn model or layer (``build(input_shape)`` it first).
    path : str or os.PathLike
        The ``.weights.h5`` file.
    keys : list of str or str, optional
        The file's group names under ``layers/``, one per layer of a
        ``Sequential`` (or one for a layer), to override the default keys.
        A layer loaded on its own defaults to its class key (``"lstm"``).

    Returns
    -------
    Sequential or Layer
        ``target``, with its weights set.

    Raises
    ------
    ImportError
        If h5py is not installed.
    ValueError
        If the target is not built, or the file's groups, array counts or
        shapes do not match the target (the message says where).
    """
    h5py = _h5py()
    if isinstance(target, Sequential):
        layer_list = list(target.layers)
        if not target.built:
            raise ValueError(
                "The Sequential is not built: call build(input_shape) or start it with an "
                "Input(shape=...) before loading weights."
            )
    elif isinstance(target, _layers.Layer):
        layer_list = [target]
        if not target.built:
            raise ValueError(f"Layer {target.name!r} is not built: call build(input_shape) first.")
        if isinstance(keys, str):
            keys = [keys]
    else:
        raise TypeError(
            f"target must be a numrnn Sequential or layer, got {type(target).__name__}."
        )
    if keys is None:
        keys = _keras_keys(layer_list)
    keys = list(keys)
    if len(keys) != len(layer_list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"keys must hold one str per layer ({len(layer_list)}), got {keys!r}.")
    used = set()
    with _open_h5(h5py, path) as handle:
        if "layers" not in handle:
            raise ValueError(
                f"{os.fspath(path)!r} has no 'layers' group: not a Keras 3 .weights.h5 file "
                "of a model."
            )
        root = handle["layers"]
        loaded = []
        for layer, key in zip(layer_list, keys):
            where = f"layers/{key}"
            if key not in root:
                raise ValueError(
                    f"{where}: not in the file (groups: {sorted(root.keys())}); numrnn layer "
                    f"{layer.name!r} ({type(layer).__name__}) would be stored there by Keras."
                )
            loaded.append((layer, _keras_layer_arrays(root[key], layer, where, used), where))
        leftover = []
        if isinstance(target, Sequential):

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and obj.parent.name not in used:
                    leftover.append(name)

            root.visititems(visit)
    if leftover:
        raise ValueError(
            f"The Keras file holds weights no numrnn layer took: {sorted(leftover)[:6]}; the "
            "models differ."
        )
    for layer, arrays, where in loaded:
        _check_and_set(layer, arrays, where)
    return target


def load_keras_arrays(target, weights):
    """Set the weights of a numrnn model or layer from Keras ``get_weights()``.

    Parameters
    ----------
    target : Sequential or Layer
        A built numrnn model or layer mirroring the Keras one.
    weights : list of array-like, or str or os.PathLike
        The list returned by Keras's ``model.get_weights()`` (or
        ``layer.get_weights()``), or the path of an ``.npz`` file written by
        ``numpy.savez(path, *model.get_weights())`` (read with
        ``allow_pickle=False``; arrays ``arr_0``, ``arr_1``, ...).

    Returns
    -------
    Sequential or Layer
        ``target``, with its weights set (cast to its dtype).

    Raises
    ------
    ValueError
        If the target is not built, or the number or shapes of the arrays
        differ from the target's weights.
    """
    if not isinstance(target, (Sequential, _layers.Layer)):
        raise TypeError(
            f"target must be a numrnn Sequential or layer, got {type(target).__name__}."
        )
    if isinstance(weights, (str, os.PathLike)):
        with np.load(weights, allow_pickle=False) as npz:
            names = sorted(npz.files, key=lambda n: int(n[4:]) if re.match(r"arr_\d+$", n) else -1)
            if names != [f"arr_{i}" for i in range(len(names))]:
                raise ValueError(
                    f"{os.fspath(weights)!r} must hold arrays arr_0, arr_1, ... as written by "
                    f"numpy.savez(path, *weights); found {npz.files[:6]}."
                )
            weights = [npz[name] for name in names]
    arrays = [np.asarray(w) for w in weights]
    if not target.built:
        raise ValueError("The target is not built: call build(input_shape) first.")
    current = target.weights
    if len(arrays) != len(current):
        raise ValueError(
            f"Got {len(arrays)} arrays; the numrnn target has {len(current)} weights with "
            f"shapes {[w.shape for w in current]}."
        )
    for i, (array, weight) in enumerate(zip(arrays, current)):
        if array.shape != weight.shape:
            raise ValueError(
                f"Array {i} has shape {array.shape}; the numrnn target expects {weight.shape} "
                "there (weights go in get_weights() order, Keras layout)."
            )
    target.set_weights(arrays)
    return target


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


def _to_numpy(value, key):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise TypeError(f"state_dict[{key!r}] must hold floats, got dtype {array.dtype}.")
    return array


def _check_cell(cell):
    if cell not in _TORCH_CELLS:
        raise ValueError(
            f"Unknown cell {cell!r}: expected 'lstm' (nn.LSTM), 'gru' (nn.GRU) or 'simple' "
            "(nn.RNN)."
        )
    return _TORCH_CELLS[cell]


def _torch_layout(state_dict, prefix):
    """``(num_layers, bidirectional, has_bias)`` from the keys of a state_dict."""
    pattern = re.compile(re.escape(prefix) + r"weight_ih_l(\d+)(_reverse)?$")
    found = [pattern.match(key) for key in state_dict]
    found = [m for m in found if m is not None]
    if not found:
        raise ValueError(
            f"No '{prefix}weight_ih_l0' in the state_dict (keys: {sorted(state_dict)[:8]}); "
            "pass prefix= for a module inside a larger model (e.g. prefix='rnn.')."
        )
    if any(key.startswith(prefix + "weight_hr_l") for key in state_dict):
        raise ValueError("LSTMs with proj_size > 0 have no Keras/numrnn counterpart.")
    num_layers = 1 + max(int(m.group(1)) for m in found)
    bidirectional = any(m.group(2) for m in found)
    has_bias = prefix + "bias_ih_l0" in state_dict
    return num_layers, bidirectional, has_bias


def torch_to_keras_weights(state_dict, cell, *, layer=0, reverse=False, prefix=""):
    """Convert one layer and direction of a PyTorch RNN to numrnn/Keras arrays.

    PyTorch keeps ``weight_ih (G*units, in)``, ``weight_hh (G*units, units)``
    and two biases; Keras keeps ``kernel (in, G*units)``,
    ``recurrent_kernel (units, G*units)`` and one bias. The gates of an LSTM
    are in the same order (i, f, g/c, o) and its two biases are summed; a
    GRU's gates go from PyTorch's (r, z, n) to Keras's (z, r, h) and its two
    biases become the ``(2, 3*units)`` bias of ``reset_after=True`` (the
    only GRU variant PyTorch has); nn.RNN's biases are summed.

    Parameters
    ----------
    state_dict : mapping of str to tensor or array
        ``module.state_dict()`` of ``nn.LSTM``, ``nn.GRU`` or ``nn.RNN``
        (tensors or numpy arrays).
    cell : {"lstm", "gru", "simple"}
        The module type (``"simple"`` for ``nn.RNN``).
    layer : int, default=0
        Which stacked layer.
    reverse : bool, default=False
        The backward direction of a bidirectional module.
    prefix : str, default=""
        Prefix of the keys, for a module inside a larger model (``"rnn."``).

    Returns
    -------
    list of ndarray
        ``[kernel, recurrent_kernel, bias]``, or ``[kernel,
        recurrent_kernel]`` for a module built with ``bias=False``; the
        dtype of the PyTorch weights.

    Raises
    ------
    ValueError
        For an unknown cell, missing keys, inconsistent shapes or
        ``proj_size > 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from numrnn.interop import torch_to_keras_weights
    >>> state_dict = {"weight_ih_l0": np.zeros((9, 2)), "weight_hh_l0": np.zeros((9, 3)),
    ...               "bias_ih_l0": np.zeros(9), "bias_hh_l0": np.zeros(9)}
    >>> [w.shape for w in torch_to_keras_weights(state_dict, "gru")]
    [(2, 9), (3, 9), (2, 9)]
    """
    _, n_gates = _check_cell(cell)
    _, _, has_bias = _torch_layout(state_dict, prefix)
    suffix = f"_l{int(layer)}" + ("_reverse" if reverse else "")

    def get(name):
        key = prefix + name + suffix
        if key not in state_dict:
            raise ValueError(f"The state_dict has no {key!r}.")
        return _to_numpy(state_dict[key], key)

    w_ih, w_hh = get("weight_ih"), get("weight_hh")
    units = w_hh.shape[1] if w_hh.ndim == 2 else -1
    if w_ih.ndim != 2 or w_hh.shape != (n_gates * units, units) or w_ih.shape[0] != w_hh.shape[0]:
        raise ValueError(
            f"weight_ih{suffix} {w_ih.shape} and weight_hh{suffix} {w_hh.shape} do not fit a "
            f"{cell} cell ({n_gates} gates)."
        )

    def reorder(array):
        if cell != "gru":
            return array
        r, z, n = np.split(array, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)

    weights = [np.ascontiguousarray(reorder(w_ih).T), np.ascontiguousarray(reorder(w_hh).T)]
    if has_bias:
        b_ih, b_hh = get("bias_ih"), get("bias_hh")
        if b_ih.shape != (n_gates * units,) or b_hh.shape != b_ih.shape:
            raise ValueError(
                f"bias_ih{suffix}/bias_hh{suffix} must have shape ({n_gates * units},)."
            )
        if cell == "gru":
            weights.append(np.stack([reorder(b_ih), reorder(b_hh)]))
        else:
            weights.append(b_ih + b_hh)
    return weights


def layers_from_torch(
    state_dict,
    cell,
    *,
    prefix="",
    return_sequences=True,
    activation="tanh",
    dtype=None,
):
    """Build numrnn layers equal to a PyTorch ``nn.LSTM``/``nn.GRU``/``nn.RNN``.

    One numrnn layer per stacked PyTorch layer, wrapped in
    ``Bidirectional(merge_mode="concat")`` when the module is bidirectional;
    every layer but the last returns sequences. Put them in a
    :class:`~numrnn.Sequential` (add your own head) or call them in turn.

    Parameters
    ----------
    state_dict : mapping of str to tensor or array
        ``module.state_dict()`` (tensors or numpy arrays).
    cell : {"lstm", "gru", "simple"}
        The module type (``"simple"`` for ``nn.RNN``).
    prefix : str, default=""
        Prefix of the keys, for a module inside a larger model.
    return_sequences : bool, default=True
        Whether the last layer returns the whole sequence (PyTorch's
        ``output``) or only its final output (``h_n`` of the last layer;
        for a bidirectional module the concatenation of the forward and
        backward final states, ``h_n[-2]`` and ``h_n[-1]``).
    activation : {"tanh", "relu"}, default="tanh"
        The ``nonlinearity`` of an ``nn.RNN`` (ignored for LSTM and GRU).
    dtype : str, optional
        Float dtype of the layers; defaults to ``numrnn.config.floatx()``.

    Returns
    -------
    list of Layer
        Built layers holding the converted weights.

    Notes
    -----
    numrnn is batch-first: feed ``(batch, timesteps, features)``
    (``batch_first=True`` in PyTorch terms). Inter-layer dropout of the
    PyTorch module is a training-time option and is not carried over.
    """
    cls, _ = _check_cell(cell)
    num_layers, bidirectional, has_bias = _torch_layout(state_dict, prefix)
    result = []
    for index in range(num_layers):
        forward = torch_to_keras_weights(state_dict, cell, layer=index, prefix=prefix)
        n_in, width = forward[0].shape
        units = forward[1].shape[0]
        kwargs = dict(
            units=units,
            use_bias=has_bias,
            return_sequences=return_sequences or index < num_layers - 1,
            dtype=dtype,
        )
        if cell == "simple":
            kwargs["activation"] = activation
        layer = cls(**kwargs)
        weights = forward
        if bidirectional:
            layer = _layers.Bidirectional(layer, merge_mode="concat")
            weights = forward + torch_to_keras_weights(
                state_dict, cell, layer=index, reverse=True, prefix=prefix
            )
        layer.build((None, None, n_in))
        _check_and_set(layer, weights, f"{prefix}l{index}")
        result.append(layer)
    return result
