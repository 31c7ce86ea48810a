"""Shared pieces of the CPU recurrent kernels.

Conventions of every recurrent kernel in this package:

- Arrays are C-contiguous and share one float dtype per call.
- ``x`` is ``(B, T, F)`` in *input* order; per-step caches are ``(B, T, .)``
  indexed by input time ``t``, except the LSTM's, which are time-major
  ``(T, B, .)`` (see ``lstm``); the output sequence ``out`` is ``(B, T, U)`` in
  *processing* order (reversed when ``go_backwards``), as Keras returns it.
- ``mask`` is bool ``(B, T)`` in input order (all True when there is none).
  A masked step holds the states; its output repeats the previous output
  (zeros before the first kept step), or is zero when ``zero_output_for_mask``.
- ``rec_mask`` ``(B, W)`` multiplies ``h_{t-1}`` before the recurrent product
  (Keras recurrent dropout); it is all ones when dropout is off.
- Forward kernels write caches that the matching backward kernel reads; the
  input projection for all steps and the weight gradients are single GEMMs
  outside the time loop (the LSTM's, over time-major caches, when a call
  covers the whole batch; a row block does them step by step, and sums its
  weight gradients over groups of steps).

How the kernels are made fast (the docs' performance page has the numbers):

- Every matrix product goes straight to a CBLAS ``?gemm`` (NumPy's bundled
  OpenBLAS, or SciPy's BLAS; see ``_blas``). That allows strided operands,
  so the recurrent product of step ``t`` accumulates into
  ``gates[:, t, :]`` in place (``beta = 1``), with no copy and no
  temporary; and one compiled call site serves every GEMM, which keeps
  compilation short.
- Except the LSTM's per-step products on AVX-512 targets, where the widths
  allow: those run over the weights packed once per call (``_packed``),
  instead of a BLAS call that re-packs them at every step.
- The public kernels are thin Python functions over compiled ones (same
  names and arguments as before). The LSTM's pick a compiled variant:
  tanh/sigmoid cells (the default) get their own vectorised loops, other
  activations a generic one, so only the variant in use compiles; the
  GRU's and SimpleRNN's branch inside one compiled kernel.
- Gate loops run over 1-D contiguous rows (LLVM vectorises them); the
  tanh/sigmoid cell of one sample is a single loop with no calls. The
  LSTM's cells (backward; forward and outputs-only in float32) are explicit
  SIMD code instead (``_lanes``): at small U the overlap checks LLVM puts
  before each loop cost more than the arithmetic.
- float32 kernels use the rational ``tanh``/``sigmoid`` of
  ``numrnn.kernels._math`` (error below 4e-7); float64 kernels use libm.
  Generic activations compute each cell in the widest type, as before.
- ``lstm_infer`` serves LSTM calls that need outputs only (no backward pass
  follows): it writes no caches, which pays most at small sizes.
- ``*_step`` kernels serve stateful layers fed one step at a time: plain
  loops for the products (a BLAS call costs more than the arithmetic at
  batch 1), the sequence kernels' tanh/sigmoid cells, and no caches.
- The public wrappers may run a whole-sequence call as several calls on
  row blocks of the batch, one thread each (``_threads``); each block is a
  slice of every batch-major argument, so the compiled kernels do not know.
"""

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from numrnn.kernels import _math
from numrnn.kernels.cpu import _blas
from numrnn.kernels.cpu._packed import JIT, packed_product, packed_product_t

#: gate loops: also allow fused multiply-add (more accurate, never less)
JIT_FMA = {**JIT, "fastmath": {"contract"}}

TANH = _math.TANH
SIGMOID = _math.SIGMOID

activate = njit(inline="always", **JIT)(_math.activate)
activation_grad = njit(inline="always", **JIT)(_math.activation_grad)
_tanh_f32 = njit(inline="always", **JIT)(_math.tanh_f32)
_sigmoid_f32 = njit(inline="always", **JIT)(_math.sigmoid_f32)


# -- activations, typed: the fast approximation for float32 only ---------------


def tanh_t(v):
    """``tanh`` for the kernels: :func:`_math.tanh_f32` on float32, libm on float64."""
    return math.tanh(v)


def sigmoid_t(v):
    """Logistic sigmoid for the kernels: :func:`_math.sigmoid_f32` on float32."""
    return 1.0 / (1.0 + math.exp(-v))


@overload(tanh_t, jit_options=JIT)
def _tanh_t_impl(v):
    if v == types.float32:
        return lambda v: _tanh_f32(v)
    return lambda v: math.tanh(v)


@overload(sigmoid_t, jit_options=JIT)
def _sigmoid_t_impl(v):
    if v == types.float32:
        return lambda v: _sigmoid_f32(v)
    return lambda v: 1.0 / (1.0 + math.exp(-v))


def one_like(a):
    """``1`` in the dtype of array ``a`` (a float64 literal would promote float32 math)."""
    return 1.0


@overload(one_like, jit_options=JIT)
def _one_like_impl(a):
    if a.dtype == types.float32:
        return lambda a: np.float32(1.0)
    return lambda a: 1.0


@njit(inline="always", **JIT)
def act(code, v):
    """Activation ``code`` at ``v``: tanh and sigmoid through the typed versions."""
    if code == TANH:
        return tanh_t(v)
    if code == SIGMOID:
        return sigmoid_t(v)
    return activate(code, v)


@njit(**JIT_FMA)
def tanh_row(row, bias):
    """``row[j] = tanh(row[j] + bias[j])`` in place (1-D, same length)."""
    for j in range(row.shape[0]):
        row[j] = tanh_t(row[j] + bias[j])


@njit(**JIT_FMA)
def sigmoid_row(row, bias):
    """``row[j] = sigmoid(row[j] + bias[j])`` in place (1-D, same length)."""
    for j in range(row.shape[0]):
        row[j] = sigmoid_t(row[j] + bias[j])


@njit(**JIT_FMA)
def activate_row(row, bias, code):
    """``row[j] = activation(row[j] + bias[j])`` in place (1-D, same length)."""
    if code == TANH:
        for j in range(row.shape[0]):
            row[j] = tanh_t(row[j] + bias[j])
    elif code == SIGMOID:
        for j in range(row.shape[0]):
            row[j] = sigmoid_t(row[j] + bias[j])
    else:
        for j in range(row.shape[0]):
            row[j] = activate(code, row[j] + bias[j])


# -- BLAS -------------------------------------------------------------------------

# Every product calls the CBLAS ``?gemm`` that ``_blas`` binds for this
# process (NumPy's bundled OpenBLAS where there is one, else SciPy's BLAS).
# Pointer arguments are declared as integers (addresses), which the C calling
# conventions of every 64-bit platform pass the same way; so one compiled
# ``_gemm_call`` serves every layout and transposition, which keeps
# compilation short.
_SGEMM = types.ExternalFunction(_blas.SYMBOLS["float32"], _blas.gemm_signature(types.float32))
_DGEMM = types.ExternalFunction(_blas.SYMBOLS["float64"], _blas.gemm_signature(types.float64))


@njit(**JIT)
def _gemm_call(itemsize, trans_a, trans_b, m, n, k, a, lda, b, ldb, accumulate, c, ldc):
    # row-major c (m, n) = op(a) @ op(b) [+ c]
    t_a = _blas.TRANS if trans_a else _blas.NO_TRANS
    t_b = _blas.TRANS if trans_b else _blas.NO_TRANS
    beta = 1.0 if accumulate else 0.0
    if itemsize == 4:
        _SGEMM(_blas.ROW_MAJOR, t_a, t_b, m, n, k, np.float32(1.0), a, lda, b, ldb,
               np.float32(beta), c, ldc)  # fmt: skip
    else:
        _DGEMM(_blas.ROW_MAJOR, t_a, t_b, m, n, k, 1.0, a, lda, b, ldb, beta, c, ldc)


@njit(inline="always", **JIT)
def _leading_dim(a):
    # BLAS wants the row stride (in elements) of a row-major operand, and at
    # least the row length even where the stride is meaningless (one row).
    stride = a.strides[0] // a.itemsize
    return max(stride, a.shape[1], 1)


@njit(inline="always", **JIT)
def gemm(a, trans_a, b, trans_b, c, accumulate):
    """``c = op(a) @ op(b)``, or ``c += op(a) @ op(b)`` when ``accumulate``.

    2-D operands whose last axis is contiguous (any row stride: views such
    as ``gates[:, t, :]`` work without a copy); ``op`` transposes when the
    flag is set. One BLAS ``?gemm`` call, with the threads BLAS decides on.
    """
    n_rows, n_cols = c.shape
    depth = a.shape[0] if trans_a else a.shape[1]
    if n_rows > 0 and n_cols > 0:
        if depth == 0:
            if not accumulate:
                for i in range(n_rows):
                    for j in range(n_cols):
                        c[i, j] = 0.0
        else:
            # ``+ 0`` and ``!= 0``: plain (non-literal) integers, so that every
            # call site shares one compiled ``_gemm_call``
            _gemm_call(
                c.itemsize + 0, (trans_a + 0) != 0, (trans_b + 0) != 0,
                n_rows + 0, n_cols + 0, depth + 0,
                a.ctypes.data, _leading_dim(a), b.ctypes.data, _leading_dim(b),
                (accumulate + 0) != 0, c.ctypes.data, _leading_dim(c),
            )  # fmt: skip
    # the operands are used after the call, so they live until it returns
    return a.shape[0] + b.shape[0] + c.shape[0]


@njit(inline="always", **JIT)
def flat(a):
    """A C-contiguous ``(B, T, K)`` array as ``(B*T, K)`` (a view)."""
    return a.reshape((a.shape[0] * a.shape[1], a.shape[2]))


# -- small array helpers ------------------------------------------------------


@njit(inline="always", **JIT)
def row_at(a, b):
    """Flat element offset of row ``b`` of a 2-D array ``a`` from its data
    pointer (``_lanes.row_map`` offsets)."""
    return b * (a.strides[0] // a.itemsize)


def by_dtype(float32_version, other_version):
    """A function for compiled code that calls ``float32_version`` when its
    first argument is a float32 array and ``other_version`` otherwise (both
    compiled functions of the same arguments, returning nothing)."""

    def dispatch(*args):
        raise NotImplementedError("called from compiled code only")

    @overload(dispatch, jit_options=JIT)
    def _choose(*args):
        chosen = float32_version if args[0].dtype == types.float32 else other_version

        def call(*args):
            chosen(*args)

        return call

    return dispatch


@njit(**JIT)
def copy_into(dst, src):
    """``dst[:] = src`` for 1-D or 2-D arrays of the same shape."""
    if dst.ndim == 1:
        for i in range(dst.shape[0]):
            dst[i] = src[i]
    else:
        for i in range(dst.shape[0]):
            for j in range(dst.shape[1]):
                dst[i, j] = src[i, j]


@njit(**JIT)
def fill(dst, value):
    """``dst[:] = value`` for a 1-D array."""
    for i in range(dst.shape[0]):
        dst[i] = value


@njit(inline="always", **JIT)
def step_index(s, n_steps, go_backwards):
    """Input-time index of processing step ``s``."""
    return n_steps - 1 - s if go_backwards else s


@njit(inline="always", **JIT)
def same_buffer(a, b):
    """Whether two arrays start at the same address (``h_used`` aliasing ``h_prev``)."""
    return a.ctypes.data == b.ctypes.data


@njit(**JIT)
def is_plain_mask(rec_mask, n_units):
    """True when ``rec_mask`` is ``(B, n_units)`` and all ones (no recurrent dropout)."""
    if rec_mask.shape[1] != n_units:
        return False
    for b in range(rec_mask.shape[0]):
        row = rec_mask[b]
        for j in range(row.shape[0]):
            if row[j] != 1.0:
                return False
    return True


@njit(inline="always", **JIT)
def _stash_row(src, m, dst, used, dropped):
    # one sample of stash_states / stash_rows
    n_units = src.shape[0]
    for u in range(n_units):
        dst[u] = src[u]
    if dropped:
        for j in range(used.shape[0]):
            used[j] = src[j % n_units] * m[j]


@njit(**JIT)
def stash_states(h, rec_mask, h_prev, h_used, t, dropped):
    """Cache ``h_{t-1}`` raw in ``h_prev[:, t]``; when ``dropped`` (``h_used`` is
    its own buffer) also cache the recurrent GEMM operand ``h * rec_mask`` in
    ``h_used[:, t]``.

    ``rec_mask`` is ``(B, W)`` with ``W = k * U``: ``k = 1`` is one dropout
    mask for all gates, ``k = G`` one per gate (then the recurrent kernel is
    block-diagonal, ``(G*U, G*U)``).
    """
    for b in range(h.shape[0]):
        _stash_row(h[b], rec_mask[b], h_prev[b, t], h_used[b, t], dropped)


@njit(**JIT)
def stash_rows(h, rec_mask, h_prev_t, h_used_t, dropped):
    """:func:`stash_states` for time-major caches: ``h_prev_t`` and
    ``h_used_t`` are the ``(B, .)`` rows of one step."""
    for b in range(h.shape[0]):
        _stash_row(h[b], rec_mask[b], h_prev_t[b], h_used_t[b], dropped)


@njit(**JIT)
def emit_output(out, s, b, h_new, keep, zero_output_for_mask):
    """Write the output of processing step ``s`` for sample ``b``."""
    row = out[b, s]
    if keep:
        copy_into(row, h_new)
    elif zero_output_for_mask or s == 0:
        fill(row, 0.0)
    else:
        copy_into(row, out[b, s - 1])


@njit(**JIT_FMA)
def output_cotangent(d_out, carry, s, b, keep, zero_output_for_mask, dh_out):
    """Total cotangent reaching step ``s`` output of sample ``b``.

    For a kept step it is written into ``dh_out`` and the carry is cleared;
    for a masked step it is carried to the previous output (whose value the
    masked step repeated), unless masked outputs are zeros.
    """
    d_row = d_out[b, s]
    c_row = carry[b]
    if keep:
        for u in range(c_row.shape[0]):
            dh_out[u] = d_row[u] + c_row[u]
            c_row[u] = 0.0
    elif zero_output_for_mask:
        for u in range(c_row.shape[0]):
            c_row[u] = 0.0
    else:
        for u in range(c_row.shape[0]):
            c_row[u] += d_row[u]


def _product_over(packed):
    # product() over panels that `packed` runs
    @njit(inline="always", **JIT)
    def product(a, w, trans_w, panels, c, accumulate):
        """``c = a @ op(w)``, or ``+=`` when ``accumulate``: over ``panels``
        (``_packed.kernel_panels(w, trans_w)``) unless it is empty, else one
        BLAS call."""
        if panels.shape[0] == 0:
            gemm(a, False, w, trans_w, c, accumulate)
            return
        if not accumulate:
            c[:, :] = 0.0
        packed(a, panels, c)

    return product


product = _product_over(packed_product)
#: :func:`product` for the backward's state gradient: half panels too
_product_t = _product_over(packed_product_t)


@njit(**JIT)
def recurrent_state_grad(d_pre_t, recurrent_kernel, panels_t, rec_mask, plain, dh, dh_rec):
    """``dh += fold((d_pre_t @ recurrent_kernel.T) * rec_mask)``.

    ``panels_t`` is ``_packed.kernel_panels(recurrent_kernel, True)`` or
    ``_packed.no_panels``. Without recurrent dropout (``plain``) the product
    accumulates straight into ``dh``; otherwise it goes through ``dh_rec``
    ``(B, W)`` and the ``k`` per-gate copies of ``h`` fold back onto ``dh``.
    """
    if plain:
        _product_t(d_pre_t, recurrent_kernel, True, panels_t, dh, True)
        return
    _product_t(d_pre_t, recurrent_kernel, True, panels_t, dh_rec, False)
    n_units = dh.shape[1]
    for b in range(dh.shape[0]):
        dst = dh[b]
        src = dh_rec[b]
        m = rec_mask[b]
        for j in range(src.shape[0]):
            dst[j % n_units] += src[j] * m[j]


@njit(**JIT)
def project_inputs(x, kernel, gates):
    """``gates[b, t] = x[b, t] @ kernel`` for all steps: one GEMM."""
    gemm(flat(x), False, kernel, False, flat(gates), False)


@njit(**JIT)
def weight_grads(x, kernel, h_used, d_pre, d_rec_pre, d_x, d_kernel, d_recurrent_kernel):
    """The gradients that span the batch, one GEMM each: ``d_x = d_pre @ kernel.T``,
    ``d_kernel = x.T @ d_pre``, ``d_recurrent_kernel = h_used.T @ d_rec_pre``
    (``d_rec_pre`` is ``d_pre`` except for the GRU)."""
    d_flat = flat(d_pre)
    gemm(d_flat, False, kernel, True, flat(d_x), False)
    gemm(flat(x), True, d_flat, False, d_kernel, False)
    gemm(flat(h_used), True, flat(d_rec_pre), False, d_recurrent_kernel, False)


@njit(**JIT)
def time_major_copy(x):
    """``x`` (B, T, F) as a new time-major (T, B, F) array."""
    n_batch, n_steps, n_features = x.shape
    out = np.empty((n_steps, n_batch, n_features), dtype=x.dtype)
    for b in range(n_batch):
        for t in range(n_steps):
            copy_into(out[t, b], x[b, t])
    return out


@njit(inline="always", **JIT_FMA)
def add_row_sums(rows, out):
    """``out += rows.sum(axis=0)`` for a 2-D ``rows``, without a temporary."""
    for i in range(rows.shape[0]):
        row = rows[i]
        for j in range(row.shape[0]):
            out[j] += row[j]


@njit(**JIT_FMA)
def column_sums(d_pre, out):
    """``out = d_pre.sum(axis=(0, 1))`` without a temporary."""
    fill(out, 0.0)
    for b in range(d_pre.shape[0]):
        add_row_sums(d_pre[b], out)


@njit(**JIT_FMA)
def row_product(v, m, out, accumulate):
    """``out = v @ m`` (or ``+=``) for a 1-D ``v`` and a 2-D ``m`` with contiguous rows.

    Plain loops, vectorised over the columns: at streaming sizes (one sample,
    one step) a BLAS call costs more than the arithmetic.
    """
    if not accumulate:
        for j in range(out.shape[0]):
            out[j] = 0.0
    for k in range(v.shape[0]):
        a = v[k]
        row = m[k]
        for j in range(out.shape[0]):
            out[j] += a * row[j]


@njit(**JIT)
def all_finite(a):
    """Whether every element of the 2-D array ``a`` is finite."""
    for i in range(a.shape[0]):
        row = a[i]
        for j in range(row.shape[0]):
            v = row[j]
            if v - v != 0.0:  # NaN and +-inf
                return False
    return True
