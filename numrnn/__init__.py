"""numrnn: SimpleRNN, LSTM and GRU for the scientific Python stack.

Importing numrnn compiles nothing: kernels compile (or load from numba's
cache) on first use. The estimators, persistence, interop and Dask helpers
load on first access, so that ``import numrnn`` does not pay for
scikit-learn unless it is used.
"""

import importlib

from numrnn import config, layers
from numrnn.models import Sequential

__version__ = "0.1.0.dev0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "RNNClassifier": ("numrnn.estimators", "RNNClassifier"),
    "RNNForecaster": ("numrnn.estimators", "RNNForecaster"),
    "RNNRegressor": ("numrnn.estimators", "RNNRegressor"),
    "save": ("numrnn.persistence", "save"),
    "load": ("numrnn.persistence", "load"),
    "estimators": ("numrnn.estimators", None),
    "interop": ("numrnn.interop", None),
    "parallel": ("numrnn.parallel", None),
    "persistence": ("numrnn.persistence", None),
}

__all__ = ["Sequential", "config", "layers", "__version__", *_LAZY]


def __getattr__(name):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'numrnn' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
