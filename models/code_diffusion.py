"""A denoising diffusion model over latent codes (a latent diffusion prior)."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule
from torch import nn

from models import data_plate, register_model


def time_embedding(t: torch.Tensor, dim: int, steps: int) -> torch.Tensor:
    """Sinusoidal features (…, dim) of integer steps t (…) (Vaswani et al. 2017)."""
    half = dim // 2
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angle = (t.float() / steps * 1000.0).unsqueeze(-1) * freq  # (…, half)
    return torch.cat([angle.sin(), angle.cos()], -1)


@register_model("code_diffusion")
class CodeDiffusion(PyroModule):
    """DDPM over vectors x (a VAE's codes; Ho et al. 2020). The forward process noises the
    standardized data, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε with a linear β schedule over ``steps``
    steps; an MLP ε_θ(x_t, t) predicts the noise. The observed site's log-density is the
    negative noise-prediction loss, −½‖ε − ε_θ(x_t, t)‖² at one random (t, ε) per point
    (Ho et al.'s L_simple): ``fit`` with the ``empty`` guide minimizes it, and the
    validation "ELBO" it reports is that loss, not a likelihood. :meth:`generate` runs
    ancestral sampling on a respaced schedule of any number of steps (Nichol & Dhariwal
    2021, section 4).

    ========  ===========  ==========================================
    site      event shape  plate
    ========  ===========  ==========================================
    ``x``     (x_dim,)     data (observed; density: −L_simple per point)
    ========  ===========  ==========================================
    """

    observes = "codes"  # a density of latent codes, not an image pair (tests/test_samplers.py)

    def __init__(self, x_dim: int = 50, hidden: tuple[int, ...] = (256, 256, 256),
                 steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 embed: int = 64):
        super().__init__()
        self.x_dim, self.steps, self.embed = x_dim, steps, embed
        sizes = [x_dim + embed, *hidden, x_dim]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers += [nn.Linear(a, b)] + ([nn.SiLU()] if i < len(sizes) - 2 else [])
        self.net = nn.Sequential(*layers)
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64)
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0).float())  # (T,)
        self.register_buffer("loc", torch.zeros(x_dim))
        self.register_buffer("scale", torch.ones(x_dim))

    def standardize(self, x: torch.Tensor) -> None:
        """Set the fixed affine map from data ``x`` (N, x_dim): its mean and std per dim."""
        self.loc.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp_min(1e-6))

    def eps(self, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """ε_θ(x_t, t) for standardized x_t (…, x_dim) and steps t (…)."""
        emb = time_embedding(t, self.embed, self.steps).expand(*xt.shape[:-1], -1)
        return self.net(torch.cat([xt, emb], -1))

    def draw_noise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step t ~ U{0..T-1} (…) and one ε ~ N(0, I) (…, x_dim) per point of ``x``,
        from torch's generator."""
        t = torch.randint(0, self.steps, x.shape[:-1], device=x.device)
        return t, torch.randn_like(x)

    def noise_loss(self, x: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """½‖ε − ε_θ(√ᾱ_t x̃ + √(1 − ᾱ_t) ε, t)‖² per point (…), x̃ the standardized x."""
        a = self.alpha_bar[t].unsqueeze(-1)  # (…, 1)
        xt = a.sqrt() * (x - self.loc) / self.scale + (1 - a).sqrt() * eps
        return 0.5 * (eps - self.eps(xt, t)).pow(2).sum(-1)

    @torch.no_grad()
    def generate(self, n: int, sample_steps: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws (n, x_dim) by ancestral sampling over ``sample_steps`` (default: all)
        evenly spaced steps of the schedule, with the respaced β_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}
        and variance β_i (Ho et al.'s σ² = β)."""
        k = min(sample_steps or self.steps, self.steps)
        tau = torch.linspace(0, self.steps - 1, k, device=self.loc.device).round().long()
        a_bar = self.alpha_bar[tau]  # (k,)
        prev = torch.cat([a_bar.new_ones(1), a_bar[:-1]])
        beta = 1 - a_bar / prev
        kw = {"device": self.loc.device, "generator": generator}
        x = torch.randn(n, self.x_dim, **kw)
        for i in range(k - 1, -1, -1):
            e = self.eps(x, tau[i].expand(n))
            x = (x - beta[i] / (1 - a_bar[i]).sqrt() * e) / (1 - beta[i]).sqrt()
            if i > 0:
                x = x + beta[i].sqrt() * torch.randn(n, self.x_dim, **kw)
        return x * self.scale + self.loc

    def forward(self, x: torch.Tensor | None = None, y: torch.Tensor | None = None):
        if x is None:
            raise ValueError("code_diffusion draws with .generate(n, sample_steps), not by "
                             "running the model without data")
        with data_plate(x, y):
            loss = self.noise_loss(x, *self.draw_noise(x))  # (N,)
            return pyro.sample("x", dist.Delta(x, log_density=-loss, event_dim=1), obs=x)
