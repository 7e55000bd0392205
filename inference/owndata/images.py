"""A folder of images (PNG, JPEG, BMP, GIF, TIFF, WebP) as flat pixels in [0, 1].

The layout is torchvision's ``ImageFolder``: each subfolder is a class, its name the label,
classes numbered in sorted order; a folder with no subfolders gives unlabelled images. Each
image is resized so that its shorter side is ``image_size`` and centre-cropped to a square
(torchvision's ``Resize`` then ``CenterCrop``); without ``image_size`` every image must have
the first one's size. ``channels``: ``"grey"`` (one channel, ITU-R 601 luma as Pillow's
``convert("L")``), ``"rgb"`` (three), or ``"auto"``: grey when every image is stored grey,
else RGB. Transparency is dropped (composited on nothing: the colour channels are kept).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.check import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm")
CHANNELS = ("auto", "grey", "rgb")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "F", "P;L")  # modes Pillow stores without colour


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and \
        path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    """The image files of ``folder`` in sorted order, their labels and the class names
    (None, None for a folder without class subfolders)."""
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder of images")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    top = sorted(p for p in folder.iterdir() if _is_image(p))
    if subdirs and top:
        raise DataError(f"{folder} holds images both at its top ({top[0].name}, ...) and in "
                        f"subfolders ({subdirs[0].name}/, ...); put every image in a class "
                        f"subfolder, or none in subfolders")
    if not subdirs:
        if not top:
            raise DataError(f"{folder} holds no image files ({', '.join(IMAGE_EXTENSIONS)}); "
                            f"point --data at a folder of images or of class subfolders")
        return top, None, None
    files, labels, classes = [], [], []
    for sub in subdirs:
        found = sorted(p for p in sub.rglob("*") if _is_image(p))
        if found:
            labels += [len(classes)] * len(found)
            classes.append(sub.name)
            files += found
    if not files:
        raise DataError(f"the subfolders of {folder} hold no image files "
                        f"({', '.join(IMAGE_EXTENSIONS)})")
    return files, labels, classes


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    """The mode and size of an image file, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: {str(e).splitlines()[0] or type(e).__name__}") from None


def _decode(path: Path, grey: bool, size: int | None) -> np.ndarray:
    """(C, H, W) uint8 pixels of a whole image file (a truncated one fails here)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return _to_array(image, grey, size)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: {str(e).splitlines()[0] or type(e).__name__}") from None


def _to_array(image, grey: bool, size: int | None) -> np.ndarray:
    """(C, H, W) uint8 pixels of one image, converted, resized and cropped."""
    from PIL import Image

    image = image.convert("L" if grey else "RGB")
    if size is not None:
        w, h = image.size
        scale = size / min(w, h)
        image = image.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=None)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if grey else pixels.transpose(2, 0, 1)  # (C, H, W)


def _each(files: list[Path], folder: Path, read) -> list:
    """``read(path)`` of every file; every file that fails is named in one line."""
    out, bad = [], []
    for path in files:
        try:
            out.append(read(path))
        except DataError as e:
            bad.append(str(e).replace(f"{folder}/", ""))
    if bad:
        them = "it" if len(bad) == 1 else "them"
        raise DataError(f"cannot read {len(bad)} of the {len(files)} images in {folder}: "
                        f"{'; '.join(bad[:3])}{'; ...' if len(bad) > 3 else ''}; delete or "
                        f"replace {them}, or move {them} out of the folder")
    return out


def read_image_folder(folder: str | Path, *, image_size: int | None = None,
                      channels: str = "auto") -> tuple[torch.Tensor, torch.Tensor | None,
                                                       dict[str, Any]]:
    """Read every image of ``folder``: flat pixels x (N, C*H*W) in [0, 1] (bytes / 255),
    labels y (N,) or None, and a record of what was read. Every unreadable file is named in
    one line (:class:`~inference.check.DataError`), with the fix."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    if image_size is not None and image_size < 1:
        raise ValueError(f"--image-size must be a positive number of pixels, got {image_size}")
    folder = Path(folder).expanduser().resolve()
    files, labels, classes = list_images(folder)
    headers = _each(files, folder, _header)
    stored_grey = all(mode in GREY_MODES for mode, _ in headers)
    grey = channels == "grey" or (channels == "auto" and stored_grey)
    if image_size is None:
        sizes = [size for _, size in headers]
        other = next((i for i, s in enumerate(sizes) if s != sizes[0]), None)
        if other is not None:
            raise DataError(f"the images of {folder} differ in size ({files[0].name} is "
                            f"{sizes[0][0]}x{sizes[0][1]}, {files[other].relative_to(folder)} "
                            f"is {sizes[other][0]}x{sizes[other][1]}); choose one size with "
                            f"--image-size N (shorter side resized, centre crop)")
    pixels = np.stack(_each(files, folder, lambda p: _decode(p, grey, image_size)))
    x = torch.from_numpy(pixels).reshape(len(pixels), -1).float() / 255  # (N, C*H*W)
    y = None if labels is None else torch.tensor(labels, dtype=torch.long)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    record = {"kind": "images", "source": str(folder), "files": len(files),
              "sha256": digest.hexdigest()[:16], "classes": classes,
              "image_shape": list(pixels.shape[1:]),
              "channels": "grey" if grey else "rgb",
              "channels_detected": "grey" if stored_grey else "rgb",
              "resize": (f"shorter side to {image_size}, centre crop {image_size}x{image_size}"
                         f" (bilinear)" if image_size else "none (all one size)"),
              "scaling": {"kind": "divide", "by": 255, "range": [0, 1]}}
    return x, y, record
