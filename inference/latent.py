"""The latent space of a pair, as tensors: encode, decode, interpolate, traverse, project.

Everything here runs the pair itself. The guide's ``q(z | x)`` gives encodings (its mean);
decoding conditions the model's latent site on given values with ``poutine.condition`` and
reads the likelihood's mean. No figure code: :mod:`inference.figures` draws these tensors.
"""

from __future__ import annotations

import math

import pyro
import pyro.poutine as poutine
import torch
from torch.distributions import (
    Categorical,
    Independent,
    MixtureSameFamily,
    Normal,
    kl_divergence,
)

from inference.data import as_data
from inference.plates import whole_plates
from inference.programs import data_site, device_of, program, sample_sites


def _latent_site(tr, site: str | None) -> str:
    """``site``, else ``z`` if the guide samples it, else the guide's first sample site."""
    if site is not None:
        return site
    names = [n for n, s in sample_sites(tr) if not s["is_observed"]]
    return "z" if "z" in names else names[0]


@torch.no_grad()
def encode(guide, x: torch.Tensor, y: torch.Tensor | None = None, *, site: str | None = None,
           mean: bool = True) -> torch.Tensor:
    """E_q[z | x] (or one draw) of the guide's latent ``site`` (default: ``z``, or the
    guide's first site), shape (N, z_dim)."""
    guide = program(guide, "guide")
    x = x.to(device_of(guide))
    with whole_plates(len(x)):
        tr = poutine.trace(guide).get_trace(x, None if y is None else y.to(x.device))
    node = tr.nodes[_latent_site(tr, site)]
    return node["fn"].mean if mean else node["value"]


@torch.no_grad()
def encode_distribution(guide, data, *, site: str | None = None,
                        batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and standard deviation of q(z | x) per point of ``data`` (anything ``fit``
    takes, with its labels), each (N, d), in batches."""
    guide = program(guide, "guide")
    data = as_data(data).to(device_of(guide))
    locs, scales = [], []
    for x, y in data.batches(batch_size):
        with whole_plates(len(x)):
            tr = poutine.trace(guide).get_trace(x, y)
        fn = tr.nodes[_latent_site(tr, site)]["fn"]
        locs.append(fn.mean)
        scales.append(fn.variance.sqrt())
    return torch.cat(locs), torch.cat(scales)


@torch.no_grad()
def decode(model, z: torch.Tensor, y: torch.Tensor | None = None, *, site: str = "z",
           mean: bool = True, like: torch.Tensor | None = None,
           data: str | None = None) -> torch.Tensor:
    """The likelihood's mean (or a draw) of the data for given latent values ``z`` (n, d).

    A model written for the lab runs as ``model(None, y)``; one that needs its data to run
    is given ``like`` (a batch of the data's shape, values unused): it then runs on n copies
    of its first row and the data site ``data`` (default: the one that observes them) is
    read, not its value."""
    model = program(model, "model")
    z = z.to(device_of(model))
    conditioned = poutine.condition(model, data={site: z})
    if like is not None:  # n data points, each with its code
        rows = len(z) if y is None else len(y)
        x = like[:1].to(z.device).expand(rows, *like.shape[1:])
        with whole_plates(rows):
            tr = poutine.trace(conditioned).get_trace(x, None if y is None else y.to(z.device))
        node = tr.nodes[data or data_site(tr, x)]
        out = node["fn"].mean if mean else node["fn"].sample()
        return out.reshape(len(z), -1)
    if y is not None:  # one code per label: the data plate has len(y) rows
        tr = poutine.trace(conditioned).get_trace(None, y.to(z.device))
    else:  # the data plate has size 1, so the n codes go in a plate at dim -2
        conditioned = poutine.condition(model, data={site: z.unsqueeze(-2)})
        with pyro.plate("samples", len(z), dim=-2):
            tr = poutine.trace(conditioned).get_trace(None, None)
    node = tr.nodes[data or "x"]
    x = node["fn"].mean.expand(node["fn"].shape()) if mean else node["value"]
    return x.reshape(len(z), -1)


def interpolate(z0: torch.Tensor, z1: torch.Tensor, steps: int,
                method: str = "linear") -> torch.Tensor:
    """``steps`` points from z0 to z1 (both ends included), shape (steps, z_dim).

    ``"slerp"`` (Shoemake 1985; White 2016, "Sampling generative networks") follows the
    great circle, which keeps the norm typical of a Gaussian prior in high dimensions.
    """
    t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device).unsqueeze(-1)  # (T, 1)
    if method == "linear":
        return (1 - t) * z0 + t * z1
    if method != "slerp":
        raise ValueError(f"method must be 'linear' or 'slerp', got {method!r}")
    cos = torch.dot(z0, z1) / (z0.norm() * z1.norm())
    omega = torch.arccos(cos.clamp(-1 + 1e-7, 1 - 1e-7))
    if omega.abs() < 1e-6:
        return (1 - t) * z0 + t * z1
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


@torch.no_grad()
def kl_per_dimension(guide, x: torch.Tensor, y: torch.Tensor | None = None, *,
                     site: str | None = None, model=None, samples: int = 32) -> torch.Tensor:
    """Mean over x of KL(q(z_j | x) || p(z_j)) for each dimension j, shape (z_dim,).

    p(z_j) is the model's prior of the site, its one-dimensional marginal (read from the
    model replayed on the guide's draw, so a conditional prior p(z1 | z2) is taken at the
    guide's z2), or N(0, 1) without a ``model``. A Normal prior gives the closed form; a
    mixture (VampPrior, mixture-of-Gaussians priors) a Monte Carlo estimate from
    ``samples`` draws of q per point. Needs a guide whose site factorizes over dimensions
    with Normal marginals (diagonal Gaussian encoders); the dimensions a VAE uses are those
    with a large KL.
    """
    guide = program(guide, "guide")
    x = x.to(device_of(guide))
    with whole_plates(len(x)):
        tr = poutine.trace(guide).get_trace(x, y)
    site = _latent_site(tr, site)
    fn = tr.nodes[site]["fn"]
    q = fn.base_dist if isinstance(fn, Independent) else fn
    if not isinstance(q, Normal):
        raise ValueError(f"kl_per_dimension needs a diagonal Normal guide; site {site!r} is "
                         f"{type(fn).__name__}")
    if model is None:
        p = Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
    else:
        model_tr = poutine.trace(poutine.replay(program(model, "model"), trace=tr)).get_trace(x, y)
        p = _marginals(model_tr.nodes[site]["fn"], site)
    if isinstance(p, Normal):
        return kl_divergence(q, p).reshape(-1, q.loc.shape[-1]).mean(0)
    z = q.sample((samples,))  # (S, N, d)
    size = max(1, 2**24 // (samples * p.component_distribution.batch_shape.numel()))
    log_p = torch.cat([p.log_prob(part) for part in z.split(size, dim=1)], 1)  # (S, N, d)
    return (q.log_prob(z) - log_p).reshape(-1, z.shape[-1]).mean(0)


def _marginals(fn, site: str):
    """The one-dimensional marginals of a prior over vectors: a batch of d Normals, or of d
    mixtures of Normals."""
    base = fn.base_dist if isinstance(fn, Independent) else fn
    if isinstance(base, Normal):
        return base
    comp = getattr(fn, "component_distribution", None)
    comp = comp.base_dist if isinstance(comp, Independent) else comp
    if isinstance(comp, Normal):  # a mixture of diagonal Normals: (..., C, d) components
        loc, scale = torch.broadcast_tensors(comp.loc, comp.scale)
        logits = fn.mixture_distribution.logits  # (..., C)
        loc, scale, logits = (t.reshape(-1, *t.shape[-k:]) for t, k in ((loc, 2), (scale, 2),
                                                                        (logits, 1)))
        if not all(torch.equal(t, t[:1].expand_as(t)) for t in (loc, scale, logits)):
            raise ValueError(f"kl_per_dimension needs a prior at site {site!r} that is the same"
                             f" for every point")
        return MixtureSameFamily(Categorical(logits=logits[0].expand(loc.shape[-1], -1)),
                                 Normal(loc[0].T, scale[0].T))  # d mixtures of C Normals
    raise ValueError(f"kl_per_dimension needs a Normal or mixture-of-Normals prior at site "
                     f"{site!r}; the model's is {type(fn).__name__}")


def traversal_grid(z0: torch.Tensor, dims: list[int], values: torch.Tensor) -> torch.Tensor:
    """Latent codes that vary one dimension at a time: (len(dims) * len(values), z_dim)."""
    rows = []
    for d in dims:
        z = z0.expand(len(values), -1).clone()  # (V, z_dim)
        z[:, d] = values
        rows.append(z)
    return torch.cat(rows)


def normal_quantile_grid(n: int, low: float = 0.05, high: float = 0.95) -> torch.Tensor:
    """An n x n grid over a 2-D standard normal's quantiles (Kingma & Welling 2014, fig. 4),
    shape (n * n, 2), row-major with z_2 decreasing down the rows."""
    q = torch.linspace(low, high, n, dtype=torch.float64)
    u = (math.sqrt(2) * torch.erfinv(2 * q - 1)).float()  # Φ⁻¹(q)
    z1, z2 = torch.meshgrid(u, u.flip(0), indexing="xy")
    return torch.stack([z1.reshape(-1), z2.reshape(-1)], -1)


def project_2d(z: torch.Tensor, method: str = "pca") -> torch.Tensor:
    """(N, d) latent codes to (N, 2): PCA, or t-SNE when scikit-learn is installed."""
    if z.shape[-1] == 2:
        return z
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError as e:
            raise ValueError("t-SNE needs scikit-learn (pip install scikit-learn); use "
                             "method='pca'") from e
        return torch.as_tensor(TSNE(n_components=2, init="pca", random_state=0)
                               .fit_transform(z.double().cpu().numpy()), dtype=z.dtype)
    if method != "pca":
        raise ValueError(f"method must be 'pca' or 'tsne', got {method!r}")
    centred = z - z.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T
