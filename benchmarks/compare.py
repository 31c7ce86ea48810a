"""Time numrnn against PyTorch CPU on the same recurrent work, side by side.

Each framework runs in its own child process (two thread pools in one process
fight and distort small timings); the parent alternates them A B A B and
reports medians over the rounds, their ratio and GFLOP/s against the
machine's measured float32 GEMM peak.

Usage::

    python benchmarks/compare.py                 # the full grid
    python benchmarks/compare.py --quick         # one small row, few rounds
    python benchmarks/compare.py --rows lstm:64,200,16,64 --threads 2
    python benchmarks/compare.py --json results.json

The work per row: a float32 training step (forward and BPTT, the gradients
of every weight, loss = mean of the output sequence; no input gradient, as
PyTorch computes none for an input that does not require one), inference on the same
batch, and the streaming latency of one step at a time with batch 1 (a
stateful numrnn layer; PyTorch's module called with the state it returned),
32 units. Both frameworks get the same thread count: the ``*_NUM_THREADS``
variables of the children and ``torch.set_num_threads``.

PyTorch is optional (the ``compare`` extra, CPU build); without it only
numrnn is timed. The GEMM peak is numpy's float32 ``2048 x 2048`` product
in a child with the same threads; the BLAS kernel it picked (threadpoolctl's
``architecture``) is printed with it.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

GRID = [
    ("lstm", 32, 100, 8, 32),
    ("lstm", 64, 200, 16, 64),
    ("lstm", 128, 100, 32, 128),
    ("lstm", 32, 50, 64, 256),
    ("lstm", 256, 50, 8, 16),
    ("gru", 64, 200, 16, 64),
    ("simple", 64, 200, 16, 64),
]
GATES = {"lstm": 4, "gru": 3, "simple": 1}
STREAM_UNITS = 32


def forward_flops(cell, batch, steps, n_in, units):
    """Multiply-add FLOPs of the forward GEMMs (input and recurrent products)."""
    return 2 * batch * steps * (n_in + units) * GATES[cell] * units


# -- children --------------------------------------------------------------------


def _median_time(fn, repeats, min_time=0.2):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < repeats or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if len(times) >= 200:
            break
    times.sort()
    return times[len(times) // 2]


def child_numrnn(cell, batch, steps, n_in, units, repeats):
    import numpy as np

    from numrnn import layers

    rng = np.random.default_rng(0)
    cls = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}[cell]
    layer = cls(units, return_sequences=True, seed=0)
    x = rng.normal(size=(batch, steps, n_in)).astype("float32")
    layer.build(x.shape)
    cot = [np.full((batch, steps, units), 1.0 / (batch * steps * units), dtype="float32")]
    # the gradients of every weight, no input gradient (PyTorch's input does
    # not require one either)
    train = _median_time(lambda: layer.vjp(x, cot, input_grad=False), repeats)
    infer = _median_time(lambda: layer(x), repeats)

    stream = cls(STREAM_UNITS, stateful=True, seed=0)
    x1 = rng.normal(size=(1, 1, n_in)).astype("float32")
    stream(x1)
    n_steps = 2000

    def run_stream():
        for _ in range(n_steps):
            stream(x1)

    step = _median_time(run_stream, 3) / n_steps
    return {"train": train, "infer": infer, "stream_step": step}


def child_torch(cell, batch, steps, n_in, units, repeats, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple": torch.nn.RNN}[cell]
    net = cls(n_in, units, batch_first=True)
    x = torch.randn(batch, steps, n_in)

    def train_step():
        net.zero_grad(set_to_none=True)
        out, _ = net(x)
        out.mean().backward()

    def infer_step():
        with torch.no_grad():
            net(x)

    train = _median_time(train_step, repeats)
    infer = _median_time(infer_step, repeats)

    stream = cls(n_in, STREAM_UNITS, batch_first=True)
    x1 = torch.randn(1, 1, n_in)
    n_steps = 2000

    def run_stream():
        with torch.no_grad():
            state = None
            for _ in range(n_steps):
                _, state = stream(x1, state)

    step = _median_time(run_stream, 3) / n_steps
    return {"train": train, "infer": infer, "stream_step": step}


def child_gemm_peak():
    import numpy as np

    a = np.random.default_rng(0).random((2048, 2048), dtype=np.float32)
    t = _median_time(lambda: a @ a, 5)
    try:
        from threadpoolctl import threadpool_info

        blas = sorted(
            {f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
             for i in threadpool_info() if i.get("user_api") == "blas"}
        )  # fmt: skip
    except ImportError:
        blas = []
    return {"gflops": 2 * 2048**3 / t / 1e9, "blas": blas}


def _child_main(args):
    if args.child == "gemm":
        result = child_gemm_peak()
    else:
        cell, batch, steps, n_in, units = (
            args.row.split(":")[0],
            *map(int, args.row.split(":")[1].split(",")),
        )
        if args.child == "numrnn":
            result = child_numrnn(cell, batch, steps, n_in, units, args.repeats)
        else:
            result = child_torch(cell, batch, steps, n_in, units, args.repeats, args.threads)
    print(json.dumps(result))


# -- parent ----------------------------------------------------------------------


REUSE_HELP = (
    "load the kernels from numba's usual cache instead of compiling them into a new one "
    "(faster; may run stale kernels in a checkout whose helpers changed)"
)


def use_fresh_numba_cache():
    """Point this process's children at a new, empty ``NUMBA_CACHE_DIR``.

    Numba re-validates a cached kernel against its own source file only, not
    against the helpers it compiled in from other modules, so a cache left by
    an older checkout can run stale code (here it once ran the previous BLAS
    path). The first child compiles, outside the timings (every measurement
    warms up first); the later ones load. Returns the directory object; the
    directory is removed when it is garbage-collected or the process ends.
    """
    cache = tempfile.TemporaryDirectory(prefix="numrnn-bench-numba-")
    os.environ["NUMBA_CACHE_DIR"] = cache.name
    return cache


def _run_child(kind, row, threads, repeats):
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--child", kind, "--threads", str(threads),
           "--repeats", str(repeats)]  # fmt: skip
    if row is not None:
        cmd += ["--row", row]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _print_targets(report, peak):
    """The issue-6 targets that this run can check, met or not."""
    print("# targets (ratios from this run):")
    for r in report["rows"]:
        n, t = r["numrnn"], r["torch"]
        name = f"{r['cell']} ({r['batch']},{r['steps']},{r['inputs']},{r['units']})"
        train = t["train"] / n["train"]
        need = 2.0 if r["units"] <= 64 else 1.0
        infer = t["infer"] / n["infer"]
        stream = t["stream_step"] / n["stream_step"]
        checks = [
            f"train {train:.2f}x (>= {need:g}x: {'met' if train >= need else 'NOT met'})",
            f"infer {infer:.2f}x (>= 1x: {'met' if infer >= 1 else 'NOT met'})",
            f"stream {stream:.1f}x (>= 20x: {'met' if stream >= 20 else 'NOT met'})"
            if r["cell"] == "lstm"
            else f"stream {stream:.1f}x (no target: the 20x is against nn.LSTM)",
        ]
        if r["units"] >= 128:
            share = r["train_gflops"] / peak
            checks.append(f"train {100 * share:.0f}% of peak (>= 70%: "
                          f"{'met' if share >= 0.7 else 'NOT met'})")  # fmt: skip
        print(f"#   {name}: " + "; ".join(checks))


def _have_torch():
    try:
        import importlib.util

        return importlib.util.find_spec("torch") is not None
    except Exception:
        return False


def _median(values):
    values = sorted(values)
    return values[len(values) // 2]


def _ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.2f}"


def _ratio(ours, theirs, key):
    return "n/a" if theirs is None else f"{theirs[key] / ours[key]:.2f}x"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["numrnn", "torch", "gemm"])
    parser.add_argument("--row")
    parser.add_argument("--rows", help="comma-free list like lstm:64,200,16,64;gru:...")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", help="also write the medians and ratios to this file")
    parser.add_argument("--reuse-numba-cache", action="store_true", help=REUSE_HELP)
    args = parser.parse_args(argv)
    if args.child:
        _child_main(args)
        return

    if args.rows:
        rows = [r for r in args.rows.split(";") if r]
    elif args.quick:
        rows = ["lstm:32,100,8,32"]
    else:
        rows = [f"{c}:{b},{t},{f},{u}" for c, b, t, f, u in GRID]
    rounds = 1 if args.quick else args.rounds
    repeats = 3 if args.quick else args.repeats
    kinds = ["numrnn"] + (["torch"] if _have_torch() else [])
    cache = None if args.reuse_numba_cache else use_fresh_numba_cache()  # noqa: F841

    import numba
    import numpy

    versions = f"numpy {numpy.__version__}, numba {numba.__version__}"
    if "torch" in kinds:
        import importlib.metadata

        versions += f", torch {importlib.metadata.version('torch')}"
    # the peak is the best of one GEMM child before each row (the machines are
    # shared: a reading taken while a neighbour runs is low), so the table is
    # printed once every row has run
    gemms = []
    report = {"date": time.strftime("%Y-%m-%d"), "cpu": _cpu_name(), "versions": versions,
              "threads": args.threads, "rounds": rounds, "rows": []}  # fmt: skip
    for row in rows:
        gemms.append(_run_child("gemm", None, args.threads, repeats))
        results = {k: [] for k in kinds}
        for _ in range(rounds):
            for kind in kinds:
                results[kind].append(_run_child(kind, row, args.threads, repeats))
        med = {k: {m: _median([r[m] for r in v]) for m in v[0]} for k, v in results.items()}
        cell, dims = row.split(":")
        batch, steps, n_in, units = map(int, dims.split(","))
        flops = forward_flops(cell, batch, steps, n_in, units)
        n = med["numrnn"]
        report["rows"].append({
            "cell": cell, "batch": batch, "steps": steps, "inputs": n_in, "units": units,
            "numrnn": n, "torch": med.get("torch"),
            "train_gflops": 3 * flops / n["train"] / 1e9, "infer_gflops": flops / n["infer"] / 1e9,
        })  # fmt: skip
        print(f"# ran {row}", file=sys.stderr, flush=True)
    gemm = max(gemms, key=lambda g: g["gflops"])
    peak = gemm["gflops"]
    report["gemm"] = gemm
    report["gemm_readings"] = [g["gflops"] for g in gemms]
    print(f"# {time.strftime('%Y-%m-%d')}  {_cpu_name()}  "
          f"Python {platform.python_version()}  {versions}")  # fmt: skip
    print(f"# threads per framework: {args.threads}; float32; medians of {rounds} "
          f"alternating rounds; float32 GEMM peak {peak:.0f} GFLOP/s, the best of "
          f"{len(gemms)} readings ({', '.join(f'{g:.0f}' for g in report['gemm_readings'])}; "
          f"{'; '.join(gemm['blas']) or 'BLAS unknown'})")  # fmt: skip
    print(
        "| cell (B,T,F,U) | numrnn train ms | torch train ms | train ratio | "
        "numrnn infer ms | torch infer ms | infer ratio | numrnn GFLOP/s train / infer "
        "(% peak) | stream µs numrnn / torch | stream ratio |"
    )
    print("|---" * 10 + "|")
    for r in report["rows"]:
        n, t = r["numrnn"], r["torch"]
        gf_train, gf_infer = r["train_gflops"], r["infer_gflops"]
        stream = f"{n['stream_step'] * 1e6:.1f} / " + (
            "n/a" if t is None else f"{t['stream_step'] * 1e6:.1f}"
        )
        print(
            f"| {r['cell']} ({r['batch']},{r['steps']},{r['inputs']},{r['units']}) | "
            f"{_ms(n['train'])} | {_ms(t and t['train'])} | "
            f"{_ratio(n, t, 'train')} | {_ms(n['infer'])} | {_ms(t and t['infer'])} | "
            f"{_ratio(n, t, 'infer')} | {gf_train:.1f} / {gf_infer:.1f} "
            f"({100 * gf_train / peak:.0f}% / {100 * gf_infer / peak:.0f}%) | {stream} | "
            f"{_ratio(n, t, 'stream_step')} |"
        )
    print("# ratio = torch time / numrnn time (above 1: numrnn faster)")
    if "torch" in kinds:
        _print_targets(report, peak)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
