"""Generate Keras reference fixtures for ``tests/test_keras_parity.py``.

This script needs TensorFlow/Keras 3 (it is NOT a numrnn dependency). Run it
from a separate environment, for example::

    python3 -m venv /work/tfvenv && /work/tfvenv/bin/pip install tensorflow-cpu
    TF_CPP_MIN_LOG_LEVEL=3 /work/tfvenv/bin/python tools/make_keras_fixtures.py

It writes one compressed ``.npz`` file per case and dtype into
``tests/fixtures/keras/`` (``<case>__<dtype>.npz``). Everything is
deterministic: the random numbers of a case come from a numpy generator
seeded with the CRC32 of the case name, drawn in float64 and cast, so the
float32 and float64 variants of a case see the same values.

Fixture schema
--------------
``config`` (0-d unicode array) is a JSON object::

    {
      "name": str, "dtype": "float32" | "float64",
      "keras_version": str, "tf_version": str,
      "model": "layer" | "sequential" | "stateful" | "chain" | "summary",
      "layers": [layer_spec, ...],
      "input_shape": [B, T, F] (or [B, T] for integer inputs),
      "build_shape": shape to pass to build (batch None unless stateful),
      "input_kind": "float" | "int",
      "call": {"has_mask": bool, "n_initial_states": int},
      "n_outputs": int, "output_shapes": [[None, ...], ...],
      "weight_shapes": [[...], ...], "count_params": int,
      "layer_count_params": [int, ...], "layer_output_shapes": [[...], ...],
      "output_mask": bool   (whether ``output_mask`` is stored)
    }

A ``layer_spec`` is ``{"class": "LSTM", "kwargs": {...}}``; wrappers add
``"layer": layer_spec`` and Bidirectional ``"backward_layer": layer_spec or
null``. Class names and kwargs are the same in Keras 3 and numrnn.

Arrays for ``model`` in ("layer", "sequential"):
``x``, ``mask`` (optional, bool (B, T)), ``initial_state_{j}``,
``weight_{i}`` (``get_weights()`` order), ``output_{k}`` (Keras output
order), ``cotangent_{k}`` (one per output), ``grad_weight_{i}``,
``grad_x`` (float inputs only), ``grad_initial_state_{j}``, where the
gradients are those of ``L = sum_k sum(output_k * cotangent_k)``, and
``output_mask`` (the mask Keras propagates from the last output, if any).

``model == "stateful"``: one stateful layer called three times, with
``reset_states()`` before the third call. Per call ``c`` in 0, 1, 2:
``x_{c}``, ``output_{c}_{k}``, ``states_{c}_{j}`` (``layer.states`` after the
call), ``cotangent_{c}_{k}``, ``grad_weight_{c}_{i}``, ``grad_x_{c}``
(gradients of call ``c`` alone, from the state it started with).

``model == "chain"``: two recurrent layers A and B; A (return_state=True)
runs on ``x``; B runs on ``x2`` with ``initial_state`` = A's final states.
Outputs are ``[A's first output, B's output]``; ``weight_{i}`` is A's
weights then B's; ``grad_x`` and ``grad_x2``.

``model == "summary"``: no arrays besides ``config``; only parameter counts,
weight shapes and output shapes of a Keras ``Sequential``.
"""

import json
import os
import sys
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "keras"
DTYPES = ("float32", "float64")

B, T, F, U = 3, 5, 4, 3

# Masks (True = keep). MASK_A: leading steps masked / a masked step in the
# middle / a fully masked row. MASK_B: trailing steps masked / middle and
# trailing / nothing masked.
MASK_A = np.array([[0, 0, 1, 1, 1], [1, 1, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=bool)
MASK_B = np.array([[1, 1, 1, 0, 0], [1, 0, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=bool)
MASKS = {"A": MASK_A, "B": MASK_B}

ACTIVATIONS = ("tanh", "sigmoid", "hard_sigmoid", "relu", "linear")


# ---------------------------------------------------------------------------
# case specifications
# ---------------------------------------------------------------------------


def L(cls, **kwargs):
    return {"class": cls, "kwargs": kwargs}


def bidi(layer, merge_mode="concat", backward_layer=None):
    return {
        "class": "Bidirectional",
        "kwargs": {"merge_mode": merge_mode},
        "layer": layer,
        "backward_layer": backward_layer,
    }


def td(layer):
    return {"class": "TimeDistributed", "kwargs": {}, "layer": layer}


def case(
    name,
    model,
    layers,
    input_shape,
    input_kind="float",
    mask=None,
    n_initial_states=0,
    zero_steps=None,
    **extra,
):
    c = {
        "name": name,
        "model": model,
        "layers": layers,
        "input_shape": list(input_shape),
        "input_kind": input_kind,
        "mask": mask,  # key into MASKS or None
        "n_initial_states": n_initial_states,
        "zero_steps": zero_steps,  # key into MASKS: steps set to exactly 0
    }
    c.update(extra)
    return c


RNN_KINDS = {
    "simple_rnn": ("SimpleRNN", {}, 1),
    "lstm": ("LSTM", {}, 2),
    "gru": ("GRU", {"reset_after": True}, 1),
    "gru_reset_before": ("GRU", {"reset_after": False}, 1),
}


def recurrent_cases():
    cases = []
    for prefix, (cls, base, n_states) in RNN_KINDS.items():

        def R(name, mask=None, n_init=0, shape=(B, T, F), _p=prefix, _c=cls, _b=base, **kw):
            kwargs = {"units": U, **_b, **kw}
            cases.append(
                case(
                    f"{_p}_{name}",
                    "layer",
                    [L(_c, **kwargs)],
                    shape,
                    mask=mask,
                    n_initial_states=n_init,
                )
            )

        R("plain")
        R("small", shape=(2, 4, 2), units=2)
        R("return_sequences", return_sequences=True)
        R("return_state", return_state=True)
        R("return_sequences_return_state", return_sequences=True, return_state=True)
        R("initial_state", n_init=n_states, return_sequences=True)
        R("initial_state_return_state", n_init=n_states, return_state=True)
        R("go_backwards", go_backwards=True)
        R("go_backwards_return_sequences", go_backwards=True, return_sequences=True)
        R("go_backwards_return_state", go_backwards=True, return_sequences=True, return_state=True)
        for mk in ("A", "B"):
            R(f"mask{mk}", mask=mk)
            R(f"mask{mk}_return_sequences", mask=mk, return_sequences=True)
            R(f"mask{mk}_return_state", mask=mk, return_state=True)
            R(f"mask{mk}_go_backwards", mask=mk, go_backwards=True)
            R(
                f"mask{mk}_go_backwards_return_sequences",
                mask=mk,
                go_backwards=True,
                return_sequences=True,
                return_state=True,
            )
            R(
                f"mask{mk}_zero_output_return_sequences",
                mask=mk,
                zero_output_for_mask=True,
                return_sequences=True,
            )
            R(f"mask{mk}_zero_output_last", mask=mk, zero_output_for_mask=True, return_state=True)
            R(
                f"mask{mk}_initial_state",
                mask=mk,
                n_init=n_states,
                return_sequences=True,
                return_state=True,
            )
        R(
            "maskA_zero_output_go_backwards",
            mask="A",
            zero_output_for_mask=True,
            go_backwards=True,
            return_sequences=True,
        )
        R("no_bias", use_bias=False, return_sequences=True)
        R("no_bias_maskA", use_bias=False, mask="A", return_sequences=True, return_state=True)
        R("dropout_inference", dropout=0.3, recurrent_dropout=0.2, return_sequences=True)
        if cls == "LSTM":
            R("no_unit_forget_bias", unit_forget_bias=False, return_sequences=True)
        for act in ACTIVATIONS:
            R(f"activation_{act}", activation=act, return_sequences=True, return_state=True)
            if cls != "SimpleRNN":
                R(
                    f"recurrent_activation_{act}",
                    recurrent_activation=act,
                    return_sequences=True,
                    return_state=True,
                )
    return cases


def stateful_cases():
    cases = []
    for prefix, (cls, base, _) in RNN_KINDS.items():
        cases.append(
            case(
                f"stateful_{prefix}",
                "stateful",
                [L(cls, units=U, stateful=True, return_sequences=True, **base)],
                (B, T, F),
            )
        )
    cases.append(
        case(
            "stateful_lstm_last_return_state",
            "stateful",
            [L("LSTM", units=U, stateful=True, return_state=True)],
            (2, 4, 3),
        )
    )
    return cases


def chain_cases():
    cases = []
    for prefix, (cls, base, _) in RNN_KINDS.items():
        a = L(cls, units=U, return_state=True, **base)
        b = L(cls, units=U, return_sequences=True, **base)
        cases.append(
            case(
                f"chain_{prefix}_states_to_initial_state",
                "chain",
                [a, b],
                (B, T, F),
                x2_shape=[B, 4, 2],
            )
        )
    return cases


def bidirectional_cases():
    cases = []
    for prefix, cls, n_states in (
        ("lstm", "LSTM", 2),
        ("gru", "GRU", 1),
        ("simple_rnn", "SimpleRNN", 1),
    ):

        def Bi(
            name, merge_mode="concat", mask=None, n_init=0, backward=None, _p=prefix, _c=cls, **kw
        ):
            cases.append(
                case(
                    f"bidirectional_{_p}_{name}",
                    "layer",
                    [bidi(L(_c, units=U, **kw), merge_mode, backward)],
                    (B, T, F),
                    mask=mask,
                    n_initial_states=n_init,
                )
            )

        modes = ("concat", "sum", "mul", "ave", None)
        if cls == "SimpleRNN":
            Bi("concat_maskA_return_sequences", mask="A", return_sequences=True)
            continue
        for mm in modes:
            Bi(f"merge_{mm}", merge_mode=mm)
            Bi(f"merge_{mm}_return_sequences", merge_mode=mm, return_sequences=True)
        for mk in ("A", "B"):
            Bi(f"concat_mask{mk}", mask=mk)
            Bi(f"concat_mask{mk}_return_sequences", mask=mk, return_sequences=True)
            Bi(
                f"sum_mask{mk}_return_sequences_return_state",
                "sum",
                mask=mk,
                return_sequences=True,
                return_state=True,
            )
            Bi(f"none_mask{mk}_return_sequences", None, mask=mk, return_sequences=True)
        Bi("concat_return_state", return_state=True)
        Bi("none_return_state", None, return_state=True)
        Bi("none_return_sequences_return_state", None, return_sequences=True, return_state=True)
        Bi("sum_initial_state", "sum", n_init=2 * n_states, return_sequences=True)
        Bi("concat_initial_state_return_state", "concat", n_init=2 * n_states, return_state=True)
        Bi("ave_maskA_initial_state", "ave", mask="A", n_init=2 * n_states, return_sequences=True)
        # custom backward layer: different activation, go_backwards=True
        if cls == "GRU":
            bw = L("GRU", units=U, activation="relu", go_backwards=True, return_sequences=True)
            Bi("custom_backward_maskA", "concat", mask="A", backward=bw, return_sequences=True)
            bw = L(
                "GRU",
                units=U,
                activation="sigmoid",
                recurrent_activation="tanh",
                go_backwards=True,
                reset_after=False,
            )
            Bi("custom_backward_reset_before_sum", "sum", mask="B", backward=bw)
        else:
            bw = L(
                "LSTM",
                units=U,
                activation="relu",
                recurrent_activation="hard_sigmoid",
                go_backwards=True,
                return_sequences=True,
                return_state=True,
            )
            Bi(
                "custom_backward_maskB_return_state",
                "mul",
                mask="B",
                backward=bw,
                return_sequences=True,
                return_state=True,
            )
    return cases


def core_cases():
    cases = []
    for act in ("linear", "relu", "softmax", "sigmoid", "tanh"):
        cases.append(
            case(f"dense_{act}_2d", "layer", [L("Dense", units=U, activation=act)], (B, F))
        )
        cases.append(
            case(f"dense_{act}_3d", "layer", [L("Dense", units=U, activation=act)], (B, T, F))
        )
    cases.append(
        case("dense_no_bias_3d", "layer", [L("Dense", units=U, use_bias=False)], (B, T, F))
    )
    cases.append(
        case(
            "time_distributed_dense_relu",
            "layer",
            [td(L("Dense", units=U, activation="relu"))],
            (B, T, F),
        )
    )
    cases.append(
        case(
            "time_distributed_dense_softmax",
            "layer",
            [td(L("Dense", units=2, activation="softmax"))],
            (B, T, F),
        )
    )
    cases.append(
        case(
            "embedding_mask_zero",
            "layer",
            [L("Embedding", input_dim=7, output_dim=3, mask_zero=True)],
            (B, T),
            input_kind="int",
            zero_steps="A",
        )
    )
    cases.append(
        case(
            "embedding",
            "layer",
            [L("Embedding", input_dim=7, output_dim=3)],
            (B, T),
            input_kind="int",
            zero_steps="B",
        )
    )
    cases.append(
        case("masking", "layer", [L("Masking", mask_value=0.0)], (B, T, F), zero_steps="A")
    )
    cases.append(
        case("masking_trailing", "layer", [L("Masking", mask_value=0.0)], (B, T, F), zero_steps="B")
    )
    cases.append(case("dropout_inference", "layer", [L("Dropout", rate=0.5)], (B, T, F)))
    return cases


def sequential_cases():
    return [
        case(
            "sequential_embedding_lstm_gru",
            "sequential",
            [
                L("Embedding", input_dim=6, output_dim=4, mask_zero=True),
                L("LSTM", units=U, return_sequences=True),
                L("GRU", units=2),
            ],
            (B, T),
            input_kind="int",
            zero_steps="A",
        ),
        case(
            "sequential_embedding_lstm_gru_trailing",
            "sequential",
            [
                L("Embedding", input_dim=6, output_dim=4, mask_zero=True),
                L("LSTM", units=U, return_sequences=True),
                L("GRU", units=2, return_sequences=True),
            ],
            (B, T),
            input_kind="int",
            zero_steps="B",
        ),
        case(
            "sequential_masking_simple_rnn_go_backwards_lstm",
            "sequential",
            [
                L("Masking", mask_value=0.0),
                L("SimpleRNN", units=U, return_sequences=True, go_backwards=True),
                L("LSTM", units=2),
            ],
            (B, T, F),
            zero_steps="A",
        ),
        case(
            "sequential_masking_simple_rnn_go_backwards_lstm_trailing",
            "sequential",
            [
                L("Masking", mask_value=0.0),
                L("SimpleRNN", units=U, return_sequences=True, go_backwards=True),
                L("LSTM", units=2, return_sequences=True),
            ],
            (B, T, F),
            zero_steps="B",
        ),
        case(
            "sequential_masking_bidirectional_lstm_time_distributed_dense",
            "sequential",
            [
                L("Masking", mask_value=0.0),
                bidi(L("LSTM", units=U, return_sequences=True)),
                td(L("Dense", units=2)),
            ],
            (B, T, F),
            zero_steps="A",
        ),
        case(
            "sequential_explicit_mask_lstm_gru",
            "sequential",
            [L("LSTM", units=U, return_sequences=True), L("GRU", units=2, reset_after=False)],
            (B, T, F),
            mask="B",
        ),
        case(
            "sequential_lstm_dense",
            "sequential",
            [L("LSTM", units=U), L("Dense", units=2, activation="softmax")],
            (B, T, F),
        ),
    ]


def summary_cases():
    return [
        case("summary_simple_rnn_4", "summary", [L("SimpleRNN", units=4)], (None, 3, 2)),
        case(
            "summary_embedding_lstm_dense",
            "summary",
            [
                L("Embedding", input_dim=1000, output_dim=64),
                L("LSTM", units=128),
                L("Dense", units=10),
            ],
            (None, 10),
            input_kind="int",
        ),
        case(
            "summary_embedding_gru_simple_rnn_dense",
            "summary",
            [
                L("Embedding", input_dim=1000, output_dim=64),
                L("GRU", units=256, return_sequences=True),
                L("SimpleRNN", units=128),
                L("Dense", units=10),
            ],
            (None, 10),
            input_kind="int",
        ),
        case(
            "summary_bidirectional_lstm_stack",
            "summary",
            [
                bidi(L("LSTM", units=64, return_sequences=True)),
                bidi(L("LSTM", units=32)),
                L("Dense", units=10),
            ],
            (None, 5, 10),
        ),
    ]


def all_cases():
    cases = (
        recurrent_cases()
        + stateful_cases()
        + chain_cases()
        + bidirectional_cases()
        + core_cases()
        + sequential_cases()
        + summary_cases()
    )
    names = [c["name"] for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    return cases


# ---------------------------------------------------------------------------
# Keras construction and evaluation
# ---------------------------------------------------------------------------


def make_keras_layer(spec):
    cls = getattr(keras.layers, spec["class"])
    kwargs = dict(spec["kwargs"])
    if spec["class"] == "Bidirectional":
        bw = spec.get("backward_layer")
        return cls(
            make_keras_layer(spec["layer"]),
            backward_layer=make_keras_layer(bw) if bw else None,
            **kwargs,
        )
    if spec["class"] == "TimeDistributed":
        return cls(make_keras_layer(spec["layer"]), **kwargs)
    return cls(**kwargs)


def rng_for(name):
    return np.random.default_rng(zlib.crc32(name.encode()))


def as_list(out):
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def shape_none_batch(shape):
    shape = list(shape)
    return [None] + [int(s) if s is not None else None for s in shape[1:]]


def make_inputs(c, rng, dtype, shape=None):
    shape = tuple(c["input_shape"] if shape is None else shape)
    if c["input_kind"] == "int":
        vocab = c["layers"][0]["kwargs"]["input_dim"]
        x = rng.integers(1, vocab, size=shape).astype(np.int64)
    else:
        x = rng.uniform(-1.0, 1.0, size=shape)
    if c.get("zero_steps"):
        keep = MASKS[c["zero_steps"]][: shape[0], : shape[1]]
        if x.ndim == 3:
            x = x * keep[:, :, None]
        else:
            x = x * keep
    if c["input_kind"] != "int":
        x = x.astype(dtype)
    return x


def randomize_weights(obj, rng, dtype):
    ws = obj.get_weights()
    new = [rng.uniform(-0.5, 0.5, size=w.shape).astype(dtype) for w in ws]
    obj.set_weights(new)
    return new


def grads_or_zeros(grads, refs, what):
    out = []
    for g, r in zip(grads, refs):
        if g is None:
            print(f"    note: gradient for {what} is None (unconnected); storing zeros")
            out.append(
                np.zeros(
                    r.shape,
                    dtype=r.dtype.as_numpy_dtype if hasattr(r.dtype, "as_numpy_dtype") else r.dtype,
                )
            )
        else:
            out.append(tf.convert_to_tensor(g).numpy())
    return out


def state_sizes(spec):
    cls = spec["class"]
    if cls == "Bidirectional":
        return state_sizes(spec["layer"]) * 2
    u = spec["kwargs"]["units"]
    return [u, u] if cls == "LSTM" else [u]


def run_layer_case(c, dtype):
    rng = rng_for(c["name"])
    spec = c["layers"][0]
    x = make_inputs(c, rng, dtype)
    mask = MASKS[c["mask"]][: x.shape[0], : x.shape[1]] if c["mask"] else None
    init = []
    if c["n_initial_states"]:
        sizes = state_sizes(spec)
        assert len(sizes) == c["n_initial_states"], c["name"]
        init = [rng.uniform(-1, 1, size=(x.shape[0], s)).astype(dtype) for s in sizes]

    if c["model"] == "layer":
        obj = make_keras_layer(spec)
        build_shape = (None,) + x.shape[1:]
        obj.build(build_shape)
        model_layers = [obj]
    else:
        inp = keras.Input(shape=x.shape[1:], dtype="int64" if c["input_kind"] == "int" else dtype)
        model_layers = [make_keras_layer(s) for s in c["layers"]]
        obj = keras.Sequential([inp] + model_layers)
        build_shape = (None,) + x.shape[1:]
    assert len(obj.weights) == len(obj.get_weights())
    weights = randomize_weights(obj, rng, dtype)

    xt = tf.constant(x)
    it = [tf.constant(s) for s in init]
    kwargs = {"training": False}
    if mask is not None:
        kwargs["mask"] = tf.constant(mask)
    if init:
        kwargs["initial_state"] = it
    with tf.GradientTape(persistent=True) as tape:
        if c["input_kind"] != "int":
            tape.watch(xt)
        for s in it:
            tape.watch(s)
        outs = as_list(obj(xt, **kwargs))
        cots = [tf.constant(rng.uniform(-1, 1, size=o.shape).astype(dtype)) for o in outs]
        loss = tf.add_n([tf.reduce_sum(o * r) for o, r in zip(outs, cots)])
    gw = grads_or_zeros(tape.gradient(loss, obj.weights), obj.weights, "weight")
    arrays = {"x": x}
    if mask is not None:
        arrays["mask"] = mask
    for j, s in enumerate(init):
        arrays[f"initial_state_{j}"] = s
    for i, w in enumerate(weights):
        arrays[f"weight_{i}"] = w
    for k, (o, r) in enumerate(zip(outs, cots)):
        arrays[f"output_{k}"] = o.numpy()
        arrays[f"cotangent_{k}"] = r.numpy()
    for i, g in enumerate(gw):
        arrays[f"grad_weight_{i}"] = g
    if c["input_kind"] != "int":
        arrays["grad_x"] = grads_or_zeros([tape.gradient(loss, xt)], [xt], "x")[0]
    if it:
        for j, g in enumerate(grads_or_zeros(tape.gradient(loss, it), it, "state")):
            arrays[f"grad_initial_state_{j}"] = g
    # the mask Keras propagates from the (first) output, if any
    out_mask = getattr(outs[0], "_keras_mask", None)
    if c["model"] == "layer":
        m = obj.compute_mask(xt, kwargs.get("mask"))
        m = as_list(m)[0] if m is not None else None
        out_mask = m
    has_out_mask = out_mask is not None
    if has_out_mask:
        arrays["output_mask"] = np.asarray(out_mask).astype(bool)

    meta = {
        "build_shape": list(build_shape),
        "call": {"has_mask": mask is not None, "n_initial_states": len(init)},
        "n_outputs": len(outs),
        "output_shapes": [shape_none_batch(o.shape) for o in outs],
        "weight_shapes": [list(w.shape) for w in weights],
        "count_params": int(obj.count_params()),
        "output_mask": has_out_mask,
    }
    if c["model"] == "sequential":
        meta["layer_count_params"] = [int(ly.count_params()) for ly in model_layers]
        meta["layer_output_shapes"] = [shape_none_batch(ly.output.shape) for ly in model_layers]
    return meta, arrays


def run_stateful_case(c, dtype):
    rng = rng_for(c["name"])
    spec = c["layers"][0]
    xs = [make_inputs(c, rng, dtype) for _ in range(3)]
    layer = make_keras_layer(spec)
    layer.build(tuple(xs[0].shape))
    assert len(layer.weights) == len(layer.get_weights())
    weights = randomize_weights(layer, rng, dtype)
    arrays = {f"weight_{i}": w for i, w in enumerate(weights)}
    n_out = None
    for call in range(3):
        if call == 2:
            layer.reset_states()
        xt = tf.constant(xs[call])
        with tf.GradientTape() as tape:
            tape.watch(xt)
            outs = as_list(layer(xt, training=False))
            cots = [tf.constant(rng.uniform(-1, 1, size=o.shape).astype(dtype)) for o in outs]
            loss = tf.add_n([tf.reduce_sum(o * r) for o, r in zip(outs, cots)])
        grads = grads_or_zeros(
            tape.gradient(loss, layer.weights + [xt]), layer.weights + [xt], "weight/x"
        )
        n_out = len(outs)
        arrays[f"x_{call}"] = xs[call]
        for k, (o, r) in enumerate(zip(outs, cots)):
            arrays[f"output_{call}_{k}"] = o.numpy()
            arrays[f"cotangent_{call}_{k}"] = r.numpy()
        for j, s in enumerate(layer.states):
            arrays[f"states_{call}_{j}"] = s.numpy()
        for i, g in enumerate(grads[:-1]):
            arrays[f"grad_weight_{call}_{i}"] = g
        arrays[f"grad_x_{call}"] = grads[-1]
    meta = {
        "build_shape": list(xs[0].shape),
        "call": {"has_mask": False, "n_initial_states": 0},
        "n_outputs": n_out,
        "n_states": len(layer.states),
        "output_shapes": [shape_none_batch(arrays[f"output_0_{k}"].shape) for k in range(n_out)],
        "weight_shapes": [list(w.shape) for w in weights],
        "count_params": int(layer.count_params()),
        "output_mask": False,
    }
    return meta, arrays


def run_chain_case(c, dtype):
    rng = rng_for(c["name"])
    x = make_inputs(c, rng, dtype)
    x2 = make_inputs(c, rng, dtype, shape=c["x2_shape"])
    a = make_keras_layer(c["layers"][0])
    b = make_keras_layer(c["layers"][1])
    a.build((None,) + x.shape[1:])
    b.build((None,) + x2.shape[1:])
    wa = randomize_weights(a, rng, dtype)
    wb = randomize_weights(b, rng, dtype)
    xt, x2t = tf.constant(x), tf.constant(x2)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        tape.watch(x2t)
        outs_a = as_list(a(xt, training=False))
        out_b = b(x2t, initial_state=outs_a[1:], training=False)
        outs = [outs_a[0], out_b]
        cots = [tf.constant(rng.uniform(-1, 1, size=o.shape).astype(dtype)) for o in outs]
        loss = tf.add_n([tf.reduce_sum(o * r) for o, r in zip(outs, cots)])
    variables = a.weights + b.weights
    grads = grads_or_zeros(
        tape.gradient(loss, variables + [xt, x2t]), variables + [xt, x2t], "weight/x"
    )
    weights = wa + wb
    arrays = {"x": x, "x2": x2}
    for i, w in enumerate(weights):
        arrays[f"weight_{i}"] = w
    for k, (o, r) in enumerate(zip(outs, cots)):
        arrays[f"output_{k}"] = o.numpy()
        arrays[f"cotangent_{k}"] = r.numpy()
    for i, g in enumerate(grads[: len(variables)]):
        arrays[f"grad_weight_{i}"] = g
    arrays["grad_x"], arrays["grad_x2"] = grads[-2], grads[-1]
    meta = {
        "build_shape": [None] + list(x.shape[1:]),
        "build_shape_2": [None] + list(x2.shape[1:]),
        "call": {"has_mask": False, "n_initial_states": 0},
        "n_outputs": 2,
        "n_weights_first": len(wa),
        "output_shapes": [shape_none_batch(o.shape) for o in outs],
        "weight_shapes": [list(w.shape) for w in weights],
        "count_params": int(a.count_params() + b.count_params()),
        "layer_count_params": [int(a.count_params()), int(b.count_params())],
        "output_mask": False,
    }
    return meta, arrays


def run_summary_case(c, dtype):
    shape = c["input_shape"]
    inp = keras.Input(shape=tuple(shape[1:]), dtype="int64" if c["input_kind"] == "int" else dtype)
    model_layers = [make_keras_layer(s) for s in c["layers"]]
    model = keras.Sequential([inp] + model_layers)
    meta = {
        "build_shape": list(shape),
        "call": {"has_mask": False, "n_initial_states": 0},
        "n_outputs": 1,
        "output_shapes": [shape_none_batch(model_layers[-1].output.shape)],
        "weight_shapes": [list(w.shape) for w in model.weights],
        "count_params": int(model.count_params()),
        "layer_count_params": [int(ly.count_params()) for ly in model_layers],
        "layer_output_shapes": [shape_none_batch(ly.output.shape) for ly in model_layers],
        "layer_weight_shapes": [[list(w.shape) for w in ly.weights] for ly in model_layers],
        "output_mask": False,
    }
    return meta, {}


RUNNERS = {
    "layer": run_layer_case,
    "sequential": run_layer_case,
    "stateful": run_stateful_case,
    "chain": run_chain_case,
    "summary": run_summary_case,
}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    only = set(argv)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    if not only:
        for old in OUT_DIR.glob("*.npz"):
            old.unlink()
    tf.config.experimental.enable_op_determinism()
    n = 0
    for dtype in DTYPES:
        keras.config.set_floatx(dtype)
        for c in all_cases():
            if only and c["name"] not in only:
                continue
            keras.utils.clear_session()
            meta, arrays = RUNNERS[c["model"]](c, dtype)
            config = {
                "name": c["name"],
                "dtype": dtype,
                "keras_version": keras.__version__,
                "tf_version": tf.__version__,
                "model": c["model"],
                "layers": c["layers"],
                "input_shape": c["input_shape"],
                "input_kind": c["input_kind"],
                **meta,
            }
            path = OUT_DIR / f"{c['name']}__{dtype}.npz"
            np.savez_compressed(path, config=np.array(json.dumps(config, sort_keys=True)), **arrays)
            n += 1
    keras.config.set_floatx("float32")
    print(f"wrote {n} fixtures to {OUT_DIR} (keras {keras.__version__}, tf {tf.__version__})")


if __name__ == "__main__":
    main()
