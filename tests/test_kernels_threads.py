"""Batch-parallel kernel calls (numrnn.kernels.cpu._threads) give the serial numbers.

The split only happens above a size threshold and with more than one thread
allowed; here both are forced so that tiny shapes split into uneven row
blocks (7 rows -> 2, 2, 3), and every output and gradient of every cell is
compared with the serial call, with masks (a fully masked row included),
recurrent dropout, go_backwards, initial states and non-default activations.
"""

import os
import pickle
import signal
import time

import numpy as np
import pytest

from numrnn import layers
from numrnn.kernels.cpu import _threads

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


@pytest.fixture
def spy(monkeypatch):
    """Force splitting into 3 blocks and count the blocks run on pool threads."""
    monkeypatch.setattr(_threads, "MIN_ROWS", 2)
    monkeypatch.setattr(_threads, "MIN_WORK", 0)
    monkeypatch.setattr(_threads, "_thread_budget", lambda: 3)
    submitted = []
    real_pool = _threads._pool

    class CountingPool:
        def submit(self, fn, *args):
            submitted.append(fn)
            return real_pool().submit(fn, *args)

    monkeypatch.setattr(_threads, "_pool", lambda: CountingPool())
    return submitted


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
    assert len(spy) == 4, "forward and backward should each run 2 of 3 blocks on the pool"
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
    assert len(spy) == 2


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
    assert len(spy) == 4, "forward and backward should each run 2 of 3 blocks on the pool"
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
    assert len(spy) == 4
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its numbers, or its error, and leave
        code, payload = 1, b""  # the child never returns into pytest
        try:
            child = _run(name, options, "float64")
            blocks = len(spy) - 4
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
    assert blocks == 4, "the child should run 2 of 3 blocks on its pool, forward and backward"
    for got, want in zip(child, parent, strict=True):
        np.testing.assert_array_equal(got, want)
