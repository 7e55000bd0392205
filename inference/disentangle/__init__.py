"""Disentanglement: data with known factors, the objectives that claim to disentangle, and
the metrics that say whether they did.

* :mod:`.sprites` renders a dSprites equivalent; :mod:`.dsprites` reads DeepMind's file;
  :mod:`.data` turns either into the lab's training splits (``--dataset sprites``).
* :mod:`.objectives`: β-TCVAE, DIP-VAE-I/II and capacity annealing as Pyro ELBOs
  (``vae-train --loss betatc|dip1|dip2|capacity``).
* :mod:`.metrics`: disentanglement_lib's metrics for any representation function;
  :mod:`.decomposition`: the ELBO's KL term split into MI, TC and dimension-wise KL;
  :mod:`.evaluate`: ``vae-eval RUN --disentanglement``.

The metrics subpackage imports scikit-learn and SciPy; import it where it is needed.
"""

from inference.disentangle.data import FACTOR_DATASETS, ground_truth, load_factor_split
from inference.disentangle.decomposition import elbo_decomposition
from inference.disentangle.factors import GroundTruthData
from inference.disentangle.objectives import DIPVAE, AnnealedCapacity, BetaTCVAE
from inference.disentangle.sprites import Sprites, render

__all__ = ["FACTOR_DATASETS", "AnnealedCapacity", "BetaTCVAE", "DIPVAE", "GroundTruthData",
           "Sprites", "elbo_decomposition", "ground_truth", "load_factor_split", "render"]
