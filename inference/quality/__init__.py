"""Sample quality you can compare: Fréchet distance, precision and recall, and class
coverage, in the feature space of a classifier trained on the dataset itself.

- :mod:`~inference.quality.metrics`: the metrics on tensors of features (pure functions).
- :mod:`~inference.quality.classifier`: the reference feature network, a small CNN trained
  once per dataset, input kind and seed, and cached under ``$VAE_LAB_CLASSIFIERS`` or
  ``~/.cache/pyro-vae-lab/classifiers``.
- :mod:`~inference.quality.compare`: samples of any model or sampler against real images.
- :mod:`~inference.quality.run`: ``vae-eval RUN --quality`` on a run folder.

Inputs. The classifier sees the kind of image the comparison uses: pixel means (the
default) are grey levels and are compared with grey-level real images by a classifier
trained on grey levels; binary draws from a Bernoulli decoder are compared with the run's
binarized images by a classifier trained on Bernoulli draws of the training images.
"""

from inference.quality.classifier import (
    CLASSIFIER_VERSION,
    ImageClassifier,
    classifier_cache_dir,
    reference_classifier,
    train_classifier,
)
from inference.quality.compare import (
    QualityReference,
    class_quality,
    independent_pixels,
    model_samples,
    sample_quality,
)
from inference.quality.metrics import (
    class_coverage,
    frechet_distance,
    frechet_gaussians,
    gaussian_fit,
    knn_radii,
    precision_recall,
)

__all__ = [
    "CLASSIFIER_VERSION", "ImageClassifier", "QualityReference", "class_coverage",
    "class_quality", "classifier_cache_dir", "frechet_distance", "frechet_gaussians",
    "gaussian_fit", "independent_pixels", "knn_radii", "model_samples", "precision_recall",
    "reference_classifier", "sample_quality", "train_classifier",
]
