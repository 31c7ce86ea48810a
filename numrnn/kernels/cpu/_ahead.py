"""Compiling a training step's two kernels in two processes at once.

On a cold numba cache, the first training step of a layer compiles two large
kernels: the forward one (which keeps the caches) and the backward one. numba
compiles one function at a time per process, under a global lock, so they
compile one after the other. The cells' forward wrappers, called with
``backward_follows=True`` (the layers pass it outside inference calls), call
:func:`compile_pair` first. When neither kernel is in the cache and a second
CPU is free, it starts a helper Python process that compiles the forward
kernel into numba's cache while this process compiles the backward one; it
then waits for the helper, and the forward call loads its kernel from the
cache. Where the calls run in row blocks on numba's threads (``_threads``),
each side then compiles its kernel's block wrapper (``_blocks.run_blocks``)
too, which keeps the two sides about as long as each other.

The forward kernel compiles sooner than the backward one (5.4 against 7.1 s
for the float32 tanh/sigmoid LSTM, each alone in a fresh process), so the
helper also takes kernels that a later call will need, given as ``also``:
for a stateful layer (``step_follows=True``), the single-step kernel of its
streaming inference calls (``RNNForecaster.predict``), which would
otherwise compile at the first prediction (0.9 s for that LSTM, once the
sequence kernels are compiled).

Nothing changes in the compiled code or the results. The helper starts only
when:

- ``NUMRNN_COMPILE_AHEAD`` is not ``0`` (or ``false``, ``no``, ``off``);
- numba can cache both kernels (else the helper's work would be lost), and
  neither is compiled in this process or found in the cache: with a warm cache
  nothing starts;
- the process may use at least 2 CPUs, and runs a normal Python interpreter
  (not a frozen application).

If the helper fails (it cannot start, crashes, or runs longer than
:data:`WAIT_S`), this process compiles the forward kernel itself, as it would
without the helper.
"""

import importlib
import os
import subprocess
import sys
import threading

from numba import types

from numrnn.kernels.cpu import _threads

#: the longest a forward call waits for its helper
WAIT_S = 300.0

_LOCK = threading.Lock()
_SEEN = set()

_SCALARS = {"b": types.boolean, "i": types.int64}


def signature(codes, dtype):
    """numba argument types from a code string, one code per argument: a digit
    ``n`` is an ``n``-D C-contiguous array of ``dtype``, ``m`` a 2-D bool
    array (the mask), ``b`` a bool and ``i`` an integer (as the kernel
    wrappers pass them)."""
    element = types.float32 if str(dtype) == "float32" else types.float64
    out = []
    for code in codes.split():
        if code.isdigit():
            out.append(types.Array(element, int(code), "C"))
        elif code == "m":
            out.append(types.Array(types.boolean, 2, "C"))
        else:
            out.append(_SCALARS[code])
    return tuple(out)


def _codes(sig, dtype):
    # the code string of a signature, or None when it has a type that
    # signature() does not make (another layout, a read-only array, ...)
    codes = " ".join(_code(t) or "?" for t in sig)
    return None if "?" in codes or signature(codes, dtype) != sig else codes


def _code(t):
    if isinstance(t, types.Array):
        return "m" if t.dtype == types.boolean else str(t.ndim)
    for code, scalar in _SCALARS.items():
        if t == scalar:
            return code
    return None


def enabled():
    """Whether a helper process may compile ahead (``NUMRNN_COMPILE_AHEAD``)."""
    value = os.environ.get("NUMRNN_COMPILE_AHEAD", "1").strip().lower()
    return value not in ("0", "false", "no", "off")


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cached(dispatcher, sig):
    """Whether numba's on-disk cache holds ``dispatcher``'s kernel for
    ``sig``; None when that cannot be told (caching off, or numba internals
    that changed: numba has no public call for this)."""
    try:
        cache = dispatcher._cache
        key = cache._index_key(sig, dispatcher.targetctx.codegen())
        return key in cache._cache_file._load_index()
    except Exception:
        return None


def _cold(dispatcher, sig):
    # compiled neither in this process nor in the (usable) cache
    return sig not in dispatcher.overloads and cached(dispatcher, sig) is False


def compile_pair(
    forward, forward_args, backward, backward_codes, dtype, split=None, also=()
):  # fmt: skip
    """Before a training forward call: compile ``forward`` (for the types of
    ``forward_args``) in a helper process and ``backward`` (for
    ``signature(backward_codes, dtype)``) here, at the same time, when both
    are cold (see the module's notes); else do nothing. Cheap after the first
    call for a pair and dtype.

    ``split``: the forward call's ``(sliced, cache, max_width)`` arguments of
    :func:`._threads.call_in_blocks`; where they make row blocks on numba's
    threads, each side compiles its kernel's block wrapper as well.

    ``also``: ``(dispatcher, codes)`` pairs of kernels in ``forward``'s
    module that the helper compiles after it, those of them that are cold.
    """
    key = (forward, backward, str(dtype))
    if key in _SEEN:
        return
    with _LOCK:
        if key in _SEEN:
            return
        _SEEN.add(key)
        if not enabled() or _usable_cpus() < 2 or getattr(sys, "frozen", False):
            return
        if not sys.executable or not hasattr(forward, "overloads"):
            return  # no interpreter to start, or numba's JIT is off (NUMBA_DISABLE_JIT)
        forward_sig = tuple(forward.typeof_pyval(a) for a in forward_args)
        forward_codes = _codes(forward_sig, dtype)
        backward_sig = signature(backward_codes, dtype)
        if forward_codes is None or not _cold(forward, forward_sig):
            return
        if not _cold(backward, backward_sig):
            return
        blocks = 1
        if split is not None and _threads.native_ready():
            blocks = _threads.planned_blocks(forward_args, *split)
        later = tuple(
            (kernel, codes) for kernel, codes in also if _cold(kernel, signature(codes, dtype))
        )
        helper = _spawn(forward, forward_codes, str(dtype), blocks, later)
        if helper is None:
            return
        try:
            backward.compile(backward_sig)
            _compile_wrapper(backward_sig, blocks)
            helper.wait(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            helper.kill()  # the forward kernel then compiles here
            helper.wait()
        except BaseException:  # an interrupt, or a compile error to report
            helper.kill()
            helper.wait()
            raise


def _spawn(kernel, codes, dtype, blocks=1, also=()):
    # a new interpreter that imports this numrnn (its directory first on the
    # path) and compiles into the same cache (the environment is inherited)
    package_root = os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    code = "import sys; from numrnn.kernels.cpu import _ahead; _ahead.compile_kernel(*sys.argv[1:])"
    module, name = kernel.py_func.__module__, kernel.py_func.__name__
    later = [f"{k.py_func.__name__}:{k_codes}" for k, k_codes in also]
    try:
        return subprocess.Popen(
            [sys.executable, "-c", code, module, name, codes, dtype, str(blocks), *later],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None


def compile_kernel(module, name, codes, dtype, blocks="1", *also):
    """The helper's work: compile ``module.name`` for ``signature(codes,
    dtype)``, and its block wrapper for ``blocks`` > 1, then each ``also``
    item ``"other_name:other_codes"`` of the same module; numba saves them to
    the cache."""
    kernels = importlib.import_module(module)
    sig = signature(codes, dtype)
    getattr(kernels, name).compile(sig)
    _compile_wrapper(sig, int(blocks))
    for item in also:
        other_name, other_codes = item.split(":", 1)
        getattr(kernels, other_name).compile(signature(other_codes, dtype))


def _compile_wrapper(sig, blocks):
    if blocks > 1 and _threads.native_ready():
        from numrnn.kernels.cpu import _blocks

        _blocks.compile_wrapper(sig, blocks)
