"""Real data: ItalyPowerDemand and BasicMotions, shipped inside the aeon wheel.

Needs aeon (pip install aeon), used only to load the data; no download
happens. Prints the test accuracy and the fit time of a GRU classifier.

Run: python examples/ucr_real_data.py
"""

import time
import warnings

from sklearn.exceptions import ConvergenceWarning

from numrnn import RNNClassifier

try:
    from aeon.datasets import load_classification
except ImportError:
    print("aeon is not installed (pip install aeon): skipping the real-data example.")
    raise SystemExit(0) from None

warnings.simplefilter("ignore", ConvergenceWarning)


def load(name):
    """Train and test splits as (n, timesteps, channels), standardised per channel."""
    X_train, y_train = load_classification(name, split="train")
    X_test, y_test = load_classification(name, split="test")
    X_train, X_test = X_train.transpose(0, 2, 1), X_test.transpose(0, 2, 1)
    mean, std = X_train.mean(axis=(0, 1)), X_train.std(axis=(0, 1))
    return (X_train - mean) / std, y_train, (X_test - mean) / std, y_test


settings = {
    "ItalyPowerDemand": dict(cell="gru", units=(32,), bidirectional=True),
    "BasicMotions": dict(cell="gru", units=(32,), dropout=0.2),
}
for name, architecture in settings.items():
    X_train, y_train, X_test, y_test = load(name)
    clf = RNNClassifier(
        **architecture,
        learning_rate_init=0.003,
        batch_size=8,
        max_iter=100,
        n_iter_no_change=100,  # train the full 100 epochs
        random_state=0,
    )
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    print(
        f"{name:17s} train {X_train.shape}, test accuracy {clf.score(X_test, y_test):.4f}, "
        f"fit {seconds:.1f} s"
    )
