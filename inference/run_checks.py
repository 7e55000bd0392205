"""What ``vae-train`` checks before a run starts: settings that would do nothing, and a
folder that a run which finished no epoch left behind."""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path

from guides import GUIDES
from inference.config import RunConfig
from models import MODELS


def check_settings(config: RunConfig, explicit: set[str]) -> None:
    """Refuse, in one line, a setting given on purpose (``explicit``, away from its default:
    a replayed config.json names every setting) that this run would not use: a flag that
    does nothing is a mistake the user should hear about."""
    defaults = RunConfig()
    explicit = {name for name in explicit if getattr(config, name) != getattr(defaults, name)}
    accepts = [inspect.signature(MODELS[config.model]).parameters,
               inspect.signature(GUIDES[config.guide]).parameters]
    for name in ("z_dim", "hidden", "activation"):
        if name in explicit and not any(name in each for each in accepts):
            raise ValueError(f"--{name.replace('_', '-')} does nothing here: neither the model "
                             f"{config.model} nor the guide {config.guide} takes {name}; set "
                             f"their own options with --model-config and --guide-config")
    if {"alpha", "labels", "labelled_every"} & explicit and config.loss != "m2":
        name = sorted({"alpha", "labels", "labelled_every"} & explicit)[0]
        raise ValueError(f"--{name.replace('_', '-')} is for semi-supervised training (--loss "
                         f"m2); this run's loss is {config.loss}: drop it")
    if "labelled_every" in explicit and config.labels is None:
        raise ValueError("--labelled-every schedules the labelled batches of --labels N, and "
                         "this run keeps every label: add --labels or drop it")
    if "binarize" in explicit and config.dataset in ("binarized-mnist", "sprites", "dsprites"):
        raise ValueError(f"--binarize does nothing on {config.dataset}, whose images are "
                         f"binary already: drop it")
    own = ("image_size", "channels", "test", "schema")
    if config.data is None and set(own) & explicit:
        name = next(n for n in own if n in explicit)
        raise ValueError(f"--{name.replace('_', '-')} is for your own data (--data PATH); "
                         f"{config.dataset} is a named dataset: drop it")
    if config.data is not None and "dataset" in explicit:
        raise ValueError(f"--dataset {config.dataset} and --data {config.data} name two data "
                         f"sources: keep one")
    if "patience" in explicit and config.patience is not None and config.valid == 0:
        raise ValueError("--patience stops on the validation ELBO, and --valid 0 holds none "
                         "out: drop one of them")


# What a run writes before its first epoch ends (a checkpoint comes only with an epoch)
STARTED = ("config.json", "metrics.jsonl", "metrics.json", "mlflow_run_id", "tensorboard")


def start_over(out: Path, log) -> None:
    """Clear the files of a run that finished no epoch (it diverged or was stopped in the
    first), so that a new run can take the folder."""
    left = [name for name in STARTED if (out / name).exists()]
    for name in left:
        path = out / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    log(f"{out} held a run that finished no epoch ({', '.join(left)}): starting a new run "
        f"there")


