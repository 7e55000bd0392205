"""The VAE of Pyro's ``examples/vae/vae.py`` (Kingma & Welling 2014), in its style.

Generative story and variational family::

    latent     ~ Normal(0, I)                       latent in R^z_dim
    obs | z    ~ Bernoulli(decoder(latent))         decoder: z -> hidden (softplus) -> 784
    q(latent | x) = Normal(encoder(x))              encoder: 784 -> hidden -> (loc, exp scale)

==========  ===========  ===================================
site        event shape  plate
==========  ===========  ===================================
``latent``  (z_dim,)     ``data`` (size ``x.shape[0]``)
``obs``     (784,)       ``data`` (observed: the images)
==========  ===========  ===================================

The images may hold grey levels: like the example, the likelihood is a Bernoulli with
``validate_args=False`` (a relaxed Bernoulli on values in [0, 1]).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import nn


class Encoder(nn.Module):
    """q(latent | x): one softplus hidden layer, a location and a positive scale."""

    def __init__(self, z_dim: int = 50, hidden_dim: int = 400, x_dim: int = 784):
        super().__init__()
        self.x_dim = x_dim
        self.fc1 = nn.Linear(x_dim, hidden_dim)
        self.fc21, self.fc22 = nn.Linear(hidden_dim, z_dim), nn.Linear(hidden_dim, z_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = nn.functional.softplus(self.fc1(x.reshape(-1, self.x_dim)))  # (N, hidden)
        return self.fc21(hidden), torch.exp(self.fc22(hidden))  # (N, z_dim) each


class Decoder(nn.Module):
    """p(obs | latent): pixel probabilities from one softplus hidden layer."""

    def __init__(self, z_dim: int = 50, hidden_dim: int = 400, x_dim: int = 784):
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(z_dim, hidden_dim), nn.Linear(hidden_dim, x_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc21(nn.functional.softplus(self.fc1(z))))  # (..., x_dim)


class VAE(nn.Module):
    """Encoder and decoder, with the example's ``model(x)`` and ``guide(x)`` methods."""

    def __init__(self, z_dim: int = 50, hidden_dim: int = 400, x_dim: int = 784):
        super().__init__()
        self.encoder = Encoder(z_dim, hidden_dim, x_dim)
        self.decoder = Decoder(z_dim, hidden_dim, x_dim)
        self.z_dim, self.x_dim = z_dim, x_dim

    def model(self, x: torch.Tensor) -> torch.Tensor:
        """p(latent) p(obs | latent), the images observed."""
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc = x.new_zeros(x.shape[0], self.z_dim)
            z = pyro.sample("latent", dist.Normal(z_loc, torch.ones_like(z_loc)).to_event(1))
            loc_img = self.decoder(z)  # (..., N, x_dim)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                        obs=x.reshape(-1, self.x_dim))
            return loc_img

    def guide(self, x: torch.Tensor) -> None:
        """q(latent | x)."""
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))

    def reconstruct_img(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of x decoded from one draw of q(latent | x)."""
        z_loc, z_scale = self.encoder(x)
        return self.decoder(dist.Normal(z_loc, z_scale).sample())
