"""The side-by-side benchmark scripts run (tiny sizes), so that they never rot.

asv's suite has its own smoke run in ``.ci/run``; these are the scripts of
``benchmarks/`` that time numrnn against PyTorch. Without PyTorch installed
they time numrnn alone, which is what CI checks; with it, both.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HAVE_TORCH = importlib.util.find_spec("torch") is not None


def _run(args, tmp_path):
    run = subprocess.run(
        [sys.executable, *args], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


def test_compare_prints_the_table_and_the_targets(tmp_path):
    report = tmp_path / "report.json"
    out = _run(
        [str(ROOT / "benchmarks" / "compare.py"), "--quick", "--rows", "lstm:4,5,3,4;gru:4,5,3,4",
         "--json", str(report), "--reuse-numba-cache"],
        tmp_path,
    )  # fmt: skip
    assert "| lstm (4,5,3,4) |" in out and "| gru (4,5,3,4) |" in out
    assert "threads per framework: 2" in out
    rows = json.loads(report.read_text())["rows"]
    assert [r["cell"] for r in rows] == ["lstm", "gru"]
    for row in rows:
        assert all(row["numrnn"][key] > 0 for key in ("train", "infer", "stream_step"))
    if HAVE_TORCH:
        assert "#   lstm (4,5,3,4): train" in out and "(>= 20x:" in out
        assert "no target: the 20x is against nn.LSTM" in out  # the GRU row


def test_estimator_throughput_reports_sequences_per_second(tmp_path):
    out = _run(
        [str(ROOT / "benchmarks" / "estimator_throughput.py"), "--batch", "4", "--steps", "5",
         "--features", "3", "--units", "4", "--n-batches", "2", "--epochs", "1", "--rounds", "1",
         "--reuse-numba-cache"],
        tmp_path,
    )  # fmt: skip
    assert "batch 4 x 5 steps x 3 features, units 4" in out
    assert "numrnn" in out and "seq/s" in out
    if HAVE_TORCH:
        assert "numrnn / torch throughput ratio:" in out


def test_each_run_compiles_into_a_new_numba_cache(monkeypatch):
    # without --reuse-numba-cache the children get a new, empty cache, so a
    # kernel cached by an older checkout can never be what gets timed
    spec = importlib.util.spec_from_file_location("compare", ROOT / "benchmarks" / "compare.py")
    compare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compare)
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/somewhere/else")
    cache = compare.use_fresh_numba_cache()
    path = Path(os.environ["NUMBA_CACHE_DIR"])
    assert path == Path(cache.name) and path.is_dir() and not any(path.iterdir())
    cache.cleanup()
    assert not path.exists()
