"""Shared pieces of the CUDA recurrent kernels.

The public functions of ``simple_rnn``, ``lstm`` and ``gru`` in this package
are host *launchers* with the names, arguments and array conventions of
their ``numrnn.kernels.cpu`` twins (see ``numrnn.kernels.cpu._common``).
Each argument may be a host ndarray or a CUDA device array:

- host arrays move to the device once per call (inputs) and written arrays
  come back once at the end (outputs); the same host array passed twice
  (``h_used`` aliasing ``h_prev``) moves once;
- device arrays are used in place, so a caller that keeps its buffers on the
  device (the layers do, between the forward and the backward pass) moves
  nothing.

The time loop runs on the host and launches a few kernels per step
(a tiled GEMM for the recurrent product, one fused kernel for the cell);
every array stays on the device during the loop, and nothing is allocated
inside it. The gate formulas come from ``numrnn.kernels._math``, compiled
here with ``cuda.jit(device=True)``.

Launch geometry is configurable (:func:`set_launch_config`): element-wise
kernels use 2-D blocks of ``block = (units, rows)`` threads, the GEMM square
tiles of ``tile x tile`` threads. Tests use tiny values so that small shapes
span several blocks.
"""

import functools
import math
from contextlib import contextmanager

import numba
import numpy as np
from numba import cuda

from numrnn.kernels import _math

__all__ = ["get_launch_config", "launch_config", "set_launch_config"]

activate = cuda.jit(device=True)(_math.activate)
activation_grad = cuda.jit(device=True)(_math.activation_grad)

# -- launch configuration -----------------------------------------------------

_DEFAULT_LAUNCH = {"block": (32, 8), "tile": 16}
_LAUNCH = dict(_DEFAULT_LAUNCH)
_MAX_THREADS = 1024


def get_launch_config():
    """The current launch geometry.

    Returns
    -------
    dict
        ``{"block": (units, rows), "tile": tile}``.
    """
    return dict(_LAUNCH)


def _check_positive(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def set_launch_config(block=None, tile=None):
    """Set the thread-block geometry of the CUDA kernels (process-wide).

    Parameters
    ----------
    block : tuple of 2 int, optional
        ``(units, rows)``: threads per block of the element-wise kernels
        along the unit and the batch axes; at most 1024 threads in all.
        Default ``(32, 8)``.
    tile : int, optional
        Side of the square tiles (and thread blocks) of the matrix products;
        at most 32. Default 16. Each tile size compiles its own GEMM.

    Raises
    ------
    TypeError, ValueError
        If a value is not a positive integer or exceeds the limits.
    """
    if block is not None:
        if not isinstance(block, (tuple, list)) or len(block) != 2:
            raise ValueError(f"block must be a pair (units, rows) of ints, got {block!r}.")
        block = (_check_positive(block[0], "block[0]"), _check_positive(block[1], "block[1]"))
        if block[0] * block[1] > _MAX_THREADS:
            raise ValueError(f"block {block} has more than {_MAX_THREADS} threads.")
    if tile is not None:
        tile = _check_positive(tile, "tile")
        if tile * tile > _MAX_THREADS:
            raise ValueError(f"tile must be at most 32 (tile * tile threads), got {tile}.")
    if block is not None:
        _LAUNCH["block"] = block
    if tile is not None:
        _LAUNCH["tile"] = tile


@contextmanager
def launch_config(block=None, tile=None):
    """Context manager: :func:`set_launch_config` inside, the previous geometry after.

    Parameters
    ----------
    block : tuple of 2 int, optional
    tile : int, optional
        As for :func:`set_launch_config`.
    """
    saved = get_launch_config()
    set_launch_config(block=block, tile=tile)
    try:
        yield get_launch_config()
    finally:
        _LAUNCH.update(saved)


def grid_2d(n_rows, n_cols):
    """Grid and block of an element-wise kernel over ``(rows, cols)``; x runs along cols."""
    bx, by = _LAUNCH["block"]
    return (math.ceil(n_cols / bx), math.ceil(n_rows / by)), (bx, by)


def grid_1d(n):
    """Grid and block of an element-wise kernel over ``n`` items."""
    bx, by = _LAUNCH["block"]
    threads = bx * by
    return (math.ceil(n / threads),), (threads,)


# -- kernel registry (for the compile-only test) --------------------------------

#: "module.name" -> builder(dtype) -> (python function, tuple of numba argument types)
KERNELS = {}


def _arg_type(code, dtype):
    if code == "i":
        return numba.int64
    if code == "?":
        return numba.boolean
    if code == "f":
        return numba.from_dtype(np.dtype(dtype))
    if code == "d":
        return numba.float64
    kind, ndim, layout = code[0], int(code[1]), code[2:] or "C"
    base = numba.from_dtype(np.dtype(dtype)) if kind == "F" else numba.boolean
    return numba.types.Array(base, ndim, layout)


def kernel(*arg_codes):
    """Decorator: ``cuda.jit(cache=True)`` a kernel and register its argument types.

    Codes: ``"i"`` int64, ``"?"`` bool, ``"f"`` a scalar of the call's float
    dtype, ``"d"`` a float64 scalar, ``"F<n>"`` a C-contiguous float array of
    the call's dtype with n dimensions (``"F<n>A"`` any layout), ``"M<n>"`` a
    bool array.
    """

    def wrap(py_func):
        dispatcher = cuda.jit(cache=True)(py_func)
        key = f"{py_func.__module__}.{py_func.__name__}"
        KERNELS[key] = lambda dtype: (py_func, tuple(_arg_type(c, dtype) for c in arg_codes))
        return dispatcher

    return wrap


# -- host <-> device -------------------------------------------------------------

try:
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray as _FakeArray
except ImportError:  # pragma: no cover - depends on the numba-cuda layout
    _FakeArray = ()


def is_device_array(array):
    """True for a numba device array or any object with ``__cuda_array_interface__``."""
    if _FakeArray and isinstance(array, _FakeArray):
        return True
    if isinstance(array, np.ndarray):
        return False
    return hasattr(array, "__cuda_array_interface__")


def as_device_array(array):
    """A numba device array viewing ``array`` (CuPy, PyTorch, ... arrays zero-copy)."""
    if cuda.devicearray.is_cuda_ndarray(array):
        return array
    return cuda.as_cuda_array(array)


class Transfer:
    """Moves a launcher's host arguments to the device once, and results back.

    ``input`` uploads a host array (reused when the same array comes again),
    ``output`` allocates its device twin and schedules the copy back, which
    :meth:`finish` performs. Device arrays pass through untouched.
    """

    def __init__(self):
        self._device = {}
        self._copy_back = {}

    def _twin(self, array, upload):
        if is_device_array(array):
            return as_device_array(array)
        key = id(array)
        if key not in self._device:
            if upload:
                twin = cuda.to_device(array)
            else:
                twin = cuda.device_array(array.shape, dtype=array.dtype)
            self._device[key] = (array, twin)
        return self._device[key][1]

    def input(self, array):
        """Device array holding the values of ``array`` (read by the kernels)."""
        return self._twin(array, upload=True)

    def output(self, array):
        """Device array the kernels write; copied back into host ``array`` by finish()."""
        twin = self._twin(array, upload=False)
        if not is_device_array(array):
            self._copy_back[id(array)] = (array, twin)
        return twin

    def finish(self):
        """Copy every output back to its host array."""
        for host, twin in self._copy_back.values():
            twin.copy_to_host(host)
        self._copy_back.clear()


def check_arrays(where, floats, masks=()):
    """Check that kernel arguments share one float dtype and are C-contiguous.

    Parameters
    ----------
    where : str
        Name of the launcher, for error messages.
    floats : dict
        Argument name -> float array (host or device).
    masks : dict
        Argument name -> bool array.

    Returns
    -------
    numpy.dtype
        The common float dtype.
    """
    dtype = None
    for name, array in floats.items():
        arr_dtype = np.dtype(array.dtype)
        if arr_dtype not in (np.float32, np.float64):
            raise TypeError(f"{where}: {name} must be float32 or float64, got {arr_dtype}.")
        if dtype is None:
            dtype = arr_dtype
        elif arr_dtype != dtype:
            raise TypeError(
                f"{where}: every float array must share one dtype; {name} is {arr_dtype}, "
                f"expected {dtype}."
            )
    for name, array in masks.items():
        if np.dtype(array.dtype) != np.bool_:
            raise TypeError(f"{where}: {name} must be a bool array, got {array.dtype}.")
    for name, array in {**floats, **masks}.items():
        if not _is_c_contiguous(array):
            raise ValueError(f"{where}: {name} must be C-contiguous.")
    return dtype


def _is_c_contiguous(array):
    if isinstance(array, np.ndarray):
        return array.flags.c_contiguous
    if hasattr(array, "is_c_contiguous"):
        return array.is_c_contiguous()
    flags = getattr(array, "flags", None)
    if flags is not None:
        return bool(flags["C_CONTIGUOUS"])
    return True


def check_shapes(where, expected):
    """Raise ValueError naming the first argument whose shape is not the expected one.

    ``expected`` maps argument name -> (array, expected shape tuple).
    """
    for name, (array, shape) in expected.items():
        if tuple(array.shape) != tuple(shape):
            raise ValueError(
                f"{where}: {name} has shape {tuple(array.shape)}, expected {tuple(shape)}."
            )


def check_recurrent_shapes(where, x, kernel_, recurrent_kernel, mask, state, rec_mask, n_gates):
    """Check the shapes shared by every recurrent launcher; return ``(B, T, U, W)``.

    ``state`` is any ``(B, U)`` state argument (``h0`` or ``d_h0``); ``W``,
    the width of ``rec_mask`` and of ``h_used``, is ``U`` or ``n_gates * U``.
    """
    if len(x.shape) != 3:
        raise ValueError(
            f"{where}: x must be 3-D (batch, timesteps, features), got shape {tuple(x.shape)}."
        )
    n_batch, n_steps, n_features = x.shape
    if n_batch == 0 or n_steps == 0:
        raise ValueError(
            f"{where}: x must hold at least one sample and one step, got shape {tuple(x.shape)}."
        )
    if len(state.shape) != 2 or state.shape[0] != n_batch:
        raise ValueError(
            f"{where}: the states must be (batch, units) with batch {n_batch}, got shape "
            f"{tuple(state.shape)}."
        )
    n_units = state.shape[1]
    width = rec_mask.shape[1] if len(rec_mask.shape) == 2 else -1
    widths = (n_units,) if n_gates == 1 else (n_units, n_gates * n_units)
    if width not in widths:
        raise ValueError(
            f"{where}: rec_mask has shape {tuple(rec_mask.shape)}, expected (batch, W) with W "
            f"in {widths}."
        )
    check_shapes(where, {
        "kernel": (kernel_, (n_features, n_gates * n_units)),
        "recurrent_kernel": (recurrent_kernel, (width, n_gates * n_units)),
        "mask": (mask, (n_batch, n_steps)),
        "rec_mask": (rec_mask, (n_batch, width)),
    })  # fmt: skip
    return n_batch, n_steps, n_units, width


def step_index(s, n_steps, go_backwards):
    """Input-time index of processing step ``s``."""
    return n_steps - 1 - s if go_backwards else s


def flat(array):
    """``(B, T, K)`` device array as ``(B*T, K)`` (a view)."""
    return array.reshape(array.shape[0] * array.shape[1], array.shape[2])


# -- matrix product -------------------------------------------------------------


@functools.cache
def gemm_kernel(dtype, tile):
    """The tiled GEMM kernel for ``dtype`` and ``tile`` (compiled once per pair).

    ``gemm(a, b, c, trans_a, trans_b, accumulate)`` computes
    ``c (+)= op(a) @ op(b)`` with ``op(a) = a.T`` when ``trans_a`` (same for
    b). Each block computes a ``tile x tile`` block of ``c`` from shared-memory
    tiles; loads of transposed operands are arranged to stay coalesced.
    """
    return cuda.jit(cache=True)(_gemm_function(numba.from_dtype(np.dtype(dtype)), tile))


def _gemm_function(nb_type, tile):
    padded = tile + 1  # a padding column avoids shared-memory bank conflicts

    def gemm(a, b, c, trans_a, trans_b, accumulate):
        tile_a = cuda.shared.array((tile, padded), nb_type)  # [row, k]
        tile_b = cuda.shared.array((tile, padded), nb_type)  # [k, col]
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        row0 = cuda.blockIdx.y * tile
        col0 = cuda.blockIdx.x * tile
        n_rows = c.shape[0]
        n_cols = c.shape[1]
        n_inner = a.shape[0] if trans_a else a.shape[1]
        acc = nb_type(0.0)
        for k0 in range(0, n_inner, tile):
            if trans_a:
                r = row0 + tx
                k = k0 + ty
                if r < n_rows and k < n_inner:
                    tile_a[tx, ty] = a[k, r]
                else:
                    tile_a[tx, ty] = 0.0
            else:
                r = row0 + ty
                k = k0 + tx
                if r < n_rows and k < n_inner:
                    tile_a[ty, tx] = a[r, k]
                else:
                    tile_a[ty, tx] = 0.0
            if trans_b:
                j = col0 + ty
                k = k0 + tx
                if j < n_cols and k < n_inner:
                    tile_b[tx, ty] = b[j, k]
                else:
                    tile_b[tx, ty] = 0.0
            else:
                j = col0 + tx
                k = k0 + ty
                if j < n_cols and k < n_inner:
                    tile_b[ty, tx] = b[k, j]
                else:
                    tile_b[ty, tx] = 0.0
            cuda.syncthreads()
            for kk in range(tile):
                acc += tile_a[ty, kk] * tile_b[kk, tx]
            cuda.syncthreads()
        r = row0 + ty
        j = col0 + tx
        if r < n_rows and j < n_cols:
            if accumulate:
                c[r, j] += acc
            else:
                c[r, j] = acc

    return gemm


def _gemm_entry(dtype):
    nb_type = numba.from_dtype(np.dtype(dtype))
    array = numba.types.Array(nb_type, 2, "A")
    py_func = _gemm_function(nb_type, _LAUNCH["tile"])
    return py_func, (array, array, array, numba.boolean, numba.boolean, numba.boolean)


KERNELS[f"{__name__}.gemm"] = _gemm_entry


def matmul(a, b, c, trans_a=False, trans_b=False, accumulate=False):
    """``c = op(a) @ op(b)`` (or ``+=`` with ``accumulate``) on 2-D device arrays."""
    n_rows, n_cols = c.shape
    if n_rows == 0 or n_cols == 0:
        return
    tile = _LAUNCH["tile"]
    gemm = gemm_kernel(np.dtype(c.dtype), tile)
    grid = (math.ceil(n_cols / tile), math.ceil(n_rows / tile))
    gemm[grid, (tile, tile)](a, b, c, bool(trans_a), bool(trans_b), bool(accumulate))


# -- device functions shared by the cells ---------------------------------------


@cuda.jit(device=True)
def emit_output(out, s, b, u, value, keep, zero_output_for_mask):
    """Write unit ``u`` of the output of processing step ``s`` for sample ``b``."""
    if keep:
        out[b, s, u] = value
    elif zero_output_for_mask or s == 0:
        out[b, s, u] = 0.0
    else:
        out[b, s, u] = out[b, s - 1, u]


@cuda.jit(device=True)
def save_state(t, b, u, value, rec_mask, h_prev, h_used):
    """Cache unit ``u`` of the state entering step ``t``, raw and dropped (all copies)."""
    n_units = h_prev.shape[2]
    h_prev[b, t, u] = value
    for k in range(rec_mask.shape[1] // n_units):
        j = k * n_units + u
        h_used[b, t, j] = value * rec_mask[b, j]


@cuda.jit(device=True)
def fold_state_grad(dh, dh_used, rec_mask, b, u):
    """``dh[b, u] += sum_k dh_used[b, kU+u] * rec_mask[b, kU+u]`` (in the CPU order)."""
    n_units = dh.shape[1]
    value = dh[b, u]
    for k in range(dh_used.shape[1] // n_units):
        j = k * n_units + u
        value += dh_used[b, j] * rec_mask[b, j]
    dh[b, u] = value


@cuda.jit(device=True)
def take_output_cotangent(d_out, carry, s, b, u):
    """Cotangent reaching the output of a kept step: its own plus the carried one."""
    value = d_out[b, s, u] + carry[b, u]
    carry[b, u] = 0.0
    return value


@cuda.jit(device=True)
def carry_output_cotangent(d_out, carry, s, b, u, zero_output_for_mask):
    """A masked step repeats the previous output: carry its cotangent back (or drop it)."""
    if zero_output_for_mask:
        carry[b, u] = 0.0
    else:
        carry[b, u] += d_out[b, s, u]


# -- small element-wise kernels ------------------------------------------------


@kernel("F2", "F2")
def copy_2d(dst, src):
    """``dst[:] = src`` (2-D, same shape)."""
    j, i = cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = src[i, j]


@kernel("F2", "F3A")
def copy_last_step(dst, sequence):
    """``dst[:] = sequence[:, -1]``."""
    j, i = cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = sequence[i, sequence.shape[1] - 1, j]


@kernel("F2A")
def zero_2d(dst):
    """``dst[:] = 0`` (2-D, any layout)."""
    j, i = cuda.grid(2)
    if i < dst.shape[0] and j < dst.shape[1]:
        dst[i, j] = 0.0


@kernel("i", "F2", "F2", "F3", "F3")
def save_step_states(t, h, rec_mask, h_prev, h_used):
    """Cache the state entering step ``t``: ``h_prev[:, t] = h``, ``h_used[:, t] = h * mask``."""
    u, b = cuda.grid(2)
    if b < h.shape[0] and u < h.shape[1]:
        save_state(t, b, u, h[b, u], rec_mask, h_prev, h_used)


@kernel("F2", "F2", "F2")
def add_state_grad(dh, dh_used, rec_mask):
    """``dh += fold(dh_used * rec_mask)`` over the per-gate copies of the state."""
    u, b = cuda.grid(2)
    if b < dh.shape[0] and u < dh.shape[1]:
        fold_state_grad(dh, dh_used, rec_mask, b, u)


def _column_sums_function(nb_type):
    def column_sums(a, out):
        j = cuda.grid(1)
        if j < out.shape[0]:
            total = nb_type(0.0)
            for i in range(a.shape[0]):
                total += a[i, j]
            out[j] = total

    return column_sums


@functools.cache
def column_sums_kernel(dtype):
    """``column_sums(a, out)``: ``out = a.sum(axis=0)``, rows summed in order (as on the CPU)."""
    return cuda.jit(cache=True)(_column_sums_function(numba.from_dtype(np.dtype(dtype))))


def _column_sums_entry(dtype):
    nb_type = numba.from_dtype(np.dtype(dtype))
    types = (numba.types.Array(nb_type, 2, "A"), numba.types.Array(nb_type, 1, "A"))
    return _column_sums_function(nb_type), types


KERNELS[f"{__name__}.column_sums"] = _column_sums_entry


def launch_2d(kern, n_rows, n_cols, *args):
    """Launch an element-wise kernel over ``(rows, cols)``; nothing when empty."""
    if n_rows == 0 or n_cols == 0:
        return
    grid, block = grid_2d(n_rows, n_cols)
    kern[grid, block](*args)


def copy(dst, src):
    """``dst[:] = src`` for 2-D device arrays."""
    launch_2d(copy_2d, dst.shape[0], dst.shape[1], dst, src)


def zero(dst):
    """``dst[:] = 0`` for a 2-D device array (views allowed)."""
    launch_2d(zero_2d, dst.shape[0], dst.shape[1], dst)


def zeros(shape, dtype):
    """A new 2-D device array of zeros (allocated and cleared on the device)."""
    array = cuda.device_array(shape, dtype=dtype)
    zero(array)
    return array


def sum_rows(a, out):
    """``out = a.sum(axis=0)`` for a 2-D device array ``a``."""
    if out.shape[0] == 0:
        return
    grid, block = grid_1d(out.shape[0])
    column_sums_kernel(np.dtype(out.dtype))[grid, block](a, out)


def weight_grads(x, kernel_, d_pre, d_x, d_kernel):
    """``d_x = d_pre @ kernel.T`` and ``d_kernel = x.T @ d_pre`` over all steps."""
    d_flat = flat(d_pre)
    matmul(d_flat, kernel_, flat(d_x), trans_b=True)
    matmul(flat(x), d_flat, d_kernel, trans_a=True)
