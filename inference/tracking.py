"""Experiment logs of a run folder: ``metrics.jsonl``, TensorBoard event files, MLflow.

Both are fed each epoch's record by :func:`inference.fit`'s ``on_epoch``. ``metrics.jsonl``
holds one JSON line per finished epoch; a resumed run rewrites it from its checkpoint's
history first, so it never shows an epoch twice or one the checkpoint does not hold.
TensorBoard (``tensorboard --logdir runs``) gets every number of every epoch's record
(:func:`scalars`), the run's configuration as text and, at the end, the figures.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

from inference.checkpoint import WriteError, atomic_write

# Record keys drawn as TensorBoard scalars, and their tags.
SCALARS = {"objective": "objective/running", "lr": "lr", "beta": "beta", "seconds": "seconds",
           **{f"{split}_{k}": f"{split}/{k}" for split in ("train", "valid")
              for k in ("elbo", "reconstruction", "kl")}}


NOT_SCALARS = ("epoch", "steps")


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of an epoch's record by tag: :data:`SCALARS`' tags, and every other
    number under its own key (an objective's own figures, such as a codebook's usage)."""
    out = {}
    for key, value in record.items():
        if key in NOT_SCALARS or isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        out[SCALARS.get(key, key)] = float(value)
    return out


def _plain(value: Any) -> Any:
    """A JSON-safe copy: NaN and infinities become strings, as JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


class JsonlLog:
    """Append each record to ``path`` as one JSON line, flushed at once."""

    def __init__(self, path: str | Path, records: list[dict[str, Any]] = ()):
        self.path = Path(path)
        lines = "".join(json.dumps(_plain(r)) + "\n" for r in records)
        atomic_write(self.path, lambda f: f.write(lines.encode()))  # the checkpoint's truth

    def __call__(self, record: dict[str, Any]) -> None:
        try:
            with open(self.path, "a") as f:
                f.write(json.dumps(_plain(record)) + "\n")
        except OSError as e:
            raise WriteError(f"cannot write {self.path}: {e.strerror or e}") from e

    def close(self) -> None:
        """Nothing to release: every line is written when it comes."""


class TensorBoardLog:
    """TensorBoard event files in ``folder``: scalars per epoch, config, figures."""

    def __init__(self, folder: str | Path, config: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter  # imported here: 1-2 s

        self.writer = SummaryWriter(log_dir=str(folder))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1) + "\n```")
        self.epoch = 0

    def __call__(self, record: dict[str, Any]) -> None:
        self.epoch = record["epoch"]
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, self.epoch)
        self.writer.flush()

    def figure(self, name: str, fig) -> None:
        self.writer.add_figure(name, fig, self.epoch, close=False)

    def close(self) -> None:
        self.writer.close()


class MlflowLog:
    """The same to MLflow (``pip install -e ".[mlflow]"``): the run's settings as params,
    each epoch's scalars as metrics, the configuration and figures as artifacts. Where it
    logs is MLflow's own setting (``MLFLOW_TRACKING_URI``); the MLflow run's id is kept in
    ``mlflow_run_id`` in the run folder, so a resumed run logs into the same MLflow run."""

    def __init__(self, folder: str | Path, config: dict[str, Any]):
        try:
            import mlflow
        except ImportError as e:
            raise ValueError("--mlflow needs MLflow: pip install -e '.[mlflow]'") from e
        self.mlflow, self.id_file = mlflow, Path(folder) / "mlflow_run_id"
        known = self.id_file.read_text().strip() if self.id_file.exists() else None
        run = mlflow.start_run(run_id=known, run_name=None if known else Path(folder).name)
        atomic_write(self.id_file, lambda f: f.write(run.info.run_id.encode()))
        if known is None:
            mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                               for k, v in config.get("run", {}).items()})
            mlflow.log_dict(config, "config.json")
        self.epoch = 0

    def __call__(self, record: dict[str, Any]) -> None:
        self.epoch = record["epoch"]
        self.mlflow.log_metrics(scalars(record), step=self.epoch)

    def figure(self, name: str, fig) -> None:
        self.mlflow.log_figure(fig, f"figures/{name}.png")

    def close(self) -> None:
        self.mlflow.end_run()
