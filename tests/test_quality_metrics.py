"""Sample-quality metrics against oracles: closed forms, brute force, hand-worked sets."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from inference.quality import (
    class_coverage,
    frechet_distance,
    frechet_gaussians,
    gaussian_fit,
    knn_radii,
    precision_recall,
)


def random_gaussian(d: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.randn(d, d, generator=g, dtype=torch.float64)
    return torch.randn(d, generator=g, dtype=torch.float64), a @ a.T + 0.1 * torch.eye(d)


def scipy_frechet(m1, c1, m2, c2) -> float:
    """The FID reference code's formula, with scipy's Schur-based sqrtm of Σ₁Σ₂."""
    root = scipy.linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    return float(((m1 - m2) ** 2).sum() + np.trace(c1.numpy() + c2.numpy() - 2 * root))


def draw(mean, cov, n, g) -> torch.Tensor:
    return mean + torch.randn(n, len(mean), generator=g, dtype=torch.float64) @ \
        torch.linalg.cholesky(cov).T


@pytest.mark.parametrize("seed", range(4))
def test_frechet_gaussians_matches_scipy_sqrtm(seed):
    g = torch.Generator().manual_seed(seed)
    (m1, c1), (m2, c2) = random_gaussian(6, g), random_gaussian(6, g)
    assert frechet_gaussians(m1, c1, m2, c2) == pytest.approx(scipy_frechet(m1, c1, m2, c2),
                                                              rel=1e-9)


def test_frechet_gaussians_closed_forms():
    # commuting (diagonal) covariances: Σ (μ₁ − μ₂)² + Σ (√a − √b)², singular ones included
    f64 = {"dtype": torch.float64}
    a, b = torch.tensor([0.0, 1.0, 2.0, 9.0], **f64), torch.tensor([0.0, 3.0, 1.0, 4.0], **f64)
    m1, m2 = torch.tensor([0.0, 1.0, -1.0, 2.0], **f64), torch.tensor([1.0, 1.0, 1.0, 0.5], **f64)
    exact = ((m1 - m2) ** 2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum()
    assert frechet_gaussians(m1, a.diag(), m2, b.diag()) == pytest.approx(exact.item(),
                                                                        rel=1e-12)
    # one dimension: N(0, 1) against N(3, 4) is 3² + (1 − 2)²
    assert frechet_gaussians(torch.zeros(1), torch.ones(1, 1), torch.full((1,), 3.0),
                             torch.full((1, 1), 4.0)) == pytest.approx(10.0, rel=1e-12)


def test_frechet_distance_of_samples_tends_to_the_closed_form():
    g = torch.Generator().manual_seed(0)
    (m1, c1), (m2, c2) = random_gaussian(4, g), random_gaussian(4, g)
    exact = scipy_frechet(m1, c1, m2, c2)
    errors = []
    for n in (1_000, 10_000, 100_000, 400_000):
        errors.append(abs(frechet_distance(draw(m1, c1, n, g), draw(m2, c2, n, g)) - exact))
    assert errors[-1] < 0.01 * exact  # exact ≈ 21.3; the error shrinks like 1/√n
    assert errors[-1] < errors[0] / 5


def test_frechet_distance_is_zero_on_the_same_set_and_symmetric():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(500, 8, generator=g), torch.randn(300, 8, generator=g) * 2 + 1
    assert frechet_distance(x, x) == 0.0
    assert frechet_distance(x, x.clone()) == 0.0
    assert frechet_distance(x, y) == frechet_distance(y, x) > 0
    relu = torch.randn(400, 8, generator=g).relu()
    relu[:, 3] = 0  # a dead unit: a singular covariance
    assert frechet_distance(relu, y) == frechet_distance(y, relu) > 0
    with pytest.raises(ValueError, match="different sizes"):
        frechet_distance(x, torch.randn(10, 3))


def test_gaussian_fit_is_the_unbiased_sample_covariance():
    x = torch.randn(50, 3, dtype=torch.float64)
    mean, cov = gaussian_fit(x)
    torch.testing.assert_close(mean, x.mean(0))
    torch.testing.assert_close(cov, torch.cov(x.T))  # torch.cov: 1/(N − 1) by default


def brute_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x.double(), x.double(), compute_mode="donot_use_mm_for_euclid_dist")
    return d.sort(dim=1).values[:, k]  # column 0 is the point itself


def brute_precision_recall(real, fake, k) -> tuple[float, float]:
    r_real, r_fake = brute_radii(real, k), brute_radii(fake, k)
    d = torch.cdist(fake.double(), real.double(), compute_mode="donot_use_mm_for_euclid_dist")
    precision = np.mean([any(d[j, i] <= r_real[i] for i in range(len(real)))
                         for j in range(len(fake))])
    recall = np.mean([any(d[j, i] <= r_fake[j] for j in range(len(fake)))
                      for i in range(len(real))])
    return float(precision), float(recall)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_precision_recall_match_brute_force_in_any_chunks(k):
    g = torch.Generator().manual_seed(k)
    real = torch.randn(60, 5, generator=g)
    fake = torch.randn(45, 5, generator=g) * 0.7 + 0.8
    expected = brute_precision_recall(real, fake, k)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1  # a case that tells them apart
    for chunk in (None, 1, 7, 1000):
        assert precision_recall(real, fake, k, chunk_size=chunk) == pytest.approx(expected,
                                                                                  abs=1e-12)
        torch.testing.assert_close(knn_radii(real, k, chunk_size=chunk), brute_radii(real, k))


def test_precision_recall_by_hand():
    real = torch.arange(5.0)[:, None]  # 0..4: every 1-NN radius is 1
    fake = torch.tensor([[0.5], [10.0]])  # both 1-NN radii are 9.5
    assert precision_recall(real, fake, k=1) == (0.5, 1.0)


def test_precision_recall_of_a_set_against_itself_and_a_far_cluster():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 16, generator=g).relu() * 10
    assert precision_recall(x, x) == (1.0, 1.0)
    dup = torch.cat([x[:50]] * 4)  # every point has 3 exact duplicates: radii of 0
    assert knn_radii(dup, 3).max() == 0
    assert precision_recall(dup, dup) == (1.0, 1.0)
    assert precision_recall(x, x + 1000.0) == (0.0, 0.0)
    near = (x - x[0]).norm(dim=1).argsort()[:30]  # a collapsed set: one corner of x
    precision, recall = precision_recall(x, x[near])
    assert precision == 1.0 and recall < 0.3


def test_class_coverage():
    balanced = torch.eye(10).repeat(30, 1)  # 30 sure predictions of each class
    c = class_coverage(balanced)
    assert c["class_entropy"] == pytest.approx(math.log(10), abs=1e-12)
    assert c["top_probability"] == 1.0 and c["classifier_score"] == pytest.approx(10, rel=1e-12)
    one = torch.zeros(40, 10)
    one[:, 7] = 1
    assert class_coverage(one) == {"class_entropy": 0.0, "top_probability": 1.0,
                                   "classifier_score": 1.0}
    soft = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.8, 0.2]])
    # histogram (2/3, 1/3); score: exp of the mean KL to the marginal (0.6, 0.4)
    marginal = [0.6, 0.4]
    kl = [sum(p * math.log(p / q) for p, q in zip(row, marginal, strict=True))
          for row in soft.tolist()]
    c = class_coverage(soft)
    assert c["class_entropy"] == pytest.approx(-(2 / 3) * math.log(2 / 3)
                                               - (1 / 3) * math.log(1 / 3), rel=1e-12)
    assert c["top_probability"] == pytest.approx((0.9 + 0.9 + 0.8) / 3, rel=1e-6)
    assert c["classifier_score"] == pytest.approx(math.exp(sum(kl) / 3), rel=1e-6)
    with pytest.raises(ValueError, match="sum to 1"):
        class_coverage(torch.ones(3, 4))
