"""The RGB pair on a folder of colour images, from the command line as a user would run it.

No download: the folder is made from MNIST digits already on disk (``$VAE_LAB_DATA``),
each padded to 32x32 and coloured: a random colour gradient for the background, a random
colour of good contrast for the digit, blended by the digit's grey level, saved as PNG in
one subfolder per digit (torchvision's ``ImageFolder`` layout). Then ``vae-train --data
FOLDER --image-size 32`` trains the default pair (``conv_rgb``), ``vae-eval`` scores the
held-out test images with importance sampling, and the run's reconstructions and samples are
copied to ``docs/figures/owndata/``; the scores go to ``docs/benchmarks/tables/owndata-rgb.md``:

    python benchmarks/rgb_folder.py --images 10000 --epochs 40 --eval-samples 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from provenance import ROOT, write_table

from inference.datasets import load_dataset


def colourise(digits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(n, 28, 28) grey digits in [0, 1] -> (n, 32, 32, 3) uint8 colour images."""
    n = len(digits)
    mask = np.pad(digits, ((0, 0), (2, 2), (2, 2)))[..., None]  # (n, 32, 32, 1)
    ends = rng.uniform(0, 1, (n, 2, 3))  # two background colours per image
    angle = rng.uniform(0, 2 * np.pi, n)
    yy, xx = np.mgrid[0:32, 0:32] / 31 - 0.5
    t = 0.5 + (np.cos(angle)[:, None, None] * xx + np.sin(angle)[:, None, None] * yy)
    t = t.clip(0, 1)[..., None]  # (n, 32, 32, 1): where along the gradient
    background = ends[:, None, None, 0] * (1 - t) + ends[:, None, None, 1] * t
    ink = rng.uniform(0, 1, (n, 3))
    luma = np.array([0.299, 0.587, 0.114])
    dull = np.abs(ink @ luma - ends.mean(1) @ luma) < 0.35  # too close to the background
    ink[dull] = 1 - ink[dull]
    image = background * (1 - mask) + ink[:, None, None] * mask
    return (image * 255).round().astype(np.uint8)


def write_folder(folder: Path, images: int, seed: int) -> None:
    """``images`` random MNIST training digits, coloured, as ``folder/<digit>/<i>.png``."""
    from PIL import Image

    train = load_dataset("mnist", "train", binarize="none", download=False)
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(train), images, replace=False)
    pixels = colourise(train.x[rows].reshape(-1, 28, 28).numpy(), rng)
    for i, (image, label) in enumerate(zip(pixels, train.y[rows].tolist(), strict=True)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i:05d}.png")


def cli(*argv: str) -> None:
    print("$", " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-c", "import sys; from inference import cli; "
                    f"sys.exit(cli.{argv[0].replace('vae-', '')}_main(sys.argv[1:]))",
                    *argv[1:]], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=10000, help="images in the folder")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--scale", choices=("channel", "pixel"), default="channel",
                   help="conv_rgb's scale: one per colour channel, or one per pixel")
    p.add_argument("--eval-samples", type=int, default=100, help="K of vae-eval")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=ROOT / ".bench" / "rgb_folder")
    p.add_argument("--figures", type=Path, default=ROOT / "docs" / "figures" / "owndata")
    args = p.parse_args()
    folder, run = args.work / f"digits-{args.images}-seed{args.seed}", args.work / "run"
    if not folder.exists():
        write_folder(folder, args.images, args.seed)
    if run.exists():
        shutil.rmtree(run)
    start = time.perf_counter()
    cli("vae-train", "--data", str(folder), "--image-size", "32", "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--seed", str(args.seed),
        "--model-config", json.dumps({"scale": args.scale}), "--out", str(run), "--quiet",
        "--no-tensorboard")
    seconds = time.perf_counter() - start
    cli("vae-eval", str(run), "--num-samples", str(args.eval_samples), "--quiet")
    cli("vae-sample", str(run), "-n", "64", "--out", str(run / "figures" / "samples-64.png"))
    if args.scale != "channel":  # the docs' figures are those of the default pair
        args.figures = args.figures / args.scale
    args.figures.mkdir(parents=True, exist_ok=True)
    for name, source in (("reconstructions", "reconstructions"), ("samples", "samples-64"),
                         ("curves", "curves")):
        shutil.copy(run / "figures" / f"{source}.png", args.figures / f"{name}.png")
    write_table("owndata-rgb" + ("" if args.scale == "channel" else f"-{args.scale}"),
                markdown(run, args, seconds),
                budget=f"{args.images} images, {args.epochs} epochs of batch {args.batch_size}, "
                       f"lr {args.lr}, "
                       f"K = {args.eval_samples}",
                seeds=f"{args.seed} (folder, split, training)")


def markdown(run: Path, args, seconds: float) -> str:
    metrics = json.loads((run / "metrics.json").read_text())
    record = json.loads((run / "data.json").read_text())
    config = json.loads((run / "config.json").read_text())
    score = json.loads((run / f"eval-test-K{args.eval_samples}.json").read_text())
    dims = 3 * 32 * 32
    return "\n".join([
        f"Coloured MNIST digits, {record['files']} PNG files of 32x32 in 10 class folders; "
        f"split train {record['splits']['train']} / valid {record['splits']['valid']} / test "
        f"{record['splits']['test']} (random, stratified). Pair `conv_rgb` (discretised "
        f"logistic pixels, scale per {config['model'].get('scale', 'pixel')}), weights of "
        f"epoch {metrics.get('best_epoch')} of {metrics['epochs']}, chosen on validation.",
        "",
        f"| split | −log p(x), nats (K = {args.eval_samples}) | bits per dim | ELBO, nats | "
        f"KL, nats | active units | ESS (median of K) | k̂ > 0.7 | training time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| test ({score['n']} images) | {score['nll']:.1f} ± {score['nll_data_stderr']:.1f} | "
        f"{score['nll'] / (dims * np.log(2)):.3f} | {score['elbo']:.1f} | {score['kl']:.1f} | "
        f"{sum(score['active_units'].values())} / {sum(score['latent_dims'].values())} | "
        f"{score['ess_median']:.1f} | {score.get('share_khat_above_0.7', float('nan')):.0%} | "
        f"{seconds / 60:.1f} min |",
    ])


if __name__ == "__main__":
    main()
