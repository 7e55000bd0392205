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
from inference.validate import non_negative_float


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

    ``labelled_weight`` multiplies the labelled ELBO −L(x, y) (not the classification term).
    When labelled batches are served many times per epoch (``labelled_every``), 1/passes
    (see :meth:`SemiSupervisedData.labelled_passes`) weighs each labelled point's ELBO once
    per epoch, as in eq. 9's sum over the data set, so the few labelled images do not
    dominate the generative model's gradient. Measured at 100 labels and 50 epochs
    (``docs/benchmarks/m2.md``), 1/500 helped one seed of three and hurt two, so the default
    stays 1.
    """

    def __init__(self, alpha: float = 46.0, num_particles: int = 1, max_plate_nesting: int = 1,
                 labelled_weight: float = 1.0):
        super().__init__(num_particles=num_particles, max_plate_nesting=max_plate_nesting)
        self.alpha = alpha
        self.labelled_weight = non_negative_float("labelled_weight", labelled_weight)
        self.elbo = TraceEnum_ELBO(num_particles=num_particles,
                                   max_plate_nesting=max_plate_nesting)

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        if y is None:
            return self.elbo.differentiable_loss(model, guide, x, None)
        with warnings.catch_warnings():  # a labelled batch has nothing to enumerate
            warnings.filterwarnings("ignore", message=".*no sample sites configured for enum")
            loss = self.elbo.differentiable_loss(model, guide, x, y)
        return self.labelled_weight * loss + self.alpha * classification_loss(guide, x, y)


class SemiSupervisedData:
    """Labelled and unlabelled data served as separate batches.

    By default each labelled point is served once per epoch, the labelled batches spread
    evenly among the unlabelled ones (as in Pyro's ``ss_vae_M2`` example: with 100 labels
    and batches of 100, one labelled batch per epoch). ``labelled_every=k`` serves a
    labelled batch after every k unlabelled ones instead, cycling through the labelled
    points (reshuffled at each pass), so the classification term acts on every k-th step
    whatever the number of labels, as in Kingma et al.'s own code, where each minibatch
    holds labelled and unlabelled points.
    """

    def __init__(self, labelled: TensorData, unlabelled: TensorData, *,
                 labelled_every: int | None = None):
        if labelled.y is None:
            raise ValueError("the labelled part needs labels y")
        if labelled_every is not None and labelled_every < 1:
            raise ValueError(f"labelled_every must be a positive number of unlabelled "
                             f"batches, got {labelled_every}")
        self.labelled, self.unlabelled = labelled, replace(unlabelled, y=None)
        self.labelled_every = labelled_every
        self.info = {**labelled.info, "n": len(labelled) + len(unlabelled),
                     "labelled": len(labelled), "unlabelled": len(unlabelled)}
        self.image_shape, self.binarize = labelled.image_shape, labelled.binarize

    @classmethod
    def split(cls, data: TensorData, labels: int, seed: int = 0,
              labelled_every: int | None = None) -> SemiSupervisedData:
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
                   replace(data, x=data.x[hidden], y=None, info={**data.info, "n": len(hidden)}),
                   labelled_every=labelled_every)

    def __len__(self) -> int:
        return len(self.labelled) + len(self.unlabelled)

    @property
    def event_shape(self) -> torch.Size:
        return self.labelled.event_shape

    def to(self, device) -> SemiSupervisedData:
        return SemiSupervisedData(self.labelled.to(device), self.unlabelled.to(device),
                                  labelled_every=self.labelled_every)

    def head(self, n: int) -> Batch:
        return self.labelled.head(min(n, len(self.labelled)))

    def labelled_passes(self, batch_size: int) -> float:
        """How many times per epoch a labelled point is served, on average over the labelled
        points (1 without ``labelled_every``)."""
        served, per_pass = self._labelled_batches(batch_size), math.ceil(
            len(self.labelled) / batch_size)  # labelled batches per epoch, per pass
        rows = served // per_pass * len(self.labelled) + min(
            served % per_pass * batch_size, len(self.labelled))
        return rows / len(self.labelled)

    def _labelled_batches(self, batch_size: int) -> int:
        """Labelled batches served per epoch."""
        if self.labelled_every is not None:
            return math.ceil(len(self.unlabelled) / batch_size) // self.labelled_every
        return math.ceil(len(self.labelled) / batch_size)

    def num_batches(self, batch_size: int) -> int:
        return math.ceil(len(self.unlabelled) / batch_size) + self._labelled_batches(batch_size)

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        if self.labelled_every is not None:
            yield from self._cycled(batch_size, shuffle, generator)
            return
        sup = list(self.labelled.batches(batch_size, shuffle=shuffle, generator=generator))
        unsup = self.unlabelled.batches(batch_size, shuffle=shuffle, generator=generator)
        every = max(1, math.ceil(len(self.unlabelled) / batch_size) // len(sup))
        for i, batch in enumerate(unsup):
            if i % every == 0 and sup:
                yield sup.pop(0)
            yield batch
        yield from sup

    def _cycled(self, batch_size: int, shuffle: bool,
                generator: torch.Generator | None) -> Iterator[Batch]:
        """A labelled batch after every ``labelled_every`` unlabelled ones, the labelled
        points served in passes (each reshuffled when ``shuffle``)."""
        def passes() -> Iterator[Batch]:
            while True:
                yield from self.labelled.batches(batch_size, shuffle=shuffle,
                                                 generator=generator)
        sup = passes()
        unsup = self.unlabelled.batches(batch_size, shuffle=shuffle, generator=generator)
        for i, batch in enumerate(unsup, start=1):
            yield batch
            if i % self.labelled_every == 0:
                yield next(sup)


class TwinStepAdam(torch.optim.Adam):
    """Adam as Pyro's ``examples/vae/ss_vae_M2.py`` runs it, for like-for-like comparisons:
    after every step a second one on zero gradients.

    The example gives its two ``SVI`` objects (the ELBO and the auxiliary classification
    loss) one ``pyro.optim.Adam``, and steps both on every batch. On an unlabelled batch the
    auxiliary model scores nothing, so its step finds the zero gradients that ``SVI.step``
    left (``pyro.infer.util.zero_grads`` replaces each gradient by zeros) and moves every
    parameter by Adam's momentum alone: about β1 × the previous step again, so with β1 =
    0.95 nearly twice the nominal learning rate. On its few labelled batches the second step
    is the classification gradient's; this class takes the zero one there too.
    """

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad = torch.zeros_like(p.grad)
        super().step()
        return loss
