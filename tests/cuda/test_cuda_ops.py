"""The device operations of the resident fit (``numrnn.kernels.cuda.ops``) against numpy.

Each op runs in numba's simulator (``NUMBA_ENABLE_CUDASIM=1``) or on a GPU,
with tiny thread blocks so that the small shapes span several blocks, in
float32 and float64, and is compared with the numpy code it replaces
(``numrnn.activations``, ``numrnn.losses``, ``numrnn.optimizers``, the
recurrent layers' helpers). The registry test runs without a CUDA runtime.
"""

import importlib.util
import os

import numpy as np
import pytest

from numrnn import activations, losses, optimizers
from numrnn.kernels import cuda_status

_AVAILABLE, _SIMULATOR, _REASON = cuda_status()
needs_cuda = pytest.mark.skipif(
    not _AVAILABLE, reason=f"the CUDA kernels cannot run here: {_REASON}"
)
DTYPES = ["float32", "float64"]
TOL = {"float32": {"rtol": 2e-5, "atol": 1e-6}, "float64": {"rtol": 1e-12, "atol": 1e-14}}


def _ops():
    from numrnn.kernels.cuda import ops

    return ops


def _up(array):
    from numba import cuda

    return cuda.to_device(np.ascontiguousarray(array))


def _down(array):
    return array.copy_to_host()


@pytest.mark.skipif(
    os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
    or importlib.util.find_spec("numba_cuda") is None,
    reason="needs numba-cuda without the simulator (real dispatchers)",
)
def test_every_ops_kernel_is_in_the_compile_registry():
    from numba.cuda.dispatcher import CUDADispatcher

    from numrnn.kernels.cuda import ops
    from numrnn.kernels.cuda._common import KERNELS

    found = 0
    for attr, obj in vars(ops).items():
        if isinstance(obj, CUDADispatcher) and not obj.targetoptions.get("device"):
            assert f"{ops.__name__}.{obj.py_func.__name__}" in KERNELS, attr
            found += 1
    assert found >= 25


# -- element-wise helpers -------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_elementwise_helpers(dtype, small_blocks):
    ops = _ops()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype(dtype)
    b = rng.standard_normal((3, 5)).astype(dtype)
    da, db = _up(a), _up(b)
    np.testing.assert_array_equal(_down(ops.multiply(da, db)), a * b)
    copy = ops.copy_new(da)
    ops.add_(copy, db)
    np.testing.assert_array_equal(_down(copy), a + b)
    ops.axpy_(copy, 0.3, db)
    np.testing.assert_allclose(_down(copy), (a + b) + np.dtype(dtype).type(0.3) * b, **TOL[dtype])
    ops.fill_(copy, 2.5)
    np.testing.assert_array_equal(_down(copy), np.full((3, 5), 2.5, dtype))
    assert _down(ops.zeros((2, 3, 2), dtype)).tolist() == np.zeros((2, 3, 2)).tolist()
    mask = _down(ops.ones_mask((3, 4)))
    assert mask.dtype == np.bool_ and mask.all()


# -- Dense ------------------------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", sorted(activations.DENSE_ACTIVATIONS))
def test_dense_forward_and_backward(activation, dtype, small_blocks):
    ops = _ops()
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 3)).astype(dtype) * 3
    kernel = rng.standard_normal((3, 4)).astype(dtype)
    bias = rng.standard_normal(4).astype(dtype)
    dy = rng.standard_normal((5, 4)).astype(dtype)
    code = ops.DENSE_ACTIVATIONS[activation]
    z_dev, y_dev = ops.dense_forward(_up(x), _up(kernel), _up(bias), code)
    z = x @ kernel + bias
    y = activations.apply(activation, z)
    np.testing.assert_allclose(_down(z_dev), z, **TOL[dtype])
    np.testing.assert_allclose(_down(y_dev), y, **TOL[dtype])
    d_kernel, d_bias, d_x = ops.dense_backward(
        _up(x), _up(kernel), z_dev, y_dev, _up(dy), code, True
    )
    dz = activations.backprop(activation, z, y, dy)
    np.testing.assert_allclose(_down(d_kernel), x.T @ dz, **TOL[dtype])
    np.testing.assert_allclose(_down(d_bias), dz.sum(axis=0), **TOL[dtype])
    np.testing.assert_allclose(_down(d_x), dz @ kernel.T, **TOL[dtype])


@needs_cuda
def test_dense_without_bias_and_nan_propagation(small_blocks):
    ops = _ops()
    x = np.array([[np.nan, 1.0], [-2.0, 0.5]])
    kernel = np.eye(2)
    for name in ("relu", "hard_sigmoid", "sigmoid", "softplus"):
        z_dev, y_dev = ops.dense_forward(_up(x), _up(kernel), None, ops.DENSE_ACTIVATIONS[name])
        expected = activations.apply(name, x @ kernel)
        np.testing.assert_allclose(_down(y_dev), expected, rtol=1e-12, err_msg=name)
        assert np.isnan(_down(y_dev)[0, 0]), name  # NaN is never hidden


# -- recurrent-layer plumbing ----------------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_input_dropout_block_diagonal_and_last_step(dtype, small_blocks):
    from numrnn.layers.recurrent import _block_diagonal, _diagonal_blocks

    ops = _ops()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 2)).astype(dtype)
    masks = rng.standard_normal((3, 2, 2)).astype(dtype)
    x_in = _down(ops.apply_input_dropout(_up(x), _up(masks)))
    np.testing.assert_array_equal(x_in, np.concatenate([x * m[:, None, :] for m in masks], axis=-1))
    d_in = rng.standard_normal((2, 3, 6)).astype(dtype)
    expected = sum(d_in[..., 2 * k : 2 * k + 2] * m[:, None, :] for k, m in enumerate(masks))
    np.testing.assert_allclose(
        _down(ops.fold_input_dropout(_up(d_in), _up(masks), 2)), expected, **TOL[dtype]
    )
    matrix = rng.standard_normal((2, 9)).astype(dtype)
    block = _down(ops.block_diagonal(_up(matrix), 3))
    np.testing.assert_array_equal(block, _block_diagonal(matrix, 3))
    np.testing.assert_array_equal(_down(ops.diagonal_blocks(_up(block), 3)), matrix)
    big = rng.standard_normal((6, 9)).astype(dtype)
    np.testing.assert_array_equal(_down(ops.diagonal_blocks(_up(big), 3)), _diagonal_blocks(big, 3))
    d_last = rng.standard_normal((2, 3)).astype(dtype)
    scattered = _down(ops.scatter_last_step(_up(d_last), 4))
    expected = np.zeros((2, 4, 3), dtype)
    expected[:, -1] = d_last
    np.testing.assert_array_equal(scattered, expected)
    np.testing.assert_array_equal(_down(ops.last_step(_up(expected))), d_last)


# -- Bidirectional merges --------------------------------------------------------------------


def _merge_numpy(fwd, bwd_raw, reverse, mode):
    bwd = bwd_raw[:, ::-1] if reverse else bwd_raw
    if mode == "concat":
        return np.concatenate([fwd, bwd], axis=-1)
    if mode == "sum":
        return fwd + bwd
    if mode == "mul":
        return fwd * bwd
    return (fwd + bwd) / 2


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
def test_merge_and_its_gradient(mode, dtype, small_blocks):
    ops = _ops()
    rng = np.random.default_rng(3)
    code = ops.MERGE_MODES[mode]
    for shape, reverse in (((2, 3, 2), True), ((3, 2), False)):
        fwd = rng.standard_normal(shape).astype(dtype)
        bwd = rng.standard_normal(shape).astype(dtype)
        merged = _down(ops.merge(_up(fwd), _up(bwd), reverse, code))
        expected = _merge_numpy(fwd, bwd, reverse, mode)
        np.testing.assert_allclose(merged, expected, **TOL[dtype])
        # gradient: directional derivative of sum(d * merge) by the chain rule
        d = rng.standard_normal(expected.shape).astype(dtype)
        d_fwd, d_bwd = (_down(a) for a in ops.merge_backward(_up(d), _up(fwd), _up(bwd),
                                                               reverse, code))  # fmt: skip
        flip = (lambda a: a[:, ::-1]) if reverse else (lambda a: a)
        units = shape[-1]
        if mode == "concat":
            exp_fwd, exp_bwd_in = d[..., :units], d[..., units:]
        elif mode == "sum":
            exp_fwd, exp_bwd_in = d, d
        elif mode == "mul":
            exp_fwd, exp_bwd_in = d * flip(bwd), d * fwd
        else:
            exp_fwd, exp_bwd_in = d / 2, d / 2
        np.testing.assert_allclose(d_fwd, exp_fwd, **TOL[dtype])
        np.testing.assert_allclose(d_bwd, flip(exp_bwd_in), **TOL[dtype])


# -- losses ------------------------------------------------------------------------------------


def _loss_case(name, rng, shape):
    """(loss function, y_true) for predictions of ``shape``."""
    entry = shape[:-1]
    if name in ("mse", "mae"):
        return losses.get(name), rng.standard_normal(shape)
    if name == "huber":
        return losses.huber, 2 * rng.standard_normal(shape)
    if name == "binary_crossentropy":
        return losses.binary_crossentropy_from_logits, (rng.random(shape) > 0.5) * 1.0
    if name == "categorical_crossentropy":
        onehot = np.eye(shape[-1])[rng.integers(0, shape[-1], entry)]
        return losses.categorical_crossentropy_from_logits, onehot
    return losses.sparse_categorical_crossentropy_from_logits, rng.integers(0, shape[-1], entry)


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "name",
    ["mse", "mae", "huber", "binary_crossentropy", "categorical_crossentropy",
     "sparse_categorical_crossentropy"],
)  # fmt: skip
def test_loss_value_and_gradient_match_numrnn_losses(name, dtype, small_blocks):
    rng = np.random.default_rng(4)
    shape = (3, 4, 3)  # per-step entries
    loss, y_true = _loss_case(name, rng, shape)
    logits = (3 * rng.standard_normal(shape)).astype(dtype)
    weights = rng.random(3) + 0.5
    mask = rng.random(shape[:2]) > 0.3
    mask[0, 0] = True
    if name == "sparse_categorical_crossentropy":
        y_true = y_true.astype(float)
        y_true[~mask] = np.nan  # uncounted entries may hold anything
    elif name != "categorical_crossentropy":
        y_true[~mask] = np.nan
    value, grad = loss(y_true, logits, sample_weight=weights, mask=mask)
    out = _up(np.full(2, 7.0, dtype))
    dev_grad = losses.value_and_grad_on_device(
        loss, y_true, _up(logits), sample_weight=weights, mask=mask, out=out, slot=1
    )
    result = _down(out)
    assert result[0] == 7.0  # other slots untouched
    np.testing.assert_allclose(result[1], value, rtol=1e-6 if dtype == "float32" else 1e-12)
    host_grad = _down(dev_grad)
    assert host_grad.dtype == np.dtype(dtype) and host_grad.shape == shape
    np.testing.assert_allclose(host_grad, grad, **TOL[dtype])


@needs_cuda
def test_device_loss_edge_cases(small_blocks):
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((4, 2))
    out = _up(np.ones(1))
    # per-sequence targets, no weights; nothing counted -> value 0, zero gradient
    grad = losses.value_and_grad_on_device(
        losses.mean_squared_error, np.zeros((4, 2)), _up(logits),
        mask=np.zeros(4, bool), out=out,
    )  # fmt: skip
    assert _down(out)[0] == 0.0 and not _down(grad).any()
    with pytest.raises(ValueError, match="Class labels must lie"):
        losses.value_and_grad_on_device(
            losses.sparse_categorical_crossentropy_from_logits, np.array([0, 1, 2, 1]),
            _up(logits), out=out,
        )  # fmt: skip
    with pytest.raises(ValueError, match="has no device version"):
        losses.value_and_grad_on_device(lambda t, p: (0.0, p), np.zeros((4, 2)), _up(logits),
                                        out=out)  # fmt: skip
    assert not losses.supports_device(lambda t, p: (0.0, p))


# -- reductions, clipping, optimizers --------------------------------------------------------


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions(dtype, small_blocks):
    ops = _ops()
    rng = np.random.default_rng(6)
    a = rng.standard_normal((5, 7)).astype(dtype)  # more values than threads
    out = ops.zeros((3,), dtype)
    ops.sum_squares(_up(a), out, 0, accumulate=False)
    ops.sum_squares(_up(a[:2]), out, 0, accumulate=True)
    bad = a.copy()
    bad[1, 2], bad[4, 6], bad[0, 0] = np.nan, np.inf, -np.inf
    ops.count_nonfinite(_up(bad), out, 2)
    ops.count_nonfinite(_up(a), out, 2)
    result = _down(out)
    expected = np.sum(np.square(a, dtype=np.float64)) + np.sum(np.square(a[:2], dtype=np.float64))
    np.testing.assert_allclose(result[0], expected, rtol=1e-6 if dtype == "float32" else 1e-13)
    assert result[1] == 0 and result[2] == 3


@needs_cuda
def test_shared_memory_kernels_are_exact_when_threads_switch_often(cuda_runtime):
    # The GEMM tiles and the block reduction live in shared memory, one buffer
    # per block. Under the simulator this needs the conftest's atomic
    # allocation: without it a thread switch inside the allocation can hand
    # the threads of one block separate buffers, and results pick up
    # uninitialised memory (a loss of 1e217 in CI). Without the guard a few
    # of these 400 rounds go wrong in most runs.
    import sys

    from numrnn.kernels.cuda import launch_config
    from numrnn.kernels.cuda._common import matmul

    ops = _ops()
    values = np.arange(-30.0, 30.0)  # integers: every summation order is exact
    a, b = np.arange(12.0).reshape(3, 4), np.arange(8.0).reshape(4, 2)
    wrong = []
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        with launch_config(block=(2, 2), tile=2):
            for _ in range(400):
                sums = ops.zeros((3,), "float64")
                ops.sum_squares(_up(values), sums, 1, accumulate=False)
                product = ops.zeros((3, 2), "float64")
                matmul(_up(a), _up(b), product)
                if not np.array_equal(_down(sums), [0.0, np.sum(values**2), 0.0]):
                    wrong.append(("sum", _down(sums)))
                if not np.array_equal(_down(product), a @ b):
                    wrong.append(("gemm", _down(product)))
    finally:
        sys.setswitchinterval(saved)
    assert not wrong, wrong


@needs_cuda
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "make",
    [
        lambda: optimizers.SGD(0.1),
        lambda: optimizers.SGD(0.1, momentum=0.8, clipnorm=0.5),
        lambda: optimizers.SGD(0.1, momentum=0.8, nesterov=True, clipvalue=0.3),
        lambda: optimizers.Adam(0.05, global_clipnorm=0.7),
        lambda: optimizers.RMSprop(0.01, momentum=0.5, centered=True),
        lambda: optimizers.RMSprop(0.01),
    ],
    ids=["sgd", "momentum-clipnorm", "nesterov-clipvalue", "adam-global", "rmsprop-full",
         "rmsprop"],
)  # fmt: skip
def test_device_optimizer_updates_match_numpy(make, dtype, small_blocks):
    rng = np.random.default_rng(7)
    params = [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]
    host_opt, dev_opt = make(), make()
    host_params = [p.copy() for p in params]
    dev_params = [_up(p) for p in params]
    for _ in range(2):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        host_opt.update(host_params, grads)
        dev_opt.update(dev_params, [_up(g) for g in grads])
    assert dev_opt.iterations == host_opt.iterations == 2
    for host, dev in zip(host_params, dev_params):
        np.testing.assert_allclose(_down(dev), host, **TOL[dtype])
    # get_state keeps device slots on the device; set_state restores them
    state = dev_opt.get_state()
    dev_opt.update(dev_params, [_up(np.ones(p.shape, dtype)) for p in params])
    dev_opt.set_state(state)
    for host, dev in zip(host_params, dev_params):
        dev.copy_to_device(host)
    grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
    host_opt.update(host_params, grads)
    dev_opt.update(dev_params, [_up(g) for g in grads])
    for host, dev in zip(host_params, dev_params):
        np.testing.assert_allclose(_down(dev), host, **TOL[dtype])
    # slots come home, and the host optimizer continues identically
    dev_opt.slots_to_host()
    for name, slots in host_opt.get_state()["slots"].items():
        for host_slot, dev_slot in zip(slots, dev_opt.get_state()["slots"][name]):
            assert isinstance(dev_slot, np.ndarray)
            np.testing.assert_allclose(dev_slot, host_slot, **TOL[dtype])


@needs_cuda
def test_optimizer_resident_scope_moves_slots_once(small_blocks):
    from numrnn.layers.base import on_device

    opt = optimizers.Adam(0.1)
    params = [np.ones((2, 2))]
    opt.update(params, [np.ones((2, 2))])
    with opt.resident():
        assert all(on_device(s) for s in opt._slots["m"])
        dev = [_up(params[0])]
        opt.update(dev, [_up(np.ones((2, 2)))])
    assert all(isinstance(s, np.ndarray) for s in opt._slots["m"] + opt._slots["v"])
    reference = optimizers.Adam(0.1)
    ref_params = [np.ones((2, 2))]
    for _ in range(2):
        reference.update(ref_params, [np.ones((2, 2))])
    np.testing.assert_allclose(_down(dev[0]), ref_params[0], rtol=1e-12)
    np.testing.assert_allclose(opt._slots["v"][0], reference._slots["v"][0], rtol=1e-12)
