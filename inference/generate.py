"""New data from a model, and reconstructions through a guide: both run the pair itself."""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import torch

from inference.data import device_of
from inference.traces import sample_sites


@torch.no_grad()
def sample(model, n: int, *, y: torch.Tensor | None = None, mean: bool = False,
           sites: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Draw ``n`` samples of the model's sites by running ``model(None, y)``.

    The model runs once inside an outer ``pyro.plate("samples", n, dim=-2)``, so all ``n``
    draws are vectorized. Without ``y`` each returned tensor has shape ``(n, *event)``;
    with labels ``y`` of shape (M,) it has shape ``(n, M, *event)``: n draws per label.
    ``mean=True`` returns the likelihood's mean (pixel probabilities) for ``x`` instead of
    a draw. ``sites`` picks sites by name (default: every sample site, e.g. z1, z2, x).
    """
    y = None if y is None else y.to(device_of(model))
    with pyro.plate("samples", n, dim=-2):
        tr = poutine.trace(model).get_trace(None, y)
    out = {}
    for name in sites or [n for n, _ in sample_sites(tr)]:
        site = tr.nodes[name]
        fn = site["fn"]
        value = fn.mean.expand(fn.shape()) if mean and name == "x" else site["value"]
        out[name] = value.squeeze(-1 - len(fn.event_shape)) if y is None else value
    return out


def class_samples(model, label: int, n: int, *, mean: bool = True) -> torch.Tensor:
    """``n`` images (n, D) of class ``label`` from a label-conditional model: the model run
    under ``poutine.condition(model, data={"y": label})``."""
    y = torch.tensor(label, device=device_of(model))
    return sample(poutine.condition(model, data={"y": y}), n, mean=mean, sites=("x",))["x"]


@torch.no_grad()
def reconstruct(model, guide, x: torch.Tensor, y: torch.Tensor | None = None, *,
                mean: bool = True) -> torch.Tensor:
    """Encode ``x`` with the guide, decode with the model: the likelihood's mean (or a draw)."""
    x = x.to(device_of(model))
    guide_tr = poutine.trace(guide).get_trace(x, y)
    model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(None, y)
    site = model_tr.nodes["x"]
    return site["fn"].mean if mean else site["value"]
