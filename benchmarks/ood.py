"""Out-of-distribution detection by every anomaly score, trained on MNIST and on
Fashion-MNIST, against the other set, uniform noise and constant images.

Each pair is the default 784-400-50 Bernoulli VAE of ``vae-train`` (dynamic binarization,
Adam 1e-3, batch 128, seed 0), trained ``--epochs`` epochs on a random ``--train-limit``
training images into ``<out>/<dataset>``; the weights of the best validation epoch are
scored. A random ``--limit`` examples of the
test split (stratified by label) face as many of each other set, all binarized by one
Bernoulli draw (``inference.anomaly.run``). The ratio score's background pair trains
``--background-epochs`` epochs on perturbed images. Every step is saved, so a stopped
run resumes where it stopped, and a saved report with the same budget is reused (so the
two directions can run as two jobs, then once more to print the whole table). The
complexity score is also shown with every compressor, on the same log p̂(x), next to the
compressor's −L(x) alone, to show what the model adds to it.

    VAE_LAB_DATA=/path/to/data OMP_NUM_THREADS=1 python benchmarks/ood.py --out runs/ood
"""

from __future__ import annotations

import argparse
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from inference.anomaly import SCORES
from inference.anomaly.complexity import COMPRESSORS, compressed_length
from inference.anomaly.detect import ScoreOptions
from inference.anomaly.metrics import bootstrap, ood_metrics
from inference.anomaly.run import against_set, ood_run
from inference.checkpoint import load_checkpoint, load_json
from inference.config import RunConfig
from inference.run_outputs import run_config, run_split
from inference.runs import train_run

PAIRS = {"fashion-mnist": "mnist", "mnist": "fashion-mnist"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/ood"))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--train-limit", type=int, default=20000,
                   help="random training images (label-stratified; 0: all 55,000)")
    p.add_argument("--background-epochs", type=int, default=5)
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--num-samples", type=int, default=100)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--train", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    p.add_argument("--data-dir", type=Path, default=None)
    return p.parse_args(argv)


def trained(folder: Path, dataset: str, epochs: int, train_limit: int, data_dir) -> None:
    """Train (or finish training) the default pair on ``dataset`` into ``folder``, on a
    random ``train_limit`` training images (all of them for 0)."""
    ckpt = folder / "checkpoint.pt"
    if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= epochs:
        return
    config = RunConfig(dataset=dataset, epochs=epochs, seed=0,
                       train_limit=train_limit or None)
    train_run(config, folder, resume=ckpt.exists(), explicit={"epochs"}, data_dir=data_dir,
              progress=False, figures=(), tensorboard=False)


def compressors(folder: Path, against: list[str], limit: int, data_dir) -> list[str]:
    """Rows of the complexity score with every compressor, on the saved log p̂(x)."""
    saved = load_json(folder / "config.json")
    config = run_config(folder, saved)
    scores = load_checkpoint(folder / f"ood-{'+'.join(against)}-scores.pt")["scores"]
    test = run_split(config, "test", data_dir, False)
    inside = test.subset(min(limit, len(test)), seed=0)
    sets = {"in": inside, **{n: against_set(n, inside, limit, seed=config.seed,
                                            data_dir=data_dir, download=False)
                             for n in against}}
    rows = []
    for name in COMPRESSORS:
        length = {k: compressed_length(d, compressor=name) for k, d in sets.items()}
        for label, s in ((f"complexity ({name})", {k: scores["nll"][k] - v
                                                   for k, v in length.items()}),
                         (f"−L(x) alone ({name})", {k: -v for k, v in length.items()})):
            for n in against:
                m, se = ood_metrics(s["in"], s[n]), bootstrap(s["in"], s[n], rounds=200)
                rows.append(f"| {config.dataset} | {n} | {label} | {m['auroc']:.4f} ± "
                            f"{se['auroc']:.4f} | {m['auprc']:.4f} | {m['fpr95']:.3f} |")
    return rows


def saved_report(folder: Path, against: list[str], options: ScoreOptions, limit: int,
                 background_epochs: int) -> dict | None:
    """The report a previous run of this benchmark wrote with the same budget, if any."""
    path = folder / f"ood-{'+'.join(against)}.json"
    if not path.exists():
        return None
    report, background = load_json(path), folder / "background-p0.2-l20.0001/checkpoint.pt"
    same = (report["options"] == {**asdict(options), "compressor": "tiff-g4"}
            and report["in"]["n"] == limit and set(report["seconds_per_1000"]) == set(SCORES)
            and background.exists()
            and load_checkpoint(background)["epoch"] == background_epochs)
    return report if same else None


def table(reports: dict[str, dict]) -> list[str]:
    rows = ["| trained on | against | score | AUROC | AUPRC | FPR@95 | s / 1000 |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for dataset, report in reports.items():
        for name, per_score in report["metrics"].items():
            for score, m in per_score.items():
                rows.append(f"| {dataset} | {name} | {score} | {m['auroc']:.4f} ± "
                            f"{m['auroc_se']:.4f} | {m['auprc']:.4f} ± {m['auprc_se']:.4f} | "
                            f"{m['fpr95']:.3f} ± {m['fpr95_se']:.3f} | "
                            f"{report['seconds_per_1000'][score]:.1f} |")
    return rows


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    options = ScoreOptions(num_samples=args.num_samples, steps=args.steps)
    reports, extra, begin = {}, [], time.perf_counter()
    for dataset in args.train:
        folder = args.out / dataset
        start = time.perf_counter()
        trained(folder, dataset, args.epochs, args.train_limit, args.data_dir)
        print(f"{dataset}: trained ({time.perf_counter() - start:.0f} s)")
        against = [PAIRS[dataset], "noise", "constant"]
        report = saved_report(folder, against, options, args.limit, args.background_epochs)
        if report is None:
            report = ood_run(folder, against, scores=SCORES, limit=args.limit,
                             options=options, device="cpu", data_dir=args.data_dir,
                             download=False, background_epochs=args.background_epochs)
        reports[dataset] = report
        extra += compressors(folder, against, args.limit, args.data_dir)
        print(f"{dataset}: done ({time.perf_counter() - start:.0f} s)")
    lines = [f"Budget: {args.epochs} epochs (background {args.background_epochs}) on "
             f"{args.train_limit or 55000} random training images, "
             f"{args.limit} random test examples per set, K = {args.num_samples}, regret "
             f"{args.steps} steps (lr {options.lr}, {options.particles} particle, ELBOs from "
             f"{options.eval_particles}), seed 0, 1 thread, {platform.processor() or 'CPU'}; "
             f"{(time.perf_counter() - begin) / 60:.1f} min in all.",
             "", *table(reports), "", "| trained on | against | score | AUROC | AUPRC | "
             "FPR@95 |", "| --- | --- | --- | --- | --- | --- |", *extra]
    text = "\n".join(lines)
    print(text)
    (args.out / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
