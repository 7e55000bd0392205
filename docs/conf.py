"""Sphinx configuration of the Pyro VAE Lab documentation.

Build it with ``sphinx-build -W -b html docs docs/_build/html`` (``tests/test_docs.py`` runs the
same build with warnings as errors). Pages are MyST Markdown; the notebooks under
``notebooks/`` are rendered as tutorials by myst-nb; the API reference is generated from the
docstrings of ``models``, ``guides`` and ``inference`` by autodoc and autosummary.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(DOCS))

import offline_inventories  # noqa: E402  (docs/offline_inventories.py, beside this file)

PACKAGES = ("models", "guides", "inference")
project = "Pyro VAE Lab"
author = "the Pyro VAE Lab developers"
copyright = "the Pyro VAE Lab developers, Apache-2.0"

extensions = [
    "myst_nb",  # MyST Markdown pages and .ipynb notebooks
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "**.ipynb_checkpoints",
                    "benchmarks/tables/*"]  # tables are {include}d by their benchmark page
html_theme = "sphinx_rtd_theme"
html_title = project
templates_path = ["_templates"]

# MyST: GitHub-style anchors for the headings, so "[...](training.md#data)" links work.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# Notebooks (notebooks/*.ipynb, copied in below). They are executed in their small mode by
# tests/test_notebooks.py; the default build renders them as stored (no outputs), and Read the
# Docs, or VAE_LAB_DOCS_EXECUTE=1, executes them in their small mode while building.
EXECUTE = os.environ.get("VAE_LAB_DOCS_EXECUTE") == "1" or os.environ.get("READTHEDOCS") == "True"
nb_execution_mode = "cache" if EXECUTE else "off"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
if EXECUTE:
    os.environ.setdefault("VAE_LAB_SMALL", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
# Notebooks that read full MNIST or Fashion-MNIST from the data folder (they never download):
# without one (VAE_LAB_DATA), as on Read the Docs, they are rendered without executing.
NEEDS_DATA = ["notebooks/anomaly.ipynb", "notebooks/variants.ipynb"]
nb_execution_excludepatterns = [] if os.environ.get("VAE_LAB_DATA") else NEEDS_DATA

# API reference: one generated page per module of the three packages, with every docstring.
autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True,
                           "undoc-members": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autoclass_content = "class"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# A broken reference to our own code is an error (with -W); references into other libraries
# resolve through intersphinx where the inventory has them, and are left as text otherwise.
nitpicky = True
nitpick_ignore_regex = [(r"py:.*", pattern) for pattern in offline_inventories.UNCHECKED]

# intersphinx: Pyro, PyTorch and NumPy. Offline (tests, CI, this machine) the inventories are
# written from docs/offline_inventories.py; on Read the Docs the published ones come first.
INVENTORIES = offline_inventories.write(DOCS / "_build" / "inventories")
ONLINE = os.environ.get("READTHEDOCS") == "True"
intersphinx_mapping = {
    name: (url, ((None, str(INVENTORIES[name])) if ONLINE else str(INVENTORIES[name])))
    for name, url in offline_inventories.SITES.items()
}


def _canonical(target: str, module: str | None, cls: str | None = None):
    """The documented name of ``target`` as written in a docstring of ``module``: the module
    that defines the object, for names re-exported by a package (``inference.fit`` is
    documented as ``inference.train.fit``) or imported into the module that refers to them."""
    scopes = [f"{module}.{cls}", module, module.split(".")[0]] if module and cls else (
        [module, module.split(".")[0]] if module else [])
    candidates = [f"{scope}.{target}" for scope in scopes] + [target]
    for name in candidates:
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            try:
                for attr in parts[i:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                break
            owner, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
            if owner and qualname and owner.split(".")[0] in PACKAGES:
                return f"{owner}.{qualname}"
            if parts[0] in PACKAGES and not callable(obj) and not hasattr(obj, "__path__"):
                return ".".join(parts[:i])  # a constant: its module's page
            break
    return None


def _resolve_reexport(app, env, node, contnode):
    """Resolve a reference to one of our objects through the module that defines it; a name
    that does not exist stays unresolved, and -W makes that an error."""
    if node.get("refdomain") != "py":
        return None
    canonical = _canonical(node["reftarget"], node.get("py:module"), node.get("py:class"))
    if canonical is None or canonical == node["reftarget"]:
        return None
    domain = env.get_domain("py")
    for role in (node["reftype"], "obj", "mod"):
        ref = domain.resolve_xref(env, node["refdoc"], app.builder, role, canonical,
                                  node, contnode)
        if ref is not None:
            return ref
    return None


def setup(app):
    app.connect("missing-reference", _resolve_reexport)


def _copy_notebooks() -> None:
    """Copy ``notebooks/*.ipynb`` into ``docs/tutorials/notebooks/`` (git-ignored), where Sphinx
    reads them; a file is rewritten only when it changed, so rebuilds stay incremental."""
    target = DOCS / "tutorials" / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    sources = {p.name: p for p in (ROOT / "notebooks").glob("*.ipynb")}
    for stale in target.glob("*.ipynb"):
        if stale.name not in sources:
            stale.unlink()
    for name, source in sources.items():
        copy = target / name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copyfile(source, copy)


_copy_notebooks()
