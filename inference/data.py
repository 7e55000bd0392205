"""Datasets as tensors that live on the training device, and their minibatches.

:class:`TensorData` holds flat data ``x`` of shape (N, D) with optional labels ``y`` (N,);
with ``binarize="dynamic"`` every minibatch is a fresh Bernoulli draw from the pixel
intensities (Salakhutdinov & Murray 2008), made on the device. Any ``torch.utils.data.Dataset``
works too, through :class:`LoaderData`. :func:`resolve_data_dir` says where the data files
live.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from inference.check import DataError

Batch = tuple[torch.Tensor, torch.Tensor | None]
ENV_VAR = "VAE_LAB_DATA"


def resolve_data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data folder: ``path``, else ``$VAE_LAB_DATA``, else ``~/.cache/pyro-vae-lab``."""
    if path is None:
        path = os.environ.get(ENV_VAR) or Path.home() / ".cache" / "pyro-vae-lab"
    return Path(path).expanduser().resolve()


@dataclass(frozen=True)
class TensorData:
    """Flat data ``x`` (N, D) and optional labels ``y`` (N,), with how they are served.

    ``binarize="dynamic"`` serves ``bernoulli(x)`` afresh in every minibatch and needs x in
    [0, 1]. ``info`` records where the data came from; it is saved with every run.
    ``mask`` (N, D) bool, True where a cell was observed, marks missing values (a table's
    empty cells): their entries of ``x`` are ignored, and a served batch holds NaN there,
    which is how a pair that reads missing cells (the ``tabular`` pair) sees them.
    """

    x: torch.Tensor
    y: torch.Tensor | None = None
    binarize: str = "none"
    image_shape: tuple[int, ...] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    mask: torch.Tensor | None = None

    def __post_init__(self):
        if not torch.is_tensor(self.x) or self.x.dim() < 2:
            raise DataError(f"x must be a tensor of shape (N, D), got "
                            f"{getattr(self.x, 'shape', type(self.x).__name__)}")
        if self.y is not None and (not torch.is_tensor(self.y) or len(self.y) != len(self.x)):
            raise DataError(f"y must be a tensor with one entry per row of x ({len(self.x)})")
        if self.binarize not in ("none", "dynamic"):
            raise ValueError(f"binarize must be 'none' or 'dynamic', got {self.binarize!r}")
        if not self.x.is_floating_point():
            raise DataError(f"x must be floating point, got {self.x.dtype}; for pixel bytes use "
                            f"x.float() / 255")
        if self.mask is not None and (self.mask.dtype != torch.bool
                                      or self.mask.shape != self.x.shape):
            raise DataError(f"mask must be a bool tensor of x's shape {tuple(self.x.shape)} "
                            f"(True where a cell is observed), got {self.mask.dtype} "
                            f"{tuple(self.mask.shape)}")
        if self.mask is None and torch.isfinite(self.x.sum()):
            return self._check_range()  # a finite sum has no NaN or infinite term
        bad = ~torch.isfinite(self.x) if self.mask is None else ~torch.isfinite(self.x) & self.mask
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise DataError(f"x has {int(bad.sum())} NaN or infinite values (first in row {row});"
                            f" drop or impute them before training, or mark them missing "
                            f"(TensorData(x.nan_to_num(), mask=~x.isnan())) for a pair that "
                            f"reads missing cells (tabular)")
        self._check_range()

    def _check_range(self) -> None:
        if self.binarize == "dynamic" and (self.x.min() < 0 or self.x.max() > 1):
            raise DataError(f"dynamic binarization draws Bernoulli(x) and needs x in [0, 1], got "
                            f"range {self.x.min().item():g} to {self.x.max().item():g}; "
                            f"divide pixel bytes by 255")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def event_shape(self) -> torch.Size:
        return self.x.shape[1:]

    def to(self, device: torch.device | str) -> TensorData:
        y = None if self.y is None else self.y.to(device)
        mask = None if self.mask is None else self.mask.to(device)
        return replace(self, x=self.x.to(device), y=y, mask=mask)

    def serve(self, idx: torch.Tensor | slice) -> Batch:
        x = self.x[idx]
        if self.mask is not None:  # missing cells reach the pair as NaN
            x = x.masked_fill(~self.mask[idx], float("nan"))
        if self.binarize == "dynamic":
            x = torch.bernoulli(x)
        return x, None if self.y is None else self.y[idx]

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        n = len(self)
        order = torch.randperm(n, generator=generator).to(self.x.device) if shuffle else None
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield self.serve(slice(start, stop) if order is None else order[start:stop])

    def head(self, n: int) -> Batch:
        return self.serve(slice(0, n))

    def subset(self, n: int, seed: int = 0) -> TensorData:
        """``n`` rows drawn at random without replacement (seeded), in their original order.

        With labels the draw is stratified: each class keeps its share of the rows (largest
        remainders), so a quick estimate on a subset is not skewed by a file ordered by class.

        >>> data = TensorData(torch.zeros(10, 2), torch.tensor([0] * 8 + [1] * 2))
        >>> data.subset(5).y.tolist()
        [0, 0, 0, 0, 1]
        """
        if not 1 <= n <= len(self):
            raise ValueError(f"a subset needs 1 to {len(self)} rows, got {n}")
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(self), generator=g)
        if self.y is None:
            rows = order[:n]
        else:
            classes, counts = self.y.cpu().unique(return_counts=True)
            share = counts.double() * n / len(self)
            quota = share.floor().long()
            rest = (share - quota).argsort(descending=True)[: n - int(quota.sum())]
            quota[rest] += 1
            labels = self.y.cpu()[order]
            rows = torch.cat([order[labels == c][:q] for c, q in zip(classes, quota,
                                                                     strict=True)])
        rows = rows.sort().values.to(self.x.device)
        y = None if self.y is None else self.y[rows]
        mask = None if self.mask is None else self.mask[rows]
        return replace(self, x=self.x[rows], y=y, mask=mask,
                       info={**self.info, "n": n, "rows": f"random {n} (seed {seed}"
                             f"{', stratified by label' if self.y is not None else ''})"})

    def take(self, n: int, start: int = 0) -> TensorData:
        """``n`` rows from row ``start`` (default: the first ``n``), served the same way."""
        rows = slice(start, start + n)
        y = None if self.y is None else self.y[rows]
        x = self.x[rows]
        mask = None if self.mask is None else self.mask[rows]
        return replace(self, x=x, y=y, mask=mask, info={**self.info, "n": len(x)})


class LoaderData:
    """A ``torch.utils.data.Dataset`` of ``x`` or ``(x, y)`` items, batched by a DataLoader."""

    def __init__(self, dataset: Dataset, device: torch.device | str = "cpu", **loader_kwargs):
        self.dataset, self.device, self.loader_kwargs = dataset, torch.device(device), loader_kwargs
        self.info = {"name": type(dataset).__name__, "n": len(dataset)}

    def __len__(self) -> int:
        return len(self.dataset)

    def to(self, device: torch.device | str) -> LoaderData:
        return LoaderData(self.dataset, device, **self.loader_kwargs)

    def _split(self, item) -> Batch:
        items = list(item) if isinstance(item, (tuple, list)) else [item]
        x, y = items[0], items[1] if len(items) > 1 else None
        y = None if y is None else y.to(self.device, non_blocking=True)
        return x.to(self.device, non_blocking=True), y

    def batches(self, batch_size: int, *, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=shuffle,
                            generator=generator, pin_memory=self.device.type == "cuda",
                            **self.loader_kwargs)
        for item in loader:
            yield self._split(item)

    def head(self, n: int) -> Batch:
        return next(iter(self.batches(n)))


def as_data(data: Any) -> TensorData | LoaderData:
    """Accept a tensor, an ``(x, y)`` pair, a :class:`TensorData` or a torch ``Dataset``."""
    if isinstance(data, (TensorData, LoaderData)):
        return data
    if all(hasattr(data, a) for a in ("batches", "head", "to", "__len__")):
        return data  # any other data source with the same interface
    if torch.is_tensor(data):
        return TensorData(data)
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        return TensorData(data[0], data[1])
    if isinstance(data, Dataset):
        return LoaderData(data)
    raise TypeError(f"data must be a tensor, an (x, y) pair, TensorData or a torch Dataset, "
                    f"got {type(data).__name__}")
