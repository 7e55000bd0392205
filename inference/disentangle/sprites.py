"""A dSprites-equivalent rendered procedurally: 64×64 binary images of 2-D shapes.

dSprites (Matthey, Higgins, Hassabis & Lerchner 2017) holds one 64×64 binary image for every
combination of five factors: shape (square, ellipse, heart), scale (6 values in [0.5, 1]),
orientation (40 values in [0, 2π]), position x and y (32 values each in [0, 1]); 737,280
images. :class:`Sprites` draws the same factors, with the same values, from their geometry:

* the sprite's centre sits at pixel coordinates (16 + x, 16 + y) for position indices x, y
  in 0..31, so a step of position moves the sprite by exactly one pixel (y grows downwards);
* a shape fits the disc of radius 14 · scale pixels about the centre: a square with its
  corners on that circle, an ellipse with axes 1 and 0.5 of the radius, a heart
  ((u² + v² − 1)³ ≤ u² v³, centred and shrunk into the disc);
* the shape is turned by the orientation (counter-clockwise on screen) about its centre,
  and a pixel is on when its centre falls inside the turned shape.

Every sprite stays two pixels or more from the border. As in dSprites, orientation 0 and
2π (indices 0 and 39) are the same angle, hence the same image; squares and ellipses are
symmetric under quarter and half turns, so some other orientations of a small shape also
give the same pixels (the tests count them). Rendering is a lookup: the 720 sprites
(shape × scale × orientation) are drawn once into 28×28 stamps, and an image is its stamp
pasted at the position, so 10,000 images take milliseconds.
"""

from __future__ import annotations

import functools
import math

import torch

from inference.disentangle.factors import GroundTruthData

SIZE = 64  # image height and width
RADIUS = 14.0  # pixels, at scale 1
WINDOW = 28  # stamp side: the disc of radius 14 about a pixel corner
OFFSET = 16  # centre of position index 0, in pixels
SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "x", "y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
HEART_CENTRE, HEART_RADIUS = 0.118, 1.34  # the heart curve spans v in [-1, 1.236], |u| <= 1.139


def factor_values() -> dict[str, torch.Tensor]:
    """The physical value of each factor's index, as in dSprites' ``latents_values``: shape
    1, 2, 3; scale 0.5..1 (6); orientation 0..2π (40, both ends included); x, y 0..1 (32)."""
    return {"shape": torch.arange(1.0, 4.0, dtype=torch.float64),
            "scale": torch.linspace(0.5, 1.0, 6, dtype=torch.float64),
            "orientation": torch.linspace(0.0, 2 * math.pi, 40, dtype=torch.float64),
            "x": torch.linspace(0.0, 1.0, 32, dtype=torch.float64),
            "y": torch.linspace(0.0, 1.0, 32, dtype=torch.float64)}


def inside(shape: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Whether points (u, v) of the shape's own frame (unit disc, v up) are in ``shape``."""
    if SHAPES[shape] == "square":
        half = 1 / math.sqrt(2)
        return (u.abs() <= half) & (v.abs() <= half)
    if SHAPES[shape] == "ellipse":
        return u ** 2 + (v / 0.5) ** 2 <= 1
    hu, hv = u * HEART_RADIUS, v * HEART_RADIUS + HEART_CENTRE
    return (hu ** 2 + hv ** 2 - 1) ** 3 - hu ** 2 * hv ** 3 <= 0


@functools.lru_cache(maxsize=1)
def stamps() -> torch.Tensor:
    """Every sprite centred in a 28×28 window: bool (3, 6, 40, 28, 28).

    The centre is the window's middle corner (14, 14); a pixel (row r, column c) is on
    when its centre (c + 0.5, r + 0.5), turned back by the orientation and divided by
    14 · scale, falls inside the shape. Computed in float64, so the result does not depend
    on the platform's float32 rounding at the shape's edges.
    """
    values = factor_values()
    half = WINDOW / 2
    d = torch.arange(WINDOW, dtype=torch.float64) + 0.5 - half  # pixel centres from the middle
    dx, dy = d.view(1, 1, 1, WINDOW), d.view(1, 1, WINDOW, 1)  # columns right, rows down
    scale = values["scale"].view(-1, 1, 1, 1) * RADIUS  # (6, 1, 1, 1)
    theta = values["orientation"].view(1, -1, 1, 1)  # (1, 40, 1, 1)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # screen (dx right, dy down) -> shape frame (u right, v up), turned back by θ:
    # the shape turns counter-clockwise on screen as θ grows
    u = (cos * dx - sin * dy) / scale  # (6, 40, 28, 28)
    v = (-sin * dx - cos * dy) / scale
    return torch.stack([inside(s, u, v) for s in range(len(SHAPES))])  # (3, 6, 40, 28, 28)


def render(factors: torch.Tensor) -> torch.Tensor:
    """Binary images (n, 64, 64), uint8, of factor indices (n, 5): shape, scale,
    orientation, x, y."""
    factors = Sprites().check_factors(factors)
    n = len(factors)
    shape, scale, orient, x, y = factors.unbind(-1)
    stamp = _stamps_u8()[shape, scale, orient].view(n, WINDOW * WINDOW)  # (n, 784)
    corner = (OFFSET - WINDOW // 2 + y) * SIZE + (OFFSET - WINDOW // 2 + x)  # (n,) flat
    r = torch.arange(WINDOW)
    within = (r.view(WINDOW, 1) * SIZE + r.view(1, WINDOW)).view(1, -1)  # (1, 784)
    canvas = torch.zeros(n, SIZE * SIZE, dtype=torch.uint8)
    canvas.scatter_(1, corner.view(n, 1) + within, stamp)  # each stamp pasted at its place
    return canvas.view(n, SIZE, SIZE)


@functools.lru_cache(maxsize=1)
def _stamps_u8() -> torch.Tensor:
    return stamps().to(torch.uint8)


class Sprites(GroundTruthData):
    """The procedural dSprites: five factors, 737,280 combinations, 64×64 binary images.

    >>> data = Sprites()
    >>> len(data), data.factor_sizes
    (737280, (3, 6, 40, 32, 32))
    >>> x = data.observations(data.sample_factors(4, generator=0))
    >>> tuple(x.shape), sorted(x.unique().tolist())
    ((4, 4096), [0.0, 1.0])
    """

    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    image_shape = (1, SIZE, SIZE)
    name = "sprites"

    def observations(self, factors: torch.Tensor) -> torch.Tensor:
        return render(factors).reshape(len(factors), -1).float()  # (n, 4096)

    def images(self, factors: torch.Tensor) -> torch.Tensor:
        """uint8 images (n, 64, 64)."""
        return render(factors)
