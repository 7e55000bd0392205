"""Training objectives as Pyro ELBOs, computed from per-point log-weights.

Each objective draws K particles per data point at once (a ``pyro.plate`` of particles),
reads log w = log p(x, z) − log q(z | x) of every (particle, point) from Pyro traces
(:func:`inference.traces.log_weights`) and reduces it to a scalar. They offer ``loss``,
``loss_and_grads`` and ``differentiable_loss``, so they work in ``pyro.infer.SVI``, in
:func:`inference.fit` and as a plain torch loss. ``differentiable_loss`` never reads a
value back to the host, so a training step makes no device synchronisation.

They need reparameterized guides (Normal-like latents): the gradient is pathwise, with no
score-function term. For discrete latents use Pyro's ``Trace_ELBO`` or ``TraceEnum_ELBO``.
"""

from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import ELBO
from torch.func import functional_call

from inference.programs import ParamsAsGiven
from inference.traces import log_weights, sample_sites, summed_log_prob


class DifferentiableELBO(ELBO):
    """Base class: an ELBO defined by its ``differentiable_loss``, from which ``loss`` and
    ``loss_and_grads`` follow; Pyro's per-particle ``_get_trace`` does not apply."""

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError(f"{type(self).__name__} computes its loss as a whole; "
                                  f"call loss, loss_and_grads or differentiable_loss")

    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return loss.item()


class LogWeightObjective(DifferentiableELBO):
    """Base class: an objective that is a function of the (K, N) log-weights (all K
    particles are drawn at once)."""

    analytic_kl = False

    def __init__(self, num_particles: int = 1, max_plate_nesting: int = 1,
                 retain_graph: bool | None = None):
        if not (isinstance(max_plate_nesting, int) and max_plate_nesting >= 1):
            raise ValueError(f"max_plate_nesting must be the number of plates of the model (an "
                             f"integer ≥ 1, the data plate), got {max_plate_nesting!r}")
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting,
                         vectorize_particles=True, retain_graph=retain_graph)
        # Pyro's ELBO adds one to max_plate_nesting for vectorized particles (K > 1); the
        # particle plate sits just left of the model's own plates whatever K is.
        self.particle_dim = -(max_plate_nesting + 1)

    def log_weights(self, model, guide, x, y=None) -> torch.Tensor:
        """log w (K, N) for K = ``num_particles`` reparameterized draws per point."""
        lw, _, guide_trace = log_weights(model, guide, x, y, self.num_particles,
                                         self.particle_dim, analytic_kl=self.analytic_kl)
        _check_reparameterized(type(self).__name__, guide_trace)
        return lw

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        """The loss (to minimize) from log w (K, N)."""
        raise NotImplementedError

    def differentiable_loss(self, model, guide, *args, **kwargs) -> torch.Tensor:
        return self.reduce(self.log_weights(model, guide, *args, **kwargs))


def _check_reparameterized(name: str, guide_trace) -> None:
    for site_name, site in sample_sites(guide_trace):
        if not site["fn"].has_rsample:
            raise ValueError(f"{name} needs reparameterized guide sites, but site "
                             f"{site_name!r} is {type(site['fn']).__name__}; use Pyro's "
                             f"Trace_ELBO or TraceEnum_ELBO for discrete latents")


class ParticleELBO(LogWeightObjective):
    """The ELBO averaged over K vectorized particles: −(1/K) Σ_k Σ_n log w_kn.

    For a reparameterized guide it is Pyro's ``Trace_ELBO(num_particles=K,
    vectorize_particles=True)``: same draws under the same seed, same value, same gradient.
    """

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return -log_w.sum() / log_w.shape[0]


class MeanFieldELBO(ParticleELBO):
    """:class:`ParticleELBO` with KL(q || p) in closed form wherever torch knows it, as
    Pyro's ``TraceMeanField_ELBO``: log w_kn = log p(x_n | z_kn) − KL(q(z | x_n) || p(z))."""

    analytic_kl = True


def lean_equivalent(loss: ELBO) -> LogWeightObjective | None:
    """The objective of this module that computes exactly what ``loss`` computes, or None.

    Pyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` (one particle, or vectorized
    particles) map to :class:`ParticleELBO` and :class:`MeanFieldELBO`, which give the same
    values and gradients for reparameterized guides without Pyro's per-step bookkeeping and
    host reads. Objectives of this module map to themselves.
    """
    if isinstance(loss, LogWeightObjective):
        return loss
    from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

    lean = {Trace_ELBO: ParticleELBO, TraceMeanField_ELBO: MeanFieldELBO}.get(type(loss))
    if lean is None or (loss.num_particles > 1 and not loss.vectorize_particles):
        return None
    nesting = loss.max_plate_nesting  # Pyro added one for vectorized particles: undo it
    nesting = 1 if nesting == float("inf") else int(nesting) - (loss.num_particles > 1)
    return lean(num_particles=loss.num_particles, max_plate_nesting=max(1, nesting),
                retain_graph=loss.retain_graph)


class IWAE(LogWeightObjective):
    """The importance-weighted bound (Burda, Grosse & Salakhutdinov 2016, eq. 8):
    −Σ_n log (1/K) Σ_k w_kn. K = 1 is the ELBO; it tightens towards log p(x) as K grows.

    Unlike Pyro's ``RenyiELBO(alpha=0)``, which bounds the whole minibatch jointly, the
    bound is per data point, and it has a ``differentiable_loss``.
    """

    def reduce(self, log_w: torch.Tensor) -> torch.Tensor:
        return -(torch.logsumexp(log_w, 0) - math.log(log_w.shape[0])).sum()


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient of a sample site's value by the
    per-(particle, point) weights ``holder[0]`` of shape (K, N), set after the forward pass.

    The value has shape (K, 1, ..., 1, N, *event): the particle dim leftmost, the data dim
    just left of the ``event_dim`` event dims, size-1 dims between (plates the model does
    not use). The weights are laid out on exactly those dims; any other layout raises
    instead of broadcasting (a (K, N, 1, 1) weight against a (K, 1, N, d) value would
    broadcast to (K, N, N, d) and autograd would silently sum it back).
    """

    @staticmethod
    def forward(ctx, z, holder, event_dim):
        ctx.holder, ctx.event_dim = holder, event_dim
        return z.view_as(z)

    @staticmethod
    def backward(ctx, grad):
        w = ctx.holder[0]  # (K, N)
        batch = grad.dim() - ctx.event_dim
        if batch < 2 or grad.shape[0] != w.shape[0] or grad.shape[batch - 1] != w.shape[1]:
            raise RuntimeError(f"per-particle weights {tuple(w.shape)} do not fit a sample "
                               f"value of shape {tuple(grad.shape)} with {ctx.event_dim} "
                               f"event dims; expected (K, ..., N, *event)")
        shape = (w.shape[0],) + (1,) * (batch - 2) + (w.shape[1],) + (1,) * ctx.event_dim
        return grad * w.reshape(shape), None, None


def _detached_module(module: torch.nn.Module):
    """``module`` called with its parameters detached: same values, no gradient to them."""
    state = {**{n: p.detach() for n, p in module.named_parameters()},
             **dict(module.named_buffers())}

    def call(*args):
        with ParamsAsGiven():  # the detached copies stay out of Pyro's global store
            return functional_call(module, state, args)

    return call


class _StopGradientIWAE(IWAE):
    """IWAE bound whose guide gradient flows only through the reparameterized z.

    log q is read from the guide replayed on the draws with its parameters stopped, so it
    carries no score term ∂log q_φ(z)/∂φ. A guide that is a ``torch.nn.Module`` is replayed
    with its parameters detached (``functional_call``). Any other Pyro guide (a method, a
    function with ``pyro.param``) keeps its parameters, and the score term is cancelled by
    adding log q_φ(z̄) − ⌊log q_φ(z̄)⌋, z̄ = ⌊z⌋ (⌊·⌋: stop-gradient), from one more replay on
    the detached draws. For ``power`` 2 (DReG) the gradient of every draw z_kn is
    multiplied by w̃_kn on its way back, through log p and log q alike.
    """

    power = 1  # the guide's gradient weights each particle by w̃_k ** power
    # Why the fast path runs it eagerly: a graph of the forward pass replays detach as a
    # plain alias and drops _ScaleGrad's backward (Captured's gradient check sees both).
    capture_refusal = "a captured forward graph drops its stop-gradients"

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        k, dim, n = self.num_particles, self.particle_dim, len(x)
        with pyro.plate("particles", k, dim=dim):
            g = poutine.trace(guide).get_trace(x, y)
        _check_reparameterized(type(self).__name__, g)
        holder = [None]  # per-particle weights for the z gradient, filled in below
        scaled, fixed = g.copy(), g.copy()
        for name, site in sample_sites(g):
            value = site["value"]
            if self.power > 1 and k > 1:  # one particle: w̃ = 1
                value = _ScaleGrad.apply(value, holder, len(site["fn"].event_shape))
            scaled.nodes[name] = {**site, "value": value}
            fixed.nodes[name] = {**site, "value": site["value"].detach()}
        replayed = lambda fn, tr: poutine.trace(poutine.replay(fn, trace=tr)).get_trace(x, y)  # noqa: E731
        with pyro.plate("particles", k, dim=dim):
            m = replayed(model, scaled)
            if isinstance(guide, torch.nn.Module):
                log_q = summed_log_prob(replayed(_detached_module(guide), scaled), dim, k, n)
            else:
                q = g if self.power == 1 or k == 1 else replayed(guide, scaled)
                score = summed_log_prob(replayed(guide, fixed), dim, k, n)  # log q_φ(z̄)
                log_q = summed_log_prob(q, dim, k, n) - score + score.detach()
        log_w = summed_log_prob(m, dim, k, n) - log_q  # (K, N); log w, no score term
        w = torch.softmax(log_w.detach(), 0)  # w̃, (K, N)
        holder[0] = w.pow(self.power - 1)
        surrogate = -(w * log_w).sum()
        value = self.reduce(log_w.detach())
        return value + surrogate - surrogate.detach()


class STL(_StopGradientIWAE):
    """IWAE bound with the "sticking the landing" gradient (Roeder, Wu & Duvenaud 2017):
    the guide's gradient keeps only the pathwise term Σ_k w̃_k ∂log w_k/∂z_k ∂z_k/∂φ, the
    score term ∂log q/∂φ is dropped. Same value as :class:`IWAE`; the guide's gradient
    vanishes when q is the exact posterior."""

    power = 1


class DReG(_StopGradientIWAE):
    """IWAE bound with the doubly reparameterized gradient (Tucker, Lawson, Gu & Maddison
    2018): the guide's gradient is Σ_k w̃_k² ∂log w_k/∂z_k ∂z_k/∂φ (unbiased, and its
    signal-to-noise ratio does not decay with K), the model's the usual Σ_k w̃_k ∂log w_k/∂θ.
    Same value as :class:`IWAE`."""

    power = 2

