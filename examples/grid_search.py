"""A Pipeline and GridSearchCV over the recurrent cell and its size.

The task needs memory: each sample is a noisy univariate sequence of 25
steps, and the label says whether its first value is larger than its last,
so the network must carry the first value through 24 steps of noise. Which
cell and which width do that best is an empirical question: the pipeline
standardises the steps, and GridSearchCV compares the three cells (plain
SimpleRNN, GRU, LSTM) at two widths with 3-fold cross-validation, as for
any scikit-learn model.

The script prints the cross-validation table and the test score of the best
model, and saves grid_search.png (mean cross-validated accuracy per cell
and width).

Run: python examples/grid_search.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from numrnn import RNNClassifier

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))
N_SEQUENCES = 120 if QUICK else 600
EPOCHS = 3 if QUICK else 25
warnings.simplefilter("ignore", ConvergenceWarning)  # fixed epoch budget per candidate

rng = np.random.default_rng(0)
X = rng.normal(size=(N_SEQUENCES, 25))
y = (X[:, 0] > X[:, -1]).astype(int)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0, stratify=y)

pipeline = Pipeline(
    [
        ("scale", StandardScaler()),
        ("rnn", RNNClassifier(max_iter=EPOCHS, learning_rate_init=0.01, random_state=0)),
    ]
)
grid = {"rnn__cell": ["simple", "gru", "lstm"], "rnn__units": [8, 32]}
search = GridSearchCV(pipeline, grid, cv=3, n_jobs=1)
search.fit(X_train, y_train)

table = pd.DataFrame(search.cv_results_)[
    ["param_rnn__cell", "param_rnn__units", "mean_test_score", "std_test_score", "mean_fit_time"]
]
print(table.round(3).to_string(index=False))
print(f"best: {search.best_params_}, cross-validated accuracy {search.best_score_:.3f}")
print(f"test accuracy of the refitted best pipeline: {search.score(X_test, y_test):.3f}")

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: skipping the plot")
else:
    scores = table.pivot(
        index="param_rnn__cell", columns="param_rnn__units", values="mean_test_score"
    )
    scores = scores.loc[grid["rnn__cell"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    image = ax.imshow(scores.to_numpy(dtype=float), cmap="viridis", vmin=0.5, vmax=1.0)
    for (row, col), value in np.ndenumerate(scores.to_numpy(dtype=float)):
        ax.text(col, row, f"{value:.2f}", ha="center", va="center", color="white")
    ax.set(
        xticks=range(scores.shape[1]),
        xticklabels=scores.columns,
        xlabel="units",
        yticks=range(scores.shape[0]),
        yticklabels=scores.index,
        ylabel="cell",
        title="mean cross-validated accuracy",
    )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "grid_search.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
