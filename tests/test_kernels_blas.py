"""The BLAS binding of the CPU kernels (``numrnn.kernels.cpu._blas``).

Both libraries the kernels can call are checked through the CBLAS signature
the kernels use (every transposition, row strides wider than the rows,
``beta`` 0 and 1), and a whole LSTM forward/backward is compared across the
two bindings in separate processes (the binding is fixed per process).
"""

import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from numrnn.kernels.cpu import _blas


def _call(function, dtype, a, trans_a, b, trans_b, c, accumulate):
    m, n = c.shape
    k = a.shape[0] if trans_a else a.shape[1]
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    function(
        _blas.ROW_MAJOR, _blas.TRANS if trans_a else _blas.NO_TRANS,
        _blas.TRANS if trans_b else _blas.NO_TRANS, m, n, k,
        scalar(1.0), a.ctypes.data, a.strides[0] // a.itemsize,
        b.ctypes.data, b.strides[0] // b.itemsize,
        scalar(1.0 if accumulate else 0.0), c.ctypes.data, c.strides[0] // c.itemsize,
    )  # fmt: skip


def _libraries(dtype):
    name = "float32" if dtype == np.float32 else "float64"
    scalar = ctypes.c_float if dtype == np.float32 else ctypes.c_double
    prototype = ctypes.CFUNCTYPE(
        None, ctypes.c_int, ctypes.c_int, ctypes.c_int,
        ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
        scalar, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
        scalar, ctypes.c_void_p, ctypes.c_int64,
    )  # fmt: skip
    found = {"scipy": prototype(_blas._fallback(name).address)}
    library = _blas._numpy_openblas()
    if library is not None:
        function = getattr(library, _blas._NUMPY_SYMBOLS[name])
        found["numpy"] = prototype(ctypes.cast(function, ctypes.c_void_p).value)
    return found


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_both_libraries_compute_the_row_major_product(dtype, trans_a, trans_b, accumulate):
    rng = np.random.default_rng(3)
    m, n, k = 5, 7, 4
    # operands are column slices of wider arrays: row stride > row length
    a_full = rng.standard_normal((k, m + 3) if trans_a else (m, k + 3)).astype(dtype)
    b_full = rng.standard_normal((n, k + 2) if trans_b else (k, n + 2)).astype(dtype)
    a = a_full[:, :m] if trans_a else a_full[:, :k]
    b = b_full[:, :k] if trans_b else b_full[:, :n]
    start = rng.standard_normal((m, n + 1)).astype(dtype)
    expected = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b)
    if accumulate:
        expected = expected + start[:, :n]
    tol = 1e-5 if dtype == np.float32 else 1e-13
    libraries = _libraries(dtype)
    for name, function in libraries.items():
        c_full = start.copy()
        if not accumulate:
            c_full[:, :n] = np.nan  # beta = 0 must ignore what is there
        _call(function, dtype, a, trans_a, b, trans_b, c_full[:, :n], accumulate)
        np.testing.assert_allclose(c_full[:, :n], expected, rtol=tol, atol=tol, err_msg=name)
        np.testing.assert_array_equal(c_full[:, n], start[:, n])  # nothing past the view


def test_numpy_wheels_bind_their_bundled_openblas():
    if os.environ.get(_blas.ENVIRONMENT_VARIABLE, "").lower() == "scipy":
        assert _blas.BACKEND == "scipy"
    elif _blas._numpy_openblas() is not None:
        assert _blas.BACKEND == "numpy"
    else:
        assert _blas.BACKEND == "scipy"


_CHILD = """
import json, sys
import numpy as np
from numrnn import layers
from numrnn.kernels.cpu import _blas
result = {"backend": _blas.BACKEND}
rng = np.random.default_rng(0)
for dtype in ("float32", "float64"):
    x = rng.normal(size=(9, 6, 3)).astype(dtype)
    mask = np.ones((9, 6), bool)
    mask[2, 4:] = False
    layer = layers.LSTM(5, return_sequences=True, seed=1, dtype=dtype)
    out = layer(x, mask=mask)
    cot = [rng.normal(size=out.shape).astype(dtype)]
    grads = layer.vjp(x, cot, mask=mask)
    flat = [np.asarray(out).ravel()]
    for g in grads:
        if isinstance(g, (list, tuple)):
            flat.extend(np.asarray(v).ravel() for v in g)
        elif g is not None:
            flat.append(np.asarray(g).ravel())
    result[dtype] = np.concatenate(flat).astype(float).tolist()
json.dump(result, sys.stdout)
"""


def _child(choice):
    env = {**os.environ, _blas.ENVIRONMENT_VARIABLE: choice}
    run = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_lstm_forward_and_gradients_agree_across_bindings():
    forced = _child("scipy")
    default = _child("")
    assert forced["backend"] == "scipy"
    assert default["backend"] in ("numpy", "scipy")
    np.testing.assert_allclose(default["float64"], forced["float64"], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(default["float32"], forced["float32"], rtol=2e-5, atol=1e-6)


def test_unknown_choice_is_a_clear_error():
    env = {**os.environ, _blas.ENVIRONMENT_VARIABLE: "mkl"}
    run = subprocess.run(
        [sys.executable, "-c",
         "import numpy as np; from numrnn import layers; layers.LSTM(2)(np.zeros((1, 2, 1)))"],
        env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode != 0
    assert "NUMRNN_BLAS='mkl' is not understood; expected 'numpy' or 'scipy'" in run.stderr


_COUNTING_CHILD = """
import ctypes, json, sys
import numpy as np
from llvmlite import binding
from numrnn.kernels.cpu import _blas
# wrap the bound float64 symbol in a counter before any kernel is compiled or loaded
prototype = ctypes.CFUNCTYPE(
    None, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
    ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
    ctypes.c_int64, ctypes.c_double, ctypes.c_void_p, ctypes.c_int64,
)
symbol = _blas.SYMBOLS["float64"]
bound = prototype(binding.address_of_symbol(symbol))
calls = []
def counting(*args):
    calls.append(args[3:6])
    bound(*args)
wrapper = prototype(counting)
binding.add_symbol(symbol, ctypes.cast(wrapper, ctypes.c_void_p).value)
from numrnn import layers
x = np.random.default_rng(0).normal(size=(3, 4, 2))
out = layers.SimpleRNN(5, return_sequences=True, seed=0, dtype="float64")(x)
json.dump({"calls": [list(c) for c in calls], "out": out.ravel().tolist()}, sys.stdout)
"""


def test_kernels_call_the_bound_symbol_compiled_and_from_the_cache(tmp_path):
    # The kernels name the GEMM symbol, which is resolved when their code is
    # linked: in the process that compiles them and in one that loads them
    # from numba's cache. Both processes must route every product through
    # whatever the symbol is bound to (here a counter around the binding).
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    runs = []
    for _ in range(2):  # compile, then load from the cache
        run = subprocess.run(
            [sys.executable, "-c", _COUNTING_CHILD], env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        runs.append(json.loads(run.stdout))
    assert any(tmp_path.rglob("*.nbi")), "the first run wrote no cache"
    for result in runs:
        # one input projection (all steps: m = 3 * 4) and one recurrent product per step
        assert result["calls"] == [[12, 5, 2]] + [[3, 5, 5]] * 4
    assert runs[0]["out"] == runs[1]["out"]
