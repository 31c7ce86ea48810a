"""Loss functions that return their value and their gradient.

Every loss has the signature ``loss(y_true, y_pred, *, sample_weight=None,
mask=None)`` and returns ``(value, grad)``, where ``value`` is a Python
float and ``grad`` is the derivative of ``value`` with respect to
``y_pred`` (same shape and dtype as ``y_pred``).

Shapes
------
``y_pred`` has an output axis last: ``(N, k)`` for one prediction per
sequence or ``(N, T, k)`` for one per time step. An *entry* is one sample
(or one sample and time step); its loss is the mean over the ``k`` outputs,
as in Keras. ``y_true`` has the shape of ``y_pred``, except for the sparse
categorical cross-entropy, whose integer labels have the entry shape
``y_pred.shape[:-1]``.

Reduction
---------
``mask`` (bool, entry shape ``(N,)`` or ``(N, T)``, True = counts) and
``sample_weight`` (``(N,)``, broadcast over time steps, or one weight per
entry) combine as::

    value = sum(sample_weight * entry_loss over counted entries)
            / number of counted entries

so weights scale each entry's contribution while the denominator stays the
count of counted entries (Keras' ``"sum_over_batch_size"``). Entries that
do not count contribute nothing to the value or the gradient, whatever their
``y_true`` or ``y_pred`` values are (even NaN). With no counted entry the
value is 0 and the gradient is zero.

The cross-entropies take *logits* (pre-activation outputs) and are computed
with softplus / log-sum-exp, so arbitrarily large logits give finite
results.

Device
------
:func:`value_and_grad_on_device` computes the same value and gradient for
predictions held on a CUDA device (the device-resident fit of the
estimators): targets, weights and masks are uploaded, the gradient stays on
the device and the value is written into a device scalar.
"""

import numpy as np

__all__ = [
    "mean_squared_error",
    "mean_absolute_error",
    "huber",
    "binary_crossentropy_from_logits",
    "categorical_crossentropy_from_logits",
    "sparse_categorical_crossentropy_from_logits",
    "sigmoid",
    "softmax",
    "log_softmax",
    "get",
]


# --------------------------------------------------------------------------
# Stable activations (also used by estimators to turn logits into probabilities)
# --------------------------------------------------------------------------


def sigmoid(logits):
    """Logistic sigmoid, stable for logits of any magnitude.

    Parameters
    ----------
    logits : ndarray
        Input values.

    Returns
    -------
    ndarray
        ``1 / (1 + exp(-logits))`` with the dtype of ``logits``.
    """
    logits = np.asarray(logits)
    exp_neg_abs = np.exp(-np.abs(logits))
    positive = 1.0 / (1.0 + exp_neg_abs)
    return np.where(logits >= 0, positive, exp_neg_abs * positive).astype(logits.dtype, copy=False)


def log_softmax(logits, axis=-1):
    """Logarithm of the softmax along ``axis``, via a shifted log-sum-exp.

    Parameters
    ----------
    logits : ndarray
        Input values.
    axis : int, default=-1
        Axis over which the softmax normalises.

    Returns
    -------
    ndarray
        ``logits - logsumexp(logits, axis)``.
    """
    logits = np.asarray(logits)
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def softmax(logits, axis=-1):
    """Softmax along ``axis``, stable for logits of any magnitude.

    Parameters
    ----------
    logits : ndarray
        Input values.
    axis : int, default=-1
        Axis over which the output sums to one.

    Returns
    -------
    ndarray
        Probabilities with the shape and dtype of ``logits``.
    """
    logits = np.asarray(logits)
    exp_shifted = np.exp(logits - np.max(logits, axis=axis, keepdims=True))
    return exp_shifted / np.sum(exp_shifted, axis=axis, keepdims=True)


# --------------------------------------------------------------------------
# Shared reduction
# --------------------------------------------------------------------------


def _check_pred(y_pred):
    y_pred = np.asarray(y_pred)
    if y_pred.ndim < 2:
        raise ValueError(
            "y_pred must have an output axis last, shape (N, k) or (N, T, k); "
            f"got shape {y_pred.shape}."
        )
    if not np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype(np.float64)
    return y_pred


def _check_same_shape(y_true, y_pred):
    y_true = np.asarray(y_true)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; they must match."
        )
    return y_true


def _entry_weights(entry_shape, sample_weight, mask):
    """Return (weights, counted) for each entry; weights are 0 where not counted."""
    counted = np.ones(entry_shape, dtype=bool)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != entry_shape:
            raise ValueError(
                f"mask has shape {mask.shape}; expected the entry shape {entry_shape} "
                "(y_pred's shape without its last axis)."
            )
        counted = mask
    weights = counted.astype(np.float64)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape == entry_shape:
            weights = weights * sample_weight
        elif sample_weight.shape == (entry_shape[0],):
            per_sample = sample_weight.reshape((-1,) + (1,) * (len(entry_shape) - 1))
            weights = weights * per_sample
        else:
            raise ValueError(
                f"sample_weight has shape {sample_weight.shape}; expected ({entry_shape[0]},), "
                f"one weight per sample, or the entry shape {entry_shape}."
            )
    return weights, counted


def _reduce(entry_loss, elementwise_grad, counted, weights, dtype, output_divisor):
    """Weighted mean over counted entries of per-entry losses.

    ``entry_loss`` has the entry shape. ``elementwise_grad`` is the derivative
    of the summed per-element loss; ``output_divisor`` is ``k`` when the entry
    loss averages its ``k`` outputs and 1 when it sums them.
    """
    n_counted = int(np.count_nonzero(counted))
    if n_counted == 0:
        return 0.0, np.zeros(elementwise_grad.shape, dtype=dtype)
    safe_loss = np.where(counted, entry_loss, 0.0)
    value = float(np.sum(weights * safe_loss) / n_counted)
    scale = (weights / (n_counted * output_divisor))[..., None]
    grad = np.where(counted[..., None], elementwise_grad * scale, 0.0)
    return value, grad.astype(dtype, copy=False)


# --------------------------------------------------------------------------
# Regression losses
# --------------------------------------------------------------------------


def mean_squared_error(y_true, y_pred, *, sample_weight=None, mask=None):
    """Mean squared error, ``mean_k (y_pred - y_true)**2`` per entry.

    Parameters
    ----------
    y_true : array-like of shape (N, k) or (N, T, k)
        Targets.
    y_pred : ndarray of the same shape
        Predictions.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``y_pred``.
    """
    y_pred = _check_pred(y_pred)
    y_true = _check_same_shape(y_true, y_pred)
    weights, counted = _entry_weights(y_pred.shape[:-1], sample_weight, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = y_pred.astype(np.float64) - y_true
        entry_loss = np.mean(diff * diff, axis=-1)
        return _reduce(entry_loss, 2.0 * diff, counted, weights, y_pred.dtype, y_pred.shape[-1])


def mean_absolute_error(y_true, y_pred, *, sample_weight=None, mask=None):
    """Mean absolute error, ``mean_k |y_pred - y_true|`` per entry.

    The gradient at ``y_pred == y_true`` is taken as 0.

    Parameters
    ----------
    y_true : array-like of shape (N, k) or (N, T, k)
        Targets.
    y_pred : ndarray of the same shape
        Predictions.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``y_pred``.
    """
    y_pred = _check_pred(y_pred)
    y_true = _check_same_shape(y_true, y_pred)
    weights, counted = _entry_weights(y_pred.shape[:-1], sample_weight, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = y_pred.astype(np.float64) - y_true
        entry_loss = np.mean(np.abs(diff), axis=-1)
        return _reduce(entry_loss, np.sign(diff), counted, weights, y_pred.dtype, y_pred.shape[-1])


def huber(y_true, y_pred, *, sample_weight=None, mask=None, delta=1.0):
    """Huber loss: quadratic for errors up to ``delta``, linear beyond.

    Per element, ``0.5 * e**2`` if ``|e| <= delta`` else
    ``delta * (|e| - 0.5 * delta)``, averaged over the ``k`` outputs.

    Parameters
    ----------
    y_true : array-like of shape (N, k) or (N, T, k)
        Targets.
    y_pred : ndarray of the same shape
        Predictions.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.
    delta : float, default=1.0
        Error size where the loss turns from quadratic to linear.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``y_pred``.
    """
    if not delta > 0:
        raise ValueError(f"huber delta must be positive; got {delta!r}.")
    y_pred = _check_pred(y_pred)
    y_true = _check_same_shape(y_true, y_pred)
    weights, counted = _entry_weights(y_pred.shape[:-1], sample_weight, mask)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = y_pred.astype(np.float64) - y_true
        abs_diff = np.abs(diff)
        quadratic = abs_diff <= delta
        elementwise = np.where(quadratic, 0.5 * diff * diff, delta * (abs_diff - 0.5 * delta))
        elementwise_grad = np.where(quadratic, diff, delta * np.sign(diff))
        entry_loss = np.mean(elementwise, axis=-1)
        return _reduce(
            entry_loss, elementwise_grad, counted, weights, y_pred.dtype, y_pred.shape[-1]
        )


# --------------------------------------------------------------------------
# Classification losses (from logits)
# --------------------------------------------------------------------------


def binary_crossentropy_from_logits(y_true, logits, *, sample_weight=None, mask=None):
    """Binary cross-entropy of sigmoid(logits), computed from the logits.

    Per element ``softplus(z) - y * z`` (equal to
    ``-y log sigmoid(z) - (1 - y) log(1 - sigmoid(z))``), averaged over the
    ``k`` outputs; the gradient is ``sigmoid(z) - y``, scaled by the
    reduction.

    Parameters
    ----------
    y_true : array-like of shape (N, k) or (N, T, k)
        Targets in [0, 1] (usually 0 or 1).
    logits : ndarray of the same shape
        Pre-sigmoid outputs.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``logits``.
    """
    logits = _check_pred(logits)
    y_true = _check_same_shape(y_true, logits)
    weights, counted = _entry_weights(logits.shape[:-1], sample_weight, mask)
    z = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        # softplus(z) = max(z, 0) + log1p(exp(-|z|)), finite for every finite z
        softplus = np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))
        entry_loss = np.mean(softplus - y_true * z, axis=-1)
        elementwise_grad = sigmoid(z) - y_true
        return _reduce(
            entry_loss, elementwise_grad, counted, weights, logits.dtype, logits.shape[-1]
        )


def categorical_crossentropy_from_logits(y_true, logits, *, sample_weight=None, mask=None):
    """Categorical cross-entropy of softmax(logits) over the last axis.

    Accepts one-hot (or probability) targets with the shape of ``logits``,
    or integer class labels with the entry shape ``logits.shape[:-1]``
    (then it is :func:`sparse_categorical_crossentropy_from_logits`).
    Per entry ``logsumexp(z) - sum(y * z)``; gradient ``softmax(z) - y``.

    Parameters
    ----------
    y_true : array-like of shape (N, K) / (N, T, K), or integer (N,) / (N, T)
        One-hot targets or integer labels in ``[0, K)``.
    logits : ndarray of shape (N, K) or (N, T, K)
        Pre-softmax outputs.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``logits``.
    """
    logits = _check_pred(logits)
    y_true = np.asarray(y_true)
    if y_true.shape == logits.shape[:-1]:
        return sparse_categorical_crossentropy_from_logits(
            y_true, logits, sample_weight=sample_weight, mask=mask
        )
    y_true = _check_same_shape(y_true, logits)
    weights, counted = _entry_weights(logits.shape[:-1], sample_weight, mask)
    z = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        log_probs = log_softmax(z)
        entry_loss = -np.sum(y_true * log_probs, axis=-1)
        # d/dz of -sum(y log softmax z) = softmax(z) * sum(y) - y
        elementwise_grad = np.exp(log_probs) * np.sum(y_true, axis=-1, keepdims=True) - y_true
        # the entry loss sums over classes (output_divisor=1)
        return _reduce(entry_loss, elementwise_grad, counted, weights, logits.dtype, 1)


def sparse_categorical_crossentropy_from_logits(y_true, logits, *, sample_weight=None, mask=None):
    """Categorical cross-entropy with integer class labels, from logits.

    Parameters
    ----------
    y_true : array-like of int, shape (N,) or (N, T)
        Class indices in ``[0, K)``. Entries that do not count may hold any
        value.
    logits : ndarray of shape (N, K) or (N, T, K)
        Pre-softmax outputs.
    sample_weight : array-like of shape (N,) or (N, T), default=None
        Per-sample (or per-entry) weights.
    mask : array-like of bool, shape (N,) or (N, T), default=None
        True where an entry counts.

    Returns
    -------
    value : float
        The reduced loss (see the module docstring).
    grad : ndarray
        Gradient of ``value`` with respect to ``logits``.
    """
    logits = _check_pred(logits)
    labels = np.asarray(y_true)
    entry_shape = logits.shape[:-1]
    if labels.shape != entry_shape:
        raise ValueError(
            f"Integer labels have shape {labels.shape}; expected {entry_shape} "
            "(logits' shape without the class axis)."
        )
    weights, counted = _entry_weights(entry_shape, sample_weight, mask)
    # padded entries may hold anything: replaced by class 0 before indexing
    labels = _checked_labels(labels, counted, logits.shape[-1])
    z = logits.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        log_probs = log_softmax(z)
        picked = np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
        entry_loss = -picked
        elementwise_grad = np.exp(log_probs)
        np.put_along_axis(
            elementwise_grad,
            labels[..., None],
            np.take_along_axis(elementwise_grad, labels[..., None], axis=-1) - 1.0,
            axis=-1,
        )
        return _reduce(entry_loss, elementwise_grad, counted, weights, logits.dtype, 1)


# loss function -> kind of numrnn.kernels.cuda.ops.LOSS_KINDS
_DEVICE_KINDS = {
    mean_squared_error: "mse",
    mean_absolute_error: "mae",
    huber: "huber",
    binary_crossentropy_from_logits: "binary_crossentropy",
    categorical_crossentropy_from_logits: "categorical_crossentropy",
    sparse_categorical_crossentropy_from_logits: "sparse_categorical_crossentropy",
}


def supports_device(loss):
    """True when :func:`value_and_grad_on_device` computes ``loss`` (a loss of this module)."""
    try:
        return loss in _DEVICE_KINDS
    except TypeError:  # unhashable callables
        return False


def _checked_labels(labels, counted, n_classes):
    """The sparse cross-entropy's label checks; integer labels (0 where not counted)."""
    labels = np.asarray(labels)
    with np.errstate(invalid="ignore"):
        labels = np.where(counted, labels, 0)
    if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
        raise ValueError("Integer class labels are required for the sparse cross-entropy.")
    labels = labels.astype(np.intp)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"Class labels must lie in [0, {n_classes}); got values from "
            f"{labels.min()} to {labels.max()}."
        )
    return labels


def value_and_grad_on_device(
    loss, y_true, y_pred, *, sample_weight=None, mask=None, out, slot=0, delta=1.0
):
    """A loss of this module on device predictions: value into ``out[slot]``, device gradient.

    Same reduction, weights and masks as the host functions (see the module
    docstring). Only the batch's targets, entry weights and mask go to the
    device; nothing comes back.

    Parameters
    ----------
    loss : callable
        One of :func:`mean_squared_error`, :func:`mean_absolute_error`,
        :func:`huber`, :func:`binary_crossentropy_from_logits`,
        :func:`categorical_crossentropy_from_logits` or
        :func:`sparse_categorical_crossentropy_from_logits`.
    y_true : array-like
        Host targets, as for ``loss``.
    y_pred : CUDA device array
        Predictions (logits for the cross-entropies), output axis last.
    sample_weight, mask : array-like, optional
        Host weights and entry mask, as for ``loss``.
    out : CUDA device array
        Receives the loss value at index ``slot`` (computed in float64,
        stored in ``out``'s dtype, which must be ``y_pred``'s).
    slot : int, default=0
    delta : float, default=1.0
        Threshold of :func:`huber`.

    Returns
    -------
    CUDA device array
        The gradient with respect to ``y_pred`` (its shape and dtype).

    Raises
    ------
    ValueError
        If ``loss`` has no device version, or for the same bad inputs as ``loss``.
    """
    if not supports_device(loss):
        raise ValueError(
            f"{getattr(loss, '__name__', loss)!r} has no device version; device losses are "
            f"{', '.join(sorted(f.__name__ for f in _DEVICE_KINDS))}."
        )
    if not delta > 0:
        raise ValueError(f"huber delta must be positive; got {delta!r}.")
    from numrnn.kernels import get_backend

    backend = get_backend("cuda")
    ops = backend.ops
    kind = _DEVICE_KINDS[loss]
    shape = tuple(y_pred.shape)
    if len(shape) < 2:
        raise ValueError(
            f"y_pred must have an output axis last, shape (N, k) or (N, T, k); got shape {shape}."
        )
    entry_shape = shape[:-1]
    n_out = shape[-1]
    y_true = np.asarray(y_true)
    if kind == "categorical_crossentropy" and y_true.shape == entry_shape:
        kind = "sparse_categorical_crossentropy"
    if kind == "sparse_categorical_crossentropy":
        if y_true.shape != entry_shape:
            raise ValueError(
                f"Integer labels have shape {y_true.shape}; expected {entry_shape} "
                "(logits' shape without the class axis)."
            )
    elif y_true.shape != shape:
        raise ValueError(
            f"y_true has shape {y_true.shape} but y_pred has shape {shape}; they must match."
        )
    weights, counted = _entry_weights(entry_shape, sample_weight, mask)
    n_counted = int(np.count_nonzero(counted))
    if n_counted == 0:
        ops.fill_(out[slot : slot + 1], 0.0)
        return ops.zeros(shape, y_pred.dtype)
    n_entries = int(np.prod(entry_shape))
    dtype = np.dtype(y_pred.dtype)
    if kind == "sparse_categorical_crossentropy":
        # class indices travel as whole numbers in the predictions' dtype
        true = _checked_labels(y_true, counted, n_out).astype(dtype).reshape(n_entries)
    else:
        true = np.ascontiguousarray(y_true, dtype=dtype).reshape(n_entries, n_out)
    divisor = 1 if kind.endswith("categorical_crossentropy") else n_out
    grad = ops.loss_value_and_grad(
        ops.LOSS_KINDS[kind],
        y_pred.reshape(n_entries, n_out),
        backend.to_device(true),
        backend.to_device(np.ascontiguousarray(counted).reshape(n_entries)),
        backend.to_device(np.ascontiguousarray(weights, dtype=dtype).reshape(n_entries)),
        n_counted,
        divisor,
        out,
        slot,
        delta,
    )
    return grad.reshape(*shape)


_LOSSES = {
    "mse": mean_squared_error,
    "mean_squared_error": mean_squared_error,
    "mae": mean_absolute_error,
    "mean_absolute_error": mean_absolute_error,
    "huber": huber,
    "binary_crossentropy": binary_crossentropy_from_logits,
    "categorical_crossentropy": categorical_crossentropy_from_logits,
    "sparse_categorical_crossentropy": sparse_categorical_crossentropy_from_logits,
}


def get(name):
    """Return the loss function registered under ``name``.

    Parameters
    ----------
    name : str or callable
        One of ``'mse'``, ``'mae'``, ``'huber'``, ``'binary_crossentropy'``,
        ``'categorical_crossentropy'``, ``'sparse_categorical_crossentropy'``
        (or the long names ``'mean_squared_error'``,
        ``'mean_absolute_error'``). A callable is returned unchanged.

    Returns
    -------
    callable
        ``loss(y_true, y_pred, *, sample_weight=None, mask=None) -> (value, grad)``.
    """
    if callable(name):
        return name
    try:
        return _LOSSES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown loss {name!r}: expected one of {', '.join(sorted(_LOSSES))}."
        ) from None
