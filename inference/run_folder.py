"""Reading and writing a run folder from Python: :func:`load_run` and :func:`save_run`.

A folder holds ``checkpoint.pt`` (the last finished epoch), ``best.pt`` (the epoch with the
best validation ELBO, when there was validation data) and ``config.json``; result files
record the weights they scored (:func:`provenance`). ``vae-train`` and
``fit(..., checkpoint="folder/checkpoint.pt")`` write them; :func:`save_run` writes one for a
pair trained any other way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pyro
import torch

from guides import GUIDES
from inference.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_json,
    run_lock,
    save_checkpoint,
    save_json,
)
from inference.pair import Pair, as_pair
from inference.programs import owner, program, resolve_device
from models import MODELS, tie

CHECKPOINTS = ("best", "last")


def registry_config(model, guide) -> dict[str, Any]:
    """The registry names and resolved configs of a pair built with ``make_model`` and
    ``make_guide`` (empty for other pairs): what :func:`load_run` rebuilds them from."""
    out = {}
    for role, fn in (("model", model), ("guide", guide)):
        config = getattr(owner(fn), "config", None)
        if isinstance(config, dict) and "name" in config:
            out[role] = config
    return out


def weights_digest(state: dict[str, Any]) -> str:
    """A short SHA-256 of a checkpoint's weights (model, guide, free parameters): the same
    weights give the same digest, whatever else the file holds."""
    h = hashlib.sha256()
    for role in ("model", "guide", "params"):
        for name, tensor in sorted((state.get(role) or {}).items()):
            h.update(f"{role}/{name}".encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()[:16]


def provenance(saved: dict[str, Any]) -> dict[str, Any]:
    """What a result file records of the weights it scored (from :func:`load_run`'s config):
    the checkpoint's file name, its epoch and :func:`weights_digest`."""
    return {"checkpoint": saved["checkpoint"], "epoch": saved["epoch"],
            "weights_sha256": saved["weights_sha256"]}


def stale_results(out: str | Path) -> list[str]:
    """One line for each result file in ``out`` whose checkpoint now holds other weights
    (a resumed run wrote a newer ``best.pt``, say)."""
    out, states, lines = Path(out), {}, []
    for path in sorted(out.glob("*.json")):
        try:
            result = load_json(path)
        except CheckpointError:
            continue
        if not isinstance(result, dict) or "weights_sha256" not in result:
            continue
        name = result["checkpoint"]
        if name not in states and (out / name).exists():
            states[name] = load_checkpoint(out / name)
        state = states.get(name)
        if state is not None and weights_digest(state) != result["weights_sha256"]:
            lines.append(f"note: {path.name} scored {name} of epoch {result['epoch']}; {name} "
                         f"now holds epoch {state['epoch']}: score it again to update it")
    return lines


def checkpoint_path(out: str | Path, which: str = "best") -> Path:
    """``best.pt`` if asked for and there (else ``checkpoint.pt``), or ``checkpoint.pt``."""
    if which not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be 'best' or 'last', got {which!r}")
    out = Path(out)
    best = out / "best.pt"
    return best if which == "best" and best.exists() else out / "checkpoint.pt"


def _load_free(pair: Pair, saved: dict[str, torch.Tensor]) -> None:
    """Copy saved free parameters into Pyro's store, where the pair's functions read them."""
    store = pyro.get_param_store()
    missing = [name for name in saved if name not in store]
    if missing:
        raise CheckpointError(f"the pair's parameters {', '.join(missing)} are not in Pyro's "
                              f"store yet: run the pair once (check_pair(model, guide, x)) so "
                              f"that they exist, then load the run")
    with torch.no_grad():
        for name, value in saved.items():
            store._params[name].copy_(value)


def load_run(out: str | Path, device: str | torch.device | None = "cpu", *,
             checkpoint: str = "best", model=None, guide=None):
    """Model and guide of a run folder with their trained weights, and its saved config
    (with the checkpoint's ``epoch``, ``history`` and file name added).

    ``checkpoint="best"`` reads ``best.pt`` where there is one (the epoch chosen on
    validation), ``"last"`` the last finished epoch. Registered pairs are rebuilt from the
    names and configs the run saved; any other pair is given as ``model`` and ``guide`` and
    gets the weights. The file is read with ``weights_only=True``.
    """
    path = checkpoint_path(out, checkpoint)
    state = load_checkpoint(path)
    config = state.get("config") or {}
    if not config and (Path(out) / "config.json").exists():
        config = load_json(Path(out) / "config.json")
    saved = {**config, "epoch": state["epoch"], "history": state.get("history", []),
             "checkpoint": path.name, "weights_sha256": weights_digest(state)}
    try:
        if model is None or guide is None:
            model, guide = MODELS.make(**saved["model"]), GUIDES.make(**saved["guide"])
            tie(model, guide)
        pair = Pair(program(model, "model"), program(guide, "guide"))
        for role, module in pair.owners.items():
            module.load_state_dict(state[role])
        _load_free(pair, state.get("params", {}))
    except KeyError as e:
        raise CheckpointError(f"{out} does not name a registered model and guide ({e} is "
                              f"missing): rebuild the pair and pass it, load_run(out, "
                              f"model=..., guide=...)") from e
    except (TypeError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{out} does not hold a loadable run: {e}") from e
    pair.to(resolve_device(device))
    for module in pair.owners.values():
        module.eval()
    return model, guide, saved


def save_run(out: str | Path, model, guide, *, x: torch.Tensor | None = None, history=None,
             config: dict | None = None, data: dict | None = None) -> Path:
    """Write a pair as a run folder :func:`load_run` reads: its weights in ``checkpoint.pt``
    with ``history`` (a :class:`~inference.History`), and ``config.json`` with the registry
    configs, ``config`` (e.g. ``RunConfig.to_json()``) and ``data``. A pair with free
    ``pyro.param`` parameters also needs a batch ``x``, on which they are found."""
    out = Path(out)
    pair = (Pair(program(model, "model"), program(guide, "guide")) if x is None
            else as_pair(model, guide, x))
    saved = {**registry_config(model, guide), **({"run": config} if config else {}),
             **({"data": data} if data else {})}
    records = [] if history is None else list(history.records)
    state = {"format": 2, "epoch": len(records), **pair.state_dict(), "history": records,
             "run": {} if history is None else history.summary(), "config": saved}
    with run_lock(out):
        save_json(out / "config.json", saved)
        return save_checkpoint(out / "checkpoint.pt", state)
