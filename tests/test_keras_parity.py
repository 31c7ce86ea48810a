"""Parity with Keras 3: numrnn must reproduce recorded Keras numbers.

The fixtures in ``tests/fixtures/keras/`` were written by
``tools/make_keras_fixtures.py`` with real Keras (TensorFlow backend, CPU);
see that script's docstring for the file schema. This test needs only numpy
and numrnn: it rebuilds each case through numrnn's public API, loads the
Keras weights with ``set_weights``, and compares outputs, states and the
gradients of ``L = sum_k sum(output_k * cotangent_k)`` (``vjp``).

Tolerances are fixed (1e-10 for float64, 1e-5 for float32, both relative and
absolute); do not loosen them to make a case pass.
"""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

import numrnn
from numrnn import Sequential, layers

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures" / "keras"
FILES = sorted(FIXTURE_DIR.glob("*.npz"))
TOL = {"float64": 1e-10, "float32": 1e-5}


def _load(path):
    with np.load(path) as data:
        config = json.loads(str(data["config"]))
        arrays = {k: data[k] for k in data.files if k != "config"}
    return config, arrays


def _select(predicate):
    out = []
    for path in FILES:
        with np.load(path) as data:
            config = json.loads(str(data["config"]))
        if predicate(config):
            out.append(pytest.param(path, id=path.stem))
    return out


NUMERIC = _select(lambda c: c["model"] in ("layer", "sequential", "stateful", "chain"))
SUMMARY = _select(lambda c: c["model"] == "summary")
LAYER_MASKS = _select(lambda c: c["model"] == "layer" and c["output_mask"])


def test_fixtures_present():
    assert FILES, f"no Keras fixtures in {FIXTURE_DIR}; run tools/make_keras_fixtures.py"
    assert SUMMARY and NUMERIC


@pytest.fixture(autouse=True)
def _restore_floatx():
    old = numrnn.config.floatx()
    yield
    numrnn.config.set_floatx(old)


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


class Checker:
    """Collect every mismatch of one fixture, then fail once with all of them."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = np.dtype(dtype)
        self.tol = TOL[dtype]
        self.errors = []

    def fail(self, msg):
        self.errors.append(msg)

    def equal(self, actual, expected, what):
        if actual != expected:
            self.fail(f"{what}: numrnn {actual!r} != Keras {expected!r}")

    def close(self, actual, expected, what, check_dtype=True):
        if actual is None:
            self.fail(f"{what}: numrnn returned None")
            return
        actual = np.asarray(actual)
        if actual.shape != expected.shape:
            self.fail(f"{what}: shape {actual.shape} != Keras {expected.shape}")
            return
        if check_dtype and expected.dtype.kind == "f" and actual.dtype != self.dtype:
            self.fail(f"{what}: dtype {actual.dtype} != {self.dtype}")
        try:
            np.testing.assert_allclose(actual, expected, rtol=self.tol, atol=self.tol, err_msg=what)
        except AssertionError as exc:
            self.fail(f"{what}: {str(exc).strip()}")

    def close_list(self, actual, expected, what):
        if actual is None:
            self.fail(f"{what}: numrnn returned None, expected {len(expected)} arrays")
            return
        actual = list(actual)
        if len(actual) != len(expected):
            self.fail(f"{what}: numrnn gave {len(actual)} arrays, Keras {len(expected)}")
            return
        for i, (a, e) in enumerate(zip(actual, expected)):
            self.close(a, e, f"{what}[{i}]")

    def done(self):
        if self.errors:
            pytest.fail(
                f"{self.name}: {len(self.errors)} mismatch(es) with Keras:\n\n"
                + "\n\n".join(self.errors),
                pytrace=False,
            )


def build_layer(spec, dtype):
    """A numrnn layer from a fixture layer spec (Keras class name + kwargs)."""
    cls = getattr(layers, spec["class"])
    kwargs = dict(spec["kwargs"])
    if "layer" in spec:
        inner = build_layer(spec["layer"], dtype)
        if spec["class"] == "Bidirectional":
            bw = spec.get("backward_layer")
            kwargs["backward_layer"] = build_layer(bw, dtype) if bw else None
        # wrappers take their dtype from the wrapped layer
        return cls(inner, **kwargs)
    return cls(dtype=dtype, **kwargs)


def as_list(out):
    if isinstance(out, (list, tuple)):
        return list(out)
    return [out]


def shape_tuple(shape):
    return tuple(None if s is None else int(s) for s in shape)


def numbered(arrays, prefix):
    """arrays[prefix + '0'], arrays[prefix + '1'], ... while present."""
    out = []
    while f"{prefix}{len(out)}" in arrays:
        out.append(arrays[f"{prefix}{len(out)}"])
    return out


def call_kwargs(config, arrays):
    kwargs = {}
    if config["call"]["has_mask"]:
        kwargs["mask"] = arrays["mask"]
    if config["call"]["n_initial_states"]:
        kwargs["initial_state"] = numbered(arrays, "initial_state_")
    return kwargs


def check_output_shape(chk, layer, expected, what):
    shape = getattr(layer, "output_shape", None)
    if shape is None:
        chk.fail(f"{what}: missing after build")
        return
    chk.equal(shape_tuple(shape), shape_tuple(expected), what)


def check_structure(chk, obj, config, weights):
    shapes = [tuple(np.shape(w)) for w in obj.get_weights()]
    chk.equal(shapes, [tuple(s) for s in config["weight_shapes"]], "get_weights() shapes")
    chk.equal(int(obj.count_params()), config["count_params"], "count_params()")
    if shapes == [w.shape for w in weights]:
        obj.set_weights([w.copy() for w in weights])
        back = obj.get_weights()
        for i, (a, e) in enumerate(zip(back, weights)):
            if not np.array_equal(np.asarray(a), e):
                chk.fail(f"get_weights()[{i}] after set_weights differs from what was set")
        return True
    return False


# ---------------------------------------------------------------------------
# numeric parity
# ---------------------------------------------------------------------------


def run_layer(chk, config, arrays):
    dtype = config["dtype"]
    weights = numbered(arrays, "weight_")
    layer = build_layer(config["layers"][0], dtype)
    layer.build(shape_tuple(config["build_shape"]))
    if not check_structure(chk, layer, config, weights):
        return
    if config["n_outputs"] == 1:
        check_output_shape(chk, layer, config["output_shapes"][0], "output_shape")
    x = arrays["x"]
    kwargs = call_kwargs(config, arrays)
    outputs = numbered(arrays, "output_")
    cots = numbered(arrays, "cotangent_")

    chk.close_list(as_list(layer(x, training=False, **kwargs)), outputs, "outputs")

    wg, gx, gs = layer.vjp(x, [c.copy() for c in cots], training=False, **kwargs)
    chk.close_list(wg, numbered(arrays, "grad_weight_"), "weight gradients")
    if config["input_kind"] == "int":
        if gx is not None:
            chk.fail("input gradient: expected None for integer inputs")
    else:
        chk.close(gx, arrays["grad_x"], "input gradient")
    if config["call"]["n_initial_states"]:
        chk.close_list(gs, numbered(arrays, "grad_initial_state_"), "initial_state gradients")
    elif gs is not None:
        chk.fail(f"initial_state gradients: expected None (no initial_state), got {type(gs)}")


def run_sequential(chk, config, arrays):
    dtype = config["dtype"]
    weights = numbered(arrays, "weight_")
    model = Sequential([build_layer(s, dtype) for s in config["layers"]])
    model.build(shape_tuple(config["build_shape"]))
    chk.equal(len(model.layers), len(config["layers"]), "len(model.layers)")
    for i, (ly, n, shp) in enumerate(
        zip(model.layers, config["layer_count_params"], config["layer_output_shapes"])
    ):
        chk.equal(int(ly.count_params()), n, f"layers[{i}].count_params()")
        check_output_shape(chk, ly, shp, f"layers[{i}].output_shape")
    if not check_structure(chk, model, config, weights):
        return
    x = arrays["x"]
    kwargs = {"mask": arrays["mask"]} if config["call"]["has_mask"] else {}
    outputs = numbered(arrays, "output_")
    cots = numbered(arrays, "cotangent_")

    chk.close_list(as_list(model(x, training=False, **kwargs)), outputs, "outputs")

    wg, gx, gs = model.vjp(x, [c.copy() for c in cots], **kwargs)
    chk.close_list(wg, numbered(arrays, "grad_weight_"), "weight gradients")
    if config["input_kind"] == "int":
        if gx is not None:
            chk.fail("input gradient: expected None for integer inputs")
    else:
        chk.close(gx, arrays["grad_x"], "input gradient")
    if gs is not None:
        chk.fail(f"initial_state gradients: expected None (no initial_state), got {type(gs)}")


def run_stateful(chk, config, arrays):
    dtype = config["dtype"]
    weights = numbered(arrays, "weight_")
    build_shape = shape_tuple(config["build_shape"])

    # forward: call 0, call 1 (continues from call 0's states), reset, call 2
    layer = build_layer(config["layers"][0], dtype)
    layer.build(build_shape)
    if not check_structure(chk, layer, config, weights):
        return
    for c in range(3):
        if c == 2:
            layer.reset_states()
        out = as_list(layer(arrays[f"x_{c}"], training=False))
        chk.close_list(out, numbered(arrays, f"output_{c}_"), f"call {c} outputs")
        chk.close_list(layer.states, numbered(arrays, f"states_{c}_"), f"states after call {c}")

    # gradients: a fresh layer, each vjp from the state its call started with
    layer = build_layer(config["layers"][0], dtype)
    layer.build(build_shape)
    layer.set_weights([w.copy() for w in weights])
    for c in range(3):
        if c == 2:
            layer.reset_states()
        cots = [r.copy() for r in numbered(arrays, f"cotangent_{c}_")]
        wg, gx, gs = layer.vjp(arrays[f"x_{c}"], cots, training=False)
        chk.close_list(wg, numbered(arrays, f"grad_weight_{c}_"), f"call {c} weight gradients")
        chk.close(gx, arrays[f"grad_x_{c}"], f"call {c} input gradient")
        if gs is not None:
            chk.fail(f"call {c} initial_state gradients: expected None, got {type(gs)}")
        chk.close_list(
            layer.states,
            numbered(arrays, f"states_{c}_"),
            f"states after vjp {c} (vjp advances states like a call)",
        )


def run_chain(chk, config, arrays):
    """A's final states are B's initial_state; backprop B then A by hand."""
    dtype = config["dtype"]
    weights = numbered(arrays, "weight_")
    n_a = config["n_weights_first"]
    a = build_layer(config["layers"][0], dtype)
    b = build_layer(config["layers"][1], dtype)
    a.build(shape_tuple(config["build_shape"]))
    b.build(shape_tuple(config["build_shape_2"]))
    shapes = [tuple(np.shape(w)) for w in a.get_weights() + b.get_weights()]
    chk.equal(shapes, [tuple(s) for s in config["weight_shapes"]], "get_weights() shapes")
    chk.equal(
        [int(a.count_params()), int(b.count_params())],
        config["layer_count_params"],
        "count_params()",
    )
    if shapes != [w.shape for w in weights]:
        return
    a.set_weights([w.copy() for w in weights[:n_a]])
    b.set_weights([w.copy() for w in weights[n_a:]])
    x, x2 = arrays["x"], arrays["x2"]
    outputs = numbered(arrays, "output_")
    cots = numbered(arrays, "cotangent_")

    out_a = as_list(a(x, training=False))
    states = out_a[1:]
    out_b = b(x2, initial_state=states, training=False)
    chk.close_list([out_a[0], out_b], outputs, "outputs")

    wg_b, gx2, gs_b = b.vjp(x2, [cots[1].copy()], initial_state=states, training=False)
    if gs_b is None or len(gs_b) != len(states):
        chk.fail(f"B.vjp initial_state gradients: expected {len(states)} arrays, got {gs_b!r}")
        return
    cot_a = [cots[0].copy()] + [np.asarray(g) for g in gs_b]
    wg_a, gx, gs_a = a.vjp(x, cot_a, training=False)
    chk.close_list(
        list(wg_a) + list(wg_b), numbered(arrays, "grad_weight_"), "weight gradients (A then B)"
    )
    chk.close(gx, arrays["grad_x"], "input gradient of A")
    chk.close(gx2, arrays["grad_x2"], "input gradient of B")
    if gs_a is not None:
        chk.fail("A.vjp initial_state gradients: expected None (no initial_state)")


RUNNERS = {
    "layer": run_layer,
    "sequential": run_sequential,
    "stateful": run_stateful,
    "chain": run_chain,
}


@pytest.mark.parametrize("path", NUMERIC)
def test_keras_parity(path):
    config, arrays = _load(path)
    numrnn.config.set_floatx(config["dtype"])
    chk = Checker(path.stem, config["dtype"])
    RUNNERS[config["model"]](chk, config, arrays)
    chk.done()


# ---------------------------------------------------------------------------
# output masks (only where numrnn exposes compute_mask)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", LAYER_MASKS)
def test_keras_output_mask(path):
    config, arrays = _load(path)
    numrnn.config.set_floatx(config["dtype"])
    layer = build_layer(config["layers"][0], config["dtype"])
    if not hasattr(layer, "compute_mask"):
        pytest.skip("numrnn layer has no compute_mask")
    layer.build(shape_tuple(config["build_shape"]))
    mask = arrays["mask"] if config["call"]["has_mask"] else None
    got = layer.compute_mask(arrays["x"], mask)
    if isinstance(got, (list, tuple)):
        got = got[0]
    assert got is not None, f"{path.stem}: compute_mask returned None, Keras gives a mask"
    np.testing.assert_array_equal(
        np.asarray(got, dtype=bool), arrays["output_mask"], err_msg=f"{path.stem}: output mask"
    )


# ---------------------------------------------------------------------------
# parameter counts and output shapes (model.summary)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", SUMMARY)
def test_keras_summary_counts(path):
    config, _ = _load(path)
    numrnn.config.set_floatx(config["dtype"])
    chk = Checker(path.stem, config["dtype"])
    model = Sequential([build_layer(s, config["dtype"]) for s in config["layers"]])
    model.build(shape_tuple(config["build_shape"]))
    chk.equal(int(model.count_params()), config["count_params"], "model.count_params()")
    chk.equal(len(model.layers), len(config["layers"]), "len(model.layers)")
    for i, ly in enumerate(model.layers):
        chk.equal(
            int(ly.count_params()), config["layer_count_params"][i], f"layers[{i}].count_params()"
        )
        check_output_shape(chk, ly, config["layer_output_shapes"][i], f"layers[{i}].output_shape")
        chk.equal(
            [tuple(np.shape(w)) for w in ly.get_weights()],
            [tuple(s) for s in config["layer_weight_shapes"][i]],
            f"layers[{i}].get_weights() shapes",
        )
    chk.equal(
        [tuple(np.shape(w)) for w in model.get_weights()],
        [tuple(s) for s in config["weight_shapes"]],
        "model.get_weights() shapes",
    )

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        ret = model.summary()
    text = buf.getvalue() + (ret if isinstance(ret, str) else "")
    for n in [config["count_params"], *config["layer_count_params"]]:
        if f"{n:,}" not in text and str(n) not in text:
            chk.fail(f"summary() text does not show the parameter count {n:,}:\n{text}")
    chk.done()
