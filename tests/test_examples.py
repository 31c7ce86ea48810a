"""Every script in ``examples/`` runs in quick mode and writes its figures.

Each example runs in a fresh Python process with ``NUMRNN_QUICK=1`` (small
data, few epochs), ``MPLBACKEND=Agg`` and ``NUMRNN_OUTPUT_DIR`` pointing to
a temporary directory. The test asserts exit code 0, that the expected PNG
files exist there and are real images, and that nothing was written to the
working directory instead. New examples are picked up automatically (they
must at least run); list their figures in ``EXPECTED`` below.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# example -> (glob patterns of the PNGs it must write, each matching at least
# one file; module it needs beyond numrnn and its test extra, or None)
EXPECTED = {
    "quickstart.py": ([], None),
    "estimators.py": ([], None),
    "text_classification.py": (["text_classification.png"], None),
    "sequence_labelling.py": (["sequence_labelling.png"], None),
    "multivariate_classification.py": (["multivariate_classification.png"], "aeon"),
    "grid_search.py": (["grid_search.png"], None),
    "learning_curve.py": (["learning_curve.png"], None),
    "forecasting.py": (["forecasting_*.png"], "statsmodels"),
}


def run_example(script, output_dir, workdir, timeout=600):
    """Run ``script`` in quick mode; return the CompletedProcess."""
    env = dict(os.environ)
    env.update(
        NUMRNN_QUICK="1",
        MPLBACKEND="Agg",
        NUMRNN_OUTPUT_DIR=str(output_dir),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_examples_are_found():
    names = {path.name for path in EXAMPLES}
    assert {"quickstart.py", "text_classification.py", "grid_search.py"} <= names


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda path: path.name)
def test_example_runs_in_quick_mode(script, tmp_path):
    patterns, needs = EXPECTED.get(script.name, ([], None))
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{script.name} needs {needs}, which is not installed")
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    result = run_example(script, output_dir, workdir)
    log = f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    assert result.returncode == 0, f"{script.name} exited with {result.returncode}\n{log}"
    for pattern in patterns:
        matches = sorted(output_dir.glob(pattern))
        assert matches, f"{script.name} wrote no {pattern} into NUMRNN_OUTPUT_DIR\n{log}"
        for png in matches:
            assert png.read_bytes()[:8] == PNG_SIGNATURE, f"{png.name} is not a PNG"
            assert png.stat().st_size > 5000, f"{png.name} looks empty"
    stray = [path.name for path in workdir.iterdir()]
    assert not stray, f"{script.name} wrote {stray} into the working directory"


def test_missing_figure_is_detected(tmp_path):
    """The checks above can fail: a script that saves nothing fails the PNG check."""
    script = tmp_path / "silent.py"
    script.write_text("print('no figure')\n")
    output_dir = tmp_path / "out"
    output_dir.mkdir()
    result = run_example(script, output_dir, tmp_path, timeout=60)
    assert result.returncode == 0
    assert not list(output_dir.glob("*.png"))
    failing = tmp_path / "failing.py"
    failing.write_text("raise SystemExit(3)\n")
    assert run_example(failing, output_dir, tmp_path, timeout=60).returncode == 3
