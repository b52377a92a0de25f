"""Sphinx configuration of the pyro_factvae documentation (built by ``.ci/run``:
``python3 -m sphinx -W --keep-going -n -b html docs docs/_build``)."""

import pyro_factvae

project = "pyro_factvae"
author = "the pyro_factvae developers"
release = version = pyro_factvae.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_inherit_docstrings = False  # not torch.nn.Module's forward docstring
autodoc_typehints = "none"  # the numpy docstrings give the types
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False
napoleon_use_param = False  # types as written, not guessed cross-references
napoleon_preprocess_types = False

# broken references to pyro_factvae fail the build (nitpicky, -n -W); names of other
# libraries are not resolved offline (no intersphinx), so only those are let through
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|pandas|pd|pyro|arviz|az|matplotlib|sklearn|tqdm)(\..*)?"),
    (r"py:.*", r"(collections|typing|os|pathlib|dataclasses|argparse)\..*"),
    (r"py:.*", r"(array-like|array_like|optional|callable|default.*|of|or|shape.*)"),
]
html_theme = "alabaster"
html_title = "pyro_factvae"
