"""Estimators with ``device=``: 'cuda' trains the same network as the CPU.

The comparison runs under numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) or
on a GPU; the error test runs where neither is present.
"""

import numpy as np
import pytest

from numrnn import RNNClassifier, RNNRegressor
from numrnn.kernels import DeviceUnavailableError, cuda_status

_AVAILABLE, _SIMULATOR, _REASON = cuda_status()


def _data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3, 2))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


@pytest.mark.skipif(not _AVAILABLE, reason=f"the CUDA kernels cannot run here: {_REASON}")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_fit_matches_cpu_fit(cuda_runtime, small_blocks, cell):
    X, y = _data()
    params = dict(cell=cell, units=(3,), max_iter=3, batch_size=6, random_state=0)
    params["dtype"] = "float64"
    cpu = RNNClassifier(**params, device="cpu").fit(X, y)
    gpu = RNNClassifier(**params, device="cuda").fit(X, y)
    assert all(layer.device == "cuda" for layer in gpu.model_.layers if hasattr(layer, "device"))
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-10)
    np.testing.assert_allclose(gpu.predict_proba(X), cpu.predict_proba(X), rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(_AVAILABLE, reason="a CUDA runtime is present")
def test_cuda_device_without_gpu_fails_before_any_work_and_auto_falls_back():
    X, y = _data()
    fitted = RNNRegressor(units=(2,), max_iter=1, random_state=0).fit(X, y.astype(float))
    before = fitted.predict(X)
    with pytest.raises(DeviceUnavailableError, match="device='cuda'"):
        fitted.set_params(device="cuda").fit(X, y.astype(float))
    # the failed fit left the fitted model usable
    np.testing.assert_array_equal(fitted.set_params(device="cpu").predict(X), before)
    auto = RNNRegressor(units=(2,), max_iter=1, random_state=0, device="auto")
    np.testing.assert_array_equal(auto.fit(X, y.astype(float)).predict(X), before)
