"""Checkpoints and result files that are never half-written, and prove they are whole.

Every file is written to a temporary file in the same folder, flushed to disk and renamed
over the target (``os.replace`` is atomic on POSIX and Windows), so a crash or a SIGKILL
leaves either the old file or the new one. A failed write (a full disk, a read-only folder)
raises :class:`WriteError`, one line naming the file and the cause, and leaves the old file.

A checkpoint is a header line, the SHA-256 digest of its payload, and the payload: what
``torch.save`` writes for a dict of tensors and plain Python values. Loading checks the
digest (a file damaged in place is refused, whatever its size), unpickles with
``torch.load(..., weights_only=True)`` (loading runs no code), and refuses NaN or infinite
tensors. Files written before the digest existed (a bare ``torch.save`` zip) still load.

:func:`run_lock` holds an OS lock on a run folder for the whole of a run, so two processes
never write one folder at the same time.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import torch

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here, runs are not protected
    fcntl = None

MAGIC = b"PYRO-VAE-LAB CHECKPOINT 1\n"  # then 64 hex digits of sha256(payload), "\n", payload
_ZIP = b"PK\x03\x04"  # a bare torch.save file, from before the digest


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, damaged, or belongs to another model."""


class WriteError(OSError):
    """A file of a run could not be written (full disk, read-only folder, not a folder...)."""


class RunInUse(RuntimeError):
    """Another process holds the run folder."""


def _reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(f"cannot write {path}: {_reason(e)}") from e
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"cannot write {path}: {_reason(e)}") from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def remove_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_write` left in ``folder``
    (call it only while holding the folder's :func:`run_lock`)."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` with its digest, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    digest = hashlib.sha256(payload).hexdigest().encode()

    def write(f: IO[bytes]) -> None:
        f.write(MAGIC)
        f.write(digest + b"\n")
        f.write(payload)

    return atomic_write(path, write)


def _payload(path: Path, raw: bytes) -> memoryview:
    if raw.startswith(_ZIP):
        return memoryview(raw)  # written before the digest: nothing to check against
    if not raw.startswith(MAGIC):
        raise CheckpointError(f"{path} is not a checkpoint of this lab (it does not start with "
                              f"the checkpoint header); point to a checkpoint.pt a run wrote")
    start = len(MAGIC) + 65
    digest, payload = raw[len(MAGIC):start - 1], memoryview(raw)[start:]
    if hashlib.sha256(payload).hexdigest().encode() != digest:
        raise CheckpointError(f"checkpoint {path} is damaged: its contents no longer match the "
                              f"digest written with them; restore a copy, or delete it to "
                              f"start the run over")
    return payload


def _non_finite(value: Any, where: str = "") -> str | None:
    """The key path of the first floating-point tensor with a NaN or infinity, if any."""
    if torch.is_tensor(value):
        return where if value.is_floating_point() and not torch.isfinite(value).all() else None
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, f"{where}/{key}")
        if found is not None:
            return found
    return None


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint: digest checked, ``weights_only=True``, every tensor finite. Any
    fault raises :class:`CheckpointError` naming the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(e)}") from e
    try:
        state = torch.load(io.BytesIO(_payload(path, raw)), map_location=map_location,
                           weights_only=True)
    except CheckpointError:
        raise
    except Exception as e:  # truncated zip, random bytes, a pickle with code in it
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: it is corrupted, truncated or not "
                              f"a checkpoint ({reason[:120]}); delete it to start over or restore "
                              f"a copy") from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint")
    bad = _non_finite(state)
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} holds NaN or infinite values (at {bad}); "
                              f"restore a copy, or delete it to start the run over")
    return state


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode()))


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {path}: {e}") from e


_HELD: dict[Path, int] = {}  # run folders this process has locked, and how many times


@contextlib.contextmanager
def run_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold an exclusive OS lock (``flock``) on ``folder/.lock`` while the block runs.

    A second process that asks for the same folder gets :class:`RunInUse`, naming the
    holder's process id; the lock dies with its process, so a SIGKILL leaves none behind.
    The same process may nest it (``fit`` inside ``train_run``).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        key = folder.resolve()
    except OSError as e:
        raise WriteError(f"cannot create run folder {folder}: {_reason(e)}") from e
    if key in _HELD or fcntl is None:
        _HELD[key] = _HELD.get(key, 0) + 1
        try:
            yield folder
        finally:
            _HELD[key] -= 1
            if not _HELD[key]:
                del _HELD[key]
        return
    try:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as e:
        raise WriteError(f"cannot write {folder / '.lock'}: {_reason(e)}") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunInUse(f"run folder {folder} is in use by {holder}; wait for it to finish, "
                           f"or choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} ({Path(sys.argv[0]).name}, since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        _HELD[key] = 1
        try:
            yield folder
        finally:
            del _HELD[key]
    finally:
        os.close(fd)  # releases the lock
