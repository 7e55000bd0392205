"""Figures of a pair on its data: compute the tensors (:mod:`inference.latent`), draw them
(:mod:`inference.figures`), save PNGs atomically. ``vae-plot`` and ``vae-train`` call this."""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import pyro
import torch

from inference import figures, latent
from inference.checkpoint import atomic_write
from inference.data import TensorData
from inference.generate import class_samples, reconstruct, sample
from inference.programs import Sites, owner, probe_sites

ARITHMETIC = (7, 1)  # mean(7) − mean(1) + a "1": the 1's style on a 7


def _shape(model, data: TensorData | None = None, size: int = 784) -> tuple[int, ...]:
    """The image's height and width (with 3 channels first for colour images): the model's
    ``image_shape``, else the data's, else a square of ``size`` pixels (MNIST's 28×28 by
    default). A model of table rows (``is_table``) has none: ValueError."""
    if getattr(owner(model), "is_table", False):
        raise ValueError("a table's rows are not images (this figure is for image pairs)")
    side = math.isqrt(size)
    shape = tuple(getattr(owner(model), "image_shape", None)
                  or getattr(data, "image_shape", None) or (side, size // side))
    return shape if len(shape) == 3 and shape[0] == 3 else shape[-2:]


def sample_grid(model, images: torch.Tensor, title: str):
    """New images of a model (n, D) as a grid figure, about as wide as it is tall."""
    n = len(images)
    return figures.grid_figure(images.cpu(), max(1, round(n ** 0.5)), title,
                               _shape(model, size=images.shape[-1]))


def _sites(model, guide, data: TensorData, sites: Sites | None) -> Sites:
    return sites or probe_sites(model, guide, *data.head(2))


def _labels(sites: Sites, label: int | None, default, n: int) -> torch.Tensor | None:
    """Labels for n decoded codes of a label-conditional model (the site ``y``): ``label`` if
    given, else ``default`` (a label of the data); None for a model without labels, whose
    codes decode alone."""
    if sites.y is None:
        return None
    chosen = label if label is not None else default
    if chosen is None:
        raise ValueError("a label-conditional model needs a label to decode with (--label)")
    return torch.as_tensor(chosen).long().reshape(-1).expand(n).clone()


def _decode(model, z, data: TensorData, sites: Sites, y=None) -> torch.Tensor:
    return latent.decode(model, z, y, site=sites.z, like=data.x[:1], data=sites.x)


def _label_of(data: TensorData, i: int):
    return None if data.y is None else int(data.y[i])


def reconstructions(model, guide, data: TensorData, n: int = 10, sites: Sites | None = None,
                    label: int | None = None):
    x, y = data.head(n)
    site = _sites(model, guide, data, sites).x
    return figures.reconstruction_figure(x, reconstruct(model, guide, x, y, site=site),
                                         _shape(model, data))


def samples(model, guide, data: TensorData, n: int = 64, sites: Sites | None = None,
            label: int | None = None):
    site = _sites(model, guide, data, sites).x
    if label is None:
        drawn = sample(model, n, mean=True, like=data.x[:1], site=site)[site]  # (n, D) means
        title = "samples from the prior (pixel means)"
    else:
        drawn, title = class_samples(model, label, n, like=data.x[:1], site=site), (
            f"samples of class {label} (pixel means)")
    return figures.grid_figure(drawn, 8, title, _shape(model, data))


def interpolation(model, guide, data: TensorData, steps: int = 10, sites: Sites | None = None,
                  label: int | None = None):
    """Decoded codes on the way from the first test image's code to the second's; a
    label-conditional model decodes every frame with ``label`` or the first image's."""
    sites = _sites(model, guide, data, sites)
    x, y = data.head(2)
    z = latent.encode(guide, x, y, site=sites.z)  # (2, z_dim)
    labels = _labels(sites, label, _label_of(data, 0), steps)
    rows = {m: _decode(model, latent.interpolate(z[0], z[1], steps, m), data, sites, labels)
            for m in ("linear", "slerp")}
    return figures.interpolation_figure(rows, _shape(model, data))


def arithmetic(model, guide, data: TensorData, classes: Sequence[int] = ARITHMETIC,
               sites: Sites | None = None, label: int | None = None):
    if data.y is None:
        raise ValueError("latent arithmetic needs labelled data (mean encoding per class)")
    sites = _sites(model, guide, data, sites)
    a, b = classes
    z = latent.encode(guide, data.x, data.y, site=sites.z)
    c = int((data.y == b).nonzero()[0])  # an example of class b
    codes = torch.stack([z[data.y == a].mean(0), z[data.y == b].mean(0), z[c],
                         z[data.y == a].mean(0) - z[data.y == b].mean(0) + z[c]])
    labels = None if sites.y is None else torch.tensor([a, b, b, a])  # each code its class
    images = _decode(model, codes, data, sites, labels)
    images[2] = data.x[c]  # x itself, not its reconstruction
    names = [f"mean of {a}s", f"mean of {b}s", f"x (a {b})", f"{a} − {b} + x"]
    return figures.arithmetic_figure(images, names, _shape(model, data))


def traversals(model, guide, data: TensorData, dims: int = 8, span: float = 3.0,
               steps: int = 9, sites: Sites | None = None, label: int | None = None):
    sites = _sites(model, guide, data, sites)
    kl = latent.kl_per_dimension(guide, *data.head(1000), site=sites.z, model=model)
    top = kl.argsort(descending=True)[:dims].tolist()
    values = torch.linspace(-span, span, steps)
    z0 = latent.encode(guide, *data.head(1), site=sites.z)[0]
    codes = latent.traversal_grid(z0, top, values.to(z0))
    labels = _labels(sites, label, _label_of(data, 0), len(codes))
    images = _decode(model, codes, data, sites, labels)
    return figures.traversal_figure(images, top, kl[top].tolist(), values, _shape(model, data))


def manifold(model, guide, data: TensorData, n: int = 20, sites: Sites | None = None,
             label: int | None = None):
    z_dim = getattr(owner(model), "z_dim", None)  # the model's own word, else the guide's
    if z_dim is None:
        sites = _sites(model, guide, data, sites)
        z_dim = latent.encode(guide, *data.head(1), site=sites.z).shape[-1]
    if z_dim != 2:
        raise ValueError(f"the manifold figure needs a model with z_dim 2 (this one has "
                         f"{z_dim}); train one with --z-dim 2")
    sites = _sites(model, guide, data, sites)
    grid = latent.normal_quantile_grid(n)
    images = _decode(model, grid, data, sites, _labels(sites, label, _label_of(data, 0), n * n))
    return figures.manifold_figure(images, n, _shape(model, data))


def latents(model, guide, data: TensorData, n: int = 2000, method: str = "pca",
            sites: Sites | None = None, label: int | None = None):
    sites = _sites(model, guide, data, sites)
    x, y = data.head(n)
    z = latent.encode(guide, x, y, site=sites.z).cpu()
    points = latent.project_2d(z, method)
    name = "E_q[z | x]" if z.shape[-1] == 2 else f"E_q[z | x] ({z.shape[-1]}-D), {method.upper()}"
    return figures.latent_scatter_figure(points, y, f"{name} of {len(x)} test points")


def curves(model, guide, data: TensorData, records: Sequence[dict] = (),
           sites: Sites | None = None, label: int | None = None):
    if not records:
        raise ValueError("training curves need the run's history (metrics.json)")
    return figures.curves_figure(records)


def codebook(model, guide, data: TensorData, n: int = 2000, sites: Sites | None = None,
             label: int | None = None):
    """The share of the test images' latent positions each code of a VQ-VAE takes."""
    book = getattr(owner(guide), "codebook", None)
    if book is None:
        raise ValueError("the codebook figure needs a guide with a codebook (vqvae)")
    from inference.vq import encode_codes

    codes = encode_codes(guide, data.subset(min(n, len(data)))).x.long()  # (n, L)
    counts = torch.bincount(codes.reshape(-1), minlength=book.num_codes)
    p = counts.double() / counts.sum()
    perplexity = float((-(p[p > 0] * p[p > 0].log()).sum()).exp())
    title = (f"{int((counts > 0).sum())} of {book.num_codes} codes used by {len(codes)} test "
             f"images, perplexity {perplexity:.1f}")
    return figures.codebook_figure(counts, title)


FIGURES: dict[str, Callable] = {
    "reconstructions": reconstructions, "samples": samples, "interpolation": interpolation,
    "arithmetic": arithmetic, "traversals": traversals, "manifold": manifold,
    "latents": latents, "curves": curves, "codebook": codebook,
}


@torch.no_grad()
def save_figures(model, guide, data: TensorData, folder: str | Path, names: Sequence[str],
                 records: Sequence[dict] = (), seed: int = 0, sites: Sites | None = None,
                 on_figure: Callable | None = None,
                 label: int | None = None) -> dict[str, Path | str]:
    """Render each named figure to ``folder/<name>.png``; returns path or reason skipped.
    ``model`` and ``guide``: any pair (:mod:`inference.programs`); its sites are read from
    a trace unless given. ``on_figure(name, figure)`` sees each figure before it is saved
    (e.g. to log it to TensorBoard). ``label``: the class a label-conditional model decodes
    with (default: that of the image each figure starts from)."""
    unknown = set(names) - set(FIGURES)
    if unknown:
        raise ValueError(f"unknown figure {sorted(unknown)}; choose from {', '.join(FIGURES)}")
    sites = _sites(model, guide, data, sites)
    done: dict[str, Path | str] = {}
    for name in names:
        pyro.set_rng_seed(seed)
        kwargs = {"sites": sites, "label": label, **({"records": records} if name == "curves"
                                                     else {})}
        try:
            fig = FIGURES[name](model, guide, data, **kwargs)
        except ValueError as e:  # a figure that does not apply to this pair or data
            done[name] = f"skipped: {e}"
            continue
        if on_figure is not None:
            on_figure(name, fig)
        done[name] = save_png(fig, Path(folder) / f"{name}.png")
    return done


def save_png(fig, path: str | Path) -> Path:
    """Write a figure as PNG atomically (a reader never sees half a file) and close it."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=figures.DPI)
    plt.close(fig)
    return atomic_write(Path(path), lambda f: f.write(buffer.getvalue()))
