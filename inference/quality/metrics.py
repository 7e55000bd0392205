"""Sample-quality metrics on features: tensors in, numbers out.

- Fréchet distance between Gaussian fits to two feature sets (Heusel, Ramsauer,
  Unterthiner, Nessler & Hochreiter 2017, "GANs Trained by a Two Time-Scale Update Rule
  Converge to a Local Nash Equilibrium", the FID):
  ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^½ Σ₂ Σ₁^½)^½, in float64.
- Precision and recall (Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved
  Precision and Recall Metric for Assessing Generative Models"): the real set's manifold is
  the union of balls around its points, each reaching its k-th nearest real neighbour;
  precision is the share of generated points inside it, recall the share of real points
  inside the generated set's manifold.
- Class coverage: the entropy of the histogram of predicted labels, the mean top class
  probability, and the Inception score exp E_x KL(p(y | x) ‖ p(y)) (Salimans et al. 2016,
  "Improved Techniques for Training GANs"), with any classifier's probabilities.
"""

from __future__ import annotations

import math

import torch

from inference.validate import positive_int

# Squared distances below this share of ‖a‖² + ‖b‖² are rounding error of the matrix
# product (float64's is about 1e-16 of it): they are set to exactly 0, so that a point is
# at distance 0 from itself and from its duplicates.
_SNAP = 1e-12
_ELEMENTS = 2**23  # float64 entries of a distance chunk: 64 MiB


def _features(name: str, x: torch.Tensor, min_rows: int = 1) -> torch.Tensor:
    if not torch.is_tensor(x) or x.dim() != 2:
        raise ValueError(f"{name} must be a tensor of features (N, F), got "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    if len(x) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows, got {len(x)}")
    x = x.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    return x


def gaussian_fit(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (F,) and covariance (F, F) of a feature set (N, F), in float64, with the
    unbiased 1/(N − 1) normalization as in the FID's reference code."""
    x = _features("features", features, min_rows=2)
    mean = x.mean(0)  # (F,)
    centred = x - mean  # (N, F)
    return mean, centred.T @ centred / (len(x) - 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, through its
    eigendecomposition; eigenvalues that rounding made negative count as 0."""
    w, v = torch.linalg.eigh((m + m.T) / 2)
    return (v * w.clamp(min=0).sqrt()) @ v.T


def _trace_sqrt_product(c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
    """tr (Σ₁Σ₂)^½ = Σ √λᵢ(Σ₁^½ Σ₂ Σ₁^½): a symmetric PSD matrix with the eigenvalues of
    Σ₁Σ₂, so the eigenvalues are real and the root needs no complex arithmetic (scipy's
    ``sqrtm`` of the non-symmetric Σ₁Σ₂ can return complex parts for near-singular
    covariances, as the FID's reference code notes)."""
    s = _sqrt_psd(c1)
    m = s @ c2 @ s
    return torch.linalg.eigvalsh((m + m.T) / 2).clamp(min=0).sqrt().sum()


def frechet_gaussians(mean1: torch.Tensor, cov1: torch.Tensor, mean2: torch.Tensor,
                      cov2: torch.Tensor) -> float:
    """The squared Fréchet (2-Wasserstein) distance between N(mean1, cov1) and
    N(mean2, cov2). Symmetric to the last bit (the trace term is averaged over both orders);
    exactly 0 for identical arguments; never below 0."""
    mean1, mean2, cov1, cov2 = (t.detach().to(torch.float64) for t in (mean1, mean2, cov1, cov2))
    if mean1.shape != mean2.shape or cov1.shape != cov2.shape or \
            cov1.shape != (len(mean1), len(mean1)):
        raise ValueError(f"Gaussians of different sizes: means {tuple(mean1.shape)} and "
                         f"{tuple(mean2.shape)}, covariances {tuple(cov1.shape)} and "
                         f"{tuple(cov2.shape)}")
    if torch.equal(mean1, mean2) and torch.equal(cov1, cov2):
        return 0.0
    means = ((mean1 - mean2) ** 2).sum()
    traces = cov1.trace() + cov2.trace()
    cross = _trace_sqrt_product(cov1, cov2) + _trace_sqrt_product(cov2, cov1)
    return max(0.0, (means + traces - cross).item())


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussian fits to two feature sets (N, F) and (M, F): the FID
    when the features are Inception's; here, any network's."""
    return frechet_gaussians(*gaussian_fit(a), *gaussian_fit(b))


def _sq_norms(x: torch.Tensor) -> torch.Tensor:
    return (x * x).sum(-1)


def _sq_distances(a: torch.Tensor, b: torch.Tensor, na: torch.Tensor,
                  nb: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances (n, m) by the matrix product, rounding snapped to 0."""
    total = na[:, None] + nb[None, :]  # (n, m)
    d2 = total - 2 * a @ b.T
    return torch.where(d2 <= _SNAP * total, torch.zeros_like(d2), d2)


def _rows_per_chunk(columns: int, chunk_size: int | None) -> int:
    return chunk_size or max(1, _ELEMENTS // max(1, columns))


def knn_radii(x: torch.Tensor, k: int = 3, *, chunk_size: int | None = None) -> torch.Tensor:
    """Distance (N,) from each point of ``x`` (N, F) to its k-th nearest other point of
    ``x`` (the point itself, at distance 0, is not counted). Computed in chunks of rows."""
    positive_int("k", k)
    x = _features("x", x, min_rows=k + 1)
    norms = _sq_norms(x)
    step = _rows_per_chunk(len(x), chunk_size)
    radii = []
    for start in range(0, len(x), step):
        d2 = _sq_distances(x[start:start + step], x, norms[start:start + step], norms)
        radii.append(d2.topk(k + 1, dim=1, largest=False).values[:, k])  # (chunk,)
    return torch.cat(radii).sqrt()


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = 3, *,
                     real_radii: torch.Tensor | None = None,
                     chunk_size: int | None = None) -> tuple[float, float]:
    """Improved precision and recall of ``fake`` (M, F) against ``real`` (N, F)
    (Kynkäänniemi et al. 2019): a point is inside a set's manifold if it lies within
    (≤) the k-NN radius of one of the set's points. ``real_radii`` (N,) may be passed when
    the same real set is compared many times (:func:`knn_radii`)."""
    real, fake = _features("real", real, min_rows=k + 1), _features("fake", fake, k + 1)
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"real and fake features differ in size: {real.shape[1]} and "
                         f"{fake.shape[1]}")
    r_real = (knn_radii(real, k, chunk_size=chunk_size) if real_radii is None
              else real_radii.to(torch.float64))
    if r_real.shape != (len(real),):
        raise ValueError(f"real_radii must have shape ({len(real)},), got "
                         f"{tuple(r_real.shape)}")
    r_fake = knn_radii(fake, k, chunk_size=chunk_size)
    n_real, n_fake = _sq_norms(real), _sq_norms(fake)
    real_covered = torch.zeros(len(real), dtype=torch.bool)  # inside the fake manifold
    fake_inside = []
    step = _rows_per_chunk(len(real), chunk_size)
    for start in range(0, len(fake), step):
        rows = slice(start, start + step)
        d2 = _sq_distances(fake[rows], real, n_fake[rows], n_real)  # (chunk, N)
        fake_inside.append((d2 <= r_real.square()[None, :]).any(1))
        real_covered |= (d2 <= r_fake[rows].square()[:, None]).any(0)
    precision = torch.cat(fake_inside).double().mean().item()
    return precision, real_covered.double().mean().item()


def class_coverage(probs: torch.Tensor) -> dict[str, float]:
    """How a set's predicted classes spread, from class probabilities (N, C):

    - ``class_entropy``: entropy (nats) of the histogram of predicted labels (argmax); log C
      when every class is predicted equally often, 0 when one class takes all;
    - ``top_probability``: the mean of max_c p(c | x), how sure the classifier is;
    - ``classifier_score``: exp E_x KL(p(y | x) ‖ p̄(y)), the Inception score with this
      classifier (Salimans et al. 2016): from 1 to C, high when each sample is clearly one
      class and the classes are balanced.

    >>> class_coverage(torch.eye(4))["class_entropy"] == math.log(4)
    True
    """
    if not torch.is_tensor(probs) or probs.dim() != 2 or len(probs) == 0:
        raise ValueError(f"probs must be class probabilities (N, C), got "
                         f"{getattr(probs, 'shape', type(probs).__name__)}")
    p = probs.detach().to(torch.float64)
    if (p < 0).any() or not torch.allclose(p.sum(1), torch.ones(len(p), dtype=p.dtype),
                                           atol=1e-4):
        raise ValueError("probs must be non-negative rows that sum to 1 (softmax outputs)")
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).double()
    share = counts[counts > 0] / len(p)
    entropy = -(share * share.log()).sum().item() + 0.0  # + 0.0: no -0.0
    marginal = p.mean(0)  # (C,)
    kl = torch.where(p > 0, p * (p.log() - marginal.log()), torch.zeros_like(p)).sum(1)
    return {"class_entropy": entropy, "top_probability": p.max(1).values.mean().item(),
            "classifier_score": math.exp(kl.mean().item())}
