"""Pyro's own VAE examples, written again in their style: plain ``nn.Module`` s whose
``model`` and ``guide`` methods register their networks with ``pyro.module``, sites named as
the examples name them, and ``pyro.plate("data")`` as they write it. They are not registered
pairs: they show (and the tests check) that code written for Pyro's ``SVI`` runs in the lab
unchanged (docs/guide/pyro-examples.md).

* :mod:`~models.pyro_examples.vae`: the VAE of ``examples/vae/vae.py`` (sites ``latent`` and
  ``obs``);
* :mod:`~models.pyro_examples.ss_vae`: the semi-supervised M2 of
  ``examples/vae/ss_vae_M2.py`` (Kingma et al. 2014): one-hot ``y``, ``config_enumerate``,
  ``model(xs, ys=None)``;
* :mod:`~models.pyro_examples.cvae`: the conditional VAE of ``examples/cvae`` (Sohn et al.
  2015): a baseline network and a masked conditional prior, for completing digits from
  one quadrant.
"""

from .cvae import CVAE, BaselineNet, quadrants
from .ss_vae import SSVAE
from .vae import VAE

__all__ = ["CVAE", "SSVAE", "VAE", "BaselineNet", "quadrants"]
