"""Neural spline flow encoder: the IAF guide's structure with rational-spline steps."""

from __future__ import annotations

import torch
from pyro.distributions.transforms import ConditionalSplineAutoregressive
from torch import nn

from guides import register_guide
from guides.iaf import IAFGuide
from models.flows import ContextMADE
from models.nets import activation as make_activation

ORDERS = {"linear": 4, "quadratic": 3}  # spline parameters per bin: widths, heights, ...


@register_guide("spline")
class SplineGuide(IAFGuide):
    """Spline flow: a Gaussian MLP encoder, then conditional autoregressive spline steps.

    Durkan, Bekasov, Murray & Papamakarios 2019, "Neural spline flows"; linear rational
    splines: Dolatabadi, Erfani & Leckie 2020.

    Variational family::

        h        = MLP_φ(x)                              x_dim -> hidden: the context
        z_0      ~ Normal(μ_φ(h), diag σ_φ(h)²)          the gaussian_mlp guide
        z_t,j    = g_tj(z_{t-1},j)                       t = 1..steps, j = 1..z_dim
        z        = z_steps

    Each g_tj is a monotonic rational spline on [−bound, bound] (the identity outside) with
    ``count_bins`` bins, whose knots a :class:`~models.flows.ContextMADE` computes from
    z_{t−1, <j} and h: Pyro's ``ConditionalSplineAutoregressive``. Steps alternate the
    coordinate order as in the ``iaf`` guide, whose docstring says what scoring costs, how
    E_q[z | x] is estimated and what :meth:`encode_gaussian` gives.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (z_dim,)     data
    ========  ===========  =====================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (400,),
                 activation: str = "softplus", scale: str = "softplus", steps: int = 2,
                 flow_hidden: tuple[int, ...] = (320,), count_bins: int = 8,
                 bound: float = 3.0, order: str = "linear"):
        if order not in ORDERS:
            raise ValueError(f"order must be 'linear' or 'quadratic', got {order!r}")
        if not isinstance(count_bins, int) or count_bins < 2:
            raise ValueError(f"count_bins must be a whole number ≥ 2, got {count_bins!r}")
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound!r}")
        dims = [count_bins, count_bins, count_bins - 1, count_bins][:ORDERS[order]]

        def step(context: int) -> nn.Module:
            made = ContextMADE(z_dim, context, list(flow_hidden), param_dims=dims,
                               permutation=torch.arange(z_dim),
                               nonlinearity=make_activation(activation))
            return ConditionalSplineAutoregressive(z_dim, made, count_bins=count_bins,
                                                   bound=float(bound), order=order)

        super(IAFGuide, self).__init__()
        self.build(x_dim, z_dim, hidden, activation, scale, steps, flow_hidden, step)
