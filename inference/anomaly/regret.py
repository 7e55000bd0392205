"""Likelihood regret (Xiao, Yan & Amit, "Likelihood Regret: An Out-of-Distribution Detection
Score For Variational Auto-encoder", NeurIPS 2020).

An amortized guide is fitted to the training data: on data like it, optimizing the
variational distribution of one example alone gains little ELBO; on data unlike it, the
encoder's answer is poor and the gain is large. Per example,

    regret(x) = max_λ ELBO(x; q_λ) − ELBO(x; q_φ(· | x)),

where q_φ(· | x) is the amortized guide and q_λ the same family with free parameters for
this one example, initialized at the guide's output.

*The guide's output*, for any pair: at every latent site the guide's distribution is read
from its trace, and its parameters (``arg_constraints``: a Normal's loc and scale, a
MultivariateNormal's loc and scale_tril...) are mapped to unconstrained space
(``torch.distributions.transform_to``, as ``PyroParam`` does). λ adds a per-example
offset δ to each of them, zero at the start, so q_λ begins exactly at the guide. For a
diagonal Gaussian MLP encoder this optimizes each example's (loc, log-scale) (the paper
optimizes the encoder's weights for one example, which reaches no other distributions than
these); for a hierarchical guide each site keeps its dependence on the draws above it,
shifted by the example's offset.

The offsets of a batch of examples are optimized together by Adam on the sum of their
ELBOs: each example's offsets reach only its own ELBO and Adam is per coordinate, so this
is each example optimized alone, vectorized. The learning rate decays from ``lr`` to 0 on
a cosine over the ``steps`` (Loshchilov & Hutter 2017), so the last iterate settles rather
than hovering at the gradient noise's scale. Both ELBOs of the score use the same
estimator, ``eval_particles`` draws of z per example with the KL in closed form where torch
knows it, and the same random numbers (common random numbers), so their difference carries
little Monte Carlo noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import transform_to

from inference.marginal import batch_seed, pair_and_data
from inference.programs import PairError
from inference.traces import log_weights, particle_dim
from inference.validate import non_negative_int, positive_float, positive_int
from models.distributions import DiagNormal


def distribution_parameters(fn) -> dict[str, tuple[torch.Tensor, object]]:
    """{name: (value, constraint)} of the parameters that rebuild ``fn`` (:func:`rebuild`)."""
    if isinstance(fn, DiagNormal):
        return {"loc": (fn._loc, fn.base_dist.arg_constraints["loc"]),
                "scale": (fn._scale, fn.base_dist.arg_constraints["scale"])}
    if isinstance(fn, dist.Independent):
        return distribution_parameters(fn.base_dist)
    if isinstance(fn, torch.distributions.MultivariateNormal):
        return {"loc": (fn.loc, fn.arg_constraints["loc"]),
                "scale_tril": (fn._unbroadcasted_scale_tril,
                               fn.arg_constraints["scale_tril"])}
    constraints = getattr(fn, "arg_constraints", None)
    if not constraints or not fn.has_rsample:
        raise PairError(f"likelihood regret optimizes the parameters of the guide's "
                        f"distributions, and cannot for {type(fn).__name__}: it needs a "
                        f"reparameterized distribution with arg_constraints (Normal, "
                        f"MultivariateNormal, Independent of them...)")
    return {name: (getattr(fn, name), c) for name, c in constraints.items()}


def rebuild(fn, values: dict[str, torch.Tensor]):
    """A distribution of ``fn``'s family with the parameters ``values``."""
    if isinstance(fn, DiagNormal):
        return DiagNormal(values["loc"], values["scale"])
    if isinstance(fn, dist.Independent):
        return dist.Independent(rebuild(fn.base_dist, values), fn.reinterpreted_batch_ndims)
    try:
        return type(fn)(**values)
    except (TypeError, ValueError) as e:
        raise PairError(f"likelihood regret cannot rebuild the guide's {type(fn).__name__} "
                        f"from its parameters {', '.join(values)} ({e})") from None


def _per_example_shape(fn, value: torch.Tensor, constraint) -> torch.Size:
    """The shape of one offset: the distribution's batch shape, then the parameter's own
    event dims (a MultivariateNormal's scale_tril: (N, d, d))."""
    base = fn
    while isinstance(base, dist.Independent):
        base = base.base_dist
    event = value.shape[value.dim() - constraint.event_dim:] if constraint.event_dim else ()
    return base.batch_shape + torch.Size(event)


class ShiftParameters(Messenger):
    """Adds per-example offsets, in unconstrained space, to the parameters of the guide's
    distribution at the latent sites listed in ``offsets`` ({site: {parameter: (N, ...)}}).

    With ``offsets`` empty (``record=True``), it records for every reparameterized latent site
    the offsets' shapes instead, into ``self.shapes``."""

    def __init__(self, offsets: dict[str, dict[str, torch.Tensor]], record: bool = False):
        super().__init__()
        self.offsets, self.record = offsets, record
        self.shapes: dict[str, dict[str, torch.Size]] = {}

    def _pyro_sample(self, msg) -> None:
        if site_is_subsample(msg) or msg["is_observed"] or msg["fn"].support.is_discrete:
            return
        fn, name = msg["fn"], msg["name"]
        params = distribution_parameters(fn)
        if self.record:
            self.shapes[name] = {p: _per_example_shape(fn, v, c) for p, (v, c) in params.items()}
            return
        shifts = self.offsets.get(name)
        if shifts is None:
            return
        values = {}
        for p, (v, c) in params.items():
            t = transform_to(c)
            values[p] = t(t.inv(v) + shifts[p])
        msg["fn"] = rebuild(fn, values)


@dataclass
class Regret:
    """Per-example tensors (N,): the score, and the two ELBOs it is the difference of."""

    regret: torch.Tensor
    elbo_amortized: torch.Tensor
    elbo_optimized: torch.Tensor


def _elbo(model, guide, x, y, k: int, dim: int) -> torch.Tensor:
    """ELBO estimate per example (N,): the mean of log w over ``k`` draws, KL in closed form
    where torch has it."""
    log_w, _, _ = log_weights(model, guide, x, y, k, dim, analytic_kl=True)  # (k, N)
    return log_w.mean(0)


def _zero_offsets(model, guide, x, y) -> dict[str, dict[str, torch.Tensor]]:
    recorder = ShiftParameters({}, record=True)
    with torch.no_grad(), torch.random.fork_rng(devices=[x.device] if x.is_cuda else []):
        pyro.poutine.trace(recorder(guide)).get_trace(x, y)
    if not recorder.shapes:
        raise PairError("likelihood regret needs a guide with a continuous latent site; this "
                        "guide samples none")
    return {site: {p: torch.zeros(shape, dtype=x.dtype, device=x.device, requires_grad=True)
                   for p, shape in shapes.items()}
            for site, shapes in recorder.shapes.items()}


def _batch_regret(model, guide, x, y, *, steps, lr, particles, eval_particles, dim, seed):
    offsets = _zero_offsets(model, guide, x, y)
    flat = [t for shifts in offsets.values() for t in shifts.values()]
    shifted = ShiftParameters(offsets)(guide)
    optimizer = torch.optim.Adam(flat, lr=lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    for _ in range(steps):
        loss = -_elbo(model, shifted, x, y, particles, dim).sum()
        grads = torch.autograd.grad(loss, flat)  # the pair's own parameters get no gradient
        for t, g in zip(flat, grads, strict=True):
            t.grad = g
        optimizer.step()
        decay.step()
    with torch.no_grad():
        torch.manual_seed(seed)
        before = _elbo(model, guide, x, y, eval_particles, dim)
        torch.manual_seed(seed)  # the same draws of ε for both: common random numbers
        after = _elbo(model, shifted, x, y, eval_particles, dim)
    return before, after


def likelihood_regret(model, guide, x, *, y=None, steps: int = 100, lr: float = 0.05,
                      particles: int = 1, eval_particles: int = 100,
                      batch_size: int = 500, seed: int = 0) -> Regret:
    """Likelihood regret per example (module docstring): ``steps`` Adam steps on each
    example's offsets, the rate decaying from ``lr`` to 0, ``particles`` draws per step;
    both ELBOs from ``eval_particles`` common draws. Examples go through in batches of
    ``batch_size``, each seeded from ``seed`` and its first index
    (:func:`~inference.marginal.batch_seed`), so an example's score does not depend on the
    batches before it. The pair is not changed.

    ``x`` is a tensor (N, D) (``y`` its labels) or anything :func:`~inference.fit` takes.
    """
    non_negative_int("steps", steps)
    positive_float("lr", lr)
    for name, value in (("particles", particles), ("eval_particles", eval_particles),
                        ("batch_size", batch_size)):
        positive_int(name, value)
    model, guide, data, device = pair_and_data(model, guide, x, y,
                                               empty="likelihood regret needs at least one "
                                                     "example")
    dim = particle_dim(model, guide, *data.head(1))
    parts = []
    fork = torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])
    with fork, pyro.validation_enabled(False):
        for i, (xb, yb) in enumerate(data.batches(batch_size)):
            s = batch_seed(seed, i * batch_size)
            torch.manual_seed(s)
            parts.append(_batch_regret(model, guide, xb, yb, steps=steps, lr=lr,
                                       particles=particles, eval_particles=eval_particles,
                                       dim=dim, seed=s))
    before = torch.cat([b for b, _ in parts]).detach()
    after = torch.cat([a for _, a in parts]).detach()
    return Regret(regret=after - before, elbo_amortized=before, elbo_optimized=after)


__all__ = ["Regret", "ShiftParameters", "distribution_parameters", "likelihood_regret",
           "rebuild"]
