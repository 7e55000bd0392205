"""Every objective and evaluator against plain torch on the same draws.

For three pairs (linear-Gaussian with a shared guide scale, the MLP pair, a two-latent
linear-Gaussian chain; float64, N = 5 distinct points) and K ∈ {1, 3}, the lab's value and
every parameter's gradient must equal the formulas of ``reference_pairs`` evaluated on the
same standard-normal draws, to float64 rounding. The fast path (a captured graph) goes
through the same comparisons as the eager one.
"""

import math

import pyro
import pytest
import torch
from reference_pairs import PAIRS, Reference, bernoulli_lp, normal_lp

from guides import make_guide
from inference.capture import Captured
from inference.evaluate import elbo_terms, evaluate_elbo
from inference.handlers import BetaMessenger
from inference.impute import conditional_log_likelihood
from inference.marginal import importance_sample, iw_log_likelihood
from inference.objectives import IWAE, STL, DReG, MeanFieldELBO, ParticleELBO
from inference.semisupervised import SemiSupervisedELBO
from inference.train import parameters
from models import make_model

OBJECTIVES = {"particle": ParticleELBO, "meanfield": MeanFieldELBO, "iwae": IWAE,
              "stl": STL, "dreg": DReG}
SEED = 17


@pytest.fixture(params=sorted(PAIRS))
def ref(request) -> Reference:
    return PAIRS[request.param]()


def close(got, want):
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def grads(loss, params):
    out = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, out, strict=True)]


def by_hand(ref: Reference, name: str, k: int, beta: float = 1.0):
    """(value, gradients) of objective ``name`` at K = k, from the formulas."""
    model_params, guide_params = list(ref.model.parameters()), list(ref.guide.parameters())
    z = ref.draw(ref.eps(k, SEED), ref.x)
    log_w = ref.log_w(z, beta=beta)  # (K, N)
    if name == "particle":
        loss = -log_w.sum() / k
    elif name == "meanfield":
        loss = -(ref.log_lik(z) - beta * ref.kl(z, ref.x)).sum() / k
    else:
        loss = -(torch.logsumexp(log_w, 0) - math.log(k)).sum()
    if name not in ("stl", "dreg"):
        return loss, grads(loss, model_params + guide_params)
    w = torch.softmax(log_w.detach(), 0)  # w̃: (K, N)
    power = 2 if name == "dreg" else 1
    frozen = ref.log_w(z, frozen=True, beta=beta)  # log q with the guide's parameters stopped
    return loss, (grads(-(w * log_w).sum(), model_params)
                  + grads(-(w**power * frozen).sum(), guide_params))


def ours(ref, loss_fn, *, beta: float | None = None):
    """(value, gradients) of ``loss_fn(model, guide, x, y)`` on the reference draws."""
    params = parameters(ref.model, ref.guide)
    pyro.set_rng_seed(SEED)
    with pyro.validation_enabled(False):  # as fit's hot loop runs (capture needs it off)
        if beta is None:
            loss = loss_fn(ref.model, ref.guide, ref.x, None)
        else:
            with BetaMessenger(beta):
                loss = loss_fn(ref.model, ref.guide, ref.x, None)
    return loss, grads(loss, params)


def assert_same(got, want):
    (value, g), (ref_value, ref_g) = got, want
    close(value, ref_value)
    assert len(g) == len(ref_g)
    for a, b in zip(g, ref_g, strict=True):
        close(a, b)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_objective_value_and_every_gradient_equal_the_formulas(ref, name, k):
    objective = OBJECTIVES[name](num_particles=k)
    assert_same(ours(ref, objective.differentiable_loss), by_hand(ref, name, k))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", ["stl", "dreg"])
def test_stop_gradient_objectives_take_a_guide_that_is_not_a_module(ref, name, k):
    """A plain function has no parameters to detach: the score term is cancelled instead."""
    objective = OBJECTIVES[name](num_particles=k)
    as_function = lambda m, g, x, y: objective.differentiable_loss(  # noqa: E731
        m, lambda x, y=None: g(x, y), x, y)
    assert_same(ours(ref, as_function), by_hand(ref, name, k))


@pytest.mark.parametrize("beta", [0.5, 3.0])
@pytest.mark.parametrize("name", ["particle", "meanfield", "iwae", "dreg"])
def test_beta_handler_scales_the_latent_terms_in_every_objective(ref, name, beta):
    objective = OBJECTIVES[name](num_particles=3)
    assert_same(ours(ref, objective.differentiable_loss, beta=beta),
                by_hand(ref, name, 3, beta=beta))


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_captured_objectives_equal_the_formulas(ref, name, k):
    """The fast path's graph, where it captures, gives the same draws, value and gradients.
    STL's and DReG's stop-gradients (``detach``) and DReG's per-particle gradient scaling (a
    custom backward) do not survive a forward-only ATen graph: the gradient check refuses
    their capture, and they run eagerly."""
    objective = OBJECTIVES[name](num_particles=k)
    live = BetaMessenger(torch.tensor(2.0, dtype=torch.float64))
    captured = Captured(objective.differentiable_loss, ref.model, ref.guide, capture_after=1,
                        live=[(live, "beta")])
    with live:
        assert_same(ours(ref, lambda m, g, x, y: captured(x, y)), by_hand(ref, name, k, beta=2.0))
    refused = name in ("stl", "dreg")
    assert (None in captured.graphs.values()) == refused, captured.note
    if refused:
        assert "different gradients" in captured.note


@pytest.mark.parametrize("fast", [False, "compile"])
@pytest.mark.parametrize("k", [1, 3])
def test_importance_sampling_equals_the_formulas(ref, k, fast):
    pyro.set_rng_seed(SEED)
    s = importance_sample(ref.model, ref.guide, ref.x, num_samples=k, return_log_weights=True,
                          fast=fast)
    with torch.no_grad():
        z = ref.draw(ref.eps(k, SEED), ref.x)
        log_w = ref.log_w(z)  # (K, N)
        lse = torch.logsumexp(log_w, 0)
    close(s.log_weights, log_w)
    close(s.log_likelihood, lse - math.log(k))
    close(s.elbo, log_w.mean(0))
    close(s.log_lik, ref.log_lik(z).mean(0))
    close(s.ess, (2 * lse - torch.logsumexp(2 * log_w, 0)).exp())
    assert set(s.latent_means) == set(ref.dims)
    for site, value in z.items():
        close(s.latent_means[site], value.mean(0))
    pyro.set_rng_seed(SEED)
    close(iw_log_likelihood(ref.model, ref.guide, ref.x, num_samples=k, fast=fast),
          lse - math.log(k))


def test_elbo_terms_and_evaluate_elbo_equal_the_formulas(ref):
    with torch.no_grad():
        z = ref.draw(ref.eps(1, SEED), ref.x)
        log_w, log_lik = ref.log_w(z), ref.log_lik(z)  # (1, N)
    pyro.set_rng_seed(SEED)
    terms = elbo_terms(ref.model, ref.guide, ref.x)
    assert terms["elbo"] == pytest.approx(log_w.mean().item(), rel=1e-12)
    assert terms["reconstruction"] == pytest.approx(log_lik.mean().item(), rel=1e-12)
    assert terms["kl"] == pytest.approx((log_lik - log_w).mean().item(), rel=1e-10)
    pyro.set_rng_seed(SEED)
    assert evaluate_elbo(ref.model, ref.guide, ref.x) == pytest.approx(log_w.mean().item(),
                                                                       rel=1e-12)


@pytest.mark.parametrize("proposal", ["filled", "mixture"])
@pytest.mark.parametrize("k", [1, 3])
def test_conditional_log_likelihood_equals_the_formulas(ref, proposal, k):
    d = ref.x.shape[1]
    observed = torch.arange(d) % 3 != 1  # every third pixel missing
    filled = torch.where(observed, ref.x, torch.zeros(()))
    views = [filled] if proposal == "filled" else [ref.x, filled]
    pyro.set_rng_seed(SEED)
    got, ess = conditional_log_likelihood(ref.model, ref.guide, ref.x, observed,
                                          num_samples=k * len(views), proposal=proposal,
                                          return_ess=True)
    torch.manual_seed(SEED)
    log_w, log_mis = [], []
    with torch.no_grad():
        for view in views:  # k particles from each view's q(z | view), in this order
            z = ref.draw(ref.eps(k), view)
            log_q = torch.logsumexp(torch.stack([ref.log_q(z, v, False) for v in views]), 0)
            pixels = ref.pixel_lik(z)  # (k, N, D)
            log_w.append((pixels * observed).sum(-1) + ref.log_prior(z) - log_q
                         + math.log(len(views)))
            log_mis.append((pixels * ~observed).sum(-1))
        log_w, log_mis = torch.cat(log_w), torch.cat(log_mis)
    close(got, torch.logsumexp(log_w + log_mis, 0) - torch.logsumexp(log_w, 0))
    close(ess, (2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)).exp())


def m2_pair():
    torch.manual_seed(0)
    sizes = {"x_dim": 12, "z_dim": 3, "hidden": (8,), "num_classes": 4}
    model = make_model("conditional_mlp", **sizes).double()
    guide = make_guide("m2", **sizes).double()
    x = torch.bernoulli(torch.full((5, 12), 0.4, dtype=torch.float64),
                        generator=torch.Generator().manual_seed(2))
    return model, guide, x, torch.tensor([0, 3, 1, 2, 0])


def m2_log_w(model, guide, x, onehot, eps):
    """log p(x | z, y) + log p(y) + log p(z) − log q(z | x, y) with z = μ + σ ε, (..., N)."""
    loc, scale = guide.z_given_xy(torch.cat([x.expand(*onehot.shape[:-1], -1), onehot], -1))
    z = loc + scale * eps
    logits = model.decoder(torch.cat([z, onehot], -1))
    log_py = (onehot * torch.log_softmax(model.class_logits, -1)).sum(-1)
    return (bernoulli_lp(x, logits).sum(-1) + log_py
            + normal_lp(z, torch.zeros(3, dtype=x.dtype), torch.ones(3, dtype=x.dtype))
            - normal_lp(z, loc, scale))


@pytest.mark.parametrize("weight", [1.0, 0.25])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("labelled", [True, False])
def test_m2_objective_equals_the_formulas(labelled, k, weight):
    """Labelled: −w·ELBO(x, y) + α·(−log q(y | x)); unlabelled: −Σ_y q(y | x) (ELBO(x, y) −
    log q(y | x)), the sum over classes exact, w not applied; K sequential particles averaged."""
    model, guide, x, y = m2_pair()
    alpha, classes = 46.0, 4
    params = parameters(model, guide)
    pyro.set_rng_seed(SEED)
    objective = SemiSupervisedELBO(alpha=alpha, num_particles=k, labelled_weight=weight)
    loss = objective.differentiable_loss(model, guide, x, y if labelled else None)
    got = grads(loss, params)
    torch.manual_seed(SEED)
    log_qy = torch.log_softmax(guide.classifier(x), -1)  # (N, C)
    want = 0.0
    for _ in range(k):
        if labelled:
            onehot = torch.nn.functional.one_hot(y, classes).double()  # (N, C)
            log_w = m2_log_w(model, guide, x, onehot, torch.randn(5, 3, dtype=torch.float64))
            want = want - weight * log_w.sum() / k
        else:
            onehot = torch.eye(classes, dtype=torch.float64).unsqueeze(1).expand(-1, 5, -1)
            log_w = m2_log_w(model, guide, x, onehot,
                             torch.randn(classes, 5, 3, dtype=torch.float64))  # (C, N)
            q = log_qy.T.exp()  # (C, N)
            want = want - (q * (log_w - log_qy.T)).sum() / k
    if labelled:
        want = want - alpha * log_qy.gather(1, y.unsqueeze(1)).sum()
    assert_same((loss, got), (want, grads(want, params)))
