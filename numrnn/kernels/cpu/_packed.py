"""Products against weights packed once per kernel call.

A recurrent kernel multiplies a few batch rows by the same recurrent weights
at every step. A BLAS ``?gemm`` call re-packs those weights at every call;
here they are packed once per kernel call (:func:`pack_panels`) into column
panels, and each step runs :func:`packed_product`, a register-tiled product
over the panels: a tile of ``rows x PANEL`` outputs stays in SIMD registers
while it runs down a block of the panel's depth, which stays in L1.

The tiles are LLVM vector code written as numba intrinsics, with the vector
width of the CPU numba compiles for (the on-disk cache is per CPU): 64-byte
vectors and four per panel row where AVX-512 is there (24 accumulators of 32
registers), 32-byte vectors and two otherwise (12 of 16 with AVX2). The
kernels use them only with AVX-512 (:data:`ENABLED`); elsewhere they call
the BLAS as before.

Outputs that fill half panels only (32 float32 columns, not 64) get half
panels, for the backward's products with transposed weights
(:func:`packed_product_t`): the state gradient of 32 LSTM units. Its tiles
are a second set to compile, so the forward products keep full panels only.
One thread of a Zen 4 host, ``dh += d_gates @ R.T``: 16 rows of 32 units
1.18 us against the BLAS's 1.42; 16 rows of 96 units 10.4 against 28.8.

Measured against NumPy's OpenBLAS on one thread of an AVX-512 Ice Lake host
(the performance page has the whole-layer numbers): ``(32, 256) @ (256,
1024)`` 88-97 against 55-79 GFLOP/s, ``(16, 256) @ (256, 1024)`` 98-117
against 49-54.
"""

import numpy as np
from llvmlite import binding, ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic


def _vector_bytes():
    # the CPU numba compiles for: the host's, unless NUMBA_CPU_NAME or
    # NUMBA_CPU_FEATURES name another (a named CPU without features: no AVX-512)
    if config.CPU_FEATURES is not None:
        features = config.CPU_FEATURES
    elif config.CPU_NAME in (None, "host"):
        features = binding.get_host_cpu_features().flatten()
    else:
        features = ""
    return 64 if "+avx512f" in features.split(",") else 32


#: bytes of one SIMD vector of the tiles, and vectors per panel row
VECTOR_BYTES = _vector_bytes()
PANEL_VECTORS = 4 if VECTOR_BYTES == 64 else 2
#: whether the kernels use the panels: only where numba compiles for AVX-512,
#: the only code measured faster than the BLAS (the 32-byte tiles, compiled
#: for ``haswell`` on the same host, ran LSTM steps 1.2-1.4x slower)
ENABLED = VECTOR_BYTES == 64
#: numba options of the kernels (``_common.JIT``, which imports this module)
JIT = {"cache": True, "error_model": "numpy", "nogil": True}

#: shallowest product the kernels run over panels: input products of a few
#: features stay with the BLAS (with 8 features, LSTM steps at 16 and 32
#: units measured 0.88-0.98x with them over panels, one thread)
MIN_DEPTH = 16

#: depth of the panel blocks that one pass of the tiles reads (32 KiB in float32
#: with AVX-512: within L1)
DEPTH_BLOCK = 128


def _tile(n_rows, n_vectors):
    """An intrinsic ``tile(c, c_at, ldc, a, a_at, lda, panel, panel_at, depth)``:
    ``c[n_rows, P] += a[n_rows, depth] @ panel[depth, P]``, ``P`` = ``n_vectors``
    SIMD vectors, with the
    operands' first elements at the flat offsets ``*_at`` of their arrays'
    data and rows ``ld*`` elements apart (the panel's rows are contiguous)."""

    @intrinsic
    def tile(typingctx, c, c_at, ldc, a, a_at, lda, panel, panel_at, depth):
        signature = types.void(c, c_at, ldc, a, a_at, lda, panel, panel_at, depth)

        def codegen(context, builder, sig, args):
            arrays = {}
            for name, position in (("c", 0), ("a", 3), ("panel", 6)):
                arrays[name] = context.make_array(sig.args[position])(
                    context, builder, args[position]
                ).data
            ints = [
                context.cast(builder, args[i], sig.args[i], types.intp) for i in (1, 2, 4, 5, 7, 8)
            ]
            c_at, ldc, a_at, lda, panel_at, depth = ints
            scalar = context.get_value_type(sig.args[0].dtype)
            lanes = VECTOR_BYTES * 8 // sig.args[0].dtype.bitwidth
            vector = ir.VectorType(scalar, lanes)
            vector_ptr = vector.as_pointer()
            index = ir.IntType(64)

            def const(value):
                return ir.Constant(index, value)

            def vector_at(data, offset):
                return builder.bitcast(builder.gep(data, [offset]), vector_ptr)

            fma = cgutils.get_or_insert_function(
                builder.module,
                ir.FunctionType(vector, [vector] * 3),
                f"llvm.fma.v{lanes}f{sig.args[0].dtype.bitwidth}",
            )
            # the output tile: loaded into accumulators (promoted to registers)
            outputs, accumulators = [], []
            for r in range(n_rows):
                row = builder.add(c_at, builder.mul(ldc, const(r)))
                for v in range(n_vectors):
                    pointer = vector_at(arrays["c"], builder.add(row, const(v * lanes)))
                    slot = cgutils.alloca_once(builder, vector)
                    builder.store(builder.load(pointer, align=1), slot)
                    outputs.append(pointer)
                    accumulators.append(slot)
            a_rows = [builder.add(a_at, builder.mul(lda, const(r))) for r in range(n_rows)]
            splat_mask = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            undefined = ir.Constant(vector, ir.Undefined)
            with cgutils.for_range(builder, depth) as loop:
                k = loop.index
                base = builder.add(panel_at, builder.mul(k, const(n_vectors * lanes)))
                weights = [
                    builder.load(vector_at(arrays["panel"], builder.add(base, const(v * lanes))),
                                 align=1)
                    for v in range(n_vectors)
                ]  # fmt: skip
                for r in range(n_rows):
                    value = builder.load(builder.gep(arrays["a"], [builder.add(a_rows[r], k)]))
                    value = builder.insert_element(undefined, value, ir.Constant(ir.IntType(32), 0))
                    value = builder.shuffle_vector(value, undefined, splat_mask)
                    for v in range(n_vectors):
                        slot = accumulators[r * n_vectors + v]
                        builder.store(builder.call(fma, [value, weights[v], builder.load(slot)]),
                                      slot)  # fmt: skip
            for pointer, slot in zip(outputs, accumulators):
                builder.store(builder.load(slot), pointer, align=1)
            return context.get_dummy_value()

        return signature, codegen

    return tile


@njit(inline="always", **JIT)
def panel_width(dtype_size):
    """Columns per (full) panel for elements of ``dtype_size`` bytes."""
    return PANEL_VECTORS * VECTOR_BYTES // dtype_size


@njit(inline="always", **JIT)
def _width_for(n_cols, dtype_size):
    # the panel width for n_cols output columns: full panels where they fill
    # them, else half panels (e.g. the backward product of 32 float32 units),
    # else 0 (the BLAS)
    full = panel_width(dtype_size)
    if n_cols % full == 0:
        return full
    if n_cols % (full // 2) == 0:
        return full // 2
    return 0


def fits(n_cols, dtype, half=False):
    """Whether ``n_cols`` output columns of ``dtype`` fill whole panels (or,
    with ``half``, at least whole half panels)."""
    # plain Python (no compiled call): the layers ask before each kernel call
    full = PANEL_VECTORS * VECTOR_BYTES // np.dtype(dtype).itemsize
    return n_cols > 0 and n_cols % (full // 2 if half else full) == 0


def used(n_cols, dtype, transposed=False):
    """Whether the kernels run a product with ``n_cols`` output columns of
    ``dtype`` over panels (:func:`kernel_panels` is not empty); half panels
    serve the products with transposed weights (the backward's)."""
    return ENABLED and fits(n_cols, dtype, half=transposed)


@njit(inline="always", **JIT)
def no_panels(like):
    """The empty panel set ("use the BLAS") for weights like ``like``."""
    return np.empty((0, 0, panel_width(like.itemsize)), dtype=like.dtype)


@njit(**JIT)
def pack_panels(w, transposed):
    """``w`` (K, N), or ``w.T`` when ``transposed`` (``w`` then (N, K)), as
    column panels ``(N / P, K, P)``: ``P`` = :func:`panel_width`, or half of
    it where ``N`` fills half panels only; a ``(0, 0, P)`` array when ``N``
    fills neither or the product is empty (the caller then uses the BLAS).
    Reads ``w`` row by row."""
    depth, n_cols = (w.shape[1], w.shape[0]) if transposed else w.shape
    width = _width_for(n_cols, w.itemsize)
    if depth == 0 or n_cols == 0 or width == 0:
        return no_panels(w)
    packed = np.empty((n_cols // width, depth, width), dtype=w.dtype)
    flat = packed.reshape(packed.size)
    if transposed:
        for p in range(n_cols // width):
            for k in range(depth):
                at = (p * depth + k) * width
                for j in range(width):
                    flat[at + j] = w[p * width + j, k]
    else:
        for k in range(depth):
            row = w[k]
            for p in range(n_cols // width):
                at = (p * depth + k) * width
                for j in range(width):
                    flat[at + j] = row[p * width + j]
    return packed


@njit(**JIT)
def kernel_panels(w, transposed):
    """:func:`pack_panels` where the kernels use panels (:data:`ENABLED`, and
    at least :data:`MIN_DEPTH` deep), else the empty set (the BLAS). Half
    panels only for transposed weights: :func:`packed_product` (the forward
    products) compiles full panels only, :func:`packed_product_t` both."""
    depth, n_cols = (w.shape[1], w.shape[0]) if transposed else w.shape
    if not ENABLED or depth < MIN_DEPTH:
        return no_panels(w)
    if not transposed and n_cols % panel_width(w.itemsize) != 0:
        return no_panels(w)
    return pack_panels(w, transposed)


def _row_tiles(tile6, tile4, tile2, tile1):
    # one panel's depth block for every row: 6-row tiles, then one tile for
    # each of 4, 2 and 1 rows left
    @njit(inline="always", **JIT)
    def rows(c, c_at, ldc, a, a_at, lda, packed, panel_at, span):
        n_rows = a.shape[0]
        i = 0
        while i + 6 <= n_rows:
            tile6(c, c_at + i * ldc, ldc, a, a_at + i * lda, lda, packed, panel_at, span)
            i += 6
        if n_rows - i >= 4:
            tile4(c, c_at + i * ldc, ldc, a, a_at + i * lda, lda, packed, panel_at, span)
            i += 4
        if n_rows - i >= 2:
            tile2(c, c_at + i * ldc, ldc, a, a_at + i * lda, lda, packed, panel_at, span)
            i += 2
        if n_rows - i >= 1:
            tile1(c, c_at + i * ldc, ldc, a, a_at + i * lda, lda, packed, panel_at, span)

    return rows


def _panel_loop(rows):
    # c += a @ w over every panel and depth block of packed, each block's
    # rows by `rows`
    @njit(inline="always", **JIT)
    def loop(a, packed, c):
        depth = a.shape[1]
        n_panels, _, width = packed.shape
        lda = a.strides[0] // a.itemsize
        ldc = c.strides[0] // c.itemsize
        for p in range(n_panels):
            for k0 in range(0, depth, DEPTH_BLOCK):
                span = min(DEPTH_BLOCK, depth - k0)
                rows(c, p * width, ldc, a, k0, lda, packed, (p * depth + k0) * width, span)

    return loop


_full_panels = _panel_loop(_row_tiles(*(_tile(rows, PANEL_VECTORS) for rows in (6, 4, 2, 1))))
_half_panels = _panel_loop(_row_tiles(*(_tile(rows, PANEL_VECTORS // 2) for rows in (6, 4, 2, 1))))


@njit(**JIT)
def packed_product(a, packed, c):
    """``c += a @ w`` for ``packed = pack_panels(w)`` of full panels (not empty).

    ``a`` (M, K) and ``c`` (M, N): any row stride, contiguous rows.
    """
    _full_panels(a, packed, c)
    # the operands are used after the tiles, so they live until they return
    return a.shape[0] + packed.shape[0] + c.shape[0]


@njit(**JIT)
def packed_product_t(a, packed, c):
    """:func:`packed_product` over full or half panels (the backward's
    products with transposed weights: a second set of tiles to compile)."""
    if packed.shape[2] == panel_width(packed.itemsize):
        _full_panels(a, packed, c)
    else:
        _half_panels(a, packed, c)
    # as in packed_product: the operands live until the tiles return
    return a.shape[0] + packed.shape[0] + c.shape[0]
