"""Pyro's own semi-supervised M2 example (``examples/vae/ss_vae_M2.py``), run as published, so
that the lab's M2 is compared with the peer's code at equal budget on the same machine.

The example's directory is exported from a Pyro repository (``--pyro-repo``, a git
directory such as the one ``git clone https://github.com/pyro-ppl/pyro`` makes) at
``--rev``. Two lines are changed, and only these: its ``assert pyro.__version__...`` (it pins
1.9.1) and its unconditional ``from visdom import Visdom`` (visdom is optional and unused
without ``--visualize``). MNIST's idx files are copied, uncompressed, from the lab's data
folder to where the example's loader looks (``utils/.data/MNISTCached/raw``: torchvision names
the folder after the dataset class), so nothing is downloaded. The example runs with its
documented settings (``--aux-loss -alm 46 -enum parallel -zd 50 -hl 500 -lr 0.00042 -b1 0.95
-bs 100``) and the per-epoch test accuracy is parsed from its output.

    python benchmarks/pyro_m2.py --pyro-repo PYRO_GIT_DIR --labels 100 --epochs 3 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from io import BytesIO
from pathlib import Path

from inference.data import resolve_data_dir

SETTINGS = ["--aux-loss", "-alm", "46", "-enum", "parallel", "-zd", "50", "-hl", "500",
            "-lr", "0.00042", "-b1", "0.95", "-bs", "100"]
_LINE = re.compile(r"^(\d+) epoch: .* validation accuracy ([0-9.]+) test accuracy ([0-9.]+)")


def export_example(repo: Path, rev: str, dest: Path, data_dir: Path) -> Path:
    """Write ``examples/vae`` of ``repo`` at ``rev`` under ``dest``, patched as the module
    docstring says, with MNIST in place; return the example's folder."""
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "examples/vae"],
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    folder = dest / "examples" / "vae"
    script = folder / "ss_vae_M2.py"
    text = script.read_text()
    for old, new in (('    assert pyro.__version__.startswith("1.9.1")\n', ""),
                     ("from visdom import Visdom\n", "")):
        if old not in text:
            raise SystemExit(f"error: {script} no longer contains {old.strip()!r}; "
                             "update benchmarks/pyro_m2.py for this revision")
        text = text.replace(old, new)
    script.write_text(text)
    raw = folder / "utils" / ".data" / "MNISTCached" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        src = data_dir / "MNIST" / "raw" / f"{name}.gz"
        if not src.exists():
            raise SystemExit(f"error: {src} is missing; point VAE_LAB_DATA at a folder "
                             "with MNIST/raw (torchvision's layout)")
        with gzip.open(src, "rb") as f, open(raw / name, "wb") as out:
            shutil.copyfileobj(f, out)
    return folder


def parse(output: str) -> tuple[list[float], list[float]]:
    """The example's validation and test accuracy after each epoch, from its printout."""
    found = [m for m in map(_LINE.match, output.splitlines()) if m]
    return [float(m.group(2)) for m in found], [float(m.group(3)) for m in found]


def run_example(folder: Path, labels: int, epochs: int, seed: int, log: Path) -> dict:
    """Run the example once; its per-epoch test accuracy and wall-clock seconds."""
    cmd = [sys.executable, "ss_vae_M2.py", "--seed", str(seed), "-n", str(epochs),
           "-sup", str(labels), *SETTINGS]
    start = time.perf_counter()
    with open(log, "w") as out:  # written as it runs, so that a long run can be read
        proc = subprocess.run(cmd, cwd=folder, stdout=out, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"error: Pyro's example exited {proc.returncode}; see {log}")
    valid, curve = parse(log.read_text())
    if len(curve) != epochs:
        raise SystemExit(f"error: found {len(curve)} epoch lines in {log}, expected {epochs}")
    return {"labels": labels, "epochs": epochs, "seed": seed, "accuracy": curve,
            "validation": valid,
            "seconds": round(seconds, 1), "command": " ".join(cmd[1:])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pyro-repo", type=Path, required=True,
                   help="a git directory of pyro-ppl/pyro (required)")
    p.add_argument("--rev", default="HEAD", help="revision to export (default HEAD)")
    p.add_argument("--labels", type=int, default=100, help="labelled points (default 100)")
    p.add_argument("--epochs", type=int, default=3, help="epochs (default 3)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--work", type=Path, default=Path(".bench/pyro"),
                   help="folder for the exported example and logs (default .bench/pyro)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file of the curves (default WORK/pyro-m2-LABELS-EPOCHS.json)")
    args = p.parse_args(argv)
    folder = export_example(args.pyro_repo, args.rev, args.work / "src", resolve_data_dir())
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        log = args.work / f"log-{args.labels}-{args.epochs}-seed{seed}.txt"
        r = run_example(folder, args.labels, args.epochs, seed, log)
        print(f"Pyro example, {args.labels} labels, seed {seed}: test accuracy by epoch "
              + " ".join(f"{a:.4f}" for a in r["accuracy"]) + f" ({r['seconds']:.0f} s)",
              flush=True)
        results.append(r)
    out = args.out or args.work / f"pyro-m2-{args.labels}-{args.epochs}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
