"""Where the time of the sprites runs goes: one training step per objective against the
same networks written by hand, the data, and the scores of a checkpoint and of a cell.

The pair of ``disentanglement.py`` (bernoulli_mlp + gaussian_mlp, 4096-256-10, batch 64,
Adam lr 1e-3), on rendered sprites, one process, paths interleaved round by round:

- ``hand-written``: encoder, reparameterized draw, decoder, Bernoulli log-likelihood and
  closed-form KL in plain torch, backward, torch's Adam: the floor of a step;
- ``VAE``, ``β-VAE (β=4)``, ``β-TCVAE (β=6)``: the lab's ``Trainer.step`` (its fast path
  where it applies, the β handler, the eager β-TCVAE objective).

Then, timed once each: serving a batch, rendering the 50,000 training sprites (which
every turn of the benchmark did for each cell, before the splits were kept), the
finiteness check of those images (a full ``isfinite`` pass, which ``TensorData`` ran on
every split and subset, against the one sum it runs now), and the scores: a checkpoint's
(MIG on 10,000 sprites and the KL per latent) and each final metric at the benchmark's
sample sizes. Milliseconds per step, medians over rounds; seconds for the rest.

    python benchmarks/profile_sprites.py --docs
"""

from __future__ import annotations

import argparse
import statistics
import time

import pyro
import torch
from provenance import write_table
from pyro.infer import Trace_ELBO

from guides import make_guide
from inference.disentangle import progress
from inference.disentangle.data import VALID, _split, load_factor_split
from inference.disentangle.evaluate import scaled_sizes
from inference.disentangle.metrics import guide_mean, scores
from inference.disentangle.objectives import BetaTCVAE
from inference.disentangle.sprites import Sprites
from inference.trainer import Trainer
from models import make_model

HIDDEN, BATCH = (256,), 64


def lab_path(kind: str):
    model = make_model("bernoulli_mlp", x_dim=4096, z_dim=10, hidden=HIDDEN)
    guide = make_guide("gaussian_mlp", x_dim=4096, z_dim=10, hidden=HIDDEN)
    loss = BetaTCVAE(6.0, 50_000) if kind == "β-TCVAE (β=6)" else Trace_ELBO()
    model(torch.zeros(2, 4096)), guide(torch.zeros(2, 4096))  # build lazily made layers
    params = list(model.parameters()) + list(guide.parameters())
    trainer = Trainer(model, guide, loss, torch.optim.Adam(params, lr=1e-3), seed=0,
                      clip_norm=None, progress=False, fast="auto",
                      beta=4.0 if kind == "β-VAE (β=4)" else None)
    return lambda x: trainer.step(x, None), (model, guide)


def hand_written():
    """The same networks and ELBO in plain torch (softplus hidden layer, softplus scale)."""
    from torch import nn

    enc = nn.Sequential(nn.Linear(4096, 256), nn.Softplus(), nn.Linear(256, 20))
    dec = nn.Sequential(nn.Linear(10, 256), nn.Softplus(), nn.Linear(256, 4096))
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)

    def step(x):
        loc, raw = enc(x).chunk(2, -1)  # (N, 10) each
        scale = nn.functional.softplus(raw) + 1e-6
        z = loc + scale * torch.randn_like(loc)
        ll = -nn.functional.binary_cross_entropy_with_logits(dec(z), x, reduction="sum")
        kl = (0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).sum()
        (kl - ll).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


def time_steps(paths: dict, x: torch.Tensor, rounds: int, steps: int) -> dict[str, float]:
    times = {name: [] for name in paths}
    with pyro.validation_enabled(False):
        for r in range(rounds):
            names = list(paths)
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                t = time.perf_counter()
                for i in range(steps):
                    paths[name](x[i * BATCH:(i + 1) * BATCH])
                times[name].append((time.perf_counter() - t) / steps * 1000)
    return {name: statistics.median(v) for name, v in times.items()}


def seconds(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    p.add_argument("--steps", type=int, default=20, help="steps per path per round (default 20)")
    p.add_argument("--docs", action="store_true", help="write the docs' table")
    args = p.parse_args()
    torch.manual_seed(0)
    train = load_factor_split("sprites", "train")
    x = train.x[:BATCH * args.steps]
    paths = {"hand-written": hand_written()}
    pairs = {}
    for kind in ("VAE", "β-VAE (β=4)", "β-TCVAE (β=6)"):
        paths[kind], pairs[kind] = lab_path(kind)
    for step in paths.values():  # warm up (the fast path captures its graph)
        for i in range(3):
            step(x[i * BATCH:(i + 1) * BATCH])
    ms = time_steps(paths, x, args.rounds, args.steps)
    rows = [f"| step: {k} | {v:.1f} ms | {v / ms['hand-written']:.2f} |" for k, v in ms.items()]
    data, (model, guide) = Sprites(), pairs["VAE"]
    sizes = scaled_sizes(0.2)
    sizes["dci"]["n_estimators"] = 20
    once = {
        "serve one batch of 64": lambda: next(train.batches(BATCH, shuffle=True)),
        "render the 50,000 training sprites (uncached)": lambda: _split(
            "sprites", "train", VALID, None, False),
        "the training split again (kept, now)": lambda: load_factor_split("sprites", "train"),
        "finiteness, full isfinite pass (before)": lambda: (~torch.isfinite(train.x)).any(),
        "finiteness, one sum (now)": lambda: torch.isfinite(train.x.sum()),
        "checkpoint: MIG (10,000) + KL per latent": lambda: progress.checkpoint_scores(
            model, guide, data, train.x[:1000]),
        **{f"final: {name} (× 0.2 sizes)": (lambda n=name: scores(
            data, guide_mean(guide), [n], 0, sizes)) for name in ("factor_vae", "dci", "sap")},
    }
    rows += [f"| {name} | {seconds(fn):.2f} s | |" for name, fn in once.items()]
    text = "\n".join(["| what | time | × hand-written step |", "| --- | --- | --- |", *rows])
    print(text)
    if args.docs:
        write_table("profile-sprites", text, budget=f"{args.rounds} interleaved rounds of "
                    f"{args.steps} steps per path, batch {BATCH}, 4096-256-10 MLP pair, "
                    f"{torch.get_num_threads()} thread(s)", seeds="0")


if __name__ == "__main__":
    main()
