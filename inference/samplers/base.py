"""The sampler interface, its registry, and the two samplers fitted in closed form: the
standard Normal prior and a Gaussian mixture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.distributions import Categorical, MixtureSameFamily, MultivariateNormal, Normal

from inference.checkpoint import load_checkpoint, save_checkpoint

SAMPLERS: dict[str, type[LatentSampler]] = {}


def register_sampler(name: str):
    def add(cls):
        cls.name = name
        SAMPLERS[name] = cls
        return cls
    return add


def make_sampler(name: str, **options) -> LatentSampler:
    """A new, unfitted sampler by its name (``normal``, ``gmm``, ``flow``, ``two-stage``,
    ``diffusion``) with its options."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](**options)


class LatentSampler:
    """A density over codes z (N, d), fitted on training codes (validation codes choose its
    settings or its epoch), that draws new codes and, where it can, scores held-out ones.

    Subclasses set ``name`` (by :func:`register_sampler`) and implement ``_fit``,
    :meth:`sample`, :meth:`log_prob` (``None`` where the density is not tractable),
    :meth:`state` and ``_load`` (tensors and plain values only: the file loads with
    ``weights_only=True``)."""

    name = ""

    def __init__(self, **options):
        self.options = options
        self.info: dict[str, Any] = {}

    def fit(self, train: torch.Tensor, valid: torch.Tensor, *, folder: Path | None = None,
            seed: int = 0, progress: bool = False) -> LatentSampler:
        """Fit on ``train`` codes (N, d), choosing on ``valid`` (M, d); ``folder`` keeps the
        training checkpoints of the samplers that train (resumed if interrupted)."""
        if train.dim() != 2 or valid.dim() != 2 or train.shape[1] != valid.shape[1]:
            raise ValueError(f"codes must be (N, d) and (M, d), got {tuple(train.shape)} and "
                             f"{tuple(valid.shape)}")
        self.dim = train.shape[1]
        torch.manual_seed(seed)
        self._fit(train.float().cpu(), valid.float().cpu(), folder, seed, progress)
        return self

    def _fit(self, train, valid, folder, seed, progress) -> None:
        raise NotImplementedError

    def sample(self, n: int) -> torch.Tensor:
        raise NotImplementedError

    def log_prob(self, z: torch.Tensor) -> torch.Tensor | None:
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _load(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the fitted sampler atomically (:func:`~inference.checkpoint.save_checkpoint`)."""
        return save_checkpoint(path, {"sampler": self.name, "options": self.options,
                                      "dim": self.dim, "info": self.info,
                                      "state": self.state()})


def load_sampler(path: str | Path) -> LatentSampler:
    """A fitted sampler from its file, read with ``weights_only=True``."""
    saved = load_checkpoint(path)
    sampler = make_sampler(saved["sampler"], **saved["options"])
    sampler.dim, sampler.info = saved["dim"], saved["info"]
    sampler._load(saved["state"])
    return sampler


@register_sampler("normal")
class NormalSampler(LatentSampler):
    """p(z) = N(0, I), the prior of the lab's Gaussian-prior pairs: the baseline. Nothing to
    fit."""

    def _fit(self, train, valid, folder, seed, progress) -> None:
        self.info = {"fit": "none (the prior)"}

    def sample(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return Normal(0.0, 1.0).log_prob(z.float()).sum(-1)

    def state(self) -> dict[str, Any]:
        return {}

    def _load(self, state) -> None:
        pass


@register_sampler("gmm")
class MixtureSampler(LatentSampler):
    """A Gaussian mixture with full covariances, fitted by EM (scikit-learn's
    ``GaussianMixture``; Ghosh et al. 2020's ex-post density estimation, Pythae's GMM
    sampler). The number of components is the one of ``components`` with the highest mean
    log-likelihood of the validation codes."""

    def __init__(self, components: tuple[int, ...] = (1, 5, 10, 20), max_iter: int = 100):
        super().__init__(components=tuple(components), max_iter=max_iter)

    def _fit(self, train, valid, folder, seed, progress) -> None:
        from sklearn.mixture import GaussianMixture

        scores, best = {}, None
        for k in self.options["components"]:
            if k > len(train):
                continue
            gm = GaussianMixture(k, covariance_type="full", max_iter=self.options["max_iter"],
                                 random_state=seed, reg_covar=1e-6).fit(train.double().numpy())
            scores[k] = float(gm.score(valid.double().numpy()))
            if best is None or scores[k] > scores[best[0]]:
                best = (k, gm)
        k, gm = best
        self.info = {"components": k, "valid_log_density": scores}
        self._set(torch.as_tensor(gm.weights_), torch.as_tensor(gm.means_),
                  torch.as_tensor(gm.covariances_))

    def _set(self, weights, means, covariances) -> None:
        self.weights, self.means, self.covariances = weights, means, covariances
        self.dist = MixtureSameFamily(Categorical(probs=weights),
                                      MultivariateNormal(means, covariance_matrix=covariances))

    def sample(self, n: int) -> torch.Tensor:
        return self.dist.sample((n,)).float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.dist.log_prob(z.double()).float()

    def state(self) -> dict[str, Any]:
        return {"weights": self.weights, "means": self.means, "covariances": self.covariances}

    def _load(self, state) -> None:
        self._set(state["weights"], state["means"], state["covariances"])


