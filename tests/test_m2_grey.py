"""Grey-level pixels for M2 (issue 26): the continuous Bernoulli likelihood of
:class:`models.conditional_mlp.ConditionalMLP` (Loaiza-Ganem & Cunningham 2019) against a
hand-written density on the same draws, normalised on [0, 1]; and Pyro's example's grey-level
Bernoulli cross-entropy, against a hand-written one and shown not to be a density."""

import pyro
import pytest
import torch
from pyro import poutine

from guides import make_guide
from inference import iw_log_likelihood
from inference.check import DataError, check_pair, non_density_site
from inference.cli import final_line
from inference.semisupervised import SemiSupervisedELBO
from models import make_model
from models.distributions import GreyCrossEntropy

KW = {"x_dim": 6, "z_dim": 2, "hidden": (8,)}


def continuous_bernoulli_by_hand(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_d log C(λ_d) + x_d log λ_d + (1 − x_d) log(1 − λ_d), λ = σ(logits), with
    C(λ) = 2 artanh(1 − 2λ) / (1 − 2λ) (λ ≠ 1/2), in float64."""
    lam = torch.sigmoid(logits.double())
    x = x.double()
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    return (log_c + x * torch.log(lam) + (1 - x) * torch.log1p(-lam)).sum(-1)


def x_site(model, x, y, z):
    """The model's x site with z and y fixed: (its distribution's logits, log p(x | z, y))."""
    tr = poutine.trace(poutine.condition(model, data={"z": z})).get_trace(x, y)
    node = tr.nodes["x"]
    return node["fn"].base_dist.logits, node["fn"].log_prob(node["value"])  # (N, x_dim), (N,)


def test_continuous_bernoulli_matches_the_hand_written_density_at_four_points():
    torch.manual_seed(0)
    model = make_model("m2", likelihood="continuous_bernoulli", **KW)
    x, y, z = torch.rand(4, 6), torch.tensor([0, 3, 7, 9]), torch.randn(4, 2)
    logits, got = x_site(model, x, y, z)
    assert got.shape == (4,)
    expected = continuous_bernoulli_by_hand(logits, x)
    assert len(set(expected.tolist())) == 4  # four distinct points, not one repeated
    assert torch.allclose(got.double(), expected, rtol=1e-5, atol=1e-4)


def test_the_bernoulli_default_is_unchanged_and_refuses_grey_pixels():
    torch.manual_seed(0)
    model = make_model("m2", **KW)
    x, y, z = torch.rand(3, 6).bernoulli(), torch.tensor([1, 2, 3]), torch.randn(3, 2)
    logits, got = x_site(model, x, y, z)
    assert torch.allclose(got, torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1))
    with pytest.raises(ValueError):
        with pyro.validation_enabled():
            x_site(model, torch.full((3, 6), 0.5), y, z)


def test_the_density_integrates_to_one_over_grey_levels():
    torch.manual_seed(0)
    model = make_model("m2", likelihood="continuous_bernoulli", x_dim=1, z_dim=2, hidden=(8,))
    with torch.no_grad():  # λ far from 1/2, where C(λ) matters most
        model.decoder[-1].bias.copy_(torch.tensor([3.0]))
    grid = torch.linspace(0, 1, 20001).unsqueeze(-1)  # (G, 1)
    y, z = torch.full((len(grid),), 4), torch.randn(1, 2).expand(len(grid), 2)
    with torch.no_grad():
        _, log_p = x_site(model, grid, y, z)
    assert torch.trapezoid(log_p.exp(), grid.squeeze(-1)).item() == pytest.approx(1.0, abs=1e-4)


def test_an_unknown_likelihood_is_refused_in_one_line():
    with pytest.raises(ValueError, match="likelihood 'gaussian' is not one of bernoulli, "
                                         "continuous_bernoulli"):
        make_model("m2", likelihood="gaussian")


def test_the_grey_pair_passes_check_pair_and_gives_a_finite_differentiable_unlabelled_loss():
    torch.manual_seed(0)
    model = make_model("m2", likelihood="continuous_bernoulli", **KW)
    guide = make_guide("m2", **KW)
    x = torch.rand(5, 6)  # grey levels, not 0/1
    assert check_pair(model, guide, x, torch.tensor([0, 1, 2, 3, 4])).y == "y"
    assert check_pair(model, guide, x).latent == ("z",)
    loss = SemiSupervisedELBO(alpha=0.0).differentiable_loss(model, guide, x)
    assert torch.isfinite(loss) and loss.requires_grad


def grey_cross_entropy_by_hand(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Σ_d x_d log σ(l_d) + (1 − x_d) log(1 − σ(l_d)), in float64."""
    p, x = torch.sigmoid(logits.double()), x.double()
    return (x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(-1)


@pytest.mark.parametrize("grad", [True, False])  # the cross-entropy path and the einsum one
def test_grey_cross_entropy_matches_by_hand_for_three_particles_of_four_points(grad):
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6, requires_grad=grad)  # (K, N, D)
    x = torch.rand(4, 6)  # (N, D) grey levels, shared by the particles
    with torch.set_grad_enabled(grad):
        got = GreyCrossEntropy(logits).log_prob(x)
    assert got.shape == (3, 4)
    expected = grey_cross_entropy_by_hand(logits.detach(), x.expand(3, 4, 6))
    assert len(set(expected.flatten().tolist())) == 12
    assert torch.allclose(got.detach().double(), expected, rtol=1e-5, atol=1e-4)
    expanded = GreyCrossEntropy(logits[0, :1]).expand((4,))
    assert isinstance(expanded, GreyCrossEntropy) and expanded.batch_shape == (4,)


def test_grey_cross_entropy_is_the_examples_objective_and_not_a_density():
    torch.manual_seed(0)
    model = make_model("m2", likelihood="grey_cross_entropy", **KW)
    x, y, z = torch.rand(4, 6), torch.tensor([0, 3, 7, 9]), torch.randn(4, 2)
    logits, got = x_site(model, x, y, z)
    examples = pyro.distributions.Bernoulli(logits=logits, validate_args=False)
    assert torch.allclose(got, examples.to_event(1).log_prob(x), atol=1e-5)  # Pyro's example
    grid = torch.linspace(0, 1, 2001)  # one pixel at p = 1/2: exp(log 1/2) everywhere
    mass = GreyCrossEntropy(torch.zeros(len(grid), 1)).log_prob(grid.unsqueeze(-1)).exp()
    assert torch.trapezoid(mass, grid).item() == pytest.approx(0.5, abs=1e-6)  # not 1


def test_the_grey_cross_entropy_pair_takes_grey_pixels_and_refuses_pixels_outside_0_1():
    torch.manual_seed(0)
    model = make_model("m2", likelihood="grey_cross_entropy", **KW)
    guide = make_guide("m2", **KW)
    x = torch.rand(5, 6)
    assert check_pair(model, guide, x).latent == ("z",)
    loss = SemiSupervisedELBO(alpha=0.0).differentiable_loss(model, guide, x)
    assert torch.isfinite(loss) and loss.requires_grad
    with pytest.raises(DataError, match="outside the support"):
        check_pair(model, guide, x * 255)


def test_log_p_x_is_refused_for_the_cross_entropy_and_given_for_the_densities():
    torch.manual_seed(0)
    x = torch.rand(3, 6)
    guide = make_guide("m2", **KW)
    cross_entropy = make_model("m2", likelihood="grey_cross_entropy", **KW)
    assert non_density_site(cross_entropy, x) == "x"
    with pytest.raises(ValueError, match="log p\\(x\\) is not defined for this model: its site "
                                         "'x' is scored by a cross-entropy"):
        iw_log_likelihood(cross_entropy, guide, x, num_samples=4)
    density = make_model("m2", likelihood="continuous_bernoulli", **KW)
    assert non_density_site(density, x) is None
    assert non_density_site(make_model("m2", **KW), x.bernoulli()) is None
    assert torch.isfinite(iw_log_likelihood(density, guide, x, num_samples=4)).all()


def test_vae_trains_last_line_does_not_call_a_cross_entropy_objective_an_elbo(tmp_path):
    metrics = {"epochs": 2, "best_epoch": 2, "test_elbo": -90.5}
    assert final_line(metrics, tmp_path).startswith("final test ELBO: -90.50 nats per image")
    said = final_line({**metrics, "elbo_is_bound": False}, tmp_path)
    assert said.startswith("final test objective (an ELBO with a cross-entropy likelihood, not a "
                           "bound on log p(x)): -90.50 per image") and "nats" not in said
