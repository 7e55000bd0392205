"""What the doc tests read from the pages: code blocks, command lines, transcripts.

The pages are the README and every MyST page under ``docs/`` (generated files aside). A
```python block is an example that must run as it is; a ```bash (or ```sh, ```shell,
```console) block holds command lines, and every ``vae-*`` line and ``python benchmarks/...``
line in it must parse against the program's real argument parser.
"""

from __future__ import annotations

import argparse
import re
import runpy
import shlex
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = ("_build", "api/_generated", "tutorials/notebooks")
SHELLS = {"bash", "sh", "shell", "console"}
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^\n`]*)$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """The README and every Markdown page of the docs, generated pages left out."""
    found = [p for p in sorted(DOCS.rglob("*.md"))
             if not any(p.relative_to(DOCS).as_posix().startswith(g) for g in GENERATED)]
    return [ROOT / "README.md", *found]


def _language(info: str) -> str:
    info = info.strip()
    directive = re.match(r"\{(code-block|code|sourcecode)\}\s*(\S+)", info)
    if directive:
        return directive.group(2).lower()
    return info.split()[0].lower() if info else ""


def blocks(page: Path, text: str | None = None) -> list[Block]:
    """Every fenced code block of a Markdown page, those nested in directives included."""
    lines = (page.read_text() if text is None else text).splitlines()
    return _blocks(page, lines, 0)


def _blocks(page: Path, lines: list[str], offset: int) -> list[Block]:
    out, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group("fence"), m.group("info"), i
        i += 1
        while i < len(lines) and lines[i].strip() != fence:
            i += 1
        body = lines[start + 1:i]
        i += 1
        if info.startswith("{") and not re.match(r"\{(code-block|code|sourcecode)\}", info):
            out += _blocks(page, body, offset + start + 1)  # a directive: blocks inside it
        else:
            out.append(Block(page, offset + start + 1, _language(info), "\n".join(body)))
    return out


def commands(block: Block) -> list[list[str]]:
    """The command lines of a shell block as argument lists: continuation lines joined,
    prompts, comments and leading ``NAME=value`` settings dropped, ``&&``, ``;`` and ``|``
    splitting one line into several commands, ``$(which vae-x)`` read as ``vae-x``."""
    text = re.sub(r"\\\n", " ", block.text)
    text = re.sub(r"\$\(which (\S+?)\)", r"\1", text)
    out = []
    for line in text.splitlines():
        line = re.sub(r"^\s*\$ ", "", line)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        current: list[str] = []
        for token in shlex.split(line, comments=True):
            if token in {"&&", ";", "|", "||"}:
                out.append(current)
                current = []
            elif not current and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
                continue
            else:
                current.append(token)
        out.append(current)
    return [c for c in out if c]


def scripts() -> dict[str, str]:
    """Console scripts of pyproject.toml: ``{"vae-train": "inference.cli:train_main"}``."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(meta["project"]["scripts"])


def program(argv: list[str]) -> tuple[str, list[str]] | None:
    """(what to parse, its arguments) for a command the tests check, else None:
    a ``vae-*`` script, ``python -m inference.cli``, ``torchrun ... -m inference.cli`` or
    ``torchrun ... vae-x``, and ``python benchmarks/<name>.py``."""
    names = scripts()
    if argv[0] == "torchrun":
        for i, token in enumerate(argv):
            if token in names:
                return token, argv[i + 1:]
            if token == "-m" and argv[i + 1:i + 2] == ["inference.cli"]:
                return "vae-train", argv[i + 2:]
        return None
    if argv[0] in names:
        return argv[0], argv[1:]
    if argv[0] in {"python", "python3"} and len(argv) > 1:
        if argv[1:3] == ["-m", "inference.cli"]:
            return "vae-train", argv[3:]
        if argv[1].startswith("benchmarks/") and argv[1].endswith(".py"):
            return argv[1], argv[2:]
    return None


class _Parsed(BaseException):
    """Raised once the program's parser accepted the arguments: nothing else runs."""


@contextmanager
def _stop_after_parsing():
    original = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        original(self, args, namespace)
        raise _Parsed

    argparse.ArgumentParser.parse_args = parse_args
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original


def parse(name: str, args: list[str]) -> str | None:
    """Parse ``args`` with the real parser of ``name`` (a console script or a benchmark
    script); None when it accepts them, else the parser's complaint."""
    import contextlib
    import importlib
    import io

    err = io.StringIO()
    with _stop_after_parsing(), contextlib.redirect_stderr(err), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            if name.startswith("benchmarks/"):
                saved = sys.argv, list(sys.path)
                sys.argv = [name, *args]
                sys.path.insert(0, str((ROOT / name).parent))  # as `python script.py` does
                try:
                    runpy.run_path(str(ROOT / name), run_name="__main__")
                finally:
                    sys.argv, sys.path[:] = saved
            else:
                module, function = scripts()[name].split(":")
                getattr(importlib.import_module(module), function)(args)
        except _Parsed:
            return None
        except SystemExit as e:
            if e.code in (0, None):
                return None  # --help, --list
            return err.getvalue().strip().splitlines()[-1] if err.getvalue() else f"exit {e.code}"
    return "the program ran past its parser without parsing its arguments"


NUMBER = re.compile(r"[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?")


def normalize(line: str, replacements: dict[str, str]) -> str:
    """A printed line with its numbers aside: paths replaced, every number read as ``#``."""
    for old, new in replacements.items():
        line = line.replace(old, new)
    return NUMBER.sub("#", line.rstrip())


def transcript_matches(shown: list[str], printed: list[str]) -> str | None:
    """None when ``printed`` fits ``shown`` line by line, a ``...`` line of ``shown`` standing
    for any number of printed lines; else the first shown line that does not fit."""
    def fits(i: int, j: int) -> bool:
        if i == len(shown):
            return j == len(printed)
        if shown[i].strip() == "...":
            return any(fits(i + 1, k) for k in range(j, len(printed) + 1))
        return j < len(printed) and shown[i] == printed[j] and fits(i + 1, j + 1)

    if fits(0, 0):
        return None
    for i, line in enumerate(shown):
        if line.strip() != "..." and line not in printed:
            return f"shown line {i + 1} was not printed: {line!r}"
    return "the shown lines were printed in another order or number"
