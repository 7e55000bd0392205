"""Docs that cannot drift: the site builds with warnings as errors, every Python example on
the pages runs, every ``vae-*`` (and ``python benchmarks/...``) command line parses against
the program's real parser, and the quick-start transcript is what ``vae-train`` prints."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import docs_pages  # noqa: E402  (tests/docs_pages.py)
from docs_pages import DOCS, ROOT, SHELLS  # noqa: E402

PAGES = docs_pages.pages()
PYTHON_PAGES = [p for p in PAGES if any(b.lang == "python" for b in docs_pages.blocks(p))]
SHELL_BLOCKS = [b for p in PAGES for b in docs_pages.blocks(p) if b.lang in SHELLS]
needs_sphinx = pytest.mark.skipif(importlib.util.find_spec("sphinx") is None,
                                  reason="Sphinx is not installed (pip install -e '.[dev]')")


def _sphinx(source: Path, out: Path, *extra: str, env: dict | None = None):
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
           "-d", str(out / "doctrees"), *extra, str(source), str(out / "html")]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})


@needs_sphinx
def test_site_builds_with_warnings_as_errors(tmp_path):
    result = _sphinx(DOCS, tmp_path)
    assert result.returncode == 0, result.stderr[-6000:]
    html = (tmp_path / "html" / "api" / "_generated" / "inference.train.html").read_text()
    assert 'id="inference.train.fit"' in html  # the API reference holds fit's docstring
    assert "https://docs.pyro.ai/en/stable/" in html  # intersphinx links into Pyro's docs


DRIFT = '''
"""A module whose docstrings refer to a function that exists and to one that does not."""


def documented():
    """See :func:`drift_module.also_documented`."""


def also_documented():
    """See :func:`drift_module.documentd` (a typo)."""
'''


@needs_sphinx
def test_a_broken_docstring_reference_fails_the_build(tmp_path):
    """The site's own configuration (docs/conf.py) on a one-page site that documents a
    module: the reference to a name that exists resolves, the broken one fails the build."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.md").write_text(
        "# Drift\n\n```{eval-rst}\n.. automodule:: drift_module\n   :members:\n```\n")
    (tmp_path / "drift_module.py").write_text(DRIFT)
    result = _sphinx(tmp_path / "src", tmp_path, "-c", str(DOCS),
                     env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode != 0
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, result.stderr[-3000:]
    assert "py:func reference target not found: drift_module.documentd" in warnings[0]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=[p.relative_to(ROOT).as_posix()
                                                    for p in PYTHON_PAGES])
def test_python_examples_run(page, tmp_path, monkeypatch):
    """The page's ```python blocks, in order, in one namespace, in an empty folder."""
    from guides import GUIDES
    from models import MODELS

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    registered = [(r, dict(r._classes)) for r in (MODELS, GUIDES)]
    namespace: dict = {"__name__": "__docs__"}
    try:
        for block in docs_pages.blocks(page):
            if block.lang == "python":
                code = compile(textwrap.dedent(block.text), block.where(), "exec")
                exec(code, namespace)  # noqa: S102
    finally:  # a page that registers a model (adding-a-model) leaves no trace
        for registry, classes in registered:
            registry._classes.clear()
            registry._classes.update(classes)


@pytest.mark.parametrize("block", SHELL_BLOCKS, ids=[b.where() for b in SHELL_BLOCKS])
def test_command_lines_parse(block):
    for argv in docs_pages.commands(block):
        target = docs_pages.program(argv)
        if target is not None:
            complaint = docs_pages.parse(*target)
            assert complaint is None, f"{block.where()}: {' '.join(argv)}\n{complaint}"


def test_the_pages_hold_what_the_tests_check():
    """The counts the closing note reports; a parser that stopped finding blocks fails."""
    python = sum(b.lang == "python" for p in PAGES for b in docs_pages.blocks(p))
    checked = [c for b in SHELL_BLOCKS for c in docs_pages.commands(b) if docs_pages.program(c)]
    assert python >= 12 and len(checked) >= 60, (python, len(checked))


def test_a_wrong_flag_is_caught():
    page = ROOT / "drift.md"
    (block,) = docs_pages.blocks(page, "```bash\nvae-train --latent-dim 8   # it is --z-dim\n```\n")
    (argv,) = docs_pages.commands(block)
    assert argv == ["vae-train", "--latent-dim", "8"]
    complaint = docs_pages.parse(*docs_pages.program(argv))
    assert complaint.startswith("vae-train: error: unrecognized arguments: --latent-dim 8")
    assert docs_pages.parse("vae-train", ["--z-dim", "8"]) is None
    assert docs_pages.parse("vae-eval", ["runs/a", "--limit", "many"]) is not None
    assert docs_pages.parse("benchmarks/posteriors.py", ["--epochs", "2"]) is None
    assert docs_pages.parse("benchmarks/posteriors.py", ["--epoks", "2"]) is not None


# --- the quick-start transcript ------------------------------------------------------------

def _transcripts() -> list[tuple[docs_pages.Block, list[str]]]:
    """Blocks that follow a ``<!-- transcript: vae-train ... -->`` marker, with the marker's
    command line: the shown output of that command."""
    found = []
    for page in PAGES:
        text = page.read_text()
        for block in docs_pages.blocks(page):
            before = text.splitlines()[:block.line - 1]
            marker = [line for line in before[-3:] if line.startswith("<!-- transcript:")]
            if marker:
                found.append((block, marker[-1][len("<!-- transcript:"):-len("-->")].split()))
    return found


def _printed(argv: list[str], capsys) -> list[str]:
    """What ``vae-train ARGS`` prints (stdout, then stderr), run in this process."""
    from inference.cli import train_main

    try:
        train_main(argv)
    except SystemExit:  # a one-line error: exit status 2
        pass
    captured = capsys.readouterr()
    return (captured.out + captured.err).splitlines()


def test_transcripts_are_what_vae_train_prints(tmp_path, monkeypatch, capsys):
    """Each shown transcript against a real run of its command (with 3 epochs, not the
    default 10): numbers, the checkout and the run folder's time stamp aside, every shown
    line must be printed, in order, a ``...`` line standing for any lines."""
    shown = _transcripts()
    assert {b.page.name for b, _ in shown} >= {"README.md", "getting-started.md"}
    assert all(argv[0] == "vae-train" for _, argv in shown), shown
    monkeypatch.chdir(tmp_path)
    paths = {str(ROOT): "<checkout>"}
    runs: dict[tuple[str, ...], list[str]] = {}
    for block, argv in shown:
        args = [*argv[1:], "--epochs", "3"]  # the numbers are aside, and so is their count
        key = tuple(args)
        if key not in runs:
            out = ["--out", f"runs/2026010{len(runs)}-000000", "--quiet"]
            runs[key] = [docs_pages.normalize(line, paths) for line in _printed(args + out,
                                                                                  capsys)]
        lines = [docs_pages.normalize(line, paths) for line in block.text.splitlines()]
        complaint = docs_pages.transcript_matches(lines, runs[key])
        assert complaint is None, (block.where(), complaint, runs[key])


def test_a_wrong_printed_line_is_caught():
    printed = ["epoch #: train ELBO -#", "epoch #: train ELBO -#", "final test ELBO: -#"]
    assert docs_pages.transcript_matches(["epoch #: train ELBO -#", "...",
                                          "final test ELBO: -#"], printed) is None
    assert docs_pages.transcript_matches(["epoch #: train ELBO -#", "...",
                                          "final test NLL: -#"], printed) is not None
    assert docs_pages.transcript_matches(["final test ELBO: -#", "...",
                                          "epoch #: train ELBO -#"], printed) is not None
