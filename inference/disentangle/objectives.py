"""Disentangling objectives as Pyro ELBOs: β-TCVAE, DIP-VAE-I and -II, capacity annealing.

Each is a :class:`~inference.objectives.DifferentiableELBO` computed from traces of the pair
on a whole minibatch (the total correlation and the covariance of the encoder's means are
properties of the batch, not of one point), so ``fit`` and ``vae-train --loss`` train them
like any other objective; they run eagerly (the fast path covers the per-point objectives).
Losses are sums over the batch, as the lab's other objectives are: a per-batch penalty of
disentanglement_lib (a mean over the batch) is multiplied by the batch size, which keeps its
weight relative to the per-point ELBO. They need one diagonal Gaussian latent site (any
name) and one particle.

FactorVAE (Kim & Mnih 2018) is not here: its discriminator has its own parameters and
optimizer, while ``fit`` optimizes, checkpoints and restores the pair's parameters only
(docs/guide/disentanglement.md).
"""

from __future__ import annotations

import math

import torch

from inference.disentangle.gaussian import (
    check_unscaled,
    latent_site,
    log_mss_weights,
    log_normal,
    normal_parts,
    pairwise_log_q,
)
from inference.objectives import DifferentiableELBO
from inference.traces import log_weights, particle_traces, per_point
from inference.validate import non_negative_float, positive_float, positive_int


class _BatchObjective(DifferentiableELBO):
    """One particle, the data plate at dim -1: what every objective here shares."""

    def __init__(self):
        super().__init__(num_particles=1, max_plate_nesting=1, vectorize_particles=False)
        self.particle_dim = -2

    def _mean_field(self, model, guide, x, y):
        """(log p(x | z) (N,), KL(q(z | x) || p(z)) (N,), loc, scale (N, d)): the ELBO's
        terms with the KL in closed form (as disentanglement_lib's VAEs compute it)."""
        log_w, log_lik, g = log_weights(model, guide, x, y, 1, self.particle_dim,
                                        analytic_kl=True)
        name = latent_site(g)
        check_unscaled(g.nodes[name], type(self).__name__)
        loc, scale = normal_parts(g.nodes[name]["fn"], name)
        return log_lik[0], (log_lik - log_w)[0], loc, scale


class BetaTCVAE(_BatchObjective):
    """β-TCVAE (Chen, Li, Grosse & Duvenaud 2018, "Isolating sources of disentanglement in
    variational autoencoders"): the ELBO's KL term split into index-code mutual information,
    total correlation and dimension-wise KL, weighted α, β, γ::

        loss = −Σ_i [log p(x_i | z_i) − α (log q(z_i | x_i) − log q(z_i))
                     − β (log q(z_i) − Σ_j log q(z_ij)) − γ (Σ_j log q(z_ij) − log p(z_i))]

    with z_i ~ q(z | x_i), q(z) the aggregate posterior over the ``dataset_size`` training
    points, estimated from the minibatch: ``"mss"`` (minibatch stratified sampling,
    unbiased for q(z); :func:`~.gaussian.log_mss_weights`) or ``"mws"`` (minibatch weighted
    sampling, log q(z_i) ≈ logsumexp_j log q(z_i | x_j) − log(N B)). At α = β = γ = 1 the
    estimates cancel and the loss is the one-sample ELBO's.
    """

    def __init__(self, beta: float, dataset_size: int, *, alpha: float = 1.0,
                 gamma: float = 1.0, estimator: str = "mss"):
        super().__init__()
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            non_negative_float(name, value)
        positive_int("dataset_size", dataset_size)
        if estimator not in ("mss", "mws"):
            raise ValueError(f"estimator must be 'mss' (stratified) or 'mws' (weighted), got "
                             f"{estimator!r}")
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.dataset_size, self.estimator = dataset_size, estimator
        self.objective_name = f"β-TCVAE objective (β={beta:g}, {estimator})"

    def terms(self, model, guide, x, y=None) -> dict[str, torch.Tensor]:
        """Per point (N,): log p(x | z), log q(z | x), log q(z), Σ_j log q(z_j), log p(z)."""
        g, m = particle_traces(model, guide, x, y, 1, self.particle_dim)
        name = latent_site(g)
        site = g.nodes[name]
        check_unscaled(site, type(self).__name__)
        z = site["value"]  # (N, d), reparameterized
        loc, scale = normal_parts(site["fn"], name)
        prior_loc, prior_scale = normal_parts(m.nodes[name]["fn"], name)
        m.compute_log_prob()
        log_lik = sum(per_point(s["log_prob"], self.particle_dim, 1, len(x))[0]
                      for s in m.nodes.values() if s["type"] == "sample" and s["is_observed"])
        mat = pairwise_log_q(z, loc, scale)  # (N, N, d): log q(z_i,d | x_j)
        b = len(x)
        if self.estimator == "mss":
            w = log_mss_weights(b, self.dataset_size, device=z.device, dtype=z.dtype)  # (N, N)
            log_qz = torch.logsumexp(mat.sum(-1) + w, 1)
            log_prod = torch.logsumexp(mat + w.unsqueeze(-1), 1).sum(-1)
        else:
            if b > self.dataset_size:
                raise ValueError(f"a batch of {b} points is larger than dataset_size "
                                 f"{self.dataset_size}")
            log_nb = math.log(b * self.dataset_size)
            log_qz = torch.logsumexp(mat.sum(-1), 1) - log_nb
            log_prod = (torch.logsumexp(mat, 1) - log_nb).sum(-1)
        return {"log_lik": log_lik, "log_qzx": torch.diagonal(mat).sum(0),
                "log_qz": log_qz, "log_prod_qzj": log_prod,
                "log_pz": log_normal(z, prior_loc, prior_scale).sum(-1)}

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        t = self.terms(model, guide, x, y)
        mi = t["log_qzx"] - t["log_qz"]
        tc = t["log_qz"] - t["log_prod_qzj"]
        dim_kl = t["log_prod_qzj"] - t["log_pz"]
        return -(t["log_lik"] - self.alpha * mi - self.beta * tc - self.gamma * dim_kl).sum()


def dip_penalty(cov: torch.Tensor, lambda_od: float, lambda_d: float) -> torch.Tensor:
    """λ_od Σ_{i≠j} C_ij² + λ_d Σ_i (C_ii − 1)² (Kumar et al. 2018, eq. 6)."""
    diag = torch.diagonal(cov)
    off = cov - torch.diag_embed(diag)
    return lambda_od * (off ** 2).sum() + lambda_d * ((diag - 1) ** 2).sum()


def covariance(loc: torch.Tensor) -> torch.Tensor:
    """Cov over the batch of the rows of ``loc`` (N, d): E[μ μᵀ] − E[μ] E[μ]ᵀ, (d, d)."""
    mean = loc.mean(0)
    return (loc.unsqueeze(-1) * loc.unsqueeze(-2)).mean(0) - mean.unsqueeze(-1) * mean


class DIPVAE(_BatchObjective):
    """DIP-VAE (Kumar, Sattigeri & Balakrishnan 2018, "Variational inference of disentangled
    latent concepts from unlabeled observations"): the ELBO (closed-form KL) plus a penalty
    pushing the covariance of the aggregate posterior towards the identity.

    ``kind="i"``: C = Cov_x[μ(x)], the covariance of the encoder's means over the batch;
    ``"ii"``: C = Cov_x[μ(x)] + E_x[diag σ²(x)], the covariance of q(z) itself. The penalty
    is ``dip_penalty(C, lambda_od, lambda_d)`` per point, so the batch's loss adds N times it.
    Defaults: λ_od = 10 with λ_d = 10 λ_od for DIP-VAE-I and λ_d = λ_od for DIP-VAE-II, the
    paper's choices.
    """

    def __init__(self, kind: str = "i", lambda_od: float = 10.0, lambda_d: float | None = None):
        super().__init__()
        if kind not in ("i", "ii"):
            raise ValueError(f"DIP-VAE kind must be 'i' or 'ii', got {kind!r}")
        non_negative_float("lambda_od", lambda_od)
        lambda_d = (10 * lambda_od if kind == "i" else lambda_od) if lambda_d is None else lambda_d
        non_negative_float("lambda_d", lambda_d)
        self.kind, self.lambda_od, self.lambda_d = kind, float(lambda_od), float(lambda_d)
        self.objective_name = f"DIP-VAE-{kind.upper()} objective (ELBO − penalty)"

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        log_lik, kl, loc, scale = self._mean_field(model, guide, x, y)
        cov = covariance(loc)  # (d, d)
        if self.kind == "ii":
            cov = cov + torch.diag_embed((scale ** 2).mean(0))
        return -(log_lik - kl).sum() + len(x) * dip_penalty(cov, self.lambda_od, self.lambda_d)


class AnnealedCapacity(_BatchObjective):
    """Capacity annealing (Burgess et al. 2018, "Understanding disentangling in β-VAE")::

        loss = −Σ_i log p(x_i | z_i) + γ N |mean_i KL(q(z | x_i) || p(z)) − C(t)|

    with the KL in closed form and C(t) = C_max · min(1, t / epochs) rising linearly over
    the first ``epochs`` epochs of training (t in epochs, fractional within one). ``fit``
    calls :meth:`set_progress` before every step; C is 0 until it does. Defaults: γ = 1000,
    C_max = 25 nats (the paper's dSprites setting) reached after 10 epochs.
    """

    def __init__(self, capacity: float = 25.0, gamma: float = 1000.0, epochs: float = 10.0):
        super().__init__()
        non_negative_float("capacity", capacity)
        non_negative_float("gamma", gamma)
        positive_float("epochs", epochs)
        self.capacity, self.gamma, self.epochs = float(capacity), float(gamma), float(epochs)
        self.progress = 0.0
        self.objective_name = (f"capacity objective (γ={gamma:g}, C up to {capacity:g} nats "
                               f"over {epochs:g} epochs)")

    def set_progress(self, epochs: float) -> None:
        """Training progress in epochs: sets C(t)."""
        self.progress = float(epochs)

    @property
    def target(self) -> float:
        """C(t), nats."""
        return self.capacity * min(1.0, self.progress / self.epochs)

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        log_lik, kl, _, _ = self._mean_field(model, guide, x, y)
        return -log_lik.sum() + self.gamma * len(x) * (kl.mean() - self.target).abs()


# vae-train --loss NAME: (class, fixed arguments, the options --loss-config may set)
LOSSES = {
    "betatc": (BetaTCVAE, {}, ("alpha", "gamma", "estimator")),
    "dip1": (DIPVAE, {"kind": "i"}, ("lambda_od", "lambda_d")),
    "dip2": (DIPVAE, {"kind": "ii"}, ("lambda_od", "lambda_d")),
    "capacity": (AnnealedCapacity, {}, ("capacity", "gamma", "epochs")),
}


def build_loss(name: str, *, beta: float = 1.0, dataset_size: int | None = None,
               options: dict | None = None, anneal: str = "none") -> DifferentiableELBO:
    """The objective ``vae-train --loss name`` trains with: β-TCVAE takes ``beta``
    (``--beta``) as its total-correlation weight; ``options`` (``--loss-config``) sets the
    others' weights. ``dataset_size``: the number of training points (β-TCVAE's estimate
    of q(z) needs it)."""
    cls, fixed, allowed = LOSSES[name]
    options = dict(options or {})
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name} has no option {unknown[0]!r}; its options (--loss-config)"
                         f" are {', '.join(allowed)}")
    if anneal != "none":
        raise ValueError(f"loss {name} weighs its own terms; --anneal does not apply to it"
                         + (" (capacity annealing: --loss capacity)" if name != "capacity"
                            else ""))
    if cls is BetaTCVAE:
        return cls(beta, dataset_size if dataset_size is not None else 10**9, **options)
    if beta != 1.0:
        raise ValueError(f"loss {name} has no β; set its weights with --loss-config "
                         f"(options {', '.join(allowed)})")
    return cls(**fixed, **options)
