"""Safe persistence: :func:`save` and :func:`load` without pickle.

A numrnn file is a zip archive (or a directory) holding exactly two members:

``numrnn.json``
    A UTF-8 JSON manifest: the format name and version, and the object as a
    tree of plain JSON values and tagged objects (``{"__kind__": ...}``).
``arrays.npz``
    Every array of the object (weights, states, fitted arrays), written by
    :func:`numpy.savez` and read back with ``allow_pickle=False``.

Loading never executes code from the file: the JSON is parsed by
:func:`json.loads`, arrays are read with ``allow_pickle=False``, object
arrays are refused, and classes are looked up by name in explicit registries
(:func:`register_estimator`, :func:`register_layer`), never imported by a
name taken from the file. Everything the file says is checked (kinds, keys,
array dtypes and shapes, layer weight shapes, parameter and attribute names)
and anything unexpected raises :class:`FormatError`.

The full format specification is in the documentation's "Scaling out,
saving and exchanging models" page.
"""

import inspect
import io
import json
import math
import os
import re
import tempfile
import zipfile
import zlib

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from sklearn.base import BaseEstimator

from numrnn import layers as _layers
from numrnn import optimizers as _optimizers
from numrnn.models import Sequential

__all__ = [
    "FORMAT_VERSION",
    "FormatError",
    "load",
    "register_estimator",
    "register_layer",
    "register_record",
    "save",
]

#: Version of the file format written by :func:`save`; :func:`load` reads
#: versions up to this one.
FORMAT_VERSION = 1
FORMAT_NAME = "numrnn"
MANIFEST_NAME = "numrnn.json"
ARRAYS_NAME = "arrays.npz"
_MEMBERS = (MANIFEST_NAME, ARRAYS_NAME)
# The manifest holds configs and small fitted values; arrays go to the npz.
_MAX_MANIFEST_BYTES = 64 * 2**20
# dtype kinds an array may have: bool, ints, floats, complex, str, bytes,
# datetime, timedelta. Never object ("O") or structured/void ("V").
_ARRAY_KINDS = "biufcUSMm"
# key that marks a JSON object as a tagged value rather than a plain dict
_KIND = "__kind__"
_ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FormatError(ValueError):
    """A file is not a valid numrnn file, was tampered with or is too new.

    Raised by :func:`load` for truncated or corrupted archives, malformed or
    inconsistent manifests, arrays whose dtype or shape differ from what the
    manifest and the layers expect, object arrays, unknown classes or value
    kinds, and files written in a newer format version.
    """


# --------------------------------------------------------------------------
# Registries
# --------------------------------------------------------------------------

_ESTIMATORS = {}
_LAYERS = {}
_RECORDS = {}
_RECORD_FIELDS = {}
_OPTIMIZER_CLASSES = {cls.__name__: cls for cls in (_optimizers.SGD, _optimizers.Adam,
                                                     _optimizers.RMSprop)}  # fmt: skip
_BIT_GENERATORS = {
    cls.__name__: cls
    for cls in (
        np.random.PCG64,
        np.random.PCG64DXSM,
        np.random.MT19937,
        np.random.Philox,
        np.random.SFC64,
    )
}


def register_estimator(cls, name=None):
    """Allow :func:`save`/:func:`load` to handle estimators of class ``cls``.

    numrnn's estimators are registered already. A registered class is
    rebuilt as ``cls(**params)`` from ``get_params(deep=False)`` and then
    receives its fitted attributes with ``setattr``.

    Parameters
    ----------
    cls : type
        A subclass of :class:`sklearn.base.BaseEstimator`.
    name : str, optional
        Name written to files; defaults to ``cls.__name__``.

    Returns
    -------
    type
        ``cls``, so the function can decorate a class.

    Raises
    ------
    TypeError
        If ``cls`` is not an estimator class.
    ValueError
        If another class is registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, BaseEstimator)):
        raise TypeError(f"register_estimator expects an sklearn estimator class, got {cls!r}.")
    _register(_ESTIMATORS, cls, name, "estimator")
    return cls


def register_layer(cls, name=None):
    """Allow :func:`save`/:func:`load` to handle layers of class ``cls``.

    numrnn's layers are registered already. A registered layer class must
    rebuild itself as ``cls(**layer.get_config())``, with weights set by
    ``set_weights``.

    Parameters
    ----------
    cls : type
        A subclass of :class:`numrnn.layers.Layer`.
    name : str, optional
        Name written to files; defaults to ``cls.__name__``.

    Returns
    -------
    type
        ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` is not a numrnn layer class.
    ValueError
        If another class is registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, _layers.Layer)):
        raise TypeError(f"register_layer expects a numrnn Layer subclass, got {cls!r}.")
    _register(_LAYERS, cls, name, "layer")
    return cls


def register_record(cls, fields=None, name=None):
    """Allow :func:`save`/:func:`load` to handle a small plain-data class.

    A record is stored as the values of ``fields`` (each a supported value,
    arrays included) and rebuilt as ``cls(**values)``. This suits private
    helper objects that estimators keep as fitted attributes.

    Parameters
    ----------
    cls : type
        The class.
    fields : sequence of str, optional
        Attribute names that are also constructor arguments; by default the
        named parameters of ``cls.__init__``.
    name : str, optional
        Name written to files; defaults to ``cls.__name__``.

    Returns
    -------
    type
        ``cls``.

    Raises
    ------
    TypeError
        If ``cls`` is not a class or ``fields`` are not identifiers.
    ValueError
        If another class is registered under the same name.
    """
    if not isinstance(cls, type):
        raise TypeError(f"register_record expects a class, got {cls!r}.")
    fields = _init_arguments(cls) if fields is None else list(fields)
    if not all(isinstance(f, str) and _ATTRIBUTE_NAME.match(f) for f in fields):
        raise TypeError(f"fields must be attribute names, got {fields!r}.")
    _register(_RECORDS, cls, name, "record")
    _RECORD_FIELDS[cls] = tuple(fields)
    return cls


def _register(registry, cls, name, what):
    name = cls.__name__ if name is None else name
    if not isinstance(name, str) or not all(_ATTRIBUTE_NAME.match(p) for p in name.split(".")):
        raise ValueError(f"A {what} registry name must be an identifier, got {name!r}.")
    existing = registry.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"Another {what} class is registered as {name!r} ({existing!r}); pass a different name."
        )
    registry[name] = cls


def _registry_name(registry, obj):
    for name, cls in registry.items():
        if type(obj) is cls:
            return name
    return None


def _register_defaults():
    from numrnn import estimators

    for cls in (
        _layers.SimpleRNN,
        _layers.LSTM,
        _layers.GRU,
        _layers.Dense,
        _layers.Embedding,
        _layers.Masking,
        _layers.Dropout,
        _layers.TimeDistributed,
        _layers.Bidirectional,
    ):
        register_layer(cls)
    for name in ("RNNClassifier", "RNNRegressor", "RNNForecaster"):
        cls = getattr(estimators, name, None)
        if cls is not None:
            register_estimator(cls)
    forecaster = getattr(estimators, "forecaster", None)
    transform = getattr(forecaster, "_Transform", None)
    if transform is not None:  # the forecaster's fitted scaling/lag recipe
        register_record(transform, name="RNNForecaster._Transform")


# --------------------------------------------------------------------------
# Encoding (object -> JSON tree + arrays)
# --------------------------------------------------------------------------

_SUPPORTED = (
    "None, bool, int, float, str, list, tuple, dict, numpy arrays (not object "
    "arrays, except arrays of str) and scalars, numpy dtypes and Generators, "
    "pandas Index/Series/DataFrame (numpy dtypes or str), Timestamp, Timedelta, "
    "Period and frequencies, numrnn layers, Sequential models, optimizers, registered "
    "estimators and records"
)


class _Writer:
    """Collects arrays while an object is encoded into a JSON tree."""

    def __init__(self):
        self.arrays = {}

    def array(self, value, where):
        array = np.asarray(value)
        entry = {"__kind__": "ndarray"}
        if array.dtype.kind == "O":
            if not all(isinstance(item, str) for item in array.flat):
                raise TypeError(
                    f"numrnn.save cannot store {where}: an object array whose items are "
                    "not all str. Convert it to a numeric or str dtype first."
                )
            array = array.astype(str) if array.size else array.astype("<U1")
            entry["object"] = True
        if array.dtype.kind not in _ARRAY_KINDS or array.dtype.fields is not None:
            raise TypeError(
                f"numrnn.save cannot store {where}: arrays of dtype {array.dtype} are not "
                "supported (use bool, numeric, str, datetime64 or timedelta64 dtypes)."
            )
        key = f"a{len(self.arrays)}"
        # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
        self.arrays[key] = array if array.flags.c_contiguous else np.array(array, order="C")
        entry.update(key=key, dtype=array.dtype.str, shape=list(array.shape))
        return entry

    def encode(self, value, where):
        """Encode ``value`` as a JSON-able tree; ``where`` names it in errors."""
        if value is None or type(value) in (bool, str, int):
            return value
        if type(value) is float:
            if math.isfinite(value):
                return value
            return {"__kind__": "float", "value": repr(value)}
        if type(value) is list:
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if type(value) is tuple:
            items = [self.encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return {"__kind__": "tuple", "items": items}
        if type(value) is dict:
            if all(type(key) is str for key in value) and _KIND not in value:
                return {key: self.encode(item, f"{where}[{key!r}]") for key, item in value.items()}
            items = []
            for key, item in value.items():
                if not _is_key(key):
                    raise TypeError(
                        f"numrnn.save cannot store {where}: dict key {key!r} of type "
                        f"{type(key).__name__} (keys must be str, int, float, bool, None "
                        "or tuples of those)."
                    )
                items.append([self.encode(key, where), self.encode(item, f"{where}[{key!r}]")])
            return {"__kind__": "dict", "items": items}
        if type(value) is np.ndarray:
            return self.array(value, where)
        if isinstance(value, np.generic):
            if isinstance(value, np.object_) or value.dtype.kind not in _ARRAY_KINDS:
                raise TypeError(f"numrnn.save cannot store {where}: numpy scalar {value!r}.")
            return {"__kind__": "numpy_scalar", "array": self.array(np.asarray(value), where)}
        if isinstance(value, np.dtype):
            if value.kind not in _ARRAY_KINDS or value.fields is not None:
                raise TypeError(f"numrnn.save cannot store {where}: dtype {value}.")
            return {"__kind__": "dtype", "str": value.str}
        if isinstance(value, np.random.Generator):
            return self.generator(value, where)
        if isinstance(value, pd.Index):
            return self.index(value, where)
        if type(value) is pd.Series:
            return self.series(value, where)
        if type(value) is pd.DataFrame:
            return self.frame(value, where)
        if type(value) is pd.Timestamp:
            return self.timestamp(value)
        if type(value) is pd.Timedelta:
            return {"__kind__": "timedelta", "value": self.array(np.asarray(value.asm8), where)}
        if type(value) is pd.Period:
            return {"__kind__": "period", "ordinal": int(value.ordinal), "freq": value.freqstr}
        if isinstance(value, pd.offsets.BaseOffset):
            return self.offset(value, where)
        if isinstance(value, Sequential):
            return self.sequential(value, where)
        if isinstance(value, _layers.Layer):
            return {"__kind__": "layer", "spec": self.layer(value, where)}
        if isinstance(value, _optimizers.Optimizer):
            return self.optimizer(value, where)
        if isinstance(value, BaseEstimator):
            return self.estimator(value, where)
        if type(value) in _RECORD_FIELDS:
            return self.record(value, where)
        raise TypeError(
            f"numrnn.save cannot store {where} of type {type(value).__module__}."
            f"{type(value).__qualname__}. The safe format holds: {_SUPPORTED}. "
            "Use pickle or joblib for other objects (they execute code when loaded)."
        )

    def record(self, value, where):
        fields = {
            field: self.encode(getattr(value, field), f"{where}.{field}")
            for field in _RECORD_FIELDS[type(value)]
        }
        return {"__kind__": "record", "class": _registry_name(_RECORDS, value), "fields": fields}

    def generator(self, value, where):
        bit_generator = type(value.bit_generator).__name__
        if _BIT_GENERATORS.get(bit_generator) is not type(value.bit_generator):
            raise TypeError(f"numrnn.save cannot store {where}: bit generator {bit_generator}.")
        return {"__kind__": "generator", "state": self.encode(value.bit_generator.state, where)}

    @staticmethod
    def time_zone(tz, where):
        if tz is None:
            return None
        name = str(tz)
        try:
            pd.Timestamp("2000-01-01", tz=name)
        except Exception:  # pandas raises various errors for unknown zone names
            raise TypeError(
                f"numrnn.save cannot store {where}: its time zone {tz!r} has no name that "
                "pandas can read back."
            ) from None
        return name

    def timestamp(self, value):
        tz = self.time_zone(value.tz, "a Timestamp")
        naive = value if value.tz is None else value.tz_convert("UTC").tz_localize(None)
        return {
            "__kind__": "timestamp",
            "value": self.array(np.asarray(naive.asm8), "a Timestamp"),
            "tz": tz,
        }

    def offset(self, value, where):
        freqstr = value.freqstr
        try:
            same = to_offset(freqstr) == value
        except (TypeError, ValueError):
            same = False
        if not same:
            raise TypeError(
                f"numrnn.save cannot store {where}: the frequency {value!r} does not "
                "round-trip through its string form."
            )
        return {"__kind__": "date_offset", "freq": freqstr}

    def index(self, index, where):
        name = self.encode(index.name, f"{where}.name")
        if type(index) is pd.RangeIndex:
            return {"__kind__": "pandas_index", "type": "RangeIndex", "name": name,
                    "start": int(index.start), "stop": int(index.stop),
                    "step": int(index.step)}  # fmt: skip
        if type(index) is pd.MultiIndex:
            return {
                "__kind__": "pandas_index",
                "type": "MultiIndex",
                "names": [self.encode(n, f"{where}.names") for n in index.names],
                "levels": [self.index(level, f"{where}.levels") for level in index.levels],
                "codes": [self.array(np.asarray(c), f"{where}.codes") for c in index.codes],
            }
        freq = getattr(index, "freq", None)
        freq = None if freq is None else self.offset(freq, f"{where}.freq")["freq"]
        if type(index) is pd.DatetimeIndex:
            tz = self.time_zone(index.tz, where)
            naive = index if index.tz is None else index.tz_convert("UTC").tz_localize(None)
            values = self.array(naive.to_numpy(), where)
            return {"__kind__": "pandas_index", "type": "DatetimeIndex", "name": name,
                    "values": values, "tz": tz, "freq": freq}  # fmt: skip
        if type(index) is pd.TimedeltaIndex:
            return {"__kind__": "pandas_index", "type": "TimedeltaIndex", "name": name,
                    "values": self.array(index.to_numpy(), where), "freq": freq}  # fmt: skip
        if type(index) is pd.PeriodIndex:
            return {"__kind__": "pandas_index", "type": "PeriodIndex", "name": name,
                    "ordinals": self.array(index.asi8.copy(), where),
                    "freq": index.freqstr}  # fmt: skip
        if type(index) is pd.Index:
            dtype, values = self.column_values(index, where)
            return {"__kind__": "pandas_index", "type": "Index", "name": name,
                    "dtype": dtype, "values": values}  # fmt: skip
        raise TypeError(
            f"numrnn.save cannot store {where}: pandas {type(index).__name__} is not "
            "supported (RangeIndex, Index, DatetimeIndex, TimedeltaIndex, PeriodIndex "
            "and MultiIndex are)."
        )

    def column_values(self, values, where):
        """``(dtype description, array entry)`` of an Index or Series' values."""
        dtype = values.dtype
        if isinstance(dtype, pd.StringDtype):
            if values.isna().any():
                raise TypeError(f"numrnn.save cannot store {where}: missing values in str data.")
            description = {"string": dtype.storage,
                           "na_value": "NA" if dtype.na_value is pd.NA else "nan"}  # fmt: skip
            return description, self.array(np.asarray(values, dtype=str), where)
        if not isinstance(dtype, np.dtype):
            raise TypeError(
                f"numrnn.save cannot store {where}: pandas extension dtype {dtype} is not "
                "supported (numpy dtypes and str are)."
            )
        return dtype.str, self.array(np.asarray(values), where)

    def series(self, series, where):
        dtype, values = self.column_values(series, where)
        return {
            "__kind__": "pandas_series",
            "name": self.encode(series.name, f"{where}.name"),
            "index": self.index(series.index, f"{where}.index"),
            "dtype": dtype,
            "values": values,
        }

    def frame(self, frame, where):
        columns = []
        for position in range(frame.shape[1]):
            column = frame.iloc[:, position]
            columns.append(list(self.column_values(column, f"{where}.iloc[:, {position}]")))
        return {
            "__kind__": "pandas_dataframe",
            "index": self.index(frame.index, f"{where}.index"),
            "columns": self.index(frame.columns, f"{where}.columns"),
            "data": columns,
        }

    def optimizer(self, optimizer, where):
        name = _registry_name(_OPTIMIZER_CLASSES, optimizer)
        if name is None:
            raise TypeError(
                f"numrnn.save cannot store {where}: optimizer class {type(optimizer).__name__} "
                f"is not one of {sorted(_OPTIMIZER_CLASSES)}."
            )
        config = {key: getattr(optimizer, key) for key in _init_arguments(type(optimizer))}
        return {
            "__kind__": "optimizer",
            "class": name,
            "config": self.encode(config, f"{where} config"),
            "state": self.encode(optimizer.get_state(), f"{where} state"),
        }

    def layer(self, layer, where):
        name = _registry_name(_LAYERS, layer)
        if name is None:
            raise TypeError(
                f"numrnn.save cannot store {where}: layer class {type(layer).__name__} is not "
                "registered (see numrnn.persistence.register_layer)."
            )
        where = f"{where} (layer {layer.name!r})"
        spec = {"class": name}
        if isinstance(layer, _layers.Bidirectional):
            config = {"merge_mode": layer.merge_mode, "dtype": layer.dtype.name,
                      "name": layer.name}  # fmt: skip
            spec["forward_layer"] = self.layer(layer.forward_layer, where)
            spec["backward_layer"] = self.layer(layer.backward_layer, where)
        elif isinstance(layer, _layers.TimeDistributed):
            config = layer.get_config()
            config.pop("layer")
            spec["layer"] = self.layer(layer.layer, where)
        else:
            config = layer.get_config()
        spec["config"] = self.encode(config, f"{where} config")
        spec["built"] = bool(layer.built)
        spec["input_shape"] = None
        if layer.built:
            spec["input_shape"] = self.encode(_plain_shape(layer.input_shape), where)
        own = [] if _is_wrapper(layer) or not layer.built else layer.get_weights()
        spec["weights"] = [self.array(w, f"{where} weight {i}") for i, w in enumerate(own)]
        states = layer.states if isinstance(layer, _layers.RNN) else None
        spec["states"] = None if states is None else [self.array(s, where) for s in states]
        spec["rngs"] = {
            attribute: self.generator(value, f"{where}.{attribute}")
            for attribute, value in sorted(vars(layer).items())
            if isinstance(value, np.random.Generator)
        }
        return spec

    def sequential(self, model, where):
        input_shape = model.input_shape
        device = getattr(model, "device", None)
        return {
            "__kind__": "sequential",
            "device": self.encode(device, f"{where}.device"),
            "name": self.encode(model.name, f"{where}.name"),
            "input_shape": None
            if input_shape is None
            else self.encode(_plain_shape(input_shape), where),
            "layers": [
                self.layer(layer, f"{where}.layers[{i}]") for i, layer in enumerate(model.layers)
            ],  # fmt: skip
        }

    def estimator(self, estimator, where):
        name = _registry_name(_ESTIMATORS, estimator)
        if name is None:
            raise TypeError(
                f"numrnn.save cannot store {where}: estimator class "
                f"{type(estimator).__name__} is not registered (see "
                "numrnn.persistence.register_estimator)."
            )
        params = estimator.get_params(deep=False)
        encoded_params = {}
        for key, value in params.items():
            if isinstance(value, (np.random.Generator, np.random.RandomState)):
                raise TypeError(
                    f"numrnn.save cannot store {name}(random_state=...) holding a "
                    f"{type(value).__name__} in parameter {key!r}: the safe format keeps "
                    "parameters as plain values; use an int seed or None."
                )
            encoded_params[key] = self.encode(value, f"{name} parameter {key!r}")
        attributes = {}
        for key, value in vars(estimator).items():
            if key in params:
                continue
            attributes[key] = self.encode(value, f"{name} attribute {key!r}")
        return {"__kind__": "estimator", "class": name, "params": encoded_params,
                "attributes": attributes}  # fmt: skip


def _is_key(key):
    if key is None or isinstance(key, (bool, str)) or type(key) in (int, float):
        return True
    return type(key) is tuple and all(_is_key(k) for k in key)


def _plain_shape(shape):
    return tuple(None if d is None else int(d) for d in shape)


def _is_wrapper(layer):
    return isinstance(layer, (_layers.Bidirectional, _layers.TimeDistributed))


def _init_arguments(cls):
    names = []
    for klass in cls.__mro__:
        if klass is object or "__init__" not in vars(klass):
            continue
        for parameter in inspect.signature(klass.__init__).parameters.values():
            if parameter.name != "self" and parameter.kind not in (
                parameter.VAR_POSITIONAL,
                parameter.VAR_KEYWORD,
            ):
                if parameter.name not in names:
                    names.append(parameter.name)
    return names


# --------------------------------------------------------------------------
# Decoding (JSON tree + arrays -> object)
# --------------------------------------------------------------------------


class _Reader:
    """Rebuilds objects from a manifest tree, checking everything."""

    def __init__(self, arrays, restore_states):
        self.arrays = arrays
        self.used = set()
        self.restore_states = restore_states

    # -- helpers -----------------------------------------------------------
    @staticmethod
    def fields(obj, where, required, optional=()):
        if type(obj) is not dict:
            raise FormatError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
        missing = [key for key in required if key not in obj]
        extra = [key for key in obj if key not in required and key not in optional]
        if missing or extra:
            raise FormatError(
                f"{where}: malformed entry (missing keys {missing}, unexpected keys {extra})."
            )
        return obj

    @staticmethod
    def typed(value, types, where, what):
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
            raise FormatError(f"{where}: {what} must be {_type_names(types)}, got {value!r}.")
        return value

    def array(self, entry, where):
        self.fields(entry, where, ("__kind__", "key", "dtype", "shape"), ("object",))
        if entry["__kind__"] != "ndarray":
            raise FormatError(f"{where}: expected an array entry, got kind {entry['__kind__']!r}.")
        key = self.typed(entry["key"], str, where, "the array key")
        if key not in self.arrays.files:
            raise FormatError(f"{where}: array {key!r} is missing from {ARRAYS_NAME}.")
        self.check_header(key, entry, where)
        try:
            array = self.arrays[key]
        except ValueError as exc:
            raise FormatError(
                f"{where}: array {key!r} in {ARRAYS_NAME} cannot be read without pickle "
                f"({exc}). numrnn files never hold object arrays: the file was not written "
                "by numrnn.save or was tampered with."
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
            raise FormatError(f"{where}: array {key!r} is unreadable ({exc}).") from None
        self.used.add(key)
        if not isinstance(array, np.ndarray):
            raise FormatError(f"{where}: member {key!r} of {ARRAYS_NAME} is not a .npy array.")
        if array.dtype.kind not in _ARRAY_KINDS or array.dtype.fields is not None:
            raise FormatError(f"{where}: array {key!r} has unsupported dtype {array.dtype}.")
        if array.dtype.str != entry["dtype"] or list(array.shape) != entry["shape"]:
            raise FormatError(
                f"{where}: array {key!r} has dtype {array.dtype.str} and shape "
                f"{list(array.shape)}, but the manifest says {entry['dtype']} and "
                f"{entry['shape']}: the file is inconsistent (tampered or corrupted)."
            )
        if entry.get("object", False) is True:
            if array.dtype.kind != "U":
                raise FormatError(f"{where}: an object entry must be stored as str.")
            array = array.astype(object)
        elif "object" in entry:
            raise FormatError(f"{where}: 'object' must be true when present.")
        return array

    def check_header(self, key, entry, where):
        """Compare a .npy header with the manifest before reading the data, so a
        tampered header cannot make numpy allocate an arbitrary amount."""
        member = f"{key}.npy"
        try:
            with self.arrays.zip.open(member) as stream:
                version = np.lib.format.read_magic(stream)
                if version == (1, 0):
                    header = np.lib.format.read_array_header_1_0(stream)
                elif version == (2, 0):
                    header = np.lib.format.read_array_header_2_0(stream)
                else:
                    return  # numpy checks other versions when it reads the array
        except KeyError:
            raise FormatError(
                f"{where}: member {key!r} of {ARRAYS_NAME} is not a .npy array."
            ) from None
        except ValueError as exc:  # np.lib.format refuses bad magic strings and headers
            raise FormatError(
                f"{where}: array {key!r} has an invalid .npy header ({exc})."
            ) from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise FormatError(f"{where}: array {key!r} is unreadable ({exc}).") from None
        shape, _, dtype = header
        if dtype.hasobject:
            raise FormatError(
                f"{where}: array {key!r} in {ARRAYS_NAME} is an object array, which only "
                "pickle can read. numrnn files never hold object arrays: the file was not "
                "written by numrnn.save or was tampered with."
            )
        if dtype.str != entry["dtype"] or list(shape) != entry["shape"]:
            raise FormatError(
                f"{where}: array {key!r} has dtype {dtype.str} and shape {list(shape)}, but "
                f"the manifest says {entry['dtype']} and {entry['shape']}: the file is "
                "inconsistent (tampered or corrupted)."
            )

    # -- values ------------------------------------------------------------
    def decode(self, value, where):
        """Rebuild a value encoded by :meth:`_Writer.encode`."""
        if value is None or isinstance(value, (bool, str, int)):
            return value
        if isinstance(value, float):
            return value
        if isinstance(value, list):
            return [self.decode(item, f"{where}[{i}]") for i, item in enumerate(value)]
        if not isinstance(value, dict):
            raise FormatError(f"{where}: unexpected JSON value {value!r}.")
        if _KIND not in value:
            return {key: self.decode(item, f"{where}[{key!r}]") for key, item in value.items()}
        kind = value[_KIND]
        handler = self._DECODERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            raise FormatError(
                f"{where}: unknown value kind {kind!r} (known kinds: "
                f"{', '.join(sorted(self._DECODERS))})."
            )
        return handler(self, value, where)

    def _float(self, value, where):
        self.fields(value, where, ("__kind__", "value"))
        text = value["value"]
        if text not in ("nan", "inf", "-inf"):
            raise FormatError(f"{where}: a non-finite float must be nan, inf or -inf.")
        return float(text)

    def _tuple(self, value, where):
        self.fields(value, where, ("__kind__", "items"))
        items = self.typed(value["items"], list, where, "tuple items")
        return tuple(self.decode(item, f"{where}[{i}]") for i, item in enumerate(items))

    def _dict(self, value, where):
        self.fields(value, where, ("__kind__", "items"))
        result = {}
        for pair in self.typed(value["items"], list, where, "dict items"):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise FormatError(f"{where}: dict items must be [key, value] pairs.")
            key = self.decode(pair[0], where)
            if not _is_key(key):
                raise FormatError(f"{where}: invalid dict key {key!r}.")
            if key in result:
                raise FormatError(f"{where}: duplicate dict key {key!r}.")
            result[key] = self.decode(pair[1], f"{where}[{key!r}]")
        return result

    def _ndarray(self, value, where):
        return self.array(value, where)

    def _numpy_scalar(self, value, where):
        self.fields(value, where, ("__kind__", "array"))
        array = self.array(value["array"], where)
        if array.shape != () or array.dtype == object:
            raise FormatError(f"{where}: a numpy scalar must be a 0-d array.")
        return array[()]

    def _dtype(self, value, where):
        self.fields(value, where, ("__kind__", "str"))
        text = self.typed(value["str"], str, where, "the dtype")
        try:
            dtype = np.dtype(text)
        except TypeError:
            raise FormatError(f"{where}: invalid dtype {text!r}.") from None
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
            raise FormatError(f"{where}: unsupported dtype {text!r}.")
        return dtype

    def _generator(self, value, where):
        self.fields(value, where, ("__kind__", "state"))
        state = self.decode(value["state"], where)
        name = state.get("bit_generator") if isinstance(state, dict) else None
        cls = _BIT_GENERATORS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise FormatError(f"{where}: unknown bit generator {name!r}.")
        bit_generator = cls()
        try:
            bit_generator.state = state
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise FormatError(f"{where}: invalid {name} state ({exc}).") from None
        return np.random.Generator(bit_generator)

    def _timestamp(self, value, where):
        self.fields(value, where, ("__kind__", "value", "tz"))
        array = self.array(value["value"], where)
        tz = value["tz"]
        if array.shape != () or array.dtype.kind != "M":
            raise FormatError(f"{where}: a Timestamp must be a 0-d datetime64 array.")
        stamp = pd.Timestamp(array[()])
        if tz is not None:
            stamp = stamp.tz_localize("UTC").tz_convert(self._tz(tz, where))
        return stamp

    def _timedelta(self, value, where):
        self.fields(value, where, ("__kind__", "value"))
        array = self.array(value["value"], where)
        if array.shape != () or array.dtype.kind != "m":
            raise FormatError(f"{where}: a Timedelta must be a 0-d timedelta64 array.")
        return pd.Timedelta(array[()])

    def _period(self, value, where):
        self.fields(value, where, ("__kind__", "ordinal", "freq"))
        ordinal = self.typed(value["ordinal"], int, where, "the ordinal")
        freq = self.typed(value["freq"], str, where, "the frequency")
        try:
            return pd.Period(ordinal=ordinal, freq=freq)
        except (TypeError, ValueError, OverflowError) as exc:
            raise FormatError(f"{where}: invalid Period ({exc}).") from None

    def _date_offset(self, value, where):
        self.fields(value, where, ("__kind__", "freq"))
        return to_offset(self._offset_text(value["freq"], where))

    @staticmethod
    def _offset_text(text, where):
        if not isinstance(text, str):
            raise FormatError(f"{where}: a frequency must be a string, got {text!r}.")
        try:
            to_offset(text)
        except (TypeError, ValueError):
            raise FormatError(f"{where}: invalid frequency {text!r}.") from None
        return text

    @staticmethod
    def _tz(text, where):
        if not isinstance(text, str):
            raise FormatError(f"{where}: a time zone must be a string, got {text!r}.")
        try:
            pd.Timestamp("2000-01-01", tz=text)
        except Exception:  # pandas raises various errors for unknown zones
            raise FormatError(f"{where}: unknown time zone {text!r}.") from None
        return text

    def _pandas_index(self, value, where):
        kind = value.get("type")
        layouts = {
            "RangeIndex": ("name", "start", "stop", "step"),
            "MultiIndex": ("names", "levels", "codes"),
            "DatetimeIndex": ("name", "values", "tz", "freq"),
            "TimedeltaIndex": ("name", "values", "freq"),
            "PeriodIndex": ("name", "ordinals", "freq"),
            "Index": ("name", "dtype", "values"),
        }
        if kind not in layouts:
            raise FormatError(f"{where}: unknown pandas index type {kind!r}.")
        self.fields(value, where, ("__kind__", "type") + layouts[kind])
        try:
            return self._build_index(kind, value, where)
        except FormatError:
            raise
        except (TypeError, ValueError, OverflowError) as exc:
            raise FormatError(f"{where}: invalid {kind} ({exc}).") from None

    def _build_index(self, kind, value, where):
        if kind == "MultiIndex":
            names = self.typed(value["names"], list, where, "names")
            levels = self.typed(value["levels"], list, where, "levels")
            codes = self.typed(value["codes"], list, where, "codes")
            level_objects = [self._pandas_index(level, f"{where}.levels") for level in levels]
            code_arrays = [self.array(c, f"{where}.codes") for c in codes]
            for array in code_arrays:
                if array.dtype.kind not in "iu":
                    raise FormatError(f"{where}: MultiIndex codes must be integers.")
            return pd.MultiIndex(
                levels=level_objects,
                codes=code_arrays,
                names=[self.decode(n, f"{where}.names") for n in names],
                verify_integrity=True,
            )
        name = self.decode(value["name"], f"{where}.name")
        if kind == "RangeIndex":
            bounds = [self.typed(value[k], int, where, k) for k in ("start", "stop", "step")]
            return pd.RangeIndex(*bounds, name=name)
        freq = value.get("freq")
        if freq is not None and kind != "PeriodIndex":
            freq = self._offset_text(freq, where)
        if kind == "DatetimeIndex":
            values = self.array(value["values"], where)
            if values.ndim != 1 or values.dtype.kind != "M":
                raise FormatError(f"{where}: DatetimeIndex values must be 1-D datetime64.")
            index = pd.DatetimeIndex(values, name=name)
            if value["tz"] is not None:
                index = index.tz_localize("UTC").tz_convert(self._tz(value["tz"], where))
            return index if freq is None else pd.DatetimeIndex(index, freq=freq, name=name)
        if kind == "TimedeltaIndex":
            values = self.array(value["values"], where)
            if values.ndim != 1 or values.dtype.kind != "m":
                raise FormatError(f"{where}: TimedeltaIndex values must be 1-D timedelta64.")
            return pd.TimedeltaIndex(values, freq=freq, name=name)
        if kind == "PeriodIndex":
            ordinals = self.array(value["ordinals"], where)
            if ordinals.ndim != 1 or ordinals.dtype.kind not in "iu":
                raise FormatError(f"{where}: PeriodIndex ordinals must be 1-D integers.")
            period_freq = self.typed(value["freq"], str, where, "the frequency")
            return pd.PeriodIndex.from_ordinals(ordinals, freq=period_freq).rename(name)
        dtype, values = self._column_values(value["dtype"], value["values"], where)
        return pd.Index(values, dtype=dtype, name=name)

    def _column_values(self, description, entry, where):
        values = self.array(entry, where)
        if values.ndim != 1:
            raise FormatError(f"{where}: values must be 1-D.")
        if isinstance(description, dict):
            self.fields(description, where, ("string", "na_value"))
            storage, na_value = description["string"], description["na_value"]
            if storage not in ("python", "pyarrow") or na_value not in ("NA", "nan"):
                raise FormatError(f"{where}: invalid str dtype {description!r}.")
            if values.dtype.kind != "U":
                raise FormatError(f"{where}: str values must be stored as a str array.")
            na = pd.NA if na_value == "NA" else np.nan
            try:
                dtype = pd.StringDtype(storage=storage, na_value=na)
            except ImportError:  # pyarrow missing here: same values, python storage
                dtype = pd.StringDtype(storage="python", na_value=na)
            return dtype, values.astype(object)
        dtype = self._dtype({"__kind__": "dtype", "str": description}, where)
        if dtype.kind == "U" and values.dtype == object:
            return object, values
        if values.dtype != dtype:
            raise FormatError(f"{where}: values have dtype {values.dtype}, expected {dtype}.")
        return dtype, values

    def _pandas_series(self, value, where):
        self.fields(value, where, ("__kind__", "name", "index", "dtype", "values"))
        index = self._pandas_index(value["index"], f"{where}.index")
        dtype, values = self._column_values(value["dtype"], value["values"], where)
        if len(values) != len(index):
            raise FormatError(f"{where}: {len(values)} values for an index of {len(index)}.")
        name = self.decode(value["name"], f"{where}.name")
        return pd.Series(values, index=index, dtype=dtype, name=name)

    def _pandas_dataframe(self, value, where):
        self.fields(value, where, ("__kind__", "index", "columns", "data"))
        index = self._pandas_index(value["index"], f"{where}.index")
        columns = self._pandas_index(value["columns"], f"{where}.columns")
        data = self.typed(value["data"], list, where, "data")
        if len(data) != len(columns):
            raise FormatError(f"{where}: {len(data)} columns of data for {len(columns)} labels.")
        series = []
        for position, pair in enumerate(data):
            if not (isinstance(pair, list) and len(pair) == 2):
                raise FormatError(f"{where}: each column must be [dtype, values].")
            dtype, values = self._column_values(pair[0], pair[1], f"{where} column {position}")
            if len(values) != len(index):
                raise FormatError(f"{where}: column {position} has {len(values)} values.")
            series.append(pd.Series(values, index=index, dtype=dtype))
        if not series:
            return pd.DataFrame(index=index, columns=columns)
        frame = pd.concat(series, axis=1, ignore_index=True)
        frame.columns = columns
        return frame

    def _optimizer(self, value, where):
        self.fields(value, where, ("__kind__", "class", "config", "state"))
        cls = _OPTIMIZER_CLASSES.get(value["class"]) if isinstance(value["class"], str) else None
        if cls is None:
            raise FormatError(f"{where}: unknown optimizer class {value['class']!r}.")
        config = self.decode(value["config"], where)
        state = self.decode(value["state"], where)
        allowed = set(_init_arguments(cls))
        if not isinstance(config, dict) or not set(config) <= allowed:
            raise FormatError(f"{where}: invalid {cls.__name__} config.")
        try:
            optimizer = cls(**config)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: invalid {cls.__name__} config ({exc}).") from None
        if not (isinstance(state, dict) and set(state) == {"iterations", "learning_rate", "slots"}):
            raise FormatError(f"{where}: invalid optimizer state.")
        slots = state["slots"]
        if slots is not None:
            if not (isinstance(slots, dict) and set(slots) == set(optimizer._slot_names())):
                raise FormatError(
                    f"{where}: {cls.__name__} slots must be {sorted(optimizer._slot_names())}."
                )
            for arrays in slots.values():
                arrays_ok = isinstance(arrays, list) and all(
                    isinstance(a, np.ndarray) for a in arrays
                )
                if not arrays_ok:
                    raise FormatError(f"{where}: optimizer slots must be lists of arrays.")
        if not (type(state["iterations"]) is int and state["iterations"] >= 0):
            raise FormatError(f"{where}: optimizer iterations must be a non-negative int.")
        if type(state["learning_rate"]) is not float:
            raise FormatError(f"{where}: optimizer learning_rate must be a float.")
        optimizer.set_state(state)
        return optimizer

    def _record(self, value, where):
        self.fields(value, where, ("__kind__", "class", "fields"))
        name = value["class"]
        cls = _RECORDS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise FormatError(f"{where}: unknown record class {name!r}.")
        fields = self.typed(value["fields"], dict, where, "fields")
        if set(fields) != set(_RECORD_FIELDS[cls]):
            raise FormatError(f"{where}: {name} needs the fields {list(_RECORD_FIELDS[cls])}.")
        kwargs = {key: self.decode(item, f"{where}.{key}") for key, item in fields.items()}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: cannot rebuild {name} ({exc}).") from None

    def _layer(self, value, where):
        self.fields(value, where, ("__kind__", "spec"))
        return self.layer(value["spec"], where)

    def _sequential(self, value, where):
        self.fields(value, where, ("__kind__", "name", "input_shape", "layers"), ("device",))
        layer_specs = self.typed(value["layers"], list, where, "layers")
        layers = [self.layer(spec, f"{where}.layers[{i}]") for i, spec in enumerate(layer_specs)]
        name = self.decode(value["name"], where)
        if not isinstance(name, str):
            raise FormatError(f"{where}: the model name must be a string.")
        model = Sequential(layers, name=name)
        device = value.get("device")
        if device is not None:
            try:
                model.device = device
            except (TypeError, ValueError) as exc:
                raise FormatError(f"{where}: invalid device ({exc}).") from None
        if value["input_shape"] is not None:
            shape = self.shape(value["input_shape"], where)
            try:
                model.build(shape)
            except (TypeError, ValueError) as exc:
                raise FormatError(f"{where}: the layers do not fit together ({exc}).") from None
        return model

    def _estimator(self, value, where):
        self.fields(value, where, ("__kind__", "class", "params", "attributes"))
        name = value["class"]
        cls = _ESTIMATORS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise FormatError(
                f"{where}: unknown estimator class {name!r}; this numrnn knows "
                f"{sorted(_ESTIMATORS)} (others need numrnn.persistence.register_estimator)."
            )
        params = self.typed(value["params"], dict, where, "params")
        known = set(cls._get_param_names())
        unknown = sorted(set(params) - known)
        if unknown:
            raise FormatError(f"{where}: {name} has no parameter(s) {unknown}.")
        kwargs = {
            key: self.decode(item, f"{name} parameter {key!r}") for key, item in params.items()
        }
        try:
            estimator = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: {name}(**params) failed ({exc}).") from None
        attributes = self.typed(value["attributes"], dict, where, "attributes")
        for key, item in attributes.items():
            if (
                not _ATTRIBUTE_NAME.match(key)
                or key.startswith("__")
                or key in known
                or hasattr(cls, key)
            ):
                raise FormatError(
                    f"{where}: {key!r} is not a valid fitted attribute name for {name} (it "
                    "is not an identifier, is a dunder, a parameter or a class attribute)."
                )
            setattr(estimator, key, self.decode(item, f"{name} attribute {key!r}"))
        return estimator

    _DECODERS = {
        "float": _float,
        "tuple": _tuple,
        "dict": _dict,
        "ndarray": _ndarray,
        "numpy_scalar": _numpy_scalar,
        "dtype": _dtype,
        "generator": _generator,
        "timestamp": _timestamp,
        "timedelta": _timedelta,
        "period": _period,
        "date_offset": _date_offset,
        "pandas_index": _pandas_index,
        "pandas_series": _pandas_series,
        "pandas_dataframe": _pandas_dataframe,
        "optimizer": _optimizer,
        "record": _record,
        "layer": _layer,
        "sequential": _sequential,
        "estimator": _estimator,
    }

    # -- layers ------------------------------------------------------------
    def shape(self, value, where):
        shape = self.decode(value, where)
        if not (
            isinstance(shape, tuple)
            and all(d is None or (type(d) is int and d >= 0) for d in shape)
        ):
            raise FormatError(f"{where}: a shape must be a tuple of non-negative ints or None.")
        return shape

    def layer(self, spec, where):
        """Rebuild a layer from its spec: construct, build, set weights and states."""
        name = spec.get("class") if isinstance(spec, dict) else None
        cls = _LAYERS.get(name) if isinstance(name, str) else None
        if cls is None:
            raise FormatError(
                f"{where}: unknown layer class {name!r}; this numrnn knows "
                f"{sorted(_LAYERS)} (others need numrnn.persistence.register_layer)."
            )
        sub_keys = _WRAPPED_LAYERS.get(cls, ())
        common = ("class", "config", "built", "input_shape", "weights", "states", "rngs")
        self.fields(spec, where, common + sub_keys)
        config = self.decode(spec["config"], f"{where} config")
        if not (isinstance(config, dict) and all(isinstance(k, str) for k in config)):
            raise FormatError(f"{where}: a layer config must be a dict with str keys.")
        where = f"{where} (layer {config.get('name')!r})"
        subs = {key: self.layer(spec[key], f"{where}.{key}") for key in sub_keys}
        try:
            if cls is _layers.Bidirectional:
                layer = cls(subs["forward_layer"], backward_layer=subs["backward_layer"], **config)
                # the constructor copies its first argument; keep the stored one
                layer.forward_layer = subs["forward_layer"]
            elif cls is _layers.TimeDistributed:
                layer = cls(subs["layer"], **config)
            else:
                layer = cls(**config)
        except (TypeError, ValueError) as exc:
            raise FormatError(f"{where}: cannot rebuild {name} from its config ({exc}).") from None
        if spec["built"] is True:
            shape = self.shape(spec["input_shape"], f"{where} input_shape")
            try:
                layer.build(shape)
            except (TypeError, ValueError) as exc:
                raise FormatError(f"{where}: cannot build for shape {shape} ({exc}).") from None
        elif spec["built"] is not False or spec["input_shape"] is not None:
            raise FormatError(f"{where}: 'built' must be a bool (input_shape null when false).")
        self.set_layer_weights(layer, spec, where)
        self.set_layer_states(layer, spec, where)
        self.set_layer_rngs(layer, spec, where)
        return layer

    def set_layer_weights(self, layer, spec, where):
        entries = self.typed(spec["weights"], list, where, "weights")
        expected = [] if _is_wrapper(layer) or not layer.built else layer.weights
        if len(entries) != len(expected):
            raise FormatError(
                f"{where}: {len(entries)} weight arrays stored, the layer has {len(expected)}."
            )
        arrays = []
        for i, (entry, current) in enumerate(zip(entries, expected)):
            array = self.array(entry, f"{where} weight {i}")
            if array.shape != current.shape or array.dtype != current.dtype:
                raise FormatError(
                    f"{where}: weight {i} has shape {array.shape} and dtype {array.dtype}; "
                    f"the layer expects {current.shape} and {current.dtype}."
                )
            arrays.append(array)
        if arrays:
            layer.set_weights(arrays)

    def set_layer_states(self, layer, spec, where):
        entries = spec["states"]
        if entries is None:
            return
        self.typed(entries, list, where, "states")
        if not (isinstance(layer, _layers.RNN) and layer.stateful):
            raise FormatError(f"{where}: states are stored for a layer that is not stateful.")
        states = [self.array(entry, f"{where} state {i}") for i, entry in enumerate(entries)]
        if len(states) != layer._n_states or not layer.built:
            raise FormatError(
                f"{where}: {len(states)} states stored; the layer has {layer._n_states}."
            )
        batch = states[0].shape[0] if states[0].ndim == 2 else -1
        for i, state in enumerate(states):
            if state.shape != (batch, layer.units) or state.dtype != layer.dtype:
                raise FormatError(
                    f"{where}: state {i} has shape {state.shape} and dtype {state.dtype}; "
                    f"expected (batch, {layer.units}) and {layer.dtype}, the same batch for all."
                )
        fixed = layer.input_shape[0]
        if fixed is not None and fixed != batch:
            raise FormatError(
                f"{where}: states hold batch {batch}, the layer was built for batch {fixed}."
            )
        if self.restore_states:
            layer.reset_states(states)

    def set_layer_rngs(self, layer, spec, where):
        rngs = self.typed(spec["rngs"], dict, where, "rngs")
        for attribute, entry in rngs.items():
            if not isinstance(getattr(layer, attribute, None), np.random.Generator):
                raise FormatError(f"{where}: the layer has no random generator {attribute!r}.")
            setattr(layer, attribute, self._generator(entry, f"{where}.{attribute}"))


_WRAPPED_LAYERS = {
    _layers.Bidirectional: ("forward_layer", "backward_layer"),
    _layers.TimeDistributed: ("layer",),
}


def _tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _type_names(types):
    return " or ".join(t.__name__ for t in _tuple(types))


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def save(obj, path, *, format="zip", overwrite=False):
    """Save a fitted estimator, a ``Sequential`` or a layer without pickle.

    Parameters
    ----------
    obj : RNNClassifier, RNNRegressor, RNNForecaster, Sequential or Layer
        What to save (fitted or not). Estimators are stored as their
        ``get_params()`` plus every other attribute (fitted attributes,
        optimizer state, random generators); models and layers as their
        configs, weights, random generators and stateful states.
    path : str or os.PathLike
        Destination file (``format="zip"``) or directory
        (``format="directory"``).
    format : {"zip", "directory"}, default="zip"
        One zip file, or a directory holding ``numrnn.json`` and
        ``arrays.npz``.
    overwrite : bool, default=False
        Replace an existing file, or write into an existing directory that
        holds nothing but a previous save.

    Raises
    ------
    TypeError
        If ``obj`` (or a parameter or attribute of it) has a type the format
        cannot hold; the message names it.
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        For an unknown ``format``.

    See Also
    --------
    load : Read the object back.

    Notes
    -----
    The file holds no pickle: loading it never executes code. The format is
    described in the numrnn documentation (scaling and persistence).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from numrnn import Sequential, layers
    >>> from numrnn.persistence import load, save
    >>> model = Sequential([layers.Input(shape=(5, 2)), layers.LSTM(3, seed=0),
    ...                     layers.Dense(1, seed=1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "model.zip")
    >>> save(model, path)
    >>> again = load(path)
    >>> x = np.ones((4, 5, 2), dtype="float32")
    >>> bool(np.array_equal(again(x), model(x)))
    True
    """
    if format not in ("zip", "directory"):
        raise ValueError(f"Unknown format {format!r}: expected 'zip' or 'directory'.")
    if not isinstance(obj, (BaseEstimator, Sequential, _layers.Layer)):
        raise TypeError(
            "numrnn.save expects a numrnn estimator, Sequential or layer, got "
            f"{type(obj).__name__}."
        )
    writer = _Writer()
    tree = writer.encode(obj, type(obj).__name__)
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "numrnn_version": _numrnn_version(),
        "object": tree,
    }
    manifest_bytes = json.dumps(manifest, allow_nan=False, indent=1).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **writer.arrays)
    arrays_bytes = buffer.getvalue()
    path = os.fspath(path)
    if format == "zip":
        _write_zip(path, manifest_bytes, arrays_bytes, overwrite)
    else:
        _write_directory(path, manifest_bytes, arrays_bytes, overwrite)


def _numrnn_version():
    import numrnn

    return getattr(numrnn, "__version__", "unknown")


def _write_zip(path, manifest_bytes, arrays_bytes, overwrite):
    if os.path.isdir(path):
        raise FileExistsError(f"{path!r} is a directory; pass format='directory' to save there.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path!r} exists; pass overwrite=True to replace it.")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"The directory {directory!r} to save {path!r} in does not exist.")
    handle, temporary = tempfile.mkstemp(prefix=".numrnn-", suffix=".zip", dir=directory)
    try:
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(MANIFEST_NAME, manifest_bytes)
                archive.writestr(ARRAYS_NAME, arrays_bytes)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _write_directory(path, manifest_bytes, arrays_bytes, overwrite):
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise FileExistsError(f"{path!r} exists and is not a directory.")
        contents = set(os.listdir(path))
        if contents and not overwrite:
            raise FileExistsError(f"{path!r} is not empty; pass overwrite=True to replace it.")
        if not contents <= set(_MEMBERS):
            raise FileExistsError(
                f"{path!r} holds other files than a numrnn save ({sorted(contents)}); "
                "numrnn.save does not overwrite them."
            )
    else:
        os.makedirs(path)
    # arrays first: a manifest only appears once its arrays are complete
    for name, data in ((ARRAYS_NAME, arrays_bytes), (MANIFEST_NAME, manifest_bytes)):
        target = os.path.join(path, name)
        temporary = target + ".tmp"
        with open(temporary, "wb") as stream:
            stream.write(data)
        os.replace(temporary, target)


def load(path, *, restore_states=None):
    """Load an object written by :func:`save`, without executing code.

    Parameters
    ----------
    path : str or os.PathLike
        A zip file or a directory written by :func:`save`.
    restore_states : bool, optional
        Whether stateful recurrent layers get back the states they held when
        saved (True) or start from zeros, as after ``reset_states()``
        (False). By default (None) an estimator gets its states back, since
        they are part of its fitted state (a forecaster predicts from the
        carried state), and a bare model or layer comes back reset.

    Returns
    -------
    object
        The estimator, ``Sequential`` or layer, with bit-identical weights.

    Raises
    ------
    FormatError
        (a ``ValueError``) if the file is truncated, corrupted, tampered with,
        inconsistent, names an unknown class or value kind, or was written in
        a newer format version.
    FileNotFoundError
        If ``path`` does not exist.

    See Also
    --------
    save : Write an object.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"No such file or directory: {path!r}.")
    if os.path.isdir(path):
        manifest_bytes, arrays_source = _read_directory(path)
    else:
        manifest_bytes, arrays_source = _read_zip(path)
    manifest = _parse_manifest(manifest_bytes)
    try:
        arrays = np.load(arrays_source, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise FormatError(f"{ARRAYS_NAME} is not a readable npz archive ({exc}).") from None
    if not isinstance(arrays, np.lib.npyio.NpzFile):
        raise FormatError(f"{ARRAYS_NAME} is not an npz archive.")
    with arrays:
        if restore_states is None:
            top = manifest["object"]
            restore_states = isinstance(top, dict) and top.get(_KIND) == "estimator"
        reader = _Reader(arrays, bool(restore_states))
        try:
            obj = reader.decode(manifest["object"], "object")
        except RecursionError:
            raise FormatError("The manifest is nested too deeply.") from None
        unused = sorted(set(arrays.files) - reader.used)
    if unused:
        raise FormatError(
            f"{ARRAYS_NAME} holds arrays the manifest does not mention ({unused[:5]}): the "
            "file is inconsistent (tampered or corrupted)."
        )
    if not isinstance(obj, (BaseEstimator, Sequential, _layers.Layer)):
        raise FormatError("The file does not hold an estimator, a Sequential or a layer.")
    return obj


def _read_zip(path):
    if not zipfile.is_zipfile(path):
        raise FormatError(
            f"{path!r} is not a numrnn file: not a zip archive (or a truncated one) and "
            "not a directory."
        )
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if sorted(names) != sorted(_MEMBERS) or len(set(names)) != len(names):
                raise FormatError(
                    f"{path!r} must hold exactly {list(_MEMBERS)}, found {names[:10]}."
                )
            info = archive.getinfo(MANIFEST_NAME)
            if info.file_size > _MAX_MANIFEST_BYTES:
                raise FormatError(f"{MANIFEST_NAME} is implausibly large ({info.file_size} B).")
            manifest_bytes = archive.read(MANIFEST_NAME)
            arrays_bytes = archive.read(ARRAYS_NAME)
    except FormatError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
    ) as exc:
        raise FormatError(f"{path!r} is a corrupted or truncated zip archive ({exc}).") from None
    return manifest_bytes, io.BytesIO(arrays_bytes)


def _read_directory(path):
    contents = set(os.listdir(path))
    missing = [name for name in _MEMBERS if name not in contents]
    if missing:
        raise FormatError(f"{path!r} is not a numrnn save directory: missing {missing}.")
    manifest_path = os.path.join(path, MANIFEST_NAME)
    arrays_path = os.path.join(path, ARRAYS_NAME)
    if not (os.path.isfile(manifest_path) and os.path.isfile(arrays_path)):
        raise FormatError(f"{path!r}: {list(_MEMBERS)} must be regular files.")
    if os.path.getsize(manifest_path) > _MAX_MANIFEST_BYTES:
        raise FormatError(f"{MANIFEST_NAME} is implausibly large.")
    with open(manifest_path, "rb") as stream:
        manifest_bytes = stream.read()
    with open(arrays_path, "rb") as stream:
        arrays_bytes = stream.read()
    return manifest_bytes, io.BytesIO(arrays_bytes)


def _reject_constant(name):
    raise FormatError(f"{MANIFEST_NAME} holds the non-standard JSON constant {name}.")


def _unique_keys(pairs):
    result = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"{MANIFEST_NAME} repeats the key {key!r}.")
        result[key] = value
    return result


def _parse_manifest(data):
    try:
        text = data.decode("utf-8")
        manifest = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise FormatError(f"{MANIFEST_NAME} is not UTF-8 text.") from None
    except RecursionError:
        raise FormatError(f"{MANIFEST_NAME} is nested too deeply.") from None
    except json.JSONDecodeError as exc:
        raise FormatError(f"{MANIFEST_NAME} is not valid JSON ({exc}).") from None
    if not isinstance(manifest, dict):
        raise FormatError(f"{MANIFEST_NAME} must hold a JSON object.")
    if manifest.get("format") != FORMAT_NAME:
        raise FormatError(
            f"Not a numrnn file: {MANIFEST_NAME} names format {manifest.get('format')!r}."
        )
    version = manifest.get("format_version")
    if type(version) is not int or version < 1:
        raise FormatError(f"Invalid format_version {version!r} in {MANIFEST_NAME}.")
    if version > FORMAT_VERSION:
        raise FormatError(
            f"The file uses numrnn format version {version}, newer than the versions this "
            f"numrnn {_numrnn_version()} reads (up to {FORMAT_VERSION}): upgrade numrnn."
        )
    _Reader.fields(manifest, MANIFEST_NAME, ("format", "format_version", "object"),
                   ("numrnn_version",))  # fmt: skip
    return manifest


_register_defaults()
