"""Latent samplers fitted after training: a better density for the codes than the prior.

A VAE's decoder was trained on codes from the aggregate posterior q(z) = E_x q(z | x), which
need not fill the prior p(z): samples from p(z) fall into its "holes". A sampler is fitted
on the guide's codes of the training split and draws z for the unchanged decoder (Ghosh et
al. 2020; Dai & Wipf 2019; Pythae's samplers):

- ``normal``: the N(0, I) prior, the baseline (:class:`~inference.samplers.base.NormalSampler`);
- ``gmm``: a Gaussian mixture, components chosen on validation codes;
- ``flow``: a normalizing flow (Pyro's spline or MAF transforms) by maximum likelihood;
- ``two-stage``: a second small VAE on the codes, trained by ``fit``;
- ``diffusion``: a DDPM on the codes, drawn in a chosen number of steps.

:mod:`~inference.samplers.run` fits them on a run folder (once: the fitted sampler is saved
in ``<run>/samplers/``), diagnoses the prior hole, and scores samples
(``vae-eval RUN --quality --sampler NAME``, ``vae-sample RUN --sampler NAME``).
"""

from inference.samplers.base import (
    SAMPLERS,
    LatentSampler,
    MixtureSampler,
    NormalSampler,
    load_sampler,
    make_sampler,
    register_sampler,
)
from inference.samplers.trained import DiffusionSampler, FlowSampler, TwoStageSampler

__all__ = [
    "SAMPLERS", "DiffusionSampler", "FlowSampler", "LatentSampler", "MixtureSampler",
    "NormalSampler", "TwoStageSampler", "load_sampler", "make_sampler", "register_sampler",
]
