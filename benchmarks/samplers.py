"""Latent samplers fitted after training: sample quality of the same trained pair with z
drawn from the prior and from each sampler fitted on its training codes.

For every dataset and seed, the Bernoulli MLP pair of the sample-quality table is trained
with ``vae-train``'s path (:func:`inference.runs.train_run`; the README's sample-quality
settings: 5 epochs on a stratified random 20,000 training images) into
``<out>/<dataset>-mlp-seed<S>``, then scored by ``vae-eval RUN --quality --sampler ...``'s
function (:func:`inference.samplers.run.sampler_quality_run`): ``--samples`` pixel means per
sampler against the whole test split, the train-vs-test floor, the prior-hole KL and each
sampler's held-out log-density of the test codes. The time to draw 10,000 (codes and
decoding) is measured apart. A run or a sampler already fitted is read back.

    python benchmarks/samplers.py --datasets mnist,fashion-mnist --seeds 0,1 --samples 5000
    python benchmarks/samplers.py --table            # the table and figures from what is there
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from provenance import write_table

from inference.checkpoint import load_json, save_json
from inference.config import RunConfig
from inference.runs import train_run
from inference.samplers.run import RunSamplers, sampler_quality_run

SAMPLERS = ("normal", "gmm", "flow", "two-stage", "diffusion")
FLOOR = "train vs test (floor)"
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures" / "samplers"


def train(dataset: str, seed: int, out: Path, epochs: int, limit: int) -> Path:
    run = out / f"{dataset}-mlp-seed{seed}"
    if not (run / "metrics.json").exists():
        config = RunConfig(dataset=dataset, epochs=epochs, seed=seed, device="cpu",
                           train_limit=limit)
        train_run(config, run, resume=(run / "checkpoint.pt").exists(), explicit={"epochs"},
                  progress=False, figures=(), tensorboard=False)
    return run


def draw_10k(run: Path, seed: int, names) -> dict[str, float]:
    """Seconds to draw 10,000 images (codes, then decoding) with each fitted sampler."""
    rs = RunSamplers(run, seed=seed, log=lambda _: None)
    out = {}
    for name in names:
        samplers = rs.sampler(name)
        start = time.perf_counter()
        rs.draw(samplers, 10_000)
        out[name] = time.perf_counter() - start
    return out


def score(dataset: str, seed: int, args) -> dict:
    run = train(dataset, seed, Path(args.out), args.epochs, args.train_limit)
    file = run / f"samplers-bench-N{args.samples}.json"
    if file.exists():
        return load_json(file)
    names = args.samplers.split(",")
    summary = sampler_quality_run(run, names, n=args.samples, seed=0, device="cpu",
                                  progress=False)
    summary["draw_10k_seconds"] = draw_10k(run, 0, names)
    summary["dataset"], summary["train_seed"] = dataset, seed
    save_json(file, summary)
    return summary


def figure(dataset: str, run: Path, names, n: int = 64) -> Path:
    """One 8 x 8 grid of pixel means per sampler, side by side."""
    import matplotlib.pyplot as plt

    rs = RunSamplers(run, log=lambda _: None)
    fig, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 3.3), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        torch.manual_seed(0)
        images, _ = rs.draw(rs.sampler(name), n)
        grid = images.reshape(8, 8, 28, 28).permute(0, 2, 1, 3).reshape(224, 224)
        ax.imshow(grid.numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(f"{dataset}: the same decoder, z from each sampler (pixel means)")
    FIGURES.mkdir(parents=True, exist_ok=True)
    path = FIGURES / f"{dataset}.png"
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path


def markdown(results: list[dict]) -> str:
    lines = ["| dataset | seed | sampler | FD | precision | recall | class entropy | "
             "held-out log q(z) | fit s | draw 10,000 s |", "|" + " --- |" * 10]
    for r in sorted(results, key=lambda r: (r["dataset"], r["train_seed"])):
        for name, row in r["rows"].items():
            lp = row.get("held_out_log_density")
            fit = "" if name == FLOOR else f"{row['fit_seconds']:.1f}"
            draw = "" if name == FLOOR else f"{r['draw_10k_seconds'][name]:.1f}"
            lines.append(f"| {r['dataset']} | {r['train_seed']} | {name} | "
                         f"{row['frechet_distance']:.1f} | {row['precision']:.3f} | "
                         f"{row['recall']:.3f} | {row['class_entropy']:.3f} | "
                         f"{'–' if lp is None else f'{lp:.1f}'} | {fit} | {draw} |")
    lines += ["", "| dataset | seed | KL(q(z) ‖ N(0, I)), nats | FD normal / best sampler |",
              "| --- | --- | --- | --- |"]
    for r in sorted(results, key=lambda r: (r["dataset"], r["train_seed"])):
        fds = {k: v["frechet_distance"] for k, v in r["rows"].items() if k != FLOOR}
        best = min((k for k in fds if k != "normal"), key=fds.get)
        lines.append(f"| {r['dataset']} | {r['train_seed']} | {r['prior_hole_kl']:.1f} | "
                     f"{fds['normal'] / fds[best]:.2f} ({best}) |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", default="mnist,fashion-mnist")
    p.add_argument("--seeds", default="0,1", help="training seeds of the pair")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-limit", type=int, default=20_000)
    p.add_argument("--samples", type=int, default=5000, help="samples per sampler")
    p.add_argument("--samplers", default=",".join(SAMPLERS), help="the samplers scored")
    p.add_argument("--out", default=".bench/sp")
    p.add_argument("--table", action="store_true", help="only write the table and figures "
                                                        "from the results already there")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    datasets, seeds = args.datasets.split(","), [int(s) for s in args.seeds.split(",")]
    if not args.table:
        for seed in seeds:
            for dataset in datasets:
                score(dataset, seed, args)
        return
    results = [load_json(f) for f in sorted(Path(args.out).glob(
        f"*-mlp-seed*/samplers-bench-N{args.samples}.json"))]
    for r in results:
        if r["train_seed"] == 0:
            names = [k for k in r["rows"] if k != FLOOR]
            run = Path(args.out) / f"{r['dataset']}-mlp-seed{r['train_seed']}"  # where it is now
            print(f"wrote {figure(r['dataset'], run, names)}")
    write_table("samplers", markdown(results),
                budget=f"pair: {args.epochs} epochs on {args.train_limit} images; samplers: "
                       f"their defaults; {args.samples} samples each",
                seeds=", ".join(sorted({str(r['train_seed']) for r in results})))


if __name__ == "__main__":
    main()
