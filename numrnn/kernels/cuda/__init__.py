"""CUDA twins of the recurrent kernels (``numba.cuda``).

The modules ``simple_rnn``, ``lstm`` and ``gru`` mirror
``numrnn.kernels.cpu`` name for name, with the same arguments in the same
order; their functions are host launchers that accept host or device arrays
(see ``_common``). Importing this package imports ``numba.cuda``: it needs
the ``cuda`` extra (numba-cuda). Layers reach it through
``numrnn.kernels.get_backend("cuda")``, which first checks that a GPU (or
numba's CUDA simulator) is there.

``ops`` holds the device operations of the device-resident training path
(Dense, merges, losses, reductions, optimizer updates), and
:meth:`CudaBackend.resident` keeps a set of host arrays (the parameters of a
model) as device twins for the length of a fit.

:func:`set_launch_config` / :func:`launch_config` set the thread-block
geometry (tests use tiny blocks so that small shapes span several blocks).
"""

import importlib.util

if importlib.util.find_spec("numba_cuda") is None:
    raise ImportError(
        "numrnn.kernels.cuda needs numba-cuda; install the cuda extra: pip install 'numrnn[cuda]'"
    )

import threading  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

from numrnn.kernels.cuda import gru, lstm, ops, simple_rnn  # noqa: E402
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
    "ops",
    "set_launch_config",
    "simple_rnn",
]


class CudaBackend:
    """Array handling for the CUDA kernels, used by the layers.

    Outside a residency scope, inputs and weights move to the device once
    per layer call; the forward caches stay on the device until the backward
    pass; outputs and gradients come back to the host.

    Inside :meth:`resident`, the registered host arrays (a model's weights)
    have device twins: :meth:`to_device` returns the twin instead of
    uploading, so the weights cross once at the start of the scope and once
    (back) at its end. Layers fed device arrays keep their outputs and
    gradients on the device.
    """

    name = "cuda"

    def __init__(self):
        self.simple_rnn = simple_rnn
        self.lstm = lstm
        self.gru = gru
        self.ops = ops
        # id(host array) -> (host array, device twin); shared by every scope
        self._twins = {}
        self._lock = threading.Lock()

    @staticmethod
    def is_device(array):
        """True for a device array (numba, simulator or ``__cuda_array_interface__``)."""
        return is_device_array(array)

    def to_device(self, array):
        """The device twin of a resident host array, else a device copy of host
        ``array`` (device arrays pass through)."""
        if is_device_array(array):
            return array
        entry = self._twins.get(id(array))
        if entry is not None and entry[0] is array:
            return entry[1]
        return cuda.to_device(np.ascontiguousarray(array))

    def twin(self, array):
        """The device twin of resident host ``array``, or None."""
        entry = self._twins.get(id(array))
        return entry[1] if entry is not None and entry[0] is array else None

    @contextmanager
    def resident(self, arrays, write_back=True):
        """Keep host ``arrays`` on the device for the length of the scope.

        Each array is uploaded once on entry; inside, :meth:`to_device`
        returns its twin. On exit (also on an exception) the twins are
        copied back into the host arrays (unless ``write_back`` is False)
        and forgotten.

        Parameters
        ----------
        arrays : list of numpy.ndarray
            C-contiguous host arrays (duplicates are uploaded once).
        write_back : bool, default=True
            Copy the twins back into the host arrays on exit.

        Yields
        ------
        list
            The device twins, parallel to ``arrays``.
        """
        twins = []
        added = []
        try:
            for array in arrays:
                if not isinstance(array, np.ndarray) or not array.flags.c_contiguous:
                    raise TypeError("resident() takes C-contiguous numpy arrays.")
                existing = self.twin(array)
                if existing is None:
                    existing = cuda.to_device(array)
                    with self._lock:
                        self._twins[id(array)] = (array, existing)
                    added.append(array)
                twins.append(existing)
            yield twins
        finally:
            try:
                if write_back:
                    for array in added:
                        self._twins[id(array)][1].copy_to_host(array)
            finally:
                with self._lock:
                    for array in added:
                        self._twins.pop(id(array), None)

    def empty(self, shape, dtype):
        """An uninitialised device array."""
        return cuda.device_array(shape, dtype=dtype)

    #: a layer's reused kernel buffers: plain device arrays
    workspace_empty = empty

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
