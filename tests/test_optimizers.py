"""Tests for numrnn.optimizers: hand-computed steps, convergence, clipping, state."""

import numpy as np
import pytest

from numrnn import optimizers


def _params_and_grads():
    rng = np.random.default_rng(1)
    params = [rng.normal(size=(3, 2)), rng.normal(size=4)]
    grads = [rng.normal(size=(3, 2)), rng.normal(size=4)]
    return params, grads


def _steps(opt, params, grad_sequence):
    params = [p.copy() for p in params]
    for grads in grad_sequence:
        opt.update(params, grads)
    return params


def test_sgd_plain_step():
    params, grads = _params_and_grads()
    new = _steps(optimizers.SGD(learning_rate=0.1), params, [grads])
    for p, g, n in zip(params, grads, new, strict=True):
        np.testing.assert_allclose(n, p - 0.1 * g)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_momentum_two_steps(nesterov):
    params, grads = _params_and_grads()
    grads2 = [2.0 * g + 0.5 for g in grads]
    lr, mu = 0.1, 0.9
    new = _steps(optimizers.SGD(lr, momentum=mu, nesterov=nesterov), params, [grads, grads2])
    for p, g1, g2, n in zip(params, grads, grads2, new, strict=True):
        v = -lr * g1
        w = p + (mu * v - lr * g1 if nesterov else v)
        v = mu * v - lr * g2
        w = w + (mu * v - lr * g2 if nesterov else v)
        np.testing.assert_allclose(n, w, rtol=1e-13)


def test_adam_two_steps():
    params, grads = _params_and_grads()
    grads2 = [g * -1.5 for g in grads]
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    new = _steps(optimizers.Adam(lr), params, [grads, grads2])
    for p, g1, g2, n in zip(params, grads, grads2, new, strict=True):
        m = np.zeros_like(p)
        v = np.zeros_like(p)
        w = p.copy()
        for t, g in enumerate([g1, g2], start=1):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g**2
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            # Keras' epsilon is "epsilon hat": added to sqrt(v), not sqrt(v_hat)
            w = w - lr * m_hat / (np.sqrt(v_hat) + eps / np.sqrt(1 - b2**t))
        np.testing.assert_allclose(n, w, rtol=1e-12)


@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.5])
def test_rmsprop_two_steps(centered, momentum):
    params, grads = _params_and_grads()
    grads2 = [g * 0.3 - 0.1 for g in grads]
    lr, rho, eps = 0.01, 0.9, 1e-7
    opt = optimizers.RMSprop(lr, rho=rho, momentum=momentum, centered=centered)
    new = _steps(opt, params, [grads, grads2])
    for p, g1, g2, n in zip(params, grads, grads2, new, strict=True):
        ms = np.zeros_like(p)
        mg = np.zeros_like(p)
        mom = np.zeros_like(p)
        w = p.copy()
        for g in (g1, g2):
            ms = rho * ms + (1 - rho) * g**2
            mg = rho * mg + (1 - rho) * g
            denom = ms - mg**2 + eps if centered else ms + eps
            inc = lr * g / np.sqrt(denom)
            mom = momentum * mom + inc
            w = w - (mom if momentum else inc)
        np.testing.assert_allclose(n, w, rtol=1e-12)


def test_rmsprop_keras_docstring_example():
    # keras.optimizers.RMSprop(0.1) minimising var**2 / 2 from 10.0 gives 9.683772
    var = [np.array([10.0])]
    optimizers.RMSprop(learning_rate=0.1).update(var, [var[0].copy()])
    assert var[0][0] == pytest.approx(9.683772, abs=1e-6)


@pytest.mark.parametrize(
    "opt",
    [
        optimizers.SGD(0.05),
        optimizers.SGD(0.02, momentum=0.9),
        optimizers.SGD(0.02, momentum=0.9, nesterov=True),
        optimizers.Adam(0.1),
        optimizers.RMSprop(0.05),
        optimizers.RMSprop(0.01, momentum=0.5, centered=True),
    ],
    ids=repr,
)
def test_converges_on_quadratic(opt):
    # f(w) = 0.5 (w - c)^T A (w - c), A positive definite
    a_matrix = np.diag([1.0, 3.0, 10.0])
    target = np.array([1.0, -2.0, 0.5])
    w = np.zeros(3)
    for _ in range(3000):
        opt.update([w], [a_matrix @ (w - target)])
    np.testing.assert_allclose(w, target, atol=2e-2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_updates_keep_dtype_and_identity(dtype):
    params = [np.ones((2, 2), dtype=dtype)]
    alias = params[0]
    for opt in (optimizers.SGD(momentum=0.9), optimizers.Adam(), optimizers.RMSprop()):
        opt.update(params, [np.full((2, 2), 0.5)])
        assert params[0] is alias and alias.dtype == dtype


def test_clip_by_norm_per_array():
    grads = [np.array([3.0, 4.0]), np.array([0.3, 0.4])]
    clipped = optimizers.clip_gradients(grads, clipnorm=1.0)
    np.testing.assert_allclose(clipped[0], [0.6, 0.8])
    np.testing.assert_allclose(clipped[1], [0.3, 0.4])
    np.testing.assert_allclose(grads[0], [3.0, 4.0])  # inputs untouched


def test_clip_by_global_norm():
    grads = [np.array([3.0, 0.0]), np.array([0.0, 4.0])]
    clipped = optimizers.clip_gradients(grads, global_clipnorm=2.5)
    np.testing.assert_allclose(clipped[0], [1.5, 0.0])
    np.testing.assert_allclose(clipped[1], [0.0, 2.0])
    unchanged = optimizers.clip_gradients(grads, global_clipnorm=10.0)
    np.testing.assert_allclose(unchanged[1], grads[1])


def test_clip_by_value_and_in_optimizer():
    clipped = optimizers.clip_gradients([np.array([-5.0, 0.2, 7.0])], clipvalue=1.0)
    np.testing.assert_allclose(clipped[0], [-1.0, 0.2, 1.0])
    w = [np.zeros(3)]
    optimizers.SGD(1.0, clipvalue=0.5).update(w, [np.array([-5.0, 0.2, 7.0])])
    np.testing.assert_allclose(w[0], [0.5, -0.2, -0.5])
    w = [np.zeros(2)]
    optimizers.SGD(1.0, clipnorm=1.0).update(w, [np.array([3.0, 4.0])])
    np.testing.assert_allclose(w[0], [-0.6, -0.8])


def test_clip_options_are_exclusive_and_positive():
    with pytest.raises(ValueError, match="Only one of"):
        optimizers.Adam(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="clipnorm must be a positive"):
        optimizers.clip_gradients([np.ones(2)], clipnorm=-1.0)


def test_state_roundtrip_is_a_deep_copy():
    params, grads = _params_and_grads()
    opt = optimizers.Adam(0.01)
    opt.update(params, grads)
    state = opt.get_state()
    saved_params = [p.copy() for p in params]
    opt.update(params, grads)
    after_two = [p.copy() for p in params]
    assert state["iterations"] == 1
    # restore and redo: identical result, and the saved state was not mutated
    for p, s in zip(params, saved_params, strict=True):
        p[...] = s
    opt.set_state(state)
    opt.update(params, grads)
    for p, a in zip(params, after_two, strict=True):
        np.testing.assert_array_equal(p, a)
    assert state["iterations"] == 1
    opt.set_state(state)
    assert opt.iterations == 1


def test_errors():
    with pytest.raises(ValueError, match="learning_rate"):
        optimizers.SGD(learning_rate=0)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("adagrad")
    assert isinstance(optimizers.get("Adam", learning_rate=0.1), optimizers.Adam)
    opt = optimizers.SGD()
    with pytest.raises(ValueError, match="parallel"):
        opt.update([np.zeros(2)], [])
    with pytest.raises(ValueError, match="shape"):
        opt.update([np.zeros(2)], [np.zeros(3)])
    adam = optimizers.Adam()
    adam.update([np.zeros(2)], [np.ones(2)])
    with pytest.raises(ValueError, match="new optimizer"):
        adam.update([np.zeros(3)], [np.ones(3)])
