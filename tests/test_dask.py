"""numrnn on Dask: batch prediction equals in-memory predict, per-series
stateful prediction, grid search on a 2-worker LocalCluster, and no kernel
compilation per task on a worker.

Skipped when dask (the ``dask`` extra) is not installed, except the tests of
:func:`numrnn.parallel.stateful_predict`, which need numpy only.
"""

import warnings

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV

from numrnn import RNNClassifier, RNNRegressor, Sequential, layers
from numrnn.parallel import (
    kernel_compile_stats,
    make_stateful,
    predict_dask_array,
    predict_dask_dataframe,
    predict_series_dask,
    stateful_predict,
    warm_up,
)

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FAST = dict(max_iter=4, learning_rate_init=0.02, random_state=0)


def _needs_dask():
    pytest.importorskip("dask.array")
    pytest.importorskip("dask.dataframe")


def _sequences(n=30, t=6, f=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, t, f)).astype("float32")
    y = np.digitize(X[:, :, 0].sum(axis=1), [-1.0, 1.0])
    return X, y


@pytest.fixture(scope="module")
def classifier():
    X, y = _sequences()
    return RNNClassifier(units=(4,), **FAST).fit(X, y), X


@pytest.fixture(scope="module")
def per_step_regressor():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(20, 8, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    return RNNRegressor(cell="gru", units=(3,), **FAST).fit(X, y), X


def _long_frame(X, lengths, seed=2):
    """Long format: one row per (id, step), rows shuffled, ids not sorted."""
    rows = []
    for i, length in enumerate(lengths):
        for step in range(length):
            rows.append((f"id{(7 * i) % len(lengths):03d}", step, *X[i, step]))
    columns = ["sid", "t"] + [f"f{j}" for j in range(X.shape[2])]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


# --------------------------------------------------------------------------
# dask.array
# --------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [7, 30])
@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_dask_array_equals_in_memory(classifier, chunk, method):
    _needs_dask()
    import dask.array as da

    clf, X = classifier
    lazy = predict_dask_array(clf, da.from_array(X, chunks=(chunk, 3, 1)), method=method)
    assert lazy.chunks[0] == da.from_array(X, chunks=(chunk, 6, 2)).chunks[0]
    result = lazy.compute(scheduler="threads")
    expected = getattr(clf, method)(X)
    assert result.dtype == expected.dtype and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


def test_dask_array_per_step_and_tabular(per_step_regressor):
    _needs_dask()
    import dask.array as da

    reg, X = per_step_regressor
    result = predict_dask_array(reg, da.from_array(X, chunks=(6, 8, 2))).compute()
    np.testing.assert_array_equal(result, reg.predict(X))
    X2, y2 = _sequences(n=16, t=5, f=1, seed=4)
    tabular = RNNClassifier(units=(3,), **FAST).fit(X2[:, :, 0], y2)
    expected = tabular.predict_proba(X2[:, :, 0])
    lazy = predict_dask_array(
        tabular, da.from_array(X2[:, :, 0], chunks=(6, 5)), method="predict_proba"
    )
    np.testing.assert_array_equal(lazy.compute(), expected)
    # A block of a single sequence: the recurrent kernels give the same bits, but
    # numpy's matmul in the Dense head takes another BLAS path for one row, so
    # the float32 logits may differ in the last bit.
    lazy = predict_dask_array(
        tabular, da.from_array(X2[:, :, 0], chunks=(5, 5)), method="predict_proba"
    )
    np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-6, atol=1e-7)


def test_dask_array_errors(classifier):
    _needs_dask()
    import dask.array as da

    clf, X = classifier
    with pytest.raises(ValueError, match="3-D"):
        predict_dask_array(clf, da.zeros((2, 3, 4, 5)))
    with pytest.raises(ValueError, match="method"):
        predict_dask_array(clf, X, method="transform")
    unknown = da.from_array(X, chunks=(10, 6, 2))
    unknown = unknown[unknown[:, 0, 0] > 0]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        predict_dask_array(clf, unknown)


# --------------------------------------------------------------------------
# Dask DataFrame partitioned by sequence id
# --------------------------------------------------------------------------


def test_dask_dataframe_equals_in_memory(classifier):
    _needs_dask()
    import dask.dataframe as dd

    clf, X = classifier
    lengths = np.random.default_rng(3).integers(2, 7, size=len(X))
    frame = _long_frame(X, lengths)
    in_memory = frame.set_index(["sid", "t"])
    expected = clf.predict_proba(in_memory)
    ids = in_memory.index.get_level_values(0).unique()
    ddf = dd.from_pandas(frame, npartitions=4)
    result = predict_dask_dataframe(clf, ddf, sequence_id="sid", time="t", method="predict_proba")
    assert result.npartitions > 1
    computed = result.compute(scheduler="threads")
    assert list(computed.columns) == list(clf.classes_)
    assert computed.index.is_unique and set(computed.index) == set(ids)
    np.testing.assert_array_equal(computed.loc[ids].to_numpy(), expected)
    labels = predict_dask_dataframe(clf, ddf, sequence_id="sid", time="t").compute()
    np.testing.assert_array_equal(labels.loc[ids, "prediction"].to_numpy(), clf.predict(in_memory))


def test_dask_dataframe_per_step(per_step_regressor):
    _needs_dask()
    import dask.dataframe as dd

    reg, X = per_step_regressor
    lengths = np.full(len(X), X.shape[1])
    lengths[::3] = 5
    frame = _long_frame(X, lengths, seed=5)
    expected = reg.predict(frame.set_index(["sid", "t"]))  # Series indexed like the frame
    ddf = dd.from_pandas(frame, npartitions=3).set_index("sid")
    result = predict_dask_dataframe(reg, ddf, sequence_id="sid", time="t").compute()
    got = result.set_index("t", append=True)["prediction"].sort_index()
    # The partitions hold fewer sequences (and steps) than the whole frame, and
    # OpenBLAS's AVX-512 kernels round the one-output Dense head's matrix-vector
    # product by row count: the last bit may differ there (not on AVX2 CPUs).
    np.testing.assert_allclose(
        got.to_numpy(), expected.sort_index().to_numpy(), rtol=1e-6, atol=1e-7
    )


def test_dask_dataframe_errors(classifier):
    _needs_dask()
    import dask.dataframe as dd

    clf, X = classifier
    ddf = dd.from_pandas(_long_frame(X, np.full(len(X), 6)), npartitions=2)
    with pytest.raises(ValueError, match="sequence id"):
        predict_dask_dataframe(clf, ddf, sequence_id="nope", time="t")
    with pytest.raises(ValueError, match="time column"):
        predict_dask_dataframe(clf, ddf, sequence_id="sid", time="when")
    with pytest.raises(ValueError, match="not in the frame"):
        predict_dask_dataframe(clf, ddf, sequence_id="sid", time="t", features=["f0", "zz"])


# --------------------------------------------------------------------------
# Stateful prediction of long series (numpy; Dask per series)
# --------------------------------------------------------------------------


def _per_step_model(seed=0):
    model = Sequential(
        [
            layers.Input(shape=(None, 2)),
            layers.LSTM(4, return_sequences=True, seed=seed),
            layers.GRU(3, return_sequences=True, seed=seed + 1),
            layers.TimeDistributed(layers.Dense(2, seed=seed + 2)),
        ]
    )
    return model


@pytest.mark.parametrize("chunk_length", [1, 7, 50, 1000])
def test_stateful_predict_equals_one_long_call(chunk_length):
    model = _per_step_model()
    series = np.random.default_rng(6).normal(size=(53, 2)).astype("float32")
    expected = model(series[None])[0]
    result = stateful_predict(model, series, chunk_length=chunk_length)
    np.testing.assert_allclose(result, expected, rtol=1e-6, atol=1e-6)
    assert not any(getattr(layer, "stateful", False) for layer in model.layers)  # untouched


def test_make_stateful_and_errors():
    model = _per_step_model()
    stateful = make_stateful(model)
    assert stateful.layers[0].stateful and stateful.layers[0].input_shape[0] == 1
    for a, b in zip(stateful.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    last_only = Sequential([layers.Input(shape=(None, 2)), layers.LSTM(2)])
    with pytest.raises(ValueError, match="return sequences"):
        stateful_predict(last_only, np.zeros((5, 2)))
    both = Sequential(
        [layers.Input(shape=(None, 2)), layers.Bidirectional(layers.LSTM(2, return_sequences=True))]
    )
    with pytest.raises(ValueError, match="Bidirectional"):
        stateful_predict(both, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="chunk_length"):
        stateful_predict(model, np.zeros((5, 2)), chunk_length=0)
    with pytest.raises(ValueError, match="series must be"):
        stateful_predict(model, np.zeros((5, 2, 1)))


def test_predict_series_dask_equals_per_series_calls():
    _needs_dask()
    import dask.dataframe as dd

    model = _per_step_model(seed=3)
    rng = np.random.default_rng(7)
    series = {
        f"s{i}": rng.normal(size=(n, 2)).astype("float32") for i, n in enumerate([40, 17, 63, 5])
    }
    rows = [(sid, t, *values[t]) for sid, values in series.items() for t in range(len(values))]
    frame = pd.DataFrame(rows, columns=["sid", "t", "a", "b"]).sample(frac=1.0, random_state=0)
    ddf = dd.from_pandas(frame, npartitions=3)
    result = predict_series_dask(model, ddf, sequence_id="sid", time="t", chunk_length=16)
    computed = result.compute(scheduler="threads")
    assert list(computed.columns) == ["t", "output_0", "output_1"]
    for sid, values in series.items():
        got = computed.loc[[sid]].sort_values("t")
        np.testing.assert_array_equal(got["t"].to_numpy(), np.arange(len(values)))
        expected = model(values[None])[0]
        np.testing.assert_allclose(
            got[["output_0", "output_1"]].to_numpy(), expected, rtol=1e-6, atol=1e-6
        )


# --------------------------------------------------------------------------
# A real 2-worker LocalCluster: grid search and compilation per task
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client():
    _needs_dask()
    distributed = pytest.importorskip("dask.distributed")
    # fill numba's on-disk cache here first, so workers load instead of compiling
    warm_up(cells=("lstm",), dtypes=("float32",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _fit_and_count(X, y):
    """On a worker: fit and predict once; return the compile counters before and after."""
    before = kernel_compile_stats()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        RNNClassifier(units=(3,), cell="lstm", **FAST).fit(X, y).predict(X)
    return before, kernel_compile_stats()


def test_grid_search_on_local_cluster(client, capsys):
    X, y = _sequences(n=24, t=5, f=2, seed=8)
    grid = {"units": [(3,), (5,)], "learning_rate_init": [0.01, 0.05]}
    estimator = RNNClassifier(cell="lstm", max_iter=4, random_state=0)
    with joblib.parallel_backend("dask"):
        search = GridSearchCV(estimator, grid, cv=2, n_jobs=-1).fit(X, y)
    local = GridSearchCV(estimator, grid, cv=2, n_jobs=1).fit(X, y)
    np.testing.assert_array_equal(
        search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"]
    )
    assert search.best_params_ == local.best_params_
    per_worker = client.run(kernel_compile_stats)
    assert len(per_worker) == 2
    assert any(stats["resident"] > 0 for stats in per_worker.values())  # the fits ran there
    assert all(stats["compiled"] == 0 for stats in per_worker.values())  # loaded, not compiled
    with capsys.disabled():
        print("\nGridSearchCV on a LocalCluster with 2 worker processes:")
        for params, score in zip(
            search.cv_results_["params"], search.cv_results_["mean_test_score"]
        ):
            print(f"  {params}: mean accuracy {score:.4f}")
        print(f"  best: {search.best_params_}; worker kernel counters: {per_worker}")


def test_second_task_on_a_worker_compiles_nothing(client):
    X, y = _sequences(n=12, t=4, f=2, seed=9)
    worker = sorted(client.scheduler_info()["workers"])[0]
    first = client.submit(_fit_and_count, X, y, workers=[worker], pure=False).result()
    second = client.submit(_fit_and_count, X, y, workers=[worker], pure=False).result()
    # the first task may load kernels from numba's disk cache but never compiles
    assert first[1]["compiled"] == first[0]["compiled"] == 0
    assert first[1]["resident"] > 0
    # the second task finds everything loaded: nothing compiled, loaded or added
    assert second[0] == second[1] == first[1]


def test_batch_prediction_on_local_cluster(client, classifier):
    import dask.array as da
    import dask.dataframe as dd

    clf, X = classifier
    lazy = predict_dask_array(clf, da.from_array(X, chunks=(8, 6, 2)), method="predict_proba")
    np.testing.assert_array_equal(lazy.compute(), clf.predict_proba(X))
    frame = _long_frame(X, np.full(len(X), X.shape[1]))
    expected = clf.predict(frame.set_index(["sid", "t"]))
    ids = frame.set_index(["sid", "t"]).index.get_level_values(0).unique()
    result = predict_dask_dataframe(
        clf, dd.from_pandas(frame, npartitions=3), sequence_id="sid", time="t"
    )
    np.testing.assert_array_equal(result.compute().loc[ids, "prediction"].to_numpy(), expected)
