"""Inverse autoregressive flow encoder: a Gaussian MLP encoder followed by IAF steps."""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch
from pyro.distributions.transforms import ConditionalAffineAutoregressive, Permute, Transform
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.distributions import DiagNormal
from models.flows import ContextMADE, FlowPosterior
from models.nets import activation as make_activation
from models.nets import mlp, scale_transform


@register_guide("iaf")
class IAFGuide(PyroModule):
    """Inverse autoregressive flow: a Gaussian MLP encoder, then conditional IAF steps.

    Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling 2016, "Improving variational
    inference with inverse autoregressive flow".

    Variational family::

        h           = MLP_φ(x)                              x_dim -> hidden: the context
        z_0         ~ Normal(μ_φ(h), diag σ_φ(h)²)          the gaussian_mlp guide
        [m_t, s_t]  = MADE_t(z_{t-1}, h)                    t = 1..steps
        σ_t         = sigmoid(s_t + 2)
        z_t         = σ_t ⊙ z_{t-1} + (1 − σ_t) ⊙ m_t        the paper's stable update (eq. 14)
        z           = z_steps
        log q(z | x) = log N(z_0; μ, σ²) − Σ_t Σ_j log σ_tj

    Each step is Pyro's ``ConditionalAffineAutoregressive`` (``stable=True``) on a
    :class:`~models.flows.ContextMADE` in the natural order; the coordinates are reversed
    between steps, as in the paper, and once more after the last step when the number of
    reversals is odd, so the reversals compose to the identity. ``stable=False`` takes
    eq. 10 instead, z_t = m_t + exp(s_t) ⊙ z_{t-1} (log-scale clipped to [−5, 3]); with
    its MADEs' output layers at zero each step is then the identity and the guide is the
    ``gaussian_mlp`` guide exactly (same draws, same log q). With the stable update a zero
    step scales z by sigmoid(2) = 0.88 instead (Kingma et al.'s initialization near the
    identity). ``steps=0`` is the Gaussian guide.

    Draws are reparameterized. Scoring the guide's own draws takes one pass per step
    (cached); scoring another z (STL and DReG replay the guide on detached parameters)
    inverts each step, z_dim sequential passes. E_q[z | x] has no closed form:
    :class:`~models.flows.FlowPosterior` estimates it from 256 fixed draws.
    :meth:`encode_gaussian` is the base q_0(z | x), which a VampPrior model may share.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", scale: str = "softplus", steps: int = 2,
                 flow_hidden: tuple[int, ...] = (320,), stable: bool = True):
        def step(context: int) -> nn.Module:
            made = ContextMADE(z_dim, context, list(flow_hidden), permutation=torch.arange(z_dim),
                               nonlinearity=make_activation(activation))
            return ConditionalAffineAutoregressive(made, stable=stable)

        super().__init__()
        self.build(x_dim, z_dim, hidden, activation, scale, steps, flow_hidden, step)

    def build(self, x_dim: int, z_dim: int, hidden, activation: str, scale: str, steps: int,
              flow_hidden, step: Callable[[int], nn.Module]) -> None:
        """The encoder and ``steps`` flow steps, each made by ``step(context_dim)``: what
        every flow guide shares (the ``spline`` guide swaps in its own steps)."""
        if not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps must be a whole number ≥ 0, got {steps!r}")
        if not flow_hidden or min(flow_hidden) < z_dim:
            raise ValueError(f"flow_hidden widths must be at least z_dim ({z_dim}) for a MADE to "
                             f"connect every output, got {list(flow_hidden)}")
        self.x_dim, self.z_dim = x_dim, z_dim
        self.to_scale = scale_transform(scale)
        self.trunk = mlp([x_dim, *hidden], activation, final_activation=True)
        context = hidden[-1] if hidden else x_dim
        self.head = nn.Linear(context, 2 * z_dim)
        self.flow = nn.ModuleList(step(context) for _ in range(steps))
        self.register_buffer("reverse", torch.arange(z_dim - 1, -1, -1), persistent=False)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(h, μ, σ): the context (..., hidden[-1]) and the base's parameters (..., z_dim)."""
        h = self.trunk(x)
        loc, raw = self.head(h).chunk(2, dim=-1)
        return h, loc, self.to_scale(raw)

    def encode_gaussian(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_φ(x), σ_φ(x)) of the base q_0(z | x), each (..., z_dim)."""
        return self.features(x)[1:]

    def transforms(self, h: torch.Tensor) -> list[Transform]:
        """The steps conditioned on the context h (N, c), with the reversals between them:
        what Pyro's ``ConditionalTransformedDistribution.condition`` builds, made afresh on
        every call (new ``Permute`` objects too, so that no cache is shared)."""
        out: list[Transform] = []
        for t, step in enumerate(self.flow):
            if t:
                out.append(Permute(self.reverse))
            out.append(step.condition(h))
        if len(self.flow) % 2 == 0 and len(self.flow):  # an odd number of reversals so far
            out.append(Permute(self.reverse))
        return out

    def posterior(self, x: torch.Tensor) -> FlowPosterior:
        """q(z | x) for a batch x (N, x_dim): batch shape (N,), event shape (z_dim,)."""
        h, loc, scale = self.features(x)  # (N, c), (N, z_dim), (N, z_dim)
        return FlowPosterior(DiagNormal(loc, scale), lambda: self.transforms(h))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            return pyro.sample("z", self.posterior(x))  # (*particles, N, z_dim)
