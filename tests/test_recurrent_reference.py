"""numrnn layers against the plain-numpy reference (tests/reference.py).

The first part checks the reference itself (hand computations and
invariants), so that the comparisons that follow rest on something solid.
The second part builds numrnn layers, loads random Keras-layout weights with
``set_weights`` and compares outputs and final states with the reference in
float32 (rtol = atol = 1e-5) and float64 (1e-10).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

try:  # tests/ on sys.path (pytest's default rootdir-less import mode)
    import reference as ref
except ImportError:  # tests is a package
    from tests import reference as ref

TOL = {"float32": 1e-5, "float64": 1e-10}
DTYPES = ["float32", "float64"]
ACTIVATIONS = ["tanh", "sigmoid", "hard_sigmoid", "relu", "linear"]

B, T, F, U = 5, 5, 3, 4

# Row 0: leading masked steps; row 1: a masked step in the middle; row 2:
# fully masked; row 3: trailing masked steps (the last output is masked);
# row 4: alternating.
MIXED_MASK = np.array(
    [
        [False, False, True, True, True],
        [True, True, False, True, True],
        [False, False, False, False, False],
        [True, True, True, False, False],
        [True, False, True, False, True],
    ]
)

# name -> (numrnn class name, extra constructor kwargs)
CELLS = {
    "SimpleRNN": ("SimpleRNN", {}),
    "LSTM": ("LSTM", {}),
    "GRU": ("GRU", {"reset_after": True}),
    "GRU_v1": ("GRU", {"reset_after": False}),
}
N_STATES = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}


@pytest.fixture(scope="module")
def nl():
    """numrnn.layers, imported lazily so the reference self-tests run alone."""
    from numrnn import layers

    return layers


def _as_list(out):
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _round(a, dtype):
    """``a`` rounded to ``dtype`` (what the layer sees), as float64."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def _assert_outputs_close(actual, expected, dtype, context=""):
    actual = _as_list(actual)
    assert len(actual) == len(expected), (
        f"{context}: {len(actual)} outputs, expected {len(expected)}"
    )
    tol = TOL[dtype]
    for k, (a, e) in enumerate(zip(actual, expected, strict=True)):
        a = np.asarray(a)
        assert a.shape == e.shape, f"{context}: output {k} shape {a.shape} != {e.shape}"
        assert a.dtype == np.dtype(dtype), f"{context}: output {k} dtype {a.dtype} != {dtype}"
        np.testing.assert_allclose(
            a, e, rtol=tol, atol=tol, err_msg=f"{context}: output {k} differs from reference"
        )


# ==========================================================================
# Part 1: the reference itself
# ==========================================================================


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def test_reference_activations():
    x = np.array([-7.0, -3.0, -1.5, 0.0, 0.4, 3.0, 9.0])
    np.testing.assert_allclose(ref.get_activation("hard_sigmoid")(x), np.clip(x / 6 + 0.5, 0, 1))
    np.testing.assert_allclose(
        ref.get_activation("hard_sigmoid")(np.array([-3.0, 0.0, 1.5, 3.0])), [0, 0.5, 0.75, 1]
    )
    np.testing.assert_allclose(ref.get_activation("sigmoid")(x), [_sig(v) for v in x])
    np.testing.assert_allclose(ref.get_activation("relu")(x), np.where(x > 0, x, 0))
    np.testing.assert_allclose(ref.get_activation("linear")(x), x)
    np.testing.assert_allclose(ref.get_activation(None)(x), x)
    sm = ref.get_activation("softmax")(np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1000.0]]))
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(sm[0], e / e.sum())
    np.testing.assert_allclose(sm[1], [0, 0, 1])


def test_reference_simple_rnn_by_hand():
    # F = U = 1, two steps.
    x = np.array([[[0.5], [-1.0]]])
    w, r, b = 0.7, -0.3, 0.2
    h1 = math.tanh(0.5 * w + b)
    h2 = math.tanh(-1.0 * w + b + h1 * r)
    out, (h,) = ref.simple_rnn(x, [[w]], [[r]], [b])
    np.testing.assert_allclose(out[0, :, 0], [h1, h2], rtol=1e-15)
    np.testing.assert_allclose(h[0, 0], h2, rtol=1e-15)


def test_reference_lstm_by_hand():
    # F = U = 1, two steps, every gate weight different.
    x = np.array([[[0.5], [-1.0]]])
    w = np.array([[0.1, 0.2, 0.3, 0.4]])  # i f c o
    r = np.array([[-0.5, 0.6, -0.7, 0.8]])
    b = np.array([0.01, 1.0, -0.02, 0.03])
    h, c = 0.25, -0.5  # initial state
    hs = []
    for xt in (0.5, -1.0):
        zi = xt * w[0, 0] + h * r[0, 0] + b[0]
        zf = xt * w[0, 1] + h * r[0, 1] + b[1]
        zc = xt * w[0, 2] + h * r[0, 2] + b[2]
        zo = xt * w[0, 3] + h * r[0, 3] + b[3]
        c = _sig(zf) * c + _sig(zi) * math.tanh(zc)
        h = _sig(zo) * math.tanh(c)
        hs.append(h)
    out, (h_fin, c_fin) = ref.lstm(x, w, r, b, initial_state=[[[0.25]], [[-0.5]]])
    np.testing.assert_allclose(out[0, :, 0], hs, rtol=1e-14)
    np.testing.assert_allclose([h_fin[0, 0], c_fin[0, 0]], [h, c], rtol=1e-14)


@pytest.mark.parametrize("reset_after", [True, False])
def test_reference_gru_by_hand(reset_after):
    x_seq = (0.5, -1.0)
    x = np.array([[[v] for v in x_seq]])
    w = np.array([[0.1, 0.2, 0.3]])  # z r h
    r = np.array([[-0.5, 0.6, -0.7]])
    if reset_after:
        b = np.array([[0.01, 0.02, 0.03], [0.4, -0.5, 0.6]])
        b_in, b_rec = b[0], b[1]
    else:
        b = np.array([0.01, 0.02, 0.03])
        b_in, b_rec = b, np.zeros(3)
    h = 0.3
    hs = []
    for xt in x_seq:
        z = _sig(xt * w[0, 0] + b_in[0] + h * r[0, 0] + b_rec[0])
        rr = _sig(xt * w[0, 1] + b_in[1] + h * r[0, 1] + b_rec[1])
        if reset_after:
            hh = math.tanh(xt * w[0, 2] + b_in[2] + rr * (h * r[0, 2] + b_rec[2]))
        else:
            hh = math.tanh(xt * w[0, 2] + b_in[2] + (rr * h) * r[0, 2])
        h = z * h + (1 - z) * hh
        hs.append(h)
    out, (h_fin,) = ref.gru(x, w, r, b, reset_after=reset_after, initial_state=[[[0.3]]])
    np.testing.assert_allclose(out[0, :, 0], hs, rtol=1e-14)
    np.testing.assert_allclose(h_fin[0, 0], h, rtol=1e-14)


def test_reference_gru_dropout_uses_undropped_state_in_update():
    # With recurrent mask 0 the recurrent products vanish but h_prev still
    # enters h = z * h_prev + (1 - z) * hh.
    x = np.array([[[0.5]]])
    w = np.array([[0.1, 0.2, 0.3]])
    r = np.array([[-0.5, 0.6, -0.7]])
    b = np.array([0.01, 0.02, 0.03])
    out, _ = ref.gru(
        x, w, r, b, reset_after=False, initial_state=[[[0.3]]], recurrent_dropout_mask=[[0.0]]
    )
    z = _sig(0.5 * 0.1 + 0.01)
    hh = math.tanh(0.5 * 0.3 + 0.03)
    np.testing.assert_allclose(out[0, 0, 0], z * 0.3 + (1 - z) * hh, rtol=1e-15)


def test_reference_dropout_masks_scale_inputs_and_state():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 2))
    w = ref.random_recurrent_weights(rng, "LSTM", 2, 3)
    dp = np.array([[2.0, 0.0], [0.0, 2.0]])
    rdp = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    # A zero recurrent mask makes every step see h_prev = 0 in the matmul,
    # which equals running each step from a zero h but carrying c.
    out, _ = ref.lstm(x, *w, input_dropout_mask=dp, recurrent_dropout_mask=rdp)
    out_plain, _ = ref.lstm(x * dp[:, None, :], *w, input_dropout_mask=None)
    assert not np.allclose(out, out_plain)  # recurrent dropout did something
    w0 = [w[0], np.zeros_like(w[1]), w[2]]
    out_zero_r, _ = ref.lstm(x * dp[:, None, :], *w0)
    np.testing.assert_allclose(out, out_zero_r, rtol=1e-14)


@pytest.mark.parametrize("name", list(CELLS))
def test_reference_mask_invariants(name):
    """Masked steps: states are held, outputs repeat (or are zero)."""
    kind, extra = CELLS[name]
    fn = {"SimpleRNN": ref.simple_rnn, "LSTM": ref.lstm, "GRU": ref.gru}[kind]
    rng = np.random.default_rng(1)
    w = ref.random_recurrent_weights(rng, kind, F, U, reset_after=extra.get("reset_after", True))
    x = rng.normal(size=(B, T, F))

    # An all-True mask changes nothing.
    out0, st0 = fn(x, *w, **extra)
    out1, st1 = fn(x, *w, mask=np.ones((B, T), bool), **extra)
    np.testing.assert_array_equal(out0, out1)
    for a, b in zip(st0, st1, strict=True):
        np.testing.assert_array_equal(a, b)

    out, states = fn(x, *w, mask=MIXED_MASK, **extra)
    outz, statesz = fn(x, *w, mask=MIXED_MASK, zero_output_for_mask=True, **extra)
    for row in range(B):
        keep = MIXED_MASK[row]
        # Final states equal a run over the kept steps only.
        kept = x[row : row + 1, keep]
        if kept.shape[1]:
            out_c, st_c = fn(kept, *w, **extra)
            np.testing.assert_allclose(out[row, keep], out_c[0], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(outz[row, keep], out_c[0], rtol=1e-13, atol=1e-14)
        else:
            st_c = [np.zeros((1, U))] * len(states)
        for s, sz, sc in zip(states, statesz, st_c, strict=True):
            np.testing.assert_allclose(s[row], sc[0], rtol=1e-13, atol=1e-14)
            np.testing.assert_allclose(sz[row], sc[0], rtol=1e-13, atol=1e-14)
        # Masked steps repeat the previous output (zeros at first), or are 0.
        prev = np.zeros(U)
        for t in range(T):
            if not keep[t]:
                np.testing.assert_array_equal(out[row, t], prev)
                np.testing.assert_array_equal(outz[row, t], 0.0)
            prev = out[row, t]


@pytest.mark.parametrize("name", list(CELLS))
def test_reference_go_backwards_is_reversed_input(name):
    kind, extra = CELLS[name]
    fn = {"SimpleRNN": ref.simple_rnn, "LSTM": ref.lstm, "GRU": ref.gru}[kind]
    rng = np.random.default_rng(2)
    w = ref.random_recurrent_weights(rng, kind, F, U, reset_after=extra.get("reset_after", True))
    x = rng.normal(size=(B, T, F))
    out_b, st_b = fn(x, *w, mask=MIXED_MASK, go_backwards=True, **extra)
    out_r, st_r = fn(x[:, ::-1], *w, mask=MIXED_MASK[:, ::-1], **extra)
    np.testing.assert_array_equal(out_b, out_r)  # processing order
    for a, b in zip(st_b, st_r, strict=True):
        np.testing.assert_array_equal(a, b)


def test_reference_bidirectional_merges():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(B, T, F))
    wf = ref.random_recurrent_weights(rng, "GRU", F, U)
    wb = ref.random_recurrent_weights(rng, "GRU", F, U)
    fwd, fst = ref.gru(x, *wf, mask=MIXED_MASK, zero_output_for_mask=True)
    bwd, bst = ref.gru(x, *wb, mask=MIXED_MASK, zero_output_for_mask=True, go_backwards=True)
    bwd = bwd[:, ::-1]
    got = ref.bidirectional(
        "GRU", x, wf, wb, None, return_sequences=True, return_state=True, mask=MIXED_MASK
    )
    np.testing.assert_array_equal(got[0], fwd)
    np.testing.assert_array_equal(got[1], bwd)
    np.testing.assert_array_equal(got[2], fst[0])
    np.testing.assert_array_equal(got[3], bst[0])
    # masked steps are zero in both directions when returning sequences
    assert np.all(got[0][~MIXED_MASK] == 0) and np.all(got[1][~MIXED_MASK] == 0)
    cat = ref.bidirectional("GRU", x, wf, wb, "concat", return_sequences=True, mask=MIXED_MASK)
    np.testing.assert_array_equal(cat[0], np.concatenate([fwd, bwd], -1))
    ave = ref.bidirectional("GRU", x, wf, wb, "ave", return_sequences=True, mask=MIXED_MASK)
    np.testing.assert_allclose(ave[0], (fwd + bwd) / 2)
    # return_sequences=False: no flip, last of each processing order, and
    # masked steps hold (zero_output_for_mask is forced to False).
    last = ref.bidirectional("GRU", x, wf, wb, None, mask=MIXED_MASK)
    f2, _ = ref.gru(x, *wf, mask=MIXED_MASK)
    b2, _ = ref.gru(x, *wb, mask=MIXED_MASK, go_backwards=True)
    np.testing.assert_array_equal(last[0], f2[:, -1])
    np.testing.assert_array_equal(last[1], b2[:, -1])


FIXTURES = Path(__file__).parent / "fixtures" / "keras"


def _reference_from_fixture(data):
    """Reference outputs for a single-layer Keras fixture, or None if not covered."""
    cfg = json.loads(str(data["config"]))
    if cfg.get("model") != "layer" or cfg.get("call", {}).get("training"):
        return None, cfg
    layer = cfg["layers"][0]
    cls, kw = layer["class"], dict(layer["kwargs"])
    x = data["x"]
    mask = data["mask"] if "mask" in data.files else None
    n_init = cfg["call"].get("n_initial_states") or 0
    init = [data[f"initial_state_{i}"] for i in range(n_init)] or None
    w = [data[f"weight_{i}"] for i in range(len(cfg["weight_shapes"]))]

    def rnn_kwargs(kwargs):
        kwargs = dict(kwargs)
        # use_bias is implied by the weight count; initializers and dropout
        # (the fixtures are called with training=False) do not matter here.
        ignored = ("units", "return_sequences", "return_state", "use_bias", "unit_forget_bias")
        for k in ignored + ("dropout", "recurrent_dropout", "seed"):
            kwargs.pop(k, None)
        if kwargs.get("stateful"):
            raise KeyError("stateful fixtures are not covered")
        kwargs.pop("stateful", None)
        return kwargs

    if cls in ("SimpleRNN", "LSTM", "GRU"):
        rs, rst = kw.get("return_sequences", False), kw.get("return_state", False)
        out = ref.recurrent_layer(
            cls, x, w, rs, rst, mask=mask, initial_state=init, **rnn_kwargs(kw)
        )
    elif cls == "Bidirectional":
        inner, back = layer["layer"], layer.get("backward_layer")
        bkw = None if back is None else rnn_kwargs(back["kwargs"])
        if bkw is not None:
            bkw.pop("go_backwards", None)
        half = len(w) // 2
        out = ref.bidirectional(
            inner["class"],
            x,
            w[:half],
            w[half:],
            kw.get("merge_mode", "concat"),
            inner["kwargs"].get("return_sequences", False),
            inner["kwargs"].get("return_state", False),
            mask=mask,
            initial_state=init,
            forward_kwargs=rnn_kwargs(inner["kwargs"]),
            backward_kwargs=bkw,
            backward_rnn=None if back is None else back["class"],
        )
    elif cls == "Dense":
        out = [ref.dense(x, w[0], w[1] if len(w) > 1 else None, kw.get("activation"))]
    elif cls == "TimeDistributed" and layer["layer"]["class"] == "Dense":
        inner_kw = layer["layer"]["kwargs"]
        bias = w[1] if len(w) > 1 else None
        out = [ref.time_distributed_dense(x, w[0], bias, inner_kw.get("activation"))]
    elif cls == "Embedding":
        out = [ref.embedding(x, w[0])[0]]
    elif cls == "Masking":
        out = [ref.masking(x, kw.get("mask_value", 0.0))[0]]
    else:
        return None, cfg
    return out, cfg


def test_reference_agrees_with_keras_fixtures():
    """The reference reproduces the Keras 3 outputs stored in tests/fixtures/keras.

    This anchors the reference to Keras itself: every single-layer float64
    fixture it can interpret must match to 1e-9.
    """
    files = sorted(FIXTURES.glob("*__float64.npz"))
    if not files:
        pytest.skip("no Keras fixtures in tests/fixtures/keras")
    checked, mismatches = 0, []
    for path in files:
        with np.load(path, allow_pickle=False) as data:
            try:
                expected, cfg = _reference_from_fixture(data)
            except KeyError:  # a fixture layout or option the reference does not cover
                continue
            if expected is None:
                continue
            outputs = [data[f"output_{i}"] for i in range(cfg["n_outputs"])]
        checked += 1
        if len(outputs) != len(expected):
            mismatches.append(f"{path.name}: {len(expected)} outputs, Keras has {len(outputs)}")
            continue
        for i, (e, k) in enumerate(zip(expected, outputs, strict=True)):
            if e.shape != k.shape or not np.allclose(e, k, rtol=1e-9, atol=1e-9):
                mismatches.append(f"{path.name}: output {i} differs")
    assert checked > 0, "no fixture could be interpreted"
    assert not mismatches, "\n".join(mismatches)


# ==========================================================================
# Part 2: numrnn recurrent layers against the reference
# ==========================================================================


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
            parts.append("nobias" if not v else "bias")
        elif k in ("activation", "recurrent_activation"):
            parts.append(f"{'act' if k == 'activation' else 'ract'}={v}")
        elif v is True:
            parts.append(short[k])
        else:
            parts.append(f"{k}={v}")
    return "-".join(parts)


RS = {"return_sequences": True, "return_state": True}
OPTION_CASES = [
    {},
    {"return_sequences": True},
    {"return_state": True},
    dict(RS),
    {"go_backwards": True},
    {"go_backwards": True, **RS},
    {"mask": True},
    {"mask": True, "return_state": True},
    {"mask": True, **RS},
    {"mask": True, "go_backwards": True, **RS},
    {"mask": True, "go_backwards": True, "return_state": True},
    {"mask": True, "zero_output_for_mask": True, "return_state": True},
    {"mask": True, "zero_output_for_mask": True, **RS},
    {"mask": True, "zero_output_for_mask": True, "go_backwards": True, **RS},
    {"zero_output_for_mask": True, **RS},  # no mask: no effect
    {"initial_state": True, "return_state": True},
    {"initial_state": True, **RS},
    {"initial_state": True, "mask": True, **RS},
    {"initial_state": True, "go_backwards": True, "mask": True, **RS},
    {"use_bias": False, **RS},
    {"use_bias": False, "mask": True, "go_backwards": True, **RS},
    {"use_bias": False, "initial_state": True, "return_state": True},
]
ACT_CASES = [{"activation": a, **RS} for a in ACTIVATIONS]
RACT_CASES = [{"recurrent_activation": a, **RS} for a in ACTIVATIONS]
RACT_CASES += [{"activation": "relu", "recurrent_activation": "hard_sigmoid", "mask": True, **RS}]


def _recurrent_params():
    params = []
    for name in CELLS:
        cases = OPTION_CASES + ACT_CASES
        if name != "SimpleRNN":
            cases = cases + RACT_CASES
        for opts in cases:
            params.append(pytest.param(name, opts, id=f"{name}-{_case_id(opts)}"))
    return params


def make_recurrent_case(nl, name, opts, dtype, seed=0, batch=B, steps=T, features=F, units=U):
    """Build a numrnn layer and its reference inputs for one option set.

    Returns ``(layer, weights, x, mask, initial_state, reference_kwargs)``;
    all arrays are already rounded to ``dtype`` (the reference reads them as
    float64).
    """
    kind, extra = CELLS[name]
    opts = dict(opts)
    use_mask = opts.pop("mask", False)
    use_init = opts.pop("initial_state", False)
    use_bias = opts.get("use_bias", True)
    rng = np.random.default_rng(seed)
    weights = ref.random_recurrent_weights(
        rng, kind, features, units, use_bias, extra.get("reset_after", True), dtype=dtype
    )
    x = rng.normal(size=(batch, steps, features)).astype(dtype)
    mask = None
    if use_mask:
        mask = MIXED_MASK[:batch, :steps].copy()
    initial_state = None
    if use_init:
        initial_state = [
            rng.normal(scale=0.5, size=(batch, units)).astype(dtype) for _ in range(N_STATES[kind])
        ]

    layer_kwargs = {**extra, **opts}
    layer = getattr(nl, kind)(units, dtype=dtype, **layer_kwargs)
    layer.build((None, steps, features))
    layer.set_weights(weights)

    ref_kwargs = {k: v for k, v in layer_kwargs.items() if k not in ("use_bias",)}
    ref_kwargs["mask"] = mask
    ref_kwargs["initial_state"] = initial_state
    return layer, weights, x, mask, initial_state, ref_kwargs


def reference_call(name, x, weights, ref_kwargs):
    kind, _ = CELLS[name]
    kw = dict(ref_kwargs)
    return_sequences = kw.pop("return_sequences", False)
    return_state = kw.pop("return_state", False)
    return ref.recurrent_layer(kind, x, weights, return_sequences, return_state, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, opts", _recurrent_params())
def test_recurrent_matches_reference(nl, name, opts, dtype):
    layer, weights, x, mask, init, ref_kwargs = make_recurrent_case(nl, name, opts, dtype)
    expected = reference_call(name, x, weights, ref_kwargs)
    got = layer(x, mask=mask, initial_state=init, training=False)
    if len(expected) == 1:
        assert isinstance(got, np.ndarray), "a single-output layer must return an ndarray"
    _assert_outputs_close(got, expected, dtype, f"{name} {opts} {dtype}")


@pytest.mark.parametrize("name", list(CELLS))
def test_get_weights_roundtrip_and_count_params(nl, name):
    layer, weights, *_ = make_recurrent_case(nl, name, {}, "float64")
    got = layer.get_weights()
    assert len(got) == len(weights)
    for g, w in zip(got, weights, strict=True):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)
    assert layer.count_params() == sum(w.size for w in weights)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CELLS))
def test_dropout_inactive_when_not_training(nl, name, dtype):
    kind, extra = CELLS[name]
    _, weights, x, mask, init, ref_kwargs = make_recurrent_case(
        nl, name, {"mask": True, "initial_state": True, **RS}, dtype
    )
    layer = getattr(nl, kind)(
        U, dropout=0.4, recurrent_dropout=0.3, seed=7, dtype=dtype, **extra, **RS
    )
    layer.build((None, T, F))
    layer.set_weights(weights)
    expected = reference_call(name, x, weights, ref_kwargs)
    got = layer(x, mask=mask, initial_state=init, training=False)
    _assert_outputs_close(got, expected, dtype, f"{name} dropout training=False")
    # The default of `training` is False as well.
    _assert_outputs_close(layer(x, mask=mask, initial_state=init), expected, dtype, "default")


@pytest.mark.parametrize("name", list(CELLS))
def test_dropout_active_when_training(nl, name):
    kind, extra = CELLS[name]
    _, weights, x, _, _, ref_kwargs = make_recurrent_case(nl, name, RS, "float64")
    layer = getattr(nl, kind)(
        U, dropout=0.5, recurrent_dropout=0.5, seed=7, dtype="float64", **extra, **RS
    )
    layer.build((None, T, F))
    layer.set_weights(weights)
    expected = reference_call(name, x, weights, ref_kwargs)
    got = _as_list(layer(x, training=True))
    assert got[0].shape == expected[0].shape
    assert np.all(np.isfinite(got[0]))
    assert not np.allclose(got[0], expected[0]), "dropout had no effect with training=True"


@pytest.mark.parametrize("name", list(CELLS))
def test_recurrent_input_layouts(nl, name):
    """Non-contiguous views, other float dtypes, B = 1 / T = 1, changing batch size."""
    opts = {"mask": True, "initial_state": True, **RS}
    layer, weights, x, mask, init, ref_kwargs = make_recurrent_case(nl, name, opts, "float32")
    expected = reference_call(name, x, weights, ref_kwargs)
    # a reversed, strided view of the same values, and float64 input
    x_view = np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    assert not x_view.flags.c_contiguous
    mask_f = np.asfortranarray(mask)
    init_f = [np.asfortranarray(s) for s in init]
    for xx in (x_view, x.astype(np.float64), np.asfortranarray(x)):
        got = layer(xx, mask=mask_f, initial_state=init_f)
        _assert_outputs_close(got, expected, "float32", f"{name} layout")
    # single sequence, single step, then the full batch again
    for b, t in ((1, T), (B, 1), (1, 1)):
        kw = dict(ref_kwargs, mask=mask[:b, :t], initial_state=[s[:b] for s in init])
        exp = reference_call(name, x[:b, :t], weights, kw)
        got = layer(x[:b, :t], mask=mask[:b, :t], initial_state=[s[:b] for s in init])
        _assert_outputs_close(got, exp, "float32", f"{name} B={b} T={t}")
    _assert_outputs_close(layer(x, mask=mask, initial_state=init), expected, "float32", "again")


@pytest.mark.parametrize("name", list(CELLS))
def test_recurrent_long_sequence(nl, name):
    """T = 60 with a mask: no drift between the kernels and the reference."""
    kind, extra = CELLS[name]
    rng = np.random.default_rng(40)
    steps = 60
    weights = ref.random_recurrent_weights(
        rng, kind, F, U, reset_after=extra.get("reset_after", True), scale=0.4
    )
    x = rng.normal(size=(2, steps, F))
    mask = rng.random((2, steps)) > 0.3
    layer = getattr(nl, kind)(U, dtype="float64", **extra, **RS)
    layer.build((None, steps, F))
    layer.set_weights(weights)
    expected = ref.recurrent_layer(kind, x, weights, True, True, mask=mask, **extra)
    _assert_outputs_close(layer(x, mask=mask), expected, "float64", f"{name} long")


# ==========================================================================
# Part 3: Bidirectional, Dense, TimeDistributed, Embedding, Masking, Sequential
# ==========================================================================

MERGE_MODES = ["concat", "sum", "mul", "ave", None]
BIDI_VARIANTS = {
    "seq-mask": {"return_sequences": True, "mask": True},
    "last-mask": {"mask": True},
    "seq-state-mask": {"return_sequences": True, "return_state": True, "mask": True},
    "last-state": {"return_state": True},
}


def _bidi_layer(nl, name, merge_mode, dtype, layer_kwargs, backward=None):
    kind, extra = CELLS[name]
    inner = getattr(nl, kind)(U, dtype=dtype, **extra, **layer_kwargs)
    kw = {} if backward is None else {"backward_layer": backward}
    bi = nl.Bidirectional(inner, merge_mode=merge_mode, **kw)
    bi.build((None, T, F))
    return bi


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("variant", list(BIDI_VARIANTS))
@pytest.mark.parametrize("merge_mode", MERGE_MODES, ids=lambda m: str(m))
@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_matches_reference(nl, name, merge_mode, variant, dtype):
    kind, extra = CELLS[name]
    opts = dict(BIDI_VARIANTS[variant])
    use_mask = opts.pop("mask", False)
    rng = np.random.default_rng(11)
    reset_after = extra.get("reset_after", True)
    wf = ref.random_recurrent_weights(rng, kind, F, U, reset_after=reset_after, dtype=dtype)
    wb = ref.random_recurrent_weights(rng, kind, F, U, reset_after=reset_after, dtype=dtype)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    mask = MIXED_MASK.copy() if use_mask else None

    bi = _bidi_layer(nl, name, merge_mode, dtype, opts)
    bi.set_weights(wf + wb)
    got = bi(x, mask=mask)
    expected = ref.bidirectional(
        kind, x, wf, wb, merge_mode, mask=mask, forward_kwargs=extra, **opts
    )
    _assert_outputs_close(got, expected, dtype, f"Bidirectional {name} {merge_mode} {variant}")


@pytest.mark.parametrize("name", list(CELLS))
def test_bidirectional_initial_state(nl, name):
    kind, extra = CELLS[name]
    dtype = "float64"
    rng = np.random.default_rng(12)
    reset_after = extra.get("reset_after", True)
    wf = ref.random_recurrent_weights(rng, kind, F, U, reset_after=reset_after)
    wb = ref.random_recurrent_weights(rng, kind, F, U, reset_after=reset_after)
    x = rng.normal(size=(B, T, F))
    init = [rng.normal(size=(B, U)) for _ in range(2 * N_STATES[kind])]
    opts = {"return_sequences": True, "return_state": True}
    bi = _bidi_layer(nl, name, "concat", dtype, opts)
    bi.set_weights(wf + wb)
    got = bi(x, mask=MIXED_MASK, initial_state=init)
    expected = ref.bidirectional(
        kind, x, wf, wb, "concat", mask=MIXED_MASK, initial_state=init, forward_kwargs=extra, **opts
    )
    _assert_outputs_close(got, expected, dtype, f"Bidirectional {name} initial_state")


def test_bidirectional_custom_backward_layer(nl):
    dtype = "float64"
    rng = np.random.default_rng(13)
    wf = ref.random_recurrent_weights(rng, "LSTM", F, U)
    wb = ref.random_recurrent_weights(rng, "LSTM", F, U)
    x = rng.normal(size=(B, T, F))
    backward = nl.LSTM(U, activation="relu", go_backwards=True, return_sequences=True, dtype=dtype)
    bi = _bidi_layer(nl, "LSTM", "concat", dtype, {"return_sequences": True}, backward=backward)
    bi.set_weights(wf + wb)
    got = bi(x, mask=MIXED_MASK)
    expected = ref.bidirectional(
        "LSTM",
        x,
        wf,
        wb,
        "concat",
        return_sequences=True,
        mask=MIXED_MASK,
        forward_kwargs={},
        backward_kwargs={"activation": "relu"},
    )
    _assert_outputs_close(got, expected, dtype, "Bidirectional custom backward layer")


def test_bidirectional_forces_zero_output_for_mask(nl):
    """Keras sets zero_output_for_mask = return_sequences on both sub-layers."""
    dtype = "float64"
    rng = np.random.default_rng(14)
    wf = ref.random_recurrent_weights(rng, "GRU", F, U)
    wb = ref.random_recurrent_weights(rng, "GRU", F, U)
    x = rng.normal(size=(B, T, F))
    # return_sequences=False with zero_output_for_mask=True: forced to False,
    # so the trailing-masked row 3 keeps its held last output.
    bi = _bidi_layer(nl, "GRU", "concat", dtype, {"zero_output_for_mask": True})
    bi.set_weights(wf + wb)
    expected = ref.bidirectional("GRU", x, wf, wb, "concat", mask=MIXED_MASK)
    _assert_outputs_close(bi(x, mask=MIXED_MASK), expected, dtype, "forced False")
    # return_sequences=True with zero_output_for_mask=False: forced to True.
    bi = _bidi_layer(
        nl, "GRU", "concat", dtype, {"zero_output_for_mask": False, "return_sequences": True}
    )
    bi.set_weights(wf + wb)
    expected = ref.bidirectional("GRU", x, wf, wb, "concat", return_sequences=True, mask=MIXED_MASK)
    _assert_outputs_close(bi(x, mask=MIXED_MASK), expected, dtype, "forced True")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("wrapper", ["Bidirectional", "TimeDistributed"])
def test_wrappers_take_dtype(nl, wrapper, dtype):
    """DESIGN.md section 2: every layer takes ``dtype=`` (Keras wrappers do too)."""
    x = np.random.default_rng(15).normal(size=(B, T, F)).astype(dtype)
    inner = nl.GRU(U, dtype=dtype) if wrapper == "Bidirectional" else nl.Dense(U, dtype=dtype)
    layer = getattr(nl, wrapper)(inner, dtype=dtype)
    layer.build((None, T, F))
    assert layer(x).dtype == np.dtype(dtype)


DENSE_ACTIVATIONS = [None, "linear", "tanh", "sigmoid", "hard_sigmoid", "relu", "softmax"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("act", DENSE_ACTIVATIONS, ids=lambda a: str(a))
@pytest.mark.parametrize("rank", [2, 3])
def test_dense_matches_reference(nl, rank, act, use_bias, dtype):
    rng = np.random.default_rng(20)
    shape = (B, F) if rank == 2 else (B, T, F)
    x = rng.normal(size=shape).astype(dtype)
    kernel = rng.normal(size=(F, U)).astype(dtype)
    bias = rng.normal(size=(U,)).astype(dtype)
    layer = nl.Dense(U, activation=act, use_bias=use_bias, dtype=dtype)
    layer.build((None, F) if rank == 2 else (None, T, F))
    weights = [kernel, bias] if use_bias else [kernel]
    layer.set_weights(weights)
    assert layer.count_params() == sum(w.size for w in weights)
    expected = [ref.dense(x, kernel, bias if use_bias else None, act)]
    _assert_outputs_close(layer(x), expected, dtype, f"Dense {act} bias={use_bias}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "softmax"])
def test_time_distributed_dense_matches_reference(nl, act, dtype):
    rng = np.random.default_rng(21)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    kernel = rng.normal(size=(F, U)).astype(dtype)
    bias = rng.normal(size=(U,)).astype(dtype)
    layer = nl.TimeDistributed(nl.Dense(U, activation=act, dtype=dtype))
    layer.build((None, T, F))
    layer.set_weights([kernel, bias])
    expected = [ref.time_distributed_dense(x, kernel, bias, act)]
    _assert_outputs_close(layer(x), expected, dtype, f"TimeDistributed(Dense({act}))")


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedding_matches_reference(nl, dtype):
    rng = np.random.default_rng(22)
    vocab, dim = 7, 3
    ids = rng.integers(0, vocab, size=(B, T))
    table = rng.normal(size=(vocab, dim)).astype(dtype)
    layer = nl.Embedding(vocab, dim, dtype=dtype)
    layer.build((None, T))
    layer.set_weights([table])
    assert layer.count_params() == vocab * dim
    expected, _ = ref.embedding(ids, table)
    _assert_outputs_close(layer(ids), [expected], dtype, "Embedding")


@pytest.mark.parametrize("dtype", DTYPES)
def test_masking_matches_reference(nl, dtype):
    rng = np.random.default_rng(23)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    x[0, :2] = 0.0
    x[1, 2] = 0.0
    x[2] = 0.0
    x[3, 1, 0] = 0.0  # one zero feature only: not masked
    layer = nl.Masking(mask_value=0.0, dtype=dtype)
    expected, keep = ref.masking(x, 0.0)
    assert keep[3, 1] and not keep[0, 0] and not keep[1, 2]
    _assert_outputs_close(layer(x), [expected], dtype, "Masking")


def _set_random_weights(model, rng, dtype):
    weights = [rng.normal(scale=0.5, size=w.shape).astype(dtype) for w in model.get_weights()]
    model.set_weights(weights)
    return weights


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_embedding_lstm_dense(nl, dtype):
    from numrnn import Sequential

    vocab, dim, k = 6, 3, 2
    rng = np.random.default_rng(30)
    ids = rng.integers(1, vocab, size=(B, T))
    ids[0, :2] = 0  # leading padding
    ids[1, 2] = 0  # middle
    ids[2] = 0  # fully padded
    ids[3, 3:] = 0  # trailing padding
    model = Sequential(
        [
            nl.Embedding(vocab, dim, mask_zero=True, dtype=dtype),
            nl.LSTM(U, return_sequences=True, dtype=dtype),
            nl.Dense(k, activation="softmax", dtype=dtype),
        ]
    )
    model.build((None, T))
    table, kern, rec, bias, dk, db = _set_random_weights(model, rng, dtype)
    emb, mask = ref.embedding(ids, table, mask_zero=True)
    seq, _ = ref.lstm(emb, kern, rec, bias, mask=mask)
    expected = [ref.dense(seq, dk, db, "softmax")]
    _assert_outputs_close(model(ids), expected, dtype, "Sequential Embedding-LSTM-Dense")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_masking_bidirectional_gru(nl, dtype):
    """Mask from Masking flows through Bidirectional(return_sequences) to a GRU."""
    from numrnn import Sequential

    rng = np.random.default_rng(31)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    x[0, :2] = 0.0
    x[1, 2] = 0.0
    x[2] = 0.0
    x[3, 3:] = 0.0
    model = Sequential(
        [
            nl.Masking(0.0, dtype=dtype),
            nl.Bidirectional(nl.SimpleRNN(2, return_sequences=True, dtype=dtype), merge_mode="sum"),
            nl.GRU(U, reset_after=False, dtype=dtype),
            nl.Dense(1, dtype=dtype),
        ]
    )
    model.build((None, T, F))
    w = _set_random_weights(model, rng, dtype)
    masked, keep = ref.masking(x)
    (bi,) = ref.bidirectional(
        "SimpleRNN", masked, w[0:3], w[3:6], "sum", return_sequences=True, mask=keep
    )
    g, _ = ref.gru(bi, w[6], w[7], w[8], reset_after=False, mask=keep)
    expected = [ref.dense(g[:, -1], w[9], w[10])]
    _assert_outputs_close(model(x), expected, dtype, "Sequential Masking-Bidirectional-GRU")


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_explicit_mask_and_initial_state(nl, dtype):
    """``mask`` and ``initial_state`` given to the model go to the first layer."""
    from numrnn import Sequential

    rng = np.random.default_rng(32)
    x = rng.normal(size=(B, T, F)).astype(dtype)
    init = [rng.normal(size=(B, U)).astype(dtype), rng.normal(size=(B, U)).astype(dtype)]
    model = Sequential(
        [
            nl.LSTM(U, return_sequences=True, dtype=dtype),
            nl.SimpleRNN(2, activation="relu", dtype=dtype),
        ]
    )
    model.build((None, T, F))
    w = _set_random_weights(model, rng, dtype)
    seq, _ = ref.lstm(x, *w[:3], mask=MIXED_MASK, initial_state=init)
    out, _ = ref.simple_rnn(seq, *w[3:], activation="relu", mask=MIXED_MASK)
    got = model(x, mask=MIXED_MASK, initial_state=init)
    _assert_outputs_close(got, [out[:, -1]], dtype, "Sequential mask+initial_state")
