"""Batch-parallel calls of the whole-sequence kernels.

The samples of a batch are independent through the time loop, so a kernel
call can run as several calls on disjoint row blocks of the batch, one per
thread (the compiled kernels release the GIL). Each block is a C-contiguous
slice of every batch-major array; gradients that sum over the batch (the
weight gradients) go to private buffers per block and are added at the end.

This beats letting BLAS split each per-step product: those products are
small, and BLAS threads synchronise at every step, while the blocks run the
whole sequence without meeting.

Runner: the blocks of a compiled kernel run on numba's own threads
(:mod:`._blocks`: its OpenMP threading layer, started with a bounded spin
count), which take a few microseconds to hand a call out; elsewhere, and with
``NUMRNN_BLOCK_THREADS=python``, on a Python thread pool (about a hundred
microseconds or more per call on a small virtual machine). Both give the same
numbers: each block is the same kernel call on its rows.

Thread count: the smaller of numba's (``NUMBA_NUM_THREADS``,
``numba.set_num_threads``) and the BLAS library's (``OPENBLAS_NUM_THREADS``,
``threadpoolctl.threadpool_limits``), so the usual knobs (and joblib's
per-worker limits) bound it. While the blocks run, BLAS is held to one
thread, so that the two thread pools do not oversubscribe the cores. One
batch-parallel call runs at a time; a call made meanwhile from another
thread runs serially. A child process made by ``os.fork`` (``multiprocessing``'s
"fork" start method) has none of its parent's threads: it runs its blocks
on a Python pool of its own, started at its first batch-parallel call.
"""

import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

#: fewest batch rows per block, and least work (rows x steps x gate width)
#: per call, for a split to pay for its thread hand-off
MIN_ROWS = 8
MIN_WORK = 1 << 17
#: widest gate row (G x units) that splits when the per-step products call
#: the BLAS: wider ones are big enough for the BLAS's own threads, and
#: measured faster that way (LSTM 256 units, batch 32: 0.8x with blocks; 128
#: units: 1.13x). Products over packed panels (``_packed``) have no limit.
MAX_WIDTH = 512

#: where the blocks run: "numba" (numba's threads where possible) or "python"
RUNNER = os.environ.get("NUMRNN_BLOCK_THREADS", "numba").strip().lower()
if RUNNER not in ("numba", "python"):
    raise ValueError(f"NUMRNN_BLOCK_THREADS must be 'numba' or 'python', got {RUNNER!r}")

_LOCK = threading.Lock()
_STATE = {}
#: native address of each compiled kernel, by kernel and argument types
_ADDRESSES = {}
_OWNDATA = 0x4  # numpy's NPY_ARRAY_OWNDATA flag: not part of a numba type


def _blas_controller():
    controller = _STATE.get("blas")
    if controller is None:
        # the kernels call NumPy's or SciPy's BLAS (``_blas``): load SciPy's
        # before looking, so that the limits cover both
        import scipy.linalg.cython_blas  # noqa: F401
        from threadpoolctl import ThreadpoolController

        controller = ThreadpoolController().select(user_api="blas")
        _STATE["blas"] = controller
    return controller


def _thread_budget():
    import numba

    _layer_ready()  # before numba's first thread count starts OpenMP (its spin count)
    budget = numba.get_num_threads()
    for lib in _blas_controller().lib_controllers:
        budget = min(budget, lib.get_num_threads())
    return budget


def _forget_threads():
    # in a forked child: the parent's pool threads do not exist here (work
    # submitted to them would never run), and the lock may have been held by
    # one of the parent's other threads
    global _LOCK
    _STATE.pop("pool", None)
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if _STATE.get("layer") or getattr(parallel, "_is_initialized", False):
        _STATE["layer"] = False  # numba's threads are gone too, and OpenMP breaks
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_threads)


def _pool():
    pool = _STATE.get("pool")
    if pool is None:
        # one worker per core at most; the calling thread runs the first block
        pool = ThreadPoolExecutor(
            max_workers=max(1, (os.cpu_count() or 2) - 1), thread_name_prefix="numrnn-kernel"
        )
        _STATE["pool"] = pool
    return pool


def native_ready():
    """Whether batch-parallel calls of compiled kernels run on numba's threads
    in this process (:data:`RUNNER`, the threading layer, not a forked child)."""
    return RUNNER == "numba" and _layer_ready()


def _layer_ready():
    ready = _STATE.get("layer")
    if ready is None:
        from numrnn.kernels.cpu import _blocks

        ready = _STATE["layer"] = _blocks.layer_ready()
    return ready


def _type_key(value):
    # what numba's type of an argument depends on, cheaper than numba.typeof
    if type(value) is np.ndarray:
        return (value.dtype, value.ndim, value.flags.num & ~_OWNDATA)
    if type(value) in (bool, int, float) or isinstance(value, np.generic):
        return type(value)
    from numba import typeof

    return typeof(value)  # a tuple, for one: its type depends on its items


def _native_address(kernel, calls):
    """The kernel's compiled address for these blocks, or 0 (no native run:
    not a compiled kernel, or blocks of different argument types)."""
    keys = [tuple(map(_type_key, block)) for block in calls]
    if any(key != keys[0] for key in keys[1:]):
        return 0
    cache_key = (kernel, keys[0])
    address = _ADDRESSES.get(cache_key)
    if address is None:
        from numrnn.kernels.cpu import _blocks

        address = _ADDRESSES[cache_key] = _blocks.native_address(kernel, calls[0])
    return address


def _run_native(kernel, args, calls):
    """Run the blocks on numba's threads: "blocks", or "serial" where one
    failed and the whole call ran again here; None where they cannot run there."""
    if not native_ready():
        return None
    address = _native_address(kernel, calls)
    if not address:
        return None
    from numba import get_num_threads

    from numrnn.kernels.cpu import _blocks

    failed = _blocks.run_blocks(
        address, tuple(tuple(block) for block in calls), min(len(calls), get_num_threads())
    )
    if failed:
        # a compiled kernel raises inside numba's threads, where the error
        # cannot reach Python: run the rows again in this thread to raise it
        # (the kernels overwrite every output, so a rerun that passes is exact)
        kernel(*args)
        return "serial"
    return "blocks"


def _run_on_pool(kernel, calls):
    futures = [_pool().submit(kernel, *block) for block in calls[1:]]
    try:
        kernel(*calls[0])
    finally:
        wait(futures)
    for future in futures:
        future.result()  # re-raise a block's error


class _BlasHeldToOne:
    """Hold the BLAS libraries to one thread (threadpoolctl's ``limit`` in
    two direct calls per library: it is called around every split call)."""

    def __enter__(self):
        self.libraries = [
            (lib, lib.get_num_threads()) for lib in _blas_controller().lib_controllers
        ]
        for lib, _ in self.libraries:
            lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, threads in self.libraries:
            lib.set_num_threads(threads)


def n_blocks(n_batch, work, width, max_width=MAX_WIDTH):
    """How many row blocks a call gets (1: serial): ``n_batch`` rows, ``work``
    = rows x steps x ``width``, ``width`` = the gate row (G x units), and
    ``max_width`` the widest that splits (None: any)."""
    too_wide = max_width is not None and width > max_width
    if n_batch < 2 * MIN_ROWS or work < MIN_WORK or too_wide:
        return 1
    return max(1, min(_thread_budget(), n_batch // MIN_ROWS))


def planned_blocks(args, sliced, cache, max_width=MAX_WIDTH):
    """How many row blocks :func:`call_in_blocks` gives these arguments."""
    shape = tuple(getattr(cache, "shape", cache))
    return n_blocks(args[sliced[0]].shape[0], math.prod(shape), shape[-1], max_width)


def call_in_blocks(kernel, args, sliced, summed, cache, bounds=None, max_width=MAX_WIDTH):
    """``kernel(*args)``, split over row blocks of the batch when it pays.

    Parameters
    ----------
    kernel : callable
        A compiled kernel (releases the GIL).
    args : tuple
        Its arguments.
    sliced : sequence of int
        Positions of the batch-major arrays (batch on axis 0), sliced per block.
    summed : sequence of int
        Positions of the arrays the kernel writes as sums over the batch
        (weight gradients): each block but the first writes private ones,
        added in at the end.
    cache : ndarray or tuple of int
        The gate cache of the call, ``(B, T, G*U)`` or ``(T, B, G*U)``, or its
        shape: its size and last axis decide whether to split.
    bounds : pair of int, optional
        Positions of two integer arguments, the first and the stop row of the
        batch that the call computes (``0`` and ``B`` in ``args``). Each block
        gets its own; the kernel uses them to take its rows of time-major
        arrays (``(T, B, .)``, passed whole: their rows of one block are not
        one contiguous slice).
    max_width : int or None, optional
        The widest gate row that splits (:data:`MAX_WIDTH`); None for calls
        whose per-step products do not call the BLAS.
    """
    n_batch = args[sliced[0]].shape[0]
    blocks = planned_blocks(args, sliced, cache, max_width)
    if blocks == 1 or not _LOCK.acquire(blocking=False):
        kernel(*args)
        return
    try:
        rows = [n_batch * k // blocks for k in range(blocks + 1)]
        calls = []
        privates = []
        for k in range(blocks):
            block = list(args)
            for i in sliced:
                block[i] = args[i][rows[k] : rows[k + 1]]
            if bounds is not None:
                block[bounds[0]], block[bounds[1]] = rows[k], rows[k + 1]
            if k > 0:
                private = {i: np.empty_like(args[i]) for i in summed}
                for i, array in private.items():
                    block[i] = array
                privates.append(private)
            calls.append(block)
        with _BlasHeldToOne():
            ran = _run_native(kernel, args, calls)
            if ran is None:
                _run_on_pool(kernel, calls)
        if ran == "serial":
            return
        for private in privates:
            for i, array in private.items():
                np.add(args[i], array, out=args[i])
    finally:
        _LOCK.release()
