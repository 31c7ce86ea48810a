"""Cost of the wrappers and of masking, against the bare recurrent layer.

Variants: ``bare`` (the layer alone), ``masked`` (a mask with a quarter of
the steps padded at the end of every sequence), ``bidirectional``
(``Bidirectional(layer)``, twice the work) and ``bidirectional_masked``.
The ratio of each variant to ``bare`` is the overhead.
"""

import numpy as np

from .common import cotangent_like, layer_class, sequences

VARIANTS = ["bare", "masked", "bidirectional", "bidirectional_masked"]
BATCH, STEPS, FEATURES, UNITS = 32, 100, 16, 32


class Wrappers:
    params = (["lstm", "gru"], VARIANTS)
    param_names = ["cell", "variant"]

    def setup(self, cell, variant):
        from numrnn import layers

        self.x = sequences(BATCH, STEPS, FEATURES)
        inner = layer_class(cell)(UNITS, return_sequences=True, seed=0)
        if variant.startswith("bidirectional"):
            self.layer = layers.Bidirectional(inner)
        else:
            self.layer = inner
        if variant.endswith("masked"):
            self.mask = np.ones((BATCH, STEPS), dtype=bool)
            self.mask[:, 3 * STEPS // 4 :] = False
        else:
            self.mask = None
        out = self.layer(self.x, mask=self.mask)
        self.cotangents = [cotangent_like(out)]
        self.layer.vjp(self.x, self.cotangents, mask=self.mask)  # warm-up

    def time_inference(self, cell, variant):
        self.layer(self.x, mask=self.mask)

    def time_training_step(self, cell, variant):
        self.layer.vjp(self.x, self.cotangents, mask=self.mask, training=True)
