"""Plates as Pyro's users write them: without a size, and with ``subsample_size``.

Pyro's examples write ``with pyro.plate("data"):`` with no size: the plate's size is then
-1 ("from broadcasting"), and the lab takes it to be the batch's, read from the site's
batch shape (:func:`frame_size`). A plate may also subsample:

* ``pyro.plate("data", len(x), subsample_size=s)`` draws s of the batch's points (and
  indexes ``x`` with them), scaling their log-densities by len(x) / s: Pyro's tutorial
  idiom for a model that holds all its data;
* ``pyro.plate("data", M, subsample_size=len(x))`` says that the batch is a subsample of M
  points, scaling by M / len(x).

Training runs them as written: the scale is part of the objective the user chose. Scores
are per data point and of the unscaled model, so the lab scores under
:func:`whole_plates` ``(len(x))``, where a plate over the batch takes every point (and a
plate that declares M points takes the batch as the whole), at scale 1. Pyro cannot widen a
plate with a handler (it checks the subsample's length against ``subsample_size``), so
:func:`whole_plates` changes the sizes a plate is built with (Pyro's
``SubsampleMessenger._subsample``, swapped in for the duration of the ``with`` block).
Inside any ``whole_plates`` block, a plate asked to subsample more points than it has takes
all of them (Pyro raises): the lab trains under ``whole_plates()`` so that a last, short
batch runs. Plates given explicit indices (``subsample=``) and code outside the blocks run
as Pyro runs them.

>>> import pyro, torch
>>> x = torch.zeros(5, 3)
>>> def model(x):
...     with pyro.plate("data", len(x), subsample_size=2) as ind:
...         return len(ind)
>>> model(x)
2
>>> with whole_plates():
...     model(x[:1])
1
>>> with whole_plates(len(x)):
...     model(x)
5
"""

from __future__ import annotations

import contextlib
import threading

from pyro.poutine.subsample_messenger import SubsampleMessenger

_STATE = threading.local()  # .sizes: the stack of active whole_plates(n) in this thread
_PYRO_SUBSAMPLE = SubsampleMessenger.__dict__["_subsample"].__func__


def _sizes() -> list[int | None]:
    if not hasattr(_STATE, "sizes"):
        _STATE.sizes = []
    return _STATE.sizes


def _subsample(name, size=None, subsample_size=None, subsample=None, use_cuda=None,
               device=None):
    """Pyro's ``SubsampleMessenger._subsample`` with the sizes :func:`whole_plates` asks for."""
    stack = _sizes()
    n = stack[-1] if stack else None
    if size is not None and subsample is None and subsample_size is not None:
        if subsample_size > size:  # more than it has: all of them
            subsample_size = None
        elif n is not None and n in (size, subsample_size):  # the batch, every point once
            size, subsample_size = n, None
    return _PYRO_SUBSAMPLE(name, size, subsample_size, subsample, use_cuda, device)


_LOCK = threading.Lock()
_ACTIVE = [0]  # whole_plates blocks open in all threads: the swap is in place while > 0


@contextlib.contextmanager
def whole_plates(n: int | None = None):
    """Within the block, a plate over a batch of ``n`` points takes all of them at scale 1:
    ``pyro.plate(name, n, subsample_size=s)`` and ``pyro.plate(name, M,
    subsample_size=n)`` both become ``pyro.plate(name, n)``. Nests; the innermost ``n``
    holds."""
    stack = _sizes()
    with _LOCK:
        if _ACTIVE[0] == 0:
            SubsampleMessenger._subsample = staticmethod(_subsample)
        _ACTIVE[0] += 1
    stack.append(n)
    try:
        yield
    finally:
        stack.pop()
        with _LOCK:
            _ACTIVE[0] -= 1
            if _ACTIVE[0] == 0:
                SubsampleMessenger._subsample = staticmethod(_PYRO_SUBSAMPLE)


def frame_size(frame, site: dict) -> int:
    """The number of entries of plate ``frame`` at a site: its size, or for a plate without
    one (size -1, "from broadcasting") the site's batch shape there (1 if it has no such
    dim)."""
    if frame.size != -1:
        return frame.size
    shape = site["fn"].batch_shape
    return shape[frame.dim] if len(shape) >= -frame.dim else 1
