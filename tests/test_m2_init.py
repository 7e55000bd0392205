"""The M2 pair starts from Pyro's ``ss_vae_M2`` initialisation: the hidden layers' weights and
biases drawn from N(0, 1e-3²), the output layers PyTorch's default
(``examples/vae/utils/custom_mlp.py``), issue 26."""

import pytest
import torch
from torch import nn

from guides import make_guide
from inference.check import check_pair
from models import make_model
from models.m2 import PYRO_INIT_STD


def linears(module):
    return [m for m in module.modules() if isinstance(m, nn.Linear)]


def hidden_and_output():
    """(hidden Linear layers, output Linear layers) of the m2 model and guide."""
    model, guide = make_model("m2"), make_guide("m2")
    hidden = [*linears(model.decoder)[:-1], *linears(guide.classifier)[:-1],
              *linears(guide.z_given_xy.trunk)]
    output = [linears(model.decoder)[-1], linears(guide.classifier)[-1], guide.z_given_xy.head]
    return hidden, output


def test_hidden_layers_are_normal_with_std_1e_3():
    torch.manual_seed(0)
    layers, _ = hidden_and_output()
    assert len(layers) == 3
    for layer in layers:
        for p in (layer.weight, layer.bias):
            # Mean 0 and sd 1e-3 within sampling error; PyTorch's default would give
            # sd ≈ 1/sqrt(3·fan_in) ≥ 0.013 for these layers, 13 times larger.
            n = p.numel()
            assert abs(p.mean().item()) < 5 * PYRO_INIT_STD / n ** 0.5
            assert p.std().item() == pytest.approx(PYRO_INIT_STD, rel=8 / n ** 0.5 + 0.02)
    weights = torch.cat([layer.weight.flatten() for layer in layers])
    # Gaussian, not uniform: a fraction ≈ 0.0455 lies beyond 2 sd (a uniform law has none).
    assert (weights.abs() > 2 * PYRO_INIT_STD).float().mean().item() == pytest.approx(0.0455,
                                                                                    abs=0.005)


def test_output_layers_keep_pytorchs_default():
    torch.manual_seed(0)
    _, layers = hidden_and_output()
    for layer in layers:  # kaiming_uniform_(a=√5): U(-1/√fan_in, 1/√fan_in), sd = bound/√3
        bound = 1 / layer.weight.shape[1] ** 0.5
        assert layer.weight.abs().max().item() <= bound
        assert layer.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.05)


def test_init_std_none_keeps_pytorchs_default_and_a_value_is_used():
    torch.manual_seed(0)
    default = linears(make_guide("m2", init_std=None).classifier)[0].weight
    bound = 1 / default.shape[1] ** 0.5  # kaiming_uniform_(a=√5): U(-1/√fan_in, 1/√fan_in)
    assert default.abs().max().item() <= bound and default.std().item() > 0.5 * bound
    assert make_model("m2", init_std=0.05).decoder[0].weight.std().item() == pytest.approx(
        0.05, rel=0.02)


def test_m2_pair_passes_check_pair_with_and_without_labels():
    kw = {"x_dim": 6, "z_dim": 2, "hidden": (8,)}
    model, guide = make_model("m2", **kw), make_guide("m2", **kw)
    x = torch.rand(5, 6).bernoulli()
    labelled = check_pair(model, guide, x, torch.tensor([0, 1, 2, 3, 4]))
    assert (labelled.x, labelled.latent, labelled.y) == ("x", ("z",), "y")
    assert check_pair(model, guide, x).latent == ("z",)
