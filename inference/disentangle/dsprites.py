"""DeepMind's dSprites file, read into the interface of :class:`~.sprites.Sprites`.

``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (Matthey, Higgins, Hassabis & Lerchner
2017, https://github.com/deepmind/dsprites-dataset, Apache 2.0) holds ``imgs`` (737,280 ×
64 × 64, values 0 and 1) in the order of its factors (color, shape, scale, orientation,
posX, posY), the last fastest. The images are read in chunks and kept bit-packed (377 MB
instead of 3 GB). A missing file is downloaded when allowed and checked against the
digests that other projects publish for it (MD5 and SHA-1; they could not be checked from
the machine this was written on, which has no network).
"""

from __future__ import annotations

import hashlib
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from inference.check import DataError
from inference.disentangle.factors import GroundTruthData
from inference.disentangle.sprites import FACTOR_NAMES, FACTOR_SIZES, SIZE

FILE = "dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz"
FOLDER = "dSprites"
URL = "https://github.com/deepmind/dsprites-dataset/raw/master/" + FILE
DIGESTS = {"md5": "7da33b31b13a06f4b04a70402ce90c2e",  # published by the latte project
           "sha1": "3e0a46a9238e425f46a6ef9e9bdfd7cedb35d50f"}  # and by another user of it
CHUNK = 16384  # images read at a time (64 MiB as bytes)


def _digests(path: Path) -> dict[str, str]:
    hashes = {name: hashlib.new(name) for name in DIGESTS}
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def download(folder: Path) -> Path:
    """Fetch the file into ``folder`` and check its digests; the file, or a DataError."""
    folder.mkdir(parents=True, exist_ok=True)
    target, tmp = folder / FILE, folder / (FILE + ".part")
    try:
        urllib.request.urlretrieve(URL, tmp)
    except Exception as e:  # no network, a proxy, a full disk: all end the same way
        tmp.unlink(missing_ok=True)
        raise DataError(f"dsprites: {FILE} is not in {folder} and downloading it failed "
                        f"({type(e).__name__}: {e}); put the file there, or use --dataset "
                        f"sprites (rendered, no file needed)") from e
    got = _digests(tmp)
    if got != DIGESTS:
        tmp.unlink()
        raise DataError(f"the downloaded {FILE} does not match its published digests "
                        f"({got} instead of {DIGESTS})")
    tmp.replace(target)
    return target


def find(root: Path, download_missing: bool) -> Path:
    """``root/dSprites/<file>`` or ``root/<file>``; downloaded into the first when missing."""
    for path in (root / FOLDER / FILE, root / FILE):
        if path.exists():
            return path
    if download_missing:
        return download(root / FOLDER)
    raise DataError(f"dsprites: {FILE} is not in {root / FOLDER}; download it from {URL} "
                    f"there, allow downloading, or use --dataset sprites (rendered)")


def read_packed(path: Path, count: int = int(np.prod(FACTOR_SIZES))) -> np.ndarray:
    """The ``count`` images of a dSprites file, bit-packed along the rows: uint8
    (count, 64, 8)."""
    try:
        with zipfile.ZipFile(path) as z, z.open("imgs.npy") as f:
            version = np.lib.format.read_magic(f)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(f)
            expected = (count, SIZE, SIZE)
            if tuple(shape) != expected or fortran or dtype.itemsize != 1:
                raise DataError(f"{path}: imgs is {shape} {dtype}, not {expected} bytes; is "
                                f"it the dSprites file?")
            packed = np.empty((shape[0], SIZE, SIZE // 8), dtype=np.uint8)
            for start in range(0, shape[0], CHUNK):
                rows = min(CHUNK, shape[0] - start)
                raw = f.read(rows * SIZE * SIZE)
                if len(raw) != rows * SIZE * SIZE:
                    raise DataError(f"{path} is truncated; delete it and download it again")
                block = np.frombuffer(raw, dtype=np.uint8).reshape(rows, SIZE, SIZE)
                packed[start:start + rows] = np.packbits(block != 0, axis=-1)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as e:
        raise DataError(f"cannot read {path} as the dSprites file ({type(e).__name__}: "
                        f"{e}); delete it and download it again") from e
    return packed


class DSprites(GroundTruthData):
    """DeepMind's dSprites images, addressed by the same five factors as
    :class:`~.sprites.Sprites` (the colour factor, of one value, left out as
    disentanglement_lib does)."""

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    image_shape = (1, SIZE, SIZE)
    name = "dsprites"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.packed = torch.from_numpy(read_packed(self.path))  # (737280, 64, 8)

    def images(self, factors: torch.Tensor) -> torch.Tensor:
        """uint8 images (n, 64, 64) of factor combinations (n, 5)."""
        rows = self.packed[self.index(factors)].numpy()  # (n, 64, 8)
        return torch.from_numpy(np.unpackbits(rows, axis=-1))

    def observations(self, factors: torch.Tensor) -> torch.Tensor:
        return self.images(factors).reshape(len(factors), -1).float()  # (n, 4096)
