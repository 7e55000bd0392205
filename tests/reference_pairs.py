"""Pairs for the reference tests, with every log-density written out in plain torch.

Each :class:`Reference` holds a model, a guide and N = 5 distinct float64 data points, and
computes from the guide's standard-normal draws ε (one (K, N, d) tensor per latent site, in
the guide's sampling order) the latent values and the per-(particle, point) log-densities
by formula: ``normal_lp``, ``normal_kl`` and ``bernoulli_lp`` below, never a Pyro trace or
a distribution object of the lab. Networks are called as the plain torch modules they are.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from guides import make_guide
from models import data_plate, make_model
from models.distributions import DiagNormal
from models.nets import StandardNormal

F64 = torch.float64
N = 5
LOG_2PI = math.log(2 * math.pi)


def normal_lp(v, loc, scale):
    """Σ over the last dim of log N(v; loc, scale²)."""
    return (-0.5 * ((v - loc) / scale) ** 2 - torch.log(scale) - 0.5 * LOG_2PI).sum(-1)


def normal_kl(mq, sq, mp, sp):
    """Σ over the last dim of KL(N(mq, sq²) ‖ N(mp, sp²))."""
    return (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)


def bernoulli_lp(x, logits):
    """log Bernoulli(x; sigmoid(logits)) per pixel (no sum)."""
    return x * logits - F.softplus(logits)


def stop(t: torch.Tensor, frozen: bool) -> torch.Tensor:
    return t.detach() if frozen else t


@dataclass
class Reference:
    """A pair, its data, and its densities by hand.

    ``draw(eps, x_enc)`` gives the latent values {site: (K, N, d)} with gradients to the
    guide's parameters; ``log_q(z, x_enc, frozen)`` log q(z | x_enc) with the guide's
    parameters detached when ``frozen`` (z keeps its gradient); ``log_prior(z)`` log p(z);
    ``pixel_lik(z)`` log p(x_i | z) per pixel (K, N, D); ``kl(z, x_enc)`` Σ over sites of
    the closed-form KL(q ‖ p) that ``TraceMeanField_ELBO`` uses.
    """

    name: str
    model: nn.Module
    guide: nn.Module
    x: torch.Tensor
    dims: dict[str, int]  # latent sites in the guide's sampling order, and their sizes
    draw: Callable
    log_q: Callable
    log_prior: Callable
    pixel_lik: Callable
    kl: Callable

    def eps(self, k: int, seed: int | None = None) -> list[torch.Tensor]:
        """The guide's next draws (under ``seed`` if given): torch's normal stream, in the
        guide's sampling order."""
        if seed is not None:
            torch.manual_seed(seed)
        return [torch.randn(k, N, d, dtype=F64) for d in self.dims.values()]

    def log_lik(self, z) -> torch.Tensor:
        return self.pixel_lik(z).sum(-1)

    def log_w(self, z, x_enc=None, frozen: bool = False, beta: float = 1.0) -> torch.Tensor:
        """log p(x | z) + β (log p(z) − log q(z | x)), (K, N)."""
        x_enc = self.x if x_enc is None else x_enc
        return self.log_lik(z) + beta * (self.log_prior(z) - self.log_q(z, x_enc, frozen))


def linear() -> Reference:
    """Probabilistic PCA with a diagonal linear guide whose scale is one shared (d,) vector."""
    torch.manual_seed(3)
    model = make_model("linear_gaussian", x_dim=6, z_dim=2, init_noise=0.7,
                       init_weight_scale=1.0).double()
    with torch.no_grad():
        model.bias.copy_(torch.randn(6, dtype=F64))
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2, covariance="diagonal").double()
    guide.set_posterior(model)
    with torch.no_grad():
        guide.bias.add_(0.5)  # a poor guide: gradients are far from zero
        x = model.marginal().sample((N,))

    def loc(x_enc, frozen=False):
        return x_enc @ stop(guide.weight, frozen).T + stop(guide.bias, frozen)  # (N, d)

    def draw(eps, x_enc):
        return {"z": loc(x_enc) + guide.scale * eps[0]}

    return Reference(
        "linear", model, guide, x, {"z": 2}, draw,
        log_q=lambda z, x_enc, frozen: normal_lp(z["z"], loc(x_enc, frozen),
                                                 stop(guide.scale, frozen)),
        log_prior=lambda z: normal_lp(z["z"], torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)),
        pixel_lik=lambda z: -0.5 * ((x - (z["z"] @ model.weight.T + model.bias)) / model.noise) ** 2
        - torch.log(model.noise) - 0.5 * LOG_2PI,
        kl=lambda z, x_enc: normal_kl(loc(x_enc), guide.scale, 0.0, 1.0))


def mlp() -> Reference:
    """The default pair's networks, small: Bernoulli MLP decoder, diagonal MLP encoder."""
    torch.manual_seed(0)
    sizes = {"x_dim": 12, "z_dim": 3, "hidden": (8,)}
    model, guide = make_model("bernoulli_mlp", **sizes).double(), make_guide(
        "gaussian_mlp", **sizes).double()
    g = torch.Generator().manual_seed(2)
    x = torch.bernoulli(torch.full((N, 12), 0.4, dtype=F64), generator=g)
    assert len(x.unique(dim=0)) == N

    def encoder(x_enc, frozen=False):
        loc, raw = guide.head(guide.trunk(x_enc)).chunk(2, dim=-1)  # (N, d) each
        return stop(loc, frozen), stop(F.softplus(raw) + 1e-5, frozen)

    def draw(eps, x_enc):
        loc, scale = encoder(x_enc)
        return {"z": loc + scale * eps[0]}

    return Reference(
        "mlp", model, guide, x, {"z": 3}, draw,
        log_q=lambda z, x_enc, frozen: normal_lp(z["z"], *encoder(x_enc, frozen)),
        log_prior=lambda z: normal_lp(z["z"], torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)),
        pixel_lik=lambda z: bernoulli_lp(x, model.decoder(z["z"])),
        kl=lambda z, x_enc: normal_kl(*encoder(x_enc), 0.0, 1.0))


class ChainModel(PyroModule):
    """z2 ~ N(0, I_2);  z1 | z2 ~ N(B z2 + c, diag τ²);  x | z1 ~ N(W z1 + b, diag σ²).

    Linear-Gaussian, so p(x) = N(W c + b, W (B Bᵀ + diag τ²) Wᵀ + diag σ²) exactly.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z2``    (2,)         data
    ``z1``    (3,)         data
    ``x``     (5,)         data (observed)
    ========  ===========  =====================
    """

    def __init__(self):
        super().__init__()
        r = lambda *s: nn.Parameter(torch.randn(*s, dtype=F64) * 0.7)  # noqa: E731
        self.B, self.c, self.log_tau = r(3, 2), r(3), r(3)
        self.W, self.b, self.log_sigma = r(5, 3), r(5), r(5)
        self.prior = StandardNormal(2).double()

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z2 = pyro.sample("z2", self.prior())
            z1 = pyro.sample("z1", DiagNormal(z2 @ self.B.T + self.c, self.log_tau.exp()))
            return pyro.sample("x", DiagNormal(z1 @ self.W.T + self.b, self.log_sigma.exp()),
                               obs=x)

    def marginal(self) -> torch.distributions.MultivariateNormal:
        cov1 = self.B @ self.B.T + torch.diag(self.log_tau.exp() ** 2)
        cov = self.W @ cov1 @ self.W.T + torch.diag(self.log_sigma.exp() ** 2)
        return torch.distributions.MultivariateNormal(self.W @ self.c + self.b, cov)


class ChainGuide(PyroModule):
    """z1 | x ~ N(A1 x + a1, diag s1²);  z2 | z1 ~ N(A2 z1 + a2, diag s2²), s1 and s2 shared
    by all points.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z1``    (3,)         data
    ``z2``    (2,)         data
    ========  ===========  =====================
    """

    def __init__(self):
        super().__init__()
        r = lambda *s: nn.Parameter(torch.randn(*s, dtype=F64) * 0.5)  # noqa: E731
        self.A1, self.a1, self.log_s1 = r(3, 5), r(3), r(3)
        self.A2, self.a2, self.log_s2 = r(2, 3), r(2), r(2)

    def forward(self, x, y=None):
        with data_plate(x, y):
            z1 = pyro.sample("z1", DiagNormal(x @ self.A1.T + self.a1, self.log_s1.exp()))
            return pyro.sample("z2", DiagNormal(z1 @ self.A2.T + self.a2, self.log_s2.exp()))


def chain() -> Reference:
    """Two latent layers, z2 → z1 → x, with a bottom-up guide."""
    torch.manual_seed(5)
    model, guide = ChainModel(), ChainGuide()
    with torch.no_grad():
        x = model.marginal().sample((N,))
    m, q = model, guide

    def q1(x_enc, frozen=False):
        return x_enc @ stop(q.A1, frozen).T + stop(q.a1, frozen), stop(q.log_s1, frozen).exp()

    def q2(z1, frozen=False):
        return z1 @ stop(q.A2, frozen).T + stop(q.a2, frozen), stop(q.log_s2, frozen).exp()

    def draw(eps, x_enc):
        loc1, s1 = q1(x_enc)
        z1 = loc1 + s1 * eps[0]  # (K, N, 3)
        loc2, s2 = q2(z1)
        return {"z1": z1, "z2": loc2 + s2 * eps[1]}

    def log_prior(z):
        return (normal_lp(z["z2"], torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64))
                + normal_lp(z["z1"], z["z2"] @ m.B.T + m.c, m.log_tau.exp()))

    def kl(z, x_enc):
        return (normal_kl(*q1(x_enc), z["z2"] @ m.B.T + m.c, m.log_tau.exp())
                + normal_kl(*q2(z["z1"]), 0.0, 1.0))

    return Reference(
        "chain", model, guide, x, {"z1": 3, "z2": 2}, draw,
        log_q=lambda z, x_enc, frozen: (normal_lp(z["z1"], *q1(x_enc, frozen))
                                        + normal_lp(z["z2"], *q2(z["z1"], frozen))),
        log_prior=log_prior,
        pixel_lik=lambda z: -0.5 * ((x - (z["z1"] @ m.W.T + m.b)) / m.log_sigma.exp()) ** 2
        - m.log_sigma - 0.5 * LOG_2PI,
        kl=kl)


PAIRS = {"linear": linear, "mlp": mlp, "chain": chain}
