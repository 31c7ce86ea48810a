"""Every CUDA kernel compiles to PTX for compute capability 9.0, in both dtypes.

numba's simulator runs Python that a real GPU would reject (unsupported
functions, non-constant shared-memory shapes, type errors), so this test
compiles each kernel with ``numba.cuda.compile_ptx`` for the argument types
it is launched with. It needs numba-cuda (whose NVVM runs without a GPU or a
driver) and skips under the simulator, where ``compile_ptx`` is not the real
compiler.
"""

import importlib.util
import os
import types

import pytest

_SIMULATOR = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
pytestmark = [
    pytest.mark.skipif(_SIMULATOR, reason="compile_ptx needs the real compiler, not the simulator"),
    pytest.mark.skipif(
        importlib.util.find_spec("numba_cuda") is None,
        reason="numba-cuda is not installed (pip install 'numrnn[cuda]')",
    ),
]

CC = (9, 0)


def _registry():
    # import every kernel module so that all kernels are registered
    import numrnn.kernels.cuda  # noqa: F401
    from numrnn.kernels.cuda._common import KERNELS

    return KERNELS


def _kernel_names():
    if _SIMULATOR or importlib.util.find_spec("numba_cuda") is None:
        return []
    return sorted(_registry())


@pytest.fixture
def without_gpu(monkeypatch):
    """Let device functions compile for CC 9.0 where no GPU can be asked.

    numba-cuda compiles a ``cuda.jit(device=True)`` function called from a
    kernel for the *current device's* compute capability, which needs a
    driver; ``compile_ptx`` targets ``cc`` only for the kernel itself. Where
    no GPU is present, answer that query with CC 9.0, the target of the test.
    """
    import numba.cuda.dispatcher as dispatcher
    from numba import cuda

    if not cuda.is_available():
        device = types.SimpleNamespace(compute_capability=CC)
        monkeypatch.setattr(dispatcher, "get_current_device", lambda: device)


def test_registry_covers_every_kernel():
    """Each CUDA kernel object in the kernel modules is in the compile registry."""
    import importlib

    from numba.cuda.dispatcher import CUDADispatcher

    kernels = _registry()
    for name in ("_common", "simple_rnn", "lstm", "gru", "ops"):
        module = importlib.import_module(f"numrnn.kernels.cuda.{name}")
        for attr, obj in vars(module).items():
            if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device"):
                key = f"{obj.py_func.__module__}.{obj.py_func.__name__}"
                assert key in kernels, f"{module.__name__}.{attr} is not registered"
    assert len(kernels) >= 17
    assert any(key.startswith("numrnn.kernels.cuda.ops.") for key in kernels)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", _kernel_names())
def test_kernel_compiles_to_ptx(name, dtype, without_gpu):
    from numba import cuda

    py_func, argtypes = _registry()[name](dtype)
    ptx, return_type = cuda.compile_ptx(py_func, argtypes, cc=CC)
    assert ".target sm_90" in ptx
    assert ".entry" in ptx
    assert str(return_type) == "none"
    float_arrays = [t for t in argtypes if getattr(t, "dtype", None) is not None]
    assert all(str(t.dtype) in (dtype, "bool") for t in float_arrays)
