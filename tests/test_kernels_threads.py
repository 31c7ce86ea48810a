"""Batch-parallel kernel calls (numrnn.kernels.cpu._threads) give the serial numbers.

The split only happens above a size threshold and with more than one thread
allowed; here both are forced so that tiny shapes split into uneven row
blocks (7 rows -> 2, 2, 3), and every output and gradient of every cell is
compared with the serial call, with masks (a fully masked row included),
recurrent dropout, go_backwards, initial states and non-default activations.
Both runners are covered: numba's threads (``_blocks``) and the Python pool.
"""

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from numba import njit

from numrnn import layers
from numrnn.kernels.cpu import _blocks, _threads

B, T, F, U = 7, 5, 3, 4
MASK = np.ones((B, T), dtype=bool)
MASK[1] = False
MASK[2, :2] = False
MASK[4, 2] = False
MASK[6, -1] = False

CASES = [
    ("SimpleRNN", {}),
    ("SimpleRNN", {"activation": "relu", "go_backwards": True}),
    ("LSTM", {}),
    ("LSTM", {"go_backwards": True, "recurrent_dropout": 0.4, "dropout": 0.2}),
    ("LSTM", {"activation": "relu", "recurrent_activation": "hard_sigmoid"}),
    ("GRU", {}),
    ("GRU", {"reset_after": False, "recurrent_dropout": 0.3}),
    ("GRU", {"activation": "linear", "zero_output_for_mask": True}),
]


NATIVE = _blocks.layer_ready()


class _OffThread(list):
    """The runner ("numba" or "python") of each block run off the calling thread."""


@pytest.fixture(params=["numba", "python"])
def spy(request, monkeypatch):
    """Force splitting into 3 blocks, on one runner, and record the blocks run
    off the calling thread (the first block of a pool call runs on it)."""
    if request.param == "numba" and not NATIVE:
        pytest.skip(f"numba's threading layer is not one of {_blocks.SAFE_LAYERS}")
    monkeypatch.setattr(_threads, "RUNNER", request.param)
    monkeypatch.setattr(_threads, "MIN_ROWS", 2)
    monkeypatch.setattr(_threads, "MIN_WORK", 0)
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 3)
    off_thread = _OffThread()
    off_thread.runner = request.param
    real_pool = _threads._pool
    real_native = _threads._run_native

    class CountingPool:
        def submit(self, fn, *args):
            off_thread.append("python")
            return real_pool().submit(fn, *args)

    def counting_native(kernel, args, calls):
        ran = real_native(kernel, args, calls)
        if ran == "blocks":
            off_thread.extend(["numba"] * (len(calls) - 1))
        return ran

    monkeypatch.setattr(_threads, "_pool", lambda: CountingPool())
    monkeypatch.setattr(_threads, "_run_native", counting_native)
    return off_thread


def _run(name, options, dtype, seed=0):
    rng = np.random.default_rng(seed)
    layer = getattr(layers, name)(
        U, return_sequences=True, return_state=True, seed=3, dtype=dtype, **options
    )
    x = rng.normal(size=(B, T, F)).astype(dtype)
    n_states = 2 if name == "LSTM" else 1
    initial = [rng.normal(size=(B, U)).astype(dtype) for _ in range(n_states)]
    layer.build(x.shape)
    cotangents = [rng.normal(size=(B, T, U)).astype(dtype)] + [
        rng.normal(size=(B, U)).astype(dtype) for _ in range(n_states)
    ]
    training = bool(options.get("dropout") or options.get("recurrent_dropout"))
    outputs, (weight_grads, x_grad, state_grads) = layer.value_and_vjp(
        x, lambda _: cotangents, mask=MASK, initial_state=initial, training=training
    )
    return [*outputs, *weight_grads, x_grad, *state_grads]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("name", "options"), CASES)
def test_row_blocks_give_the_serial_numbers(spy, monkeypatch, name, options, dtype):
    split = _run(name, options, dtype)
    assert spy == [spy.runner] * 4, "forward and backward should each run 2 of 3 blocks off thread"
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 1)
    serial = _run(name, options, dtype)
    assert len(spy) == 4
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == "float64" else {"rtol": 2e-5, "atol": 1e-6}
    assert len(split) == len(serial)
    for got, want in zip(split, serial, strict=True):
        np.testing.assert_allclose(got, want, **tol)


def test_blocks_need_rows_work_and_threads(monkeypatch):
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 2)
    rows, work, width = 2 * _threads.MIN_ROWS, _threads.MIN_WORK, _threads.MAX_WIDTH
    assert _threads.n_blocks(rows, work, width) == 2
    assert _threads.n_blocks(rows - 1, work, width) == 1
    assert _threads.n_blocks(1000, work - 1, width) == 1
    assert _threads.n_blocks(1000, work, width + 1) == 1
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 1)
    assert _threads.n_blocks(1000, 10 * work, width) == 1


def test_thread_budget_follows_blas_and_numba_limits():
    import numba
    from threadpoolctl import threadpool_limits

    _threads._blas_controller()  # loads the BLAS numba's kernels call
    with threadpool_limits(limits=1, user_api="blas"):
        assert _threads._thread_budget() == 1
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert _threads._thread_budget() == 1
    finally:
        numba.set_num_threads(previous)


def test_a_failing_block_raises_and_releases_the_lock(spy):
    def kernel(rows, out):
        if rows[0] == 4:
            raise RuntimeError("block failed")
        out[...] = rows.sum()

    rows = np.arange(7.0)
    out = np.zeros(1)
    with pytest.raises(RuntimeError, match="block failed"):
        _threads.call_in_blocks(kernel, (rows, out), (0,), (1,), np.empty((7, 1, 1)))
    assert _threads._LOCK.acquire(blocking=False)
    _threads._LOCK.release()


def test_batch_sums_add_every_block(spy):
    def kernel(rows, total):
        total[...] = rows.sum()

    rows = np.arange(7.0)
    total = np.full(1, np.nan)
    _threads.call_in_blocks(kernel, (rows, total), (0,), (1,), np.empty((7, 1, 1)))
    assert total[0] == rows.sum()
    assert spy == ["python"] * 2, "a Python function runs on the pool under either runner"


@njit(cache=True, nogil=True)
def _row_sums(rows, out, total):
    # out: each row's sum; total: the sum and the count of the rows (summed
    # over blocks)
    total[0] = 0.0
    total[1] = rows.shape[0]
    for b in range(rows.shape[0]):
        out[b] = rows[b].sum()
        total[0] += out[b]


@njit(cache=True, nogil=True)
def _fails_on_a_four(rows, out, total):
    for b in range(rows.shape[0]):
        if rows[b, 0] == 4.0:
            raise ValueError("row holds a four")
        out[b] = 1.0
    total[0] = 1.0


@njit(cache=True, nogil=True)
def _returns_a_value(rows, out, total):
    return rows.shape[0]


def test_compiled_blocks_run_on_the_spied_runner_and_sum(spy):
    rows = np.arange(14.0).reshape(7, 2)
    out = np.full(7, np.nan)
    total = np.full(2, np.nan)
    _threads.call_in_blocks(_row_sums, (rows, out, total), (0, 1), (2,), np.empty((7, 1, 1)))
    np.testing.assert_array_equal(out, rows.sum(axis=1))
    np.testing.assert_array_equal(total, [rows.sum(), 7])
    assert spy == [spy.runner] * 2


@njit(cache=True, nogil=True)
def _scaled_rows(rows, out, total, scale):
    total[0] = 0.0
    for b in range(rows.shape[0]):
        out[b] = rows[b, 0] * scale[0]
        total[0] += out[b]


def test_compiled_blocks_follow_the_types_inside_a_tuple_argument(spy):
    # the same kernel called with an int tuple, then a float one: each call
    # must run the code compiled for its own types
    rows = np.arange(14.0).reshape(7, 2)
    for scale in [(2,), (0.5,), (3,)]:
        out, total = np.zeros(7), np.zeros(1)
        args = (rows, out, total, scale)
        _threads.call_in_blocks(_scaled_rows, args, (0, 1), (2,), (7, 1, 1))
        np.testing.assert_array_equal(out, rows[:, 0] * scale[0])
        assert total[0] == rows[:, 0].sum() * scale[0]
    assert spy == [spy.runner] * 6


def test_a_failing_compiled_block_raises_its_error(spy):
    rows = np.arange(14.0).reshape(7, 2)  # row 2 starts with a four: the second block
    out = np.zeros(7)
    total = np.zeros(1)
    with pytest.raises(ValueError, match="row holds a four"):
        _threads.call_in_blocks(
            _fails_on_a_four, (rows, out, total), (0, 1), (2,), np.empty((7, 1, 1))
        )
    assert _threads._LOCK.acquire(blocking=False)
    _threads._LOCK.release()
    rows[2, 0] = 5.0
    _threads.call_in_blocks(_fails_on_a_four, (rows, out, total), (0, 1), (2,), np.empty((7, 1, 1)))
    np.testing.assert_array_equal(out, 1.0)
    assert total[0] == 3.0, "one per block, summed over the 3 blocks"


def test_kernels_that_return_values_or_mix_layouts_stay_on_the_pool(spy):
    if spy.runner != "numba":
        pytest.skip("the numba runner's fallbacks")
    rows = np.arange(14.0).reshape(7, 2)
    out, total = np.zeros(7), np.zeros(1)
    _threads.call_in_blocks(_returns_a_value, (rows, out, total), (0, 1), (2,), (7, 1, 1))
    assert spy == ["python"] * 2, "a kernel that returns a value has no address to call"
    spy.clear()
    # the batch sums are strided, their private copies per block contiguous:
    # the blocks' argument types differ, so no one compiled kernel takes them all
    total = np.full(4, np.nan)[::2]
    _threads.call_in_blocks(_row_sums, (rows, out, total), (0, 1), (2,), (7, 1, 1))
    np.testing.assert_array_equal(out, rows.sum(axis=1))
    np.testing.assert_array_equal(total, [rows.sum(), 7])
    assert spy == ["python"] * 2


def test_numrnn_block_threads_must_name_a_runner():
    result = subprocess.run(
        [sys.executable, "-c", "import numrnn.kernels.cpu._threads"],
        env={**os.environ, "NUMRNN_BLOCK_THREADS": "gpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "NUMRNN_BLOCK_THREADS must be 'numba' or 'python', got 'gpu'" in result.stderr


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_lstm_row_blocks_sum_weight_gradients_over_staged_steps(spy, monkeypatch, dtype):
    # more steps than one stage holds: two full stages and a partial one
    from numrnn.kernels.cpu import lstm

    n_batch, n_steps = 9, 2 * lstm.STAGE_STEPS + 5
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n_batch, n_steps, F)).astype(dtype)
    mask = np.ones((n_batch, n_steps), dtype=bool)
    mask[2, 3:9] = False
    cotangents = [rng.normal(size=(n_batch, n_steps, U)).astype(dtype)]

    def run():
        layer = layers.LSTM(U, return_sequences=True, seed=3, dtype=dtype, recurrent_dropout=0.3)
        layer.build(x.shape)
        outputs, (weight_grads, x_grad, _) = layer.value_and_vjp(
            x, lambda _: cotangents, mask=mask, training=True
        )
        return [*outputs, *weight_grads, x_grad]

    split = run()
    assert spy == [spy.runner] * 4, "forward and backward should each run 2 of 3 blocks off thread"
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 1)
    serial = run()
    tol = {"rtol": 1e-12, "atol": 1e-13} if dtype == "float64" else {"rtol": 2e-5, "atol": 1e-6}
    for got, want in zip(split, serial, strict=True):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_a_forked_child_runs_blocks_on_its_own_threads(spy):
    # the parent's pool threads exist when it forks; the child's blocks used
    # to wait forever on them
    name, options = "LSTM", {}
    parent = _run(name, options, "float64")
    assert spy == [spy.runner] * 4
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its numbers, or its error, and leave
        code, payload = 1, b""  # the child never returns into pytest
        try:
            child = _run(name, options, "float64")
            blocks = spy[4:]
            payload = pickle.dumps((blocks, child))
            code = 0
        except BaseException as error:  # noqa: BLE001 - reported to the parent
            payload = pickle.dumps(repr(error))
        finally:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(payload)
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + 120
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's batch-parallel call did not finish in 120 s")
        time.sleep(0.05)
    with os.fdopen(read_end, "rb") as pipe:
        result = pickle.loads(pipe.read())
    assert isinstance(result, tuple), f"the child failed: {result}"
    blocks, child = result
    # numba's OpenMP threads cannot run in a forked child: its blocks go to a pool
    assert blocks == ["python"] * 4, "the child should run 2 of 3 blocks on its pool, both ways"
    for got, want in zip(child, parent, strict=True):
        np.testing.assert_array_equal(got, want)


def _layer_ready_in_a_new_process(prelude="", **env):
    code = prelude + "from numrnn.kernels.cpu import _blocks; print(_blocks.layer_ready())"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "OMP_DISPLAY_ENV": "verbose", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1], result.stderr


@pytest.mark.skipif(not NATIVE, reason="numba's threading layer is not OpenMP")
def test_openmp_starts_with_a_bounded_spin_count():
    # GNU OpenMP prints its settings as it loads (OMP_DISPLAY_ENV)
    ready, settings = _layer_ready_in_a_new_process()
    assert ready == "True"
    assert f"GOMP_SPINCOUNT = '{_blocks.SPIN_COUNT}'" in settings
    ready, settings = _layer_ready_in_a_new_process(GOMP_SPINCOUNT="7")
    assert ready == "True"
    assert "GOMP_SPINCOUNT = '7'" in settings, "the user's setting wins"


@pytest.mark.skipif(not NATIVE, reason="numba's threading layer is not OpenMP")
def test_no_numba_threads_when_openmp_loaded_with_its_default_spin_count():
    ready, _ = _layer_ready_in_a_new_process("import ctypes; ctypes.CDLL('libgomp.so.1'); ")
    assert ready == "False"


@pytest.mark.skipif(not NATIVE, reason="numba's threading layer is not OpenMP")
def test_a_bundled_openmp_copy_does_not_block_numbas_threads():
    # scikit-learn's wheels bundle their own libgomp-<hash>.so, with its own
    # settings: loading it first (as every estimator fit does) changes nothing
    ready, settings = _layer_ready_in_a_new_process("import sklearn.utils._openmp_helpers; ")
    assert ready == "True"
    assert f"GOMP_SPINCOUNT = '{_blocks.SPIN_COUNT}'" in settings


@pytest.mark.skipif(not NATIVE, reason="numba's threading layer is not OpenMP")
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to split")
def test_an_estimator_fit_splits_on_numbas_threads():
    code = (
        "import numpy as np, numrnn\n"
        "from numrnn.kernels.cpu import _blocks, _threads\n"
        "X = np.random.default_rng(0).normal(size=(64, 100, 4)).astype('float32')\n"
        "numrnn.RNNRegressor(units=(32,), max_iter=1, batch_size=64)"
        ".fit(X, X[:, :, 0].sum(axis=1))\n"
        "print(_blocks.layer_ready(), sorted(k.__name__ for k, _ in _threads._ADDRESSES))\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["True", "['_backward_fast',", "'_forward_fast']"]
