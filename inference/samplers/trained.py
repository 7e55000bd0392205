"""The samplers that train a Pyro program on the codes with the lab's own ``fit``: a
normalizing flow, a two-stage VAE and a latent diffusion model. Each trains with its
checkpoint in the sampler's folder, resumes from it if interrupted, and keeps the epoch
best on the validation codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from inference.samplers.base import LatentSampler, register_sampler


def _train(model, guide, train, valid, folder: Path | None, opts: dict, seed: int,
           progress: bool) -> dict[str, Any]:
    """``fit`` on the codes; returns the run's summary (best epoch, validation ELBO)."""
    from inference.train import fit

    checkpoint = None if folder is None else Path(folder) / "checkpoint.pt"
    history = fit(model, guide, train, valid=valid, epochs=opts["epochs"],
                  batch_size=opts["batch_size"], lr=opts["lr"], seed=seed, device="cpu",
                  checkpoint=checkpoint, resume=checkpoint is not None and checkpoint.exists(),
                  fast=False, progress=progress, train_eval_points=min(2000, len(train)),
                  divergence=None)
    valid_scores = [v for v in history.valid_elbo if v is not None]
    return {**history.summary(), "epochs_run": len(history),
            "best_valid": max(valid_scores) if valid_scores else None}


def _budget(epochs: int, batch_size: int, lr: float, **more) -> dict[str, Any]:
    return {"epochs": epochs, "batch_size": batch_size, "lr": lr, **more}


@register_sampler("flow")
class FlowSampler(LatentSampler):
    """A normalizing flow fitted by maximum likelihood (``models/code_flow.py``: Pyro's
    spline or affine autoregressive transforms in the MAF direction; Papamakarios et al.
    2017, Durkan et al. 2019), trained by ``fit`` with the ``empty`` guide, so that the
    ELBO is the log-likelihood itself."""

    def __init__(self, kind: str = "spline", layers: int = 4, hidden: int = 128,
                 epochs: int = 30, batch_size: int = 256, lr: float = 1e-3):
        super().__init__(**_budget(epochs, batch_size, lr, kind=kind, layers=layers,
                                   hidden=hidden))

    def _make(self):
        from models import make_model

        o = self.options
        return make_model("code_flow", x_dim=self.dim, layers=o["layers"], kind=o["kind"],
                          hidden=(o["hidden"], o["hidden"]))

    def _fit(self, train, valid, folder, seed, progress) -> None:
        from guides import make_guide

        self.model = self._make()
        self.model.standardize(train)
        self.info = _train(self.model, make_guide("empty"), train, valid, folder, self.options,
                           seed, progress)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        return self.model.distribution().sample((n,))

    @torch.no_grad()
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.distribution().log_prob(z.float())

    def state(self) -> dict[str, Any]:
        return self.model.state_dict()

    def _load(self, state) -> None:
        self.model = self._make()
        self.model.load_state_dict(state)


@register_sampler("two-stage")
class TwoStageSampler(LatentSampler):
    """A second VAE on the codes (Dai & Wipf 2019, "Diagnosing and enhancing VAE models"):
    the registered ``gaussian_mlp`` pair with u of the codes' dimension, trained by ``fit``
    on standardized codes. A code is drawn as u ~ N(0, I), z = the second decoder's mean
    (their sampling rule); its log-density is the second pair's importance-weighted
    estimate of log p(z) (``iw_samples`` draws), a lower bound in expectation."""

    def __init__(self, hidden: int = 256, epochs: int = 30, batch_size: int = 256,
                 lr: float = 1e-3, iw_samples: int = 100):
        super().__init__(**_budget(epochs, batch_size, lr, hidden=hidden,
                                   iw_samples=iw_samples))

    def _make(self):
        from guides import make_guide
        from models import make_model

        h = (self.options["hidden"], self.options["hidden"])
        return (make_model("gaussian_mlp", x_dim=self.dim, z_dim=self.dim, hidden=h),
                make_guide("gaussian_mlp", x_dim=self.dim, z_dim=self.dim, hidden=h))

    def _fit(self, train, valid, folder, seed, progress) -> None:
        self.model, self.guide = self._make()
        self.loc, self.scale = train.mean(0), train.std(0).clamp_min(1e-6)
        self.info = _train(self.model, self.guide, self._std(train), self._std(valid), folder,
                           self.options, seed, progress)

    def _std(self, z: torch.Tensor) -> torch.Tensor:
        return (z.float() - self.loc) / self.scale

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        from inference.generate import sample

        self.model.eval()
        return sample(self.model, n, mean=True, sites=("x",))["x"] * self.scale + self.loc

    @torch.no_grad()
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        from inference.marginal import iw_log_likelihood

        log_p = iw_log_likelihood(self.model, self.guide, self._std(z),
                                  num_samples=self.options["iw_samples"])
        return log_p.float() - self.scale.log().sum()

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "guide": self.guide.state_dict(),
                "loc": self.loc, "scale": self.scale}

    def _load(self, state) -> None:
        self.model, self.guide = self._make()
        self.model.load_state_dict(state["model"])
        self.guide.load_state_dict(state["guide"])
        self.loc, self.scale = state["loc"], state["scale"]


@register_sampler("diffusion")
class DiffusionSampler(LatentSampler):
    """A latent diffusion model (``models/code_diffusion.py``: a DDPM, Ho et al. 2020, on
    the codes, as Rombach et al. 2022 and Vahdat et al. 2021 put one on a VAE's latents),
    trained by ``fit`` on the noise-prediction loss, drawn in ``sample_steps`` respaced
    steps. Its density is not tractable in closed form: :meth:`log_prob` is None and the
    validation noise-prediction loss is reported instead."""

    def __init__(self, hidden: int = 256, layers: int = 3, steps: int = 1000,
                 sample_steps: int = 100, epochs: int = 60, batch_size: int = 256,
                 lr: float = 1e-3):
        super().__init__(**_budget(epochs, batch_size, lr, hidden=hidden, layers=layers,
                                   steps=steps, sample_steps=sample_steps))

    def _make(self):
        from models import make_model

        o = self.options
        return make_model("code_diffusion", x_dim=self.dim, steps=o["steps"],
                          hidden=(o["hidden"],) * o["layers"])

    def _fit(self, train, valid, folder, seed, progress) -> None:
        from guides import make_guide

        self.model = self._make()
        self.model.standardize(train)
        self.info = _train(self.model, make_guide("empty"), train, valid, folder, self.options,
                           seed, progress)

    def sample(self, n: int) -> torch.Tensor:
        self.model.eval()
        g = torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
        return self.model.generate(n, self.options["sample_steps"], generator=g)

    def log_prob(self, z: torch.Tensor) -> None:
        return None

    def state(self) -> dict[str, Any]:
        return self.model.state_dict()

    def _load(self, state) -> None:
        self.model = self._make()
        self.model.load_state_dict(state)


