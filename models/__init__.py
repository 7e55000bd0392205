"""Generative models p(z) p_θ(x | z) written as Pyro models, registered by name.

>>> from models import MODELS, make_model
>>> "bernoulli_mlp" in MODELS
True
>>> make_model("bernoulli_mlp", z_dim=2, hidden=(16,)).config["z_dim"]
2

A new model is one new file in this folder whose class carries ``@register_model("name")``.
"""

from .base import Registry, TieError, data_plate, data_size, discover, tie

MODELS = Registry("model")
register_model = MODELS.register


def make_model(name: str, **config):
    """Build the model registered as ``name`` (config: ``x_dim``, ``z_dim``, ``hidden``...)."""
    return MODELS.make(name, **config)


discover(__name__, __path__)

__all__ = ["MODELS", "Registry", "TieError", "data_plate", "data_size", "make_model",
           "register_model", "tie"]
