"""Training and using a VQ-VAE (van den Oord, Vinyals & Kavukcuoglu 2017) in the lab's loop.

:class:`VQELBO` is the objective: the bound of a point-mass guide plus the codebook and
commitment losses, with the codebook's EMA update and the restart of dead codes after each
optimizer step, and codebook usage and perplexity recorded every epoch. :func:`fit_code_prior`
is the second stage: the training set's codes, fitted by an autoregressive prior with the
same ``fit``.
"""

from __future__ import annotations

from typing import Any

import pyro.poutine as poutine
import torch
import torch.distributed as dist

from inference.data import TensorData, as_data
from inference.objectives import DifferentiableELBO
from inference.programs import device_of, owner, program
from inference.traces import summed_log_prob
from inference.validate import non_negative_float, positive_int


class VQELBO(DifferentiableELBO):
    """The VQ-VAE's loss (van den Oord et al. 2017, eq. 3), per data point, summed:

        −[log p(x | z_q) + log p(z_q)]  +  ‖sg[z_e] − e‖²  +  β ‖z_e − sg[e]‖²

    The first term is minus the ELBO of the point-mass guide (log q = 0), a bound on
    −log p(x); the codebook loss (dropped when the codebook learns by EMA) pulls the codes
    to the encoder outputs, the commitment loss (β = 0.25) the outputs to their codes; both
    sum over the L latent positions. Read from the guide's deterministic sites ``z_e`` and
    ``z_q``. After every optimizer step (:meth:`after_step`, called by ``fit``) the codebook
    updates its usage average (and, with EMA, its vectors), and codes whose usage fell below
    ``restart_below`` encoder outputs per step move onto random encoder outputs of the step
    (Dhariwal et al. 2020); under DDP the ranks' statistics are summed first and rank 0's
    restarts broadcast. :meth:`epoch_metrics` gives each epoch's usage and perplexity.
    """

    capture_refusal = "its codebook updates and argmin happen outside any graph"

    def __init__(self, beta: float = 0.25, restart_below: float | None = 1.0,
                 num_particles: int = 1):
        if num_particles != 1:
            raise ValueError("the VQ-VAE's guide is a point mass: one particle says it all "
                             f"(num_particles must be 1, got {num_particles})")
        super().__init__(num_particles=1, max_plate_nesting=1)
        self.beta = non_negative_float("beta", beta)
        self.restart_below = restart_below
        self._step: tuple | None = None  # (codebook, z_e (M, D), codes (M,)) of the last step
        self._counts: torch.Tensor | None = None  # codes' counts over the epoch

    def differentiable_loss(self, model, guide, x, y=None) -> torch.Tensor:
        model, guide = program(model, "model"), program(guide, "guide")
        g = poutine.trace(guide).get_trace(x, y)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x, y)
        for site in ("z_e", "z_q", "codes"):
            if site not in g.nodes:
                raise ValueError(f"VQELBO needs a VQ-VAE guide recording deterministic sites "
                                 f"z_e, z_q and codes (guides/vqvae.py); {site!r} is missing")
        n = len(x)
        log_w = summed_log_prob(m, -2, 1, n) - summed_log_prob(g, -2, 1, n)  # (1, N)
        z_e, z_q = g.nodes["z_e"]["value"], g.nodes["z_q"]["value"]  # (N, L·D) each
        codebook = owner(guide).codebook
        loss = -log_w.sum() + self.beta * (z_e - z_q.detach()).pow(2).sum()
        if not codebook.ema:
            loss = loss + (z_e.detach() - z_q).pow(2).sum()
        if torch.is_grad_enabled():  # a training step: keep its statistics for after_step
            self._step = (codebook, z_e.detach().reshape(-1, codebook.dim),
                          g.nodes["codes"]["value"].reshape(-1).long())
        return loss

    def after_step(self) -> None:
        """Update the codebook from the last step's encoder outputs and restart dead codes."""
        if self._step is None:
            return
        codebook, z_e, codes = self._step
        self._step = None
        counts, sums = codebook.statistics(z_e, codes)
        distributed = dist.is_available() and dist.is_initialized()
        if distributed:  # every rank updates from the whole global batch
            packed = torch.cat([counts[:, None], sums], 1)
            dist.all_reduce(packed)
            counts, sums = packed[:, 0], packed[:, 1:]
        codebook.update(counts, sums)
        self._counts = counts if self._counts is None else self._counts + counts
        if self.restart_below is not None:
            codebook.restart(z_e, self.restart_below)
            if distributed:  # rank 0's restarts, on every rank
                for buffer in codebook.buffers():
                    dist.broadcast(buffer.data, src=0)
                dist.broadcast(codebook.weight.data, src=0)

    def epoch_metrics(self) -> dict[str, Any]:
        """Codes used this epoch, the perplexity exp(H) of their frequencies (K if all are
        used equally), and dead codes (unused all epoch); the counts restart."""
        if self._counts is None:
            return {}
        counts, self._counts = self._counts, None
        p = counts / counts.sum()
        entropy = -(p[p > 0] * p[p > 0].log()).sum()
        return {"codes_used": int((counts > 0).sum()), "codes_dead": int((counts == 0).sum()),
                "code_perplexity": float(entropy.exp())}


@torch.no_grad()
def encode_codes(guide, data: Any, batch_size: int = 1000) -> TensorData:
    """The code grid (N, L) of every point of ``data`` under a VQ-VAE guide, as floats (the
    data of :class:`models.code_prior.CodePrior`), with the data's labels."""
    guide = program(guide, "guide")
    data = as_data(data).to(device_of(guide))
    grids, labels = [], []
    for x, y in data.batches(positive_int("batch_size", batch_size)):
        grids.append(poutine.trace(guide).get_trace(x, y).nodes["codes"]["value"])
        labels.append(y)
    y = None if labels[0] is None else torch.cat(labels)
    return TensorData(torch.cat(grids), y, info={"name": "codes", "n": len(data)})


def fit_code_prior(model, guide, train: Any, valid: Any = None, **fit_kwargs):
    """The second stage: encode ``train`` (and ``valid``) to codes with the trained guide and
    fit the VQ-VAE model's :class:`~models.code_prior.CodePrior` on them by maximum
    likelihood, with the lab's ``fit`` and the ``empty`` guide; the model's prior is then the
    fitted one. Returns the prior's :class:`~inference.History` (``fit_kwargs``: ``fit``'s)."""
    from guides import make_guide
    from inference.train import fit

    vq = owner(program(model, "model"))
    if getattr(vq, "prior", None) is None:
        raise ValueError("this model has no learned code prior: build it with "
                         "prior='transformer' (vae-train --model-config "
                         "'{\"prior\": \"transformer\"}')")
    codes = encode_codes(guide, train)
    held = None if valid is None else encode_codes(guide, valid)
    history = fit(vq.prior, make_guide("empty"), codes, valid=held, **fit_kwargs)
    vq.prior_fitted.fill_(True)
    return history
