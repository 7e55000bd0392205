"""The input-complexity correction (Serrà, Álvarez, Gómez, Slizovskaia, Núñez & Luque,
"Input Complexity and Out-of-distribution Detection with Likelihood-based Generative
Models", ICLR 2020).

A likelihood mixes how typical an image is with how complex it is: simple images (a dark
background, a few strokes) are likely under any model. Serrà et al. measure complexity as
the length L(x) of the image under a lossless compressor, a universal model of images that
knows nothing of the training set, and score

    S(x) = −log p(x) − L(x)          (both in nats here; the paper uses bits per dimension)

a likelihood ratio against the compressor: high S means the model explains x worse than a
generic compressor does, i.e. x is out of distribution.

Compressors, through Pillow (which torchvision depends on) or Python's standard library:

============  ==============================================================================
``tiff-g4``   CCITT Group 4 (ITU-T T.6), the standard lossless code for bilevel (fax)
              images, written by Pillow's libtiff. The default for binary images.
``png``       PNG (DEFLATE behind PNG's row filters, ``optimize=True``), 8-bit grey levels:
              Serrà et al.'s PNG. The default for grey-level images.
``zlib``      DEFLATE (level 9) of the raw pixels, no filters: 1 bit per pixel for binary
              images (packed), else 8.
============  ==============================================================================

L(x) counts the compressed data, not the container around it (the TIFF strip, the PNG IDAT
chunks, the raw DEFLATE stream): headers are the same for every image and would only shift
L. A code never needs to be longer than the pixels it was given (as DEFLATE's stored blocks
and T.6's uncompressed mode provide), so L(x) is the shorter of the two plus one byte
saying which; the pixels given are 1 bit each for Group 4 and for DEFLATE of a binary
image, 8 bits each for PNG. Without it Group 4 spends about twice the raw size on pixel
noise, and noise would look more in-distribution than the training data.
"""

from __future__ import annotations

import io
import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from inference.data import as_data

NATS_PER_BYTE = 8 * math.log(2)


def _image(a: np.ndarray, bilevel: bool):
    from PIL import Image

    if a.ndim == 3 and a.shape[0] == 3:
        return Image.fromarray(np.moveaxis(a, 0, -1), "RGB")
    image = Image.fromarray(a.reshape(a.shape[-2:]), "L")
    return image.convert("1") if bilevel else image


def _saved(image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **options)
    return buffer.getvalue()


def _tiff_g4(a: np.ndarray, bilevel: bool) -> int:
    """Bytes of the Group 4 code: the TIFF's strips (StripByteCounts, tag 279)."""
    from PIL import Image

    if not bilevel:
        raise ValueError("the tiff-g4 compressor codes bilevel images only; these have grey "
                         "levels: use png (compressor='png')")
    saved = _saved(_image(a, True), format="TIFF", compression="group4")
    with Image.open(io.BytesIO(saved)) as image:
        return int(sum(image.tag_v2[279]))


def _png(a: np.ndarray, bilevel: bool) -> int:
    """Bytes of the PNG's image data: its IDAT chunks' contents."""
    saved, total, at = _saved(_image(a, False), format="PNG", optimize=True), 0, 8
    while at < len(saved):  # chunks: length (4), type (4), data, CRC (4)
        length = int.from_bytes(saved[at:at + 4], "big")
        if saved[at + 4:at + 8] == b"IDAT":
            total += length
        at += 12 + length
    return total


def _zlib(a: np.ndarray, bilevel: bool) -> int:
    """Bytes of a raw DEFLATE stream (no zlib header) of the pixels."""
    raw = np.packbits(a > 0).tobytes() if bilevel else a.tobytes()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    return len(deflate.compress(raw) + deflate.flush())


# name -> function of one image (uint8 array, 0/255 when bilevel) giving its length in bytes
COMPRESSORS: dict[str, Callable[[np.ndarray, bool], int]] = {
    "tiff-g4": _tiff_g4, "png": _png, "zlib": _zlib}


def is_bilevel(x: torch.Tensor) -> bool:
    """Whether every value is 0 or 1."""
    return bool(((x == 0) | (x == 1)).all())


def choose_compressor(x: torch.Tensor, compressor: str = "auto") -> str:
    """``compressor``, or for ``"auto"``: tiff-g4 for bilevel images, png for grey levels."""
    if compressor == "auto":
        return "tiff-g4" if is_bilevel(x) else "png"
    if compressor not in COMPRESSORS:
        raise ValueError(f"unknown compressor {compressor!r}; choose auto or one of "
                         f"{', '.join(COMPRESSORS)}")
    return compressor


def _shape(data, image_shape: Sequence[int] | None, d: int) -> tuple[int, ...]:
    shape = tuple(image_shape or getattr(data, "image_shape", None) or ())
    if not shape:
        side = math.isqrt(d)
        if side * side != d:
            raise ValueError(f"cannot lay {d} values out as a square image; give image_shape")
        shape = (side, side)
    if math.prod(shape) != d or len(shape) not in (2, 3) or (
            len(shape) == 3 and shape[0] not in (1, 3)):
        raise ValueError(f"image_shape {shape} does not fit rows of {d} values as a grey "
                         f"(H, W) / (1, H, W) or colour (3, H, W) image")
    return shape


def compressed_length(x, *, compressor: str = "auto",
                      image_shape: Sequence[int] | None = None) -> torch.Tensor:
    """L(x): the length of each image under a lossless compressor, in nats (N,) float64:
    the compressed data or the pixels the compressor was given, whichever is shorter, plus
    a byte (module docstring).

    ``x``: flat images (N, D) with values in [0, 1] (a tensor or ``TensorData``), quantized
    to 8 bits (round(255 x)); bilevel images stay 0/1. ``image_shape`` defaults to the
    data's, else a square.

    >>> blank, busy = torch.zeros(1, 784), torch.bernoulli(torch.full((1, 784), 0.5))
    >>> bool(compressed_length(blank) < compressed_length(busy))
    True
    """
    data = as_data(x)
    values = torch.cat([xb for xb, _ in data.batches(4096)]).detach().cpu()
    if values.dim() != 2 or not torch.isfinite(values).all() or values.min() < 0 or (
            values.max() > 1):
        raise ValueError("compressed lengths need flat images (N, D) with values in [0, 1]")
    name = choose_compressor(values, compressor)
    bilevel = is_bilevel(values)
    shape = _shape(data, image_shape, values.shape[1])
    pixels = (values * 255).round().to(torch.uint8).numpy()
    code = COMPRESSORS[name]
    one_bit = bilevel and name in ("tiff-g4", "zlib")
    raw = math.ceil(values.shape[1] / 8) if one_bit else values.shape[1]  # bytes given
    lengths = [min(code(row.reshape(shape), bilevel), raw) + 1 for row in pixels]
    return torch.tensor(lengths, dtype=torch.float64) * NATS_PER_BYTE


def complexity_scores(nll: torch.Tensor, x, *, compressor: str = "auto",
                      image_shape: Sequence[int] | None = None) -> torch.Tensor:
    """S(x) = −log p̂(x) − L(x) (N,), nats: ``nll`` from
    :func:`~inference.anomaly.anomaly_scores`, L from :func:`compressed_length`."""
    lengths = compressed_length(x, compressor=compressor, image_shape=image_shape)
    if nll.shape != lengths.shape:
        raise ValueError(f"nll has shape {tuple(nll.shape)} but x has {len(lengths)} images")
    return nll.detach().cpu().double() - lengths


__all__ = ["COMPRESSORS", "choose_compressor", "complexity_scores", "compressed_length",
           "is_bilevel"]
