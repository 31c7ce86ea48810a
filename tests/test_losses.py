"""Tests for numrnn.losses: values, finite-difference gradients, masking."""

import numpy as np
import pytest

from numrnn import losses

RNG = np.random.default_rng(0)

REGRESSION_LOSSES = [
    losses.mean_squared_error,
    losses.mean_absolute_error,
    losses.huber,
]


def _finite_difference_grad(loss_fn, y_true, y_pred, eps=1e-6, **kwargs):
    grad = np.zeros_like(y_pred)
    flat_pred = y_pred.reshape(-1)
    flat_grad = grad.reshape(-1)
    for i in range(flat_pred.size):
        saved = flat_pred[i]
        flat_pred[i] = saved + eps
        plus, _ = loss_fn(y_true, y_pred, **kwargs)
        flat_pred[i] = saved - eps
        minus, _ = loss_fn(y_true, y_pred, **kwargs)
        flat_pred[i] = saved
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def _reference_reduce(entry_loss, sample_weight=None, mask=None):
    weights = np.ones(entry_loss.shape)
    if sample_weight is not None:
        weights = weights * sample_weight.reshape((-1,) + (1,) * (entry_loss.ndim - 1))
    counted = np.ones(entry_loss.shape, bool) if mask is None else mask
    return np.sum((weights * entry_loss)[counted]) / counted.sum()


def _regression_case(shape):
    y_true = RNG.normal(size=shape)
    # keep errors away from the kinks of mae/huber so finite differences are exact
    offsets = RNG.uniform(0.2, 0.8, size=shape) * RNG.choice([-1, 1], size=shape)
    offsets[..., 0] *= 3.0
    return y_true, y_true + offsets


@pytest.mark.parametrize("shape", [(5, 3), (4, 6, 2)])
def test_regression_values_match_numpy(shape):
    y_true, y_pred = _regression_case(shape)
    diff = y_pred - y_true
    delta = 1.0
    abs_diff = np.abs(diff)
    huber_elem = np.where(abs_diff <= delta, 0.5 * diff**2, delta * (abs_diff - 0.5 * delta))
    expected = {
        losses.mean_squared_error: np.mean(diff**2, axis=-1),
        losses.mean_absolute_error: np.mean(abs_diff, axis=-1),
        losses.huber: np.mean(huber_elem, axis=-1),
    }
    sample_weight = RNG.uniform(0.5, 2.0, size=shape[0])
    mask = RNG.random(shape[:-1]) > 0.3
    mask.reshape(-1)[0] = True
    for loss_fn, entry in expected.items():
        value, _ = loss_fn(y_true, y_pred)
        assert value == pytest.approx(entry.mean(), rel=1e-12)
        value, _ = loss_fn(y_true, y_pred, sample_weight=sample_weight, mask=mask)
        assert value == pytest.approx(_reference_reduce(entry, sample_weight, mask), rel=1e-12)


def test_huber_delta():
    y_true = np.zeros((1, 2))
    y_pred = np.array([[0.5, 3.0]])
    value, _ = losses.huber(y_true, y_pred, delta=2.0)
    assert value == pytest.approx((0.5 * 0.25 + 2.0 * (3.0 - 1.0)) / 2)
    with pytest.raises(ValueError, match="delta"):
        losses.huber(y_true, y_pred, delta=0.0)


@pytest.mark.parametrize("loss_fn", REGRESSION_LOSSES)
@pytest.mark.parametrize("shape", [(4, 3), (3, 5, 2)])
def test_regression_gradients_by_finite_differences(loss_fn, shape):
    y_true, y_pred = _regression_case(shape)
    sample_weight = RNG.uniform(0.5, 2.0, size=shape[0])
    mask = RNG.random(shape[:-1]) > 0.3
    mask.reshape(-1)[0] = True
    kwargs = {"sample_weight": sample_weight, "mask": mask}
    _, grad = loss_fn(y_true, y_pred, **kwargs)
    numeric = _finite_difference_grad(loss_fn, y_true, y_pred, **kwargs)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_binary_crossentropy_value_and_gradient():
    logits = RNG.normal(scale=3.0, size=(6, 4, 2))
    y_true = (RNG.random(logits.shape) > 0.5).astype(float)
    prob = 1 / (1 + np.exp(-logits))
    entry = np.mean(-(y_true * np.log(prob) + (1 - y_true) * np.log(1 - prob)), axis=-1)
    mask = RNG.random((6, 4)) > 0.4
    mask[0, 0] = True
    sample_weight = RNG.uniform(0.5, 2.0, size=6)
    value, grad = losses.binary_crossentropy_from_logits(
        y_true, logits, sample_weight=sample_weight, mask=mask
    )
    assert value == pytest.approx(_reference_reduce(entry, sample_weight, mask), rel=1e-12)
    numeric = _finite_difference_grad(
        losses.binary_crossentropy_from_logits,
        y_true,
        logits,
        sample_weight=sample_weight,
        mask=mask,
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("shape", [(5, 3), (4, 6, 3)])
def test_categorical_crossentropy_value_and_gradient(sparse, shape):
    logits = RNG.normal(scale=2.0, size=shape)
    labels = RNG.integers(0, shape[-1], size=shape[:-1])
    one_hot = np.eye(shape[-1])[labels]
    log_probs = logits - np.log(np.sum(np.exp(logits), axis=-1, keepdims=True))
    entry = -np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    mask = RNG.random(shape[:-1]) > 0.3
    mask.reshape(-1)[0] = True
    sample_weight = RNG.uniform(0.5, 2.0, size=shape[0])
    target = labels if sparse else one_hot
    kwargs = {"sample_weight": sample_weight, "mask": mask}
    value, grad = losses.categorical_crossentropy_from_logits(target, logits, **kwargs)
    assert value == pytest.approx(_reference_reduce(entry, sample_weight, mask), rel=1e-12)
    numeric = _finite_difference_grad(
        losses.categorical_crossentropy_from_logits, target, logits, **kwargs
    )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    sparse_value, sparse_grad = losses.sparse_categorical_crossentropy_from_logits(
        labels, logits, **kwargs
    )
    assert sparse_value == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(sparse_grad, grad, rtol=1e-12, atol=1e-15)


ALL_CASES = [
    ("mse", lambda shape: RNG.normal(size=shape)),
    ("mae", lambda shape: RNG.normal(size=shape)),
    ("huber", lambda shape: RNG.normal(size=shape)),
    ("binary_crossentropy", lambda shape: (RNG.random(shape) > 0.5).astype(float)),
    ("categorical_crossentropy", lambda shape: np.eye(shape[-1])[RNG.integers(0, 3, shape[:-1])]),
    ("sparse_categorical_crossentropy", lambda shape: RNG.integers(0, 3, shape[:-1])),
]


@pytest.mark.parametrize("name, make_target", ALL_CASES)
def test_padded_entries_change_nothing(name, make_target):
    loss_fn = losses.get(name)
    shape = (4, 5, 3)
    y_true = make_target(shape)
    y_pred = RNG.normal(size=shape)
    mask = np.ones((4, 5), dtype=bool)
    mask[1, 3:] = False
    mask[3, 1:] = False
    value, grad = loss_fn(y_true, y_pred, mask=mask)

    garbage_pred = y_pred.copy()
    garbage_pred[~mask] = np.nan
    garbage_true = np.array(y_true, dtype=float)
    garbage_true[~mask] = 1e30 if garbage_true.ndim == 3 else 77
    value2, grad2 = loss_fn(garbage_true, garbage_pred, mask=mask)
    assert value2 == value
    np.testing.assert_array_equal(grad2, grad)
    assert np.all(grad[~mask] == 0)

    # dropping the padded steps gives the same value as computing on the kept ones
    kept_value, _ = loss_fn(y_true[mask][:, None], y_pred[mask][:, None])
    assert value == pytest.approx(kept_value, rel=1e-12)


@pytest.mark.parametrize("name, make_target", ALL_CASES)
def test_nothing_counted_gives_zero(name, make_target):
    loss_fn = losses.get(name)
    y_true = make_target((3, 3))
    value, grad = loss_fn(y_true, RNG.normal(size=(3, 3)), mask=np.zeros(3, bool))
    assert value == 0.0
    assert np.all(grad == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-3e38, 3e38, 5.0]], dtype=dtype)
    if dtype == np.float64:
        logits[1, :2] = [-1e300, 1e300]
    y_binary = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    value, grad = losses.binary_crossentropy_from_logits(y_binary, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert grad.dtype == dtype
    labels = np.array([1, 0])
    value, grad = losses.sparse_categorical_crossentropy_from_logits(labels, logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    value, grad = losses.categorical_crossentropy_from_logits(np.eye(3)[labels], logits)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # correct, confident predictions cost ~0
    value, _ = losses.sparse_categorical_crossentropy_from_logits(
        np.array([0]), np.array([[1e4, -1e4, 0.0]], dtype=dtype)
    )
    assert value == pytest.approx(0.0, abs=1e-6)


def test_gradient_dtype_follows_predictions():
    y_true = np.zeros((2, 2))
    _, grad = losses.mean_squared_error(y_true, np.ones((2, 2), dtype=np.float32))
    assert grad.dtype == np.float32


def test_stable_activations():
    z = np.array([-1000.0, -5.0, 0.0, 5.0, 1000.0])
    np.testing.assert_allclose(
        losses.sigmoid(z), [0.0, 1 / (1 + np.exp(5)), 0.5, 1 / (1 + np.exp(-5)), 1.0]
    )
    probs = losses.softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    np.testing.assert_allclose(probs[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(
        np.exp(losses.log_softmax(np.array([1.0, 2.0, 3.0]))),
        losses.softmax(np.array([1.0, 2.0, 3.0])),
    )


def test_bad_shapes_and_labels():
    with pytest.raises(ValueError, match="must match"):
        losses.mean_squared_error(np.zeros((3, 2)), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="mask has shape"):
        losses.mean_squared_error(np.zeros((3, 2)), np.zeros((3, 2)), mask=np.ones(4, bool))
    with pytest.raises(ValueError, match="sample_weight"):
        losses.mean_squared_error(np.zeros((3, 2)), np.zeros((3, 2)), sample_weight=np.ones(2))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        losses.sparse_categorical_crossentropy_from_logits(np.array([0, 3]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="output axis"):
        losses.mean_squared_error(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="Unknown loss"):
        losses.get("hinge")
    assert losses.get(losses.huber) is losses.huber
