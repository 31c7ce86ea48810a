"""Forward and backward time of each cell's kernels.

Measured through the layers' ``_forward``/``_backward`` protocol (the
kernels plus the layer's buffer handling, without the public call's input
checks), over a grid of (batch, timesteps, units) and both dtypes. Inputs
have 16 features.
"""

from .common import CELLS, DTYPES, cotangent_like, layer_class, sequences

SHAPES = ["16x50x16", "64x100x64", "128x50x128"]
N_FEATURES = 16


def _parse(shape):
    return tuple(int(v) for v in shape.split("x"))


class _Base:
    params = (CELLS, SHAPES, DTYPES)
    param_names = ["cell", "batch x timesteps x units", "dtype"]

    def _build(self, cell, shape, dtype):
        batch, steps, units = _parse(shape)
        self.x = sequences(batch, steps, N_FEATURES, dtype)
        self.layer = layer_class(cell)(units, return_sequences=True, seed=0, dtype=dtype)
        self.layer.build(self.x.shape)


class Forward(_Base):
    """``layer._forward``: input projection, time loop, caches."""

    def setup(self, cell, shape, dtype):
        self._build(cell, shape, dtype)
        self.layer._forward(self.x, None, None, True)  # compiles or loads the kernels

    def time_forward(self, cell, shape, dtype):
        self.layer._forward(self.x, None, None, True)


class Backward(_Base):
    """``layer._backward`` on one forward cache: BPTT and the weight gradients."""

    def setup(self, cell, shape, dtype):
        self._build(cell, shape, dtype)
        outputs, self.cache = self.layer._forward(self.x, None, None, True)
        self.cotangents = [cotangent_like(outputs[0])]
        self.layer._backward(self.cache, self.cotangents)  # warm-up

    def time_backward(self, cell, shape, dtype):
        self.layer._backward(self.cache, self.cotangents)
