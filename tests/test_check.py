"""A pair is checked, not trusted: every mismatch names the site and both sides."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule

from guides import make_guide
from inference import DataError, PairError, check_pair, fit
from models import data_plate, make_model


class RenamedGuide(PyroModule):
    """A guide whose latent site is called 'w' instead of 'z'."""

    def __init__(self, z_dim=50):
        super().__init__()
        self.z_dim = z_dim
        self.loc = torch.nn.Linear(784, z_dim)

    def forward(self, x, y=None):
        with data_plate(x, y):
            pyro.sample("w", dist.Normal(self.loc(x), 1.0).to_event(1))


class UnplatedGuide(PyroModule):
    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Linear(784, 50)

    def forward(self, x, y=None):
        pyro.sample("z", dist.Normal(self.loc(x), 1.0).to_event(2))


class PositiveGuide(PyroModule):
    """Samples z on the positive half-line, which the model's real-valued prior contains."""

    def forward(self, x, y=None):
        with data_plate(x, y):
            pyro.sample("z", dist.LogNormal(torch.zeros(len(x), 50), 1.0).to_event(1))


class GammaPriorModel(PyroModule):
    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", dist.Gamma(torch.ones(50), 1.0).to_event(1))
            logits = z.sum(-1, keepdim=True).expand(*z.shape[:-1], 784)
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)


class NormalGuide(PyroModule):
    def forward(self, x, y=None):
        with data_plate(x, y):
            pyro.sample("z", dist.Normal(torch.zeros(len(x), 50), 1.0).to_event(1))


def test_latent_size_mismatch_names_site_and_both_shapes(binary_x):
    with pytest.raises(PairError, match=r"site 'z'.*\(20,\).*\(50,\)"):
        check_pair(make_model("bernoulli_mlp", z_dim=50), make_guide("gaussian_mlp", z_dim=20),
                   binary_x)


def test_renamed_guide_site_is_named(binary_x):
    with pytest.raises(PairError, match="site 'w'.*latent sites are z"):
        check_pair(make_model("bernoulli_mlp"), RenamedGuide(), binary_x)


def test_guide_outside_the_data_plate(binary_x):
    with pytest.raises(PairError, match="site 'z'.*plates differ"):
        check_pair(make_model("bernoulli_mlp"), UnplatedGuide(), binary_x)


def test_support_mismatch_is_named_and_subsets_are_allowed(binary_x):
    with pytest.raises(PairError, match=r"site 'z'.*GreaterThan.*Real"):
        check_pair(GammaPriorModel(), NormalGuide(), binary_x)
    check_pair(make_model("bernoulli_mlp"), PositiveGuide(), binary_x)  # positive ⊂ real


def test_full_covariance_guide_pairs_with_diagonal_prior(binary_x):
    check_pair(make_model("bernoulli_mlp", z_dim=5), make_guide("linear_gaussian", z_dim=5),
               binary_x)


def test_fit_refuses_a_mismatched_pair_before_training(binary_x):
    model, guide = make_model("bernoulli_mlp", hidden=(8,)), make_guide("gaussian_mlp", z_dim=20)
    before = [p.clone() for p in guide.parameters()]
    with pytest.raises(PairError, match=r"\(20,\).*\(50,\)"):
        fit(model, guide, binary_x, epochs=1, progress=False)
    assert all(torch.equal(b, p) for b, p in zip(before, guide.parameters(), strict=True))


@pytest.mark.parametrize("transform,message", [
    (lambda x: x * 255, r"outside \[0, 1\] \(range 0 to 255\).*divide pixel bytes by 255"),
    (lambda x: x * 0.5, r"not binary \(e\.g\. 0\.5.*--binarize dynamic.*gaussian_mlp"),
    (lambda x: x.reshape(-1, 28, 28), r"expects data of shape \(64, 784\).*got \(64, 28, 28\)"),
    (lambda x: torch.where(x > 0, torch.nan, x), r"NaN values \(first at index"),
])
def test_bad_data_gets_a_one_line_error(binary_x, transform, message):
    with pytest.raises(DataError, match=message) as info:
        check_pair(make_model("bernoulli_mlp"), make_guide("gaussian_mlp"), transform(binary_x))
    assert "\n" not in str(info.value)


def test_fit_checks_every_row_not_only_the_first_batch(binary_x):
    x = binary_x.clone()
    x[-1, 3] = 0.5  # beyond the first batch
    with pytest.raises(DataError, match="1 of 50176 values of x are not binary"):
        fit(make_model("bernoulli_mlp"), make_guide("gaussian_mlp"), x, batch_size=16, epochs=1,
            progress=False)


def test_gaussian_model_accepts_continuous_data():
    x = torch.rand(8, 784)
    check_pair(make_model("gaussian_mlp"), make_guide("gaussian_mlp"), x)
