"""Compilation: cold compile and warm-cache load, each in a fresh process.

Both time a new Python process running ``import numrnn`` and a first
``RNNRegressor`` fit (one epoch of one mini-batch: LSTM forward and
backward, float32), which needs every kernel a default estimator fit uses.

- ``timeraw_cold_compile``: an empty numba cache (a new ``NUMBA_CACHE_DIR``
  per run), so every kernel compiles; the LSTM's forward kernel in a helper
  process while the backward one compiles (``numrnn.kernels.cpu._ahead``,
  with 2 or more CPUs).
- ``timeraw_cold_compile_serial``: the same with that helper switched off
  (``NUMRNN_COMPILE_AHEAD=0``): the kernels compile one after the other.
- ``timeraw_warm_cache_first_fit``: a cache filled beforehand (once, in
  ``setup_cache``), so the kernels load from it.

Both include importing scikit-learn, which the estimators need.
"""

import os
import shutil
import subprocess
import sys
import tempfile

FIT_STEP = """
import numpy as np
import numrnn
X = np.random.default_rng(0).normal(size=(16, 20, 4)).astype("float32")
y = X[:, :, 0].sum(axis=1)
numrnn.RNNRegressor(units=(16,), max_iter=1, batch_size=16, random_state=0).fit(X, y)
"""

CACHE_SETUP = """
import os, warnings
os.environ["NUMBA_CACHE_DIR"] = {cache_dir!r}
warnings.simplefilter("ignore")
"""


class Compile:
    timeout = 600
    repeat = (1, 3, 60.0)
    number = 1
    warmup_time = 0

    def setup_cache(self):
        # runs once, in a directory asv removes afterwards: fill a numba cache
        warm_dir = os.path.abspath("numba-cache-warm")
        os.makedirs(warm_dir, exist_ok=True)
        code = CACHE_SETUP.format(cache_dir=warm_dir) + FIT_STEP
        subprocess.run([sys.executable, "-c", code], check=True, timeout=self.timeout)
        return warm_dir

    def setup(self, warm_dir):
        self.cold_root = tempfile.mkdtemp(prefix="numrnn-asv-cold-")

    def teardown(self, warm_dir):
        shutil.rmtree(self.cold_root, ignore_errors=True)

    def _cold_setup(self, ahead):
        # a fresh, empty cache directory for every run (the setup part is not timed)
        return (
            "import os, tempfile, warnings\n"
            f"os.environ['NUMBA_CACHE_DIR'] = tempfile.mkdtemp(dir={self.cold_root!r})\n"
            f"os.environ['NUMRNN_COMPILE_AHEAD'] = {ahead!r}\n"
            "warnings.simplefilter('ignore')\n"
        )

    def timeraw_cold_compile(self, warm_dir):
        return FIT_STEP, self._cold_setup("1")

    def timeraw_cold_compile_serial(self, warm_dir):
        return FIT_STEP, self._cold_setup("0")

    def timeraw_warm_cache_first_fit(self, warm_dir):
        return FIT_STEP, CACHE_SETUP.format(cache_dir=warm_dir)
