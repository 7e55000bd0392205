"""Kingma et al. (2014)'s M2 generative model, initialised as Pyro's ``ss_vae_M2`` example."""

from __future__ import annotations

from models import register_model
from models.conditional_mlp import ConditionalMLP
from models.nets import normal_init_

#: Pyro's ``examples/vae/utils/custom_mlp.py`` draws hidden layers' weights and biases from
#: N(0, 1e-3²).
PYRO_INIT_STD = 1e-3


@register_model("m2")
class M2(ConditionalMLP):
    """p(y) p(z) p_θ(x | z, y) of M2 (Kingma et al. 2014), the model of
    :class:`models.conditional_mlp.ConditionalMLP` with the weights and biases of its decoder's
    hidden layers (every Linear but the output one) drawn from N(0, ``init_std``²),
    ``init_std`` = 1e-3 by default; the output layer keeps PyTorch's default.

    Why: that is how Pyro's ``examples/vae/ss_vae_M2.py`` initialises its networks (its
    ``utils/custom_mlp.py``, ``MLP.__init__``: ``weight.data.normal_(0, 0.001)`` and the same
    for ``bias`` on each hidden layer; the output layers are plain ``nn.Linear``). With
    PyTorch's default (Kaiming-uniform) initialisation the same M2 and objective learned far
    slower than the example in its first epochs (issue 26: 0.37 against the example's 0.60
    test accuracy after 3 epochs with 100 labels); ``benchmarks/m2.py`` measures the two
    side by side (``docs/benchmarks/m2.md``).
    ``init_std=None`` keeps PyTorch's default. ``likelihood="continuous_bernoulli"`` (a density)
    or ``"grey_cross_entropy"`` (the example's objective) takes grey levels (see
    :class:`models.conditional_mlp.ConditionalMLP`).

    Generative story::

        y         ~ Categorical(1/C, ..., 1/C)
        z         ~ Normal(0, I)
        x | z, y  ~ Bernoulli(logits = f_θ([z, onehot(y)]))

    ========  ===========  =========================================
    site      event shape  plate
    ========  ===========  =========================================
    ``y``     ()           data (observed when y is given)
    ``z``     (z_dim,)     data
    ``x``     (x_dim,)     data (observed when x is given)
    ========  ===========  =========================================
    """

    def __init__(self, x_dim: int = 784, z_dim: int = 50, hidden: tuple[int, ...] = (500,),
                 activation: str = "softplus", num_classes: int = 10,
                 init_std: float | None = PYRO_INIT_STD, likelihood: str = "bernoulli"):
        super().__init__(x_dim, z_dim, hidden, activation, num_classes, likelihood)
        if init_std is not None:
            normal_init_(self.decoder[:-1], init_std)  # hidden layers only
