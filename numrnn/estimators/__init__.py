"""scikit-learn estimators built on numrnn's recurrent layers."""

from numrnn.estimators.classifier import RNNClassifier
from numrnn.estimators.forecaster import RNNForecaster
from numrnn.estimators.regressor import RNNRegressor

__all__ = ["RNNClassifier", "RNNForecaster", "RNNRegressor"]
