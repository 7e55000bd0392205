"""The configuration of a training run: what defines it, checked when it is made or read.

A :class:`RunConfig` is saved as JSON beside every run (``config.json``) and can be read back
from it; every field is checked on the way in, so a bad flag or a damaged file gives one line
that names the field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from pyro.infer import ELBO, Trace_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO

from guides import GUIDES
from inference.datasets import BINARIZE, DATASETS
from inference.disentangle import objectives as disentangling
from inference.handlers import parse_anneal
from inference.miwae import MIWAE
from inference.objectives import IWAE, STL, DReG, LogWeightObjective
from inference.semisupervised import SemiSupervisedELBO
from inference.train import cosine_schedule, iwae_schedule
from inference.validate import (
    non_negative_float,
    non_negative_int,
    optional,
    positive_float,
    positive_int,
)
from inference.vq import VQELBO
from models import MODELS

LOSSES: dict[str, type[ELBO]] = {
    "trace": Trace_ELBO,  # one Monte Carlo sample of log p(x, z) - log q(z | x)
    "meanfield": TraceMeanField_ELBO,  # closed-form KL(q || p) where Pyro knows it
    "tracegraph": TraceGraph_ELBO,  # Rao-Blackwellized score-function terms
    "iwae": IWAE,  # importance-weighted bound with K = num_particles (Burda et al. 2016)
    "dreg": DReG,  # the same bound, doubly reparameterized guide gradient (Tucker et al. 2018)
    "miwae": MIWAE,  # the IWAE bound on the observed cells of rows with missing ones (Mattei
    # & Frellsen 2019)
    "stl": STL,  # the same bound, "sticking the landing" guide gradient (Roeder et al. 2017)
    "m2": SemiSupervisedELBO,  # TraceEnum_ELBO + α·classification (Kingma et al. 2014)
    "vq": VQELBO,  # the VQ-VAE's bound + codebook and commitment losses (van den Oord 2017)
    # disentangling objectives (inference.disentangle.objectives), weights in --loss-config
    "betatc": disentangling.BetaTCVAE,  # β-TCVAE, β = --beta (Chen et al. 2018)
    "dip1": disentangling.DIPVAE,  # DIP-VAE-I (Kumar et al. 2018)
    "dip2": disentangling.DIPVAE,  # DIP-VAE-II
    "capacity": disentangling.AnnealedCapacity,  # γ |KL − C(t)| (Burgess et al. 2018)
}
#: The learning-rate factor per epoch of each --schedule, built from the run's --epochs; None
#: for constant.
SCHEDULES = {"constant": lambda epochs: None, "iwae": lambda epochs: iwae_schedule,
             "cosine": cosine_schedule}
# RunConfig fields a resumed run may change; the others must match the saved run.
RESUMABLE = ("epochs", "device", "patience")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a training run; saved as JSON beside its checkpoint."""

    model: str = "bernoulli_mlp"
    guide: str = "gaussian_mlp"
    z_dim: int | None = None  # None: the class's default
    hidden: tuple[int, ...] | None = None
    activation: str | None = None
    model_config: dict[str, Any] = field(default_factory=dict)
    guide_config: dict[str, Any] = field(default_factory=dict)
    dataset: str = "embedded"
    data: str | None = None  # a path: image folder, array file or table (inference.owndata)
    image_size: int | None = None  # --data images: resized to this square (None: as stored)
    channels: str = "auto"  # --data images: auto (as stored), grey or rgb
    test: int | None = None  # --data: rows held out for the test split (None: 10%)
    schema: str | None = None  # --data table: a schema file of its column types
    binarize: str = "dynamic"
    valid: int | None = None  # training images held out for validation (None: DEFAULT_VALID)
    train_limit: int | None = None  # train on a random subset of this many images (debugging)
    loss: str = "trace"
    loss_config: dict[str, Any] = field(default_factory=dict)  # the objective's own options
    num_particles: int = 1
    fast: str = "auto"  # auto, compile or off (see FastPath)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    adam_eps: float = 1e-8
    adam_beta1: float = 0.9  # Adam's β1 (Pyro's ss_vae_M2 example: 0.95)
    clip_norm: float | None = None  # clip the gradient's norm to this
    patience: int | None = None  # stop after this many epochs without a better valid ELBO
    schedule: str = "constant"  # constant, or iwae: Burda et al.'s 3**i epochs at 10**(-i/7)
    beta: float = 1.0  # weight of the latent sites' log-densities in training (β-VAE)
    anneal: str = "none"  # none, linear:EPOCHS or cyclical:PERIOD[:RATIO], rising to beta
    labels: int | None = None  # semi-supervised: keep this many labels, hide the others
    labelled_every: int = 1  # semi-supervised: a labelled batch every N unlabelled; 0: the
    # labels once per epoch, spread out (Pyro's ss_vae_M2 example)
    prior_epochs: int = 0  # VQ-VAE: epochs of its code prior's fit after the VQ-VAE's
    alpha: float = 46.0  # loss m2: weight of the classification term
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        for kind, name, names in (("model", self.model, MODELS), ("guide", self.guide, GUIDES),
                                  ("loss", self.loss, LOSSES),
                                  ("fast", self.fast, ("auto", "compile", "off")),
                                  ("schedule", self.schedule, SCHEDULES),
                                  ("dataset", self.dataset, DATASETS),
                                  ("binarize", self.binarize, BINARIZE)):
            if not isinstance(name, str) or name not in names:
                raise ValueError(f"unknown {kind} {name!r}; choose one of {', '.join(names)}")
        if self.channels not in ("auto", "grey", "rgb"):
            raise ValueError(f"unknown channels {self.channels!r}; choose one of auto, grey, rgb")
        for name in ("activation", "anneal", "device", "data", "schema"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{name} must be a string, got {value!r}")
        for name in ("num_particles", "epochs", "batch_size"):
            positive_int(name, getattr(self, name))
        non_negative_int("seed", self.seed)
        optional(positive_int, "z_dim", self.z_dim)
        optional(positive_int, "labels", self.labels)
        non_negative_int("labelled_every", self.labelled_every)
        optional(non_negative_int, "valid", self.valid)
        optional(non_negative_int, "test", self.test)
        optional(positive_int, "image_size", self.image_size)
        non_negative_int("prior_epochs", self.prior_epochs)
        optional(positive_int, "train_limit", self.train_limit)
        optional(positive_int, "patience", self.patience)
        optional(positive_float, "clip_norm", self.clip_norm)
        for width in self.hidden or ():
            positive_int("each hidden width", width)
        positive_float("lr", self.lr)
        positive_float("adam_eps", self.adam_eps)
        if non_negative_float("adam_beta1", self.adam_beta1) >= 1:
            raise ValueError(f"adam_beta1 must be below 1, got {self.adam_beta1!r}")
        non_negative_float("beta", self.beta)
        non_negative_float("alpha", self.alpha)
        for name in ("model_config", "guide_config", "loss_config"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a JSON object, got {getattr(self, name)!r}")
        parse_anneal(self.anneal, self.beta)  # a bad spelling fails before any work
        if self.loss in disentangling.LOSSES:  # its options too
            disentangling.build_loss(self.loss, beta=self.beta, options=self.loss_config,
                                     anneal=self.anneal)
        elif self.loss_config:  # unknown options fail before any work
            make_loss(self)

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunConfig:
        """A config from its JSON form; anything that does not fit raises ``ValueError``."""
        if not isinstance(d, dict):
            raise ValueError(f"a run's configuration is a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        hidden = d.get("hidden")
        if hidden is not None and not isinstance(hidden, (list, tuple)):
            raise ValueError(f"hidden must be a list of widths, got {hidden!r}")
        d = {k: tuple(v) if k == "hidden" and v is not None else v
             for k, v in d.items() if k in known}
        return cls(**d)


def make_loss(config: RunConfig, dataset_size: int | None = None) -> ELBO:
    """The objective of ``config.loss``, with ``config.loss_config``'s extra keyword
    arguments (e.g. VQELBO's ``{"restart_below": null}``: no dead-code restarts);
    ``dataset_size`` (training points) for β-TCVAE's q(z)."""
    if config.loss in disentangling.LOSSES:
        return disentangling.build_loss(config.loss, beta=config.beta, options=config.loss_config,
                                        dataset_size=dataset_size, anneal=config.anneal)
    cls, extra = LOSSES[config.loss], dict(config.loss_config)
    if cls is SemiSupervisedELBO:
        kwargs = {"alpha": config.alpha, "num_particles": config.num_particles}
    elif cls is VQELBO:
        kwargs = {"num_particles": config.num_particles}
    elif issubclass(cls, LogWeightObjective):
        kwargs = {"num_particles": config.num_particles, "max_plate_nesting": 1}
    else:
        kwargs = {"num_particles": config.num_particles,
                  "vectorize_particles": config.num_particles > 1, "max_plate_nesting": 1}
    clash = sorted(set(extra) & set(kwargs))
    if clash:
        raise ValueError(f"loss_config cannot set {', '.join(clash)}: use its own flag")
    try:
        return cls(**kwargs, **extra)
    except TypeError as e:
        raise ValueError(f"loss {config.loss!r} does not take loss_config {extra}: {e}") from None


def training_beta(config: RunConfig):
    """The β ``fit`` trains with: None (plain ELBO), a number, or an annealing schedule.
    The disentangling objectives weigh their own terms (β-TCVAE reads --beta itself)."""
    if config.loss in disentangling.LOSSES:
        return None
    schedule = parse_anneal(config.anneal, end=config.beta)
    return schedule or (None if config.beta == 1.0 else config.beta)




def read_config_file(path) -> dict[str, Any]:
    """A run's settings from a JSON or TOML file: RunConfig's fields, at the top level or
    under ``run`` (so a saved ``config.json`` replays its run). Unknown names are refused."""
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read config file {path}: {getattr(e, 'strerror', e) or e}") \
            from None
    try:
        if path.suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib
            values = tomllib.loads(text)
        else:
            import json

            values = json.loads(text)
    except ValueError as e:
        raise ValueError(f"config file {path} is not valid {path.suffix[1:] or 'JSON'}: "
                         f"{str(e).splitlines()[0]}") from None
    if isinstance(values, dict) and isinstance(values.get("run"), dict):
        values = values["run"]
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a table of settings")
    known = {f.name for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"config file {path}: unknown setting {unknown[0]!r}; the settings are "
                         f"{', '.join(sorted(known))}")
    return values
