"""Variants of a pair as poutine handlers: β-VAE and KL annealing.

A variant is a handler applied to an existing model or guide, never a copied class.
:class:`BetaMessenger` scales the log-density of every latent sample site by β; applied to
both model and guide (or as a context around an ELBO call, which covers both) it turns any
ELBO into E_q[log p(x | z)] − β · KL(q(z | x) ‖ p(z)) (Higgins et al. 2017, "β-VAE").

β schedules (:class:`LinearWarmup`, :class:`Cyclical`) are functions of the training
progress in epochs (fractional within an epoch); :func:`inference.fit` sets the handler's β
before every step. β is held in a 0-dim tensor updated in place, so a captured or compiled
training graph reads it as an input and never needs recapturing.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample


def _checked(beta: float | torch.Tensor) -> float | torch.Tensor:
    value = beta.detach() if torch.is_tensor(beta) else torch.as_tensor(float(beta))
    if value.numel() != 1 or not math.isfinite(float(value)) or float(value) < 0:
        raise ValueError(f"β must be one finite number ≥ 0, got {beta!r}")
    return beta


class BetaMessenger(Messenger):
    """Multiplies the log-density (``msg["scale"]``) of every unobserved sample site by β.

    Observed sites (the likelihood) are left alone. Unlike ``poutine.scale``, β = 0 is
    allowed: the latent terms then vanish and the objective is the reconstruction term
    alone. ``beta`` may be a float or a tensor; :meth:`set` changes it in place.
    """

    def __init__(self, beta: float | torch.Tensor = 1.0):
        super().__init__()
        self.beta = _checked(beta)

    def set(self, value: float) -> None:
        """Change β; a tensor β is filled in place, so graphs that read it stay valid."""
        _checked(value)
        if torch.is_tensor(self.beta):
            self.beta.fill_(value)
        else:
            self.beta = float(value)

    def _process_message(self, msg):
        if msg["type"] == "sample" and not msg["is_observed"] and not site_is_subsample(msg):
            beta = self.beta
            if not (isinstance(beta, float) and beta == 1.0):
                msg["scale"] = beta * msg["scale"]


def beta(fn: Callable | None = None, beta: float | torch.Tensor = 1.0):
    """``fn`` (a model or guide) with its latent sites' log-densities scaled by ``beta``.

    ``beta(model, 4.0)`` and ``beta(guide, 4.0)`` under ``Trace_ELBO`` give
    −(log p(x | z) + 4 (log p(z) − log q(z | x))); under ``TraceMeanField_ELBO``,
    reconstruction − 4 · KL in closed form. Without ``fn`` it returns the messenger, usable
    as a context manager.

    >>> import pyro, pyro.distributions as dist
    >>> def model():
    ...     pyro.sample("z", dist.Normal(0., 1.))
    ...     pyro.sample("x", dist.Normal(0., 1.), obs=torch.tensor(0.))
    >>> tr = pyro.poutine.trace(beta(model, 0.0)).get_trace()
    >>> tr.nodes["z"]["scale"], tr.nodes["x"]["scale"]
    (0.0, 1.0)
    """
    messenger = BetaMessenger(beta)
    return messenger if fn is None else messenger(fn)


class LinearWarmup:
    """β rises linearly from ``start`` to ``end`` over the first ``epochs`` epochs, then
    stays (Bowman et al. 2016, "Generating sentences from a continuous space")."""

    def __init__(self, epochs: float, end: float = 1.0, start: float = 0.0):
        if epochs <= 0:
            raise ValueError(f"warm-up needs epochs > 0, got {epochs}")
        self.epochs, self.end, self.start = epochs, end, start

    def __call__(self, progress: float) -> float:
        return self.start + (self.end - self.start) * min(1.0, progress / self.epochs)

    def __repr__(self) -> str:
        return f"linear warm-up over {self.epochs:g} epochs to {self.end:g}"


class Cyclical:
    """Cyclical annealing (Fu et al. 2019): cycles of ``period`` epochs; in each, β rises
    linearly from 0 to ``end`` over the first ``ratio`` of the cycle, then stays."""

    def __init__(self, period: float, ratio: float = 0.5, end: float = 1.0):
        if period <= 0 or not 0 < ratio <= 1:
            raise ValueError(f"cyclical annealing needs period > 0 and 0 < ratio ≤ 1, got "
                             f"period {period}, ratio {ratio}")
        self.period, self.ratio, self.end = period, ratio, end

    def __call__(self, progress: float) -> float:
        phase = (progress % self.period) / self.period
        return self.end * min(1.0, phase / self.ratio)

    def __repr__(self) -> str:
        return f"cyclical over {self.period:g} epochs, rising for {self.ratio:g}, to {self.end:g}"


def parse_anneal(text: str, end: float = 1.0) -> Callable[[float], float] | None:
    """``none``, ``linear:E`` (warm-up over E epochs) or ``cyclical:P[:R]`` → a schedule."""
    kind, *args = text.split(":")
    try:
        values = [float(a) for a in args]
    except ValueError:
        values = None
    if values is not None:  # the schedules check their own numbers
        if kind == "none" and not values:
            return None
        if kind == "linear" and len(values) == 1:
            return LinearWarmup(values[0], end=end)
        if kind == "cyclical" and len(values) in (1, 2):
            return Cyclical(*values, end=end)
    raise ValueError(f"unknown annealing {text!r}; use none, linear:EPOCHS or "
                     f"cyclical:PERIOD[:RATIO], e.g. linear:10 or cyclical:4:0.5")


class TemperatureMessenger(Messenger):
    """Multiplies the standard deviation of Gaussian latent sites by ``t`` (sampling at a
    temperature: Kingma & Dhariwal 2018, "Glow"; Vahdat & Kautz 2020, "NVAE"). Below 1 the
    draws are more typical and less varied. ``sites`` names the sites (each must be
    Gaussian); by default every unobserved Gaussian site but the data site ``data``, which a
    model run without data samples too."""

    def __init__(self, t: float, sites: tuple[str, ...] | None = None, data: str = "x"):
        super().__init__()
        if not (isinstance(t, (int, float)) and math.isfinite(t) and t > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {t!r}")
        self.t, self.sites, self.data = float(t), sites, data

    def _pyro_sample(self, msg):
        named = self.sites is not None and msg["name"] in self.sites
        if msg["is_observed"] or site_is_subsample(msg) or msg["name"] == self.data or (
                self.sites is not None and not named):
            return
        fn, events = msg["fn"], 0
        while isinstance(fn, torch.distributions.Independent):
            fn, events = fn.base_dist, events + fn.reinterpreted_batch_ndims
        if not isinstance(fn, torch.distributions.Normal):
            if named:
                raise ValueError(f"temperature needs Gaussian latent sites; {msg['name']!r} "
                                 f"is {type(fn).__name__}")
            return
        tempered = dist.Normal(fn.loc, fn.scale * self.t)
        msg["fn"] = tempered.to_event(events) if events else tempered


def temperature(fn: Callable, t: float = 1.0, **kwargs) -> Callable:
    """``fn`` (a model) sampling its Gaussian latent sites at temperature ``t``
    (``kwargs``: :class:`TemperatureMessenger`'s).

    >>> import pyro
    >>> def model():
    ...     return pyro.sample("z", dist.Normal(0., 2.))
    >>> pyro.poutine.trace(temperature(model, 0.5)).get_trace().nodes["z"]["fn"].scale
    tensor(1.)
    """
    return fn if t == 1 else TemperatureMessenger(t, **kwargs)(fn)
