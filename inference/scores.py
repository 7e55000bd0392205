"""The numbers a paper reports for a VAE, from one importance-sampling pass.

* test NLL = −mean log p̂(x) with K importance samples (Burda et al. 2016), in nats and
  in bits per dimension, with two standard errors: the Monte Carlo one of the estimator
  (delta method, √(1/ESS − 1/K) per point) and the sampling one of the test set;
* the ELBO, its reconstruction term E_q[log p(x | z)] and KL = reconstruction − ELBO,
  each averaged over the same K particles;
* active units (Burda et al. 2016, section 5.2): latent dimension j is active when
  Cov_x(E_q[z_j | x]) > 0.01;
* Pareto k̂ of the importance weights (Vehtari et al. 2024), see :mod:`inference.diagnostics`.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from inference.data import as_data
from inference.diagnostics import KHAT_BAD, KHAT_MIN_SAMPLES, khat_summary
from inference.marginal import importance_sample
from inference.programs import probe_sites

ACTIVE_THRESHOLD = 0.01


def active_units(latent_means: dict[str, torch.Tensor],
                 threshold: float = ACTIVE_THRESHOLD) -> dict[str, int]:
    """Per continuous latent site: how many dimensions have Cov_x(E_q[z_j | x]) > threshold."""
    return {name: int((m.var(0) > threshold).sum()) for name, m in latent_means.items()}


def score(model, guide, data: Any, *, num_samples: int = 5000, chunk_size: int | None = None,
          batch_size: int | None = None, khat: bool = True, progress: bool = False,
          fast: bool | str = "auto", seed: int | None = None) -> tuple[dict, dict]:
    """Summary scores of a pair on ``data`` and per-point tensors (nll, nll_mc_stderr, khat).

    All scores are per data point, in nats (log p and ELBO: higher is better; NLL: lower).
    With ``seed`` each batch of points draws from its own seed
    (:func:`~inference.marginal.batch_seed`), and in a process group (torchrun) the ranks
    share the points (:func:`inference.distributed.importance_sample`): the estimates are the
    same either way.
    """
    from inference.distributed import importance_sample as sharded  # it builds on marginal

    data = as_data(data)
    khat = khat and num_samples >= KHAT_MIN_SAMPLES  # fewer weights have no tail to fit
    head = data.head(min(2, len(data)))
    labels = head[1] is not None and probe_sites(model, guide, *head).y is not None
    kwargs = {"num_samples": num_samples, "chunk_size": chunk_size, "batch_size": batch_size,
              "fast": fast, "khat": khat}
    s = (importance_sample(model, guide, data, progress=progress, **kwargs) if seed is None
         else sharded(model, guide, data, seed=seed, progress=progress, **kwargs))
    nll = -s.log_likelihood.double()
    n, dims = len(nll), data.head(1)[0][0].numel()
    mc_se = s.mc_stderr.double()
    summary: dict[str, Any] = {
        "n": n, "num_samples": num_samples,
        "nll": nll.mean().item(),
        "target": "x, y" if labels else "x",  # the model observes the labels too: log p(x, y)
        "nll_mc_stderr": (mc_se.pow(2).sum().sqrt() / n).item(),
        "nll_data_stderr": (nll.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
        "bits_per_dim": nll.mean().item() / (dims * math.log(2)),
        "elbo": s.elbo.double().mean().item(),
        "reconstruction": s.log_lik.double().mean().item(),
        "kl": (s.log_lik.double() - s.elbo.double()).mean().item(),
        "active_units": active_units(s.latent_means),
        "latent_dims": {k: v.shape[-1] for k, v in s.latent_means.items()},
        "ess_median": s.ess.double().median().item(),
        "fast_path": s.fast_path,
    }
    points = {"nll": nll.float().cpu(), "nll_mc_stderr": mc_se.float().cpu()}
    if khat:
        summary.update(khat_summary(s.khat))
        points["khat"] = s.khat.float().cpu()
    return summary, points


def format_scores(s: dict[str, Any]) -> str:
    """A plain-text table of :func:`score`'s summary, with a warning line on bad k̂."""
    units = ", ".join(f"{k}: {v} / {s['latent_dims'][k]}" for k, v in s["active_units"].items())
    units = (f"  active units    {units}" if "codes_used" not in s else
             f"  codes used      {s['codes_used']} of {s['num_codes']} (at {s['code_positions']}"
             f" positions)")
    name = "NLL" if s.get("target", "x") == "x" else "−log p(x, y)"
    name = f"{name} bound" if s.get("point_mass") else name  # −ELBO of a point-mass guide
    lines = [
        f"points {s['n']}, importance samples K = {s['num_samples']}",
        f"  {name:16s}{s['nll']:9.2f} nats  ± {s['nll_mc_stderr']:.3f} (Monte Carlo)  "
        f"± {s['nll_data_stderr']:.2f} (test set)",
        f"  bits per dim    {s['bits_per_dim']:9.4f}",
        f"  ELBO            {s['elbo']:9.2f} nats",
        f"  reconstruction  {s['reconstruction']:9.2f} nats",
        f"  KL              {s['kl']:9.2f} nats" + (
            f"  (rate: {s['rate_bits_per_position']:.3f} bits per latent position)"
            if "rate_bits_per_position" in s else ""),
        units,
        f"  ESS (median)    {s['ess_median']:9.1f} of {s['num_samples']}",
        f"  fast path       {s['fast_path']}",
    ]
    if "khat_max" not in s and s["num_samples"] > 1:
        lines.append(f"  Pareto k̂        not computed: its tail fit needs K >= {KHAT_MIN_SAMPLES}")
    if "khat_max" in s:
        lines.append(f"  Pareto k̂        {100 * s['share_khat_above_0.7']:.1f}% of points above "
                     f"{KHAT_BAD} (max {s['khat_max']:.2f}, median {s['khat_median']:.2f})")
        if s["share_khat_above_0.7"] > 0:
            lines.append(f"warning: {100 * s['share_khat_above_0.7']:.1f}% of points have "
                         f"k̂ > {KHAT_BAD}: their log p(x) estimates are unreliable; the guide "
                         f"is a poor proposal there")
    return "\n".join(lines)
