"""Discrete latent codes: a codebook of vectors, and distributions over grids of codes.

Building blocks of the VQ-VAE pair (``models/vqvae.py``, ``guides/vqvae.py``) and of the
learned prior over its codes (``models/code_prior.py``). A grid of L positions holds one of
K codes at each; a code grid is a tensor (..., L) of whole numbers 0..K-1 (kept as floats
where it is data, so that it fits the lab's ``TensorData``).
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions import constraints
from torch import nn
from torch.nn import functional as F


class Codebook(nn.Module):
    """K code vectors of dimension D (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural
    discrete representation learning").

    Learned by gradient (the VQ-VAE's codebook loss) or, with ``ema=True``, as exponential
    moving averages of the encoder outputs assigned to each code, with Laplace smoothing of
    the counts (the paper's appendix A.1; Razavi, van den Oord & Vinyals 2019). ``usage``
    keeps an exponential moving average of how many encoder outputs each code receives per
    training step, which tells dead codes (Dhariwal et al. 2020, "Jukebox") from live ones.
    """

    def __init__(self, num_codes: int = 512, dim: int = 16, ema: bool = False,
                 decay: float = 0.99, eps: float = 1e-5):
        super().__init__()
        if num_codes < 2 or dim < 1:
            raise ValueError(f"a codebook needs at least 2 codes of dimension ≥ 1, got "
                             f"{num_codes} x {dim}")
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must lie in (0, 1), got {decay}")
        self.num_codes, self.dim, self.ema, self.decay, self.eps = num_codes, dim, ema, decay, eps
        init = torch.empty(num_codes, dim).uniform_(-1 / num_codes, 1 / num_codes)
        if ema:
            self.register_buffer("weight", init)
            self.register_buffer("cluster_size", torch.zeros(num_codes))
            self.register_buffer("embed_sum", init.clone())
        else:
            self.weight = nn.Parameter(init)
        self.register_buffer("usage", torch.zeros(num_codes))

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """The index of the nearest code (squared Euclidean distance) of each vector of
        ``z_e`` (..., D), shape (...)."""
        w = self.weight.detach()
        d = (z_e.detach().pow(2).sum(-1, keepdim=True) - 2 * z_e.detach() @ w.T
             + w.pow(2).sum(-1))  # (..., K)
        return d.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """The code vectors of ``codes`` (...), shape (..., D); differentiable in the
        codebook when it learns by gradient."""
        return F.embedding(codes.long(), self.weight)

    @torch.no_grad()
    def statistics(self, z_e: torch.Tensor,
                   codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How many encoder outputs ``z_e`` (M, D) each code got (``codes`` (M,)), and their
        sum: (K,) and (K, D)."""
        codes = codes.reshape(-1).long()
        n = torch.bincount(codes, minlength=self.num_codes).to(self.weight.dtype)
        sums = torch.zeros(self.num_codes, self.dim, dtype=self.weight.dtype,
                           device=self.weight.device)
        return n, sums.index_add_(0, codes, z_e.reshape(-1, self.dim).to(sums.dtype))

    @torch.no_grad()
    def update(self, n: torch.Tensor, sums: torch.Tensor) -> None:
        """One training step's :meth:`statistics` ``n`` (K,) and ``sums`` (K, D): the usage
        average and, with EMA, the codebook::

            N_i <- γ N_i + (1 - γ) n_i,   m_i <- γ m_i + (1 - γ) Σ_{j: k_j = i} z_j,
            e_i  = m_i / Ñ_i,             Ñ_i = (N_i + ε) / (Σ N + K ε) · Σ N
        """
        self.usage.mul_(self.decay).add_(n, alpha=1 - self.decay)
        if not self.ema:
            return
        self.cluster_size.mul_(self.decay).add_(n, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.weight.copy_(self.embed_sum / smoothed.unsqueeze(-1))

    @torch.no_grad()
    def restart(self, z_e: torch.Tensor, below: float,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Move every code whose usage average is below ``below`` onto an encoder output of
        ``z_e`` (M, D) drawn at random; returns the restarted codes' mask (K,)."""
        dead = self.usage < below
        if dead.any():
            pick = torch.randint(len(z_e), (int(dead.sum()),), generator=generator,
                                 device=z_e.device)
            self.weight[dead] = z_e.reshape(-1, self.dim)[pick].to(self.weight.dtype)
            self.usage[dead] = below  # a fresh code gets a fair chance before the next check
            if self.ema:
                self.cluster_size[dead] = 1.0
                self.embed_sum[dead] = self.weight[dead]
        return dead


class CodeTransformer(nn.Module):
    """An autoregressive network over a grid of L codes read in raster order: a small
    causal transformer (Vaswani et al. 2017) whose i-th output gives the logits of code i
    from codes 0..i-1 (a start token stands before code 0). (..., L) -> (..., L, K)."""

    def __init__(self, num_codes: int, length: int, d_model: int = 64, heads: int = 4,
                 layers: int = 2):
        super().__init__()
        self.num_codes, self.length = num_codes, length
        self.embed = nn.Embedding(num_codes + 1, d_model)  # the last is the start token
        self.position = nn.Parameter(torch.zeros(length, d_model))
        layer = nn.TransformerEncoderLayer(d_model, heads, 4 * d_model, dropout=0.0,
                                           batch_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, num_codes)
        self.register_buffer("mask", torch.triu(torch.ones(length, length, dtype=torch.bool), 1))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        batch = codes.shape[:-1]
        flat = codes.reshape(-1, self.length).long()  # (B, L)
        start = torch.full_like(flat[:, :1], self.num_codes)
        h = self.embed(torch.cat([start, flat[:, :-1]], -1)) + self.position  # (B, L, d)
        h = self.blocks(h, mask=self.mask, is_causal=True)
        return self.out(h).reshape(*batch, self.length, self.num_codes)


class CodeSequence(dist.TorchDistribution):
    """A distribution over code grids (..., L): uniform over the K^L grids without ``net``,
    else p(k) = Π_i p(k_i | k_<i) with the logits of a :class:`CodeTransformer`.

    >>> grids = CodeSequence(None, 4, 3, torch.Size([2]))
    >>> grids.log_prob(torch.zeros(2, 3))  # uniform: -3 log 4
    tensor([-4.1589, -4.1589])
    """

    arg_constraints: dict = {}
    has_rsample = False

    def __init__(self, net: CodeTransformer | None, num_codes: int, length: int,
                 batch_shape=(), validate_args=None):
        self.net, self.num_codes, self.length = net, num_codes, length
        super().__init__(torch.Size(batch_shape), torch.Size([length]),
                         validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.independent(constraints.integer_interval(0, self.num_codes - 1), 1)

    def expand(self, batch_shape, _instance=None) -> CodeSequence:
        return CodeSequence(self.net, self.num_codes, self.length, torch.Size(batch_shape),
                            validate_args=self._validate_args)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        shape = torch.broadcast_shapes(value.shape[:-1], self.batch_shape)
        if self.net is None:
            return torch.full(shape, -self.length * math.log(self.num_codes),
                              dtype=torch.get_default_dtype(), device=value.device)
        logits = self.net(value)  # (..., L, K)
        picked = torch.log_softmax(logits, -1).gather(-1, value.long().unsqueeze(-1))
        return picked.squeeze(-1).sum(-1).expand(shape)

    @torch.no_grad()
    def sample(self, sample_shape=()) -> torch.Tensor:
        shape = torch.Size(sample_shape) + self.batch_shape
        device = self.net.out.weight.device if self.net is not None else "cpu"
        if self.net is None:
            return torch.randint(self.num_codes, shape + (self.length,), device=device)
        codes = torch.zeros(shape + (self.length,), dtype=torch.long, device=device)
        for i in range(self.length):  # one position at a time, in raster order
            probs = torch.softmax(self.net(codes)[..., i, :], -1)
            codes[..., i] = torch.distributions.Categorical(probs=probs).sample()
        return codes


class CodebookPrior(dist.TorchDistribution):
    """p(z) over flat grids of code vectors z (..., L·D): a :class:`CodeSequence` over the
    codes, each shown as its codebook vector. ``log_prob`` reads the codes of z as its
    nearest codebook entries (z is always made of them: the guide quantizes)."""

    arg_constraints: dict = {}
    support = constraints.independent(constraints.real, 1)
    has_rsample = False

    def __init__(self, codebook: Codebook, codes: CodeSequence, validate_args=None):
        self.codebook, self.codes = codebook, codes
        super().__init__(codes.batch_shape, torch.Size([codes.length * codebook.dim]),
                         validate_args=validate_args)

    def expand(self, batch_shape, _instance=None) -> CodebookPrior:
        return CodebookPrior(self.codebook, self.codes.expand(batch_shape),
                             validate_args=self._validate_args)

    def code_of(self, z: torch.Tensor) -> torch.Tensor:
        """The code grid (..., L) of flat code vectors z (..., L·D)."""
        return self.codebook.nearest(z.reshape(*z.shape[:-1], self.codes.length, -1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return self.codes.log_prob(self.code_of(value).to(value.dtype))

    def sample(self, sample_shape=()) -> torch.Tensor:
        codes = self.codes.sample(sample_shape).to(self.codebook.weight.device)  # (..., L)
        return self.codebook.lookup(codes).flatten(-2).detach()
