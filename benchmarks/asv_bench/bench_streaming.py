"""Streaming latency: a stateful model predicting one step at a time, batch 1.

``time_layer_step`` calls a stateful recurrent layer on a ``(1, 1, 16)``
input (the single-step path); ``time_model_step`` calls a stateful
``Sequential`` of that layer and a ``Dense`` head.
"""

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
