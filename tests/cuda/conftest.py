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

import sys

import pytest


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
