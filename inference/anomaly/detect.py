"""Several anomaly scores on an in-distribution set and several others, at once.

Scores that need −log p̂(x) (``nll``, ``complexity``, ``ratio``, ``typicality``) share one
importance-sampling pass per set. Each score's cost is timed as if it ran alone: its own
work plus the passes it needs (``seconds_per_1000``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from inference.anomaly import SCORES, fixed
from inference.anomaly.complexity import choose_compressor, compressed_length
from inference.anomaly.metrics import bootstrap, ood_metrics
from inference.anomaly.regret import likelihood_regret
from inference.anomaly.typicality import typicality_batches
from inference.marginal import iw_log_likelihood
from inference.validate import positive_int

NEEDS_NLL = ("nll", "complexity", "ratio", "typicality")


@dataclass(frozen=True)
class ScoreOptions:
    """The budget of every score: ``num_samples`` importance samples for log p̂(x); regret's
    ``steps``, ``lr``, ``particles`` per step and ``eval_particles`` for its two ELBOs;
    the ``compressor`` of ``complexity``; the ``typicality_batch`` size M; one ``seed``."""

    num_samples: int = 200
    steps: int = 100
    lr: float = 0.05
    particles: int = 1
    eval_particles: int = 100
    compressor: str = "auto"
    typicality_batch: int = 1
    seed: int = 0

    def __post_init__(self):
        for name in ("num_samples", "steps", "particles", "eval_particles", "typicality_batch"):
            positive_int(name, getattr(self, name))


class _Clock:
    """Seconds spent per (score, set)."""

    def __init__(self):
        self.seconds: dict[tuple[str, str], float] = {}

    def run(self, key: tuple[str, str], fn):
        start = time.perf_counter()
        out = fn()
        self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - start
        return out


def _nll(model, guide, data, options: ScoreOptions) -> torch.Tensor:
    return -iw_log_likelihood(model, guide, data, num_samples=options.num_samples,
                              seed=options.seed).double().cpu()


def _score_set(model, guide, data, scores, options, clock: _Clock, name: str,
               background, entropy: float | None) -> dict[str, torch.Tensor]:
    """Every score of one set: {score: (N,)} (typicality: one per batch of M)."""
    out: dict[str, torch.Tensor] = {}
    if any(s in NEEDS_NLL for s in scores):
        nll = clock.run(("nll", name), lambda: _nll(model, guide, data, options))
        out["nll"] = nll
    if "regret" in scores:
        out["regret"] = clock.run(("regret", name), lambda: likelihood_regret(
            model, guide, data, steps=options.steps, lr=options.lr, particles=options.particles,
            eval_particles=options.eval_particles, seed=options.seed).regret.double().cpu())
    if "complexity" in scores:
        out["complexity"] = nll - clock.run(("complexity", name), lambda: compressed_length(
            data, compressor=options.compressor))
    if "ratio" in scores:
        out["ratio"] = nll - clock.run(("ratio", name), lambda: _nll(*background, data, options))
    if "typicality" in scores:
        out["typicality"] = typicality_batches(nll, entropy, options.typicality_batch,
                                               seed=options.seed)
    return {s: out[s] for s in scores}


def _seconds_per_1000(clock: _Clock, scores, sizes: dict[str, int]) -> dict[str, float]:
    """Each score's cost alone per 1000 examples: its own seconds, plus log p̂(x)'s where
    it builds on it (Ĥ's one-off pass for typicality is not included)."""
    total = sum(sizes.values())
    cost = {}
    for s in scores:
        own = sum(clock.seconds.get((s, n), 0.0) for n in sizes)
        shared = sum(clock.seconds.get(("nll", n), 0.0) for n in sizes) if (
            s in NEEDS_NLL and s != "nll") else 0.0
        cost[s] = 1000 * (own + shared) / total
    return cost


def compare(model, guide, inside, outside: dict[str, Any], *, scores=SCORES,
            options: ScoreOptions | None = None, background=None, reference=None,
            bootstrap_rounds: int = 200, log=None) -> dict[str, Any]:
    """Score ``inside`` (in-distribution) and every set of ``outside`` ({name: data}) with
    each of ``scores``; measure how each score flags each outside set.

    ``background``: the ``(model, guide)`` of a background pair (for ``ratio``);
    ``reference``: held-out in-distribution data for Ĥ (for ``typicality``). Returns
    ``{"scores": {score: {"in" or name: tensor}}, "metrics": {name: {score: {"auroc",
    "auprc", "fpr95", "auroc_se", ...}}}, "seconds_per_1000": {score: s}, "entropy": Ĥ,
    "options": {...}}`` (the compressor resolved: ``auto`` chooses on the in-set).
    Standard errors: :func:`~.metrics.bootstrap`.
    """
    options = options or ScoreOptions()
    unknown = [s for s in scores if s not in SCORES]
    if unknown or not scores:
        raise ValueError(f"unknown anomaly score {', '.join(map(repr, unknown)) or '(none)'}; "
                         f"choose from {', '.join(SCORES)}")
    if "in" in outside:
        raise ValueError("'in' names the in-distribution set; give the other sets other names")
    if "ratio" in scores and background is None:
        raise ValueError("the ratio score needs a background pair (background=(model, guide))")
    if "typicality" in scores and reference is None:
        raise ValueError("the typicality score needs held-out in-distribution data "
                         "(reference=...) to estimate Ĥ")
    log = log or (lambda message: None)
    sets = {"in": fixed(inside), **{name: fixed(d) for name, d in outside.items()}}
    entropy = None
    if "typicality" in scores:
        entropy = float(_nll(model, guide, fixed(reference), options).mean())
    if "complexity" in scores:  # one compressor for every set, chosen on the in-set
        options = replace(options, compressor=choose_compressor(sets["in"].x,
                                                                options.compressor))
    clock, per_set = _Clock(), {}
    for name, data in sets.items():
        log(f"scoring {name} ({len(data)} examples)")
        per_set[name] = _score_set(model, guide, data, scores, options, clock, name,
                                   background, entropy)
    result_scores = {s: {name: per_set[name][s] for name in sets} for s in scores}
    metrics = {}
    for name in outside:
        metrics[name] = {}
        for s in scores:
            a, b = result_scores[s]["in"], result_scores[s][name]
            se = bootstrap(a, b, rounds=bootstrap_rounds, seed=options.seed)
            metrics[name][s] = {**ood_metrics(a, b), **{f"{k}_se": v for k, v in se.items()}}
    return {"scores": result_scores, "metrics": metrics,
            "seconds_per_1000": _seconds_per_1000(clock, scores,
                                                  {n: len(d) for n, d in sets.items()}),
            "entropy": entropy, "options": asdict(options)}


__all__ = ["NEEDS_NLL", "ScoreOptions", "compare"]
