"""New data from a model, and reconstructions through a guide: both run the pair itself.

A model written for the lab runs without data, as ``model(None, y)``. A model that needs its
data to run (one that reads ``x.shape``, as Pyro's examples do) is given ``like``, a batch
of data of the right shape whose values are never used, and runs with its observed sites
unconditioned (``poutine.uncondition``), so that they are drawn like the latent sites.
"""

from __future__ import annotations

import pyro
import pyro.poutine as poutine
import torch

from inference.plates import whole_plates
from inference.programs import (
    PairError,
    data_site,
    device_of,
    program,
    sample_sites,
)
from inference.validate import positive_int


def _sample_trace(model, y, like):
    """A trace of ``model`` with its data site drawn, the data plate of size 1 (or len(y))."""
    if like is None:
        try:
            return poutine.trace(model).get_trace(None, y)
        except (TypeError, AttributeError) as e:
            raise PairError(f"the model cannot run without data ({type(e).__name__}: "
                            f"{str(e).splitlines()[0]}); pass like=x, a batch of data, and it "
                            f"runs with its observed sites drawn") from e
    rows = 1 if y is None else len(y)
    x = like[:1].expand(rows, *like.shape[1:])
    run = poutine.uncondition(model)
    if y is not None:  # uncondition would draw the labels too: give them back
        run = poutine.condition(run, data={"y": y})
    return poutine.trace(run).get_trace(x, y)


def _drawn_data_site(tr) -> str | None:
    if "x" in tr.nodes:
        return "x"
    drawn = [n for n, s in sample_sites(tr) if s["infer"].get("was_observed")]
    return drawn[0] if len(drawn) == 1 else None


@torch.no_grad()
def sample(model, n: int, *, y: torch.Tensor | None = None, mean: bool = False,
           sites: tuple[str, ...] | None = None, like: torch.Tensor | None = None,
           site: str | None = None) -> dict[str, torch.Tensor]:
    """Draw ``n`` samples of the model's sites (module docstring: ``like``).

    The model runs once inside an outer ``pyro.plate("samples", n, dim=-2)``, so all ``n``
    draws are vectorized. Without ``y`` each returned tensor has shape ``(n, *event)``;
    with labels ``y`` of shape (M,) it has shape ``(n, M, *event)``: n draws per label.
    ``mean=True`` returns the likelihood's mean (pixel probabilities) for the data site
    ``site`` (default ``x``, or the model's one observed site) instead of a draw. ``sites``
    picks sites by name (default: every sample site, e.g. z1, z2, x).
    """
    positive_int("n", n)
    model = program(model, "model")
    device = device_of(model)
    y = None if y is None else y.to(device)
    like = None if like is None else like.to(device)
    with pyro.plate("samples", n, dim=-2):
        tr = _sample_trace(model, y, like)
    site = site or _drawn_data_site(tr)
    out = {}
    for name in sites or [n for n, _ in sample_sites(tr)]:
        fn = tr.nodes[name]["fn"]
        value = fn.mean.expand(fn.shape()) if mean and name == site else tr.nodes[name]["value"]
        out[name] = value.squeeze(-1 - len(fn.event_shape)) if y is None else value
    return out


def class_samples(model, label: int, n: int, *, mean: bool = True,
                  like: torch.Tensor | None = None, site: str | None = None) -> torch.Tensor:
    """``n`` images (n, D) of class ``label`` from a label-conditional model: the model run
    under ``poutine.condition(model, data={"y": label})``."""
    model = program(model, "model")
    y = torch.tensor(label, device=device_of(model))
    drawn = sample(poutine.condition(model, data={"y": y}), n, mean=mean, like=like, site=site)
    return drawn[site or ("x" if "x" in drawn else next(iter(drawn)))]


@torch.no_grad()
def reconstruct(model, guide, x: torch.Tensor, y: torch.Tensor | None = None, *,
                mean: bool = True, site: str | None = None) -> torch.Tensor:
    """Encode ``x`` with the guide, decode with the model: the likelihood p(x | z) of the
    data site ``site`` (default: the site that observes ``x``), its mean or a draw."""
    model, guide = program(model, "model"), program(guide, "guide")
    x = x.to(device_of(model, guide))
    with whole_plates(len(x)):
        guide_tr = poutine.trace(guide).get_trace(x, y)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(x, y)
    fn = model_tr.nodes[site or data_site(model_tr, x)]["fn"]
    return fn.mean if mean else fn.sample()
