"""Tables in: CSV (and Parquet when pyarrow or fastparquet is installed) through pandas.

Every column gets a type, inferred or given in a schema file (JSON or TOML, column -> type):

- ``real``: numbers, some ≤ 0 or not whole; in ``x`` after :func:`scale`: (v − mean) / sd
- ``positive``: numbers > 0, not all whole; (log v − mean) / sd
- ``count``: whole numbers ≥ 0 (not only two values); v
- ``binary``: two distinct values (0/1, yes/no, ...); the index of v in ``categories``
- ``categorical``: text with more than two values; the index of v in ``categories``

Empty cells and NaN are missing: ``x`` holds NaN there and the returned
:class:`~inference.data.TensorData` has ``mask`` False there, never a silent zero. The
record says what was read and how it was scaled, so that :func:`unscale` writes values back
in the file's own units. Each bad file, column or value raises one
:class:`~inference.check.DataError` line naming it and the fix.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inference.check import DataError
from inference.data import TensorData

TYPES = ("real", "positive", "count", "binary", "categorical")
MAX_LEVELS = 50  # more distinct texts than this, and half as many as rows: an identifier


def read_frame(path: str | os.PathLike, text: bool = False):
    """The file as a pandas DataFrame (missing cells NaN), or one DataError line; ``text``:
    a CSV's cells as the strings written in the file."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file; give the path of a .csv or .parquet table")
    try:
        if path.suffix.lower() == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",",
                                dtype=str if text else None)
    except ImportError as e:
        raise DataError(f"{path}: reading Parquet needs pyarrow or fastparquet ({e}); "
                        f"pip install pyarrow, or save the table as CSV") from e
    except (ValueError, OSError, pd.errors.ParserError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"{path}: not a readable table ({first}); check its format") from e
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise DataError(f"{path}: the table has no rows or no columns")
    return frame


def read_schema(schema: str | os.PathLike | dict | None) -> dict[str, str]:
    """{column: type} from a JSON or TOML file or a dict (types checked), {} for None."""
    if schema is None:
        return {}
    if isinstance(schema, list):  # a record's schema: a list of column dicts
        return {c["name"]: c["type"] for c in schema}
    if not isinstance(schema, dict):
        path = Path(schema)
        try:
            text = path.read_text()
        except OSError as e:
            raise DataError(f"schema {path}: cannot read it ({e.strerror})") from e
        try:
            if path.suffix.lower() == ".toml":
                import tomllib

                schema = tomllib.loads(text)
            else:
                schema = json.loads(text)
        except ValueError as e:
            raise DataError(f"schema {path}: not valid {path.suffix[1:] or 'JSON'} ({e}); "
                            f"write it as column = type pairs") from e
        schema = schema.get("columns", schema) if isinstance(schema, dict) else schema
    if not isinstance(schema, dict):
        raise DataError("a schema maps column names to types, e.g. {\"age\": \"count\"}")
    for name, kind in schema.items():
        if kind not in TYPES:
            raise DataError(f"schema: column {name!r} has type {kind!r}; choose one of "
                            f"{', '.join(TYPES)}")
    return dict(schema)


def _numbers(column, name: str, kind: str):
    """The column as floats; a cell that is not a number is one DataError line."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"column {name!r} ({kind}): row {row + 1} holds {column.iloc[row]!r}, "
                        f"not a number; fix the cell, leave it empty (missing) or declare the "
                        f"column categorical in a schema")
    values = values.astype(float)
    if np.isinf(values).any():
        row = int(np.flatnonzero(np.isinf(values.to_numpy()))[0])
        raise DataError(f"column {name!r}: row {row + 1} is infinite; leave it empty instead")
    return values


def infer_type(column, name: str) -> str:
    """The type of a column (module docstring), from its non-missing cells."""
    import pandas as pd

    cells = column.dropna()
    if len(cells) == 0:
        raise DataError(f"column {name!r} has no value in any row; drop it")
    values = pd.to_numeric(cells, errors="coerce")
    if cells.nunique() == 2:
        return "binary"
    if values.isna().any() or column.dtype == bool:
        if cells.nunique() > MAX_LEVELS and cells.nunique() > len(cells) / 2:
            raise DataError(f"column {name!r} holds {cells.nunique()} distinct texts in "
                            f"{len(cells)} rows, like an identifier; drop it, or declare it "
                            f"categorical in a schema")
        return "categorical"
    v = values.to_numpy(float)
    if np.all(v == np.round(v)) and v.min() >= 0:
        return "count"
    return "positive" if v.min() > 0 else "real"


def _encode(column, name: str, kind: str, categories: list | None):
    """(values (N,) float with NaN where missing, categories or None)."""
    if kind in ("binary", "categorical"):
        cells = column.dropna()
        cats = categories if categories is not None else sorted(
            cells.unique().tolist(), key=lambda v: (str(type(v)), v))
        if kind == "binary" and len(cats) != 2:
            raise DataError(f"column {name!r} is binary but holds {len(cats)} distinct values "
                            f"({', '.join(map(str, cats[:5]))}); declare it categorical")
        index = {c: i for i, c in enumerate(cats)}  # 1 and 1.0 are the same key
        unknown = cells[~cells.isin(index.keys())]
        if len(unknown):
            raise DataError(f"column {name!r}: value {unknown.iloc[0]!r} (row "
                            f"{column.index.get_loc(unknown.index[0]) + 1}) is not one of the "
                            f"categories the model knows ({', '.join(map(str, cats))})")
        return column.map(index).astype(float).to_numpy(), [_plain(c) for c in cats]
    values = _numbers(column, name, kind).to_numpy()
    seen = values[~np.isnan(values)]
    if kind == "positive" and (seen <= 0).any():
        raise DataError(f"column {name!r} is positive but holds {seen[seen <= 0][0]:g}; "
                        f"declare it real in a schema")
    if kind == "count" and ((seen < 0).any() or (seen != np.round(seen)).any()):
        bad = seen[(seen < 0) | (seen != np.round(seen))][0]
        raise DataError(f"column {name!r} is a count but holds {bad:g}; counts are whole "
                        f"numbers ≥ 0: declare it real in a schema")
    return (np.log(values) if kind == "positive" else values), None


def _plain(v):
    """A category as JSON keeps it: a whole float (read so beside empty cells) as an int."""
    v = v.item() if hasattr(v, "item") else v
    return int(v) if isinstance(v, float) and v.is_integer() else v


def read_table(path: str | os.PathLike, schema=None, like: dict | None = None
               ) -> tuple[TensorData, dict[str, Any]]:
    """Every row of the table at ``path`` as TensorData (N, D) with a missing-value mask, and
    the record of how it was read.

    ``schema``: {column: type} (a dict, or a JSON or TOML file of one) for the columns whose
    inferred type is wrong. ``like``: a record returned before (a run's); the new file is
    read with its columns, types and categories and scaled as it was (:func:`apply_scaling`).
    """
    frame = read_frame(path)
    given = read_schema(like["schema"] if like is not None else schema)
    unknown = [c for c in given if c not in frame.columns]
    if unknown:
        raise DataError(f"{path}: the schema names column {unknown[0]!r}, which the table "
                        f"lacks (its columns: {', '.join(map(str, frame.columns))})")
    if like is not None and list(frame.columns) != list(like["columns"]):
        raise DataError(f"{path}: columns {list(frame.columns)} differ from the run's "
                        f"{like['columns']}; give the same columns in the same order")
    known = {c["name"]: c.get("categories") for c in like["schema"]} if like else {}
    cols, layout = [], []
    for name in frame.columns:
        column = frame[name]
        kind = given.get(name) or infer_type(column, name)
        values, cats = _encode(column, str(name), kind, known.get(name))
        cols.append(values)
        layout.append({"name": str(name), "type": kind,
                       **({"categories": cats} if cats is not None else {})})
    x = torch.tensor(np.stack(cols, 1), dtype=torch.get_default_dtype())  # (N, D)
    mask = ~torch.isnan(x)
    record = {"kind": "table", "format": "parquet" if Path(path).suffix.lower() == ".parquet"
              else "csv", "source": str(Path(path).resolve()), "sha256": _digest(path),
              "n": len(frame), "columns": [c["name"] for c in layout], "schema": layout,
              "types": {c["name"]: c["type"] for c in layout},
              "missing": {c["name"]: int((~mask[:, i]).sum()) for i, c in enumerate(layout)},
              "scaling": None, "classes": None}
    data = TensorData(x.nan_to_num(), mask=mask,
                      info={"name": Path(path).name, "n": len(frame), "schema": layout})
    if like is not None:
        data = apply_scaling(data, like["scaling"])
        record["scaling"] = like["scaling"]
    return data, record


def _digest(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def scale(data: TensorData, record: dict, train_rows: torch.Tensor) -> tuple[TensorData, dict]:
    """Standardise the real and positive (log) columns with the mean and sd of their observed
    cells in ``train_rows``; the record gains ``scaling`` {column: {"mean", "sd"}}."""
    scaling = {}
    x, m = data.x[train_rows], data.mask[train_rows]
    for i, col in enumerate(record["schema"]):
        if col["type"] in ("real", "positive"):
            seen = x[m[:, i], i].double()
            if len(seen) == 0:
                raise DataError(f"column {col['name']!r} has no value in the training rows")
            sd = float(seen.std()) if len(seen) > 1 else 1.0
            scaling[col["name"]] = {"mean": float(seen.mean()), "sd": sd if sd > 0 else 1.0}
    return apply_scaling(data, scaling), {**record, "scaling": scaling}


def apply_scaling(data: TensorData, scaling: dict) -> TensorData:
    """``data`` with ``scaling`` (from :func:`scale`) applied; missing cells stay 0."""
    x = data.x.clone()
    for i, col in enumerate(data.info["schema"]):
        if col["name"] in scaling:
            s = scaling[col["name"]]
            x[:, i] = (x[:, i] - s["mean"]) / s["sd"]
    return dataclasses.replace(data, x=x.masked_fill(~data.mask, 0.0))


def unscale(x: torch.Tensor, record: dict):
    """A pandas DataFrame of values ``x`` (N, D) in the table's own units: scaling undone,
    the log undone, categories as their values (an index is rounded first)."""
    import pandas as pd

    out = {}
    for i, col in enumerate(record["schema"]):
        v = x[:, i].double().numpy()
        s = (record.get("scaling") or {}).get(col["name"])
        if s is not None:
            v = v * s["sd"] + s["mean"]
        if col["type"] == "positive":
            v = np.exp(v)
        if col["type"] in ("binary", "categorical"):
            cats = np.array(col["categories"], dtype=object)
            out[col["name"]] = cats[np.clip(np.round(v), 0, len(cats) - 1).astype(int)]
        else:
            out[col["name"]] = v
    return pd.DataFrame(out)
