"""``import numrnn`` must compile nothing: kernels compile on first use."""

import json
import subprocess
import sys

PROBE = r"""
import json, sys
import numrnn  # noqa: F401
from numba.core.dispatcher import Dispatcher

compiled = []
for name, module in list(sys.modules.items()):
    if not name.startswith("numrnn"):
        continue
    for attr, value in vars(module).items():
        if isinstance(value, Dispatcher) and value.signatures:
            compiled.append(f"{name}.{attr}")
print(json.dumps({"compiled": compiled}))
"""


def _probe():
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_compiles_no_kernel():
    report = _probe()
    assert report["compiled"] == []


def test_probe_detects_a_compiled_kernel():
    """The probe itself can fail: after one call a dispatcher has a signature."""
    code = PROBE.replace(
        "from numba.core.dispatcher import Dispatcher",
        "from numba.core.dispatcher import Dispatcher\n"
        "import numpy as np\n"
        "from numrnn import layers\n"
        "layers.SimpleRNN(2)(np.zeros((1, 2, 1), dtype='float32'))",
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["compiled"], "the probe should see the kernels compiled by a layer call"


def test_import_defers_scikit_learn_and_exposes_the_lazy_names():
    code = (
        "import sys, numrnn\n"
        "assert 'sklearn' not in sys.modules, 'import numrnn pulled in scikit-learn'\n"
        "assert numrnn.RNNClassifier.__name__ == 'RNNClassifier'\n"
        "assert callable(numrnn.save) and callable(numrnn.load)\n"
        "assert set(numrnn.__all__) <= set(dir(numrnn))\n"
        "try:\n"
        "    numrnn.not_a_name\n"
        "except AttributeError as error:\n"
        "    assert 'not_a_name' in str(error)\n"
        "else:\n"
        "    raise AssertionError('unknown attribute did not raise')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
