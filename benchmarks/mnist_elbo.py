"""Quality benchmark: our Pyro fit against a hand-written PyTorch VAE loop, same process.

Both train the same network from the same initial weights: the defaults of
``bernoulli_mlp`` + ``gaussian_mlp``, which are Pyro's VAE example network (encoder
784-400-(50 + 50), decoder 50-400-784, softplus, Bernoulli pixels, softplus encoder
scale). Both use the same estimator (one reparameterized sample of log p(x, z) -
log q(z | x) per image, summed over the batch), Adam lr 1e-3, batch 128 and dynamic
binarization, and are scored on the same statically binarized test set. Prints the test
-ELBO curve of each and the ratio of final -ELBOs (ours / reference).

    python benchmarks/mnist_elbo.py --epochs 10            # full MNIST from $VAE_LAB_DATA
    python benchmarks/mnist_elbo.py --dataset embedded --epochs 2
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch
from provenance import write_table
from torch.nn import functional as F

from guides import make_guide
from inference import fit, load_dataset
from models import make_model

LOG_2PI = torch.log(torch.tensor(2 * torch.pi)).item()


def _normal_log_prob(z, loc, scale):  # (B, z_dim) -> (B,)
    return (-0.5 * ((z - loc) / scale) ** 2 - scale.log() - 0.5 * LOG_2PI).sum(-1)


def reference_neg_elbo(decoder, trunk, head, x):
    """-ELBO summed over the batch, one reparameterized sample: the hand-written estimator."""
    loc, raw = head(trunk(x)).chunk(2, -1)  # (B, z_dim) each
    scale = F.softplus(raw) + 1e-5
    z = loc + scale * torch.randn_like(loc)
    log_px = -F.binary_cross_entropy_with_logits(decoder(z), x, reduction="none").sum(-1)
    log_pz = _normal_log_prob(z, torch.zeros_like(z), torch.ones_like(z))
    return -(log_px + log_pz - _normal_log_prob(z, loc, scale)).sum()


def train_reference(model, guide, train, test, epochs, batch_size, lr, seed):
    dec, trunk, head = model.decoder, guide.trunk, guide.head
    params = [*dec.parameters(), *trunk.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=lr)
    torch.manual_seed(seed)
    curve = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(epoch))
        for i in range(0, len(train), batch_size):
            x = torch.bernoulli(train.x[order[i:i + batch_size]])
            loss = reference_neg_elbo(dec, trunk, head, x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            test_loss = sum(reference_neg_elbo(dec, trunk, head, test.x[i:i + 1000]).item()
                            for i in range(0, len(test), 1000))
        curve.append({"epoch": epoch, "test_elbo": -test_loss / len(test),
                      "seconds": time.perf_counter() - start})
        print(f"reference epoch {epoch}: test ELBO {curve[-1]['test_elbo']:.2f}", flush=True)
    return curve


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the curves here")
    args = p.parse_args()
    train = load_dataset(args.dataset, "train", download=False)
    test = load_dataset(args.dataset, "test", download=False)
    torch.manual_seed(args.seed)
    model, guide = make_model("bernoulli_mlp"), make_guide("gaussian_mlp")
    ref_model, ref_guide = copy.deepcopy(model), copy.deepcopy(guide)  # same initial weights
    ref = train_reference(ref_model, ref_guide, train, test, args.epochs, 128, 1e-3, args.seed)
    # Both loops score the test set after every epoch (fit's valid=): this benchmark compares
    # two implementations of one run, epoch by epoch; nothing is chosen on the test set.
    ours = fit(model, guide, train, valid=test, epochs=args.epochs, batch_size=128, lr=1e-3,
               seed=args.seed, device="cpu", progress=False,
               on_epoch=lambda r: print(f"ours epoch {r['epoch']}: test ELBO "
                                        f"{r['valid_elbo']:.2f}", flush=True))
    lines = ["| epoch | hand-written PyTorch, test −ELBO | `fit`, test −ELBO | "
             "s / epoch, hand-written | s / epoch, `fit` |", "| --- | --- | --- | --- | --- |"]
    for r, o in zip(ref, ours.records, strict=True):
        lines.append(f"| {r['epoch']} | {-r['test_elbo']:.2f} | {-o['valid_elbo']:.2f} | "
                     f"{r['seconds']:.1f} | {o['seconds']:.1f} |")
    ratio = ours.valid_elbo[-1] / ref[-1]["test_elbo"]
    lines += ["", f"Final test −ELBO: ours {-ours.valid_elbo[-1]:.2f}, reference "
              f"{-ref[-1]['test_elbo']:.2f} nats; ratio ours / reference {ratio:.4f}. "
              f"`fit`'s fast path: {ours.fast_path}."]
    print("\n".join(lines))
    write_table(f"mnist-elbo-{args.dataset}", "\n".join(lines),
                budget=f"{args.epochs} epochs of {args.dataset} ({len(train)} training images), "
                       f"batch 128, Adam 1e-3, dynamic binarization, test set statically "
                       f"binarized (seed 0)", seeds=str(args.seed))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"reference": ref, "ours": ours.records}, f, indent=2)


if __name__ == "__main__":
    main()
