"""Sequence labelling: one label per time step, with a TimeDistributed head.

Each synthetic signal (40 to 120 steps) switches between three regimes:
quiet noise, an oscillation, and a steady upward drift. The task is to say,
at every step, which regime the signal is in. ``RNNClassifier`` sees one
label per step in ``y`` and builds a network that returns the whole
sequence from its (bidirectional) GRU and applies the output layer at every
step through ``TimeDistributed``. The signals have different lengths, so
they go in as a list of arrays; the predictions come back the same way.

The script prints the network, the per-step test accuracy, and saves
sequence_labelling.png (a test signal coloured by true and predicted
regime).

Run: python examples/sequence_labelling.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from numrnn import RNNClassifier

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))
N_SIGNALS = 100 if QUICK else 300
EPOCHS = 5 if QUICK else 20
REGIMES = ["quiet", "oscillating", "drifting"]
rng = np.random.default_rng(0)
warnings.simplefilter("ignore", ConvergenceWarning)  # quick mode stops early on purpose


def make_signal():
    """A signal of shape (length, 1) and its regime label at every step."""
    length = int(rng.integers(40, 121))
    labels = np.empty(length, dtype=int)
    start, regime = 0, int(rng.integers(0, 3))
    while start < length:
        stop = min(length, start + int(rng.integers(10, 40)))
        labels[start:stop] = regime
        regime = (regime + int(rng.integers(1, 3))) % 3  # the next regime differs
        start = stop
    t = np.arange(length)
    values = 0.25 * rng.normal(size=length)
    values += np.where(labels == 1, np.sin(2 * np.pi * t / 6), 0.0)
    drift = np.cumsum(np.where(labels == 2, 0.15, 0.0))
    values += drift - np.maximum.accumulate(np.where(labels == 2, 0.0, drift))
    return values[:, None], labels


signals, labels = zip(*(make_signal() for _ in range(N_SIGNALS)))
split = int(0.8 * N_SIGNALS)
X_train, y_train = list(signals[:split]), list(labels[:split])
X_test, y_test = list(signals[split:]), list(labels[split:])

tagger = RNNClassifier(
    cell="gru",
    units=(24,),
    bidirectional=True,
    max_iter=EPOCHS,
    learning_rate_init=0.01,
    batch_size=16,
    random_state=0,
)
tagger.fit(X_train, y_train)
tagger.model_.summary()
print(f"per-step targets: {tagger.per_step_}, classes {tagger.classes_.tolist()} = {REGIMES}")
print(f"per-step test accuracy {tagger.score(X_test, y_test):.3f} after {tagger.n_iter_} epochs")

predicted = tagger.predict(X_test)
assert [len(p) for p in predicted] == [len(s) for s in X_test]

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: skipping the plot")
else:
    colours = ["tab:gray", "tab:blue", "tab:orange"]
    shown = int(np.argmax([np.count_nonzero(np.diff(t)) for t in y_test]))  # most switches
    signal, truth, guess = X_test[shown][:, 0], y_test[shown], predicted[shown]
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True)
    for ax, regime, title in [(axes[0], truth, "true regime"), (axes[1], guess, "predicted")]:
        ax.plot(signal, color="black", linewidth=1)
        for step, label in enumerate(regime):
            ax.axvspan(step - 0.5, step + 0.5, color=colours[label], alpha=0.3, linewidth=0)
        ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.3) for c in colours]
    fig.legend(handles, REGIMES, loc="upper center", ncol=3, frameon=False)
    axes[1].set_xlabel("time step")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "sequence_labelling.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
