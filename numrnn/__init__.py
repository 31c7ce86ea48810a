"""numrnn: SimpleRNN, LSTM and GRU for the scientific Python stack.

Importing numrnn compiles nothing: kernels compile (or load from numba's
cache) on first use.
"""

from numrnn import config, layers
from numrnn.estimators import RNNClassifier, RNNForecaster, RNNRegressor
from numrnn.models import Sequential

__version__ = "0.1.0.dev0"

__all__ = [
    "RNNClassifier",
    "RNNForecaster",
    "RNNRegressor",
    "Sequential",
    "config",
    "layers",
    "__version__",
]
