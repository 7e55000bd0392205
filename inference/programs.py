"""Any Pyro model or guide, as Pyro's ``SVI`` takes them, called the lab's way.

A pair may be written in the lab's style (``PyroModule`` s called as ``forward(x, y=None)``,
sites ``z``, ``x``, ``y`` in ``pyro.plate("data")``) or any other way ``SVI`` accepts:

* a ``PyroModule``, a plain ``torch.nn.Module``, a method of one (its networks registered
  with ``pyro.module``), or a plain function (parameters from ``pyro.param``);
* called as ``fn(x)`` or ``fn(x, y=None)``;
* sites and the data plate named as the author liked.

:func:`program` calls any of them as ``fn(x, y)``; :func:`discover_sites` reads from traces
which site is the data, which are latent, which hold labels, and which plate runs over the
data points. Nothing here changes Pyro's settings: the lab runs under whatever the user
chose (Pyro's defaults unless told otherwise).
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyro
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from inference.plates import frame_size, whole_plates


class PairError(ValueError):
    """A model and a guide disagree about a sample site, or one of them fails on the data."""


class ParamsAsGiven(Messenger):
    """``pyro.param(name, init)`` returns ``init`` without reading or writing Pyro's store.

    A ``PyroModule`` (under Pyro's default settings) and ``pyro.module`` announce every
    parameter they use as ``pyro.param(name, tensor)`` and compute with ``tensor``; run on
    stand-in tensors (detached copies, a captured graph's placeholders), those must not
    land in the global store. With ``only`` (a set of ``id`` s), just those tensors are
    passed through; other ``pyro.param`` statements read the store as usual.
    """

    def __init__(self, only: set[int] | None = None):
        super().__init__()
        self.only = only
        self._quiet = None

    def __enter__(self):
        # pyro.module warns that a stand-in without requires_grad is "not registered in the
        # param store": registering it is exactly what must not happen
        self._quiet = warnings.catch_warnings()
        self._quiet.__enter__()
        warnings.filterwarnings("ignore", message=".*not registered in the param store")
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._quiet.__exit__(*exc)

    def _pyro_param(self, msg) -> None:
        init = msg["args"][1] if len(msg["args"]) > 1 else None
        if torch.is_tensor(init) and msg["value"] is None and (
                self.only is None or id(init) in self.only):
            msg["value"] = init


def owner(fn: Callable) -> torch.nn.Module | None:
    """The ``torch.nn.Module`` whose parameters ``fn`` runs on: the module itself, the
    module a method is bound to, or that of a ``functools.partial`` or :class:`Program`."""
    if isinstance(fn, torch.nn.Module):
        return fn
    if isinstance(fn, Program):
        return owner(fn.fn)
    if isinstance(fn, functools.partial):
        return owner(fn.func)
    bound = getattr(fn, "__self__", None)
    return bound if isinstance(bound, torch.nn.Module) else None


def _positional(fn: Callable) -> int | None:
    """How many positional arguments ``fn`` takes (None: any number, or unknown)."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = [p.kind for p in params]
    if inspect.Parameter.VAR_POSITIONAL in kinds:
        return None
    return sum(k in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for k in kinds)


class Program:
    """A model or guide that takes one argument, ``fn(x)``, called as ``fn(x, y=None)``: the
    labels are not its business and are dropped (as the lab's unconditional models ignore
    them)."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, x, y=None):
        return self.fn(x)

    def __repr__(self) -> str:
        return f"Program({self.fn!r})"


def program(fn: Callable, role: str = "model") -> Callable:
    """``fn`` callable as ``fn(x, y=None)``: itself if it takes two arguments or more (or any
    number), a :class:`Program` if it takes one."""
    if not callable(fn):
        raise PairError(f"the {role} must be callable (a PyroModule, a method or a function), "
                        f"got {type(fn).__name__}")
    if isinstance(fn, Program):
        return fn
    n = _positional(fn)
    if n == 0:
        raise PairError(f"the {role} takes no argument; the lab calls it as {role}(x) or "
                        f"{role}(x, y) with a batch of data x")
    return Program(fn) if n == 1 else fn


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch.cuda.is_available() is False; "
                         "use device='cpu' or 'auto'")
    return device


def device_of(*fns: Callable) -> torch.device:
    """Where a pair lives: the device of the first parameter of the modules that own the
    programs, else of Pyro's parameter store (functions with ``pyro.param``), else the CPU."""
    for fn in fns:
        module = owner(fn)
        if module is not None:
            for p in module.parameters():
                return p.device
    store = pyro.get_param_store()
    for name in store.keys():
        return store.get_param(name).device
    return torch.device("cpu")


@dataclass(frozen=True)
class Sites:
    """The names a pair uses: the observed data site ``x``, the latent sites (the model's
    order), the label site ``y`` (None without one) and the plate over the data points."""

    x: str
    latent: tuple[str, ...]
    y: str | None = None
    plate: str = "data"

    @property
    def z(self) -> str:
        """The latent site figures encode and decode: ``z`` if there is one, else the first."""
        if not self.latent:
            raise ValueError("this model has no latent site: it is fully observed")
        return "z" if "z" in self.latent else self.latent[0]


CONTRACT = Sites(x="x", latent=("z",), y=None, plate="data")


def sample_sites(tr) -> list[tuple[str, dict]]:
    return [(n, s) for n, s in tr.nodes.items()
            if s["type"] == "sample" and not site_is_subsample(s)]


def _is(value, target) -> bool:
    return target is not None and torch.is_tensor(value) and (
        value is target or (value.shape == target.shape and bool(torch.equal(value, target))))


def _named(names: Mapping[str, object] | None, key: str, allowed: list[str]):
    given = (names or {}).get(key)
    if given is None:
        return None
    values = [given] if isinstance(given, str) else list(given)
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise PairError(f"sites={{'{key}': {given!r}}}: the model has no site "
                        f"{', '.join(map(repr, unknown))} (its sample sites: "
                        f"{', '.join(allowed) or 'none'})")
    return values


def discover_sites(model_trace, x: torch.Tensor, y: torch.Tensor | None = None,
                   names: Mapping[str, object] | None = None) -> Sites:
    """Which of the model's sites is the data, which hold labels and which are latent.

    ``names`` (``{"x": "obs", "z": ["z1", "z2"], "y": "label"}``) settles what the traces
    cannot: by default the data site is the observed site whose value is ``x``, the label
    site the one whose value is ``y`` (or a site named ``y``), and every other unobserved
    sample site is latent.
    """
    sites = sample_sites(model_trace)
    all_names = [n for n, _ in sites]
    y_site = (_named(names, "y", all_names) or [None])[0]
    if y_site is None:
        y_site = next((n for n, s in sites if s["is_observed"] and _is(s["value"], y)),
                      "y" if "y" in all_names else None)
    x_site = (_named(names, "x", all_names) or [None])[0] or data_site(model_trace, x,
                                                                        exclude=y_site)
    latent = _named(names, "z", all_names) or [
        n for n, s in sites if not s["is_observed"] and n not in (x_site, y_site)]
    return Sites(x=x_site, latent=tuple(latent), y=y_site,
                 plate=data_plate_name(x_site, model_trace.nodes[x_site], len(x)))


def data_site(model_trace, x: torch.Tensor, exclude: str | None = None) -> str:
    """The observed site of a model's trace that holds the data ``x``: the one whose value
    is ``x``, else the one of ``x``'s shape, else the only observed site (``exclude``, the
    label site, aside)."""
    sites = sample_sites(model_trace)
    observed = [n for n, s in sites if s["is_observed"] and n != exclude]
    same = [n for n in observed if _is(model_trace.nodes[n]["value"], x)]
    shaped = [n for n in observed if model_trace.nodes[n]["value"].shape == x.shape]
    candidates = same or shaped or observed
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise PairError(f"cannot tell which site of the model is the data: "
                        f"{', '.join(candidates)} all fit; name it: sites={{'x': name}}")
    raise PairError(f"the model has no observed site (sample sites: "
                    f"{', '.join(n for n, _ in sites) or 'none'}); observe the data with "
                    f"pyro.sample(name, ..., obs=x)")


def data_plate_name(name: str, site: dict, n: int) -> str:
    """The plate over the ``n`` data points at dim -1 around site ``name`` (a plate without
    a size counts the site's batch: :func:`~inference.plates.frame_size`), or a
    :class:`PairError` that says what the lab needs."""
    frames = [f for f in site["cond_indep_stack"] if f.vectorized and f.dim == -1]
    if not frames or frame_size(frames[0], site) != n:
        where = (f"its plate at dim -1 ({frames[0].name!r}) has size "
                 f"{frame_size(frames[0], site)}" if frames else
                 "it is not inside a plate at dim -1")
        raise PairError(f"site {name!r} must sit in a plate over the {n} data points at dim "
                        f"-1, but {where}; scores per data point need with pyro.plate('data', "
                        f"len(x)): around the per-point sites (models.data_plate)")
    return frames[0].name


@torch.no_grad()
def probe_sites(model, guide, x: torch.Tensor, y: torch.Tensor | None = None,
                names: Mapping[str, object] | None = None) -> Sites:
    """:func:`discover_sites` of the model replayed on the guide, without the checks of
    :func:`~inference.check_pair`; the probe runs under a forked RNG."""
    model, guide = program(model, "model"), program(guide, "guide")
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), whole_plates(len(x)):
        g = pyro.poutine.trace(guide).get_trace(x, y)
        m = pyro.poutine.trace(pyro.poutine.replay(model, trace=g)).get_trace(x, y)
    return discover_sites(m, x, y, names)
