"""RNNClassifier and RNNRegressor on every input form numrnn accepts.

1. a 3-D array ``(n_sequences, n_timesteps, n_features)``;
2. a ragged list of ``(length_i, n_features)`` arrays (padded and masked
   inside);
3. per-step labels (sequence labelling): predictions come back per sequence,
   without the padding;
4. a pandas DataFrame in long format, indexed by ``(sequence id, time)``,
   with a target Series indexed by sequence id.

The script prints a score for each.

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
N_SEQUENCES = 120 if QUICK else 300
EPOCHS = 4 if QUICK else 60
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epoch budgets
rng = np.random.default_rng(0)

# 1. A 3-D array (n_sequences, n_timesteps, n_features): which sign wins?
X = rng.normal(size=(N_SEQUENCES, 20, 2))
y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
clf = RNNClassifier(units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0)
clf.fit(X_train, y_train)
print(f"3-D array     accuracy {clf.score(X_test, y_test):.3f} after {clf.n_iter_} epochs")

# 2. Ragged sequences: a list of (length_i, n_features) arrays, padded and masked inside.
lengths = rng.integers(5, 30, size=N_SEQUENCES)
ragged = [rng.normal(size=(length, 2)) for length in lengths]
means = np.array([seq[:, 0].mean() for seq in ragged])
n_train = int(0.7 * N_SEQUENCES)
reg = RNNRegressor(
    cell="gru", units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0
)
reg.fit(ragged[:n_train], means[:n_train])
print(f"ragged list   R^2 {reg.score(ragged[n_train:], means[n_train:]):.3f}")

# 3. Sequence labelling: one label per step; predictions come back per sequence.
labels = [(np.cumsum(seq[:, 0]) > 0).astype(int) for seq in ragged]
tagger = RNNClassifier(units=(16,), max_iter=EPOCHS, learning_rate_init=0.01, random_state=0)
tagger.fit(ragged[:n_train], labels[:n_train])
first = tagger.predict(ragged[n_train : n_train + 1])[0]
print(
    f"per-step      accuracy {tagger.score(ragged[n_train:], labels[n_train:]):.3f}; first "
    f"prediction has {len(first)} steps ({lengths[n_train]} given)"
)

# 4. pandas long format: one row per (sequence id, time), one column per feature.
frame = pd.concat(
    {f"user{i}": pd.DataFrame(seq, columns=["speed", "heading"]) for i, seq in enumerate(ragged)},
    names=["user", "t"],
)
per_user = pd.Series(means, index=[f"user{i}" for i in range(N_SEQUENCES)])
reg_frame = RNNRegressor(cell="gru", units=(16,), max_iter=EPOCHS, random_state=0)
reg_frame.fit(frame, per_user)
frame_r2 = reg_frame.score(frame, per_user)
print(f"pandas frame  features {list(reg_frame.feature_names_in_)}, training R^2 {frame_r2:.3f}")
