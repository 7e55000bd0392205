"""What ``vae-ood`` shows: a table of the metrics and a histogram of in vs out scores."""

from __future__ import annotations

import math

import numpy as np
import torch

from inference.figures import _figure

LABELS = {"nll": "−log p̂(x)", "regret": "likelihood regret", "complexity": "−log p̂(x) − L(x)",
          "ratio": "−log p̂(x) + log p̂₀(x)", "typicality": "|−log p̂(x) − Ĥ|"}


def format_table(metrics: dict, seconds: dict[str, float]) -> str:
    """One line per (out-of-distribution set, score): AUROC, AUPRC and ``FPR@95`` with their
    bootstrap standard errors, and the score's seconds per 1000 examples."""
    lines = [f"{'against':16s} {'score':11s} {'AUROC':>16s} {'AUPRC':>16s} {'FPR@95':>16s} "
             f"{'s/1000':>7s}"]
    for name, per_score in metrics.items():
        for score, m in per_score.items():
            cells = [f"{m[k]:.4f} ± {m[k + '_se']:.4f}" for k in ("auroc", "auprc", "fpr95")]
            lines.append(f"{name:16s} {score:11s} " + " ".join(f"{c:>16s}" for c in cells)
                         + f" {seconds[score]:7.1f}")
    return "\n".join(lines)


def ood_histogram_figure(scores: dict[str, dict[str, torch.Tensor]], metrics: dict,
                         in_name: str = "in"):
    """One panel per (out-of-distribution set, score): histograms of the in-distribution
    set's scores and the other set's, on shared bins, titled with the AUROC. ``scores``:
    {score: {"in" or set name: (N,)}}; ``metrics``: :func:`~.detect.compare`'s."""
    names, score_names = list(metrics), list(scores)
    fig = _figure(3.2 * len(score_names) + 0.3, 2.6 * len(names) + 0.3)
    axes = fig.subplots(len(names), len(score_names), squeeze=False)
    for row, name in zip(axes, names, strict=True):
        for ax, s in zip(row, score_names, strict=True):
            a = scores[s]["in"].detach().double().cpu()
            b = scores[s][name].detach().double().cpu()
            both = torch.cat([a, b])
            lo, hi = both.min().item(), both.max().item()
            bins = np.linspace(lo, hi if hi > lo else lo + 1, 41)
            # one filled outline per set: ax.hist would draw a patch per bin, 10x slower
            for values, label in ((a, in_name), (b, name)):
                density, _ = np.histogram(values.numpy(), bins=bins, density=True)
                ax.stairs(density, bins, fill=True, alpha=0.55, label=label)
            m = metrics[name][s]
            ax.set_title(f"{s}: AUROC {m['auroc']:.3f}", fontsize=9)
            ax.set_xlabel(LABELS.get(s, s) + " (nats)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=7)
    return fig


def summary(scores: dict[str, dict[str, torch.Tensor]]) -> dict:
    """Mean and standard deviation of every score on every set (finite numbers only)."""
    def stats(t: torch.Tensor) -> dict:
        t = t.double()
        sd = t.std().item() if len(t) > 1 else 0.0
        return {"n": len(t), "mean": t.mean().item(), "std": sd if math.isfinite(sd) else 0.0}
    return {s: {name: stats(t) for name, t in per.items()} for s, per in scores.items()}


__all__ = ["format_table", "ood_histogram_figure", "summary"]
