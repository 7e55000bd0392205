"""VQ-VAE encoder: a grid of encoder outputs, each quantized to its nearest code."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from guides import register_guide
from models import data_plate
from models.codes import Codebook


class GridEncoder(nn.Module):
    """Flat images (..., c·h·w) to a grid of L = (h/4)(w/4) vectors of dimension D."""

    def __init__(self, image_shape, code_dim: int, channels=(32, 64)):
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"the VQ-VAE needs height and width divisible by 4, got {h}x{w}")
        c1, c2 = channels
        self.image_shape, self.length = tuple(image_shape), (h // 4) * (w // 4)
        self.net = nn.Sequential(
            nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.ReLU(),  # (B, c1, h/2, w/2)
            nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(),  # (B, c2, h/4, w/4)
            nn.Conv2d(c2, code_dim, 1))  # (B, D, h/4, w/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x.reshape(-1, *self.image_shape))  # (B, D, h/4, w/4)
        return out.flatten(2).transpose(1, 2).reshape(*x.shape[:-1], self.length, -1)


@register_guide("vqvae")
class VQGuide(PyroModule):
    """VQ-VAE encoder (van den Oord et al. 2017): z_e = f(x), a grid of L vectors, each
    replaced by its nearest code e_k of the codebook.

    Variational family: a point mass, q(z | x) = δ(z − (e_k1, ..., e_kL)), log q = 0. The
    site's value is the straight-through estimate z_e + sg(e_k − z_e): its value is the
    codes' vectors, its gradient reaches the encoder as if quantization were the identity.
    ``z_e``, ``z_q`` (= e_k) and ``codes`` are recorded as deterministic sites for the
    objective (:class:`inference.vq.VQELBO`: codebook and commitment losses, EMA updates).
    ``ema=True`` learns the codebook as moving averages instead of by gradient.

    ========  ===========  =====================
    site      event shape  plate
    ========  ===========  =====================
    ``z``     (L·D,)       data
    ========  ===========  =====================
    """

    latent = "codebook"

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), num_codes: int = 512,
                 code_dim: int = 16, channels: tuple[int, int] = (32, 64), ema: bool = False,
                 decay: float = 0.99):
        super().__init__()
        self.image_shape, self.num_codes, self.code_dim = tuple(image_shape), num_codes, code_dim
        self.encoder = GridEncoder(image_shape, code_dim, channels)
        self.codebook = Codebook(num_codes, code_dim, ema=ema, decay=decay)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        with data_plate(x, y):
            z_e = self.encoder(x)  # (N, L, D)
            codes = self.codebook.nearest(z_e)  # (N, L)
            z_q = self.codebook.lookup(codes)  # (N, L, D)
            pyro.deterministic("z_e", z_e.flatten(-2), event_dim=1)
            pyro.deterministic("z_q", z_q.flatten(-2), event_dim=1)
            pyro.deterministic("codes", codes.to(z_e.dtype), event_dim=1)
            straight = z_e + (z_q - z_e).detach()  # value e_k, gradient to z_e
            return pyro.sample("z", dist.Delta(straight.flatten(-2), event_dim=1))
