"""Elementwise maps over rows, written as explicit SIMD vector code.

A recurrent cell updates a few rows of ``U`` units at every step: one short
loop per sample over a dozen arrays. Compiled from plain loops, each such
loop pays LLVM's run-time checks that the arrays do not overlap, and its
remainder in scalar code; at small ``U`` that costs more than the
arithmetic. LSTM backward cells of 16 rows of 32 units, one thread of a Zen 4
host: 0.96 us a step as loops, 0.51 as vector code here (64 rows of 8
units: 2.7 and 1.07 us).

:func:`row_map` makes an intrinsic that runs a *body*, written over whole
vectors (:class:`Lanes`), along ``count`` elements of several rows at once:
every read row is loaded a vector at a time, the body computes the written
rows' vectors, and those are stored; the last, partial vector is read and
written under a lane mask. All of a vector's reads happen before its writes,
so a row may be read and written in place.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from numrnn.kernels import _math
from numrnn.kernels.cpu._packed import VECTOR_BYTES

# the rational tanh of ``_math.tanh_f32``: numerator and denominator
# coefficients in x^2, highest degree first
_TANH_P = (_math._TANH_P4, _math._TANH_P3, _math._TANH_P2, _math._TANH_P1, _math._F32_ONE)
_TANH_Q = (_math._TANH_Q4, _math._TANH_Q3, _math._TANH_Q2, _math._TANH_Q1, _math._F32_ONE)


class Lanes:
    """Vector arithmetic for the body of a :func:`row_map` (one IR builder,
    one vector type). Values are LLVM vectors; constants are splat."""

    def __init__(self, builder, vector):
        self.builder = builder
        self.vector = vector
        self._fma = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vector, [vector] * 3),
            f"llvm.fma.v{vector.count}{_type_suffix(vector.element)}",
        )

    def const(self, value):
        """``value`` in every lane."""
        return ir.Constant(self.vector, [float(value)] * self.vector.count)

    def add(self, a, b):
        return self.builder.fadd(a, b)

    def sub(self, a, b):
        return self.builder.fsub(a, b)

    def mul(self, a, b):
        return self.builder.fmul(a, b)

    def div(self, a, b):
        return self.builder.fdiv(a, b)

    def fma(self, a, b, c):
        """``a * b + c`` rounded once."""
        return self.builder.call(self._fma, [a, b, c])

    def clamp(self, x, limit):
        """``min(max(x, -limit), limit)`` for a positive constant ``limit``
        (a NaN lane becomes ``-limit``, as the scalar ``min``/``max`` do)."""
        low, high = self.const(-limit), self.const(limit)
        x = self.builder.select(self.builder.fcmp_ordered(">", x, low), x, low)
        return self.builder.select(self.builder.fcmp_ordered("<", x, high), x, high)

    def nan_from(self, result, source):
        """``result``, except NaN where ``source`` is NaN."""
        is_nan = self.builder.fcmp_unordered("uno", source, source)
        return self.builder.select(is_nan, source, result)

    def _polynomial(self, s, coefficients):
        value = self.const(coefficients[0])
        for c in coefficients[1:]:
            value = self.fma(value, s, self.const(c))
        return value

    def _tanh_clamped(self, x):
        s = self.mul(x, x)
        return self.div(self.mul(x, self._polynomial(s, _TANH_P)), self._polynomial(s, _TANH_Q))

    def tanh(self, v):
        """float32 ``tanh``: the rational approximation of ``_math.tanh_f32``."""
        self._float32_only()
        x = self.clamp(v, _math._TANH_CLAMP)
        return self.nan_from(self._tanh_clamped(x), v)

    def sigmoid(self, v):
        """float32 logistic sigmoid, as ``_math.sigmoid_f32``."""
        self._float32_only()
        half = self.const(_math._F32_HALF)
        x = self.clamp(self.mul(half, v), _math._TANH_CLAMP)
        return self.nan_from(self.fma(half, self._tanh_clamped(x), half), v)

    def _float32_only(self):
        # the approximation is fitted to float32 precision
        if not isinstance(self.vector.element, ir.FloatType):
            raise TypeError("the rational tanh and sigmoid are float32 only")


def _type_suffix(element):
    return "f32" if isinstance(element, ir.FloatType) else "f64"


def lanes_of(dtype):
    """Elements of ``dtype`` (a numba float type) in one vector."""
    return VECTOR_BYTES * 8 // dtype.bitwidth


def row_map(body, n_reads):
    """An intrinsic ``apply(count, rows, offsets)``.

    ``rows`` is a tuple of float arrays of one dtype and ``offsets`` a tuple
    of as many integers: row ``k`` is ``count`` contiguous elements from
    flat element ``offsets[k]`` of the data of ``rows[k]``. The first
    ``n_reads`` rows are read and the others written: ``body(lanes, reads)``
    gets the read vectors and returns the written ones, in order.

    Build the ``rows`` tuple once, outside a loop over samples, and vary the
    offsets: a tuple of a dozen arrays built at every sample went through the
    stack and cost the LSTM forward cells 8% of the kernel's time.
    """

    @intrinsic
    def apply(typingctx, count, rows, offsets):
        if not isinstance(rows, types.BaseTuple) or not isinstance(offsets, types.BaseTuple):
            return None
        dtypes = {row.dtype for row in rows.types}
        if len(dtypes) != 1 or len(offsets.types) != len(rows.types):
            return None
        signature = types.void(count, rows, offsets)

        def codegen(context, builder, sig, args):
            dtype = sig.args[1].types[0].dtype
            vector = ir.VectorType(context.get_value_type(dtype), lanes_of(dtype))
            index = ir.IntType(64)
            pointers = []
            for k, row_type in enumerate(sig.args[1].types):
                data = context.make_array(row_type)(
                    context, builder, builder.extract_value(args[1], k)
                ).data
                offset = context.cast(
                    builder, builder.extract_value(args[2], k), sig.args[2].types[k], types.intp
                )
                pointers.append(builder.gep(data, [offset]))
            n = context.cast(builder, args[0], sig.args[0], types.intp)
            lanes = ir.Constant(index, vector.count)
            full = builder.udiv(n, lanes)
            ops = Lanes(builder, vector)

            def at(pointer, start):
                return builder.bitcast(builder.gep(pointer, [start]), vector.as_pointer())

            with cgutils.for_range(builder, full) as loop:
                start = builder.mul(loop.index, lanes)
                reads = [builder.load(at(p, start), align=1) for p in pointers[:n_reads]]
                for p, value in zip(pointers[n_reads:], body(ops, reads)):
                    builder.store(value, at(p, start), align=1)

            start = builder.mul(full, lanes)
            left = builder.sub(n, start)
            with builder.if_then(builder.icmp_signed(">", left, ir.Constant(index, 0))):
                lane_index = ir.Constant(
                    ir.VectorType(index, vector.count), list(range(vector.count))
                )
                splat = builder.insert_element(
                    ir.Constant(ir.VectorType(index, vector.count), ir.Undefined), left,
                    ir.Constant(ir.IntType(32), 0),
                )  # fmt: skip
                splat = builder.shuffle_vector(
                    splat, splat, ir.Constant(ir.VectorType(ir.IntType(32), vector.count), None)
                )
                mask = builder.icmp_signed("<", lane_index, splat)
                suffix = f"v{vector.count}{_type_suffix(vector.element)}.p0"
                masked_load = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(
                        vector, [vector.as_pointer(), ir.IntType(32), mask.type, vector]
                    ),
                    f"llvm.masked.load.{suffix}",
                )
                masked_store = cgutils.get_or_insert_function(
                    builder.module,
                    ir.FunctionType(
                        ir.VoidType(), [vector, vector.as_pointer(), ir.IntType(32), mask.type]
                    ),
                    f"llvm.masked.store.{suffix}",
                )
                one = ir.Constant(ir.IntType(32), 1)
                zero = ops.const(0.0)
                reads = [
                    builder.call(masked_load, [at(p, start), one, mask, zero])
                    for p in pointers[:n_reads]
                ]
                for p, value in zip(pointers[n_reads:], body(ops, reads)):
                    builder.call(masked_store, [value, at(p, start), one, mask])
            return context.get_dummy_value()

        return signature, codegen

    return apply
