"""Training throughput of ``RNNClassifier`` against a PyTorch loop doing the same work.

Work per epoch: ``n_batches`` shuffled mini-batches of ``batch`` sequences of
``steps x features`` float32 values, an LSTM of ``units`` units, a dense
softmax head over ``n_classes`` classes, cross-entropy loss, one Adam step per
batch. numrnn runs ``RNNClassifier(cell='lstm', units=(units,))``; PyTorch runs
``nn.LSTM`` + ``nn.Linear`` with ``torch.optim.Adam``. Each framework runs in
its own child process, alternating A B A B, with the same thread count; the
parent prints median sequences per second and their ratio.

Usage::

    python benchmarks/estimator_throughput.py                 # 64 x 200 x 16, units 64
    python benchmarks/estimator_throughput.py --rounds 5 --threads 2
"""

import argparse
import json
import os
import subprocess
import sys
import time

from compare import REUSE_HELP, use_fresh_numba_cache


def _data(n, steps, features, n_classes):
    import numpy as np

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, steps, features)).astype("float32")
    y = rng.integers(0, n_classes, size=n)
    return X, y


def child_numrnn(args):
    import numrnn

    X, y = _data(args.batch * args.n_batches, args.steps, args.features, args.n_classes)
    clf = numrnn.RNNClassifier(
        cell="lstm",
        units=(args.units,),
        batch_size=args.batch,
        max_iter=1,
        random_state=0,
        dtype="float32",
    )
    clf.partial_fit(X, y, classes=list(range(args.n_classes)))  # compiles / loads the cache
    times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        clf.partial_fit(X, y)
        times.append(time.perf_counter() - t0)
    return times


def child_torch(args):
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    X, y = _data(args.batch * args.n_batches, args.steps, args.features, args.n_classes)
    X, y = torch.from_numpy(X), torch.from_numpy(y)
    lstm = torch.nn.LSTM(args.features, args.units, batch_first=True)
    head = torch.nn.Linear(args.units, args.n_classes)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    rng = np.random.default_rng(0)

    def epoch():
        order = torch.from_numpy(rng.permutation(len(X)))
        for start in range(0, len(X), args.batch):
            idx = order[start : start + args.batch]
            opt.zero_grad()
            out, _ = lstm(X[idx])
            loss = loss_fn(head(out[:, -1]), y[idx])
            loss.backward()
            opt.step()

    epoch()
    times = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        epoch()
        times.append(time.perf_counter() - t0)
    return times


def _run_child(kind, args):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    cmd = [sys.executable, __file__, "--child", kind] + _forwarded(args)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _forwarded(args):
    keys = ("batch", "steps", "features", "units", "n_classes", "n_batches", "epochs", "threads")
    flags = []
    for key in keys:
        flags += [f"--{key.replace('_', '-')}", str(getattr(args, key))]
    return flags


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--n-classes", type=int, default=4)
    parser.add_argument("--n-batches", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", choices=["numrnn", "torch"])
    parser.add_argument("--reuse-numba-cache", action="store_true", help=REUSE_HELP)
    args = parser.parse_args(argv)
    if args.child:
        fn = child_numrnn if args.child == "numrnn" else child_torch
        print(json.dumps(fn(args)))
        return
    try:
        import torch  # noqa: F401

        kinds = ["numrnn", "torch"]
    except ImportError:
        kinds = ["numrnn"]
        print("PyTorch not installed: timing numrnn only (pip install torch==2.13.0, CPU build)")
    cache = None if args.reuse_numba_cache else use_fresh_numba_cache()  # noqa: F841
    epoch_times = {kind: [] for kind in kinds}
    for _ in range(args.rounds):
        for kind in kinds:
            epoch_times[kind] += _run_child(kind, args)
    n_seq = args.batch * args.n_batches
    print(
        f"LSTM classifier fit: batch {args.batch} x {args.steps} steps x {args.features} "
        f"features, units {args.units}, {args.n_classes} classes, {args.threads} threads, "
        f"{args.rounds} rounds x {args.epochs} epochs of {args.n_batches} batches"
    )
    rates = {}
    for kind in kinds:
        median = _median(epoch_times[kind])
        rates[kind] = n_seq / median
        print(
            f"  {kind:7s} {rates[kind]:8.0f} seq/s  ({1e3 * median / args.n_batches:.1f} ms/batch)"
        )
    if "torch" in rates:
        print(f"  numrnn / torch throughput ratio: {rates['numrnn'] / rates['torch']:.2f}")


if __name__ == "__main__":
    main()
