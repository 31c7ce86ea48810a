"""numrnn.interop against outputs of real Keras 3 and real PyTorch.

The fixtures in ``tests/fixtures/interop`` come from
``tools/make_interop_fixtures.py``; these tests need neither framework
(h5py only for the ``.weights.h5`` cases).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from numrnn import Sequential, layers
from numrnn.interop import (
    layers_from_torch,
    load_keras_arrays,
    load_keras_weights,
    read_keras_weights,
    torch_to_keras_weights,
)

FIXTURES = Path(__file__).parent / "fixtures" / "interop"
KERAS_CASES = ["float_stack", "tokens"]
TORCH_CASES = sorted(p.stem[len("torch_") :] for p in FIXTURES.glob("torch_*.npz"))


def _fixture(name):
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    return json.loads(str(arrays.pop("config"))), arrays


def _layer(spec, dtype):
    cls = getattr(layers, spec["class"])
    if "layer" in spec:
        return cls(_layer(spec["layer"], dtype), **spec["kwargs"])
    return cls(dtype=dtype, **spec["kwargs"])


def _keras_model(config, x):
    model = Sequential([_layer(spec, config["dtype"]) for spec in config["layers"]])
    model.build((None,) + x.shape[1:])
    return model


def _tolerance(dtype):
    return dict(rtol=1e-5, atol=1e-6) if dtype == "float32" else dict(rtol=1e-12, atol=1e-12)


def test_fixtures_are_present():
    assert len(TORCH_CASES) >= 5
    for case in KERAS_CASES:
        assert (FIXTURES / f"keras_{case}.weights.h5").exists()


# --------------------------------------------------------------------------
# Keras
# --------------------------------------------------------------------------


@pytest.mark.parametrize("case", KERAS_CASES)
def test_keras_weights_h5_reproduces_keras(case):
    pytest.importorskip("h5py")
    config, arrays = _fixture(f"keras_{case}")
    model = _keras_model(config, arrays["x"])
    assert load_keras_weights(model, FIXTURES / f"keras_{case}.weights.h5") is model
    keras_weights = [arrays[f"weight_{i}"] for i in range(len(model.weights))]
    for ours, theirs in zip(model.get_weights(), keras_weights, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(model(arrays["x"]), arrays["output"], **_tolerance(config["dtype"]))


@pytest.mark.parametrize("case", KERAS_CASES)
def test_keras_get_weights_arrays_reproduce_keras(case, tmp_path):
    config, arrays = _fixture(f"keras_{case}")
    weights = [arrays[f"weight_{i}"] for i in range(sum(k.startswith("weight_") for k in arrays))]
    model = load_keras_arrays(_keras_model(config, arrays["x"]), weights)
    np.testing.assert_allclose(model(arrays["x"]), arrays["output"], **_tolerance(config["dtype"]))
    # the same arrays through an .npz written by numpy.savez(path, *weights)
    path = tmp_path / "weights.npz"
    np.savez(path, *weights)
    again = load_keras_arrays(_keras_model(config, arrays["x"]), path)
    np.testing.assert_array_equal(again(arrays["x"]), model(arrays["x"]))


def test_read_keras_weights_lists_groups():
    pytest.importorskip("h5py")
    groups = read_keras_weights(FIXTURES / "keras_float_stack.weights.h5")
    assert sorted(groups) == [
        "layers/bidirectional/backward_layer/cell/vars",
        "layers/bidirectional/forward_layer/cell/vars",
        "layers/dense/vars",
        "layers/dense_1/vars",
        "layers/lstm/cell/vars",
        "layers/lstm_1/cell/vars",
        "layers/time_distributed/layer/vars",
    ]
    kernel, recurrent, bias = groups["layers/lstm/cell/vars"]
    assert kernel.shape == (4, 16) and recurrent.shape == (4, 16) and bias.shape == (16,)


def test_keras_single_layer_and_explicit_keys():
    pytest.importorskip("h5py")
    config, arrays = _fixture("keras_float_stack")
    lstm = layers.LSTM(3, go_backwards=True)
    lstm.build((None, None, 2))
    load_keras_weights(lstm, FIXTURES / "keras_float_stack.weights.h5", keys="lstm_1")
    reference = _keras_model(config, arrays["x"])
    load_keras_weights(reference, FIXTURES / "keras_float_stack.weights.h5")
    for ours, theirs in zip(lstm.get_weights(), reference.layers[4].get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_keras_mismatches_raise_clear_errors():
    pytest.importorskip("h5py")
    path = FIXTURES / "keras_float_stack.weights.h5"
    config, arrays = _fixture("keras_float_stack")
    # a layer too few: the file holds weights nobody took
    short = Sequential([_layer(spec, "float32") for spec in config["layers"][:-1]])
    short.build((None, T_STEPS, 4))
    with pytest.raises(ValueError, match="no numrnn layer took"):
        load_keras_weights(short, path)
    # wrong units
    specs = json.loads(json.dumps(config["layers"]))
    specs[1]["kwargs"]["units"] = 5
    wrong = Sequential([_layer(spec, "float32") for spec in specs])
    wrong.build((None, T_STEPS, 4))
    with pytest.raises(ValueError, match=r"layers/lstm: array 0 has shape \(4, 16\)"):
        load_keras_weights(wrong, path)
    # GRU instead of LSTM at the same place: the group is not in the file
    specs = json.loads(json.dumps(config["layers"]))
    specs[1]["class"] = "GRU"
    other = Sequential([_layer(spec, "float32") for spec in specs])
    other.build((None, T_STEPS, 4))
    with pytest.raises(ValueError, match="layers/gru: not in the file"):
        load_keras_weights(other, path)
    unbuilt = Sequential([layers.LSTM(4)])
    with pytest.raises(ValueError, match="not built"):
        load_keras_weights(unbuilt, path)
    with pytest.raises(ValueError, match="Got 2 arrays"):
        load_keras_arrays(_keras_model(config, arrays["x"]), [np.zeros(1), np.zeros(2)])


T_STEPS = 5


def test_keras_file_that_is_not_hdf5(tmp_path):
    pytest.importorskip("h5py")
    bad = tmp_path / "bad.weights.h5"
    bad.write_bytes(b"not hdf5")
    model = Sequential([layers.Input(shape=(2, 1)), layers.Dense(1)])
    with pytest.raises(ValueError, match="not an HDF5 file"):
        load_keras_weights(model, bad)


# --------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------


def _state_dict(arrays):
    return {key[3:]: value for key, value in arrays.items() if key.startswith("sd.")}


@pytest.mark.parametrize("case", TORCH_CASES)
def test_torch_layers_reproduce_torch_output(case):
    config, arrays = _fixture(f"torch_{case}")
    state_dict = _state_dict(arrays)
    built = layers_from_torch(
        state_dict,
        config["cell"],
        dtype=config["dtype"],
        activation=config["nonlinearity"],
    )
    expected_class = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}
    assert len(built) == config["num_layers"]
    for layer in built:
        inner = layer.forward_layer if config["bidirectional"] else layer
        assert type(inner) is expected_class[config["cell"]]
        assert inner.use_bias == config["bias"]
    model = Sequential(built)
    tolerance = _tolerance(config["dtype"])
    np.testing.assert_allclose(model(arrays["x"]), arrays["output"], **tolerance)
    # the final output of the last layer is PyTorch's last h_n (both directions)
    last = layers_from_torch(
        state_dict,
        config["cell"],
        dtype=config["dtype"],
        activation=config["nonlinearity"],
        return_sequences=False,
    )
    final = Sequential(last)(arrays["x"])
    h_n = arrays["h_n"]
    expected = np.concatenate([h_n[-2], h_n[-1]], axis=-1) if config["bidirectional"] else h_n[-1]
    np.testing.assert_allclose(final, expected, **tolerance)


@pytest.mark.parametrize("case", ["lstm_float64", "gru_1layer", "rnn_relu"])
def test_torch_final_states_through_set_weights(case):
    config, arrays = _fixture(f"torch_{case}")
    cell = config["cell"]
    cls = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}[cell]
    kwargs = {"activation": config["nonlinearity"]} if cell == "simple" else {}
    layer = cls(3, return_state=True, dtype=config["dtype"], **kwargs)
    layer.build((None, None, config["input_size"]))
    layer.set_weights(torch_to_keras_weights(_state_dict(arrays), cell))
    outputs = layer(arrays["x"])
    tolerance = _tolerance(config["dtype"])
    np.testing.assert_allclose(outputs[1], arrays["h_n"][0], **tolerance)
    if cell == "lstm":
        np.testing.assert_allclose(outputs[2], arrays["c_n"][0], **tolerance)


def test_torch_gate_mapping_by_hand():
    # GRU: PyTorch (r, z, n) blocks -> Keras (z, r, h); LSTM biases add up
    units, n_in = 2, 3
    w_ih = np.arange(3 * units * n_in, dtype=np.float64).reshape(3 * units, n_in)
    w_hh = np.arange(3 * units * units, dtype=np.float64).reshape(3 * units, units) + 100
    b_ih = np.arange(3 * units, dtype=np.float64)
    b_hh = b_ih + 50
    sd = {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
    kernel, recurrent, bias = torch_to_keras_weights(sd, "gru")
    r, z, n = np.split(w_ih, 3)
    np.testing.assert_array_equal(kernel, np.concatenate([z, r, n]).T)
    assert bias.shape == (2, 3 * units)
    np.testing.assert_array_equal(bias[0], np.concatenate(np.split(b_ih, 3)[1::-1] + [b_ih[4:]]))
    np.testing.assert_array_equal(recurrent[:, :units], w_hh[units : 2 * units].T)
    lstm_sd = {
        "weight_ih_l0": np.ones((8, 3)),
        "weight_hh_l0": np.ones((8, 2)),
        "bias_ih_l0": np.arange(8.0),
        "bias_hh_l0": np.full(8, 0.5),
    }
    np.testing.assert_array_equal(torch_to_keras_weights(lstm_sd, "lstm")[2], np.arange(8.0) + 0.5)


def test_torch_errors_and_prefix():
    config, arrays = _fixture("torch_gru_1layer")
    state_dict = _state_dict(arrays)
    prefixed = {f"encoder.rnn.{k}": v for k, v in state_dict.items()}
    a = layers_from_torch(prefixed, "gru", prefix="encoder.rnn.")[0]
    b = layers_from_torch(state_dict, "gru")[0]
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="prefix="):
        layers_from_torch(prefixed, "gru")
    with pytest.raises(ValueError, match="Unknown cell"):
        layers_from_torch(state_dict, "transformer")
    with pytest.raises(ValueError, match="do not fit a lstm cell"):
        torch_to_keras_weights(state_dict, "lstm")
    projected = dict(state_dict, weight_hr_l0=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="proj_size"):
        layers_from_torch(projected, "gru")
    with pytest.raises(ValueError, match="no 'weight_ih_l1'"):
        torch_to_keras_weights(state_dict, "gru", layer=1)
