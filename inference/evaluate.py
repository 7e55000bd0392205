"""Scores of a trained pair, read from Pyro traces of the pair itself."""

from __future__ import annotations

from typing import Any

import pyro
import torch
from pyro.infer import ELBO, Trace_ELBO

from inference.data import as_data
from inference.marginal import chunk_log_weights
from inference.plates import whole_plates
from inference.programs import device_of, program
from inference.traces import particle_dim


def loss_value(loss: ELBO, model, guide, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
    """The ELBO loss of a batch as a tensor, without a gradient and without a host sync
    where the objective allows it (``differentiable_loss``)."""
    if hasattr(loss, "differentiable_loss"):
        return loss.differentiable_loss(model, guide, x, y).detach()
    return torch.as_tensor(loss.loss(model, guide, x, y), device=x.device)


@torch.no_grad()
def evaluate_elbo(model, guide, data: Any, *, loss: ELBO | None = None,
                  batch_size: int = 1000) -> float:
    """Mean ELBO per data point in nats, ``E_q[log p(x, z) - log q(z | x)]``.

    ``data`` is anything :func:`~inference.fit` accepts; ``loss`` is the Pyro estimator
    (default ``Trace_ELBO()``: one sample of z per data point; ``TraceMeanField_ELBO()``
    uses the closed-form KL).
    """
    loss = Trace_ELBO() if loss is None else loss
    model, guide = program(model, "model"), program(guide, "guide")
    data = as_data(data)
    device = device_of(model, guide)
    data = data.to(device)
    total = torch.zeros((), device=device, dtype=torch.float64)
    with pyro.validation_enabled(False):
        for x, y in data.batches(batch_size):
            with whole_plates(len(x)):  # every point, at scale 1
                total += loss_value(loss, model, guide, x, y)
    return -total.item() / len(data)


@torch.no_grad()
def elbo_terms(model, guide, data: Any, *, batch_size: int = 1000) -> dict[str, float]:
    """ELBO, reconstruction E_q[log p(x | z)] and KL = reconstruction − ELBO, per point.

    One draw of z per point, read from traces of the pair (the estimator of Trace_ELBO);
    the KL is Monte Carlo, so it works for any guide.
    """
    model, guide = program(model, "model"), program(guide, "guide")
    data = as_data(data)
    device = device_of(model, guide)
    data = data.to(device)
    dim = particle_dim(model, guide, *data.head(1))
    elbo = recon = torch.zeros((), device=device, dtype=torch.float64)
    with pyro.validation_enabled(False):
        for x, y in data.batches(batch_size):
            log_w, log_lik, _ = chunk_log_weights(model, guide, x, y, 1, dim)  # (1, B) each
            elbo, recon = elbo + log_w.sum(), recon + log_lik.sum()
    n = len(data)
    return {"elbo": elbo.item() / n, "reconstruction": recon.item() / n,
            "kl": (recon - elbo).item() / n}
