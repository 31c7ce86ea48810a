"""Every Python example in the documentation runs and prints what the page shows.

The pages under ``docs/`` hold their Python as doctest blocks: ``>>>`` lines
followed by the output they print. This test executes the blocks of each
page in order, in one namespace per page, and compares every printed result
with the text of the page (``ELLIPSIS`` and ``NORMALIZE_WHITESPACE`` on). A
change in numrnn that alters a shape, a parameter count or an error message
therefore fails here until the page is updated.

Python written any other way (a ``.. code-block:: python`` directive, a
``::`` literal block with imports, a ``+SKIP`` flag) would escape execution,
so it is refused. Shell commands in ``.. code-block:: bash`` are allowed.

The docstring examples of the numrnn modules (shown in the API reference)
run as well.
"""

import doctest
import importlib
import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from numrnn import config

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
OPTIONFLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE

PAGES = sorted(
    path for path in DOCS.rglob("*.rst") if not {"_build", "generated"} & set(path.parts)
)
# Pages that teach with code: each must hold examples (a page that lost its
# examples, for instance by turning them into an unexecuted block, fails).
PAGES_WITH_EXAMPLES = {
    "install.rst",
    "user_guide/shapes.rst",
    "user_guide/bidirectional.rst",
    "user_guide/masking.rst",
    "user_guide/states.rst",
    "user_guide/dropout.rst",
    "user_guide/training.rst",
    "estimators.rst",
    "forecasting.rst",
    "coming_from_keras.rst",
    "scaling_and_persistence.rst",
}

_UNEXECUTED_DIRECTIVE = re.compile(
    r"^\s*\.\.\s+(code-block|code|sourcecode|testcode|ipython|jupyter-execute)::"
    r"\s*(python3?|py|pycon|ipython3?)?\s*$",
    re.MULTILINE,
)
_SHELL_LANGUAGES = {"bash", "console", "shell", "sh", "text", "none", "toml", "ini"}
_CODE_LINE = re.compile(r"^\s+(import \w|from [\w.]+ import )")


def _relative(path):
    return path.relative_to(DOCS).as_posix()


def unexecuted_python(text):
    """Return descriptions of Python in ``text`` that the doctest runner would not run."""
    problems = []
    for match in _UNEXECUTED_DIRECTIVE.finditer(text):
        language = (match.group(2) or "").strip()
        if language not in _SHELL_LANGUAGES:
            line = text.count("\n", 0, match.start()) + 1
            problems.append(f"line {line}: {match.group(0).strip()!r} is not executed")
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.lstrip()
        if "doctest: +SKIP" in line:
            problems.append(f"line {number}: +SKIP hides an example from the test")
        elif not stripped.startswith((">>>", "...")) and _CODE_LINE.match(line):
            problems.append(f"line {number}: Python outside a doctest block: {stripped!r}")
    return problems


def run_examples(text, name, workdir):
    """Run the doctest examples of ``text`` in ``workdir``.

    Returns ``(results, namespace, report)``: doctest's ``TestResults``, the
    namespace the examples ran in, and the failure report (empty when every
    example printed what the text says).
    """
    parser = doctest.DocTestParser()
    namespace = {"__name__": f"docs.{name}"}
    test = parser.get_doctest(text, namespace, name, name, 0)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    report = io.StringIO()
    saved_print = np.get_printoptions()
    saved_floatx = config.floatx()
    saved_validation = config.input_validation()
    previous_dir = Path.cwd()
    try:
        os.chdir(workdir)
        with warnings.catch_warnings():
            # fits with few epochs warn that they did not converge; the pages
            # use few epochs on purpose
            warnings.simplefilter("ignore")
            results = runner.run(test, out=report.write, clear_globs=False)
    finally:
        os.chdir(previous_dir)
        np.set_printoptions(**saved_print)
        config.set_floatx(saved_floatx)
        config.set_input_validation(saved_validation)
    return results, test.globs, report.getvalue()


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_page_has_only_executed_python(page):
    problems = unexecuted_python(page.read_text(encoding="utf-8"))
    assert not problems, f"{_relative(page)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=_relative)
def test_page_examples_print_what_the_page_shows(page, tmp_path):
    text = page.read_text(encoding="utf-8")
    results, _, report = run_examples(text, _relative(page), tmp_path)
    if _relative(page) in PAGES_WITH_EXAMPLES:
        assert results.attempted >= 3, f"{_relative(page)} should teach with examples"
    assert results.failed == 0, (
        f"{results.failed} example(s) failed in {_relative(page)}:\n{report}"
    )


def test_every_listed_page_exists():
    existing = {_relative(page) for page in PAGES}
    assert PAGES_WITH_EXAMPLES <= existing, PAGES_WITH_EXAMPLES - existing


def test_runner_reports_a_wrong_output(tmp_path):
    page = "Text.\n\n>>> import numpy as np\n>>> np.zeros((2, 3)).shape\n(3, 2)\n"
    results, _, report = run_examples(page, "wrong", tmp_path)
    assert results.attempted == 2
    assert results.failed == 1
    assert "(2, 3)" in report


def test_runner_reports_a_wrong_exception(tmp_path):
    page = ">>> int('x')\nTraceback (most recent call last):\n...\nTypeError: nope\n"
    results, _, _ = run_examples(page, "exception", tmp_path)
    assert results.failed == 1


def test_checker_refuses_unexecuted_python():
    page = (
        "Title\n=====\n\n.. code-block:: python\n\n   import numrnn\n\n"
        "Literal::\n\n    from numrnn import layers\n\n"
        ".. code-block:: bash\n\n   pip install -e .\n\n"
        ">>> import numpy as np  # doctest: +SKIP\n"
    )
    problems = unexecuted_python(page)
    assert len(problems) == 4, problems
    assert any("code-block" in p for p in problems)
    assert any("+SKIP" in p for p in problems)
    assert unexecuted_python(".. code-block:: bash\n\n   pip install -e .\n") == []


def _modules_with_docstring_examples():
    """Names of the numrnn modules whose source holds ``>>>`` examples (none imported)."""
    package_dir = ROOT / "numrnn"
    names = []
    for path in sorted(package_dir.rglob("*.py")):
        if ">>>" not in path.read_text(encoding="utf-8"):
            continue
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


DOCSTRING_MODULES = _modules_with_docstring_examples()


def test_docstring_examples_are_found():
    # the estimators carry examples; if this breaks, the finder broke
    assert "numrnn.estimators.classifier" in DOCSTRING_MODULES


@pytest.mark.parametrize("module_name", DOCSTRING_MODULES)
def test_docstring_examples(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS, verbose=False)
    report = io.StringIO()
    saved_print = np.get_printoptions()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for test in finder.find(module, module_name, globs={}):
                runner.run(test, out=report.write)
    finally:
        np.set_printoptions(**saved_print)
    results = runner.summarize(verbose=False)
    assert results.attempted > 0
    assert results.failed == 0, report.getvalue()


# -- the PyTorch weight mapping of "Coming from Keras / PyTorch" against real torch --


@pytest.fixture(scope="module")
def keras_page_namespace(tmp_path_factory):
    text = (DOCS / "coming_from_keras.rst").read_text(encoding="utf-8")
    results, namespace, report = run_examples(
        text, "coming_from_keras.rst", tmp_path_factory.mktemp("keras_page")
    )
    assert results.failed == 0, report
    return namespace


def _torch_state(module):
    return {name: value.detach().numpy().copy() for name, value in module.state_dict().items()}


def test_page_lstm_mapping_matches_torch(keras_page_namespace):
    torch = pytest.importorskip("torch")
    from numrnn import layers

    torch.manual_seed(0)
    reference = torch.nn.LSTM(3, 5, batch_first=True)
    x = np.random.default_rng(1).normal(size=(2, 7, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))[0].numpy()
    state = _torch_state(reference)
    weights = keras_page_namespace["torch_lstm_to_numrnn"](
        state["weight_ih_l0"], state["weight_hh_l0"], state["bias_ih_l0"], state["bias_hh_l0"]
    )
    layer = layers.LSTM(5, return_sequences=True)
    layer.build((None, None, 3))
    layer.set_weights(weights)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


def test_page_gru_mapping_matches_torch(keras_page_namespace):
    torch = pytest.importorskip("torch")
    from numrnn import layers

    torch.manual_seed(0)
    reference = torch.nn.GRU(3, 5, batch_first=True)
    x = np.random.default_rng(2).normal(size=(2, 7, 3)).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x))[0].numpy()
    state = _torch_state(reference)
    weights = keras_page_namespace["torch_gru_to_numrnn"](
        state["weight_ih_l0"], state["weight_hh_l0"], state["bias_ih_l0"], state["bias_hh_l0"]
    )
    layer = layers.GRU(5, return_sequences=True)
    layer.build((None, None, 3))
    layer.set_weights(weights)
    np.testing.assert_allclose(layer(x), expected, atol=1e-5)


# -- the README's Python blocks run too --------------------------------------------

_README_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_readme_python_blocks_run(tmp_path, capsys):
    blocks = _README_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2, "the README should show Python examples"
    namespace = {"__name__": "readme"}
    previous_dir = Path.cwd()
    try:
        os.chdir(tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for block in blocks:
                exec(compile(block, "README.md", "exec"), namespace)
    finally:
        os.chdir(previous_dir)
    printed = capsys.readouterr().out
    accuracy = float(printed.splitlines()[0])
    assert accuracy > 0.85, printed
    assert "Total params" in printed
