"""Learning curves from ``loss_curve_`` and ``validation_scores_``.

A GRU regressor learns the average product of two channels of noisy
sequences, with early stopping: 20% of the training sequences are held
out, their R² is recorded after every epoch (``validation_scores_``), and
training stops once it has not improved for ``n_iter_no_change`` epochs;
the weights of the best epoch are restored. ``loss_curve_`` holds the
training loss of every epoch.

The script prints where training stopped and the test R², and saves
learning_curve.png with both curves.

Run: python examples/learning_curve.py   (NUMRNN_QUICK=1 for a shorter run)
"""

import os
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from numrnn import RNNRegressor

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))
N_SEQUENCES = 200 if QUICK else 1500
MAX_EPOCHS = 8 if QUICK else 300
if QUICK:  # the quick run stops at MAX_EPOCHS on purpose
    warnings.simplefilter("ignore", ConvergenceWarning)

rng = np.random.default_rng(0)
X = rng.normal(size=(N_SEQUENCES, 20, 2))
y = (X[:, :, 0] * X[:, :, 1]).mean(axis=1) + 0.05 * rng.normal(size=N_SEQUENCES)
X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)

reg = RNNRegressor(
    cell="gru",
    units=(32,),
    max_iter=MAX_EPOCHS,
    learning_rate_init=0.003,
    early_stopping=True,
    validation_fraction=0.2,
    n_iter_no_change=10,
    random_state=0,
)
reg.fit(X_train, y_train)
best_epoch = int(np.argmax(reg.validation_scores_)) + 1
print(
    f"ran {reg.n_iter_} epochs; best validation R² {reg.best_validation_score_:.3f} "
    f"at epoch {best_epoch} (weights restored from there)"
)
print(f"test R² {reg.score(X_test, y_test):.3f}")

try:
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is not installed: skipping the plot")
else:
    epochs = np.arange(1, reg.n_iter_ + 1)
    fig, ax_loss = plt.subplots(figsize=(7, 4))
    ax_loss.plot(epochs, reg.loss_curve_, color="tab:blue", label="training loss (MSE)")
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_loss.set_yscale("log")
    ax_score = ax_loss.twinx()
    ax_score.plot(epochs, reg.validation_scores_, color="tab:green", label="validation R²")
    ax_score.set_ylabel("validation R²")
    ax_score.axvline(best_epoch, color="gray", linestyle="--", label=f"best epoch ({best_epoch})")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_score.get_legend_handles_labels()[0]
    ax_loss.legend(handles, [h.get_label() for h in handles], loc="center right")
    ax_loss.set_title("GRU regressor with early stopping")
    fig.tight_layout()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / "learning_curve.png"
    fig.savefig(path, dpi=100)
    print(f"saved {path}")
