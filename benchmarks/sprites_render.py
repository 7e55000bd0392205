"""How long the procedural dSprites takes to render a batch of random factor combinations.

Prints the median and range over rounds of ``render`` (uint8 images, 64×64) and of
``Sprites.observations`` (the flat float32 batch a model reads), after a warm-up that
draws the 720 sprite stamps once:

    python benchmarks/sprites_render.py --batch 10000 --rounds 9
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from provenance import write_table

from inference.disentangle.sprites import Sprites, render, stamps


def timed(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=9)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = Sprites()
    start = time.perf_counter()
    stamps()
    print(f"stamps (once per process): {time.perf_counter() - start:.3f} s")
    factors = data.sample_factors(args.batch, 0)
    rows = ["| what | seconds for the batch: median (min to max) | load average |",
            "| --- | --- | --- |"]
    for name, fn in (("`render`, uint8 (n, 64, 64)", lambda: render(factors)),
                     ("`observations`, float32 (n, 4096)", lambda: data.observations(factors))):
        t = timed(fn, args.rounds)
        print(f"{name}: {args.batch} images in {statistics.median(t):.3f} s (median of "
              f"{args.rounds}; {min(t):.3f} to {max(t):.3f}), {args.threads} thread(s), "
              f"load average {os.getloadavg()[0]:.1f}")
        rows.append(f"| {name} | {statistics.median(t):.3f} ({min(t):.3f} to {max(t):.3f}) | "
                    f"{os.getloadavg()[0]:.1f} |")
    write_table("sprites-render", "\n".join(rows),
                budget=f"{args.batch} random factor combinations, {args.rounds} rounds, "
                       f"{args.threads} thread(s)", seeds="0 (the factors)")


if __name__ == "__main__":
    main()
