"""Generate the Keras and PyTorch fixtures of ``tests/test_interop.py``.

Neither framework is a numrnn dependency, and they usually live in different
environments, so the script makes one framework's fixtures per run::

    TF_CPP_MIN_LOG_LEVEL=3 /work/tfvenv/bin/python tools/make_interop_fixtures.py --framework keras
    python tools/make_interop_fixtures.py --framework torch

Files land in ``tests/fixtures/interop/`` (a few KB each; commit them).
Inputs and weights come from numpy generators seeded per case, so reruns
give the same files up to the frameworks' own arithmetic.

Keras cases (``keras_<case>``)
------------------------------
``keras_<case>.weights.h5``
    ``model.save_weights(...)`` of a Keras 3 ``Sequential``.
``keras_<case>.npz``
    ``config`` (0-d str array, JSON: ``{"case", "keras_version", "dtype",
    "input_kind", "layers": [spec, ...]}``, a spec being ``{"class": name,
    "kwargs": {...}}`` plus ``"layer": spec`` for wrappers), ``x``,
    ``output`` (``model(x)``) and ``weight_<i>`` (``model.get_weights()``).

PyTorch cases (``torch_<case>.npz``)
------------------------------------
``config`` (JSON: ``{"case", "torch_version", "cell", "num_layers",
"bidirectional", "bias", "input_size", "hidden_size", "nonlinearity",
"dtype"}``), ``x`` (batch-first), ``output``, ``h_n`` (and ``c_n`` for an
LSTM), and the ``state_dict`` as ``sd.<key>`` arrays.
"""

import argparse
import json
import os
import zlib
from pathlib import Path

import numpy as np

OUT_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "interop"
B, T, F = 3, 5, 4

KERAS_CASES = {
    # repeated classes (lstm, lstm_1, dense, dense_1) exercise Keras's group names
    "float_stack": {
        "input_kind": "float",
        "dtype": "float32",
        "layers": [
            {"class": "Masking", "kwargs": {"mask_value": 0.0}},
            {"class": "LSTM", "kwargs": {"units": 4, "return_sequences": True}},
            {
                "class": "Bidirectional",
                "kwargs": {"merge_mode": "concat"},
                "layer": {"class": "GRU", "kwargs": {"units": 3, "return_sequences": True}},
            },
            {
                "class": "TimeDistributed",
                "kwargs": {},
                "layer": {"class": "Dense", "kwargs": {"units": 2, "activation": "tanh"}},
            },
            {"class": "LSTM", "kwargs": {"units": 3, "go_backwards": True}},
            {"class": "Dense", "kwargs": {"units": 2, "activation": "relu"}},
            {"class": "Dense", "kwargs": {"units": 1}},
        ],
    },
    "tokens": {
        "input_kind": "int",
        "dtype": "float32",
        "layers": [
            {"class": "Embedding", "kwargs": {"input_dim": 10, "output_dim": 4, "mask_zero": True}},
            {
                "class": "GRU",
                "kwargs": {"units": 3, "reset_after": False, "return_sequences": True},
            },
            {"class": "SimpleRNN", "kwargs": {"units": 2}},
            {"class": "Dense", "kwargs": {"units": 1, "activation": "sigmoid"}},
        ],
    },
}

TORCH_CASES = {
    "lstm_2layer_bidirectional": dict(cell="lstm", num_layers=2, bidirectional=True),
    "lstm_float64": dict(cell="lstm", num_layers=1, dtype="float64"),
    "gru_1layer": dict(cell="gru", num_layers=1),
    "gru_2layer_nobias_bidirectional": dict(
        cell="gru", num_layers=2, bidirectional=True, bias=False
    ),
    "rnn_relu": dict(cell="simple", num_layers=1, nonlinearity="relu"),
}


def _rng(case):
    return np.random.default_rng(zlib.crc32(case.encode()))


def _write(name, arrays, config):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.npz"
    np.savez_compressed(path, config=np.array(json.dumps(config, sort_keys=True)), **arrays)
    print(f"wrote {path.relative_to(OUT_DIR.parent.parent.parent)}")


def make_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import keras

    def build(spec, dtype):
        cls = getattr(keras.layers, spec["class"])
        kwargs = dict(spec["kwargs"])
        if "layer" in spec:
            return cls(build(spec["layer"], dtype), **kwargs)
        return cls(dtype=dtype, **kwargs)

    for case, spec in KERAS_CASES.items():
        rng = _rng(case)
        dtype = spec["dtype"]
        if spec["input_kind"] == "int":
            x = rng.integers(1, 10, size=(B, T))
            x[0, 3:] = 0  # padding, masked by mask_zero
            x[1, 4:] = 0
            inputs = keras.Input(shape=(T,), dtype="int32")
        else:
            x = rng.normal(size=(B, T, F)).astype(dtype)
            x[0, 3:] = 0.0  # masked by Masking
            x[2, :1] = 0.0
            inputs = keras.Input(shape=(T, F), dtype=dtype)
        model = keras.Sequential([inputs] + [build(s, dtype) for s in spec["layers"]])
        weights = [rng.normal(scale=0.5, size=w.shape).astype(w.dtype) for w in model.get_weights()]
        model.set_weights(weights)
        output = np.asarray(model(x))
        name = f"keras_{case}"
        model.save_weights(str(OUT_DIR / f"{name}.weights.h5"))
        config = {
            "case": case,
            "keras_version": keras.__version__,
            "dtype": dtype,
            "input_kind": spec["input_kind"],
            "layers": spec["layers"],
        }
        arrays = {"x": x, "output": output}
        arrays.update({f"weight_{i}": w for i, w in enumerate(model.get_weights())})
        _write(name, arrays, config)


def make_torch():
    import torch

    modules = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "simple": torch.nn.RNN}
    for case, options in TORCH_CASES.items():
        cell = options["cell"]
        dtype = options.get("dtype", "float32")
        config = {
            "case": case,
            "torch_version": torch.__version__,
            "cell": cell,
            "num_layers": options["num_layers"],
            "bidirectional": options.get("bidirectional", False),
            "bias": options.get("bias", True),
            "input_size": F,
            "hidden_size": 3,
            "nonlinearity": options.get("nonlinearity", "tanh"),
            "dtype": dtype,
        }
        rng = _rng(case)
        kwargs = dict(
            input_size=F,
            hidden_size=config["hidden_size"],
            num_layers=config["num_layers"],
            bidirectional=config["bidirectional"],
            bias=config["bias"],
            batch_first=True,
        )
        if cell == "simple":
            kwargs["nonlinearity"] = config["nonlinearity"]
        module = modules[cell](**kwargs).to(getattr(torch, dtype))
        with torch.no_grad():
            for parameter in module.parameters():
                values = rng.normal(scale=0.5, size=tuple(parameter.shape))
                parameter.copy_(torch.from_numpy(values))
        x = rng.normal(size=(B, T, F)).astype(dtype)
        with torch.no_grad():
            output, state = module(torch.from_numpy(x))
        arrays = {"x": x, "output": output.numpy()}
        if cell == "lstm":
            arrays["h_n"], arrays["c_n"] = state[0].numpy(), state[1].numpy()
        else:
            arrays["h_n"] = state.numpy()
        for key, value in module.state_dict().items():
            arrays[f"sd.{key}"] = value.numpy()
        _write(f"torch_{case}", arrays, config)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=("keras", "torch"), required=True)
    args = parser.parse_args()
    if args.framework == "keras":
        make_keras()
    else:
        make_torch()


if __name__ == "__main__":
    main()
