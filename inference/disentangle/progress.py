"""Disentanglement over training: MIG and the KL per latent dimension at checkpoints, the
curve they make (resumable), and traversals labelled by the factor each latent captures.

A run that does not disentangle should say why: the KL per dimension over training shows
how many latents the objective keeps active and when they collapse to the prior, and the
mutual information matrix of MIG (Chen et al. 2018) shows which factor each active latent
carries. ``benchmarks/disentanglement.py`` records one :func:`checkpoint_scores` per
checkpoint into ``curve.jsonl`` of each run folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from inference.disentangle.factors import GroundTruthData
from inference.disentangle.metrics import guide_mean, mig

INACTIVE_KL = 0.1  # nats: a latent with a smaller mean KL carries (almost) nothing


@torch.no_grad()
def checkpoint_scores(model, guide, data: GroundTruthData, x: torch.Tensor, *, seed: int = 0,
                      mig_points: int = 10_000) -> dict:
    """MIG on ``mig_points`` random factor combinations (its mutual information matrix
    (d, F) in nats, and the gap per factor), and the mean over the images ``x`` (N, D) of
    KL(q(z_j | x) || p(z_j)) per latent dimension j (closed form)."""
    from inference.latent import kl_per_dimension

    m = mig(data, guide_mean(guide), seed, num_train=mig_points)
    kl = kl_per_dimension(guide, x, model=model)  # (d,)
    return {"mig": m["mig"], "mig_per_factor": m["per_factor"], "mutual_info": m["mutual_info"],
            "kl_per_dim": kl.cpu().tolist()}


def factor_of_latents(mutual_info: Sequence[Sequence[float]], factor_names: Sequence[str],
                      kl: Sequence[float], inactive: float = INACTIVE_KL) -> list[str]:
    """For each latent, the factor it shares the most information with (MIG's matrix, (d,
    F)), with that information in nats, or ``inactive`` when its KL is below ``inactive``.

    >>> factor_of_latents([[0.1, 2.0], [0.9, 0.2], [0.0, 0.01]], ["shape", "x"],
    ...                   [3.0, 1.0, 0.02])
    ['x (2.00 nats)', 'shape (0.90 nats)', 'inactive']
    """
    mi = np.asarray(mutual_info, dtype=float)  # (d, F)
    return ["inactive" if k < inactive else
            f"{factor_names[int(row.argmax())]} ({row.max():.2f} nats)"
            for row, k in zip(mi, kl, strict=True)]


def read_curve(path: str | Path) -> list[dict]:
    """The records of a ``curve.jsonl``, one per checkpoint, by step; a line cut short by
    an interrupted write is dropped."""
    path = Path(path)
    if not path.exists():
        return []
    records = {}
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[r["steps"]] = r
    return [records[s] for s in sorted(records)]


def append_curve(path: str | Path, record: dict) -> None:
    """Add one checkpoint's record (it must hold ``steps``) to ``curve.jsonl``."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


@torch.no_grad()
def labelled_traversals(model, guide, x0: torch.Tensor, labels: Sequence[str],
                        kl: Sequence[float], span: float = 2.5, steps: int = 9,
                        image_shape=(1, 64, 64)):
    """One row per active latent (by KL, largest first), one column per value from
    −span to span about the encoding of the image ``x0`` (D,), each row labelled with the
    factor the latent captures (:func:`factor_of_latents`)."""
    from inference import figures, latent

    kl_t = torch.as_tensor(kl)
    dims = [d for d in kl_t.argsort(descending=True).tolist() if labels[d] != "inactive"]
    dims = dims or kl_t.argsort(descending=True)[:1].tolist()
    values = torch.linspace(-span, span, steps)
    z0 = latent.encode(guide, x0[None])[0]  # (d,)
    codes = latent.traversal_grid(z0, dims, values.to(z0))  # (len(dims) * steps, d)
    images = latent.decode(model, codes, None, like=x0[None])
    names = [f"z{d}: {labels[d]}" for d in dims]
    return figures.traversal_figure(images, dims, [kl[d] for d in dims], values, image_shape,
                                    names=names)


def mig_curve_figure(curves: dict[str, list[list[dict]]], batch_size: int | None = None):
    """MIG against training steps (of ``batch_size`` images, when given): one colour per
    cell, one line per seed, from the records of :func:`read_curve` (``{label: [records of
    seed 0, of seed 1, ...]}``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.4))
    ax = fig.add_subplot()
    for i, (label, runs) in enumerate(curves.items()):
        for j, records in enumerate(runs):
            ax.plot([r["steps"] for r in records], [r["mig"] for r in records], "-o",
                    color=f"C{i}", markersize=2, alpha=0.9 if j == 0 else 0.5,
                    label=label if j == 0 else None)
    ax.set_xlabel("training steps" + (f" (batch {batch_size})" if batch_size else ""))
    ax.set_ylabel("MIG (10,000 random sprites)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kl_curve_figure(curves: dict[str, list[dict]]):
    """KL(q(z_j | x) || p(z_j)) of each latent j (mean over validation images) against
    training steps, one panel per cell: which latents stay active, and when others close."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.6 * len(curves), 3.0))
    axes = fig.subplots(1, len(curves), squeeze=False)[0]
    for ax, (label, records) in zip(axes, curves.items(), strict=True):
        steps = [r["steps"] for r in records]
        kl = np.array([r["kl_per_dim"] for r in records])  # (checkpoints, d)
        for j in range(kl.shape[1]):
            ax.plot(steps, kl[:, j], label=f"z{j}", linewidth=1)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("steps")
        ax.set_yscale("symlog", linthresh=0.1)
    axes[0].set_ylabel("KL per latent (nats)")
    axes[-1].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig
