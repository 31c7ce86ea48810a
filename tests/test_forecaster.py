"""RNNForecaster: fit/predict/update over pandas series, index continuation, errors.

RNNForecaster's ``fit`` takes ``(y, X=None)``, target first, so scikit-learn's
``check_estimator`` (which calls ``fit(X, y)`` with tabular data) does not
apply; the parameter protocol, ``clone`` and pickling are tested here.
"""

import copy
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from numrnn import RNNForecaster, RNNRegressor

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(units=8, max_iter=20, learning_rate_init=0.01, chunk_length=40, random_state=0)


def _sine(n=300, period=20, noise=0.05, seed=0, index=None):
    rng = np.random.default_rng(seed)
    values = np.sin(2 * np.pi * np.arange(n) / period) + noise * rng.normal(size=n)
    if index is None:
        index = pd.date_range("2020-01-01", periods=n, freq="D")
    return pd.Series(values, index=index, name="signal")


# --------------------------------------------------------------------------
# Forecasts and their index
# --------------------------------------------------------------------------


def test_forecast_beats_naive_and_continues_a_datetime_index():
    y = _sine(320)
    train, test = y.iloc[:300], y.iloc[300:]
    f = RNNForecaster(lags=2, **FAST).fit(train)
    forecast = f.predict(20)
    assert isinstance(forecast, pd.Series) and forecast.name == "signal"
    expected_index = pd.date_range(train.index[-1] + pd.Timedelta("1D"), periods=20, freq="D")
    assert forecast.index.equals(expected_index) and forecast.index.freq == "D"
    assert f.cutoff_ == train.index[-1] and f.index_kind_ == "datetime"
    mae = np.abs(forecast.to_numpy() - test.to_numpy()).mean()
    naive = np.abs(train.iloc[-1] - test.to_numpy()).mean()
    assert mae < naive / 3, (mae, naive)


def test_predict_does_not_move_the_state_and_fh_lists_pick_steps():
    f = RNNForecaster(lags=2, **FAST).fit(_sine(200))
    full = f.predict(12)
    np.testing.assert_array_equal(f.predict(12).to_numpy(), full.to_numpy())
    picked = f.predict([12, 1, 5])
    np.testing.assert_array_equal(picked.to_numpy(), full.to_numpy()[[11, 0, 4]])
    assert list(picked.index) == [full.index[11], full.index[0], full.index[4]]
    np.testing.assert_array_equal(f.predict(np.arange(1, 4)).to_numpy(), full.to_numpy()[:3])


@pytest.mark.parametrize(
    "index, expected_next",
    [
        (pd.period_range("1900", periods=120, freq="Y"), pd.Period("2020", freq="Y")),
        (pd.period_range("2000-01", periods=120, freq="M"), pd.Period("2010-01", freq="M")),
        (pd.RangeIndex(10, 250, 2), 250),
        (pd.date_range("2001-01-06", periods=120, freq="W-SAT"), pd.Timestamp("2003-04-26")),
        (pd.DatetimeIndex(pd.date_range("2001-01-01", periods=120, freq="h").to_list()),
         pd.Timestamp("2001-01-06 00:00")),
    ],
)  # fmt: skip
def test_index_kinds_continue(index, expected_next):
    y = _sine(120, index=index)
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y)
    forecast = f.predict(3)
    assert forecast.index[0] == expected_next
    assert type(forecast.index) is type(index) or isinstance(index, pd.RangeIndex)
    assert len(forecast) == 3 and np.isfinite(forecast.to_numpy()).all()


def test_array_input_gets_a_range_index():
    y = _sine(100).to_numpy()
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y)
    forecast = f.predict(4)
    assert isinstance(forecast, pd.Series)
    assert forecast.index.equals(pd.RangeIndex(100, 104))
    f.update(y[:3])
    assert f.predict(1).index[0] == 103


def test_several_aligned_series_are_forecast_jointly():
    index = pd.date_range("2020-01-01", periods=200, freq="D")
    frame = pd.DataFrame({"a": _sine(200).to_numpy(), "b": 2 + _sine(200, seed=1).to_numpy()},
                         index=index)  # fmt: skip
    f = RNNForecaster(lags=2, **FAST).fit(frame)
    forecast = f.predict(5)
    assert isinstance(forecast, pd.DataFrame) and list(forecast.columns) == ["a", "b"]
    assert forecast.index[0] == index[-1] + pd.Timedelta("1D")
    assert f.regressor_.n_outputs_ == 2


def test_differencing_follows_a_trend():
    index = pd.RangeIndex(300)
    rng = np.random.default_rng(0)
    y = pd.Series(0.5 * np.arange(300) + 0.1 * rng.normal(size=300), index=index)
    f = RNNForecaster(lags=1, differencing=1, **FAST).fit(y.iloc[:280])
    forecast = f.predict(20).to_numpy()
    np.testing.assert_allclose(forecast, y.iloc[280:].to_numpy(), atol=1.5)
    slope = np.polyfit(np.arange(20), forecast, 1)[0]
    assert 0.4 < slope < 0.6


@pytest.mark.parametrize("scaling", ["standard", "minmax", None])
def test_scaling_is_reverted(scaling):
    y = 1000.0 + 50.0 * _sine(200)
    f = RNNForecaster(lags=2, scaling=scaling, **FAST).fit(y)
    forecast = f.predict(5).to_numpy()
    assert np.isfinite(forecast).all()
    if scaling is not None:
        assert (forecast > 900).all() and (forecast < 1100).all()


# --------------------------------------------------------------------------
# update
# --------------------------------------------------------------------------


def test_update_advances_the_state_without_refitting():
    y = _sine(260)
    f = RNNForecaster(lags=3, dtype="float64", **FAST).fit(y.iloc[:200])
    weights = f.regressor_.model_.get_weights()
    before = f.predict(5)
    in_one = copy.deepcopy(f).update(y.iloc[200:230])
    in_parts = f.update(y.iloc[200:210]).update(y.iloc[210:211]).update(y.iloc[211:230])
    assert in_parts is f
    assert f.cutoff_ == y.index[229] and f.n_observations_ == 230
    np.testing.assert_allclose(in_parts.predict(5).to_numpy(), in_one.predict(5).to_numpy(),
                               rtol=1e-12, atol=1e-12)  # fmt: skip
    assert in_parts.predict(5).index[0] == y.index[230]
    assert not np.allclose(in_parts.predict(5).to_numpy(), before.to_numpy())
    for a, b in zip(weights, f.regressor_.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the state after update equals one pass over the whole history with the fitted weights
    twin = copy.deepcopy(f)
    twin_design = twin._transform.design(y.to_numpy()[:230, None], None, twin._transform.lags[-1])
    twin.regressor_.reset_states()
    twin.regressor_.predict(twin_design)
    np.testing.assert_allclose(twin.predict(5).to_numpy(), f.predict(5).to_numpy(), rtol=1e-12)


def test_update_must_continue_the_series():
    y = _sine(150)
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y.iloc[:100])
    with pytest.raises(ValueError, match="must continue the series"):
        f.update(y.iloc[101:110])
    with pytest.raises(ValueError, match="must continue the series"):
        f.update(y.iloc[90:100])
    assert f.cutoff_ == y.index[99]


# --------------------------------------------------------------------------
# Missing values
# --------------------------------------------------------------------------


def test_missing_values_are_rejected_by_default_with_the_option_named():
    y = _sine(100)
    y.iloc[[10, 11, 50]] = np.nan
    with pytest.raises(ValueError, match=r"3 missing value.*missing='mask'"):
        RNNForecaster().fit(y)
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(_sine(100))
    with pytest.raises(ValueError, match="missing='mask'"):
        f.update(pd.Series([np.nan], index=[f.cutoff_ + pd.Timedelta("1D")]))


def test_masked_missing_values_are_left_out_of_the_loss(monkeypatch):
    y = _sine(200)
    y.iloc[[5, 6, 7, 120]] = np.nan
    y.iloc[-1] = np.nan  # also at the very end
    captured = {}
    original = RNNRegressor._fit

    def spy(self, X, y, sample_weight=None, **kwargs):
        captured["inputs"], captured["mask"] = X, kwargs.get("target_mask")
        return original(self, X, y, sample_weight, **kwargs)

    monkeypatch.setattr(RNNRegressor, "_fit", spy)
    f = RNNForecaster(lags=2, missing="mask", **FAST).fit(y)
    mask = captured["mask"][0]
    start = 2  # the first two steps only provide lags
    assert mask.shape == (198,)
    np.testing.assert_array_equal(np.flatnonzero(~mask) + start, [5, 6, 7, 120, 199])
    assert np.isfinite(captured["inputs"]).all()
    # interpolated lag inputs: step 8 reads y[7] (missing) between y[4] and y[8]
    scale, center = f._transform.z_scale, f._transform.z_center
    lag_one_at_8 = captured["inputs"][8 - start, 0] * scale[0] + center[0]
    expected = y.iloc[4] + (y.iloc[8] - y.iloc[4]) * 3 / 4
    np.testing.assert_allclose(lag_one_at_8, expected, rtol=1e-10)
    forecast = f.predict(3)
    assert np.isfinite(forecast.to_numpy()).all()
    f.update(pd.Series([np.nan, 0.3], index=pd.date_range(f.cutoff_, periods=3, freq="D")[1:]))
    assert np.isfinite(f.predict(2).to_numpy()).all()


def test_all_missing_is_an_error():
    y = pd.Series(np.nan, index=pd.RangeIndex(30))
    with pytest.raises(ValueError, match="no observed value"):
        RNNForecaster(missing="mask").fit(y)


# --------------------------------------------------------------------------
# Exogenous features
# --------------------------------------------------------------------------


def _exogenous(n=300, seed=0):
    rng = np.random.default_rng(seed)
    index = pd.date_range("2022-01-01", periods=n, freq="h")
    X = pd.DataFrame({"temp": rng.normal(size=n), "load": rng.normal(size=n)}, index=index)
    y = pd.Series(2.0 * X["temp"] - X["load"] + 0.05 * rng.normal(size=n), index=index)
    return y, X


def test_exogenous_features_are_used_at_their_own_step():
    y, X = _exogenous()
    train = slice(0, 280)
    with_exog = RNNForecaster(lags=1, **{**FAST, "max_iter": 60}).fit(y.iloc[train], X.iloc[train])
    without = RNNForecaster(lags=1, **{**FAST, "max_iter": 60}).fit(y.iloc[train])
    assert with_exog.n_exog_features_ == 2 and with_exog.exog_names_ == ["temp", "load"]
    truth = y.iloc[280:].to_numpy()
    mae_exog = np.abs(with_exog.predict(20, X=X.iloc[280:]).to_numpy() - truth).mean()
    mae_plain = np.abs(without.predict(20).to_numpy() - truth).mean()
    assert mae_exog < mae_plain / 2, (mae_exog, mae_plain)
    # columns in another order are aligned by name; extra future rows are ignored
    reordered = with_exog.predict(20, X=X.iloc[280:][["load", "temp"]])
    np.testing.assert_array_equal(reordered.to_numpy(), with_exog.predict(20, X=X.iloc[280:]))
    # update takes the exogenous values of the new steps
    with_exog.update(y.iloc[280:290], X.iloc[280:290])
    assert with_exog.predict(2, X=X.iloc[290:]).index[0] == y.index[290]


def test_recursive_forecast_matches_a_plain_recursion_through_the_full_forward_path():
    """predict builds each step's lags in one go and steps the model through
    the layers' single-step kernels; here a plain loop over the lags and the
    model's whole-sequence forward pass give the same forecasts."""
    y, X = _exogenous(n=200)
    frame = pd.DataFrame({"a": y, "b": np.cos(np.arange(200) / 5.0)}, index=y.index)
    f = RNNForecaster(lags=(1, 3), differencing=2, **{**FAST, "max_iter": 3})
    f.fit(frame.iloc[:180], X.iloc[:180])
    got = f.predict(6, X=X.iloc[180:]).to_numpy()

    transform, model = f._transform, f.regressor_.model_
    exog = transform.scale_exog(X.iloc[180:186].to_numpy(), 0)
    levels = list(f._y_tail)
    d = transform.d
    for step in range(6):
        t = len(levels)
        lagged = [transform.scale(levels[t - lag] - levels[t - lag - d]) for lag in (1, 3)]
        row = np.concatenate(lagged + [exog[step]]).astype(model.layers[0].dtype)
        output, _ = model._forward(row[None, None, :], None, None, False)  # keeps caches
        levels.append(transform.unscale(output[0, 0].astype(np.float64)) + levels[t - d])
    np.testing.assert_allclose(got, np.array(levels[-6:]), rtol=1e-5, atol=1e-6)


def test_exogenous_errors():
    y, X = _exogenous(120)
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y.iloc[:100], X.iloc[:100])
    future = X.iloc[100:]
    with pytest.raises(ValueError, match="pass their values"):
        f.predict(3)
    with pytest.raises(ValueError, match="differ from those seen at fit"):
        f.predict(3, X=future.rename(columns={"load": "wind"}))
    with pytest.raises(ValueError, match="differ from those seen at fit"):
        f.predict(3, X=future.assign(extra=1.0))
    with pytest.raises(ValueError, match="no row for"):
        f.predict(30, X=future)
    with pytest.raises(ValueError, match="exogenous column"):
        f.predict(3, X=future.to_numpy()[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        f.predict(3, X=future.where(future > 0))
    with pytest.raises(ValueError, match="rows but 5 step"):
        f.predict(5, X=future.to_numpy()[:3])
    plain = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y)
    with pytest.raises(ValueError, match="without exogenous features"):
        plain.predict(3, X=future)
    with pytest.raises(ValueError, match="must equal the index of y"):
        RNNForecaster().fit(y.iloc[:100], X.iloc[1:101])
    with pytest.raises(ValueError, match="rows but y has"):
        RNNForecaster().fit(y.iloc[:100], X.to_numpy()[:99])


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize("fh", [0, -3, [0, 1], [1, 1], [], 2.0, True, "3"])
def test_bad_horizons(fh):
    f = RNNForecaster(units=4, max_iter=1, random_state=0).fit(_sine(60))
    with pytest.raises(ValueError, match="fh"):
        f.predict(fh)


def test_horizon_below_one_message():
    f = RNNForecaster(units=4, max_iter=1, random_state=0).fit(_sine(60))
    with pytest.raises(ValueError, match="at least 1 step ahead; got 0"):
        f.predict(0)


def test_index_without_frequency_says_how_to_set_one():
    dates = pd.to_datetime(["2020-01-01", "2020-01-02", "2020-01-04", "2020-01-09", "2020-01-10"])
    irregular = pd.Series(np.arange(60.0), index=dates.append(
        pd.date_range("2020-02-01", periods=55, freq="D")))  # fmt: skip
    with pytest.raises(ValueError, match=r"no frequency.*asfreq\('D'\)"):
        RNNForecaster().fit(irregular)
    gappy = pd.Series(np.arange(60.0), index=pd.period_range("1900", periods=61, freq="Y")[
        np.r_[0:30, 31:61]])  # fmt: skip
    with pytest.raises(ValueError, match="period_range"):
        RNNForecaster().fit(gappy)
    with pytest.raises(TypeError, match="DatetimeIndex"):
        RNNForecaster().fit(pd.Series(np.arange(60.0), index=[f"t{i}" for i in range(60)]))
    with pytest.raises(ValueError, match="not evenly spaced"):
        RNNForecaster().fit(pd.Series(np.arange(60.0), index=np.r_[0:30, 31:61]))


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(missing="drop"), "missing='drop'.*'raise'.*'mask'"),
        (dict(scaling="robust"), "Unknown scaling"),
        (dict(lags=0), "lags must be"),
        (dict(lags=[1, 1]), "must not repeat"),
        (dict(lags=[1, "a"]), "lags must be"),
        (dict(differencing=0), "differencing must be"),
        (dict(cell="rnn"), "Unknown cell"),
        (dict(learning_rate_init=-1.0), "learning_rate_init"),
        (dict(chunk_length=0), "chunk_length"),
    ],
)
def test_bad_options_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        RNNForecaster(**params).fit(_sine(60))


def test_bad_series():
    with pytest.raises(ValueError, match="too few"):
        RNNForecaster(lags=10).fit(_sine(11))
    with pytest.raises(TypeError, match="not numeric"):
        RNNForecaster().fit(pd.DataFrame({"a": ["x"] * 30}))
    with pytest.raises(ValueError, match="infinity"):
        RNNForecaster().fit(pd.Series([1.0, np.inf] * 20))
    with pytest.raises(ValueError, match="MultiIndex"):
        frame = pd.DataFrame(
            {"v": np.arange(40.0)},
            index=pd.MultiIndex.from_product([["a", "b"], range(20)]),
        )
        RNNForecaster().fit(frame)
    with pytest.raises(NotFittedError):
        RNNForecaster().predict(3)


def test_failed_refit_leaves_the_forecaster_unchanged():
    y = _sine(120)
    f = RNNForecaster(units=4, max_iter=2, random_state=0).fit(y)
    before = f.predict(4)
    bad = y.copy()
    bad.iloc[3] = np.nan
    with pytest.raises(ValueError, match="missing"):
        f.fit(bad)
    with pytest.raises(ValueError, match="fh"):
        f.predict(0)
    pd.testing.assert_series_equal(f.predict(4), before)


# --------------------------------------------------------------------------
# Parameters, clone, pickle, reproducibility
# --------------------------------------------------------------------------


def test_get_set_params_clone_and_pickle():
    f = RNNForecaster(units=(6,), lags=(1, 7), differencing=7, missing="mask", random_state=3)
    params = f.get_params()
    assert params["lags"] == (1, 7) and params["missing"] == "mask" and params["units"] == (6,)
    assert set(params) >= {"cell", "chunk_length", "scaling", "max_iter", "dtype"}
    twin = clone(f)
    assert twin.get_params() == params and not hasattr(twin, "regressor_")
    assert f.set_params(units=4, max_iter=2) is f and f.units == 4
    f.fit(_sine(120))
    cloned = clone(f)
    assert not hasattr(cloned, "regressor_") and cloned.get_params()["units"] == 4
    restored = pickle.loads(pickle.dumps(f))
    pd.testing.assert_series_equal(restored.predict(6), f.predict(6))
    restored.update(_sine(130).iloc[120:])
    assert restored.cutoff_ != f.cutoff_  # independent copies
    with pytest.raises(ValueError):
        f.set_params(not_a_parameter=1)


def test_same_random_state_gives_identical_forecasts():
    y = _sine(150)
    a = RNNForecaster(lags=2, **FAST).fit(y).predict(5)
    b = RNNForecaster(lags=2, **FAST).fit(y).predict(5)
    pd.testing.assert_series_equal(a, b)
    c = RNNForecaster(lags=2, **{**FAST, "random_state": 1}).fit(y).predict(5)
    assert not np.allclose(a.to_numpy(), c.to_numpy())


# --------------------------------------------------------------------------
# Real data (statsmodels datasets ship inside its wheel): the example's numbers.
# About 6 s; skipped without statsmodels.
# --------------------------------------------------------------------------


def test_real_data_forecasts_beat_seasonal_naive(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMRNN_OUTPUT_DIR", str(tmp_path))
    pytest.importorskip("statsmodels")
    pytest.importorskip("matplotlib")
    path = Path(__file__).resolve().parents[1] / "examples" / "forecasting.py"
    spec = importlib.util.spec_from_file_location("forecasting_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    for name in ("co2", "sunspots"):
        result = example.run(name, quick=False)
        assert result["mae"]["RNNForecaster"] < result["mae"]["seasonal naive"], result["mae"]
        assert result["mae"]["RNNForecaster"] < result["mae"]["naive"], result["mae"]
        assert result["plot"] == tmp_path / f"forecasting_{name}.png"
        assert result["plot"].stat().st_size > 10_000
