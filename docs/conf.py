"""Sphinx configuration of ssmkit's documentation (build: see the README's "Documentation")."""

import importlib.metadata
import importlib.util

project = "ssmkit"
release = importlib.metadata.version("ssmkit")  # the installed package documents itself
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# Packages an optional part of ssmkit imports but the documentation build need not have:
# pages for those parts still build, from their docstrings.
autodoc_mock_imports = [name for name in ("jax", "jaxlib") if importlib.util.find_spec(name) is None]
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# Links in the architecture page point at files of the repository, not at pages.
myst_heading_anchors = 3
suppress_warnings = ["myst.xref_missing"]

html_theme = "alabaster"
html_title = f"ssmkit {release}"
