"""Semi-supervised learning with M2 (Kingma et al. 2014): one model, labelled and
unlabelled batches, y summed out by enumeration where it is not observed.

:class:`SemiSupervisedData` serves labelled batches ``(x, y)`` spread evenly among
unlabelled ones ``(x, None)``; :class:`SemiSupervisedELBO` is ``TraceEnum_ELBO`` on both
(on unlabelled batches the guide's ``y`` site is enumerated) plus Kingma et al.'s
classification term α · E_labelled[−log q(y | x)], read from a trace of the guide with
``y`` conditioned. Both go through :func:`inference.fit` unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import replace

import pyro.poutine as poutine
import torch
from pyro.infer import TraceEnum_ELBO

from inference.data import Batch, TensorData
from inference.objectives import DifferentiableELBO


def classification_loss(guide, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−Σ_n log q(y_n | x_n), from the guide's ``y`` site with the labels conditioned."""
    tr = poutine.trace(poutine.condition(guide, data={"y": y})).get_trace(x, None)
    if "y" not in tr.nodes:
        raise ValueError("the guide has no 'y' site when y is not given; semi-supervised "
                         "training needs a guide that infers y, such as 'm2'")
    return -tr.nodes["y"]["fn"].log_prob(y).sum()


@torch.no_grad()
def predict(guide, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The most probable class under q(y | x), per row of x (N,)."""
    out = []
    for i in range(0, len(x), batch_size):
        with poutine.block():
            tr = poutine.trace(guide).get_trace(x[i:i + batch_size], None)
        out.append(tr.nodes["y"]["fn"].logits.argmax(-1))
    return torch.cat(out)


def accuracy(guide, data: TensorData) -> float:
    """Share of ``data``'s labels that q(y | x) predicts."""
    x, y = data.head(len(data))
    return (predict(guide, x) == y).float().mean().item()


class SemiSupervisedELBO(DifferentiableELBO):
    """M2's objective (Kingma et al. 2014, eq. 9): −(Σ_labelled L(x, y) + Σ_unlabelled U(x))
    + α Σ_labelled −log q(y | x), with U summed over y by ``TraceEnum_ELBO``.

    Pyro's ``ss_vae_M2`` example uses α = 46 ("aux loss multiplier") on batches of 200.
    """

    def __init__(self, alpha: float = 46.0, num_particles: int = 1, max_plate_nesting: int = 1):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.alpha = alpha
        self.elbo = TraceEnum_ELBO(num_particles=num_particles,
                                   max_plate_nesting=max_plate_nesting)

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        if y is None:
            return self.elbo.differentiable_loss(model, guide, x, None)
        with warnings.catch_warnings():  # a labelled batch has nothing to enumerate
            warnings.filterwarnings("ignore", message=".*no sample sites configured for enum")
            loss = self.elbo.differentiable_loss(model, guide, x, y)
        return loss + self.alpha * classification_loss(guide, x, y)


class SemiSupervisedData:
    """Labelled and unlabelled data served as separate batches, the labelled ones spread
    evenly over the epoch (as in Pyro's ``ss_vae_M2`` example)."""

    def __init__(self, labelled: TensorData, unlabelled: TensorData):
        if labelled.y is None:
            raise ValueError("the labelled part needs labels y")
        self.labelled, self.unlabelled = labelled, replace(unlabelled, y=None)
        self.info = {**labelled.info, "n": len(labelled) + len(unlabelled),
                     "labelled": len(labelled), "unlabelled": len(unlabelled)}
        self.image_shape, self.binarize = labelled.image_shape, labelled.binarize

    @classmethod
    def split(cls, data: TensorData, labels: int, seed: int = 0) -> SemiSupervisedData:
        """Keep the labels of ``labels`` points, balanced over classes; hide the rest."""
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        classes = data.y.unique()
        per_class = labels // len(classes)
        chosen = torch.cat([order[data.y[order] == c][:per_class] for c in classes])
        rest = torch.ones(len(data), dtype=torch.bool)
        rest[chosen] = False
        hidden = rest.nonzero()[:, 0]
        return cls(replace(data, x=data.x[chosen], y=data.y[chosen],
                           info={**data.info, "n": len(chosen)}),
                   replace(data, x=data.x[hidden], y=None, info={**data.info, "n": len(hidden)}))

    def __len__(self) -> int:
        return len(self.labelled) + len(self.unlabelled)

    @property
    def event_shape(self) -> torch.Size:
        return self.labelled.event_shape

    def to(self, device) -> SemiSupervisedData:
        return SemiSupervisedData(self.labelled.to(device), self.unlabelled.to(device))

    def head(self, n: int) -> Batch:
        return self.labelled.head(min(n, len(self.labelled)))

    def num_batches(self, batch_size: int) -> int:
        return sum(math.ceil(len(d) / batch_size) for d in (self.labelled, self.unlabelled))

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        sup = list(self.labelled.batches(batch_size, shuffle=shuffle, generator=generator))
        unsup = self.unlabelled.batches(batch_size, shuffle=shuffle, generator=generator)
        every = max(1, math.ceil(len(self.unlabelled) / batch_size) // len(sup))
        for i, batch in enumerate(unsup):
            if i % every == 0 and sup:
                yield sup.pop(0)
            yield batch
        yield from sup
