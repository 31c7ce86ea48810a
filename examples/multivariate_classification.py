"""Multivariate classification on real data shipped inside the aeon package.

Two UEA datasets that aeon keeps in its wheel (loading them needs no
network):

- BasicMotions: 6 channels (accelerometer and gyroscope x, y, z) of 100
  steps recorded while people stood, walked, ran or played badminton;
  40 training and 40 test recordings.
- JapaneseVowels: 12 channels (cepstral coefficients) of 7 to 29 steps from
  9 speakers saying a vowel; 270 training and 370 test utterances of
  *different lengths*, passed to numrnn as a list of arrays.

A GRU classifier is trained on each; the script prints the test accuracies
and saves multivariate_classification.png (a BasicMotions recording per
class and the test confusion matrix).

Run: python examples/multivariate_classification.py   (NUMRNN_QUICK=1 for a shorter run)

Needs aeon. aeon pins an older numba, so install it without its
dependencies, and add the one it needs that numrnn does not bring:
``pip install Deprecated && pip install --no-deps aeon``.
"""

import os
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import confusion_matrix

from numrnn import RNNClassifier

try:
    from aeon.datasets import load_classification
except ImportError:
    print(
        "aeon is not installed (pip install Deprecated && pip install --no-deps aeon): "
        "skipping this example."
    )
    raise SystemExit(0) from None

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epochs, no early stopping


def load(name):
    """Train and test sets as numrnn expects them: steps first, channels last.

    aeon returns equal-length collections as arrays (n_cases, n_channels,
    n_timepoints) and unequal-length ones as lists of (n_channels, length)
    arrays. Each channel is standardised with the training statistics.
    """
    X_train, y_train = load_classification(name, split="train")
    X_test, y_test = load_classification(name, split="test")
    X_train = [case.T for case in X_train]
    X_test = [case.T for case in X_test]
    steps = np.concatenate(X_train)
    mean, std = steps.mean(axis=0), steps.std(axis=0)
    X_train = [(case - mean) / std for case in X_train]
    X_test = [(case - mean) / std for case in X_test]
    if len({len(case) for case in X_train + X_test}) == 1:  # equal lengths: one 3-D array
        X_train, X_test = np.stack(X_train), np.stack(X_test)
    return X_train, y_train, X_test, y_test


settings = {
    "BasicMotions": dict(units=(32,), dropout=0.2, batch_size=8, max_iter=8 if QUICK else 100),
    "JapaneseVowels": dict(units=(32,), batch_size=16, max_iter=2 if QUICK else 20),
}
results = {}
for name, options in settings.items():
    X_train, y_train, X_test, y_test = load(name)
    clf = RNNClassifier(
        cell="gru",
        learning_rate_init=0.003 if name == "BasicMotions" else 0.005,
        n_iter_no_change=options["max_iter"],  # train every epoch
        random_state=0,
        **options,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    form = (
        f"array {X_train.shape}"
        if isinstance(X_train, np.ndarray)
        else (
            f"list of {len(X_train)} arrays, {min(map(len, X_train))}-{max(map(len, X_train))} "
            f"steps x {X_train[0].shape[1]} channels"
        )
    )
    accuracy = clf.score(X_test, y_test)
    print(
        f"{name:15s} {form}: test accuracy {accuracy:.3f} ({len(clf.classes_)} classes), "
        f"fit {seconds:.1f} s for {clf.n_iter_} epochs"
    )
    results[name] = (clf, X_train, y_train, X_test, y_test)

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: skipping the plot")
else:
    clf, X_train, y_train, X_test, y_test = results["BasicMotions"]
    fig, (ax_data, ax_cm) = plt.subplots(1, 2, figsize=(11, 4))
    for offset, label in enumerate(clf.classes_):
        case = X_train[np.flatnonzero(y_train == label)[0]]
        ax_data.plot(case[:, 0] + 6 * offset, linewidth=1, label=label)
    ax_data.set(
        title="BasicMotions: accelerometer x, one recording per class",
        xlabel="time step",
        yticks=[],
    )
    ax_data.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
    matrix = confusion_matrix(y_test, clf.predict(X_test), labels=clf.classes_)
    ax_cm.imshow(matrix, cmap="Blues")
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if count > matrix.max() / 2 else "black"
        ax_cm.text(col, row, str(count), ha="center", va="center", color=colour)
    ax_cm.set(
        title="test confusion matrix",
        xlabel="predicted",
        ylabel="true",
        xticks=range(len(clf.classes_)),
        yticks=range(len(clf.classes_)),
        xticklabels=clf.classes_,
        yticklabels=clf.classes_,
    )
    fig.tight_layout()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "multivariate_classification.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
