"""Quickstart: an LSTM layer with Keras semantics, its gradients, and a tiny
training loop written with numpy only.

Run: python examples/quickstart.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os

import numpy as np

from numrnn import Sequential, layers

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
rng = np.random.default_rng(0)

# A toy task: is the sum of a noisy sequence positive? 256 sequences of 20 steps.
n_samples, n_steps = 256, 20
x = rng.normal(size=(n_samples, n_steps, 1)).astype("float32")
y = (x.sum(axis=(1, 2)) > 0).astype("float32")[:, None]

model = Sequential(
    [
        layers.Input(shape=(n_steps, 1)),
        layers.LSTM(16, seed=0),
        layers.Dense(1, activation="sigmoid", seed=0),
    ]
)
model.summary()

learning_rate = 0.3
epochs = 5 if QUICK else 40
losses = []


def cotangent(p):
    """Gradient of the mean binary cross-entropy with respect to ``p``."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    losses.append(float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return [(p - y) / (p * (1 - p)) / len(y)]


for epoch in range(epochs):
    _, (grads, _, _) = model.value_and_vjp(x, cotangent, training=True)
    for w, g in zip(model.trainable_weights, grads):
        w -= learning_rate * g
    if epoch % 10 == 0 or epoch == epochs - 1:
        accuracy = np.mean((model.predict(x) > 0.5) == y)
        print(f"epoch {epoch:3d}  loss {losses[-1]:.4f}  accuracy {accuracy:.3f}")
