"""Convolutional decoder for colour (or grey) images of any size, with discretised logistic
pixels."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn
from torch.nn import functional as F

from models import data_plate, register_model
from models.nets import StandardNormal, activation, mlp

WIDTHS = (32, 64, 128, 256)  # channels of the stride-2 stages, as many as the size allows
MIN_LOG_SCALE = -7.0  # PixelCNN++'s floor on the logistic's log scale
SCALES = ("channel", "pixel")  # one learned scale per colour channel, or one per pixel


def default_channels(height: int, width: int) -> tuple[int, ...]:
    """As many stride-2 stages of ``WIDTHS`` as halve the image evenly down to 4 pixels
    (28 -> 14 -> 7: two; 32 -> 4: three; 64 -> 4: four), and at least one."""
    out, h, w = [], height, width
    while len(out) < len(WIDTHS) and h % 2 == 0 and w % 2 == 0 and (min(h, w) > 4 or not out):
        out.append(WIDTHS[len(out)])
        h, w = h // 2, w // 2
    return tuple(out)


def square_image(x_dim: int | None) -> tuple[int, int, int]:
    """The image shape a flat size stands for when none is given: 3 square colour channels
    if it splits so, else one grey square; (3, 32, 32) without a size."""
    if x_dim is None:
        return (3, 32, 32)
    for c in (3, 1):
        side = math.isqrt(x_dim // c)
        if x_dim % c == 0 and side * side * c == x_dim:
            return (c, side, side)
    raise ValueError(f"{x_dim} values per row are no square image; give image_shape")


def check_image(image_shape: Sequence[int] | None, channels: Sequence[int] | None,
                x_dim: int | None, who: str) -> tuple[tuple[int, int, int], tuple[int, ...]]:
    """The image shape (given, or :func:`square_image`) and the stages' channels (given, or
    :func:`default_channels`), checked against each other and the data's size."""
    image_shape = square_image(x_dim) if image_shape is None else image_shape
    if len(image_shape) != 3:
        raise ValueError(f"{who} needs images: image_shape (channels, height, width), got "
                         f"{tuple(image_shape)}")
    c, h, w = (int(v) for v in image_shape)
    channels = tuple(channels or default_channels(h, w))
    if not channels:
        raise ValueError(f"{who} halves the image at least once and needs an even height and "
                         f"width, got {h}x{w}; pick --image-size 32 or 64")
    if x_dim is not None and x_dim != c * h * w:
        raise ValueError(f"{who}: the data's {x_dim} values per row do not fit image_shape "
                         f"{(c, h, w)}; {who} is for images (--data FOLDER, --image-size)")
    step = 2 ** len(channels)
    if h % step or w % step:
        raise ValueError(f"{who}: {len(channels)} stride-2 stages need height and width "
                         f"divisible by {step}, got {h}x{w}; pick --image-size 32 or 64, or "
                         f"fewer channels")
    return (c, h, w), channels


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 − exp(d)) for d < 0, accurate at both ends (Mächler 2012)."""
    return torch.where(d > -math.log(2), (-torch.expm1(d)).log(), (-d.exp()).log1p())


class DiscretizedLogistic(dist.TorchDistribution):
    """A logistic(μ, s) rounded to the nearest of ``bins`` levels in [0, 1], the lowest and
    highest levels taking the tails (Salimans et al. 2017, PixelCNN++, eq. 2).

    P(x) = σ((x − μ + h)/s) − σ((x − μ − h)/s), h = 1 / (2 (bins − 1)); at x = 0 the first
    term alone, at x = 1 one minus the second. The masses of the ``bins`` levels sum to one,
    so log p(x) of 8-bit images is a proper log-probability (nats, or bits per dimension).

    >>> d = DiscretizedLogistic(torch.tensor(0.3), torch.tensor(0.05))
    >>> levels = torch.arange(256) / 255
    >>> round(d.log_prob(levels).exp().sum().item(), 5)
    1.0
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.unit_interval
    has_rsample = False

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, bins: int = 256,
                 validate_args: bool | None = None):
        self.loc, self.scale = torch.broadcast_tensors(torch.as_tensor(loc),
                                                       torch.as_tensor(scale))
        self.bins = bins
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> DiscretizedLogistic:
        shape = torch.Size(batch_shape)
        return DiscretizedLogistic(self.loc.expand(shape), self.scale.expand(shape), self.bins,
                                   validate_args=False)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        half = 0.5 / (self.bins - 1)
        centred = value - self.loc
        plus, minus = (centred + half) / self.scale, (centred - half) / self.scale
        mid = centred / self.scale
        # log(σ(a) − σ(b)) on the side of the logistic's mode where both CDFs are small (the
        # right of it by symmetry), in log space: exact to float precision in the far tails
        left = mid <= 0
        a, b = torch.where(left, plus, -minus), torch.where(left, minus, -plus)
        log_a, log_b = -F.softplus(-a), -F.softplus(-b)  # log σ(a), log σ(b)
        log_bin = log_a + _log1mexp((log_b - log_a).clamp(max=-1e-20))
        # a bin far narrower than the scale: its mass is the density times its width
        log_density = mid - self.scale.log() - 2 * F.softplus(mid) + math.log(2 * half)
        inner = torch.where(2 * half / self.scale < 1e-3, log_density, log_bin)
        return torch.where(value < half, -F.softplus(-plus),  # log σ(plus): the lowest level
                           torch.where(value > 1 - half, -F.softplus(minus), inner))

    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            u = torch.rand(shape, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
            x = self.loc.expand(shape) + self.scale.expand(shape) * (u.log() - (-u).log1p())
            return (x.clamp(0, 1) * (self.bins - 1)).round() / (self.bins - 1)

    @property
    def mean(self) -> torch.Tensor:
        """The exact mean, the sum of P(x ≥ level k) over the levels k = 1 ... bins − 1
        times their spacing 1 / (bins − 1), added up one level at a time."""
        step, total = 1.0 / (self.bins - 1), torch.zeros_like(self.loc)
        for k in range(1, self.bins):
            total += torch.sigmoid((self.loc - (k - 0.5) * step) / self.scale)
        return total * step


class ConvStages(nn.Module):
    """Flat images (..., c*h*w) -> features, one stride-2 convolution per entry of
    ``channels``; or, with ``transpose=True``, features -> (..., out_channels*h*w)."""

    def __init__(self, image_shape: Sequence[int], channels: Sequence[int], act: str,
                 transpose: bool = False, out_channels: int | None = None):
        super().__init__()
        c, h, w = image_shape
        self.image_shape, self.transpose = (c, h, w), transpose
        self.seed_shape = (channels[-1], h >> len(channels), w >> len(channels))
        self.features = math.prod(self.seed_shape)
        widths = [c, *channels]
        layers: list[nn.Module] = []
        if transpose:
            widths = [out_channels or c, *channels][::-1]
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
                layers.append(nn.ConvTranspose2d(a, b, 4, stride=2, padding=1))
                if i < len(widths) - 2:
                    layers.append(activation(act))
        else:
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                layers += [nn.Conv2d(a, b, 4, stride=2, padding=1), activation(act)]
        self.net = nn.Sequential(*layers)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        batch = t.shape[:-1]
        if self.transpose:  # (*batch, features) -> (*batch, out*h*w)
            out = self.net(t.reshape(-1, *self.seed_shape))
            return out.reshape(*batch, -1)
        out = self.net(t.reshape(-1, *self.image_shape))  # (B, c_L, h/2^L, w/2^L)
        return out.reshape(*batch, self.features)


@register_model("conv_rgb")
class ConvRGB(PyroModule):
    """VAE generative model for colour (or grey) images of a chosen size, with a
    convolutional decoder and discretised logistic pixels (Salimans et al. 2017).

    Generative story::

        z        ~ Normal(0, I)                               z in R^z_dim
        h        = MLP(z)                                      z_dim -> hidden -> features
        μ        = deconv(h)                                   L stride-2 transposed convs
        x_i | z  ~ DiscretizedLogistic(μ_i, s_c(i)), 256 levels  s_c learned per channel

    Natural images are 8-bit intensities: a discretised likelihood gives each of the 256
    levels a probability (so −log p(x) is a code length in nats, comparable in bits per
    dimension), keeps a learned scale (a Bernoulli has none and is no density on
    grey levels; a Gaussian on [0, 1] is a density whose value grows without bound as its
    scale shrinks), and puts mass on the saturated levels 0 and 255 that photographs hold
    often. ``x`` is a flat image in [0, 1] laid out as ``image_shape = (c, h, w)``;
    ``scale="channel"`` (default) learns one scale per colour channel, shared by every pixel
    and image (a calibrated decoder, Rybkin et al. 2021); ``"pixel"`` lets the decoder predict
    a scale for every pixel of every image, which is more flexible but here learned colours
    far more slowly and gave degenerate importance weights. ``init_scale`` is where the
    scales start.
    ``channels`` (default :func:`default_channels`) sets the stages, each halving h and w;
    without ``image_shape`` the data's size ``x_dim`` gives it (:func:`square_image`).

    ========  =======================  =====================
    site      event shape              plate
    ========  =======================  =====================
    ``z``     (z_dim,)                 data
    ``x``     (c*h*w,)                 data (observed when x is given)
    ========  =======================  =====================
    """

    def __init__(self, image_shape: Sequence[int] | None = None, z_dim: int = 64,
                 hidden: tuple[int, ...] = (512,), channels: Sequence[int] | None = None,
                 activation: str = "relu", x_dim: int | None = None, scale: str = "channel",
                 init_scale: float = 0.1):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        (c, h, w), channels = check_image(image_shape, channels, x_dim, "conv_rgb")
        self.image_shape, self.x_dim, self.z_dim = (c, h, w), c * h * w, z_dim
        self.scale = scale
        self.log_scale_offset = math.log(init_scale)  # the scales start near init_scale
        if scale == "channel":
            self.log_scale = nn.Parameter(torch.zeros(c))  # (c,), added to the offset
        self.stages = ConvStages(self.image_shape, channels, activation, transpose=True,
                                 out_channels=(2 if scale == "pixel" else 1) * c)
        self.trunk = mlp([z_dim, *hidden, self.stages.features], activation,
                         final_activation=True)
        self.prior = StandardNormal(z_dim)

    def pixels(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logistic's location and scale of every pixel, each (..., c*h*w)."""
        out = self.stages(self.trunk(z))  # (..., k*c*h*w), channels first (k = 1 or 2)
        c, h, w = self.image_shape
        out = out.reshape(*out.shape[:-1], -1, h * w)  # (..., k*c, h*w)
        loc = out[..., :c, :].reshape(*out.shape[:-2], -1) + 0.5  # (..., c*h*w)
        if self.scale == "pixel":
            raw = out[..., c:, :].reshape(*out.shape[:-2], -1)  # (..., c*h*w)
        else:
            raw = self.log_scale[:, None].expand(c, h * w).reshape(-1)  # (c*h*w,)
        log_scale = (raw + self.log_scale_offset).clamp_min(MIN_LOG_SCALE)
        return loc, log_scale.exp().expand_as(loc)

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())  # (*particles, N, z_dim)
            loc, scale = self.pixels(z)  # (*particles, N, c*h*w) each
            return pyro.sample("x", DiscretizedLogistic(loc, scale).to_event(1), obs=x)
