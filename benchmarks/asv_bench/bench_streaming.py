"""Streaming latency: a stateful model predicting one step at a time, batch 1.

``time_layer_step`` calls a stateful recurrent layer on a ``(1, 1, 16)``
input (the single-step path); ``time_model_step`` calls a stateful
``Sequential`` of that layer and a ``Dense`` head (each layer takes its
single-step path too). ``Forecasting.time_predict`` forecasts recursively,
one model step per step ahead.
"""

import warnings

import numpy as np

from .common import layer_class, sequences

FEATURES = 16


class Streaming:
    params = (["simple", "lstm", "gru"], [32, 128])
    param_names = ["cell", "units"]

    def setup(self, cell, units):
        from numrnn import Sequential, layers

        self.x = sequences(1, 1, FEATURES)
        self.layer = layer_class(cell)(units, stateful=True, seed=0)
        self.model = Sequential([layer_class(cell)(units, stateful=True, seed=0), layers.Dense(1)])
        for _ in range(3):  # builds, creates the states, warms both paths up
            self.layer(self.x)
            self.model(self.x)

    def time_layer_step(self, cell, units):
        self.layer(self.x)

    def time_model_step(self, cell, units):
        self.model(self.x)


class Forecasting:
    params = [10, 100]
    param_names = ["horizon"]

    def setup(self, horizon):
        from numrnn import RNNForecaster

        series = np.sin(np.arange(400) / 10.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one epoch does not converge
            self.forecaster = RNNForecaster(units=(32,), lags=4, max_iter=1, random_state=0)
            self.forecaster.fit(series)
        self.forecaster.predict(horizon)  # compiles and loads the step kernels

    def time_predict(self, horizon):
        self.forecaster.predict(horizon)
