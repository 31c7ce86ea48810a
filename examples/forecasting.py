"""Forecasting two real series with RNNForecaster: weekly CO2 and yearly sunspots.

Both data sets ship inside the statsmodels wheel (pip install statsmodels),
so nothing is downloaded:

- the weekly Mauna Loa CO2 series, 1958-2001 (2,284 weeks, 59 of them
  missing: ``missing='mask'`` leaves them out of the loss), forecast 52
  weeks ahead;
- the yearly sunspot numbers, 1700-2008 (309 years, a PeriodIndex),
  forecast 11 years ahead.

The last 20% of each series is held out. From the start of the hold-out,
the forecaster predicts the next H steps; then ``update`` gives it the
observed values of those H steps (no refitting) and it forecasts the next
H, and so on to the end. The script reports the mean absolute error over
all forecast steps (missing truths skipped) of RNNForecaster, of the
seasonal-naive forecast (the value one season earlier: 52 weeks, 11 years)
and of the naive forecast (the last observed value), and saves
forecasting_co2.png and forecasting_sunspots.png (history, forecasts and
truth) into ``NUMRNN_OUTPUT_DIR`` (default: the current directory).

Run: python examples/forecasting.py   (NUMRNN_QUICK=1: 2 epochs, to check it runs)
"""

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from numrnn import RNNForecaster

QUICK = os.environ.get("NUMRNN_QUICK") == "1"
OUTPUT_DIR = Path(os.environ.get("NUMRNN_OUTPUT_DIR", "."))

# horizon, season length and forecaster settings of each series
SETTINGS = {
    "co2": dict(
        horizon=52,
        season=52,
        forecaster=dict(
            cell="lstm", units=16, lags=(1, 2, 52), differencing=52, missing="mask",
            chunk_length=104, max_iter=40, learning_rate_init=0.005, random_state=0,
        ),
    ),
    "sunspots": dict(
        horizon=11,
        season=11,
        forecaster=dict(
            cell="gru", units=16, lags=3, dropout=0.1, alpha=0.01, chunk_length=25,
            max_iter=200, learning_rate_init=0.005, random_state=0,
        ),
    ),
}  # fmt: skip


def load(name):
    """The series as a pandas Series with a regular time index."""
    from statsmodels import datasets

    if name == "co2":
        # weekly, indexed by Saturdays (freq 'W-SAT'); NaN marks the missing weeks
        return datasets.co2.load_pandas().data["co2"]
    data = datasets.sunspots.load_pandas().data
    first_year = str(int(data["YEAR"].iloc[0]))
    index = pd.period_range(first_year, periods=len(data), freq="Y")
    return pd.Series(data["SUNACTIVITY"].to_numpy(), index=index, name="sunspots")


def rolling_forecasts(forecaster, y, split, horizon):
    """Forecast ``horizon`` steps from each origin ``split, split + horizon, ...``."""
    blocks = []
    origin = split
    while origin < len(y):
        steps = min(horizon, len(y) - origin)
        blocks.append(forecaster.predict(steps))
        forecaster.update(y.iloc[origin : origin + steps])
        origin += steps
    return pd.concat(blocks)


def baselines(y, split, horizon, season):
    """Seasonal-naive and naive forecasts made from the same origins."""
    history = y.ffill().to_numpy()  # baselines use the last observed value at gaps
    seasonal, naive = [], []
    for origin in range(split, len(y), horizon):
        steps = np.arange(1, min(horizon, len(y) - origin) + 1)
        back = season * np.ceil(steps / season).astype(int)
        seasonal.append(history[origin - 1 + steps - back])
        naive.append(np.full(len(steps), history[origin - 1]))
    index = y.index[split:]
    return pd.Series(np.concatenate(seasonal), index=index), pd.Series(
        np.concatenate(naive), index=index
    )


def run(name, quick=QUICK, plot=True):
    """Fit, forecast the hold-out, compare with the baselines; return the results."""
    settings = SETTINGS[name]
    params = dict(settings["forecaster"])
    if quick:
        params["max_iter"] = 2
    y = load(name)
    split = len(y) - int(round(0.2 * len(y)))
    horizon, season = settings["horizon"], settings["season"]

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        forecaster = RNNForecaster(**params).fit(y.iloc[:split])
    fit_seconds = time.perf_counter() - start
    forecast = rolling_forecasts(forecaster, y, split, horizon)
    seasonal, naive = baselines(y, split, horizon, season)

    truth = y.iloc[split:]
    observed = truth.notna().to_numpy()
    mae = {
        label: float(np.abs(values.to_numpy() - truth.to_numpy())[observed].mean())
        for label, values in (
            ("RNNForecaster", forecast),
            ("seasonal naive", seasonal),
            ("naive", naive),
        )
    }
    result = dict(
        name=name,
        n_train=split,
        n_test=len(truth),
        horizon=horizon,
        fit_seconds=fit_seconds,
        epochs=forecaster.regressor_.n_iter_,
        mae=mae,
    )
    if plot:
        result["plot"] = save_plot(name, y, split, forecast, seasonal, mae, horizon)
    return result


def save_plot(name, y, split, forecast, seasonal, mae, horizon):
    """History, rolling forecasts and truth in one PNG; return its path (or None)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot")
        return None

    def times(index):
        return index.to_timestamp() if isinstance(index, pd.PeriodIndex) else index

    shown = y.iloc[max(0, split - 4 * len(y.iloc[split:]) // 2) :]
    fig, ax = plt.subplots(figsize=(10, 4))
    history = shown.loc[: y.index[split - 1]]
    ax.plot(times(history.index), history.to_numpy(), color="0.4", lw=1, label="history")
    truth = y.iloc[split:]
    ax.plot(times(truth.index), truth.to_numpy(), color="black", lw=1.2, label="truth")
    ax.plot(times(seasonal.index), seasonal.to_numpy(), color="tab:orange", lw=1, ls="--",
            label=f"seasonal naive (MAE {mae['seasonal naive']:.2f})")  # fmt: skip
    ax.plot(times(forecast.index), forecast.to_numpy(), color="tab:blue", lw=1.5,
            label=f"RNNForecaster (MAE {mae['RNNForecaster']:.2f})")  # fmt: skip
    ax.axvline(times(y.index[split : split + 1])[0], color="0.6", lw=0.8, ls=":")
    ax.set_title(f"{name}: rolling {horizon}-step forecasts over the last 20%")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUTPUT_DIR / f"forecasting_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        print("statsmodels is not installed (pip install statsmodels): skipping the example.")
        return
    for name in SETTINGS:
        result = run(name)
        mae = result["mae"]
        print(
            f"{name}: train {result['n_train']} steps, hold-out {result['n_test']} steps, "
            f"horizon {result['horizon']}, fit {result['fit_seconds']:.1f} s "
            f"({result['epochs']} epochs)"
        )
        for label, value in mae.items():
            print(f"    MAE {label:15s} {value:8.3f}")
        verdict = "beats" if mae["RNNForecaster"] < mae["seasonal naive"] else "does NOT beat"
        print(f"    RNNForecaster {verdict} seasonal naive; plot: {result.get('plot')}")
    if QUICK:
        print("(NUMRNN_QUICK=1: 2 epochs only, the errors above are not meaningful)")


if __name__ == "__main__":
    main()
