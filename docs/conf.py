"""Sphinx configuration of the numrnn documentation.

Build with warnings as errors (this is what CI runs)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The guide pages hold their Python as doctest blocks; ``tests/test_docs.py``
executes every one of them, so the printed shapes cannot drift from the code.
"""

import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numrnn  # noqa: E402

project = "numrnn"
author = "the numrnn developers"
copyright = f"{date.today().year}, {author}"
release = numrnn.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

# The API pages list their objects explicitly (autosummary tables without
# :toctree:), so nothing is generated into the source tree.
autosummary_generate = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_attributes_as_param_list = True

templates_path = []
exclude_patterns = ["_build"]
source_suffix = {".rst": "restructuredtext"}
root_doc = "index"
default_role = "literal"
pygments_style = "sphinx"
# doctest flags such as "# doctest: +ELLIPSIS" are hidden in the rendered pages
trim_doctest_flags = True

html_theme = "pydata_sphinx_theme"
html_title = f"numrnn {release}"
html_static_path = []
html_theme_options = {
    "navigation_depth": 3,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "footer_start": ["copyright"],
    "footer_end": ["sphinx-version"],
}
html_sidebars = {"index": [], "install": []}
html_show_sourcelink = False
html_copy_source = False
