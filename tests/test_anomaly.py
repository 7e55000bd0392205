"""Anomaly AUROC: the rank statistic against a pair count, the scores against the evidence."""

import itertools

import pytest
import torch

from guides import make_guide
from inference.anomaly import anomaly_auroc, anomaly_scores, auroc


def brute_force_auroc(scores_in, scores_out) -> float:
    """P(out > in) + ½ P(out = in), over all pairs."""
    wins = sum(1.0 if o > i else 0.5 if o == i else 0.0
               for i, o in itertools.product(scores_in.tolist(), scores_out.tolist()))
    return wins / (len(scores_in) * len(scores_out))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_counts_pairs_with_ties_as_half(seed):
    g = torch.Generator().manual_seed(seed)
    scores_in = torch.randint(0, 6, (37,), generator=g).float()  # many ties, within and across
    scores_out = torch.randint(2, 9, (23,), generator=g).float()
    assert auroc(scores_in, scores_out) == pytest.approx(brute_force_auroc(scores_in, scores_out),
                                                         abs=1e-12)


def test_auroc_extremes_and_symmetry():
    a, b = torch.arange(5.0), torch.arange(5.0) + 10
    assert auroc(a, b) == 1.0 and auroc(b, a) == 0.0
    assert auroc(a, a) == 0.5  # identical sets: every pair a tie or balanced
    x, y = torch.randn(50), torch.randn(40) + 0.7
    assert auroc(x, y) + auroc(y, x) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least one"):
        auroc(torch.tensor([]), y)


def test_auroc_of_two_gaussians_is_the_normal_cdf_of_the_separation():
    g = torch.Generator().manual_seed(0)
    scores_in, scores_out = torch.randn(4000, generator=g), torch.randn(4000, generator=g) + 1.0
    exact = torch.distributions.Normal(0.0, 1.0).cdf(torch.tensor(1.0 / 2**0.5)).item()  # 0.760
    assert auroc(scores_in, scores_out) == pytest.approx(exact, abs=0.015)


def test_scores_are_minus_log_px_and_flag_off_model_data(linear_model):
    """On the linear-Gaussian oracle with its exact posterior as the guide, the scores are
    −log p(x) exactly, and points far from the model's data score higher."""
    model = linear_model
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(model)
    with torch.no_grad():
        inliers = model.marginal().sample((200,))
    outliers = inliers[:150] + 4.0 * torch.randn(150, 6, dtype=torch.float64)
    scores = anomaly_scores(model, guide, inliers, num_samples=8)
    torch.testing.assert_close(scores, -model.marginal().log_prob(inliers).detach(),
                               atol=1e-10, rtol=0)
    result = anomaly_auroc(model, guide, inliers, outliers, num_samples=8)
    exact_out = -model.marginal().log_prob(outliers).detach()
    assert result.auroc == pytest.approx(auroc(scores, exact_out), abs=1e-12)
    assert result.auroc > 0.95
