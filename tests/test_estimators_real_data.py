"""Real data: two UCR/UEA datasets that ship inside the aeon wheel.

aeon is a test-only dependency (``pip install aeon``); these tests are
skipped without it and marked slow (run them with ``pytest -m slow``).
They check that loading makes no network connection, then train a GRU
classifier with fixed epochs and seed and compare the test accuracy with
the targets of issue 3 (0.95 on ItalyPowerDemand, 0.9 on BasicMotions).
"""

import socket
import time

import numpy as np
import pytest

from numrnn import RNNClassifier

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


def _load_offline(name, monkeypatch):
    """Train/test splits as (n, timesteps, channels), standardised with train statistics."""
    datasets = pytest.importorskip("aeon.datasets")

    def refuse(*args, **kwargs):
        raise AssertionError(f"loading {name} tried to open a network connection")

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        X_train, y_train = datasets.load_classification(name, split="train")
        X_test, y_test = datasets.load_classification(name, split="test")
    # aeon stores collections as (n_cases, n_channels, n_timepoints)
    X_train = X_train.transpose(0, 2, 1)
    X_test = X_test.transpose(0, 2, 1)
    mean = X_train.mean(axis=(0, 1))
    std = X_train.std(axis=(0, 1))
    return (X_train - mean) / std, y_train, (X_test - mean) / std, y_test


# 100 epochs without early stopping (n_iter_no_change=max_iter): across seeds
# 0-7 these settings gave test accuracies of at least 0.956 and 0.95.
CASES = [
    (
        "ItalyPowerDemand",
        dict(cell="gru", units=(32,), bidirectional=True),
        0.95,
    ),
    (
        "BasicMotions",
        dict(cell="gru", units=(32,), dropout=0.2),
        0.9,
    ),
]


@pytest.mark.parametrize("name, architecture, target", CASES, ids=[c[0] for c in CASES])
def test_ucr_accuracy(name, architecture, target, monkeypatch):
    X_train, y_train, X_test, y_test = _load_offline(name, monkeypatch)
    clf = RNNClassifier(
        **architecture,
        learning_rate_init=0.003,
        batch_size=8,
        max_iter=100,
        n_iter_no_change=100,
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    print(f"{name}: test accuracy {accuracy:.4f}, fit {fit_seconds:.1f} s")
    assert accuracy >= target
    assert np.isin(clf.predict(X_test), clf.classes_).all()
