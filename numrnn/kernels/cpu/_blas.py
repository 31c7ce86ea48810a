"""Which BLAS library the CPU kernels' matrix products call.

The kernels call two symbols, ``numrnn_cblas_sgemm`` and
``numrnn_cblas_dgemm``, with the 64-bit-integer CBLAS signature::

    void gemm(int order, int trans_a, int trans_b, int64 m, int64 n, int64 k,
              T alpha, T *a, int64 lda, T *b, int64 ldb, T beta, T *c, int64 ldc)

This module binds them, once per process and before any kernel loads, to
one of two libraries (compiled kernels name the symbols, not an address,
so numba's on-disk cache stays valid whichever is bound):

- ``"numpy"``: the OpenBLAS that NumPy's wheels bundle (``scipy_openblas64``,
  0.3.31 with numpy 2.4). On the 2-core Zen 3 machine of the docs, one
  thread, whole LSTM layer steps ran 1.07-1.27x faster in training and
  0.94-1.34x in inference than with SciPy's bundled OpenBLAS (0.3.30); see
  the performance page.
- ``"scipy"``: SciPy's BLAS, through numba's own ``numba_xxgemm`` helper
  (what ``np.dot`` uses inside numba). Used when NumPy does not bundle
  ``scipy_openblas64`` (a conda or system NumPy, for example).

``NUMRNN_BLAS=scipy`` (set before numrnn is imported) forces the second.
Both run the BLAS's own kernel choice for the CPU; the thread limits of
``threadpoolctl`` and the ``*_NUM_THREADS`` variables apply to both.
"""

import ctypes
import functools
import glob
import os

import numpy as np
from llvmlite import binding
from numba import cfunc, types

ENVIRONMENT_VARIABLE = "NUMRNN_BLAS"
SYMBOLS = {"float32": "numrnn_cblas_sgemm", "float64": "numrnn_cblas_dgemm"}
_NUMPY_SYMBOLS = {"float32": "scipy_cblas_sgemm64_", "float64": "scipy_cblas_dgemm64_"}

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def gemm_signature(scalar):
    """The CBLAS ``?gemm`` signature (64-bit integers, pointers as addresses)."""
    return types.void(
        types.intc, types.intc, types.intc,  # order, trans_a, trans_b
        types.int64, types.int64, types.int64,  # m, n, k
        scalar, types.intp, types.int64,  # alpha, a, lda
        types.intp, types.int64,  # b, ldb
        scalar, types.intp, types.int64,  # beta, c, ldc
    )  # fmt: skip


# -- fallback: SciPy's BLAS through numba's helper ------------------------------------

_XXGEMM = types.ExternalFunction(
    "numba_xxgemm",
    types.intc(
        types.char, types.char, types.char,  # kind, transa, transb
        types.intp, types.intp, types.intp,  # m, n, k
        types.intp, types.intp, types.intp,  # alpha, a, lda
        types.intp, types.intp, types.intp,  # b, ldb, beta
        types.intp, types.intp,  # c, ldc
    ),
)  # fmt: skip


def _gemm_via_numba_helper(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    # row-major c (m, n) = op(a) @ op(b): column-major c.T = op(b).T @ op(a).T.
    # numba_xxgemm takes alpha and beta by address, in the operands' dtype.
    scalars = np.full(2, alpha)
    scalars[1] = beta
    kind = 115 if scalars.itemsize == 4 else 100  # "s" / "d"
    t_a = 84 if trans_a == TRANS else 78  # "T" / "N"
    t_b = 84 if trans_b == TRANS else 78
    address = scalars.ctypes.data
    _XXGEMM(kind, t_b, t_a, n, m, k, address, b, ldb, a, lda,
            address + scalars.itemsize, c, ldc)  # fmt: skip
    scalars[0] = scalars[1]  # keeps ``scalars`` alive past the call


@functools.cache
def _fallback(dtype):
    # cached: one cfunc per dtype, kept alive for as long as its address is bound
    scalar = types.float32 if dtype == "float32" else types.float64
    return cfunc(gemm_signature(scalar), cache=True, nogil=True)(_gemm_via_numba_helper)


# -- NumPy's bundled OpenBLAS ---------------------------------------------------------


def _numpy_openblas():
    """NumPy's bundled ``scipy_openblas64`` as a ctypes library, or None."""
    root = os.path.dirname(os.path.dirname(np.__file__))
    patterns = [
        os.path.join(root, "numpy.libs", "libscipy_openblas64_*"),  # Linux, Windows
        os.path.join(os.path.dirname(np.__file__), ".dylibs", "libscipy_openblas64_*"),  # macOS
    ]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            try:
                library = ctypes.CDLL(path)
            except OSError:
                continue
            if all(hasattr(library, name) for name in _NUMPY_SYMBOLS.values()):
                return library
    return None


def _bind():
    choice = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if choice not in ("", "numpy", "scipy"):
        raise ValueError(
            f"{ENVIRONMENT_VARIABLE}={choice!r} is not understood; expected 'numpy' or 'scipy'"
        )
    library = None if choice == "scipy" else _numpy_openblas()
    if library is not None:
        for dtype, symbol in SYMBOLS.items():
            function = getattr(library, _NUMPY_SYMBOLS[dtype])
            binding.add_symbol(symbol, ctypes.cast(function, ctypes.c_void_p).value)
        return "numpy"
    for dtype, symbol in SYMBOLS.items():
        binding.add_symbol(symbol, _fallback(dtype).address)
    return "scipy"


#: ``"numpy"`` or ``"scipy"``: the library the kernels' GEMMs call in this process
BACKEND = _bind()
