"""Shared fixtures of the CUDA tests.

The CUDA tests run in two separate pytest invocations:

- without ``NUMBA_ENABLE_CUDASIM``: ``test_cuda_compile.py`` compiles every
  kernel to PTX (no GPU needed); the kernel and layer comparisons skip
  unless a GPU is present;
- with ``NUMBA_ENABLE_CUDASIM=1``: ``test_cuda_kernels.py`` and
  ``test_cuda_layers.py`` run the kernels in numba's simulator and compare
  them with the CPU kernels, ``test_cuda_ops.py`` the device operations of
  the resident fit with their numpy versions, and
  ``test_cuda_resident_fit.py`` resident CUDA fits with CPU fits (and counts
  the host-device copies); the compile test skips.

``test_cuda_device.py`` and ``test_cuda_parity.py`` run in both.
"""

import os
import sys
import threading

import pytest


def _thread_safe_simulator_shared_arrays():
    """Make the simulator's ``cuda.shared.array`` allocation atomic.

    The simulator runs a block's threads as Python threads and gives them one
    NumPy array per ``cuda.shared.array`` call site; it looks the array up and
    creates it on a miss without a lock. When the GIL switches between the
    look-up and the store, two threads of one block get different arrays, so
    a reduction reads another array's uninitialised memory (seen as a loss of
    1e217 in CI). A GPU has no such race; this guards the simulator only.
    """
    import numpy as np
    from numba.cuda import types
    from numba.cuda.np import numpy_support
    from numba.cuda.simulator import kernelapi

    lock = threading.Lock()
    static_array = kernelapi.FakeCUDAShared.array

    def array(self, shape, dtype, alignment=None):
        if shape == 0 or alignment is not None:  # dynamic memory, or the simulator's error
            return static_array(self, shape, dtype, alignment)
        if isinstance(dtype, types.Type):
            dtype = numpy_support.as_dtype(dtype)
        caller = sys._getframe(1)
        site = (caller.f_code.co_filename, caller.f_lineno)
        with lock:
            found = self._allocations.get(site)
            if found is None:
                found = self._allocations[site] = np.empty(shape, dtype)
        return found

    kernelapi.FakeCUDAShared.array = array


if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    _thread_safe_simulator_shared_arrays()


@pytest.fixture(scope="module")
def cuda_runtime():
    """Whether the simulator runs the kernels; makes the simulator faster.

    The simulator runs each CUDA thread as a Python thread and its scheduler
    polls them, holding the GIL; a short switch interval (instead of 5 ms)
    hands the GIL over quickly and cuts the run time about eightfold.
    """
    from numrnn.kernels import cuda_status

    available, simulator, reason = cuda_status()
    if not available:
        pytest.skip(f"the CUDA kernels cannot run here: {reason}")
    saved = sys.getswitchinterval()
    if simulator:
        sys.setswitchinterval(1e-4)
    yield simulator
    sys.setswitchinterval(saved)


@pytest.fixture
def small_blocks(cuda_runtime):
    """Tiny thread blocks and GEMM tiles, so that small shapes span several blocks."""
    from numrnn.kernels.cuda import launch_config

    with launch_config(block=(2, 2), tile=2) as config:
        yield config
