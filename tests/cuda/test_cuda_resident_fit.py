"""Device-resident estimator fits: same numbers as the CPU fit, weights stay on the GPU.

Runs under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU;
skipped otherwise. Fits are float64 so that CPU and CUDA agree to ~1e-9
(the only differences are summation orders); shapes are tiny because the
simulator runs every CUDA thread as a Python thread.
"""

import pickle
import warnings

import numpy as np
import pytest

import numrnn
from numrnn import RNNClassifier, RNNRegressor, Sequential
from numrnn.kernels import cuda_status, get_backend
from numrnn.layers import (
    GRU,
    LSTM,
    Bidirectional,
    Dense,
    Dropout,
    Masking,
    SimpleRNN,
    TimeDistributed,
)

_AVAILABLE, _SIMULATOR, _REASON = cuda_status()
pytestmark = [
    pytest.mark.skipif(not _AVAILABLE, reason=f"the CUDA kernels cannot run here: {_REASON}"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]

TOL = {"rtol": 1e-8, "atol": 1e-10}


def _fit_both(estimator_class, X, y, **params):
    """The same estimator fitted on the CPU and on CUDA."""
    params = {"random_state": 0, "dtype": "float64", **params}
    cpu = estimator_class(**params, device="cpu").fit(X, y)
    gpu = estimator_class(**params, device="cuda").fit(X, y)
    return cpu, gpu


def _assert_same_fit(cpu, gpu, X, predict="predict"):
    assert gpu.n_iter_ == cpu.n_iter_
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **TOL)
    for a, b in zip(cpu.model_.get_weights(), gpu.model_.get_weights(), strict=True):
        assert isinstance(b, np.ndarray)
        np.testing.assert_allclose(b, a, **TOL)
    got, expected = getattr(gpu, predict)(X), getattr(cpu, predict)(X)
    if isinstance(expected, list):
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_allclose(b, a, **TOL)
    else:
        np.testing.assert_allclose(got, expected, **TOL)
    # the optimizer state came home as host arrays
    for name, slots in gpu._optimizer.get_state()["slots"].items():
        for a, b in zip(cpu._optimizer.get_state()["slots"][name], slots, strict=True):
            assert isinstance(b, np.ndarray)
            np.testing.assert_allclose(b, a, **TOL)


def test_regressor_lstm_adam_clipnorm_alpha_sample_weight(small_blocks):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3, 2))
    y = np.stack([X[:, :, 0].sum(axis=1), X[:, -1, 1]], axis=1)
    weights = rng.random(8) + 0.5
    params = dict(cell="lstm", units=(3,), head_units=(2,), head_activation="tanh",
                  max_iter=2, batch_size=4, alpha=0.01, clipnorm=0.5, loss="mae")  # fmt: skip
    cpu = RNNRegressor(**params, random_state=0, dtype="float64").fit(X, y, weights)
    gpu = RNNRegressor(**params, random_state=0, dtype="float64", device="cuda")
    gpu.fit(X, y, weights)
    _assert_same_fit(cpu, gpu, X)


def test_classifier_bidirectional_gru_sgd_dropout_early_stopping(small_blocks):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3, 2))
    y = np.digitize(X[:, :, 0].sum(axis=1), [-0.5, 0.5])  # 3 classes: softmax CE
    cpu, gpu = _fit_both(
        RNNClassifier, X, y, cell="gru", units=(2,), bidirectional=True, merge_mode="concat",
        dropout=0.2, recurrent_dropout=0.3, optimizer="sgd", momentum=0.9, clipvalue=0.2,
        max_iter=2, batch_size=6, early_stopping=True, validation_fraction=0.25,
        n_iter_no_change=1,
    )  # fmt: skip
    assert gpu.validation_scores_ == pytest.approx(cpu.validation_scores_, rel=1e-12)
    _assert_same_fit(cpu, gpu, X, predict="predict_proba")


def test_per_step_targets_stacked_bidirectional_with_masks(small_blocks):
    # ragged sequences (masks), per-step binary labels, stacked layers, merge 'ave',
    # a TimeDistributed head, RMSprop
    rng = np.random.default_rng(2)
    X = [rng.normal(size=(n, 1)) for n in (3, 2, 3, 1, 2, 3)]
    y = [(x[:, 0] > 0).astype(int) for x in X]
    cpu, gpu = _fit_both(
        RNNClassifier, X, y, cell="lstm", units=(2, 2), bidirectional=True, merge_mode="ave",
        head_units=(2,), head_activation="sigmoid", optimizer="rmsprop", max_iter=1,
        batch_size=3,
    )  # fmt: skip
    assert gpu.per_step_
    _assert_same_fit(cpu, gpu, X, predict="predict_proba")


def test_per_step_regression_huber_nesterov_mul(small_blocks):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(6, 3, 2))
    y = np.cumsum(X, axis=1)  # (n, T, 2): per step, 2 outputs
    cpu, gpu = _fit_both(
        RNNRegressor, X, y, cell="gru", units=(2,), bidirectional=True, merge_mode="mul",
        loss="huber", optimizer="sgd", momentum=0.5, nesterovs_momentum=True, max_iter=2,
        batch_size=3, alpha=0.001,
    )  # fmt: skip
    _assert_same_fit(cpu, gpu, X)


def _param_shapes(model):
    return {tuple(w.shape) for w in model.trainable_weights}


@pytest.fixture
def transfers(monkeypatch):
    """Record every host<->device copy: (direction, shape)."""
    from numba import cuda

    log = []
    device_class = type(cuda.to_device(np.zeros(1)))
    to_device = cuda.to_device
    copy_to_host = device_class.copy_to_host
    copy_to_device = device_class.copy_to_device

    def counting_to_device(array, *args, **kwargs):
        log.append(("up", tuple(np.shape(array))))
        return to_device(array, *args, **kwargs)

    def counting_copy_to_host(self, *args, **kwargs):
        log.append(("down", tuple(self.shape)))
        return copy_to_host(self, *args, **kwargs)

    def counting_copy_to_device(self, array, *args, **kwargs):
        if isinstance(array, np.ndarray):
            log.append(("up", tuple(array.shape)))
        return copy_to_device(self, array, *args, **kwargs)

    monkeypatch.setattr(cuda, "to_device", counting_to_device)
    monkeypatch.setattr(device_class, "copy_to_host", counting_copy_to_host)
    monkeypatch.setattr(device_class, "copy_to_device", counting_copy_to_device)
    return log


def test_weights_gradients_and_slots_never_cross_during_the_epochs(small_blocks, transfers):
    rng = np.random.default_rng(4)
    X = rng.normal(size=(10, 3, 2))
    y = np.stack([X[:, :, 0].sum(axis=1), X[:, :, 1].mean(axis=1)], axis=1)
    # 8 training sequences in batches of 4, 2 held out: no batch array has a weight's shape
    params = dict(cell="lstm", units=(3,), max_iter=2, batch_size=4, early_stopping=True,
                  validation_fraction=0.2, random_state=0, dtype="float64")  # fmt: skip
    cpu = RNNRegressor(**params).fit(X, y)
    del transfers[:]
    gpu = RNNRegressor(**params, device="cuda").fit(X, y)
    log = list(transfers)
    shapes = _param_shapes(gpu.model_)
    assert shapes == {(2, 12), (3, 12), (12,), (3, 2), (2,)}
    batch_shapes = {(4, 3, 2), (4, 2), (4,), (2, 3, 2), (2, 2), (4,)}
    assert not shapes & batch_shapes
    weight_up = [s for d, s in log if d == "up" and s in shapes]
    weight_down = [s for d, s in log if d == "down" and s in shapes]
    n_params = len(gpu.model_.trainable_weights)
    # each weight goes up once (start of the fit) and comes back once (end), with
    # Adam's two slots per weight; nothing per batch or epoch, whatever n_iter_
    assert gpu.n_iter_ == 2
    assert len(weight_up) == n_params, log
    assert len(weight_down) == 3 * n_params, log
    # per batch: the inputs go up, one small scalars array comes down
    assert ("up", (4, 3, 2)) in log and ("down", (4,)) in log
    # validation predict: its inputs up and outputs down
    assert ("up", (2, 3, 2)) in log and ("down", (2, 2)) in log
    # the host weights are current after the fit
    for a, b in zip(cpu.model_.get_weights(), gpu.model_.weights, strict=True):
        np.testing.assert_allclose(b, a, **TOL)
    assert not get_backend("cuda")._twins  # no twins left behind


def test_non_finite_loss_keeps_last_finite_weights_like_the_cpu(small_blocks, monkeypatch):
    # The simulator runs math.exp in Python, which raises on overflow where a GPU
    # returns inf; so the third step's loss and gradient are made NaN by wrapping
    # the loss: the host loss function on the CPU, the device loss op on CUDA.
    from numrnn.kernels.cuda import ops

    def poison_third_call(compute):
        calls = []

        def wrapped(*args, **kwargs):
            calls.append(1)
            return compute(len(calls) == 3, *args, **kwargs)

        return wrapped

    host_loss = RNNRegressor()._loss_function()
    device_loss = ops.loss_value_and_grad

    def host(poison, *args, **kwargs):
        value, grad = host_loss(*args, **kwargs)
        return (np.nan, grad * np.nan) if poison else (value, grad)

    def device(poison, *args, **kwargs):
        grad = device_loss(*args, **kwargs)
        if poison:
            out, slot = args[7], args[8]
            ops.fill_(grad, np.nan)
            ops.fill_(out[slot : slot + 1], np.nan)
        return grad

    rng = np.random.default_rng(0)
    X = rng.normal(size=(8, 3, 2))
    y = X[:, :, 0].sum(axis=1)
    params = dict(units=(2,), max_iter=4, batch_size=4, random_state=0, dtype="float64")
    cpu = RNNRegressor(**params)
    monkeypatch.setattr(cpu, "_loss_function", lambda: poison_third_call(host))
    monkeypatch.setattr(ops, "loss_value_and_grad", poison_third_call(device))
    gpu = RNNRegressor(**params, device="cuda")
    messages = []
    for estimator in (cpu, gpu):
        with pytest.raises(ValueError, match="became non-finite") as info:
            estimator.fit(X, y)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "during epoch 2" in messages[1]
    assert gpu.n_iter_ == cpu.n_iter_ == 1
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **TOL)
    # the weights after the two finite steps, on the host, like the CPU's
    for a, b in zip(cpu.model_.get_weights(), gpu.model_.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, **TOL)
    assert gpu._optimizer.iterations == cpu._optimizer.iterations == 2
    assert not get_backend("cuda")._twins


def test_partial_fit_warm_start_pickle_and_save(small_blocks, tmp_path):
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 3, 1))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    params = dict(cell="gru", units=(2,), batch_size=3, random_state=0, dtype="float64")
    cpu = RNNClassifier(**params)
    gpu = RNNClassifier(**params, device="cuda")
    for estimator in (cpu, gpu):
        estimator.partial_fit(X, y, classes=[0, 1])
        estimator.partial_fit(X, y)
    _assert_same_fit(cpu, gpu, X, predict="predict_proba")
    # pickling and numrnn.save after a CUDA fit: the host arrays are current
    clone = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_array_equal(clone.predict_proba(X), gpu.predict_proba(X))
    numrnn.save(gpu, tmp_path / "model.nrnn")
    loaded = numrnn.load(tmp_path / "model.nrnn")
    np.testing.assert_array_equal(loaded.predict_proba(X), gpu.predict_proba(X))
    # warm_start continues from the CUDA state on the CPU, and vice versa
    for estimator in (cpu, gpu):
        estimator.set_params(warm_start=True, max_iter=1).fit(X, y)
    gpu_on_cpu = clone.set_params(device="cpu", warm_start=True, max_iter=1).fit(X, y)
    _assert_same_fit(cpu, gpu, X, predict="predict_proba")
    _assert_same_fit(cpu, gpu_on_cpu, X, predict="predict_proba")


def test_a_failed_fit_leaves_the_model_and_backend_untouched(small_blocks, monkeypatch):
    from numrnn.estimators._base import _BaseRNN

    rng = np.random.default_rng(6)
    X = rng.normal(size=(6, 3, 1))
    y = X[:, :, 0].sum(axis=1)
    model = RNNRegressor(units=(2,), batch_size=3, max_iter=1, random_state=0, device="cuda")
    model.fit(X, y)
    before = model.predict(X)
    weights = model.model_.get_weights()
    original = _BaseRNN._train_step_device
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(_BaseRNN, "_train_step_device", failing)
    with pytest.raises(RuntimeError, match="boom"):
        model.set_params(warm_start=True).fit(X, y)
    assert len(calls) == 2
    np.testing.assert_array_equal(model.predict(X), before)
    for a, b in zip(weights, model.model_.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not get_backend("cuda")._twins


def test_networks_without_a_device_path_keep_per_call_transfers(small_blocks, monkeypatch):
    masked = Sequential([Masking(), SimpleRNN(2, device="cuda"), Dense(1)]).build((None, 3, 1))
    assert "Masking" in masked.device_support()
    stateful = Sequential([LSTM(2, stateful=True, device="cuda"), Dense(1)]).build((2, 3, 1))
    assert "stateful" in stateful.device_support()
    cpu_layer = Sequential([GRU(2), Dense(1)]).build((None, 3, 1))
    assert "runs on the CPU" in cpu_layer.device_support()
    with pytest.raises(ValueError, match="cannot be trained on the device"):
        with masked.resident():
            pass

    def no_residency(self):
        raise AssertionError("resident() must not be used here")

    monkeypatch.setattr(Sequential, "resident", no_residency)
    rng = np.random.default_rng(7)
    X = rng.normal(size=(4, 3, 1))
    y = X[:, :, 0].sum(axis=1)
    layers = [Masking(dtype="float64"), SimpleRNN(2, dtype="float64")]
    params = dict(layers=layers, max_iter=1, batch_size=2)
    cpu, gpu = _fit_both(RNNRegressor, X, y, **params)
    _assert_same_fit(cpu, gpu, X)
    # stateful chunked fits (truncated BPTT) also keep the per-call path
    series = rng.normal(size=(6, 1))
    target = np.cumsum(series[:, 0])
    params = dict(cell="gru", units=(2,), stateful=True, chunk_length=3, max_iter=1)
    cpu, gpu = _fit_both(RNNRegressor, series, target, **params)
    assert gpu.model_.layers[0].device == "cuda"
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, **TOL)
    for a, b in zip(cpu.model_.get_weights(), gpu.model_.get_weights(), strict=True):
        np.testing.assert_allclose(b, a, **TOL)


def test_sequential_resident_value_and_grads_with_dropout_and_softmax(small_blocks):
    def make():
        return Sequential([
            Bidirectional(LSTM(2, return_sequences=True, seed=1, dtype="float64"),
                          merge_mode="sum"),
            Dropout(0.3, seed=2, dtype="float64"),
            TimeDistributed(Dense(3, activation="softmax", seed=3, dtype="float64")),
        ], device="cuda")  # fmt: skip

    cpu, gpu = make().build((None, 3, 2)), make().build((None, 3, 2))
    cpu.device = "cpu"
    gpu.set_weights(cpu.get_weights())
    rng = np.random.default_rng(8)
    x = rng.normal(size=(3, 3, 2))
    mask = np.array([[True, True, False], [True, True, True], [False, True, True]])
    cot = rng.normal(size=(3, 3, 3))
    out_cpu, (grads_cpu, _, _) = cpu.value_and_vjp(x, lambda o: cot, mask=mask, training=True)
    with gpu.resident() as residency:
        out_dev, grads_dev = residency.value_and_grads(
            residency.upload(x), lambda o: residency.upload(cot), mask=residency.upload(mask)
        )
        # a host call inside the scope uses the device weights, returns numpy
        np.testing.assert_allclose(gpu(x, mask=mask), cpu(x, mask=mask), **TOL)
        np.testing.assert_allclose(out_dev.copy_to_host(), out_cpu, **TOL)
        for a, b in zip(grads_cpu, grads_dev, strict=True):
            np.testing.assert_allclose(b.copy_to_host(), a, **TOL)
        snapshot = residency.snapshot()
        residency.ops.fill_(residency.twins[0], 0.0)
        assert not gpu.get_weights()[0].any()  # get_weights syncs from the device
        residency.restore(snapshot)
        with pytest.raises(ValueError, match="already resident"):
            with gpu.resident():
                pass
    for a, b in zip(cpu.get_weights(), gpu.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert getattr(gpu, "_residency", None) is None
    pickle.loads(pickle.dumps(gpu))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(gpu(x), cpu(x), **TOL)
