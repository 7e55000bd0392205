"""The reference feature network: a small CNN classifier trained by the lab on a dataset's
training split, whose 128 penultimate activations are the space sample quality is measured
in (Inception features judge 28×28 digits poorly, and cannot be downloaded here).

It is a supervised network trained with plain torch: the judge, not a Pyro pair. Training
is deterministic under a seed for a given number of threads: weights drawn under
``torch.random.fork_rng`` and batches, and binarizations, from a seeded generator. The
epochs are chosen on the validation split (the weights of the epoch with the best
validation accuracy are kept), and accuracy is reported on the test split, which training
never sees. :func:`reference_classifier` trains one per dataset, input kind and seed once
and caches it (module docstring of :mod:`inference.quality`).
"""

from __future__ import annotations

import copy
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from inference.check import DataError
from inference.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from inference.data import TensorData
from inference.validate import non_negative_int, positive_float, positive_int

# Bump when the network or its training changes: cached classifiers of another version are
# retrained, never reused.
CLASSIFIER_VERSION = "cnn1"
CACHE_ENV = "VAE_LAB_CLASSIFIERS"


class ImageClassifier(nn.Module):
    """conv 5×5 stride 2 (16) → BN → ReLU → conv 5×5 stride 2 (32) → BN → ReLU → linear
    (``features``, ReLU): the feature space → linear (classes). Takes flat images (N, D)."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), num_classes: int = 10,
                 width: int = 16, features: int = 128):
        super().__init__()
        channels, h, w = image_shape
        self.image_shape, self.num_classes = tuple(image_shape), num_classes
        h4, w4 = (h + 3) // 4, (w + 3) // 4  # after two stride-2 convolutions, padding 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 5, stride=2, padding=2), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 5, stride=2, padding=2), nn.BatchNorm2d(2 * width),
            nn.ReLU(), nn.Flatten(), nn.Linear(2 * width * h4 * w4, features), nn.ReLU())
        self.head = nn.Linear(features, num_classes)
        self.info: dict = {}
        self.path: Path | None = None  # the cache file it came from, if any

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.reshape(-1, *self.image_shape))  # (N, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (N, classes) logits

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
        """Features (N, F) and class probabilities (N, C) of flat images (N, D), in eval
        mode, in batches, on the classifier's device; returned on the CPU."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        feats, probs = [], []
        for batch in x.split(batch_size):
            f = self.features(batch.to(device, torch.float32))
            feats.append(f.cpu())
            probs.append(self.head(f).softmax(-1).cpu())
        self.train(was_training)
        return torch.cat(feats), torch.cat(probs)


def image_shape_of(data: TensorData) -> tuple[int, int, int]:
    """The (C, H, W) of a dataset's flat images: its ``image_shape``, else a square grey
    image when D is a square number."""
    if data.image_shape is not None:
        return tuple(data.image_shape)
    side = math.isqrt(data.x.shape[1])
    if side * side != data.x.shape[1]:
        raise DataError(f"cannot tell the image shape of {data.x.shape[1]} values per row; "
                        f"give the TensorData an image_shape")
    return (1, side, side)


def _accuracy(net: ImageClassifier, data: TensorData) -> float:
    _, probs = net.embed(data.x)
    return (probs.argmax(-1) == data.y.cpu()).double().mean().item()


def _fixed_draw(data: TensorData, seed: int) -> TensorData:
    g = torch.Generator().manual_seed(seed)
    return TensorData(torch.bernoulli(data.x.cpu(), generator=g), data.y, "none",
                      data.image_shape, data.info)


def train_classifier(train: TensorData, valid: TensorData, test: TensorData | None = None, *,
                     binary: bool = False, epochs: int = 3, batch_size: int = 128,
                     lr: float = 3e-3, seed: int = 0, progress: bool = True,
                     log=print) -> ImageClassifier:
    """Train an :class:`ImageClassifier` on a labelled dataset (CPU, plain torch): Adam with
    a one-cycle learning rate peaking at ``lr``, cross-entropy, ``epochs`` passes. Keeps the
    epoch with the best validation accuracy; ``net.info`` records the accuracies (test
    included when ``test`` is given), the wall-clock and CPU seconds and the threads.
    ``binary=True`` trains on Bernoulli draws of the pixels, fresh in every batch, and
    scores fixed draws."""
    positive_int("epochs", epochs)
    positive_int("batch_size", batch_size)
    positive_float("lr", lr)
    non_negative_int("seed", seed)
    for name, data in (("train", train), ("valid", valid), ("test", test)):
        if data is not None and data.y is None:
            raise DataError(f"the classifier needs labels, and the {name} split has none")
    if binary:
        valid = _fixed_draw(valid, seed + 1)
        test = None if test is None else _fixed_draw(test, seed + 2)
    x, y = train.x.cpu(), train.y.cpu()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ImageClassifier(image_shape_of(train), int(y.max()) + 1)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    steps = math.ceil(len(x) / batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps,
                                                   pct_start=0.15)
    start, cpu, accuracies, best = time.perf_counter(), time.process_time(), [], None
    for epoch in range(1, epochs + 1):
        net.train()
        bar = tqdm(torch.randperm(len(x), generator=g).split(batch_size), disable=not progress,
                   desc=f"classifier epoch {epoch}/{epochs}", leave=False, mininterval=0.5)
        for rows in bar:
            xb = torch.bernoulli(x[rows], generator=g) if binary else x[rows]
            loss = F.cross_entropy(net(xb), y[rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        accuracies.append(_accuracy(net, valid))
        log(f"  classifier epoch {epoch}: valid accuracy {accuracies[-1]:.4f} "
            f"({time.perf_counter() - start:.0f} s)")
        if best is None or accuracies[-1] > max(accuracies[:-1]):
            best = copy.deepcopy(net.state_dict())
    net.load_state_dict(best)
    net.eval()
    net.info = {"version": CLASSIFIER_VERSION, "input": "binary" if binary else "grey",
                "seed": seed, "epochs": epochs, "best_epoch": accuracies.index(max(accuracies)) + 1,
                "valid_accuracy": accuracies, "train_images": len(x), "valid_images": len(valid),
                "test_accuracy": None if test is None else _accuracy(net, test),
                "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
                "threads": torch.get_num_threads()}
    return net


def classifier_cache_dir(path: str | os.PathLike | None = None) -> Path:
    """Where trained classifiers are kept: ``path``, else ``$VAE_LAB_CLASSIFIERS``, else
    ``~/.cache/pyro-vae-lab/classifiers``."""
    path = path or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyro-vae-lab" / \
        "classifiers"
    return Path(path).expanduser()


def describe(net: ImageClassifier) -> str:
    i = net.info
    pixels = "binary pixels (Bernoulli draws)" if i.get("input") == "binary" else "grey levels"
    test = i.get("test_accuracy")
    return (f"CNN on {i.get('dataset', 'the data')} {pixels}, seed {i.get('seed')}, "
            + (f"test accuracy {test:.4f}" if test is not None else "no test accuracy"))


def _load_cached(path: Path, expect: dict) -> ImageClassifier | None:
    """The classifier cached at ``path``, or None when there is none or it does not match
    ``expect`` (another version, or other data files); a damaged file counts as none."""
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path)
    except CheckpointError:
        return None
    info = state.get("info", {})
    if any(info.get(k) != v for k, v in expect.items()):
        return None
    net = ImageClassifier(tuple(info["image_shape"]), info["num_classes"])
    net.load_state_dict(state["state"])
    net.info = info
    return net.eval()


def reference_classifier(dataset: str = "embedded", *, binary: bool = False, seed: int = 0,
                         epochs: int = 3, cache_dir: str | os.PathLike | None = None,
                         data_dir=None, download: bool = True, progress: bool = True,
                         log=print) -> ImageClassifier:
    """The lab's feature network for a dataset (embedded, mnist, fashion-mnist;
    binarized-mnist uses MNIST's, binary): trained on the lab's training split
    (``load_splits``), its epochs chosen on the validation split, its accuracy measured on
    the test split, then cached as ``<cache>/<dataset>-<grey|binary>-seed<S>-e<E>-<version>.pt``
    (checked by digest, loaded with ``weights_only``) and reused while the data files and
    :data:`CLASSIFIER_VERSION` are unchanged."""
    from inference.datasets import load_splits

    source = "mnist" if dataset == "binarized-mnist" else dataset
    if dataset == "binarized-mnist" and not binary:
        raise ValueError("binarized-mnist has no grey levels: its classifier is MNIST's, on "
                         "binary pixels (binary=True, --pixels draw)")
    train, valid, test = load_splits(source, binarize="none", data_dir=data_dir,
                                     download=download)
    kind = "binary" if binary else "grey"
    expect = {"version": CLASSIFIER_VERSION, "dataset": source, "input": kind, "seed": seed,
              "epochs": epochs, "data": train.info.get("sha256")}
    path = classifier_cache_dir(cache_dir) / f"{source}-{kind}-seed{seed}-e{epochs}-" \
                                             f"{CLASSIFIER_VERSION}.pt"
    net = _load_cached(path, expect)
    if net is not None:
        log(f"classifier: {describe(net)} (trained in {net.info['seconds']:.0f} s), from {path}")
        net.path = path
        return net
    log(f"classifier: training a CNN on {source} {kind} images ({len(train)} train, "
        f"{len(valid)} valid), {epochs} epochs, seed {seed}, {torch.get_num_threads()} "
        f"thread(s); done once, then cached")
    net = train_classifier(train, valid, test, binary=binary, epochs=epochs, seed=seed,
                           progress=progress, log=log)
    net.info.update({**expect, "image_shape": list(net.image_shape),
                     "num_classes": net.num_classes})
    save_checkpoint(path, {"format": 1, "state": net.state_dict(), "info": net.info})
    log(f"classifier: {describe(net)}, trained in {net.info['seconds']:.0f} s; saved {path}")
    net.path = path
    return net
