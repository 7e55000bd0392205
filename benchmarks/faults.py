"""Fault injection: vae-train killed with SIGKILL at random moments, then resumed.

Each trial starts a run, kills it after a random delay drawn over the run's whole length
(start-up, mid-epoch, checkpoint writes, the final figures), resumes it (as many times as it
takes, each resume killed too with probability ``--kill-resumes``), and checks that:

* every file it left is whole (the checkpoint loads, its digest holds);
* after the resume no temporary file is left in the folder;
* the finished run's weights and history equal those of a run never killed, bit for bit.

    python benchmarks/faults.py --trials 20
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import torch

from inference.checkpoint import load_checkpoint

ARGS = ["--epochs", "3", "--quiet", "--no-tensorboard"]


def launch(out: Path, resume: bool) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "inference.cli", *ARGS, "--out", str(out)]
    return subprocess.Popen(cmd + (["--resume"] if resume else []), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def finished(out: Path) -> bool:
    return (out / "metrics.json").exists() and (out / "figures" / "curves.png").exists()


def state(out: Path) -> tuple[torch.Tensor, list]:
    s = load_checkpoint(out / "checkpoint.pt")
    flat = torch.cat([v.flatten().double() for k in ("model", "guide") for v in s[k].values()])
    return flat, [(r["epoch"], r["objective"], r["valid_elbo"]) for r in s["history"]]


def trial(out: Path, length: float, rng: random.Random, kill_resumes: float) -> dict:
    """Launch, kill at a random moment, relaunch (--resume once there is a config) until a
    launch finishes; every checkpoint left behind must load."""
    kills = launches = 0
    while True:
        proc = launch(out, resume=launches > 0 and (out / "config.json").exists())
        launches += 1
        if launches == 1 or rng.random() < kill_resumes:
            time.sleep(rng.uniform(0.0, length))
            if proc.poll() is None:
                proc.kill()
                kills += 1
        proc.wait()
        errors = proc.stderr.read()
        proc.stderr.close()
        if (out / "checkpoint.pt").exists():
            load_checkpoint(out / "checkpoint.pt")  # whole, or this raises
        if proc.returncode == 0:
            break
        if proc.returncode != -9:
            raise SystemExit(f"launch {launches} failed ({proc.returncode}): {errors}")
    return {"kills": kills, "resumes": launches - 1,
            "temporaries": [p.name for p in out.glob(".*.tmp")]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--kill-resumes", type=float, default=0.3,
                   help="probability that a resume is killed too")
    p.add_argument("--out", default="runs/faults")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    root = Path(args.out)
    straight = root / "straight"
    start = time.perf_counter()
    if not finished(straight):
        subprocess.run([sys.executable, "-m", "inference.cli", *ARGS, "--out", str(straight)],
                       check=True, capture_output=True)
    length = time.perf_counter() - start
    expected = state(straight)
    print(f"uninterrupted run: {length:.1f} s; kills drawn uniformly over that")
    rng, equal, clean, kills = random.Random(args.seed), 0, 0, 0
    for i in range(args.trials):
        out = root / f"trial{i}"
        result = trial(out, length, rng, args.kill_resumes)
        got = state(out)
        same = torch.equal(got[0], expected[0]) and got[1] == expected[1]
        equal, clean = equal + same, clean + (not result["temporaries"])
        kills += result["kills"]
        print(f"trial {i}: {result['kills']} kill(s), {result['resumes']} resume(s), "
              f"equal to the uninterrupted run: {same}, temporaries left: "
              f"{result['temporaries'] or 'none'}", flush=True)
    print(f"{equal} of {args.trials} runs equal to the uninterrupted run bit for bit, {clean} "
          f"of {args.trials} without temporary files, {kills} SIGKILLs in all "
          f"({time.perf_counter() - start:.0f} s)")
    if os.environ.get("VAE_LAB_FAULTS_STRICT") and (equal < args.trials or clean < args.trials):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
