"""The conditional VAE of Pyro's ``examples/cvae`` (Sohn et al. 2015, "Learning structured
output representation using deep conditional generative models"), in its style: complete a
digit from some of its quadrants.

The input ``xs`` holds the visible quadrants and -1 at the hidden pixels; the output ``ys``
holds the hidden pixels and -1 at the visible ones (:func:`quadrants`). A
:class:`BaselineNet` first learns to predict the hidden pixels (a masked Bernoulli
likelihood, the example's masked BCE); the CVAE's prior over z is conditioned on the input
and the baseline's guess, and only the hidden pixels are scored::

    y_hat      = baseline(xs)                              frozen, not trained with the CVAE
    z | xs     ~ Normal(prior_net(xs, y_hat))              the conditional prior
    y | xs, z  ~ Bernoulli(generation_net(z)) on the pixels where xs == -1
    q(z | xs, ys) = Normal(recognition_net(xs, ys))

========  ===========  =================================================
site      event shape  plate
========  ===========  =================================================
``z``     (z_dim,)     ``data`` (without a size, as the example writes it)
``y``     (784,)       ``data`` (observed: the hidden pixels, the rest masked out)
========  ===========  =================================================

Where the example selects the hidden pixels with a boolean index (which needs one batch
dim), this version masks the Bernoulli (``.mask(xs == -1)``): the same log-density, and
it broadcasts over particles, so ``iw_log_likelihood`` estimates log p(ys | xs). The lab
checks observed values against the Bernoulli's support: binarize the images before
splitting them (``quadrants(torch.bernoulli(images))``).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


def quadrants(images: torch.Tensor, inputs: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``(xs, ys)`` from flat 28×28 images (N, 784): ``inputs`` quadrants visible in xs
    (1: bottom left; 2: the left half; 3: all but the bottom right), the others in ys, and
    -1 where each does not see (the example's ``MaskImages``)."""
    if inputs not in (1, 2, 3):
        raise ValueError(f"inputs={inputs}: the number of visible quadrants is 1, 2 or 3")
    out = images.reshape(-1, 28, 28).clone()
    out[:, 14:, :14] = -1
    if inputs >= 2:
        out[:, :, :14] = -1
    if inputs == 3:
        out[:, :14, :] = -1
    inp = torch.where(out == -1, images.reshape(-1, 28, 28), -torch.ones_like(out))
    return inp.reshape(-1, 784), out.reshape(-1, 784)


def _mlp(n_in: int, hidden_1: int, hidden_2: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden_1), nn.ReLU(), nn.Linear(hidden_1, hidden_2),
                         nn.ReLU(), nn.Linear(hidden_2, n_out))


def hidden_pixels(xs: torch.Tensor, probs: torch.Tensor, ys: torch.Tensor | None):
    """``pyro.sample("y", ...)``: the pixels that ``xs`` hides, scored against ``ys``; the
    others are masked out (their -1 in ``ys`` is read as 0, a value the Bernoulli takes)."""
    obs = None if ys is None else ys.clamp(min=0)
    return pyro.sample("y", dist.Bernoulli(probs, validate_args=False).mask(xs == -1)
                       .to_event(1), obs=obs)


class BaselineNet(nn.Module):
    """A plain network that guesses the hidden pixels; ``model``/``guide`` make it a fully
    observed Pyro pair (no latent site), trained by maximum likelihood."""

    def __init__(self, hidden_1: int = 500, hidden_2: int = 500):
        super().__init__()
        self.net = _mlp(784, hidden_1, hidden_2, 784)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(xs))  # (N, 784) pixel probabilities

    def model(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        pyro.module("baseline_net", self)
        with pyro.plate("data"):
            hidden_pixels(xs, self(xs), ys)

    def guide(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        """No latent site."""


class Encoder(nn.Module):
    """A Gaussian over z from an input and an output, put together in one image."""

    def __init__(self, z_dim: int, hidden_1: int, hidden_2: int):
        super().__init__()
        self.net = _mlp(784, hidden_1, hidden_2, 2 * z_dim)

    def forward(self, xs: torch.Tensor, ys: torch.Tensor):
        loc, log_scale = self.net(torch.where(xs == -1, ys, xs)).chunk(2, dim=-1)
        return loc, torch.exp(log_scale)  # (N, z_dim) each


class CVAE(nn.Module):
    """Prior, generation and recognition networks on top of a trained :class:`BaselineNet`,
    which is frozen."""

    def __init__(self, baseline_net: BaselineNet, z_dim: int = 200, hidden_1: int = 500,
                 hidden_2: int = 500):
        super().__init__()
        self.baseline_net = baseline_net
        self.prior_net = Encoder(z_dim, hidden_1, hidden_2)
        self.generation_net = nn.Sequential(_mlp(z_dim, hidden_1, hidden_2, 784), nn.Sigmoid())
        self.recognition_net = Encoder(z_dim, hidden_1, hidden_2)

    def model(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> torch.Tensor:
        """p(z | xs) p(ys | xs, z) on the hidden pixels; without ``ys``, the completion."""
        pyro.module("cvae", self)
        with pyro.plate("data"):
            with torch.no_grad():
                y_hat = self.baseline_net(xs)
            zs = pyro.sample("z", dist.Normal(*self.prior_net(xs, y_hat)).to_event(1))
            loc = self.generation_net(zs)  # (*particles, N, 784)
            if ys is not None:
                hidden_pixels(xs, loc, ys)
            else:
                pyro.deterministic("y", loc.detach())
            return loc

    def guide(self, xs: torch.Tensor, ys: torch.Tensor | None = None) -> None:
        """q(z | xs, ys) in training; the conditional prior when ``ys`` is not given."""
        with pyro.plate("data"):
            if ys is None:
                loc, scale = self.prior_net(xs, self.baseline_net(xs))
            else:
                loc, scale = self.recognition_net(xs, ys)
            pyro.sample("z", dist.Normal(loc, scale).to_event(1))
