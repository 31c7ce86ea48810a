"""Row blocks of one kernel call on numba's own threads.

:func:`run_blocks` hands the blocks of a batch-parallel call
(:mod:`._threads`) to numba's threading layer (``numba_parallel_for``, the
entry that ``prange`` loops use), so that one call wakes the worker threads
in a few microseconds where a Python thread pool takes a hundred or more.

Each block calls the compiled kernel through its native address
(:func:`native_address`), not by name: numba would otherwise link a copy of
the kernel into every wrapper, and compiling a wrapper would cost as much as
compiling the kernel again. The wrapper is compiled once per kernel
signature and block count, and cached on disk.

Only numba's OpenMP layer runs here (it accepts calls from any thread), with
a bounded spin count (:func:`layer_ready`): OpenMP threads spin after each
call, and with GNU OpenMP's default count they held the cores for
milliseconds, which slowed every call 8-13x while another process also wanted
them.
"""

import os

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

#: the threading layer the blocks run on (numba's ``omp``: GNU OpenMP on Linux)
SAFE_LAYERS = ("omp",)
#: GNU OpenMP's spin count for numba's threads, unless the environment sets
#: ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``: its default (300000, about 8 ms
#: here) made each call take a time slice while another process held the
#: cores; this many spins (about 0.3 ms) still bridge the gap between the
#: kernel calls of a step
SPIN_COUNT = "10000"
_SPIN_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def _libgomp_loaded():
    # the GNU OpenMP that numba's layer links (libgomp.so.1), not the private
    # copies that wheels bundle under other names (scikit-learn's and
    # PyTorch's libgomp-<hash>.so): each copy reads its own settings.
    # None where the process's libraries cannot be listed (not Linux)
    try:
        with open("/proc/self/maps") as maps:
            return any(os.path.basename(line.split()[-1]).startswith("libgomp.so") for line in maps)
    except OSError:
        return None


def layer_ready():
    """Start numba's threading layer; True when it is one of :data:`SAFE_LAYERS`
    and its spin count is bounded: set by the environment, or set here to
    :data:`SPIN_COUNT` before GNU OpenMP loads. Decided once per process."""
    if _READY:
        return _READY[0]
    _READY.append(_start_layer())
    return _READY[0]


_READY = []


def _start_layer():
    from numba.np.ufunc import parallel

    chosen = any(name in os.environ for name in _SPIN_SETTINGS)
    if not chosen and (parallel._is_initialized or _libgomp_loaded() is not False):
        return False  # OpenMP is (or may be) loaded with its default spin count
    try:
        if not chosen:
            os.environ["GOMP_SPINCOUNT"] = SPIN_COUNT  # read once, as OpenMP loads
        parallel._launch_threads()
        return parallel.threading_layer() in SAFE_LAYERS
    except (ValueError, ImportError, OSError):
        return False
    finally:
        if not chosen:
            os.environ.pop("GOMP_SPINCOUNT", None)


def native_address(kernel, block):
    """Address of ``kernel``'s compiled code for arguments like ``block``, or
    0 where it has none (not a numba CPU function, or it returns a value)."""
    if not isinstance(kernel, CPUDispatcher):
        return 0
    signature = tuple(kernel.typeof_pyval(value) for value in block)
    kernel.compile(signature)
    compiled = kernel.overloads.get(signature)
    if compiled is None or compiled.signature.return_type != types.none:
        return 0
    return compiled.library.get_pointer_to_function(compiled.fndesc.llvm_func_name)


def _block_body(context, module, calls_type, data_type):
    """The function ``parallel_for`` runs for block ``r``: unpack the r-th
    argument tuple and call the kernel at the shared address; count a failure
    in the shared data."""
    intp_t = context.get_value_type(types.intp)
    byte_ptr_t = ir.IntType(8).as_pointer()
    intp_ptr_t = intp_t.as_pointer()
    body_type = ir.FunctionType(
        ir.VoidType(), [byte_ptr_t.as_pointer(), intp_ptr_t, intp_ptr_t, byte_ptr_t]
    )
    body = cgutils.get_or_insert_function(module, body_type, module.get_unique_name("numrnn_block"))
    body.linkage = "internal"
    builder = ir.IRBuilder(body.append_basic_block())
    args, _dims, _steps, data = body.args

    index = builder.load(builder.bitcast(builder.load(args), intp_t.as_pointer()))
    shared = builder.bitcast(data, data_type.as_pointer())
    address = builder.load(cgutils.gep_inbounds(builder, shared, 0, 0))
    failures = cgutils.gep_inbounds(builder, shared, 0, 1)
    block = builder.load(builder.gep(shared, [intp_t(0), ir.IntType(32)(2), index], inbounds=True))

    arg_types = tuple(calls_type.dtype)
    call_conv = context.call_conv
    kernel_type = call_conv.get_function_type(types.none, arg_types)
    kernel = builder.inttoptr(address, kernel_type.as_pointer())
    values = [builder.extract_value(block, i) for i in range(len(arg_types))]
    status, _ = call_conv.call_function(builder, kernel, types.none, arg_types, values)
    with builder.if_then(status.is_error, likely=False):
        builder.atomic_rmw("add", failures, intp_t(1), "monotonic")
    builder.ret_void()
    return body


@intrinsic
def _parallel_blocks(typingctx, address, calls, n_threads):
    if not (
        isinstance(address, types.Integer)
        and isinstance(n_threads, types.Integer)
        and isinstance(calls, types.UniTuple)
        and isinstance(calls.dtype, types.BaseTuple)
    ):
        return None

    def codegen(context, builder, signature, args):
        address_value, calls_value, threads_value = args
        address_value = context.cast(builder, address_value, signature.args[0], types.intp)
        threads_value = context.cast(builder, threads_value, signature.args[2], types.intp)
        intp_t = context.get_value_type(types.intp)
        byte_ptr_t = ir.IntType(8).as_pointer()
        data_type = ir.LiteralStructType([intp_t, intp_t, context.get_value_type(calls)])

        shared = cgutils.alloca_once(builder, data_type)
        builder.store(address_value, cgutils.gep_inbounds(builder, shared, 0, 0))
        builder.store(intp_t(0), cgutils.gep_inbounds(builder, shared, 0, 1))
        builder.store(calls_value, cgutils.gep_inbounds(builder, shared, 0, 2))

        # parallel_for hands iteration r a pointer to the r-th of these indices
        n_calls = calls.count
        indices = cgutils.alloca_once(builder, intp_t, size=n_calls)
        for r in range(n_calls):
            builder.store(intp_t(r), builder.gep(indices, [intp_t(r)]))
        index_args = cgutils.alloca_once(builder, byte_ptr_t)
        builder.store(builder.bitcast(indices, byte_ptr_t), index_args)
        dims = cgutils.alloca_once(builder, intp_t, size=2)
        builder.store(intp_t(n_calls), dims)
        builder.store(intp_t(1), builder.gep(dims, [intp_t(1)]))
        steps = cgutils.alloca_once(builder, intp_t)
        builder.store(intp_t(context.get_abi_sizeof(intp_t)), steps)

        body = _block_body(context, builder.module, calls, data_type)
        parallel_for = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VoidType(), [byte_ptr_t] * 5 + [intp_t] * 3),
            "numba_parallel_for",
        )
        builder.call(
            parallel_for,
            [builder.bitcast(v, byte_ptr_t) for v in (body, index_args, dims, steps, shared)]
            + [intp_t(1), intp_t(1), threads_value],
        )
        return builder.load(cgutils.gep_inbounds(builder, shared, 0, 1))

    return types.intp(address, calls, n_threads), codegen


def compile_wrapper(arg_types, n_blocks):
    """Compile the wrapper of :func:`run_blocks` for ``n_blocks`` calls of a kernel taking
    ``arg_types`` (as a call with those blocks would)."""
    block = types.BaseTuple.from_types(tuple(arg_types))
    _run_blocks.compile((types.intp, types.UniTuple(block, n_blocks), types.intp))


@njit(cache=True, nogil=True)
def _run_blocks(address, calls, n_threads):
    return _parallel_blocks(address, calls, n_threads)


def run_blocks(address, calls, n_threads):
    """Call the kernel at ``address`` once per argument tuple in ``calls``, on
    up to ``n_threads`` of numba's threads; return how many calls failed."""
    if not layer_ready():
        # numba_parallel_for is registered as the layer starts: without it the
        # compiled call would jump to a null address
        raise RuntimeError("numba's OpenMP threading layer is not available for row blocks")
    return _run_blocks(address, calls, n_threads)
