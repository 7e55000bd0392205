"""β-TCVAE, DIP-VAE and capacity annealing: values and gradients against plain torch on the
same draws, the stratified estimator's unbiasedness, fit's progress hook, vae-train."""

import itertools
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
import torch.nn.functional as F
from pyro.infer import Trace_ELBO

from guides import make_guide
from inference import fit
from inference.config import RunConfig
from inference.disentangle.gaussian import log_mss_weights, pairwise_log_q
from inference.disentangle.objectives import DIPVAE, AnnealedCapacity, BetaTCVAE
from models import make_model

N, D, Z = 5, 12, 3


def pair():
    torch.manual_seed(0)
    small = {"x_dim": D, "z_dim": Z, "hidden": (8,)}
    return make_model("bernoulli_mlp", **small), make_guide("gaussian_mlp", **small)


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((N, D), 0.4), generator=torch.Generator().manual_seed(2))


def by_hand(model, guide, x, seed=1):
    """The guide's draw z (N, Z) under ``seed``, its loc and scale from the networks, and
    log p(x | z) (N,): everything a reference needs, computed in plain torch."""
    pyro.set_rng_seed(seed)
    z_drawn = poutine.trace(guide).get_trace(x)
    z_drawn = z_drawn.nodes["z"]["value"].detach()
    loc, raw = guide.head(guide.trunk(x)).chunk(2, -1)
    scale = F.softplus(raw) + 1e-5
    z = loc + scale * ((z_drawn - loc) / scale).detach()  # the same draw, differentiable
    logits = model.decoder(z)
    log_lik = -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
    return z, loc, scale, log_lik


def normal_logpdf(v, m, s):
    return -0.5 * ((v - m) / s) ** 2 - torch.log(s) - 0.5 * math.log(2 * math.pi)


def grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


def seeded_loss(objective, model, guide, x, seed=1):
    pyro.set_rng_seed(seed)
    return objective.differentiable_loss(model, guide, x)


@pytest.mark.parametrize("estimator", ["mss", "mws"])
def test_beta_tcvae_matches_plain_torch(x, estimator):
    model, guide = pair()
    params = [*model.parameters(), *guide.parameters()]
    n_data, beta, alpha, gamma = 40, 4.0, 0.7, 1.3
    z, loc, scale, log_lik = by_hand(model, guide, x)
    rows = []
    for i in range(N):  # one draw at a time, log q(z_i | x_j) for every j written out
        lq = torch.stack([normal_logpdf(z[i], loc[j], scale[j]) for j in range(N)])  # (N, Z)
        if estimator == "mws":
            w = torch.full((N,), -math.log(N * n_data))
        else:  # own point 1/N, the next one (N − M)/(N M), the others 1/M, M = B − 1
            m = N - 1
            w = torch.full((N,), 1 / m)
            w[(i + 1) % N], w[i] = (n_data - m) / (n_data * m), 1 / n_data
            w = w.log()
        log_qz = torch.logsumexp(lq.sum(-1) + w, 0)
        log_prod = torch.logsumexp(lq + w[:, None], 0).sum()
        log_qzx = lq[i].sum()
        log_pz = normal_logpdf(z[i], torch.zeros(Z), torch.ones(Z)).sum()
        rows.append(log_lik[i] - alpha * (log_qzx - log_qz) - beta * (log_qz - log_prod)
                    - gamma * (log_prod - log_pz))
    reference = -torch.stack(rows).sum()
    objective = BetaTCVAE(beta, n_data, alpha=alpha, gamma=gamma, estimator=estimator)
    ours = seeded_loss(objective, model, guide, x)
    assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    for a, b in zip(grads(ours, params), grads(reference, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_beta_tcvae_with_unit_weights_is_the_elbo(x):
    model, guide = pair()
    params = [*model.parameters(), *guide.parameters()]
    elbo = seeded_loss(Trace_ELBO(), model, guide, x)
    for estimator in ("mss", "mws"):
        ours = seeded_loss(BetaTCVAE(1.0, 100, estimator=estimator), model, guide, x)
        assert ours.item() == pytest.approx(elbo.item(), rel=1e-6)
        for a, b in zip(grads(ours, params), grads(elbo, params), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_stratified_estimate_of_q_z_is_unbiased_over_batches():
    """Every ordered batch of B = 3 distinct points out of N = 6 that holds point i, each
    equally likely: the mean of q̂(z_i) is the aggregate posterior q(z_i) exactly."""
    torch.manual_seed(4)
    n, b = 6, 3
    loc, scale = torch.randn(n, 2, dtype=torch.float64), torch.rand(n, 2, dtype=torch.float64) + 0.5
    z = loc + scale * torch.randn(n, 2, dtype=torch.float64)
    w = log_mss_weights(b, n, dtype=torch.float64)
    assert torch.allclose(w.exp().sum(1), torch.ones(b, dtype=torch.float64))
    for i in range(n):
        exact = pairwise_log_q(z[i:i + 1], loc, scale).sum(-1).exp().mean()  # (1/N) Σ q(z_i|n)
        estimates = []
        for batch in itertools.permutations(range(n), b):
            if i in batch:
                r = batch.index(i)
                lq = pairwise_log_q(z[i:i + 1], loc[list(batch)], scale[list(batch)]).sum(-1)
                estimates.append(torch.logsumexp(lq[0] + w[r], 0).exp())
        assert torch.stack(estimates).mean().item() == pytest.approx(exact.item(), rel=1e-12)


def test_dip_vae_i_and_ii_match_plain_torch(x):
    model, guide = pair()
    params = [*model.parameters(), *guide.parameters()]
    z, loc, scale, log_lik = by_hand(model, guide, x)
    kl = (0.5 * (scale ** 2 + loc ** 2 - 1) - torch.log(scale)).sum(-1)  # closed form
    for kind, lod, ld in (("i", 3.0, 30.0), ("ii", 2.0, 5.0)):
        cov = torch.cov(loc.T, correction=0)  # (Z, Z), over the batch
        if kind == "ii":
            cov = cov + torch.diag((scale ** 2).mean(0))
        off = cov - torch.diag(torch.diagonal(cov))
        penalty = lod * (off ** 2).sum() + ld * ((torch.diagonal(cov) - 1) ** 2).sum()
        reference = -(log_lik - kl).sum() + N * penalty
        ours = seeded_loss(DIPVAE(kind, lambda_od=lod, lambda_d=ld), model, guide, x)
        assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
        for a, b in zip(grads(ours, params), grads(reference, params), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert DIPVAE("i").lambda_d == 100.0 and DIPVAE("ii").lambda_d == 10.0  # paper's ratios


def test_capacity_matches_plain_torch_and_follows_progress(x):
    model, guide = pair()
    params = [*model.parameters(), *guide.parameters()]
    z, loc, scale, log_lik = by_hand(model, guide, x)
    kl = (0.5 * (scale ** 2 + loc ** 2 - 1) - torch.log(scale)).sum(-1)
    objective = AnnealedCapacity(capacity=20.0, gamma=50.0, epochs=4.0)
    for progress, c in ((0.0, 0.0), (1.0, 5.0), (3.0, 15.0), (9.0, 20.0)):
        objective.set_progress(progress)
        assert objective.target == c
        reference = -log_lik.sum() + 50.0 * N * (kl.mean() - c).abs()
        ours = seeded_loss(objective, model, guide, x)
        assert ours.item() == pytest.approx(reference.item(), rel=1e-5)
    for a, b in zip(grads(ours, params), grads(reference, params), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


class Recording(AnnealedCapacity):
    def set_progress(self, epochs):
        self.seen = [*getattr(self, "seen", []), epochs]
        super().set_progress(epochs)


def test_fit_tells_the_objective_its_progress_and_names_it():
    model, guide = pair()
    data = torch.bernoulli(torch.full((40, D), 0.3))
    objective = Recording(capacity=5.0, epochs=2.0)
    history = fit(model, guide, data, loss=objective, epochs=2, batch_size=10, progress=False)
    assert objective.seen == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # before each step
    assert history.objective_name.startswith("capacity objective (γ=1000, C up to 5 nats")
    assert history.fast_path.startswith("off (Recording has no lean equivalent")


def test_objectives_refuse_what_they_cannot_do(x):
    model, guide = pair()
    with pytest.raises(ValueError, match="batch of 5 points is larger than the dataset size 3"):
        BetaTCVAE(2.0, 3).differentiable_loss(model, guide, x)
    with pytest.raises(ValueError, match="weighs its KL terms itself"):
        fit(model, guide, x, loss=BetaTCVAE(2.0, N), beta=2.0, epochs=1, progress=False)
    with pytest.raises(ValueError, match="estimator must be 'mss'"):
        BetaTCVAE(2.0, 10, estimator="exact")
    from inference.disentangle.gaussian import normal_parts
    with pytest.raises(ValueError, match="need a diagonal Normal"):
        normal_parts(pyro.distributions.Laplace(0.0, 1.0), "z")


def test_run_config_checks_the_loss_options():
    assert RunConfig(loss="betatc", beta=4.0, loss_config={"estimator": "mws"}).loss_config
    for kwargs, message in (
            ({"loss": "dip1", "beta": 4.0}, "loss dip1 has no β; set its weights"),
            ({"loss": "betatc", "anneal": "linear:2"}, "--anneal does not apply"),
            ({"loss": "capacity", "loss_config": {"alpha": 1}}, "no option 'alpha'"),
            ({"loss": "trace", "loss_config": {"alpha": 1}}, "loss .trace. does not take"),
            ({"loss": "iwae", "loss_config": {"num_particles": 2}}, "use its own flag"),
            ({"loss": "dip2", "loss_config": {"lambda_od": -1}}, "lambda_od must be")):
        with pytest.raises(ValueError, match=message):
            RunConfig(**kwargs)
