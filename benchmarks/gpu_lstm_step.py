"""Time one LSTM training step (forward + backward) on CUDA against the CPU kernel.

The default shape is the one the CUDA issue sets its target at: batch 256,
100 steps, 64 inputs, 256 units, float32 (aim: CUDA at least 10x faster
than the CPU kernel). Two levels are timed on each device:

- ``kernel``: ``lstm_forward`` + ``lstm_backward`` on preallocated buffers
  (on CUDA, device arrays: no transfers), compilation excluded;
- ``layer``: ``LSTM(...).value_and_vjp`` with numpy inputs and outputs
  (on CUDA, including the host <-> device transfers of each call).

Usage::

    python benchmarks/gpu_lstm_step.py [--batch 256] [--steps 100] [--features 64]
        [--units 256] [--dtype float32] [--repeats 10] [--cpu-repeats 3] [--json out.json]

It needs a real CUDA GPU and numba-cuda (``pip install 'numrnn[cuda]'``);
without them it exits with a message saying what is missing (numba's CUDA
simulator does not count: it is orders of magnitude slower than a GPU).
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--units", type=int, default=256)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=10, help="timed CUDA repeats")
    parser.add_argument("--cpu-repeats", type=int, default=3, help="timed CPU repeats")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    return parser.parse_args(argv)


def _require_gpu():
    from numrnn.kernels import cuda_status

    available, simulator, reason = cuda_status()
    if not available or simulator:
        found = reason if not available else f"only {reason}"
        raise SystemExit(
            f"gpu_lstm_step.py needs a CUDA GPU and numba-cuda, but here: {found}. "
            "Nothing was timed."
        )


def _device_name(cuda):
    name = cuda.get_current_device().name
    return name.decode() if isinstance(name, bytes) else str(name)


def _time(step, repeats, synchronize=lambda: None):
    step()  # warm-up: compiles, or loads numba's cache
    synchronize()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        synchronize()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "repeats": repeats}


def _kernel_operands(args, rng):
    b, t, f, u = args.batch, args.steps, args.features, args.units
    dtype = np.dtype(args.dtype)

    def rand(*shape, scale=1.0):
        return np.ascontiguousarray(rng.standard_normal(shape) * scale, dtype=dtype)

    seq = (b, t, u)
    inputs = {
        "x": rand(b, t, f),
        "kernel": rand(f, 4 * u, scale=f**-0.5),
        "recurrent_kernel": rand(u, 4 * u, scale=u**-0.5),
        "bias": rand(4 * u, scale=0.1),
        "mask": np.ones((b, t), dtype=bool),
        "h0": np.zeros((b, u), dtype=dtype),
        "c0": np.zeros((b, u), dtype=dtype),
        "rec_mask": np.ones((b, u), dtype=dtype),
    }
    cotangents = {"d_out": rand(*seq), "d_h_final": rand(b, u), "d_c_final": rand(b, u)}
    return inputs, cotangents


def _buffer_shapes(module, args):
    """Forward and backward buffer shapes for a kernel module (whose caches
    may be time-major, ``TIME_MAJOR``)."""
    b, t, f, u = args.batch, args.steps, args.features, args.units
    steps = (t, b) if module.TIME_MAJOR else (b, t)
    cache = steps + (u,)
    forward = {"out": (b, t, u), "gates": steps + (4 * u,), "h_prev": cache, "c_prev": cache,
               "c_act": cache, "h_final": (b, u), "c_final": (b, u)}  # fmt: skip
    backward = {"d_gates": steps + (4 * u,), "d_x": (b, t, f), "d_kernel": (f, 4 * u),
                "d_recurrent_kernel": (u, 4 * u), "d_bias": (4 * u,), "d_h0": (b, u),
                "d_c0": (b, u)}  # fmt: skip
    return forward, backward


def _kernel_step(module, inputs, fwd, cots, bwd):
    i = inputs

    def step():
        module.lstm_forward(
            i["x"], i["kernel"], i["recurrent_kernel"], i["bias"], i["mask"], i["h0"], i["c0"],
            i["rec_mask"], 1, 2, False, False,
            fwd["out"], fwd["gates"], fwd["h_prev"], fwd["h_prev"], fwd["c_prev"], fwd["c_act"],
            fwd["h_final"], fwd["c_final"],
        )  # fmt: skip
        module.lstm_backward(
            i["x"], i["kernel"], i["recurrent_kernel"], i["mask"], i["rec_mask"], 1, 2, False,
            False, fwd["gates"], fwd["h_prev"], fwd["c_prev"], fwd["c_act"],
            cots["d_out"], cots["d_h_final"], cots["d_c_final"],
            bwd["d_gates"], bwd["d_x"], bwd["d_kernel"], bwd["d_recurrent_kernel"],
            bwd["d_bias"], bwd["d_h0"], bwd["d_c0"],
        )  # fmt: skip

    return step


def _layer_step(device, args, x, cotangent):
    from numrnn.layers import LSTM

    layer = LSTM(args.units, return_sequences=True, seed=0, dtype=args.dtype, device=device)
    layer.build(x.shape)
    return lambda: layer.value_and_vjp(x, lambda _: [cotangent])


def main(argv=None):
    """Run the benchmark and print a table; return the results as a dict."""
    args = _parse(argv)
    _require_gpu()
    from numba import cuda

    from numrnn.kernels.cpu import lstm as cpu_lstm
    from numrnn.kernels.cuda import lstm as cuda_lstm

    rng = np.random.default_rng(0)
    inputs, cots = _kernel_operands(args, rng)
    dtype = np.dtype(args.dtype)
    forward, backward = _buffer_shapes(cpu_lstm, args)
    host_fwd = {k: np.empty(s, dtype=dtype) for k, s in forward.items()}
    host_bwd = {k: np.empty(s, dtype=dtype) for k, s in backward.items()}
    dev_inputs = {k: cuda.to_device(v) for k, v in inputs.items()}
    dev_cots = {k: cuda.to_device(v) for k, v in cots.items()}
    forward, backward = _buffer_shapes(cuda_lstm, args)
    dev_fwd = {k: cuda.device_array(s, dtype=dtype) for k, s in forward.items()}
    dev_bwd = {k: cuda.device_array(s, dtype=dtype) for k, s in backward.items()}

    results = {
        "shape": {
            "batch": args.batch,
            "steps": args.steps,
            "features": args.features,
            "units": args.units,
            "dtype": args.dtype,
        },  # fmt: skip
        "device": _device_name(cuda),
    }
    sync = cuda.synchronize
    results["cuda_kernel"] = _time(
        _kernel_step(cuda_lstm, dev_inputs, dev_fwd, dev_cots, dev_bwd), args.repeats, sync
    )
    results["cpu_kernel"] = _time(
        _kernel_step(cpu_lstm, inputs, host_fwd, cots, host_bwd), args.cpu_repeats
    )
    x = inputs["x"]
    results["cuda_layer"] = _time(_layer_step("cuda", args, x, cots["d_out"]), args.repeats, sync)
    results["cpu_layer"] = _time(_layer_step("cpu", args, x, cots["d_out"]), args.cpu_repeats)

    # the two kernels must agree, or the timing compares different work
    expected = host_bwd["d_recurrent_kernel"]
    got = dev_bwd["d_recurrent_kernel"].copy_to_host()
    scale = float(np.abs(expected).max()) or 1.0
    results["max_rel_diff_d_recurrent_kernel"] = float(np.abs(got - expected).max() / scale)

    for level in ("kernel", "layer"):
        cpu_t = results[f"cpu_{level}"]["median_s"]
        gpu_t = results[f"cuda_{level}"]["median_s"]
        results[f"speedup_{level}"] = cpu_t / gpu_t
    shape = results["shape"]
    print(f"LSTM training step (forward + backward), batch {shape['batch']}, "
          f"{shape['steps']} steps, {shape['features']} inputs, {shape['units']} units, "
          f"{shape['dtype']}; GPU: {results['device']}")  # fmt: skip
    print(f"{'level':8} {'CPU median':>12} {'CUDA median':>12} {'speedup':>9}")
    for level in ("kernel", "layer"):
        cpu_t = results[f"cpu_{level}"]["median_s"] * 1e3
        gpu_t = results[f"cuda_{level}"]["median_s"] * 1e3
        print(f"{level:8} {cpu_t:10.1f} ms {gpu_t:10.2f} ms {results[f'speedup_{level}']:8.1f}x")
    print(f"max |CUDA - CPU| / max |CPU| of d_recurrent_kernel: "
          f"{results['max_rel_diff_d_recurrent_kernel']:.2e}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
