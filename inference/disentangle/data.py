"""Training splits of the factor datasets, as the lab's :class:`~inference.data.TensorData`.

``sprites`` (rendered) and ``dsprites`` (DeepMind's file) have 737,280 images, one per
factor combination: 3 GB as bytes, 12 GB as float32. The lab trains on tensors
that live on the device, so a split is a seeded random set of combinations, disjoint from
the others: the test split the first 10,000 of one fixed permutation of all combinations
(seed 0, whatever the run's seed, so every run is scored on the same images), the
validation split the next ``valid`` (5,000 by default), the training split the next 50,000
(800 MB as float32; ``--train-limit`` draws fewer from them). Rows keep the permutation's
random order, so a split's first rows (the lab's per-epoch training scores, the figures)
are a random sample, not the small squares that come first in factor order. The
disentanglement metrics do not use the splits: like disentanglement_lib, they sample factors
from the whole space.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from inference.data import TensorData, resolve_data_dir
from inference.disentangle.factors import GroundTruthData

TRAIN, TEST, VALID = 50_000, 10_000, 5_000
SPLIT_SEED = 0
FACTOR_DATASETS = ("sprites", "dsprites")


def ground_truth(name: str, root: Path | None = None, download: bool = True) -> GroundTruthData:
    """The factor dataset ``name``: ``sprites`` (rendered) or ``dsprites`` (the file in the
    data folder ``root``, downloaded when missing and allowed)."""
    from inference.disentangle.sprites import Sprites

    if name == "sprites":
        return Sprites()
    if name == "dsprites":
        from inference.disentangle.dsprites import DSprites, find

        return DSprites(find(resolve_data_dir(root), download))
    raise ValueError(f"{name!r} has no ground-truth factors; choose one of "
                     f"{', '.join(FACTOR_DATASETS)}")


def split_rows(total: int, split: str, valid: int) -> torch.Tensor:
    """Flat indices of the combinations in ``split`` (test, valid or train)."""
    if split not in ("train", "valid", "test"):
        raise ValueError(f"the factor datasets have splits train, valid and test, not {split!r}")
    if valid < 0 or TEST + valid + TRAIN > total:
        raise ValueError(f"cannot hold out {valid} images for validation beside {TEST} test and "
                         f"{TRAIN} training images of {total}")
    order = torch.randperm(total, generator=torch.Generator().manual_seed(SPLIT_SEED))
    bounds = {"test": (0, TEST), "valid": (TEST, TEST + valid),
              "train": (TEST + valid, TEST + valid + TRAIN)}
    start, stop = bounds[split]
    return order[start:stop]  # in random order: the first rows of a split are a random sample


def load_factor_split(name: str, split: str, *, valid: int = VALID, data_dir=None,
                      download: bool = True) -> TensorData:
    """One split of a factor dataset: flat binary images (N, 4096) as float32, no labels."""
    if split == "valid" and not valid:
        raise ValueError(f"{name}: no validation split with valid=0")
    if name == "sprites":
        return _rendered(split, valid)
    return _split(name, split, valid, data_dir, download)


@functools.lru_cache(maxsize=3)
def _rendered(split: str, valid: int) -> TensorData:
    """A split of the rendered sprites, kept: the same images every time (800 MB for the
    training split), so a process that trains in turns renders them once."""
    return _split("sprites", split, valid, None, False)


def _split(name: str, split: str, valid: int, data_dir, download: bool) -> TensorData:
    data = ground_truth(name, data_dir, download)
    rows = split_rows(len(data), split, valid)
    x = data.observations(data.factors_of(rows))  # (N, 4096)
    folder = str(getattr(data, "path", Path("procedural")).parent) if name == "dsprites" else (
        "rendered by inference.disentangle.sprites")
    info = {"name": name, "split": split, "n": len(x), "shape": list(x.shape[1:]),
            "binarize": "none (binary images)", "folder": folder, "sha256": {},
            "rows": f"random {len(x)} of the {len(data)} factor combinations (split seed "
                    f"{SPLIT_SEED}, disjoint from the other splits)"}
    return TensorData(x, None, binarize="none", image_shape=data.image_shape, info=info)
