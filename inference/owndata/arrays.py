"""Arrays from ``.npy``, ``.npz`` and ``.pt`` files: data ``x``, and labels ``y`` if present.

A ``.npy`` file holds ``x``. A ``.npz`` file or a ``.pt`` dict holds ``x`` under one of
``X_KEYS`` (or is its only array) and ``y`` under one of ``Y_KEYS``; a ``.pt`` file
may also hold a tensor or an ``(x, y)`` tuple (read with ``weights_only=True``).

``x`` of shape (N, D) is a table of vectors; (N, H, W) grey images; (N, C, H, W) or
(N, H, W, C) images with C in 1, 3 or 4 (channels-last when the last axis is that small and
the second is not, or is larger). Images of bytes (``uint8``, or whole numbers from 0 to
255) are divided by 255; float images must already be in [0, 1]; vectors are standardised
per column with the training rows' mean and standard deviation (:func:`standardise`,
recorded in the run).
"""

from __future__ import annotations

import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.check import DataError

ARRAY_SUFFIXES = (".npy", ".npz", ".pt", ".pth")
X_KEYS = ("x", "X", "data", "images", "features", "inputs")
Y_KEYS = ("y", "Y", "labels", "label", "targets", "target")


def _pick(arrays: dict[str, Any], path: Path) -> tuple[Any, Any]:
    x_key = next((k for k in X_KEYS if k in arrays), None)
    if x_key is None:
        others = [k for k in arrays if k not in Y_KEYS]
        if len(others) != 1:
            raise DataError(f"{path} holds {', '.join(sorted(arrays)) or 'nothing'}; name the "
                            f"data array x (and the labels y), e.g. np.savez(file, x=x, y=y)")
        x_key = others[0]
    y_key = next((k for k in Y_KEYS if k in arrays), None)
    return arrays[x_key], None if y_key is None else arrays[y_key]


def _read(path: Path) -> tuple[Any, Any]:
    try:
        if path.suffix in (".npy", ".npz"):
            with open(path, "rb") as fh:  # closed even when the file is damaged
                if path.suffix == ".npy":
                    return np.load(fh, allow_pickle=False), None
                with np.load(fh, allow_pickle=False) as f:
                    arrays = {k: f[k] for k in f.files}
            return _pick(arrays, path)
        value = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise DataError(f"cannot read {path} with weights_only=True ({str(e).splitlines()[0]}"
                        f"); save plain tensors: torch.save({{'x': x, 'y': y}}, file)") from None
    except (OSError, ValueError, EOFError, RuntimeError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path}: {str(e).splitlines()[0]}; write it with "
                        f"np.save, np.savez or torch.save of tensors") from None
    if isinstance(value, dict):
        return _pick(value, path)
    if isinstance(value, (tuple, list)) and len(value) in (1, 2):
        return value[0], value[1] if len(value) == 2 else None
    return value, None


def _as_numpy(a: Any, name: str, path: Path) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    if not isinstance(a, np.ndarray):
        raise DataError(f"{path}: {name} is a {type(a).__name__}, not an array; save arrays "
                        f"or tensors")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{path}: {name} has dtype {a.dtype}, not numbers; convert it with "
                        f"x.astype(np.float32) before saving")
    return a


def _image_layout(x: np.ndarray, path: Path) -> np.ndarray:
    """(N, C, H, W) from (N, H, W), (N, C, H, W) or (N, H, W, C)."""
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4) and (x.shape[1] not in (1, 3, 4)
                                         or x.shape[-1] < x.shape[1]):
            x = x.transpose(0, 3, 1, 2)  # channels last: the smaller of two small axes
        if x.shape[1] not in (1, 3, 4):
            raise DataError(f"{path}: images of shape {tuple(x.shape[1:])} have no channel "
                            f"axis of 1, 3 or 4; save them as (N, C, H, W) or (N, H, W, C)")
        return x[:, :3]  # an alpha channel is dropped
    raise DataError(f"{path}: x has shape {x.shape}; expected (N, D) vectors, (N, H, W) or "
                    f"(N, C, H, W) / (N, H, W, C) images")


def _check_finite(x: np.ndarray, path: Path) -> None:
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x.reshape(len(x), -1))
        row, col = (int(i[0]) for i in np.nonzero(bad))
        raise DataError(f"{path}: x has {int(bad.sum())} NaN or infinite values (first at row "
                        f"{row}, column {col}); for missing values write a table (CSV or "
                        f"Parquet, empty cells) and train on it with --data file.csv")


def _image_pixels(x: np.ndarray, path: Path) -> tuple[np.ndarray, dict]:
    """Images in [0, 1] and how they were scaled."""
    lo, hi = float(x.min()), float(x.max())
    whole = x.dtype.kind in "biu" or bool(np.all(x == np.round(x)))
    if x.dtype == np.uint8 or (lo >= 0 and hi <= 255 and hi > 1 and whole):
        return x.astype(np.float32) / 255, {"kind": "divide", "by": 255, "range": [0, 1]}
    if lo >= 0 and hi <= 1:
        return x.astype(np.float32), {"kind": "none", "range": [0, 1]}
    raise DataError(f"{path}: image values range from {lo:g} to {hi:g}; save bytes (0-255) or "
                    f"floats in [0, 1]")


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) images resized (bilinear, antialiased) so the shorter side is ``size``,
    then centre-cropped to size x size, as the image folder reader does."""
    from torch.nn import functional as F

    h, w = x.shape[-2:]
    scale = size / min(h, w)
    new = (max(size, round(h * scale)), max(size, round(w * scale)))
    x = F.interpolate(x, size=new, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return x[..., top:top + size, left:left + size].clamp(0, 1)


def read_arrays(path: str | Path, *, image_size: int | None = None,
                channels: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None, dict]:
    """``x`` (N, D) flat, ``y`` (N,) or None, and a record of what was read and how it was
    scaled. Vectors come back unscaled (see :func:`standardise`)."""
    path = Path(path).expanduser().resolve()
    raw_x, raw_y = _read(path)
    x = _as_numpy(raw_x, "x", path)
    if x.ndim < 2 or len(x) == 0:
        raise DataError(f"{path}: x has shape {x.shape}; expected N >= 1 rows, (N, D) or images")
    _check_finite(x, path)
    y = None if raw_y is None else _labels(_as_numpy(raw_y, "y", path), len(x), path)
    record: dict[str, Any] = {"kind": "arrays", "source": str(path),
                              "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16],
                              "stored": {"shape": list(x.shape), "dtype": str(x.dtype)},
                              "classes": None if y is None else sorted(set(y.tolist()))}
    if x.ndim == 2:
        if image_size is not None or channels != "auto":
            raise ValueError(f"--image-size and --channels are for images; {path.name} holds "
                             f"vectors of shape {tuple(x.shape)}: drop them")
        record.update(image_shape=None, scaling={"kind": "standardise"})
        return torch.from_numpy(x.astype(np.float32)), y, record
    images, scaling = _image_pixels(_image_layout(x, path), path)
    t = torch.from_numpy(np.ascontiguousarray(images))  # (N, C, H, W)
    if channels == "grey" and t.shape[1] == 3:
        t = (t * torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    elif channels == "rgb" and t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    if image_size is not None:
        t = resize_images(t, image_size)
    record.update(image_shape=list(t.shape[1:]),
                  channels="grey" if t.shape[1] == 1 else "rgb", scaling=scaling,
                  resize=(f"shorter side to {image_size}, centre crop (bilinear, antialiased)"
                          if image_size else "none"))
    return t.reshape(len(t), -1).contiguous(), y, record


def _labels(y: np.ndarray, n: int, path: Path) -> torch.Tensor:
    if y.shape != (n,):
        raise DataError(f"{path}: y has shape {y.shape}; expected one label per row of x, "
                        f"shape ({n},)")
    if y.dtype.kind == "f" and not np.all(y == np.round(y)):
        raise DataError(f"{path}: y holds non-whole values ({y[y != np.round(y)][0]:g}); labels "
                        f"must be class numbers 0, 1, ...")
    if y.min() < 0:
        raise DataError(f"{path}: y holds negative labels ({int(y.min())}); number the classes "
                        f"0, 1, ...")
    return torch.from_numpy(y.astype(np.int64))


def standardise(x: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Columns of ``x`` centred and scaled by the mean and standard deviation of ``rows``
    (the training rows); a constant column is only centred. Returns x and the statistics."""
    mean = x[rows].mean(0)
    std = x[rows].std(0, unbiased=False) if len(rows) > 1 else torch.ones_like(mean)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x - mean) / std, {"kind": "standardise", "mean": mean.tolist(), "std": std.tolist()}
