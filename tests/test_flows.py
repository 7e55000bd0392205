"""Flow guides (iaf, spline): the Gaussian guide as a special case, log q by the change of
variables against plain torch and against autograd's Jacobian, scoring by inversion, the
moments, and every objective of the lab.

N = 5 distinct points, K = 3 particles, z of 4 dimensions, float64 where values are compared
to rounding.
"""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.nn import ConditionalAutoRegressiveNN
from torch.nn import functional as F

from guides import make_guide
from inference import capture, fit, iw_log_likelihood, score
from inference.latent import encode, encode_distribution
from inference.objectives import IWAE, STL, DReG, MeanFieldELBO, ParticleELBO
from models import make_model
from models.flows import MOMENT_DRAWS

K, N, D = 3, 5, 4
SMALL = {"z_dim": D, "hidden": (16,), "flow_hidden": (12,)}


def points(dtype=torch.float64):
    g = torch.Generator().manual_seed(2)
    return torch.bernoulli(torch.full((N, 784), 0.3), generator=g).to(dtype)


def trace(guide, x, seed=11, k=K):
    pyro.set_rng_seed(seed)
    with pyro.plate("particles", k, dim=-2):
        return poutine.trace(guide).get_trace(x)


def zero_steps(guide):
    for step in guide.flow:
        for p in step.nn.layers[-1].parameters():
            torch.nn.init.zeros_(p)
    return guide


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_zero_steps_of_the_affine_flow_are_the_gaussian_guide_exactly(steps):
    """stable=False, MADE outputs at zero: every step is the identity and the reversals
    compose to it, so the draws and log q are the gaussian_mlp guide's, bit for bit."""
    gaussian = make_guide("gaussian_mlp", z_dim=D, hidden=(16,)).double()
    flow = make_guide("iaf", **SMALL, steps=steps, stable=False).double()
    flow.load_state_dict(gaussian.state_dict(), strict=False)
    zero_steps(flow)
    x = points()
    g, f = trace(gaussian, x).nodes["z"], trace(flow, x).nodes["z"]
    assert f["value"].shape == (K, N, D)
    assert torch.equal(f["value"], g["value"])
    assert torch.equal(f["fn"].log_prob(f["value"]), g["fn"].log_prob(g["value"]))


def test_zero_stable_steps_scale_the_gaussian_by_sigmoid_2_per_step():
    """The stable update at zero is z_t = sigmoid(2) z_{t-1}: after T steps q is the Gaussian
    N(c μ, c² σ²) with c = sigmoid(2)^T, a closed form."""
    flow = zero_steps(make_guide("iaf", **SMALL, steps=3).double())
    x = points()
    node = trace(flow, x).nodes["z"]
    _, mu, sigma = flow.features(x)
    torch.manual_seed(11)
    eps = torch.randn(K, N, D, dtype=torch.float64)
    c = torch.sigmoid(torch.tensor(2.0, dtype=torch.float64)) ** 3
    torch.testing.assert_close(node["value"], c * (mu + sigma * eps))
    want = torch.distributions.Normal(c * mu, c * sigma).log_prob(node["value"]).sum(-1)
    torch.testing.assert_close(node["fn"].log_prob(node["value"]), want)


def iaf_by_hand(guide, x, eps):
    """z and log q(z | x) of the stable IAF, in plain torch: (K, N, D), (K, N)."""
    h, mu, sigma = guide.features(x)  # the encoder is the gaussian_mlp guide's
    z = mu + sigma * eps
    log_q = (-0.5 * eps.pow(2) - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
    for t, step in enumerate(guide.flow):
        if t:
            z = z.flip(-1)
        first, last = step.nn.layers
        inputs = torch.cat([h.expand(*z.shape[:-1], h.shape[-1]), z], -1)  # [context, z]
        a = F.softplus(inputs @ (first.weight * first.mask).T + first.bias)
        out = a @ (last.weight * last.mask).T + last.bias  # (K, N, 2 D): means, then logits
        m, s = out[..., :D], out[..., D:]
        sig = torch.sigmoid(s + 2.0)
        z = sig * z + (1 - sig) * m
        log_q = log_q - sig.log().sum(-1)
    return (z.flip(-1) if len(guide.flow) % 2 == 0 else z), log_q


def test_iaf_draws_and_log_q_match_the_change_of_variables_by_hand():
    guide = make_guide("iaf", **SMALL, steps=2).double()
    x = points()
    node = trace(guide, x).nodes["z"]
    torch.manual_seed(11)
    z, log_q = iaf_by_hand(guide, x, torch.randn(K, N, D, dtype=torch.float64))
    torch.testing.assert_close(node["value"], z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(node["fn"].log_prob(node["value"]), log_q, rtol=1e-12,
                               atol=1e-12)
    assert log_q.shape == (K, N) and log_q.std() > 0.1  # distinct points and particles


@pytest.mark.parametrize("name", ["iaf", "spline"])
def test_log_q_is_the_base_density_minus_the_log_jacobian_from_autograd(name):
    """log q(z) = log q_0(z_0) − log |det ∂z/∂z_0|, the Jacobian taken by autograd through
    the whole flow, point by point (independent of Pyro's log-determinants)."""
    guide = make_guide(name, **SMALL, steps=2).double()
    x = points()
    h, mu, sigma = guide.features(x)
    torch.manual_seed(5)
    z0 = mu + sigma * torch.randn(N, D, dtype=torch.float64) * 1.5
    want = []
    for n in range(N):
        def flow(v, n=n):
            for t in guide.transforms(h[n:n + 1]):
                v = t(v)
            return v

        jac = torch.autograd.functional.jacobian(flow, z0[n:n + 1]).reshape(D, D)
        base = torch.distributions.Normal(mu[n], sigma[n]).log_prob(z0[n]).sum()
        want.append(base - torch.linalg.slogdet(jac)[1])
    q = guide.posterior(x)
    z = torch.cat([t for t in [z0]])
    for t in q.transforms:
        z = t(z)
    torch.testing.assert_close(q.log_prob(z), torch.stack(want), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["iaf", "spline"])
def test_scoring_a_z_the_flow_did_not_draw_inverts_it_exactly(name):
    """What STL and DReG do (they replay the guide): log q of a copy of the draws goes
    through the flow's inverse, z_dim passes per step, and gives the cached value."""
    guide = make_guide(name, **SMALL, steps=2).double()
    x = points()
    node = trace(guide, x).nodes["z"]
    cached = node["fn"].log_prob(node["value"])
    fresh = guide.posterior(x).log_prob(node["value"].clone())
    torch.testing.assert_close(fresh, cached, rtol=1e-9, atol=1e-9)


def test_context_made_equals_pyros_made_on_particles():
    made = make_guide("iaf", **SMALL, steps=1).flow[0].nn
    z, h = torch.randn(K, N, D), torch.randn(N, 16)
    for mine, pyros in zip(made(z, h), ConditionalAutoRegressiveNN.forward(made, z, h),
                           strict=True):
        assert mine.shape == (K, N, D)
        torch.testing.assert_close(mine, pyros, rtol=1e-5, atol=1e-6)


def test_moments_are_fixed_draws_and_leave_the_random_stream_alone():
    guide = make_guide("iaf", **SMALL, steps=2).double()
    x = points()
    q = guide.posterior(x)
    z = q.rsample()
    lp = q.log_prob(z)
    state = torch.get_rng_state()
    mean, var = q.mean, q.variance
    assert torch.equal(torch.get_rng_state(), state)
    assert mean.shape == var.shape == (N, D)
    assert torch.equal(guide.posterior(x).mean, mean)  # the same x gives the same numbers
    torch.testing.assert_close(q.log_prob(z), lp)  # the draw's cache survived
    # by hand, on the same draws: eps from a generator seeded 0, in chunks of 32
    g = torch.Generator().manual_seed(0)
    base = q.base_dist.base_dist  # Normal(loc, scale), (N, D)
    eps = torch.cat([torch.randn((32, N, D), generator=g, dtype=torch.float64)
                     for _ in range(MOMENT_DRAWS // 32)])
    z = base.loc + base.scale * eps  # (256, N, D)
    for t in q.transforms:
        z = t(z)
    torch.testing.assert_close(mean, z.mean(0), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var, z.var(0), rtol=1e-10, atol=1e-12)
    # and against 20,000 fresh draws, within 5 standard errors of a 256-draw estimate
    many = guide.posterior(x).sample((20000,))  # (20000, N, D)
    centred = many - many.mean(0)
    se_mean = many.std(0) / math.sqrt(MOMENT_DRAWS)
    se_var = ((centred**4).mean(0) - many.var(0) ** 2).sqrt() / math.sqrt(MOMENT_DRAWS)
    assert ((mean - many.mean(0)).abs() < 5 * se_mean).all()
    assert ((var - many.var(0)).abs() < 5 * se_var).all()
    loc, scale = encode_distribution(guide, x)
    torch.testing.assert_close(loc, mean)
    torch.testing.assert_close(encode(guide, x), mean)


@pytest.mark.parametrize("name", ["iaf", "spline"])
def test_every_objective_trains_a_flow_guide(name, binary_x):
    """Value and gradients are finite for every objective; IWAE, STL and DReG share their
    value; ParticleELBO is Pyro's Trace_ELBO; with no closed-form KL for a flow, the
    mean-field ELBO is the Monte Carlo one, in value and gradient."""
    model = make_model("bernoulli_mlp", z_dim=D, hidden=(16,))
    guide = make_guide(name, **SMALL)
    params = list(model.parameters()) + list(guide.parameters())
    x = binary_x[:N]
    values = {}
    for loss in (Trace_ELBO(), TraceMeanField_ELBO(), ParticleELBO(num_particles=K),
                 MeanFieldELBO(num_particles=K), IWAE(num_particles=K),
                 STL(num_particles=K), DReG(num_particles=K)):
        pyro.set_rng_seed(3)
        value = loss.differentiable_loss(model, guide, x)
        grads = torch.autograd.grad(value, params, allow_unused=True)
        assert torch.isfinite(value)
        assert all(g is None or torch.isfinite(g).all() for g in grads)
        values[type(loss).__name__] = (value.detach(), [g for g in grads if g is not None])
    assert values["IWAE"][0] == pytest.approx(values["STL"][0].item(), rel=1e-6)
    assert values["IWAE"][0] == pytest.approx(values["DReG"][0].item(), rel=1e-6)
    for a, b in (("Trace_ELBO", "TraceMeanField_ELBO"), ("ParticleELBO", "MeanFieldELBO")):
        assert values[a][0] == pytest.approx(values[b][0].item(), rel=1e-6)
        for ga, gb in zip(values[a][1], values[b][1], strict=True):
            torch.testing.assert_close(ga, gb)


@pytest.mark.parametrize("name", ["iaf", "spline"])
def test_the_fast_path_captures_a_flow_guide_and_changes_no_number(name, binary_x,
                                                                    monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 2)  # capture within this short run
    results = {}
    for fast in (False, "auto"):
        pyro.set_rng_seed(0)
        model = make_model("bernoulli_mlp", z_dim=D, hidden=(16,))
        guide = make_guide(name, **SMALL)
        history = fit(model, guide, binary_x, valid=binary_x[:16], epochs=2, batch_size=16,
                      fast=fast, progress=False)
        results[fast] = history, torch.cat([p.detach().flatten() for m in (model, guide)
                                            for p in m.parameters()])
    (plain, p_params), (quick, q_params) = results[False], results["auto"]
    assert "graph captured for batch shape (16, 784)" in quick.fast_path
    assert quick.objective == pytest.approx(plain.objective, rel=1e-5)
    torch.testing.assert_close(q_params, p_params, rtol=1e-4, atol=1e-5)


def test_evaluators_take_a_flow_guide(binary_x):
    model = make_model("bernoulli_mlp", z_dim=D, hidden=(16,))
    guide = make_guide("iaf", **SMALL)
    pyro.set_rng_seed(4)
    log_px = iw_log_likelihood(model, guide, binary_x[:N], num_samples=64)
    pyro.set_rng_seed(4)
    summary, per_point = score(model, guide, binary_x[:N], num_samples=64)
    assert log_px.shape == (N,) and torch.isfinite(log_px).all()
    assert summary["nll"] == pytest.approx(-log_px.mean().item(), rel=1e-6)
    assert 0 < summary["active_units"]["z"] <= D
