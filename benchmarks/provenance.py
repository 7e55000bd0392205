"""Where a benchmark table comes from: every generated table says how it was made.

A benchmark script ends with::

    from provenance import write_table            # benchmarks/ is the script's folder
    write_table("posteriors", markdown, budget="10 epochs on 10,000 images, K = 1000",
                seeds="0")

which writes ``docs/benchmarks/tables/posteriors.md``: one line stating the command (the
script and its arguments, as run), the budget, the seeds, the date, the commit (with
``+ local changes`` when tracked code differs from it), the machine, then the table. The
page ``docs/benchmarks/<name>.md`` includes that file, so no table on the site is typed by
hand. ``--table-dir`` style options can pass another ``folder``.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "docs" / "benchmarks" / "tables"


CODE = ("models", "guides", "inference", "benchmarks", "pyproject.toml")


def commit() -> str:
    """The checkout's commit, ``+ local changes`` when tracked code (not the docs) differs
    from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=False).stdout.strip()

    head = git("rev-parse", "--short=10", "HEAD") or "unknown (not a git checkout)"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CODE)
    return f"{head} + local changes" if dirty else head


def machine() -> str:
    """CPU, cores, torch threads, load, GPU and library versions, in one line."""
    import pyro
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                 .splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = (f"GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "no GPU")
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch thread(s)"
            f"{load}, {gpu}; {platform.system()}, Python {platform.python_version()}, "
            f"torch {torch.__version__}, pyro {pyro.__version__}")


def command(argv: list[str] | None = None) -> str:
    """The command line that ran, with the script's path relative to the checkout."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    if script.is_relative_to(ROOT):
        argv[0] = script.relative_to(ROOT).as_posix()
    return "python " + shlex.join(argv)


def provenance(*, budget: str, seeds: str, argv: list[str] | None = None) -> str:
    return (f"Command: `{command(argv)}`. Budget: {budget}. Seeds: {seeds}. "
            f"Date: {time.strftime('%Y-%m-%d')}. Commit: {commit()}. Machine: {machine()}.")


def write_table(name: str, markdown: str, *, budget: str, seeds: str,
                argv: list[str] | None = None, folder: Path = TABLES) -> Path:
    """Write ``markdown`` (one table or several, with any lines between them) to
    ``folder/<name>.md`` below its provenance line; return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.md"
    text = f"{provenance(budget=budget, seeds=seeds, argv=argv)}\n\n{markdown.strip()}\n"
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    print(f"wrote {path}")
    return path
