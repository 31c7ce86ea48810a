"""Central finite-difference checks of vector-Jacobian products.

A vjp is checked through the scalar ``L(params) = sum_k sum(f_k(params) *
cot_k)``: its gradient with respect to each parameter is exactly the vjp of
``f`` with the cotangents ``cot_k``. ``numeric_vjp`` differences ``L`` one
parameter entry at a time, ``(L(p + eps) - L(p - eps)) / (2 eps)``, in
float64; ``assert_vjp_close`` compares that with the analytic vjp.

Error budget in float64 with ``eps = 1e-6``: truncation ``~eps**2 * L'''``
(about 1e-12) plus rounding ``~1e-16 * |L| / eps`` (about 1e-10 * |L|), so
a tolerance of ``1e-6`` times the gradient scale leaves a margin of several
orders of magnitude while any real mistake (a missing term, a wrong sign, a
transposed weight) is off by far more. ``test_layers_gradcheck.py`` proves
that the check fails for a deliberately wrong gradient.

Keep the shapes tiny: ``numeric_vjp`` calls ``f`` twice per entry.
"""

import numpy as np

__all__ = ["assert_vjp_close", "check_vjp", "loss_of", "numeric_vjp"]

DEFAULT_EPS = 1e-6
DEFAULT_TOL = 1e-6


def _as_list(outputs):
    if isinstance(outputs, (list, tuple)):
        return list(outputs)
    return [outputs]


def loss_of(f, params, cotangents):
    """Return ``sum_k sum(f(*params)[k] * cotangents[k])`` as a float."""
    outputs = _as_list(f(*params))
    if len(outputs) != len(cotangents):
        raise AssertionError(f"f returned {len(outputs)} outputs for {len(cotangents)} cotangents")
    total = 0.0
    for k, (out, cot) in enumerate(zip(outputs, cotangents, strict=True)):
        out = np.asarray(out, dtype=np.float64)
        cot = np.asarray(cot, dtype=np.float64)
        if out.shape != cot.shape:
            raise AssertionError(f"output {k} has shape {out.shape}, cotangent {cot.shape}")
        total += float(np.sum(out * cot))
    return total


def numeric_vjp(f, params, cotangents, eps=DEFAULT_EPS):
    """Central finite-difference vjp of ``f`` at ``params``.

    Parameters
    ----------
    f : callable
        ``f(*params)`` returns an array or a list of arrays. It must not keep
        references to (or modify) the arrays it is given.
    params : list of ndarray or None
        Points of evaluation; float64 arrays are differenced, ``None``
        entries are passed through and get a ``None`` gradient.
    cotangents : list of ndarray
        One per output of ``f``.
    eps : float
        Finite-difference step.

    Returns
    -------
    list of ndarray or None, parallel to ``params``.
    """
    params = [None if p is None else np.array(p, dtype=np.float64) for p in params]
    cotangents = [np.asarray(c, dtype=np.float64) for c in cotangents]
    grads = []
    for p in params:
        if p is None:
            grads.append(None)
            continue
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            original = p[idx]
            p[idx] = original + eps
            plus = loss_of(f, params, cotangents)
            p[idx] = original - eps
            minus = loss_of(f, params, cotangents)
            p[idx] = original
            g[idx] = (plus - minus) / (2.0 * eps)
        grads.append(g)
    return grads


def assert_vjp_close(analytic, numeric, names=None, tol=DEFAULT_TOL):
    """Assert that every analytic gradient matches its numeric twin.

    For each pair the check is ``max|analytic - numeric| <= tol * scale``
    with ``scale = max(1, max|numeric|)``: absolute for gradients of order
    one or less, relative for larger ones. ``None`` must pair with ``None``.
    """
    analytic = list(analytic)
    numeric = list(numeric)
    if names is None:
        names = [f"param[{i}]" for i in range(len(numeric))]
    if len(analytic) != len(numeric):
        raise AssertionError(f"{len(analytic)} analytic gradients for {len(numeric)} parameters")
    failures = []
    for name, a, n in zip(names, analytic, numeric, strict=True):
        if n is None:
            if a is not None:
                failures.append(f"{name}: expected no gradient (None), got an array")
            continue
        if a is None:
            failures.append(f"{name}: analytic gradient is None")
            continue
        a = np.asarray(a)
        if a.shape != n.shape:
            failures.append(f"{name}: analytic shape {a.shape} != parameter shape {n.shape}")
            continue
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            failures.append(f"{name}: analytic gradient has non-finite entries")
            continue
        err = np.abs(a - n)
        scale = max(1.0, float(np.max(np.abs(n), initial=0.0)))
        worst = float(np.max(err, initial=0.0))
        if worst > tol * scale:
            idx = np.unravel_index(int(np.argmax(err)), err.shape)
            failures.append(
                f"{name}: max abs err {worst:.3e} > {tol:.1e} * {scale:.3g} at {idx} "
                f"(analytic {a[idx]:.10g}, numeric {n[idx]:.10g})"
            )
    if failures:
        raise AssertionError("vjp mismatch:\n  " + "\n  ".join(failures))


def check_vjp(f, params, cotangents, analytic, names=None, eps=DEFAULT_EPS, tol=DEFAULT_TOL):
    """Check the analytic vjp ``analytic`` of ``f`` at ``params``.

    ``analytic`` is parallel to ``params`` (``None`` where ``params`` has
    ``None``). Raises ``AssertionError`` naming each mismatching parameter.
    Returns the numeric gradients.
    """
    for i, p in enumerate(params):
        if p is not None and np.asarray(p).dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 parameters, param {i} is {p.dtype}")
    numeric = numeric_vjp(f, params, cotangents, eps=eps)
    assert_vjp_close(analytic, numeric, names=names, tol=tol)
    return numeric


def check_layer_vjp(layer, weights, x, cotangents, mask=None, initial_state=None):
    """Check ``layer.vjp`` (weight, input and initial-state gradients) by finite
    differences at ``weights`` (float64, ``get_weights()`` order), with
    ``mask`` and ``initial_state``; the layer gets ``weights`` back afterwards."""
    initial_state = list(initial_state or [])
    weight_grads, input_grad, state_grads = layer.vjp(
        x, cotangents, mask=mask, initial_state=initial_state or None
    )

    def f(*params):
        n = len(weights)
        layer.set_weights(list(params[:n]))
        states = list(params[n + 1 :]) or None
        return [layer(params[n], mask=mask, initial_state=states)]

    params = [np.array(w) for w in weights] + [x] + initial_state
    analytic = list(weight_grads) + [input_grad] + list(state_grads or [])
    try:
        return check_vjp(f, params, cotangents, analytic)
    finally:
        layer.set_weights(weights)
