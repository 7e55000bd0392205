"""The MIWAE bound (Mattei & Frellsen 2019): the IWAE bound of the observed cells of rows
with missing ones, as a Pyro ELBO class (``--loss miwae``).

It lives beside :mod:`inference.objectives` (whose :class:`~inference.objectives.IWAE` it
extends) because it reads its weights through the inpainting's masked likelihood
(:func:`inference.impute.masked_log_weights`), which imports the evaluation modules.
"""

from __future__ import annotations

import torch

from inference.impute import masked_log_weights
from inference.objectives import IWAE
from inference.programs import probe_sites


class MIWAE(IWAE):
    """The missing-data importance-weighted bound (Mattei & Frellsen 2019, "MIWAE", eq. 4):

        −Σ_n log (1/K) Σ_k p(x_n^obs | z_kn) p(z_kn) / q(z_kn | x̃_n),   z_kn ~ q(· | x̃_n)

    for rows with missing cells, marked NaN in ``x`` (a :class:`~inference.data.TensorData`
    with a ``mask`` serves them so). The model scores only the observed cells
    (:func:`inference.impute.observe_pixels`, the same masking as inpainting) and sees 0 in
    the missing ones; the guide sees x̃: the zero-filled row, or the row with its NaN for a
    guide that reads the mask itself (``reads_missing = True``, as the ``tabular`` guide).
    The bound is ≤ log p(x^obs) and is IWAE's bound when nothing is missing (same draws, same
    value). It runs eagerly (no captured graph).
    """

    capture_refusal = "its mask is read from the batch on every step"

    @property
    def objective_name(self) -> str:
        return f"MIWAE bound (K={self.num_particles})"

    def log_weights(self, model, guide, x, y=None) -> torch.Tensor:
        observed = ~torch.isnan(x)
        shown = x if getattr(guide, "reads_missing", False) else x.masked_fill(~observed, 0.0)
        site = self.__dict__.setdefault("_site", {}).get(id(model))
        if site is None:
            with torch.no_grad(), torch.random.fork_rng():
                site = self._site[id(model)] = probe_sites(
                    model, guide, shown[:1], None if y is None else y[:1]).x
        filled = x.masked_fill(~observed, 0.0)  # the model sees 0 where a cell is missing
        log_w, _, _ = masked_log_weights(model, guide, filled, observed, y, self.num_particles,
                                         self.particle_dim, views=[shown], site=site)
        return log_w  # (K, N)
