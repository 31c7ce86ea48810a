"""Finite-difference checks of ``layer.vjp`` / ``model.vjp`` in float64.

Every check compares the analytic vector-Jacobian product with central
differences of ``sum_k sum(f_k * cot_k)`` (see tests/gradcheck.py): weight
gradients, input gradients and initial-state gradients. Shapes are tiny so
the whole file stays fast. The cases are a few combined-option cases per
cell plus one-option-at-a-time sweeps, not the full cartesian product.
"""

import numpy as np
import pytest

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    import gradcheck as gc
    import reference as ref
except ImportError:  # tests is a package
    from tests import gradcheck as gc
    from tests import reference as ref

B, T, F, U = 3, 4, 3, 3
DTYPE = "float64"
ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"]

# Row 0: leading masked steps; row 1: masked steps in the middle and at the
# end; row 2: fully masked.
MASK = np.array(
    [
        [False, False, True, True],
        [True, False, True, False],
        [False, False, False, False],
    ]
)

CELLS = {
    "SimpleRNN": ("SimpleRNN", {}),
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {"reset_after": True}),
    "GRU_v1": ("GRU", {"reset_after": False}),
}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}


@pytest.fixture(scope="module")
def nl():
    from numrnn import layers

    return layers


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


# ==========================================================================
# the gradcheck helper checks itself
# ==========================================================================


def _toy(a, b, x):
    """f(A, b, x) = [tanh(x @ A + b), sum(x**2, axis=1)]."""
    return [np.tanh(x @ a + b), np.sum(x**2, axis=1)]


def _toy_vjp(a, b, x, cots):
    y = np.tanh(x @ a + b)
    d = cots[0] * (1 - y**2)
    return [x.T @ d, d.sum(0), d @ a.T + 2 * x * cots[1][:, None]]


@pytest.fixture
def toy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 2))
    b = rng.normal(size=(2,))
    x = rng.normal(size=(4, 3))
    cots = [rng.normal(size=(4, 2)), rng.normal(size=(4,))]
    return [a, b, x], cots


def test_gradcheck_accepts_correct_vjp(toy):
    params, cots = toy
    numeric = gc.check_vjp(_toy, params, cots, _toy_vjp(*params, cots), names=["A", "b", "x"])
    # and the numeric gradient is accurate far below the tolerance
    for n, a in zip(numeric, _toy_vjp(*params, cots), strict=True):
        assert np.max(np.abs(n - a)) < 1e-8


@pytest.mark.parametrize(
    "corrupt",
    [
        "scale_1e-4",
        "one_entry_1e-5",
        "transpose_term",
        "missing_term",
        "sign",
        "none",
        "shape",
        "nan",
    ],
)
def test_gradcheck_rejects_wrong_vjp(toy, corrupt):
    params, cots = toy
    grads = _toy_vjp(*params, cots)
    a, b, x = params
    if corrupt == "scale_1e-4":
        grads[0] = grads[0] * (1 + 1e-4)
    elif corrupt == "one_entry_1e-5":
        grads[2] = grads[2].copy()
        grads[2][1, 2] += 1e-5
    elif corrupt == "transpose_term":  # d @ A instead of d @ A.T, via a wrong layout
        y = np.tanh(x @ a + b)
        d = cots[0] * (1 - y**2)
        grads[2] = (d[:, ::-1] @ a.T) + 2 * x * cots[1][:, None]
    elif corrupt == "missing_term":
        y = np.tanh(x @ a + b)
        grads[2] = (cots[0] * (1 - y**2)) @ a.T
    elif corrupt == "sign":
        grads[1] = -grads[1]
    elif corrupt == "none":
        grads[1] = None
    elif corrupt == "shape":
        grads[1] = grads[1][None, :]
    elif corrupt == "nan":
        grads[0] = grads[0].copy()
        grads[0][0, 0] = np.nan
    with pytest.raises(AssertionError, match="vjp mismatch"):
        gc.check_vjp(_toy, params, cots, grads, names=["A", "b", "x"])


def test_gradcheck_none_params_and_float64_requirement(toy):
    params, cots = toy
    a, b, x = params

    def f(a_, ids, x_):  # an integer "parameter" passed as None is not differenced
        return _toy(a_, b, x_)

    grads = _toy_vjp(*params, cots)
    gc.check_vjp(f, [a, None, x], cots, [grads[0], None, grads[2]])
    with pytest.raises(AssertionError, match="expected no gradient"):
        gc.check_vjp(f, [a, None, x], cots, grads)
    with pytest.raises(TypeError, match="float64"):
        gc.check_vjp(_toy, [a.astype(np.float32), b, x], cots, grads)


# ==========================================================================
# recurrent layers
# ==========================================================================

RS = {"return_sequences": True, "return_state": True}

COMBINED = [
    {"mask": True, "initial_state": True, "go_backwards": True, **RS},
    {"mask": True, "initial_state": True, "use_bias": False, "return_state": True},
    {"mask": True, "zero_output_for_mask": True, "go_backwards": True, **RS},
    {"mask": True, "zero_output_for_mask": True, "return_state": True},
    {"mask": True, "initial_state": True, "go_backwards": True, "use_bias": False},
]
SWEEP = [
    {},
    {"return_sequences": True},
    {"return_state": True},
    {"go_backwards": True},
    {"mask": True},
    {"mask": True, "return_sequences": True},
    {"initial_state": True},
    {"initial_state": True, "return_state": True},
    {"use_bias": False},
]
ACT_SWEEP = [{"activation": a, **RS} for a in ACTIVATIONS]
RACT_SWEEP = [{"recurrent_activation": a, **RS} for a in ACTIVATIONS]


def _case_id(opts):
    if not opts:
        return "default"
    short = {
        "return_sequences": "seq",
        "return_state": "state",
        "go_backwards": "back",
        "mask": "mask",
        "initial_state": "init",
        "zero_output_for_mask": "zero",
    }
    parts = []
    for k, v in opts.items():
        if k == "use_bias":
            parts.append("bias" if v else "nobias")
        elif k == "activation":
            parts.append(f"act={v}")
        elif k == "recurrent_activation":
            parts.append(f"ract={v}")
        else:
            parts.append(short[k])
    return "-".join(parts)


def _recurrent_params():
    params = []
    for name in CELLS:
        cases = COMBINED + SWEEP + ACT_SWEEP
        if name != "SimpleRNN":
            cases = cases + RACT_SWEEP
        for opts in cases:
            params.append(pytest.param(name, opts, id=f"{name}-{_case_id(opts)}"))
    return params


def _layer_vjp_check(layer, weights, x, cots_rng, mask=None, initial_state=None):
    """Check ``layer.vjp`` against finite differences; returns the vjp triple.

    Parameters checked: every weight, ``x`` when it is a float array, and
    every initial state array.
    """
    out = _as_list(layer(x, mask=mask, initial_state=initial_state))
    cots = [cots_rng.normal(size=o.shape) for o in out]
    weight_grads, input_grad, state_grads = layer.vjp(
        x, cots, mask=mask, initial_state=initial_state
    )
    weight_grads = list(weight_grads)
    assert len(weight_grads) == len(weights), "weight_grads must be parallel to get_weights()"
    if initial_state is None:
        assert state_grads is None, "initial_state_grads must be None without an initial state"
        state_grads = []
    else:
        assert state_grads is not None, "initial_state_grads missing"
        state_grads = list(state_grads)
        assert len(state_grads) == len(initial_state)

    is_float_input = np.issubdtype(np.asarray(x).dtype, np.floating)
    if not is_float_input:
        assert input_grad is None, "input_grad must be None for integer inputs"
    nw = len(weights)
    ns = 0 if initial_state is None else len(initial_state)

    def f(*params):
        layer.set_weights([np.array(p) for p in params[:nw]])
        xx = params[nw] if is_float_input else x
        st = None if initial_state is None else [np.array(s) for s in params[nw + 1 :]]
        return _as_list(layer(xx, mask=mask, initial_state=st))

    params = [np.array(w, dtype=np.float64) for w in weights]
    params.append(np.array(x, dtype=np.float64) if is_float_input else None)
    if initial_state is not None:
        params += [np.array(s, dtype=np.float64) for s in initial_state]
    analytic = weight_grads + [input_grad if is_float_input else None] + state_grads
    names = [f"weight[{i}]" for i in range(nw)] + ["input"]
    names += [f"initial_state[{i}]" for i in range(ns)]
    try:
        gc.check_vjp(f, params, cots, analytic, names=names)
    finally:
        layer.set_weights([np.array(w) for w in weights])
    return weight_grads, input_grad, state_grads


def _build_recurrent(nl, name, opts, seed=0):
    kind, extra = CELLS[name]
    opts = dict(opts)
    use_mask = opts.pop("mask", False)
    use_init = opts.pop("initial_state", False)
    rng = np.random.default_rng(seed)
    weights = ref.random_recurrent_weights(
        rng, kind, F, U, opts.get("use_bias", True), extra.get("reset_after", True)
    )
    layer = getattr(nl, kind)(U, dtype=DTYPE, **extra, **opts)
    layer.build((None, T, F))
    layer.set_weights(weights)
    x = rng.normal(size=(B, T, F))
    mask = MASK.copy() if use_mask else None
    init = None
    if use_init:
        init = [rng.normal(scale=0.5, size=(B, U)) for _ in range(N_STATES[kind])]
    return layer, weights, x, mask, init, rng


@pytest.mark.parametrize("name, opts", _recurrent_params())
def test_recurrent_vjp(nl, name, opts):
    layer, weights, x, mask, init, rng = _build_recurrent(nl, name, opts)
    _, input_grad, _ = _layer_vjp_check(layer, weights, x, rng, mask=mask, initial_state=init)
    if mask is not None:
        # Masked steps never influence anything: their input gradient is 0.
        np.testing.assert_array_equal(input_grad[~mask], 0.0)


@pytest.mark.parametrize("name", list(CELLS))
def test_recurrent_vjp_matches_reference_forward(nl, name):
    """The forward pass inside the gradcheck agrees with the reference too."""
    kind, extra = CELLS[name]
    opts = {"mask": True, "initial_state": True, "go_backwards": True, **RS}
    layer, weights, x, mask, init, _ = _build_recurrent(nl, name, opts)
    kw = {k: v for k, v in opts.items() if k not in ("mask", "initial_state")}
    rs, rst = kw.pop("return_sequences"), kw.pop("return_state")
    expected = ref.recurrent_layer(
        kind, x, weights, rs, rst, mask=mask, initial_state=init, **extra, **kw
    )
    got = _as_list(layer(x, mask=mask, initial_state=init))
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-10)


# ==========================================================================
# Bidirectional
# ==========================================================================

MERGE_MODES = ["concat", "sum", "mul", "ave", None]
BU = 2  # units inside Bidirectional: twice the weights, keep it small


@pytest.mark.parametrize("return_sequences", [True, False], ids=["seq", "last"])
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=lambda m: str(m))
@pytest.mark.parametrize("name", ["SimpleRNN", "LSTM", "GRU"])
def test_bidirectional_vjp(nl, name, merge_mode, return_sequences):
    kind, extra = CELLS[name]
    rng = np.random.default_rng(5)
    inner = getattr(nl, kind)(
        BU, return_sequences=return_sequences, return_state=True, dtype=DTYPE, **extra
    )
    bi = nl.Bidirectional(inner, merge_mode=merge_mode)
    bi.build((None, T, F))
    weights = ref.random_recurrent_weights(rng, kind, F, BU) + ref.random_recurrent_weights(
        rng, kind, F, BU
    )
    bi.set_weights(weights)
    x = rng.normal(size=(B, T, F))
    _layer_vjp_check(bi, weights, x, rng, mask=MASK.copy())


@pytest.mark.parametrize("name", ["LSTM", "GRU_v1"])
def test_bidirectional_vjp_initial_state(nl, name):
    kind, extra = CELLS[name]
    rng = np.random.default_rng(6)
    inner = getattr(nl, kind)(BU, return_sequences=True, return_state=True, dtype=DTYPE, **extra)
    bi = nl.Bidirectional(inner, merge_mode="concat")
    bi.build((None, T, F))
    ra = extra.get("reset_after", True)
    weights = ref.random_recurrent_weights(
        rng, kind, F, BU, reset_after=ra
    ) + ref.random_recurrent_weights(rng, kind, F, BU, reset_after=ra)
    bi.set_weights(weights)
    x = rng.normal(size=(B, T, F))
    init = [rng.normal(scale=0.5, size=(B, BU)) for _ in range(2 * N_STATES[kind])]
    _layer_vjp_check(bi, weights, x, rng, mask=MASK.copy(), initial_state=init)


# ==========================================================================
# Dense, TimeDistributed, Embedding
# ==========================================================================

DENSE_ACTIVATIONS = [None, "tanh", "sigmoid", "hard_sigmoid", "relu", "softmax"]


@pytest.mark.parametrize("use_bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("act", DENSE_ACTIVATIONS, ids=lambda a: str(a))
def test_dense_vjp(nl, act, use_bias):
    rng = np.random.default_rng(7)
    layer = nl.Dense(U, activation=act, use_bias=use_bias, dtype=DTYPE)
    layer.build((None, F))
    weights = [rng.normal(size=(F, U))] + ([rng.normal(size=(U,))] if use_bias else [])
    layer.set_weights(weights)
    x = rng.normal(size=(B, F))
    _layer_vjp_check(layer, weights, x, rng)


def test_dense_vjp_3d_input(nl):
    rng = np.random.default_rng(8)
    layer = nl.Dense(2, activation="tanh", dtype=DTYPE)
    layer.build((None, T, F))
    weights = [rng.normal(size=(F, 2)), rng.normal(size=(2,))]
    layer.set_weights(weights)
    _layer_vjp_check(layer, weights, rng.normal(size=(B, T, F)), rng)


@pytest.mark.parametrize("act", ["softmax", "relu"])
def test_time_distributed_dense_vjp(nl, act):
    rng = np.random.default_rng(9)
    layer = nl.TimeDistributed(nl.Dense(2, activation=act, dtype=DTYPE))
    layer.build((None, T, F))
    weights = [rng.normal(size=(F, 2)), rng.normal(size=(2,))]
    layer.set_weights(weights)
    _layer_vjp_check(layer, weights, rng.normal(size=(B, T, F)), rng)


@pytest.mark.parametrize("mask_zero", [False, True])
def test_embedding_vjp(nl, mask_zero):
    rng = np.random.default_rng(10)
    vocab, dim = 5, 2
    layer = nl.Embedding(vocab, dim, mask_zero=mask_zero, dtype=DTYPE)
    layer.build((None, T))
    weights = [rng.normal(size=(vocab, dim))]
    layer.set_weights(weights)
    ids = np.array([[0, 1, 1, 4], [2, 2, 2, 0], [3, 0, 4, 1]])  # repeats accumulate
    weight_grads, input_grad, _ = _layer_vjp_check(layer, weights, ids, rng)
    assert input_grad is None


# ==========================================================================
# Sequential
# ==========================================================================


def _model_vjp_check(model, x, rng, mask=None):
    weights = [np.array(w, dtype=np.float64) for w in model.get_weights()]
    out = _as_list(model(x, mask=mask))
    cots = [rng.normal(size=o.shape) for o in out]
    weight_grads, input_grad, state_grads = model.vjp(x, cots, mask=mask)
    weight_grads = list(weight_grads)
    assert len(weight_grads) == len(weights)
    assert state_grads is None
    is_float_input = np.issubdtype(np.asarray(x).dtype, np.floating)
    if not is_float_input:
        assert input_grad is None
    nw = len(weights)

    def f(*params):
        model.set_weights([np.array(p) for p in params[:nw]])
        return _as_list(model(params[nw] if is_float_input else x, mask=mask))

    params = weights + [np.array(x, dtype=np.float64) if is_float_input else None]
    analytic = weight_grads + [input_grad if is_float_input else None]
    names = [f"weight[{i}]" for i in range(nw)] + ["input"]
    try:
        gc.check_vjp(f, params, cots, analytic, names=names)
    finally:
        model.set_weights(weights)


def test_sequential_embedding_lstm_dense_vjp(nl):
    from numrnn import Sequential

    rng = np.random.default_rng(11)
    model = Sequential(
        [
            nl.Embedding(5, 2, mask_zero=True, dtype=DTYPE),
            nl.LSTM(2, return_sequences=True, dtype=DTYPE),
            nl.Dense(2, activation="softmax", dtype=DTYPE),
        ]
    )
    model.build((None, T))
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    ids = np.array([[0, 0, 3, 1], [2, 0, 4, 0], [1, 2, 3, 4]])
    _model_vjp_check(model, ids, rng)


def test_sequential_float_input_vjp(nl):
    """Masking -> GRU(seq) -> SimpleRNN -> Dense, input gradient included."""
    from numrnn import Sequential

    rng = np.random.default_rng(12)
    model = Sequential(
        [
            nl.Masking(0.0, dtype=DTYPE),
            nl.GRU(2, return_sequences=True, go_backwards=True, dtype=DTYPE),
            nl.SimpleRNN(2, dtype=DTYPE),
            nl.Dense(1, dtype=DTYPE),
        ]
    )
    model.build((None, T, F))
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    x = rng.normal(size=(B, T, F))
    x[0, :2] = 0.0
    x[1, 1] = 0.0
    # Entries of an all-zero (masked) step: differencing one of them unmasks
    # the step, so the function is discontinuous there. Check the gradient
    # with respect to the weights and the kept inputs only, via a wrapper.
    keep = np.any(x != 0.0, axis=-1)
    out = _as_list(model(x))
    cots = [rng.normal(size=o.shape) for o in out]
    weights = [np.array(w) for w in model.get_weights()]
    weight_grads, input_grad, state_grads = model.vjp(x, cots)
    assert state_grads is None
    nw = len(weights)

    def f(*params):
        model.set_weights([np.array(p) for p in params[:nw]])
        xx = x.copy()
        xx[keep] = params[nw]
        return _as_list(model(xx))

    params = weights + [x[keep].copy()]
    analytic = list(weight_grads) + [np.asarray(input_grad)[keep]]
    try:
        gc.check_vjp(f, params, cots, analytic)
    finally:
        model.set_weights(weights)
    np.testing.assert_array_equal(np.asarray(input_grad)[~keep], 0.0)


def test_sequential_explicit_mask_vjp(nl):
    from numrnn import Sequential

    rng = np.random.default_rng(13)
    model = Sequential(
        [
            nl.LSTM(2, return_sequences=True, dtype=DTYPE),
            nl.TimeDistributed(nl.Dense(2, activation="tanh", dtype=DTYPE)),
        ]
    )
    model.build((None, T, F))
    model.set_weights([rng.normal(scale=0.7, size=w.shape) for w in model.get_weights()])
    _model_vjp_check(model, rng.normal(size=(B, T, F)), rng, mask=MASK.copy())
