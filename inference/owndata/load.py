"""Data in by path: a folder of images, an array file or a table, split and recorded.

:func:`read_source` reads a path by its kind (:func:`source_kind`): a folder ->
:func:`~inference.owndata.images.read_image_folder`; ``.npy``/``.npz``/``.pt`` ->
:func:`~inference.owndata.arrays.read_arrays`; ``.csv``/``.tsv``/``.parquet`` ->
``inference.owndata.tables.read_table``. :func:`load_source` then holds out a random test
and validation split (stratified by label where there are labels), scales vectors with the
training rows' statistics, and returns a record of what was read and how it was scaled:
``vae-train --data`` saves it as ``<run>/data.json``, and every command that reads the run's
data again (:func:`run_split`) checks the source against it.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from inference.check import DataError
from inference.data import TensorData
from inference.owndata.arrays import ARRAY_SUFFIXES, read_arrays, standardise
from inference.owndata.images import read_image_folder

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")
SPLITS = ("train", "valid", "test")
HELD_OUT = 0.1  # share of the rows held out for each of test and validation by default


def source_kind(path: str | os.PathLike) -> str:
    """``"images"`` (a folder), ``"arrays"`` or ``"table"``, from the path alone."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"--data {path}: no such file or folder")
    if path.is_dir():
        return "images"
    suffix = path.suffix.lower()
    if suffix in ARRAY_SUFFIXES:
        return "arrays"
    if suffix in TABLE_SUFFIXES:
        return "table"
    raise DataError(f"--data {path}: unknown kind of file {suffix or '(no suffix)'}; give a "
                    f"folder of images, {', '.join(ARRAY_SUFFIXES)} arrays or a "
                    f"{', '.join(TABLE_SUFFIXES)} table")


def read_source(path: str | os.PathLike, *, image_size: int | None = None,
                channels: str = "auto", schema: str | None = None) -> tuple[TensorData, dict]:
    """Every row of ``path`` as one :class:`~inference.data.TensorData` (vectors unscaled),
    and its record."""
    kind = source_kind(path)
    if kind == "table":
        if image_size is not None or channels != "auto":
            raise ValueError(f"--image-size and --channels are for images; {Path(path).name} "
                             f"is a table: drop them")
        from inference.owndata.tables import read_table  # pandas, on demand

        data, table = read_table(path, schema=schema)
        record = {"kind": "table", "source": str(Path(path).expanduser().resolve()),
                  "sha256": table.get("sha256"), "image_shape": None,
                  "classes": table.get("classes"), "scaling": table.get("scaling"),
                  "table": table}
        return data, record
    if schema is not None:
        raise ValueError(f"--schema describes a table's columns; {Path(path).name} is not a "
                         f"table: drop it")
    read = read_image_folder if kind == "images" else read_arrays
    x, y, record = read(path, image_size=image_size, channels=channels)
    shape = record["image_shape"]
    record["options"] = {"image_size": image_size, "channels": channels}
    return TensorData(x, y, image_shape=None if shape is None else tuple(shape)), record


def split_rows(y: torch.Tensor | None, n: int, sizes: dict[str, int],
               seed: int) -> dict[str, torch.Tensor]:
    """Row indices of each split (sorted): ``sizes`` rows for test and valid drawn at random
    (seeded), stratified by ``y`` when given (each class keeps its share, largest
    remainders), the rest for train."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=g)
    held = {k: v for k, v in sizes.items() if v}
    if y is None:
        out, start = {}, 0
        for name, size in held.items():
            out[name] = order[start:start + size]
            start += size
        out["train"] = order[start:]
        return {k: v.sort().values for k, v in out.items()}
    labels = y.cpu()[order]
    classes = labels.unique()
    pools = {int(c): order[labels == c] for c in classes}  # each class's rows, shuffled
    out = {}
    for name, size in held.items():
        counts = torch.tensor([len(p) for p in pools.values()], dtype=torch.double)
        share = counts * size / counts.sum()
        quota = share.floor().long()
        rest = (share - quota).argsort(descending=True)[: size - int(quota.sum())]
        quota[rest] += 1
        out[name] = torch.cat([p[:q] for p, q in zip(pools.values(), quota, strict=True)])
        pools = {c: p[q:] for (c, p), q in zip(pools.items(), quota, strict=True)}
    out["train"] = torch.cat(list(pools.values()))
    return {k: v.sort().values for k, v in out.items()}


def rows_of(data: TensorData, rows: torch.Tensor, info: dict) -> TensorData:
    """The ``rows`` of ``data``, with its other per-row fields (a missing-value mask)."""
    extra = {f.name: getattr(data, f.name)[rows] for f in dataclasses.fields(data)
             if f.name == "mask" and getattr(data, f.name) is not None}
    y = None if data.y is None else data.y[rows]
    return dataclasses.replace(data, x=data.x[rows], y=y, info=info, **extra)


def held_out(n: int, valid: int | None, test: int | None) -> dict[str, int]:
    """Rows held out for test and validation: as asked, else 10% of the rows each."""
    sizes = {"test": round(HELD_OUT * n) if test is None else test,
             "valid": round(HELD_OUT * n) if valid is None else valid}
    if sizes["test"] < 1 and test is None:
        sizes["test"] = 1
    if sum(sizes.values()) >= n:
        raise ValueError(f"cannot hold out {sizes['test']} test and {sizes['valid']} validation "
                         f"rows of {n}; choose fewer (--test, --valid) or give more data")
    return sizes


def load_source(path: str | os.PathLike, *, valid: int | None = None, test: int | None = None,
                seed: int = 0, image_size: int | None = None, channels: str = "auto",
                schema: str | None = None, binarize: str = "none"
                ) -> tuple[dict[str, TensorData | None], dict[str, Any]]:
    """``({"train", "valid", "test"}, record)`` of the data at ``path``.

    ``valid``/``test``: rows held out at random (default 10% each; ``valid=0``: no
    validation split, None in the dict), stratified by label. Vectors from an array file are
    standardised with the training rows' mean and standard deviation. ``binarize``:
    ``"dynamic"`` (a fresh Bernoulli draw per training minibatch, one seeded draw for the
    held-out splits), ``"static"`` or ``"none"``, for data in [0, 1].
    """
    data, record = read_source(path, image_size=image_size, channels=channels, schema=schema)
    n = len(data)
    sizes = held_out(n, valid, test)
    rows = split_rows(data.y, n, sizes, seed)
    if record["scaling"] == {"kind": "standardise"}:
        x, record["scaling"] = standardise(data.x, rows["train"])
        data = dataclasses.replace(data, x=x)
    elif record["kind"] == "table":  # the table reader scales with the training rows
        from inference.owndata import tables

        if hasattr(tables, "scale"):
            data, record["table"] = tables.scale(data, record["table"], rows["train"])
            record["scaling"] = record["table"].get("scaling")
    record["splits"] = {**{k: len(rows.get(k, ())) for k in SPLITS}, "seed": seed,
                        "stratified": data.y is not None}
    name = Path(record["source"]).name
    splits: dict[str, TensorData | None] = {"valid": None}
    for split, idx in rows.items():
        how = "stratified by label" if data.y is not None else "at random"
        info = {"name": name, "kind": record["kind"], "split": split, "n": len(idx),
                "shape": list(data.image_shape or data.event_shape), "binarize": "none",
                "rows": f"{len(idx)} of {n} ({how}, seed {seed})",
                "folder": str(Path(record["source"]).parent), "sha256": record["sha256"]}
        if data.info.get("schema") is not None:
            info["schema"] = data.info["schema"]
        splits[split] = _binarized(rows_of(data, idx, info), binarize, split, seed)
    return splits, record


def _binarized(data: TensorData, binarize: str, split: str, seed: int) -> TensorData:
    if binarize == "none":
        return data
    if data.x.min() < 0 or data.x.max() > 1:
        raise DataError(f"--binarize {binarize} draws Bernoulli(x) and needs x in [0, 1]; "
                        f"{data.info['name']} ranges from {data.x.min().item():g} to "
                        f"{data.x.max().item():g}: use --binarize none")
    if binarize == "dynamic" and split == "train":
        return dataclasses.replace(data, binarize="dynamic",
                                   info={**data.info, "binarize": "dynamic"})
    x = torch.bernoulli(data.x, generator=torch.Generator().manual_seed(seed))
    return dataclasses.replace(data, x=x, info={
        **data.info, "binarize": f"static (one Bernoulli draw, seed {seed})"})


def run_data(config) -> tuple[dict[str, TensorData | None], dict[str, Any]]:
    """The splits and record of a run's ``--data`` (a :class:`~inference.config.RunConfig`)."""
    return load_source(config.data, valid=config.valid, test=config.test, seed=config.seed,
                       image_size=config.image_size, channels=config.channels,
                       schema=config.schema, binarize=config.binarize)


RECORD = "data.json"


def read_record(run: str | os.PathLike) -> dict[str, Any] | None:
    """The data record a ``--data`` run saved (``<run>/data.json``), None without one."""
    from inference.checkpoint import load_json

    path = Path(run) / RECORD
    return load_json(path) if path.exists() else None


def run_split(config, split: str, run: str | os.PathLike | None = None) -> TensorData:
    """One split of a ``--data`` run's data, read and held out as the run's were; the source
    must be the one the run recorded (same digest)."""
    splits, record = run_data(config)
    saved = None if run is None else read_record(run)
    if saved is not None and saved.get("sha256") != record.get("sha256"):
        raise DataError(f"{record['source']} changed since the run in {run} was trained (digest "
                        f"{record.get('sha256')}, recorded {saved.get('sha256')}): restore it, or "
                        f"train a new run on it")
    if splits.get(split) is None:
        raise ValueError(f"this run held out no {split} split (--valid 0); choose --split test")
    return splits[split]


def load_like(path: str | os.PathLike, record: dict[str, Any]) -> TensorData:
    """Every row of a new file or folder, read and scaled as the run's data were (its
    ``record``): the same image size and channels, the training rows' statistics."""
    if record["kind"] == "table":
        from inference.owndata.tables import read_table

        return read_table(path, schema=record["table"].get("schema"))[0]
    options = record.get("options", {})
    data, new = read_source(path, **options)
    if new["kind"] != record["kind"] or new["image_shape"] != record["image_shape"]:
        raise DataError(f"{path} holds {new['kind']} of shape {new['image_shape']}; the run was "
                        f"trained on {record['kind']} of shape {record['image_shape']}")
    scaling = record["scaling"]
    if scaling.get("kind") == "standardise":
        mean, std = torch.tensor(scaling["mean"]), torch.tensor(scaling["std"])
        if data.x.shape[1] != len(mean):
            raise DataError(f"{path} has {data.x.shape[1]} columns; the run's data had "
                            f"{len(mean)}")
        data = dataclasses.replace(data, x=(data.x - mean) / std)
    return data


def default_pair(path: str | os.PathLike) -> tuple[str, str]:
    """The registered model and guide ``vae-train --data`` uses when none is chosen: the
    RGB/grey convolutional pair for images, the tabular pair for a table, the Gaussian MLP
    pair for vectors."""
    kind = source_kind(path)
    if kind == "table":
        return "tabular", "tabular"
    if kind == "arrays":
        from inference.owndata.arrays import _read

        if _read(Path(path).expanduser().resolve())[0].ndim == 2:
            return "gaussian_mlp", "gaussian_mlp"
    return "conv_rgb", "conv_rgb"


def data_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """What ``vae-train --data`` fills in where the settings say nothing: the data path and
    schema made absolute (later commands may run elsewhere), :func:`default_pair` and no
    binarization."""
    if settings.get("data") is None:
        return {}
    out: dict[str, Any] = {k: str(Path(settings[k]).expanduser().resolve())
                           for k in ("data", "schema") if settings.get(k) is not None}
    if "model" not in settings or "guide" not in settings:
        model, guide = default_pair(out["data"])
        out.update(model=settings.get("model", model), guide=settings.get("guide", guide))
    out["binarize"] = settings.get("binarize", "none")
    return out
