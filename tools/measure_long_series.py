"""Peak memory and throughput of a stateful, chunked fit over one long series.

Fits ``RNNRegressor(stateful=True)`` on a univariate series of ``--steps``
steps (default 10**7) with truncated BPTT over chunks of ``--chunk-length``
steps, for ``--epochs`` epochs, and prints the peak resident memory of the
process (``resource.getrusage(...).ru_maxrss``) and the training throughput
in steps per second. A small fit first compiles (or loads) the kernels, so
the timed fit measures training only.

Run: python tools/measure_long_series.py [--steps 10000000] [--chunk-length 200]
"""

import argparse
import resource
import sys
import time
import warnings

import numpy as np
from scipy.signal import lfilter
from sklearn.exceptions import ConvergenceWarning

from numrnn import RNNRegressor


def peak_rss_mib():
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def make_series(n_steps, seed=0, block=1_000_000):
    """A noisy AR(2) signal plus a slow seasonal term: input y[t-1], target y[t].

    Built block by block (the filter state carries over), in float32, so the
    generator itself never holds more than the two output arrays and a block.
    """
    rng = np.random.default_rng(seed)
    coefficients = [1.0, -0.6, 0.2]  # y[t] = 0.6 y[t-1] - 0.2 y[t-2] + e[t]
    values = np.empty(n_steps, dtype=np.float32)
    state = np.zeros(2)
    for start in range(0, n_steps, block):
        stop = min(start + block, n_steps)
        noise = rng.normal(scale=0.1, size=stop - start)
        filtered, state = lfilter([1.0], coefficients, noise, zi=state)
        seasonal = 0.5 * np.sin(np.arange(start, stop) * (2 * np.pi / 500))
        values[start:stop] = filtered + seasonal
    X = np.empty((n_steps, 1), dtype=np.float32)
    X[0, 0] = 0.0
    X[1:, 0] = values[:-1]
    return X, values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000_000)
    parser.add_argument("--chunk-length", type=int, default=200)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--cell", default="lstm", choices=["lstm", "gru", "simple"])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore", ConvergenceWarning)
    params = dict(
        cell=args.cell,
        units=(args.units,),
        stateful=True,
        chunk_length=args.chunk_length,
        max_iter=args.epochs,
        learning_rate_init=0.001,
        random_state=0,
        dtype=args.dtype,
    )
    # compile (or load from numba's cache) outside the timed fit
    X_small, y_small = make_series(4 * args.chunk_length, seed=1)
    start = time.perf_counter()
    RNNRegressor(**{**params, "max_iter": 1}).fit(X_small, y_small)
    warmup = time.perf_counter() - start
    rss_before_data = peak_rss_mib()

    X, y = make_series(args.steps)
    data_mib = (X.nbytes + y.nbytes) / 2**20
    rss_before_fit = peak_rss_mib()
    reg = RNNRegressor(**params)
    start, cpu_start = time.perf_counter(), time.process_time()
    reg.fit(X, y)
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    rss_after_fit = peak_rss_mib()
    steps_done = args.steps * args.epochs
    n_chunks = -(-args.steps // args.chunk_length)

    print(f"series: {args.steps:,} steps x 1 feature ({args.dtype}), {data_mib:.0f} MiB of X + y")
    print(
        f"model: {args.cell} units={args.units}, chunk_length={args.chunk_length} "
        f"({n_chunks:,} chunks, one optimizer step each), epochs={args.epochs}"
    )
    print(f"warm-up fit (compile or cache load): {warmup:.1f} s")
    print(f"fit: {seconds:.1f} s wall, {steps_done / seconds:,.0f} steps/s")
    print(
        f"fit CPU time: {cpu_seconds:.1f} s, {steps_done / cpu_seconds:,.0f} steps per CPU "
        "second (closer to the unloaded wall-clock speed on a shared machine)"
    )
    print(f"final training loss: {reg.loss_curve_[-1]:.5f}")
    print(f"peak RSS before the data:  {rss_before_data:,.0f} MiB")
    print(f"peak RSS before the fit:   {rss_before_fit:,.0f} MiB")
    print(f"peak RSS after the fit:    {rss_after_fit:,.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
