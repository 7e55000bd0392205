"""``vae-impute RUN --data FILE --out FILE``: fill the missing cells of a file with a run.

A table (CSV or Parquet; the run was trained on one) gets its empty cells filled with the
conditional mean of :func:`inference.owndata.imputation.impute_table` and is written in its
own format: same columns in the same order, observed cells untouched (copied from the
input). ``--multiple M`` also writes M completed tables drawn from p(x_mis | x_obs)
(``OUT.draw1.csv`` ...) and the per-cell spread over them (``OUT.spread.csv``: the standard
deviation of a numeric cell, the share of draws that differ from the single imputation for
a category; empty where observed). ``--scores FILE`` writes each row's anomaly score,
−log p̂(x_obs) (:func:`inference.anomaly.anomaly_scores`, score ``nll``).

An array of images (``.npy``, or ``.npz`` with ``x``; NaN marks the missing pixels) goes
through the images' inpainting :func:`inference.impute.impute` (the same importance
weights, :func:`inference.impute.masked_log_weights`) and is written with the same shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from inference.check import DataError
from inference.checkpoint import load_json
from inference.owndata.imputation import impute_table
from inference.run_folder import load_run

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")


def impute_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vae-impute", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("run", help="run folder of a trained pair (vae-train --out)")
    a("--data", required=True, help="file with missing cells: a CSV/Parquet table (empty cells) "
      "or an .npy/.npz array of images (NaN pixels)")
    a("--out", required=True, help="file to write, in the input's format")
    a("--multiple", type=int, default=0, help="also write M draws from p(x_mis | x_obs) and "
      "their per-cell spread (default 0: the single imputation only)")
    a("--num-samples", type=int, default=1000, help="importance particles per row "
      "(default 1000)")
    a("--scores", help="also write per-row anomaly scores −log p(x_obs) to this CSV "
      "(tables; default: none)")
    a("--seed", type=int, default=0, help="random seed (default 0)")
    a("--checkpoint", choices=("best", "last"), default="best",
      help="which weights: best (chosen on validation) or last (default best)")
    a("--device", default="cpu", help="device to run on (default cpu)")
    return p


def table_record(run: str | Path) -> dict | None:
    """How the run's table was read and scaled: ``data.json``'s ``table`` (vae-train
    --data), else the ``data`` a :func:`~inference.run_folder.save_run` call kept."""
    for name, key in (("data.json", "table"), ("config.json", "data")):
        path = Path(run) / name
        if path.exists():
            found = load_json(path).get(key)
            if isinstance(found, dict) and found.get("kind") == "table":
                return found
    return None


def _write_table(frame, path: Path, source_format: str) -> None:
    if source_format == "parquet" or path.suffix.lower() == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix.lower() == ".tsv" else ",")


def _completed(original, values, mask, record, text: bool):
    """The input frame with its missing cells from ``values`` (scaled units): numbers in the
    file's units (counts whole), categories as written; ``text``: the frame holds a CSV's
    cells as strings, which observed cells keep."""
    from inference.owndata.tables import unscale

    new = unscale(values, record)
    out = original.copy()
    for i, col in enumerate(record["schema"]):
        missing = ~mask[:, i].numpy()
        column = new[col["name"]].to_numpy()
        if col["type"] == "count":
            column = np.round(column.astype(float)).astype(np.int64)
        cells = column[missing].tolist()
        if text:
            cells = [f"{v:.8g}" if isinstance(v, float) else str(v) for v in cells]
        out[col["name"]] = out[col["name"]].astype(object)
        out.loc[missing, col["name"]] = cells
        if not text:
            out[col["name"]] = out[col["name"]].infer_objects()
    return out


def impute_file(run, data, out, *, multiple=0, num_samples=1000, scores=None, seed=0,
                checkpoint="best", device="cpu") -> list[Path]:
    """What ``vae-impute`` does; returns the paths written."""
    model, guide, _ = load_run(run, device, checkpoint=checkpoint)
    out, data = Path(out), Path(data)
    if data.suffix.lower() not in TABLE_SUFFIXES:
        return [_impute_images(model, guide, data, out, multiple, num_samples, seed)]
    record = table_record(run)
    if record is None:
        raise DataError(f"{run} was not trained on a table (no table record in data.json or "
                        f"config.json): train it with vae-train --data TABLE")
    from inference.owndata.tables import read_frame, read_table

    table, _ = read_table(data, like=record)
    result = impute_table(model, guide, table, num_samples=num_samples, multiple=multiple,
                          seed=seed)
    fmt = record.get("format", "csv")
    text = data.suffix.lower() != ".parquet"
    original = read_frame(data, text=text)
    _write_table(_completed(original, result.mean, table.mask, record, text), out, fmt)
    written = [out]
    if multiple:
        frames = [_completed(original, d, table.mask, record, text) for d in result.draws]
        for m, frame in enumerate(frames, 1):
            written.append(out.with_name(f"{out.stem}.draw{m}{out.suffix}"))
            _write_table(frame, written[-1], fmt)
        written.append(out.with_name(f"{out.stem}.spread{out.suffix}"))
        _write_table(_spread(frames, table.mask, record), written[-1], fmt)
    if scores:
        from inference.anomaly import anomaly_scores

        nll = anomaly_scores(model, guide, table, score="nll", num_samples=num_samples,
                             seed=seed)
        import pandas as pd

        pd.DataFrame({"row": np.arange(len(nll)), "nll": nll.numpy()}).to_csv(scores,
                                                                             index=False)
        written.append(Path(scores))
    return written


def _spread(frames, mask, record):
    """Per missing cell: sd over the draws (numbers) or the share that differ from the
    first draw's mode (categories); NaN (empty) where the cell was observed."""
    import pandas as pd

    out = {}
    for i, col in enumerate(record["schema"]):
        cells = np.stack([f[col["name"]].to_numpy() for f in frames])  # (M, N)
        if col["type"] in ("binary", "categorical"):
            mode = pd.DataFrame(cells.T).mode(axis=1)[0].to_numpy()
            value = (cells != mode[None]).mean(0)
        else:
            value = pd.to_numeric(pd.Series(cells.ravel())).to_numpy().reshape(
                cells.shape).std(0)
        out[col["name"]] = np.where(mask[:, i].numpy(), np.nan, value)
    return pd.DataFrame(out)


def _impute_images(model, guide, data: Path, out: Path, multiple, num_samples, seed) -> Path:
    from inference.impute import impute

    if data.suffix.lower() not in (".npy", ".npz"):
        raise DataError(f"{data}: vae-impute reads a table ({', '.join(TABLE_SUFFIXES)}) or "
                        f"an .npy/.npz array of images with NaN in the missing pixels")
    array = np.load(data)
    array = array["x"] if data.suffix.lower() == ".npz" else array
    x = torch.as_tensor(array, dtype=torch.get_default_dtype())
    flat = x.reshape(len(x), -1)
    observed = ~torch.isnan(flat)
    torch.manual_seed(seed)
    done = impute(model, guide, flat.nan_to_num(), observed, num_samples=num_samples,
                  num_draws=max(1, multiple))
    images = done.images.reshape(-1, *x.shape)  # (S, N, ...)
    result = images[0] if not multiple else images
    np.savez(out, x=result.numpy()) if out.suffix == ".npz" else np.save(out, result.numpy())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = impute_parser()
    args = parser.parse_args(argv)
    from inference.cli import _run

    def work() -> int:
        if args.multiple < 0 or args.num_samples < 1:
            raise ValueError(f"--multiple must be ≥ 0 and --num-samples ≥ 1, got "
                             f"{args.multiple}, {args.num_samples}")
        for path in impute_file(args.run, args.data, args.out, multiple=args.multiple,
                                num_samples=args.num_samples, scores=args.scores,
                                seed=args.seed, checkpoint=args.checkpoint,
                                device=args.device):
            print(f"wrote {path}")
        return 0

    return _run(parser, work)
