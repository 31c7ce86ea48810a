"""CUDA twins of the recurrent kernels (``numba.cuda``).

The modules ``simple_rnn``, ``lstm`` and ``gru`` mirror
``numrnn.kernels.cpu`` name for name, with the same arguments in the same
order; their functions are host launchers that accept host or device arrays
(see ``_common``). Importing this package imports ``numba.cuda``: it needs
the ``cuda`` extra (numba-cuda). Layers reach it through
``numrnn.kernels.get_backend("cuda")``, which first checks that a GPU (or
numba's CUDA simulator) is there.

:func:`set_launch_config` / :func:`launch_config` set the thread-block
geometry (tests use tiny blocks so that small shapes span several blocks).
"""

import importlib.util

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError(
        "numrnn.kernels.cuda needs numba-cuda; install the cuda extra: pip install 'numrnn[cuda]'"
    )

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from numrnn.kernels.cuda import gru, lstm, simple_rnn  # noqa: E402
from numrnn.kernels.cuda._common import (  # noqa: E402
    copy_last_step,
    get_launch_config,
    is_device_array,
    launch_2d,
    launch_config,
    set_launch_config,
)

__all__ = [
    "CudaBackend",
    "get_launch_config",
    "gru",
    "launch_config",
    "lstm",
    "set_launch_config",
    "simple_rnn",
]


class CudaBackend:
    """Array handling for the CUDA kernels, used by the layers.

    Inputs move to the device once per layer call; the forward caches stay
    on the device until the backward pass; outputs and gradients come back
    to the host.
    """

    name = "cuda"

    def __init__(self):
        self.simple_rnn = simple_rnn
        self.lstm = lstm
        self.gru = gru

    def to_device(self, array):
        """A device copy of host ``array`` (device arrays pass through)."""
        if is_device_array(array):
            return array
        return cuda.to_device(np.ascontiguousarray(array))

    def empty(self, shape, dtype):
        """An uninitialised device array."""
        return cuda.device_array(shape, dtype=dtype)

    def to_host(self, array):
        """A host copy of device ``array`` (host arrays pass through)."""
        if is_device_array(array):
            return array.copy_to_host()
        return array

    def last_step(self, sequence):
        """``sequence[:, -1]`` of a ``(B, T, U)`` device array, copied to the host."""
        n_batch, _, n_units = sequence.shape
        last = cuda.device_array((n_batch, n_units), dtype=sequence.dtype)
        launch_2d(copy_last_step, n_batch, n_units, last, sequence)
        return last.copy_to_host()
