"""Keras-compatible layers."""

from numrnn.layers.base import Layer
from numrnn.layers.core import Dense, Dropout, Embedding, Input, Masking, TimeDistributed
from numrnn.layers.recurrent import GRU, LSTM, RNN, SimpleRNN
from numrnn.layers.wrappers import Bidirectional

__all__ = [
    "Bidirectional",
    "Dense",
    "Dropout",
    "Embedding",
    "GRU",
    "Input",
    "LSTM",
    "Layer",
    "Masking",
    "RNN",
    "SimpleRNN",
    "TimeDistributed",
]
