"""Anomaly scores and their metrics: the metrics against pair counts and threshold scans
written here, each score against a closed form on the linear-Gaussian oracle or a toy whose
answer is known."""

import itertools
import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import MultivariateNormal, kl_divergence

from guides import make_guide
from inference.anomaly import (
    anomaly_auroc,
    anomaly_scores,
    auprc,
    auroc,
    bootstrap,
    entropy_estimate,
    fpr_at_tpr,
    ood_metrics,
)


def brute_force_auroc(scores_in, scores_out) -> float:
    """P(out > in) + ½ P(out = in), over all pairs."""
    wins = sum(1.0 if o > i else 0.5 if o == i else 0.0
               for i, o in itertools.product(scores_in.tolist(), scores_out.tolist()))
    return wins / (len(scores_in) * len(scores_out))


def scan_average_precision(scores_in, scores_out) -> float:
    """Σ over distinct thresholds t (descending) of (recall(t) − recall(t⁺)) · precision(t)."""
    s_in, s_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    total, last_recall = 0.0, 0.0
    for t in sorted(set(np.concatenate([s_in, s_out])), reverse=True):
        tp, fp = (s_out >= t).sum(), (s_in >= t).sum()
        recall = tp / len(s_out)
        total += (recall - last_recall) * tp / (tp + fp)
        last_recall = recall
    return total


def scan_fpr95(scores_in, scores_out) -> float:
    """FPR at the highest threshold that flags at least 95% of the out-set."""
    s_in, s_out = np.asarray(scores_in, float), np.asarray(scores_out, float)
    for t in sorted(set(np.concatenate([s_in, s_out])), reverse=True):
        if (s_out >= t).mean() >= 0.95:
            return float((s_in >= t).mean())
    raise AssertionError("unreachable: the lowest threshold flags everything")


@pytest.mark.parametrize("seed", range(5))
def test_metrics_match_pair_counts_and_threshold_scans_with_ties(seed):
    g = torch.Generator().manual_seed(seed)
    scores_in = torch.randint(0, 6, (37,), generator=g).double()  # many ties, within and across
    scores_out = torch.randint(2, 9, (23,), generator=g).double()
    assert auroc(scores_in, scores_out) == pytest.approx(
        brute_force_auroc(scores_in, scores_out), abs=1e-12)
    assert auprc(scores_in, scores_out) == pytest.approx(
        scan_average_precision(scores_in, scores_out), abs=1e-12)
    assert fpr_at_tpr(scores_in, scores_out) == pytest.approx(
        scan_fpr95(scores_in, scores_out), abs=1e-12)
    continuous_in, continuous_out = torch.randn(50, generator=g), torch.randn(41, generator=g)
    m = ood_metrics(continuous_in, continuous_out + 0.8)
    assert m["auroc"] == pytest.approx(brute_force_auroc(continuous_in, continuous_out + 0.8))
    assert m["auprc"] == pytest.approx(scan_average_precision(continuous_in,
                                                              continuous_out + 0.8))
    assert m["fpr95"] == pytest.approx(scan_fpr95(continuous_in, continuous_out + 0.8))


def test_metrics_extremes_symmetry_and_bad_input():
    a, b = torch.arange(5.0), torch.arange(5.0) + 10
    assert ood_metrics(a, b) == {"auroc": 1.0, "auprc": 1.0, "fpr95": 0.0}
    assert auroc(b, a) == 0.0 and fpr_at_tpr(b, a) == 1.0
    assert auroc(a, a) == 0.5  # identical sets: every pair a tie or balanced
    x, y = torch.randn(50), torch.randn(40) + 0.7
    assert auroc(x, y) + auroc(y, x) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.tensor([]), y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        auprc(torch.tensor([0.0, math.nan]), y)


def test_auroc_of_two_gaussians_and_its_bootstrap_error_match_closed_forms():
    """AUROC = Φ(δ/√2) for unit Gaussians δ apart; the bootstrap error agrees with Hanley &
    McNeil's (1982) standard error, SE² = [A(1−A) + (n−1)(Q1−A²) + (n−1)(Q2−A²)] / n²."""
    g = torch.Generator().manual_seed(0)
    n = 300
    scores_in, scores_out = torch.randn(n, generator=g), torch.randn(n, generator=g) + 1.0
    exact = torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(1.0 / 2**0.5)).item()  # 0.760
    a = auroc(scores_in, scores_out)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    hanley = math.sqrt((a * (1 - a) + (n - 1) * (q1 - a * a) + (n - 1) * (q2 - a * a)) / n**2)
    assert a == pytest.approx(exact, abs=3 * hanley)
    se = bootstrap(scores_in, scores_out, rounds=200, seed=1)
    assert se["auroc"] == pytest.approx(hanley, rel=0.2)
    assert se == bootstrap(scores_in, scores_out, rounds=200, seed=1)  # seeded
    assert 0 < se["auprc"] < 0.05 and 0 < se["fpr95"] < 0.1


def test_nll_scores_are_minus_log_px_and_flag_off_model_data(linear_model):
    """On the linear-Gaussian oracle with its exact posterior as the guide, the scores are
    −log p(x) exactly, and points far from the model's data score higher."""
    model = linear_model
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(model)
    with torch.no_grad():
        inliers = model.marginal().sample((200,))
    outliers = inliers[:150] + 4.0 * torch.randn(150, 6, dtype=torch.float64)
    scores = anomaly_scores(model, guide, inliers, num_samples=8)
    assert scores.shape == (200,)
    torch.testing.assert_close(scores, -model.marginal().log_prob(inliers).detach(),
                               atol=1e-10, rtol=0)
    result = anomaly_auroc(model, guide, inliers, outliers, num_samples=8)
    exact_out = -model.marginal().log_prob(outliers).detach()
    assert result.auroc == pytest.approx(auroc(scores, exact_out), abs=1e-12)
    assert result.fpr95 == pytest.approx(fpr_at_tpr(scores, exact_out), abs=1e-12)
    assert result.auroc > 0.95


def test_typicality_flags_data_too_likely_to_be_typical(linear_model):
    """The mode of p(x) is the likeliest point there is, and no sample looks like it:
    −log p(x) calls it the most normal of all (AUROC 0); typicality flags it. In d = 6
    dimensions −log p(x) = c + ½ χ²₆ with c = −log p(mode), so a single example's test
    flags the mode above an inlier with probability P(χ²₆ < 4 (Ĥ − c)); batches of 10 flag
    it every time. Ĥ estimates the entropy of p(x), c + 3, in closed form."""
    from scipy.stats import chi2

    from inference.anomaly import typicality_batches

    model = linear_model
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(model)
    marginal = model.marginal()
    with torch.no_grad():
        held_out, inliers = marginal.sample((4000,)), marginal.sample((500,))
        mode = marginal.loc.expand(500, 6).clone()
    entropy = entropy_estimate(model, guide, held_out, num_samples=4)
    se = (-marginal.log_prob(held_out)).std().item() / math.sqrt(4000)
    assert entropy == pytest.approx(marginal.entropy().item(), abs=4 * se)
    nll = anomaly_auroc(model, guide, inliers, mode, num_samples=4)
    typical = anomaly_auroc(model, guide, inliers, mode, score="typicality",
                            entropy=entropy, num_samples=4)
    c = -marginal.log_prob(marginal.loc).item()
    expected = chi2.cdf(4 * (entropy - c), df=6)  # ≈ P(χ²₆ < 12) = 0.938
    assert nll.auroc == 0.0
    assert typical.auroc == pytest.approx(expected, abs=3 * math.sqrt(expected * (1 - expected)
                                                                        / 500))
    torch.testing.assert_close(typical.scores_in, (nll.scores_in - entropy).abs())
    batched_in = typicality_batches(nll.scores_in, entropy, 10)
    batched_mode = typicality_batches(nll.scores_out, entropy, 10)
    assert batched_in.shape == batched_mode.shape == (50,)
    assert auroc(batched_in, batched_mode) == 1.0
    order = torch.randperm(500, generator=torch.Generator().manual_seed(0))
    first = nll.scores_in[order[:10]].mean()
    assert batched_in[0].item() == pytest.approx(abs(first.item() - entropy), abs=1e-12)


def test_ratio_is_the_difference_of_two_exact_log_evidences(linear_model):
    """With exact guides, the ratio score is −log p(x) + log p₀(x), both in closed form."""
    from models import make_model

    background = make_model("linear_gaussian", x_dim=6, z_dim=2, init_noise=1.5).double()
    bg_guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(
        background)
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(
        linear_model)
    with torch.no_grad():
        x = linear_model.marginal().sample((7,))
        exact = (background.marginal().log_prob(x) - linear_model.marginal().log_prob(x))
    scores = anomaly_scores(linear_model, guide, x, score="ratio", num_samples=4,
                            background=(background, bg_guide))
    torch.testing.assert_close(scores, exact, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="background pair"):
        anomaly_scores(linear_model, guide, x, score="ratio")
    with pytest.raises(ValueError, match="unknown anomaly score 'likelihood'"):
        anomaly_scores(linear_model, guide, x, score="likelihood")


def _amortized_and_best(model, guide, x):
    """(q(z | x) of the guide, the best Gaussian of the guide's family, p(z | x))."""
    post = model.posterior(x)
    with torch.no_grad():
        loc = x @ guide.weight.T + guide.bias  # (N, d)
        if guide.covariance == "full":
            return MultivariateNormal(loc, scale_tril=guide.scale_tril), post, post
        q = MultivariateNormal(loc, scale_tril=torch.diag(guide.scale))
        precision = torch.linalg.inv(post.covariance_matrix[0])
        best = MultivariateNormal(post.loc, scale_tril=torch.diag(precision.diagonal().rsqrt()))
        return q, best, post


def _log_weight_moments(model, q, x, analytic_kl: bool, draws: int = 20000):
    """Mean and sd over z ~ q of the regret's ELBO estimator on the linear-Gaussian model,
    (N,): log p(x | z) − KL(q || p(z)) where the KL is closed-form (a diagonal guide against
    the N(0, I) prior), else log p(x, z) − log q(z)."""
    with torch.no_grad():
        z = q.sample((draws,))  # (S, N, d)
        log_lik = dist.Normal(z @ model.weight.T + model.bias, model.noise).log_prob(x).sum(-1)
        if analytic_kl:
            prior = MultivariateNormal(torch.zeros(2, dtype=x.dtype), torch.eye(2, dtype=x.dtype))
            log_w = log_lik - kl_divergence(q, prior)
        else:
            log_w = log_lik + dist.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
    return log_w.mean(0), log_w.std(0)  # (N,) each


@pytest.mark.parametrize("covariance", [pytest.param("full", marks=pytest.mark.slow),
                                        "diagonal"])
def test_regret_is_the_kl_gap_to_the_best_member_of_the_family(linear_model, covariance):
    """Per example, ELBO(q) = log p(x) − KL(q || p(z | x)), so the regret of an amortized q
    is KL(q || p(z|x)) − KL(q* || p(z|x)), q* the family's best: the exact posterior for a
    full-covariance Gaussian, the diagonal Gaussian with the posterior's mean and the inverse
    diagonal of its precision for a diagonal one (closed forms)."""
    from inference.anomaly import likelihood_regret

    model = linear_model
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2, covariance=covariance).double()
    guide.set_posterior(model)
    with torch.no_grad():  # a poor amortized guide: wrong weights, offset, wrong spread
        guide.weight.add_(0.3 * torch.randn_like(guide.weight))
        guide.bias.add_(0.5)
        if covariance == "full":
            guide.scale_tril = torch.tensor([[0.5, 0.0], [0.3, 0.9]], dtype=torch.float64)
        else:
            guide.scale = torch.tensor([0.5, 0.9], dtype=torch.float64)
        x = model.marginal().sample((5,))
    before = {k: v.clone() for k, v in guide.state_dict().items()}
    r = likelihood_regret(model, guide, x, steps=200, lr=0.1, particles=8, eval_particles=4096)
    q, best, post = _amortized_and_best(model, guide, x)
    assert r.regret.shape == r.elbo_amortized.shape == r.elbo_optimized.shape == (5,)
    log_px = model.marginal().log_prob(x).detach()
    # both ELBOs are 4096-draw Monte Carlo means: their errors are sd / 64, the sd of the
    # estimator written in plain torch, on 20,000 draws of each q
    analytic = covariance == "diagonal"
    mean_q, sd_q = _log_weight_moments(model, q, x, analytic)
    mean_best, sd_best = _log_weight_moments(model, best, x, analytic)
    target_q, target_best = log_px - kl_divergence(q, post), log_px - kl_divergence(best, post)
    assert ((mean_q - target_q).abs() < 6 * sd_q / 20000**0.5).all()  # the reference itself
    assert ((mean_best - target_best).abs() < 6 * sd_best / 20000**0.5 + 1e-9).all()
    se_q, se_best = sd_q / 64, sd_best / 64
    exact = target_best - target_q  # KL(q || p(z|x)) − KL(q* || p(z|x)), (N,)
    assert exact.min() > 2  # the guide is poor: the test is not of a zero
    assert ((r.elbo_amortized - target_q).abs() < 4 * se_q).all()
    assert ((r.elbo_optimized - target_best).abs() < 4 * se_best + 0.01).all()
    assert ((r.regret - exact).abs() < 4 * (se_q + se_best) + 0.01).all()
    assert all(torch.equal(before[k], v) for k, v in guide.state_dict().items())
    assert all(p.grad is None for p in [*guide.parameters(), *model.parameters()])


def test_regret_of_the_exact_posterior_is_zero_and_is_reproducible(linear_model):
    from inference.anomaly import likelihood_regret

    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(linear_model)
    with torch.no_grad():
        x = linear_model.marginal().sample((6,))
    r = likelihood_regret(linear_model, guide, x, steps=30, lr=0.02, particles=4,
                          eval_particles=256, batch_size=4)
    # at the exact posterior every log w equals log p(x): the amortized ELBO has no error,
    # and the optimization only drifts around it, by its gradient noise
    torch.testing.assert_close(r.elbo_amortized, linear_model.marginal().log_prob(x).detach(),
                               atol=1e-10, rtol=0)
    assert (r.regret.abs() < 0.03).all()  # 256 draws of a slightly moved q: MC error
    again = likelihood_regret(linear_model, guide, x, steps=30, lr=0.02, particles=4,
                              eval_particles=256, batch_size=4)
    assert torch.equal(r.regret, again.regret)
    zero_steps = likelihood_regret(linear_model, guide, x, steps=0, eval_particles=16)
    torch.testing.assert_close(zero_steps.regret, torch.zeros(6, dtype=torch.float64),
                               atol=1e-10, rtol=0)


def test_rebuilt_distributions_have_the_guides_densities():
    """Offsets of zero rebuild each family exactly; the offsets' shapes are per example."""
    from inference.anomaly.regret import _per_example_shape, distribution_parameters, rebuild
    from models.distributions import DiagNormal

    loc, scale = torch.randn(4, 3), torch.rand(4, 3) + 0.5
    tril = torch.linalg.cholesky(torch.eye(3) + 0.3 * torch.ones(3, 3))
    value = torch.randn(2, 4, 3)
    for fn in (DiagNormal(loc, scale), dist.Normal(loc, scale).to_event(1),
               dist.MultivariateNormal(loc, scale_tril=tril), dist.Normal(loc, scale)):
        params = distribution_parameters(fn)
        same = rebuild(fn, {k: v for k, (v, _) in params.items()})
        torch.testing.assert_close(same.log_prob(value), fn.log_prob(value))
    shapes = {k: _per_example_shape(fn, v, c) for fn in [dist.MultivariateNormal(
        loc, scale_tril=tril)] for k, (v, c) in distribution_parameters(fn).items()}
    assert shapes == {"loc": (4, 3), "scale_tril": (4, 3, 3)}
