"""``vae-eval RUN --disentanglement``: every metric of a run trained on a factor dataset,
the ELBO's decomposition and the test ELBO, printed and saved as JSON."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyro

from inference.disentangle.data import FACTOR_DATASETS, ground_truth
from inference.disentangle.decomposition import elbo_decomposition
from inference.disentangle.metrics import METRICS, guide_mean, scores
from inference.validate import positive_float

# disentanglement_lib's default sample sizes, per metric
DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "beta_vae": {"num_train": 10_000, "num_eval": 5_000},
    "factor_vae": {"num_train": 10_000, "num_eval": 5_000, "num_variance_estimate": 10_000},
    "mig": {"num_train": 10_000},
    "sap": {"num_train": 10_000, "num_test": 5_000},
    "dci": {"num_train": 10_000, "num_test": 5_000},
    "modularity": {"num_train": 10_000, "num_test": 5_000},
    "unsupervised": {"num_train": 10_000},
}


def scaled_sizes(scale: float = 1.0) -> dict[str, dict[str, int]]:
    """The default sample sizes times ``scale`` (at least 100 each): ``scale < 1`` trades
    precision for time, and results should say so."""
    positive_float("metric scale", scale)
    return {name: {k: max(100, round(v * scale)) for k, v in sizes.items()}
            for name, sizes in DEFAULT_SIZES.items()}


HEADLINES = (("beta_vae", "eval_accuracy", "BetaVAE score"),
             ("factor_vae", "eval_accuracy", "FactorVAE score"), ("mig", "mig", "MIG"),
             ("sap", "sap", "SAP"), ("dci", "disentanglement", "DCI disentanglement"),
             ("dci", "completeness", "DCI completeness"),
             ("dci", "informativeness", "DCI informativeness"),
             ("modularity", "modularity", "modularity"),
             ("modularity", "explicitness", "explicitness"),
             ("unsupervised", "gaussian_total_correlation", "Gaussian TC of the means"))


def format_disentanglement(result: dict[str, Any]) -> str:
    lines = [f"{label:28s} {result['metrics'][name][key]:8.4f}"
             for name, key, label in HEADLINES if name in result["metrics"]]
    d = result.get("decomposition")
    if d:
        lines += [f"{'ELBO (test, nats)':28s} {result['test_elbo']:8.2f}",
                  f"KL term, {d['num_points']} test points: index-code MI {d['index_code_mi']:.2f}"
                  f" + total correlation {d['total_correlation']:.2f} + dimension-wise KL "
                  f"{d['dimwise_kl']:.2f} = {d['kl']:.2f} ± {d['kl_se']:.2f} (closed form "
                  f"{d['kl_analytic']:.2f})"]
    return "\n".join(lines)


def evaluate_disentanglement(out: str | Path, *, metrics=tuple(METRICS), seed: int = 0,
                             scale: float = 1.0, decomposition_points: int = 5000,
                             device: str = "auto", data_dir=None, download: bool = True,
                             checkpoint: str = "best", options: dict | None = None,
                             log=print) -> dict[str, Any]:
    """Score a run folder trained on ``sprites`` or ``dsprites``; writes
    ``disentanglement[-seedS][-scaleX][-last].json`` into it and returns the result.
    ``options`` adds keyword arguments per metric (``{"dci": {"n_estimators": 20}}``)."""
    from inference.checkpoint import save_json
    from inference.evaluate import elbo_terms
    from inference.run_folder import load_run, provenance
    from inference.run_outputs import run_config, run_split

    out = Path(out)
    model, guide, saved = load_run(out, device, checkpoint=checkpoint)
    run = run_config(out, saved)
    if run.dataset not in FACTOR_DATASETS or run.data is not None:
        raise ValueError(f"--disentanglement needs a run trained on a dataset with known "
                         f"factors ({', '.join(FACTOR_DATASETS)}); {out} was trained on "
                         f"{run.data or run.dataset}")
    data = ground_truth(run.dataset, data_dir, download)
    start = time.perf_counter()
    pyro.set_rng_seed(seed)
    result: dict[str, Any] = {"run": str(out), "dataset": run.dataset, "seed": seed,
                              "scale": scale, **provenance(saved)}
    sizes = scaled_sizes(scale)
    for name, extra in (options or {}).items():
        sizes[name] = {**sizes.get(name, {}), **extra}
    result["options"] = {name: sizes[name] for name in metrics}
    result["metrics"] = scores(data, guide_mean(guide), metrics, seed, sizes)
    test = run_split(run, "test", data_dir, download)
    result["test_elbo"] = elbo_terms(model, guide, test)["elbo"]
    result["decomposition"] = elbo_decomposition(model, guide, test, seed=seed,
                                                 num_points=decomposition_points)
    result["seconds"] = time.perf_counter() - start
    log(f"run {out}: {run.model} + {run.guide}, loss {run.loss}, {saved['checkpoint']} "
        f"(epoch {saved['epoch']}); metrics on {run.dataset}, seed {seed}"
        + ("" if scale == 1 else f", sample sizes × {scale:g} (the defaults × {scale:g})"))
    log(format_disentanglement(result))
    name = ("disentanglement" + (f"-seed{seed}" if seed else "")
            + ("" if scale == 1 else f"-scale{scale:g}")
            + ("-last" if checkpoint == "last" else "") + ".json")
    save_json(out / name, result)
    log(f"wrote {out / name}")
    return result
