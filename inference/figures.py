"""Figures of a trained pair: pure functions from tensors to a matplotlib ``Figure``.

matplotlib is imported inside the functions, and figures are built with
``matplotlib.figure.Figure`` (no pyplot, no global state), so importing ``inference`` never
loads it and figures render on headless machines. Images are flat rows of ``x`` laid out
with ``image_shape``: (height, width) for grey images (28 x 28 by default), (3, height,
width) for colour ones, channels first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

IMAGE = (28, 28)
DPI = 110  # the resolution figures are saved at (visualize.save_png)
PIXEL = 1.25 / DPI  # inches per image pixel: over one screen pixel, so no 1-pixel gap is lost


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def image_grid(images: torch.Tensor, rows: int, image_shape: Sequence[int] = IMAGE,
               pad: int = 1) -> torch.Tensor:
    """Tile (n, D) flat images into one (H, W) array, or (H, W, 3) for colour images of
    ``image_shape = (3, h, w)``, row-major, ``pad`` pixels apart."""
    h, w = image_shape[-2:]
    colour = len(image_shape) == 3 and image_shape[0] == 3
    n = len(images)
    cols = math.ceil(n / rows)
    grid = torch.ones(rows * (h + pad) - pad, cols * (w + pad) - pad, *((3,) if colour else ()))
    tiles = images.detach().float().cpu().clamp(0, 1)
    tiles = tiles.reshape(n, 3, h, w).permute(0, 2, 3, 1) if colour else tiles.reshape(n, h, w)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, c * (w + pad): c * (w + pad) + w] = tile
    return grid


def _show(ax, grid: torch.Tensor, title: str | None = None) -> None:
    ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def grid_figure(images: torch.Tensor, rows: int, title: str,
                image_shape: Sequence[int] = IMAGE):
    """Any set of images as one grid, e.g. samples from the prior."""
    grid = image_grid(images, rows, image_shape)  # (H, W) pixels, 1-pixel gaps
    width = max(PIXEL * grid.shape[1], _title_width(title)) + 0.4
    fig = _figure(width, PIXEL * grid.shape[0] + 0.5)
    _show(fig.subplots(), grid, title)
    return fig


def _title_width(title: str, fontsize: float = 9) -> float:
    """Inches a title needs at ``fontsize`` points (about 0.6 em a character)."""
    return 0.6 * fontsize / 72 * len(title)


def reconstruction_figure(x: torch.Tensor, reconstruction: torch.Tensor,
                          image_shape: Sequence[int] = IMAGE):
    """Data in the top row, their reconstructions below."""
    return grid_figure(torch.cat([x, reconstruction]), 2,
                       "data (top) and reconstructions (bottom)", image_shape)


def interpolation_figure(rows: dict[str, torch.Tensor], image_shape: Sequence[int] = IMAGE):
    """One row of decoded frames per method, e.g. {"linear": (T, D), "slerp": (T, D)}."""
    fig = _figure(0.45 * len(next(iter(rows.values()))) + 0.4, 0.75 * len(rows) + 0.2)
    for ax, (name, frames) in zip(fig.subplots(len(rows), 1, squeeze=False)[:, 0],
                                  rows.items(), strict=True):
        _show(ax, image_grid(frames, 1, image_shape), f"{name} interpolation")
    return fig


def arithmetic_figure(terms: torch.Tensor, labels: Sequence[str],
                      image_shape: Sequence[int] = IMAGE):
    """Decoded terms of a latent equation, e.g. mean(a) − mean(b) + c = result."""
    fig = _figure(1.3 * len(terms), 1.6)
    for ax, image, label in zip(fig.subplots(1, len(terms)), terms, labels, strict=True):
        _show(ax, image_grid(image[None], 1, image_shape), label)
    return fig


def traversal_figure(images: torch.Tensor, dims: Sequence[int], kl: Sequence[float],
                     values: torch.Tensor, image_shape: Sequence[int] = IMAGE,
                     names: Sequence[str] | None = None):
    """One row per latent dimension (ranked by KL), one column per value it takes; ``names``
    adds a label to each row (the factor a latent captures)."""
    grid = image_grid(images, len(dims), image_shape)
    fig = _figure(0.35 * len(values) + 1.2, 0.35 * len(dims) + 0.6)
    ax = fig.subplots()
    _show(ax, grid, f"traversals from {values[0]:.1f} to {values[-1]:.1f}")
    ax.set_axis_on()
    step = image_shape[-2] + 1
    ax.set_yticks([step * i + image_shape[-2] / 2 for i in range(len(dims))],
                  [f"z{d} (KL {k:.2f})" if names is None else f"{names[i]}, KL {k:.2f}"
                   for i, (d, k) in enumerate(zip(dims, kl, strict=True))], fontsize=7)
    ax.set_xticks([])
    return fig


def manifold_figure(images: torch.Tensor, n: int, image_shape: Sequence[int] = IMAGE):
    """The decoded n x n grid over a 2-D prior's quantiles (Kingma & Welling 2014, fig. 4)."""
    return grid_figure(images, n, "2-D latent manifold (prior quantiles 0.05 to 0.95)",
                       image_shape)


def latent_scatter_figure(points: torch.Tensor, labels: torch.Tensor | None, title: str):
    """Encodings projected to 2-D, coloured by label."""
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    p = points.detach().cpu()
    c = None if labels is None else labels.cpu().numpy()
    sc = ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), c=c, s=4, cmap="tab10", alpha=0.7)
    if labels is not None:
        fig.colorbar(sc, ax=ax, label="label")
    ax.set_title(title, fontsize=9)
    return fig


def curves_figure(records: Sequence[dict]):
    """ELBO, reconstruction and KL per epoch, of the training subset and the validation data
    after each epoch (post-epoch scores, comparable to each other), from a fit's history.
    Runs from before the validation split drew their test scores (``test_*``)."""
    fig = _figure(10, 3)
    epochs = [r["epoch"] for r in records]
    for ax, key, name in zip(fig.subplots(1, 3), ("elbo", "reconstruction", "kl"),
                             ("ELBO", "reconstruction E[log p(x|z)]", "KL(q || p)"),
                             strict=True):
        for split, style in (("train", "-"), ("valid", "--"), ("test", ":")):
            values = [r.get(f"{split}_{key}") for r in records]
            if any(v is not None for v in values):
                ax.plot(epochs, [math.nan if v is None else v for v in values], style,
                        marker=".", label=split)
        ax.set_xlabel("epoch")
        ax.set_title(f"{name} (nats)", fontsize=9)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
    return fig


def codebook_figure(counts: torch.Tensor, title: str):
    """How often each code of a codebook is used, codes sorted by use (a bar per code)."""
    fig = _figure(8, 2.6)
    ax = fig.subplots()
    share = (counts.double() / counts.sum()).sort(descending=True).values
    ax.bar(range(len(share)), share.cpu().numpy(), width=1.0)
    ax.set_xlabel("code (sorted by use)")
    ax.set_ylabel("share of positions")
    ax.set_title(title, fontsize=9)
    return fig
