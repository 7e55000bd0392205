"""Amortized encoders q_φ(z | x) written as Pyro guides, registered by name.

>>> from guides import GUIDES, make_guide
>>> "gaussian_mlp" in GUIDES
True

A new guide is one new file in this folder whose class carries ``@register_guide("name")``.
"""

from models.base import Registry, discover

GUIDES = Registry("guide")
register_guide = GUIDES.register


def make_guide(name: str, **config):
    """Build the guide registered as ``name`` (config: ``x_dim``, ``z_dim``, ``hidden``...)."""
    return GUIDES.make(name, **config)


discover(__name__, __path__)

__all__ = ["GUIDES", "make_guide", "register_guide"]
