"""MNIST, Fashion-MNIST, the Larochelle binarized MNIST, an embedded MNIST subset, and the
sprites with known factors (:mod:`inference.disentangle.data`).

Files are read from a data folder in torchvision's layout (``MNIST/raw``,
``FashionMNIST/raw``) plus ``BinarizedMNIST/binarized_mnist_{split}.amat[.gz]``. The folder
is ``data_dir=`` if given, else ``$VAE_LAB_DATA``, else ``~/.cache/pyro-vae-lab``. Missing
files are downloaded (torchvision for MNIST and Fashion-MNIST) unless ``download=False``.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import urllib.request
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from inference.check import DataError
from inference.data import ENV_VAR, TensorData, resolve_data_dir

DATASETS = ("embedded", "mnist", "fashion-mnist", "binarized-mnist", "sprites", "dsprites")
BINARIZE = ("dynamic", "static", "none")
IMAGE_SHAPE = (1, 28, 28)
_IDX = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_PREFIX = {"train": "train", "test": "t10k"}
_AMAT_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
_AMAT_SHA256 = {  # of the decompressed .amat files (TensorFlow Datasets' checksums)
    "train": "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d",
    "valid": "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2",
    "test": "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c",
}


def _open_bytes(path: Path) -> bytes:
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:
        raise DataError(f"cannot read {path}: {e}; delete it and download it again") from e


def read_idx(path: Path) -> torch.Tensor:
    """Read an idx file (LeCun's MNIST format) of unsigned bytes, compressed or not."""
    raw = _open_bytes(path)
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise DataError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset, size = 4 + 4 * ndim, int(np.prod(dims))
    if len(raw) != offset + size:
        raise DataError(f"{path} is truncated or corrupted: header says {dims} "
                        f"({offset + size} bytes), file has {len(raw)}")
    return torch.frombuffer(bytearray(raw[offset:]), dtype=torch.uint8).reshape(dims)


def read_amat(path: Path) -> torch.Tensor:
    """Read a Larochelle ``.amat`` file: one image a line, 784 space-separated 0/1 values."""
    raw = np.frombuffer(_open_bytes(path), dtype=np.uint8)
    width = 2 * 784  # each value is one digit and one separator
    if raw.size == 0 or raw.size % width:
        raise DataError(f"{path} is not a binarized-MNIST .amat file (size {raw.size} is not a "
                        f"multiple of {width} bytes)")
    rows = raw.reshape(-1, width)
    digits, seps = rows[:, 0::2], rows[:, 1::2]
    ok_seps = (seps[:, :-1] == ord(" ")).all() and (seps[:, -1] == ord("\n")).all()
    if not ok_seps or not np.isin(digits, (ord("0"), ord("1"))).all():
        raise DataError(f"{path} is not a binarized-MNIST .amat file (expected lines of 784 "
                        f"space-separated 0/1 values)")
    return torch.from_numpy((digits - ord("0")).astype(np.float32))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _find(folder: Path, stem: str, suffixes=("", ".gz", ".xz")) -> Path | None:
    return next((folder / (stem + s) for s in suffixes if (folder / (stem + s)).exists()), None)


def _download_torchvision(name: str, root: Path) -> None:
    import torchvision  # imported here: only a download needs it

    cls = {"mnist": torchvision.datasets.MNIST, "fashion-mnist": torchvision.datasets.FashionMNIST}
    try:
        for train in (True, False):
            cls[name](str(root), train=train, download=True)
    except Exception as e:  # no network, a proxy, a full disk: all end the same way
        raise DataError(f"{name} is not in {root / _IDX[name] / 'raw'} and downloading it failed "
                        f"({type(e).__name__}: {e}); point --data-dir or ${ENV_VAR} at a folder "
                        f"that holds {_IDX[name]}/raw/*-ubyte.gz") from e


def _download_amat(split: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"binarized_mnist_{split}.amat"
    tmp = target.with_suffix(".part")
    try:
        urllib.request.urlretrieve(_AMAT_URL + target.name, tmp)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise DataError(f"binarized-mnist is not in {folder} and downloading it failed "
                        f"({type(e).__name__}: {e}); point --data-dir or ${ENV_VAR} at a folder "
                        f"that holds BinarizedMNIST/binarized_mnist_{split}.amat[.gz]") from e
    if _sha256(tmp) != _AMAT_SHA256[split]:
        tmp.unlink()
        raise DataError(f"the downloaded {target.name} does not match its published checksum")
    tmp.replace(target)


def _idx_files(name: str, split: str, root: Path, download: bool) -> list[Path]:
    if name == "embedded":
        folder = Path(str(resources.files("inference").joinpath("assets", "mnist-embedded")))
    else:
        folder = root / _IDX[name] / "raw"
    stems = [f"{_PREFIX[split]}-images-idx3-ubyte", f"{_PREFIX[split]}-labels-idx1-ubyte"]
    paths = [_find(folder, s) for s in stems]
    if None in paths and name != "embedded" and download:
        _download_torchvision(name, root)
        paths = [_find(folder, s) for s in stems]
    if None in paths:
        missing = stems[paths.index(None)]
        raise DataError(f"{name}: {missing}[.gz] is not in {folder}; point --data-dir or "
                        f"${ENV_VAR} at a folder that holds {_IDX.get(name, name)}/raw, or allow "
                        f"downloading")
    return paths


def _amat_file(split: str, root: Path, download: bool) -> Path:
    folder, stem = root / "BinarizedMNIST", f"binarized_mnist_{split}.amat"
    path = _find(folder, stem, ("", ".gz"))
    if path is None and download:
        _download_amat(split, folder)
        path = folder / stem
    if path is None:
        raise DataError(f"binarized-mnist: {stem}[.gz] is not in {folder}; point --data-dir or "
                        f"${ENV_VAR} at a folder that holds BinarizedMNIST/, or allow downloading")
    return path


# Training images held out for validation by default: the last 10,000 of MNIST's and
# Fashion-MNIST's 60,000 (the split of Larochelle's binarized MNIST), the last 1,000 of the
# embedded 10,000. binarized-mnist has its own valid file.
DEFAULT_VALID = {"embedded": 1000, "mnist": 10000, "fashion-mnist": 10000, "sprites": 5000,
                 "dsprites": 5000}


def _rows(name: str, split: str, valid: int, n: int) -> slice:
    """Which rows of the training file ``split`` takes when ``valid`` are held out."""
    if split == "test":
        return slice(None)
    if valid >= n:
        raise ValueError(f"cannot hold out {valid} of the {n} training images of {name} for "
                         f"validation; choose fewer (--valid)")
    return slice(n - valid, n) if split == "valid" else slice(0, n - valid)


def is_path(name: str | os.PathLike) -> bool:
    """Whether ``name`` is the user's own data (a path) rather than one of :data:`DATASETS`."""
    return isinstance(name, os.PathLike) or (name not in DATASETS and (
        os.sep in str(name) or Path(name).suffix != "" or Path(name).exists()))


def load_dataset(name: str | os.PathLike = "embedded", split: str = "train", *,
                 binarize: str | None = None, data_dir: str | os.PathLike | None = None,
                 download: bool = True, seed: int = 0, valid: int = 0,
                 **options) -> TensorData:
    """Load one split as flat (N, 784) pixels in [0, 1] with labels where the set has them.

    ``name`` may also be a path to your own data: a folder of images, an array file or a
    table (:func:`inference.owndata.load.load_source`, whose ``image_size``, ``channels``,
    ``test`` and ``schema`` are the ``options``); ``test`` and ``valid`` rows are then
    held out at random, and ``binarize`` defaults to ``"none"``.

    ``split``: ``train``, ``valid`` or ``test``. ``binarized-mnist`` (Larochelle & Murray
    2011) has a file for each. For the others ``valid`` is the last ``valid`` images of the
    training file, and ``train`` the images before them (all of them with ``valid=0``);
    :data:`DEFAULT_VALID` holds the lab's defaults. ``binarize``: ``"dynamic"`` draws fresh
    Bernoulli pixels in every training minibatch (a test or validation split gets one fixed
    draw, seeded by ``seed``, so that scores are comparable across epochs); ``"static"`` one
    fixed draw; ``"none"`` grey levels / 255. ``binarized-mnist`` is binary already.
    """
    if is_path(name):
        part = _own(name, binarize, seed, valid, options).get(split)
        if part is None:
            raise ValueError(f"{name} has splits train, valid (with valid=N) and test, not "
                             f"{split!r}" + ("; hold out rows with valid=N" if split == "valid"
                                             else ""))
        return part
    if options:
        raise TypeError(f"{', '.join(options)}: only for your own data (a path), not {name}")
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or "
                         f"give a path to your own data")
    binarize = "dynamic" if binarize is None else binarize
    if binarize not in BINARIZE:
        raise ValueError(f"binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}")
    if split not in ("train", "valid", "test"):
        raise ValueError(f"{name} has splits train, valid and test, not {split!r}")
    if split == "valid" and not valid and name != "binarized-mnist":
        raise ValueError(f"{name} has no validation file: hold out training images with "
                         f"valid=N (--valid N)")
    root = resolve_data_dir(data_dir)
    if name in ("sprites", "dsprites"):  # binary images, rendered or read: no binarization
        from inference.disentangle.data import load_factor_split  # the factor code, on demand

        return load_factor_split(name, split, valid=valid, data_dir=root, download=download)
    if name == "binarized-mnist":
        files = [_amat_file(split, root, download)]
        x, y, binarize = read_amat(files[0]), None, "static (Larochelle & Murray 2011)"
        rows = "its own file"
    else:
        files = _idx_files(name, "test" if split == "test" else "train", root, download)
        images, labels = (read_idx(p) for p in files)
        take = _rows(name, split, valid, len(images))
        x, y = images.reshape(len(images), -1)[take].float() / 255, labels[take].long()
        if binarize == "static" or (binarize == "dynamic" and split != "train"):
            x = torch.bernoulli(x, generator=torch.Generator().manual_seed(seed))
            binarize = f"static (one Bernoulli draw, seed {seed})"
        rows = ("all" if split == "test" or not valid else
                f"{'last' if split == 'valid' else 'first'} {len(x)} of the training file")
    info = {"name": name, "split": split, "n": len(x), "shape": list(x.shape[1:]),
            "binarize": binarize, "rows": rows, "folder": str(files[0].parent),
            "sha256": {p.name: _sha256(p)[:16] for p in files}}
    return TensorData(x, y, binarize="dynamic" if binarize == "dynamic" else "none",
                      image_shape=IMAGE_SHAPE, info=info)


def _own(path, binarize: str | None, seed: int, valid: int | None,
         options: dict) -> dict[str, TensorData | None]:
    from inference.owndata.load import load_source  # the readers, on demand

    if binarize is not None and binarize not in BINARIZE:
        raise ValueError(f"binarize must be one of {', '.join(BINARIZE)}, got {binarize!r}")
    return load_source(path, valid=valid, seed=seed, binarize=binarize or "none", **options)[0]


def load_splits(name: str | os.PathLike = "embedded", *, valid: int | None = None, **kwargs):
    """``(train, valid, test)`` of a dataset, the validation images held out as ``vae-train``
    holds them out: ``valid`` training images (default :data:`DEFAULT_VALID`, 10% of your
    own data's rows), or the valid file of binarized-mnist. ``valid=0`` gives no validation
    split (None). ``kwargs``: those of :func:`load_dataset`."""
    if is_path(name):
        for unused in ("data_dir", "download"):  # a path needs no data folder
            kwargs.pop(unused, None)
        splits = _own(name, kwargs.pop("binarize", None), kwargs.pop("seed", 0), valid, kwargs)
        return splits["train"], splits["valid"], splits["test"]
    if name == "binarized-mnist":
        if valid:
            raise ValueError("binarized-mnist has its own validation file; leave valid unset "
                             "(or 0 for none)")
        splits = [load_dataset(name, s, **kwargs) for s in ("train", "valid", "test")]
        return splits[0], None if valid == 0 else splits[1], splits[2]
    n = DEFAULT_VALID.get(name, 0) if valid is None else valid
    return (load_dataset(name, "train", valid=n, **kwargs),
            load_dataset(name, "valid", valid=n, **kwargs) if n else None,
            load_dataset(name, "test", **kwargs))
