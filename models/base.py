"""What every model and guide shares: the name registry and the data plate.

The contract (docs/guide/contract.md):

* models and guides are ``PyroModule`` s called as ``forward(x, y=None)``;
* the per-datapoint sites sit inside one ``pyro.plate("data", N)`` at ``dim=-1``, which
  :func:`data_plate` opens;
* latent sites are named ``z`` (``z1``, ``z2``, ... for deeper models), the observed site
  ``x``, labels ``y``;
* networks accept extra leading batch dimensions (vectorized particles put them at dim -2),
  so a model called with ``x=None`` inside an outer plate draws many samples at once.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pyro
import torch


class Registry(Mapping[str, type]):
    """Name -> class mapping filled by a decorator in the file that defines the class.

    >>> REG = Registry("model")
    >>> @REG.register("tiny")
    ... class Tiny:
    ...     def __init__(self, z_dim=2):
    ...         self.z_dim = z_dim
    >>> REG.make("tiny", z_dim=3).config
    {'name': 'tiny', 'z_dim': 3}
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str) -> Callable[[type], type]:
        def decorator(cls: type) -> type:
            if name in self._classes and self._classes[name] is not cls:
                raise ValueError(f"{self.kind} name {name!r} is already registered")
            self._classes[name] = cls
            cls.registry_name = name
            return cls

        return decorator

    def make(self, name: str, **config: Any) -> Any:
        """Build the class registered as ``name``; its resolved config is kept on ``.config``."""
        if name not in self._classes:
            raise KeyError(f"unknown {self.kind} {name!r}; registered: {', '.join(self)}")
        cls = self._classes[name]
        try:
            bound = inspect.signature(cls).bind(**config)
        except TypeError as e:
            raise TypeError(f"{self.kind} {name!r}: {e}") from None
        bound.apply_defaults()
        obj = cls(**config)
        obj.config = {"name": name, **_jsonable(bound.arguments)}
        return obj

    def __getitem__(self, name: str) -> type:
        return self._classes[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._classes))

    def __len__(self) -> int:
        return len(self._classes)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self)})"


def _jsonable(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()}


def discover(package_name: str, package_path: list[str]) -> None:
    """Import every module of a package so that their ``register`` decorators run."""
    for info in pkgutil.iter_modules(package_path):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package_name}.{info.name}")


class TieError(ValueError):
    """A model asks its guide for a network that the guide does not have."""


def tie(model: Any, guide: Any) -> None:
    """Let ``model`` use networks of ``guide``: calls ``model.tie(guide)`` where the model's
    class defines it, and leaves any other pair as it is.

    The one way a model shares a network with its guide (docs/guide/posteriors.md): the
    VampPrior builds its prior from the guide's encoder, the VQ-VAE decodes from its guide's
    codebook. ``vae-train`` and ``load_run`` tie every registered pair they build; from
    Python, tie after ``make_model`` and ``make_guide``. The model keeps a reference to the
    guide, not a copy: the guide owns the shared weights, so checkpoints hold them once, in
    the guide's state.
    """
    hook = getattr(model, "tie", None)
    if callable(hook):
        hook(guide)


def data_size(x: torch.Tensor | None, y: torch.Tensor | None = None) -> int:
    """N of the data plate: rows of ``x``, else rows of ``y``, else 1 (one prior draw)."""
    if x is not None:
        return x.shape[0]
    if y is not None:
        return y.shape[0]
    return 1


def data_plate(x: torch.Tensor | None, y: torch.Tensor | None = None) -> pyro.plate:
    """The one ``pyro.plate("data", N, dim=-1)`` of the contract."""
    return pyro.plate("data", data_size(x, y), dim=-1)
