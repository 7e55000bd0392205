"""A model and a guide as the lab trains, saves and moves them: programs, sites, parameters.

Pyro's ``SVI`` finds a pair's parameters by running it under a param-only trace; so does
:func:`as_pair`. Parameters of the ``torch.nn.Module`` s that own the programs (a
``PyroModule``, or the module a ``model``/``guide`` method belongs to) are the modules';
the others (``pyro.param``, or ``pyro.module`` on a network only a function knows) are
kept by their names in Pyro's parameter store, through their unconstrained tensors, which
are what an optimizer updates and a checkpoint holds.

>>> import pyro, pyro.distributions as dist
>>> def model(x):
...     with pyro.plate("batch", len(x)):
...         z = pyro.sample("latent", dist.Normal(0., 1.))
...         pyro.sample("obs", dist.Normal(z, 1.), obs=x)
>>> def guide(x):
...     loc = pyro.param("loc", torch.zeros(()))
...     with pyro.plate("batch", len(x)):
...         pyro.sample("latent", dist.Normal(loc, 1.))
>>> pair = as_pair(model, guide, torch.zeros(3))
>>> pair.sites
Sites(x='obs', latent=('latent',), y=None, plate='batch')
>>> list(pair.params)
['loc']
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyro.poutine as poutine
import torch

from inference.check import check_pair
from inference.plates import whole_plates
from inference.programs import Sites, device_of, owner, program

_MODULE_PARAM = "$$$"  # how pyro.module names a network's parameters in the store


@dataclass
class Pair:
    """``model`` and ``guide`` callable as ``fn(x, y=None)``, the :class:`Sites` they use
    (None when not discovered), the modules that own them and the free parameters."""

    model: Callable
    guide: Callable
    sites: Sites | None = None
    params: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def owners(self) -> dict[str, torch.nn.Module]:
        """{"model": module, "guide": module} for the programs that have one, each once."""
        out: dict[str, torch.nn.Module] = {}
        for role, fn in (("model", self.model), ("guide", self.guide)):
            module = owner(fn)
            if module is not None and all(module is not m for m in out.values()):
                out[role] = module
        return out

    def parameters(self) -> list[torch.Tensor]:
        """Trainable tensors of the pair, each once: the owners', then the free ones."""
        seen: dict[int, torch.Tensor] = {}
        for module in self.owners.values():
            for p in module.parameters():
                if p.requires_grad:
                    seen.setdefault(id(p), p)
        for p in self.params.values():
            seen.setdefault(id(p), p)
        return list(seen.values())

    @property
    def device(self) -> torch.device:
        return device_of(self.model, self.guide) if self.owners or not self.params else next(
            iter(self.params.values())).device

    def to(self, device: torch.device | str) -> Pair:
        """Move the owners (``.to``) and the free parameters (in place, so that Pyro's store
        and any module registered with ``pyro.module`` keep the same tensors)."""
        for module in self.owners.values():
            module.to(device)
        with torch.no_grad():
            for p in self.params.values():
                p.data = p.data.to(device)
        return self

    def capture_refusal(self) -> str | None:
        """Why the fast path cannot capture this pair (None if it can)."""
        for role, fn in (("model", self.model), ("guide", self.guide)):
            if owner(fn) is None:
                return (f"the {role} is a function, not a module or a module's method: the "
                        f"fast path swaps a module's parameters")
        if self.params:
            return (f"parameters outside the pair's modules ({', '.join(self.params)}): the "
                    f"fast path swaps a module's parameters")
        return None

    def state_dict(self) -> dict[str, Any]:
        owners = self.owners
        return {"model": owners["model"].state_dict() if "model" in owners else {},
                "guide": owners["guide"].state_dict() if "guide" in owners else {},
                "params": {name: p.detach() for name, p in self.params.items()}}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load a :meth:`state_dict`; raises ``KeyError``/``RuntimeError`` if it does not fit."""
        for role, module in self.owners.items():
            module.load_state_dict(state[role])
        saved = state.get("params", {})
        if set(saved) != set(self.params):
            raise KeyError(f"the checkpoint's free parameters {sorted(saved)} are not the "
                           f"pair's {sorted(self.params)}")
        with torch.no_grad():
            for name, p in self.params.items():
                if saved[name].shape != p.shape:
                    raise RuntimeError(f"parameter {name!r}: the checkpoint's shape "
                                       f"{tuple(saved[name].shape)} is not {tuple(p.shape)}")
                p.copy_(saved[name])


class PairLoss(torch.nn.Module):
    """The loss of a pair as a module whose parameters are the pair's (its owners'), as
    Pyro's ``ELBOModule`` is for two modules; it takes methods and one-argument programs."""

    def __init__(self, loss, pair):
        super().__init__()
        if pair.params or len(pair.owners) == 0:
            raise ValueError(f"distributed training needs the pair's parameters in modules "
                             f"(PyroModules, or the nn.Module of the model and guide methods); "
                             f"these are not: {', '.join(pair.params) or 'all of them'}")
        self.loss, self.model, self.guide = loss, pair.model, pair.guide
        self.owners = torch.nn.ModuleList(pair.owners.values())

    def forward(self, x, y=None):
        return self.loss.differentiable_loss(self.model, self.guide, x, y)


def _trained_tensor(name: str, site: dict, owned: set[int]) -> torch.Tensor | None:
    """The leaf tensor behind a param site: what Pyro's SVI hands its optimizer, except that
    a module's own parameter (``pyro.module``, a ``PyroModule`` under Pyro's default
    settings) is what the module computes with, whatever the store holds under its name."""
    init = site["args"][1] if len(site["args"]) > 1 else None
    if torch.is_tensor(init) and (id(init) in owned or _MODULE_PARAM in name):
        return init
    value = site["value"]
    return value.unconstrained() if hasattr(value, "unconstrained") else value


def free_parameters(pair: Pair, x: torch.Tensor, y: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The pair's trainable tensors that its owners do not hold, by their store names, from
    a param-only trace of the guide and the model replayed on it (Pyro's ``SVI`` does the
    same). The trace runs under a forked RNG, so it does not shift later draws."""
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), whole_plates(len(x)), \
            poutine.trace(param_only=True) as params:
        g = poutine.trace(pair.guide).get_trace(x, y)
        poutine.replay(pair.model, trace=g)(x, y)
    owned = {id(p) for m in pair.owners.values() for p in m.parameters()}
    out = {}
    for name, site in params.trace.nodes.items():
        t = _trained_tensor(name, site, owned)
        if torch.is_tensor(t) and t.requires_grad and t.is_leaf and id(t) not in owned:
            out[name] = t
    return out


def as_pair(model, guide, x: torch.Tensor, y: torch.Tensor | None = None, *,
            sites: Mapping[str, object] | None = None) -> Pair:
    """Check ``model`` and ``guide`` on a batch (:func:`~inference.check_pair`) and collect
    their sites and parameters. ``sites`` names what the traces cannot tell apart, e.g.
    ``{"x": "obs", "z": "latent"}``. ``x`` must be on the pair's device."""
    pair = Pair(program(model, "model"), program(guide, "guide"))
    pair.sites = check_pair(pair.model, pair.guide, x, y, sites=sites)
    pair.params = free_parameters(pair, x, y)
    return pair


def module_pair(model, guide) -> Pair:
    """A :class:`Pair` of two modules (or methods of modules) without free parameters,
    built without running them: for code that holds the lab's own modules."""
    return Pair(program(model, "model"), program(guide, "guide"))
