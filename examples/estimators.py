"""RNNClassifier and RNNRegressor on every input form numrnn accepts.

Run: python examples/estimators.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os
import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from numrnn import RNNClassifier, RNNRegressor

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
EPOCHS = 5 if QUICK else 60
warnings.simplefilter("ignore", ConvergenceWarning)
rng = np.random.default_rng(0)

# 1. A 3-D array (n_sequences, n_timesteps, n_features): which sign wins?
X = rng.normal(size=(300, 20, 2))
y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
clf = RNNClassifier(units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0)
clf.fit(X_train, y_train)
print(f"3-D array     accuracy {clf.score(X_test, y_test):.3f} after {clf.n_iter_} epochs")

# 2. Ragged sequences: a list of (length_i, n_features) arrays, padded and masked inside.
lengths = rng.integers(5, 30, size=300)
ragged = [rng.normal(size=(length, 2)) for length in lengths]
means = np.array([seq[:, 0].mean() for seq in ragged])
reg = RNNRegressor(
    cell="gru", units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0
)
reg.fit(ragged[:200], means[:200])
print(f"ragged list   R^2 {reg.score(ragged[200:], means[200:]):.3f}")

# 3. Sequence labelling: one label per step; predictions come back per sequence.
labels = [(np.cumsum(seq[:, 0]) > 0).astype(int) for seq in ragged]
tagger = RNNClassifier(units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0)
tagger.fit(ragged[:200], labels[:200])
print(
    f"per-step      accuracy {tagger.score(ragged[200:], labels[200:]):.3f}; first "
    f"prediction has {len(tagger.predict(ragged[200:201])[0])} steps ({lengths[200]} given)"
)

# 4. pandas long format: one row per (sequence id, time), one column per feature.
frame = pd.concat(
    {f"user{i}": pd.DataFrame(seq, columns=["speed", "heading"]) for i, seq in enumerate(ragged)},
    names=["user", "t"],
)
per_user = pd.Series(means, index=[f"user{i}" for i in range(300)])
reg_frame = RNNRegressor(cell="gru", units=(16,), max_iter=EPOCHS, random_state=0)
reg_frame.fit(frame, per_user)
frame_r2 = reg_frame.score(frame, per_user)
print(f"pandas frame  features {list(reg_frame.feature_names_in_)}, R^2 {frame_r2:.3f}")
