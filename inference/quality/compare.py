"""Compare a set of samples with real data in a classifier's feature space: any sampler,
any pair, any tensor of images.

    ref = QualityReference(classifier, test.x)          # features, Gaussian fit, k-NN radii
    ref.score(model_samples(model, 10_000))              # FD, precision, recall, coverage
    sample_quality(samples, test, classifier="mnist")    # the same in one call
"""

from __future__ import annotations

from collections.abc import Callable

import pyro
import torch

from inference.data import TensorData
from inference.quality.metrics import (
    class_coverage,
    frechet_gaussians,
    gaussian_fit,
    knn_radii,
    precision_recall,
)
from inference.validate import positive_int

Sampler = Callable[[int], torch.Tensor]


@torch.no_grad()
def model_samples(model, n: int, *, mean: bool = True, label: int | None = None,
                  site: str | None = None, like: torch.Tensor | None = None,
                  batch_size: int = 1000) -> torch.Tensor:
    """``n`` images (n, D) from a Pyro model's prior, on the CPU, drawn in batches: the
    likelihood's mean (``mean=True``: pixel probabilities of a Bernoulli decoder, the mean
    of a Gaussian one) or a draw from it. ``label`` conditions a label-conditional model on
    ``y = label`` (:func:`inference.generate.class_samples`). ``site`` names the data site
    when it is not ``x``; ``like`` is a batch for models that need data to run."""
    from inference.generate import class_samples, sample

    positive_int("n", n)
    positive_int("batch_size", batch_size)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        if label is not None:
            out.append(class_samples(model, label, m, mean=mean, like=like, site=site).cpu())
            continue
        drawn = sample(model, m, mean=mean, like=like, site=site)
        name = site or "x"
        if name not in drawn:
            raise ValueError(f"the model has no site {name!r}; name its data site: "
                             f"model_samples(model, n, site=...), one of {', '.join(drawn)}")
        out.append(drawn[name].cpu())
    return torch.cat(out).reshape(n, -1)  # (n, D)


def independent_pixels(x: torch.Tensor, n: int, *, seed: int = 0,
                       binary: bool = False) -> torch.Tensor:
    """A crude baseline (n, D): every pixel drawn independently from its own marginal over
    the rows of ``x`` (the value of that pixel in a random row); with ``binary`` a Bernoulli
    draw of it, i.e. Bernoulli(per-pixel training mean) for grey-level ``x``."""
    positive_int("n", n)
    g = torch.Generator().manual_seed(seed)
    x = x.cpu()
    rows = torch.randint(len(x), (n, x.shape[1]), generator=g)  # (n, D)
    drawn = x.gather(0, rows)
    return torch.bernoulli(drawn, generator=g) if binary else drawn


def _images(x) -> torch.Tensor:
    x = x.x if isinstance(x, TensorData) else x
    if not torch.is_tensor(x) or x.dim() < 2:
        raise ValueError(f"expected images (N, D), got {getattr(x, 'shape', type(x).__name__)}")
    if not torch.isfinite(x).all():
        raise ValueError("the samples hold NaN or infinite values")
    return x.reshape(len(x), -1)


def _classifier(classifier):
    if isinstance(classifier, str):
        from inference.quality.classifier import reference_classifier

        return reference_classifier(classifier)
    if not hasattr(classifier, "embed"):
        raise TypeError("classifier must be a dataset name, an ImageClassifier, or an object "
                        "with embed(x) -> (features (N, F), class probabilities (N, C))")
    return classifier


class QualityReference:
    """A real set prepared once for comparisons: its features and class probabilities under
    ``classifier``, their Gaussian fit and their k-NN radii (``k`` = 3 as in Kynkäänniemi et
    al. 2019)."""

    def __init__(self, classifier, real, *, k: int = 3, chunk_size: int | None = None):
        self.classifier, self.k, self.chunk_size = _classifier(classifier), k, chunk_size
        self.features, self.probs = self.classifier.embed(_images(real))  # (N, F), (N, C)
        self.mean, self.cov = gaussian_fit(self.features)
        self.radii = knn_radii(self.features, k, chunk_size=chunk_size)  # (N,)

    def __len__(self) -> int:
        return len(self.features)

    def score(self, samples) -> dict[str, float]:
        """FD, precision, recall and class coverage of ``samples`` (M, D) against this set."""
        x = _images(samples)
        features, probs = self.classifier.embed(x)
        precision, recall = precision_recall(self.features, features, self.k,
                                             real_radii=self.radii, chunk_size=self.chunk_size)
        return {"n": len(x), "frechet_distance": frechet_gaussians(self.mean, self.cov,
                                                                   *gaussian_fit(features)),
                "precision": precision, "recall": recall, **class_coverage(probs)}

    def labels(self, samples) -> torch.Tensor:
        """The classifier's predicted class of each sample (M,)."""
        return self.classifier.embed(_images(samples))[1].argmax(-1)


def sample_quality(samples: torch.Tensor | Sampler, real, *, classifier, n: int = 10_000,
                   k: int = 3, seed: int | None = None) -> dict[str, float]:
    """Sample quality of ``samples`` against ``real`` in ``classifier``'s feature space.

    ``samples``: images (M, D), or a function ``n -> (n, D)`` called with ``n`` (for a Pyro
    model, ``lambda n: model_samples(model, n)``), under ``pyro.set_rng_seed(seed)`` when
    ``seed`` is given. ``real``: images (N, D), a ``TensorData`` or a
    :class:`QualityReference` (to reuse one). ``classifier``: an
    :class:`~inference.quality.classifier.ImageClassifier`, a dataset name (its cached
    :func:`~inference.quality.classifier.reference_classifier`) or any object with
    ``embed``. Returns ``n``, ``frechet_distance``, ``precision``, ``recall``,
    ``class_entropy``, ``top_probability`` and ``classifier_score``.
    """
    ref = real if isinstance(real, QualityReference) else QualityReference(classifier, real, k=k)
    if callable(samples) and not torch.is_tensor(samples):
        if seed is not None:
            pyro.set_rng_seed(seed)
        samples = samples(positive_int("n", n))
    return ref.score(samples)


def class_quality(generate: Callable[[int, int], torch.Tensor], real: TensorData, *,
                  classifier, n: int = 1000, k: int = 3) -> dict:
    """Per-class sample quality: ``generate(c, n)`` (n images of class c, e.g.
    ``lambda c, n: model_samples(model, n, label=c)``) against the real images labelled c,
    for every class of ``real``. Each class gets FD, precision, recall, coverage and
    ``accuracy``, the share of its samples the classifier assigns to c (does a conditional
    model obey its label?); ``mean`` averages them over the classes."""
    if real.y is None:
        raise ValueError("per-class quality needs a labelled real set")
    classifier = _classifier(classifier)
    rows = []
    for c in real.y.unique().tolist():
        ref = QualityReference(classifier, real.x[real.y == c], k=k)
        x = _images(generate(c, n))
        rows.append({"class": c, "real": len(ref), **ref.score(x),
                     "accuracy": (ref.labels(x) == c).double().mean().item()})
    keys = ("frechet_distance", "precision", "recall", "accuracy")
    return {"per_class": rows, "mean": {key: sum(r[key] for r in rows) / len(rows)
                                        for key in keys}}
