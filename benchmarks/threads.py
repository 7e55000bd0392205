"""Seconds per epoch of the quick start at each thread setting, alone and beside a busy
process: why ``vae-train`` picks its CPU threads from the cores other processes leave free.

Each cell runs ``vae-train`` (the quick start: embedded MNIST, default pair, batch 128) for
``--epochs`` epochs with ``--threads 1``, ``--threads 2`` and the default, and reads the
seconds of epochs 2 and later from its ``metrics.json``; the default's choice is read from
its ``config.json``. "busy" runs the same beside one process that spins on a core. Rounds
interleave the settings. Writes ``docs/benchmarks/tables/threads.md``.

    python benchmarks/threads.py                       # 2 rounds of 5 epochs per cell
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import write_table

SETTINGS = {"`--threads 1`": ["--threads", "1"], "`--threads 2`": ["--threads", "2"],
            "default": []}


# vae-train, then the number of threads it chose, on stderr
RUN = ("import sys, torch; from inference.cli import train_main; train_main(sys.argv[1:]); "
       "print('threads', torch.get_num_threads(), file=sys.stderr)")


def _spin() -> None:
    while True:
        pass


def epoch_seconds(extra: list[str], epochs: int, folder: Path) -> tuple[list[float], int]:
    """Seconds of epochs 2..epochs of one quick-start run, and the threads it used."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS",
                                                              "MKL_NUM_THREADS")}
    run = subprocess.run([sys.executable, "-c", RUN, "--epochs", str(epochs), "--quiet",
                          "--no-figures", "--no-tensorboard", "--out", str(folder), *extra],
                         check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         text=True)
    history = json.loads((folder / "metrics.json").read_text())["history"]
    threads = int(run.stderr.strip().splitlines()[-1].split()[-1])
    return [r["seconds"] for r in history[1:]], threads


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args(argv)
    times: dict[tuple[str, str], list[float]] = {}
    picked: dict[str, set] = {}
    loads: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("alone", "one other busy process"):
            spinner = None
            if condition != "alone":
                spinner = multiprocessing.Process(target=_spin, daemon=True)
                spinner.start()
            try:
                for r in range(args.rounds):
                    for name, extra in SETTINGS.items():
                        loads.setdefault(condition, []).append(os.getloadavg()[0])
                        folder = Path(tmp, f"{condition[:4]}-{r}-{len(times)}")
                        seconds, threads = epoch_seconds(extra, args.epochs, folder)
                        times.setdefault((condition, name), []).extend(seconds)
                        if name == "default":
                            picked.setdefault(condition, set()).add(threads)
                        print(f"{condition}, {name}: {statistics.median(seconds):.2f} s/epoch",
                              flush=True)
            finally:
                if spinner is not None:
                    spinner.terminate()
    lines = ["| | " + " | ".join(SETTINGS) + " |", "| --- |" + " --- |" * len(SETTINGS)]
    for condition in ("alone", "one other busy process"):
        cells = []
        for name in SETTINGS:
            t = times[(condition, name)]
            cell = f"{min(t):.2f}–{max(t):.2f} (median {statistics.median(t):.2f})"
            if name == "default":
                cell += f", picks {', '.join(str(x) for x in sorted(picked[condition], key=str))}"
            cells.append(cell)
        load = statistics.mean(loads[condition])
        lines.append(f"| {condition} (load average {load:.1f}) | " + " | ".join(cells) + " |")
    table = "Seconds per epoch (epochs 2 and later of every run, min–max):\n\n" + "\n".join(lines)
    print(table)
    write_table("threads", table, budget=f"{args.rounds} rounds × {args.epochs} epochs of the "
                f"quick start per cell (embedded MNIST, 9,000 images, batch 128)",
                seeds="0 (vae-train's default)")


if __name__ == "__main__":
    main()
