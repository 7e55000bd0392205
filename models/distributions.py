"""Distributions shared by models and guides: the usual densities, with log_prob written
for K particles of N data points.

Under a particle plate Pyro expands every distribution to batch shape (K, N), and torch's
``log_prob`` then works on the expanded parameters: ``Normal`` squares and logs a
(K, N, d) scale, ``Bernoulli`` negates a (K, N, D) tensor before ``to_event`` sums it.
These subclasses compute the same densities on unexpanded parameters and reduce before
negating. As subclasses of ``Independent`` they keep Pyro's KL dispatch (closed-form KL
for ``TraceMeanField_ELBO``), ``rsample``, ``mean`` and ``support``.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch.distributions import constraints, register_kl
from torch.distributions.utils import broadcast_all
from torch.nn import functional as F


class BernoulliPixels(dist.Independent):
    """Independent Bernoulli pixels over the last dimension: one binary image per batch entry.

    The same density as ``dist.Bernoulli(logits=logits).to_event(1)``. Its ``log_prob``
    sums the elementwise cross-entropy before negating it, which saves one pass over the
    (..., D) tensor: with K particles of N images that tensor is the largest one there is.
    Without gradients (evaluation) it is computed as Σ x·l − softplus(l)
    (``_bernoulli_sum``), the same number in less time.

    >>> logits, x = torch.randn(3, 5), torch.bernoulli(torch.full((3, 5), 0.5))
    >>> reference = dist.Bernoulli(logits=logits).to_event(1).log_prob(x)
    >>> torch.allclose(BernoulliPixels(logits).log_prob(x), reference)
    True
    """

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None):
        super().__init__(dist.Bernoulli(logits=logits, validate_args=validate_args), 1,
                         validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> BernoulliPixels:
        shape = torch.Size(batch_shape) + self.event_shape  # a subclass expands to its own kind
        return type(self)(self.base_dist.logits.expand(shape),
                          validate_args=self.base_dist._validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.base_dist.logits
        if not (torch.is_grad_enabled() and (logits.requires_grad or value.requires_grad)):
            return _bernoulli_sum(logits, value)
        logits, value = broadcast_all(logits, value)
        return -F.binary_cross_entropy_with_logits(logits, value, reduction="none").sum(-1)


class GreyCrossEntropy(BernoulliPixels):
    """Σ_d x_d log p_d + (1 − x_d) log(1 − p_d) for grey levels x in [0, 1]: the Bernoulli
    log-mass applied to grey pixels, as Pyro's ``examples/vae/ss_vae_M2.py`` scores MNIST
    (``dist.Bernoulli(loc, validate_args=False)``, "a relaxed Bernoulli value").

    A cross-entropy, not a density on [0, 1]: it lacks the continuous Bernoulli's normaliser
    (Loaiza-Ganem & Cunningham 2019), so an ELBO built on it trains but bounds nothing.
    Its support is the unit interval, so that the lab's data checks take grey pixels;
    its samples are binary.

    >>> logits, x = torch.randn(3, 5), torch.rand(3, 5)
    >>> by_hand = (x * F.logsigmoid(logits) + (1 - x) * F.logsigmoid(-logits)).sum(-1)
    >>> torch.allclose(GreyCrossEntropy(logits).log_prob(x), by_hand, atol=1e-6)
    True
    """

    support = constraints.independent(constraints.unit_interval, 1)
    is_density = False  # importance sampling refuses it: log p(x) is not defined

    def __init__(self, logits: torch.Tensor, validate_args: bool | None = None):
        super().__init__(logits, validate_args=False)  # grey x is outside Bernoulli's support


def _bernoulli_sum(logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """Σ_d x_d l_d − softplus(l_d), the Bernoulli log-density summed over the last dimension,
    where no gradient is taken (evaluation).

    The same value as the cross-entropy (to float rounding) in about three quarters of its
    time on the CPU: ``binary_cross_entropy_with_logits`` goes through ``log_sigmoid``,
    torch's slowest elementwise kernel here, and materialises the (K, N, D) broadcast of x.
    Here x·l is a batched matrix-vector product over the data points when x is (N, D)
    under K particles of logits (K, N, D), and softplus is one pass. With gradients the
    cross-entropy stays: its fused backward is the faster one."""
    if value.dim() == 2 and logits.dim() > 2 and logits.shape[-2:] == value.shape:
        dot = torch.einsum("...nd,nd->...n", logits, value)  # (K, N), x never broadcast
    else:
        dot = (logits * value).sum(-1)  # (..., N)
    return dot - F.softplus(logits).sum(-1)


class DiagNormal(dist.Independent):
    """Normal(loc, diag(scale²)) over the last dimension, i.e. ``Normal(loc, scale).to_event(1)``.

    >>> loc, scale, z = torch.randn(4, 3), torch.rand(4, 3) + 0.5, torch.randn(2, 4, 3)
    >>> reference = dist.Normal(loc, scale).to_event(1).log_prob(z)
    >>> torch.allclose(DiagNormal(loc, scale).log_prob(z), reference)
    True
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, validate_args: bool | None = None,
                 *, standard: bool = False):
        super().__init__(dist.Normal(loc, scale, validate_args=validate_args), 1,
                         validate_args=validate_args)
        self._loc, self._scale = loc, scale  # unexpanded, for log_prob and KL
        self._standard = standard  # the caller promises loc = 0, scale = 1

    def expand(self, batch_shape, _instance=None) -> DiagNormal:
        new = DiagNormal.__new__(DiagNormal)
        shape = torch.Size(batch_shape) + self.event_shape
        dist.Independent.__init__(new, self.base_dist.expand(shape), 1, validate_args=False)
        new._validate_args = self.base_dist._validate_args
        new._loc, new._scale, new._standard = self._loc, self._scale, self._standard
        return new

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        const = 0.5 * value.shape[-1] * math.log(2 * math.pi)
        if self._standard:
            return (-0.5 * value.pow(2).sum(-1) - const).expand(shape)
        z = (value - self._loc) / self._scale  # (..., d), the only full-size work
        return (-0.5 * z.pow(2).sum(-1) - self._scale.log().sum(-1) - const).expand(shape)


@register_kl(DiagNormal, DiagNormal)
def _kl_diag_normal(p: DiagNormal, q: DiagNormal) -> torch.Tensor:
    """KL(p || q) summed over the event, on unexpanded parameters; the textbook
    0.5 Σ (σ² + μ² − 1) − Σ log σ when q is the standard normal."""
    if q._standard:
        kl = 0.5 * (p._scale.pow(2) + p._loc.pow(2) - 1).sum(-1) - p._scale.log().sum(-1)
    else:
        var_ratio = (p._scale / q._scale).pow(2)
        t1 = ((p._loc - q._loc) / q._scale).pow(2)
        kl = 0.5 * (var_ratio + t1 - 1 - var_ratio.log()).sum(-1)
    return kl.expand(torch.broadcast_shapes(p.batch_shape, q.batch_shape))


class DiagNormalMixture(dist.MixtureSameFamily):
    """Σ_c π_c N(z; μ_c, diag σ_c²) over vectors: ``MixtureSameFamily(Categorical(logits),
    DiagNormal(loc, scale))`` with ``loc`` and ``scale`` of shape (C, d), whose ``log_prob``
    never forms the (..., C, d) tensor of every point against every component.

    The quadratic forms Σ_j (z_j − μ_cj)² / σ_cj² are expanded into two matrix products,
    (z²) Λᵀ − 2 z (μ Λ)ᵀ + Σ_j μ_cj² Λ_cj with Λ = 1/σ², computed in float64: the terms are
    large when scales are small (1/σ² ~ 10⁴), and their difference must be exact to the
    last nat. With K particles of N points and C = 500 components (the VampPrior) the
    direct form would hold K·N·C·d numbers; this one holds K·N·C.

    >>> logits, loc, scale = torch.randn(4), torch.randn(4, 3), torch.rand(4, 3) + 0.1
    >>> z = torch.randn(5, 2, 3)
    >>> reference = dist.MixtureSameFamily(dist.Categorical(logits=logits),
    ...                                    dist.Normal(loc, scale).to_event(1)).log_prob(z)
    >>> torch.allclose(DiagNormalMixture(logits, loc, scale).log_prob(z), reference)
    True
    """

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor,
                 validate_args: bool | None = None):
        super().__init__(dist.Categorical(logits=logits, validate_args=validate_args),
                         DiagNormal(loc, scale, validate_args=validate_args),
                         validate_args=validate_args)

    @property
    def support(self):
        """Real vectors, said as the components say it (torch wraps it in a mixture
        constraint that compares unequal to the guides' supports)."""
        return self.component_distribution.support

    def expand(self, batch_shape, _instance=None) -> DiagNormalMixture:
        new = self._get_checked_instance(DiagNormalMixture, _instance)
        return super().expand(batch_shape, _instance=new)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        comp = self.component_distribution  # its loc and scale stay unexpanded, (C, d)
        loc, scale = torch.broadcast_tensors(comp._loc, comp._scale)
        logits = self.mixture_distribution.logits  # (*batch, C)
        if loc.dim() != 2:  # batched components: the direct form
            return super().log_prob(value)
        loc, prec = loc.double(), scale.double().pow(-2)  # (C, d) each
        z = value.double()  # (..., d)
        quad = (z * z) @ prec.T - 2 * z @ (loc * prec).T + (loc * loc * prec).sum(-1)  # (..., C)
        log_norm = -scale.double().log().sum(-1) - 0.5 * value.shape[-1] * math.log(2 * math.pi)
        log_mix = torch.log_softmax(logits.double(), -1)  # (*batch, C)
        lp = torch.logsumexp(log_mix + log_norm - 0.5 * quad, -1)  # (..., *batch)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        return lp.to(value.dtype).expand(shape)
