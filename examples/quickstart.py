"""Quickstart: an LSTM classifier inside a scikit-learn pipeline.

Each sample is a univariate sequence of 20 steps (a row of a 2-D array) and
the label says whether the random walk it describes ever climbs above 3.
The pipeline standardises the steps and fits an LSTM; the script prints the
test accuracy, the fit time and the fitted network.

Run: python examples/quickstart.py   (NUMRNN_QUICK=1 for a shorter run)

Needs only numrnn's own dependencies. The first run compiles the LSTM
kernels (a few seconds); later runs load them from Numba's cache.
"""

import os
import time
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from numrnn import RNNClassifier

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
n_sequences = 300 if QUICK else 600
# 30 epochs is enough here; don't warn that the loss could still go down a little
warnings.simplefilter("ignore", ConvergenceWarning)

rng = np.random.default_rng(0)
X = rng.normal(size=(n_sequences, 20))
y = (X.cumsum(axis=1).max(axis=1) > 3).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)

model = make_pipeline(
    StandardScaler(),
    RNNClassifier(
        units=16,
        max_iter=30,
        learning_rate_init=0.01,
        random_state=0,
    ),
)
start = time.perf_counter()
model.fit(X_train, y_train)
seconds = time.perf_counter() - start

clf = model[-1]
print(f"train {X_train.shape}, {clf.n_iter_} epochs in {seconds:.1f} s")
print(f"test accuracy {model.score(X_test, y_test):.3f}")
proba = model.predict_proba(X_test[:3])[:, 1]
print(f"P(climbs above 3) for the first 3 test walks: {np.round(proba, 3)}")
clf.model_.summary()
