"""Compiling a training step's two kernels in two processes (numrnn.kernels.cpu._ahead).

The helper must compile exactly the signature the layer then calls (else the
parallel work is wasted), must start only when both kernels are cold, and
must never change a result or fail a call.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit, types

from numrnn import Sequential, layers
from numrnn.kernels.cpu import _ahead, gru, lstm, simple_rnn


def _lstm_step(dtype, seed=0, **options):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, 4, 3)).astype(dtype)
    layer = layers.LSTM(6, return_sequences=True, seed=1, dtype=dtype, **options)
    out = layer(x)
    mask = np.ones((5, 4), dtype=bool)
    mask[1, 2:] = False
    cot = [rng.normal(size=out.shape).astype(dtype)]
    grads = layer.vjp(x, cot, mask=mask, training=True)
    return np.asarray(out), grads


def test_signature_codes():
    sig = _ahead.signature("3 2 m 1 b i", "float32")
    assert sig == (
        types.Array(types.float32, 3, "C"),
        types.Array(types.float32, 2, "C"),
        types.Array(types.boolean, 2, "C"),
        types.Array(types.float32, 1, "C"),
        types.boolean,
        types.int64,
    )
    assert _ahead.signature("2", "float64") == (types.Array(types.float64, 2, "C"),)
    assert _ahead._codes(sig, "float32") == "3 2 m 1 b i"
    # types the code strings do not make: no helper for such a call
    assert _ahead._codes((types.Array(types.float32, 2, "A"),), "float32") is None
    assert _ahead._codes((types.Array(types.float32, 2, "C", readonly=True),), "float32") is None
    assert _ahead._codes((types.Array(types.float64, 2, "C"),), "float32") is None
    assert _ahead._codes((types.float64,), "float32") is None


def _training_step(name, dtype, seed=0, **options):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(5, 4, 3)).astype(dtype)
    layer = getattr(layers, name)(6, return_sequences=True, seed=1, dtype=dtype, **options)
    mask = np.ones((5, 4), dtype=bool)
    mask[1, 2:] = False
    cot = [rng.normal(size=(5, 4, 6)).astype(dtype)]
    return layer, layer.vjp(x, cot, mask=mask, training=True)


BACKWARDS = [
    ("LSTM", {}, lambda: (lstm._backward_fast, lstm._BACKWARD_TYPES)),
    ("LSTM", {"go_backwards": True, "recurrent_dropout": 0.3},
     lambda: (lstm._backward_fast, lstm._BACKWARD_TYPES)),
    ("LSTM", {"activation": "relu"},
     lambda: (lstm._backward_generic, lstm._BACKWARD_TYPES_GENERIC)),
    ("GRU", {}, lambda: (gru._backward_loop_ra, gru._BACKWARD_TYPES_RA)),
    ("GRU", {"reset_after": False, "recurrent_dropout": 0.3},
     lambda: (gru._backward_loop_rb, gru._BACKWARD_TYPES_RB)),
    ("SimpleRNN", {"activation": "relu"},
     lambda: (simple_rnn._backward_loop, simple_rnn._BACKWARD_TYPES)),
]  # fmt: skip


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "options", "backward"), BACKWARDS)
def test_backward_types_are_the_ones_the_layer_calls(dtype, name, options, backward):
    """The backward signature compiled next to the forward one is the one a
    training step then calls (a mismatch would compile a kernel never used)."""
    _training_step(name, dtype, **options)
    kernel, codes = backward()
    assert _ahead.signature(codes, dtype) in kernel.signatures


STEPS = [
    ("LSTM", {}, lambda: (lstm._lstm_step_fast, lstm._STEP_TYPES)),
    ("LSTM", {"activation": "relu"}, lambda: (lstm._lstm_step, lstm._STEP_TYPES_GENERIC)),
    ("GRU", {}, lambda: (gru._gru_step_fast, gru._STEP_TYPES_FAST)),
    ("GRU", {"recurrent_activation": "hard_sigmoid"},
     lambda: (gru._gru_step, gru._STEP_TYPES_RA)),
    ("GRU", {"reset_after": False}, lambda: (gru._gru_step_reset_before, gru._STEP_TYPES_RB)),
    ("SimpleRNN", {}, lambda: (simple_rnn._simple_rnn_step, simple_rnn._STEP_TYPES)),
]  # fmt: skip


def _stream_after_training(name, dtype, **options):
    # a stateful layer's training step (it leaves states for batch 2), then a
    # streaming step, which takes the single-step kernel
    rng = np.random.default_rng(0)
    layer = getattr(layers, name)(6, stateful=True, seed=1, dtype=dtype, **options)
    x = rng.normal(size=(2, 4, 3)).astype(dtype)
    layer.vjp(x, [rng.normal(size=(2, 6)).astype(dtype)], training=True)
    return layer(x[:, :1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("name", "options", "step"), STEPS)
def test_step_types_are_the_ones_a_stream_calls(monkeypatch, dtype, name, options, step):
    """The single-step signature the helper compiles for a stateful layer is
    the one its streaming calls then use, and a training step asks for that
    kernel (and only it)."""
    asked = []
    monkeypatch.setattr(_ahead, "compile_pair", lambda *args, also=(), **kw: asked.append(also))
    _stream_after_training(name, dtype, **options)
    kernel, codes = step()
    assert asked == [((kernel, codes),)]
    assert _ahead.signature(codes, dtype) in kernel.signatures


def test_cached_is_none_without_a_cache():
    @njit
    def uncached(a):
        return a + 1

    uncached(1)
    assert _ahead.cached(uncached, (types.int64,)) is None


def _all_cold(monkeypatch, spawn):
    # compile_pair's first-call state cleared, both kernels reported cold,
    # two CPUs, and spawn(kernel, codes, dtype) in place of the helper start
    monkeypatch.setattr(_ahead, "_SEEN", set())
    monkeypatch.setattr(_ahead, "_cold", lambda dispatcher, sig: True)
    monkeypatch.setattr(_ahead, "_usable_cpus", lambda: 2)
    monkeypatch.delenv("NUMRNN_COMPILE_AHEAD", raising=False)
    monkeypatch.setattr(_ahead, "_spawn", spawn)


@pytest.fixture
def fresh(monkeypatch):
    """All cold, and each helper start recorded (as if it could not start)."""
    started = []
    _all_cold(
        monkeypatch,
        lambda kernel, codes, dtype, *rest: started.append((kernel, codes, dtype, *rest)),
    )
    return started


def _forward_args(dtype):
    b, t, f, u = 2, 3, 2, 4
    zeros = lambda *shape: np.zeros(shape, dtype=dtype)  # noqa: E731
    return (
        zeros(b, t, f), zeros(f, 4 * u), zeros(t, b, 4 * u), np.ones((b, t), dtype=bool),
        zeros(b, u), zeros(b, u), zeros(b, u), zeros(b, t, u), zeros(t, b, u), zeros(t, b, u),
        zeros(t, b, u), zeros(t, b, u), zeros(b, u), zeros(b, u), zeros(u, 4 * u), zeros(4 * u),
        False, False, 0, b,
    )  # fmt: skip


def _pair(dtype="float32", args=None):
    _ahead.compile_pair(
        lstm._forward_fast, args or _forward_args(dtype), lstm._backward_fast,
        lstm._BACKWARD_TYPES, np.dtype(dtype),
    )  # fmt: skip


def test_helper_gets_the_forward_signature_once(fresh):
    _pair()
    _pair()
    assert len(fresh) == 1
    kernel, codes, dtype, blocks, also = fresh[0]
    assert kernel is lstm._forward_fast and dtype == "float32" and blocks == 1 and also == ()
    assert codes == "3 2 3 m 2 2 2 3 3 3 3 3 2 2 2 1 b b i i"
    _pair("float64")
    assert len(fresh) == 2 and fresh[1][2] == "float64"


@pytest.mark.parametrize("value", ["0", "false", "Off", "no"])
def test_switched_off(fresh, monkeypatch, value):
    monkeypatch.setenv("NUMRNN_COMPILE_AHEAD", value)
    _pair()
    assert fresh == []


def test_no_helper_on_one_cpu(fresh, monkeypatch):
    monkeypatch.setattr(_ahead, "_usable_cpus", lambda: 1)
    _pair()
    assert fresh == []


def test_no_helper_when_a_kernel_is_warm(fresh, monkeypatch):
    monkeypatch.setattr(_ahead, "_cold", lambda dispatcher, sig: dispatcher is lstm._forward_fast)
    _pair()
    monkeypatch.setattr(_ahead, "_SEEN", set())
    monkeypatch.setattr(_ahead, "_cold", lambda dispatcher, sig: dispatcher is lstm._backward_fast)
    _pair()
    assert fresh == []


def test_no_helper_for_arguments_it_cannot_name(fresh):
    args = list(_forward_args("float32"))
    args[0] = np.asfortranarray(np.zeros((2, 3, 2), dtype="float32"))
    _pair(args=tuple(args))
    assert fresh == []


def test_a_failed_helper_changes_nothing(monkeypatch):
    """A helper that dies leaves this process to compile (or load) the forward
    kernel itself; the step's numbers are the same."""
    expected_out, expected_grads = _lstm_step("float64", seed=4)
    crashes = []

    def crashing(kernel, codes, dtype, *blocks):
        crashes.append(kernel)
        return subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])

    _all_cold(monkeypatch, crashing)
    out, grads = _lstm_step("float64", seed=4)
    assert crashes == [lstm._forward_fast]
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(grads[1], expected_grads[1])
    for got, want in zip(grads[0], expected_grads[0]):
        np.testing.assert_array_equal(got, want)


_COLD_CHILD = """
import json, subprocess, sys
import numpy as np
from numrnn import Sequential, layers
from numrnn.kernels.cpu import _ahead, _blocks, _threads, gru, lstm, simple_rnn
if "--split" in sys.argv:  # 2 row blocks of the 5 rows
    _threads.MIN_ROWS, _threads.MIN_WORK = 2, 0
    _threads._thread_budget = lambda: 2
helpers = []
real_popen = subprocess.Popen
class Recording(real_popen):
    def __init__(self, args, **kwargs):
        super().__init__(args, **kwargs)
        helpers.append(args)
    def wait(self, timeout=None):
        code = super().wait(timeout)
        helpers.append(code)
        return code
_ahead.subprocess.Popen = Recording
rng = np.random.default_rng(0)
x = rng.normal(size=(5, 4, 3)).astype("float32")
layer = layers.LSTM(6, return_sequences=True, seed=1, stateful="--stateful" in sys.argv)
cot = [rng.normal(size=(5, 4, 6)).astype("float32")]
grads = layer.vjp(x, cot, training=True)
forward_loaded = [s for s in lstm._forward_fast.signatures]
if layer.stateful:  # a stream of one step: the single-step kernel
    layer(x[:, :1])
print(json.dumps({
    "helpers": [h if isinstance(h, int) else h[3:] for h in helpers],
    "wrapper_hits": sum(_blocks._run_blocks.stats.cache_hits.values()),
    "wrapper_misses": sum(_blocks._run_blocks.stats.cache_misses.values()),
    "wrappers": len(_blocks._run_blocks.signatures),
    "forward_cached": [_ahead.cached(lstm._forward_fast, s) for s in forward_loaded],
    "forward_hits": sum(lstm._forward_fast.stats.cache_hits.values()),
    "forward_misses": sum(lstm._forward_fast.stats.cache_misses.values()),
    "step_hits": sum(lstm._lstm_step_fast.stats.cache_hits.values()),
    "step_misses": sum(lstm._lstm_step_fast.stats.cache_misses.values()),
    "backward_cached": _ahead.cached(
        lstm._backward_fast, _ahead.signature(lstm._BACKWARD_TYPES, "float32")),
    "grads": [np.asarray(g).ravel().tolist() for g in list(grads[0]) + [grads[1]]],
}))
"""


def _child_grads_here():
    # the gradients the child's training step gives, computed in this process
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 4, 3)).astype("float32")
    layer = layers.LSTM(6, return_sequences=True, seed=1)
    cot = [rng.normal(size=(5, 4, 6)).astype("float32")]
    grads = layer.vjp(x, cot, training=True)
    return list(grads[0]) + [grads[1]]


def _cold_child(cache_dir, *options, **env):
    run = subprocess.run(
        [sys.executable, "-c", _COLD_CHILD, *options],
        env={**os.environ, "NUMBA_CACHE_DIR": str(cache_dir), **env},
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the helper needs 2 CPUs")
def test_cold_cache_compiles_in_a_helper_then_nothing_starts(tmp_path):
    """A real cold start: one helper compiles the forward kernel into the
    cache (exit code 0) while the process compiles the backward one; a second
    process with that cache starts none; both give the in-process numbers."""
    cold = _cold_child(tmp_path, NUMRNN_COMPILE_AHEAD="1")
    assert cold["helpers"] == [
        ["numrnn.kernels.cpu.lstm", "_forward_fast", "3 2 3 m 2 2 2 3 3 3 3 3 2 2 2 1 b b i i",
         "float32", "1"],
        0,
    ]  # fmt: skip
    assert cold["forward_cached"] == [True]
    # this process loaded the forward kernel that the helper compiled
    assert (cold["forward_hits"], cold["forward_misses"]) == (1, 0)
    assert cold["backward_cached"] is True
    warm = _cold_child(tmp_path, NUMRNN_COMPILE_AHEAD="1")
    assert warm["helpers"] == []
    assert (warm["forward_hits"], warm["forward_misses"]) == (1, 0)
    wanted = _child_grads_here()
    assert len(cold["grads"]) == len(wanted) == 4
    for got_cold, got_warm, want in zip(cold["grads"], warm["grads"], wanted):
        np.testing.assert_array_equal(np.asarray(got_cold), np.ravel(want))
        np.testing.assert_array_equal(np.asarray(got_warm), np.ravel(want))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the helper needs 2 CPUs")
def test_both_sides_compile_their_block_wrappers_of_a_split_step(tmp_path):
    """Where the step runs in row blocks on numba's threads, the helper also
    compiles the forward kernel's block wrapper (this process loads it) and
    this process the backward one's."""
    from numrnn.kernels.cpu import _blocks

    if not _blocks.layer_ready():
        pytest.skip(f"numba's threading layer is not one of {_blocks.SAFE_LAYERS}")
    cold = _cold_child(tmp_path, "--split", NUMRNN_COMPILE_AHEAD="1")
    assert cold["helpers"][0][-1] == "2"
    assert cold["helpers"][1] == 0
    assert (cold["forward_hits"], cold["forward_misses"]) == (1, 0)
    assert (cold["wrapper_hits"], cold["wrapper_misses"]) == (1, 1)
    assert cold["wrappers"] == 2, "the forward and the backward call ran on numba's threads"
    serial = _cold_child(tmp_path, NUMRNN_COMPILE_AHEAD="1")
    for split, whole in zip(cold["grads"], serial["grads"], strict=True):
        np.testing.assert_allclose(split, whole, rtol=2e-5, atol=1e-6)


def test_a_slow_helper_is_stopped(monkeypatch):
    """A helper past WAIT_S is killed, and the call goes on."""
    expected_out, expected_grads = _lstm_step("float64", seed=5)
    helpers = []

    def sleeping(kernel, codes, dtype, *blocks):
        helpers.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]))
        return helpers[-1]

    _all_cold(monkeypatch, sleeping)
    monkeypatch.setattr(_ahead, "WAIT_S", 0.05)
    out, grads = _lstm_step("float64", seed=5)
    assert len(helpers) == 1 and helpers[0].returncode is not None
    np.testing.assert_array_equal(out, expected_out)
    np.testing.assert_array_equal(grads[1], expected_grads[1])


def test_no_helper_without_numba_jit(fresh):
    """With NUMBA_DISABLE_JIT the kernels are plain functions: nothing starts."""
    _ahead.compile_pair(
        lstm._forward_fast.py_func, _forward_args("float32"), lstm._backward_fast.py_func,
        lstm._BACKWARD_TYPES, np.dtype("float32"),
    )  # fmt: skip
    assert fresh == []


@pytest.mark.parametrize(
    ("name", "options"), [("LSTM", {}), ("LSTM", {"activation": "relu"}), ("GRU", {}),
                          ("GRU", {"reset_after": False}), ("SimpleRNN", {})],
)  # fmt: skip
def test_only_training_steps_start_a_helper(fresh, name, options):
    """Inference calls (their forward kernels run without a backward call
    after them) start nothing; a training step starts one helper."""
    x = np.random.default_rng(0).normal(size=(5, 4, 3)).astype("float32")
    layer = getattr(layers, name)(6, return_sequences=True, seed=1, **options)
    layer(x)
    layer(x, training=True)
    Sequential([layer]).predict(x)
    assert fresh == []
    _training_step(name, "float32", **options)
    assert len(fresh) == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="the helper needs 2 CPUs")
def test_a_stateful_layers_helper_compiles_its_step_kernel(tmp_path):
    """A stateful layer's cold training step: the helper compiles the
    single-step kernel after the forward one, and the stream's first step
    loads it from the cache instead of compiling it; the numbers are those
    of a layer that is not stateful (computed in this process)."""
    cold = _cold_child(tmp_path, "--stateful", NUMRNN_COMPILE_AHEAD="1")
    assert cold["helpers"] == [
        ["numrnn.kernels.cpu.lstm", "_forward_fast", "3 2 3 m 2 2 2 3 3 3 3 3 2 2 2 1 b b i i",
         "float32", "1", "_lstm_step_fast:2 2 2 1 2 2 2"],
        0,
    ]  # fmt: skip
    assert (cold["forward_hits"], cold["forward_misses"]) == (1, 0)
    assert (cold["step_hits"], cold["step_misses"]) == (1, 0)
    for got, want in zip(cold["grads"], _child_grads_here(), strict=True):
        np.testing.assert_array_equal(np.asarray(got), np.ravel(want))
