"""The ELBO's decomposition against exact cases and the closed-form KL; vae-train and
vae-eval --disentanglement on the sprites."""

import json
import math

import pyro
import pytest
import torch
from pyro.nn import PyroModule

from inference import elbo_terms
from inference.cli import eval_main, train_main
from inference.disentangle.decomposition import elbo_decomposition
from models import data_plate
from models.distributions import BernoulliPixels, DiagNormal


class Model(PyroModule):
    """z ~ N(0, I_3); x | z ~ Bernoulli(logits = W z)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Linear(3, 10)

    def forward(self, x, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", DiagNormal(torch.zeros(3), torch.ones(3)))
            pyro.sample("x", BernoulliPixels(self.w(z)), obs=x)


class Guide(PyroModule):
    """q(z | x) = N(A x, diag(s²)); ``copies``: every dimension gets the same mean."""

    def __init__(self, weight_scale=1.0, copies=False):
        super().__init__()
        self.a = torch.nn.Linear(10, 1 if copies else 3)
        self.copies = copies
        with torch.no_grad():
            self.a.weight.mul_(weight_scale)
            self.a.bias.mul_(weight_scale)
        self.s = torch.nn.Parameter(torch.tensor([0.3, 0.5, 0.8]))

    def forward(self, x, y=None):
        with data_plate(x, y):
            loc = self.a(x).expand(len(x), 3)  # (N, 3)
            pyro.sample("z", DiagNormal(loc, self.s.expand(len(x), 3)))


@pytest.fixture
def data():
    return torch.bernoulli(torch.full((400, 10), 0.5), generator=torch.Generator().manual_seed(0))


def closed_form_kl(guide, x):
    loc = guide.a(x).expand(len(x), 3)
    s = guide.s
    return (0.5 * (s ** 2 + loc ** 2 - 1) - torch.log(s)).sum(-1).mean().item()


def test_three_terms_sum_to_the_kl_term(data):
    torch.manual_seed(1)
    model, guide = Model(), Guide(weight_scale=3.0)
    d = elbo_decomposition(model, guide, data, num_points=None, seed=2)
    total = d["index_code_mi"] + d["total_correlation"] + d["dimwise_kl"]
    assert total == pytest.approx(d["kl"], abs=1e-9)  # the same draws: exactly
    assert d["kl_analytic"] == pytest.approx(closed_form_kl(guide, data), rel=1e-6)
    assert abs(d["kl"] - d["kl_analytic"]) < 4 * d["kl_se"]  # Monte Carlo error
    pyro.set_rng_seed(0)
    ours = elbo_terms(model, guide, data)["kl"]  # the ELBO's own KL term, other draws
    assert abs(ours - d["kl"]) < 4 * math.sqrt(2) * d["kl_se"]
    assert 0 < d["index_code_mi"] <= math.log(400) and sum(d["dimwise_kl_per_dim"]) == \
        pytest.approx(d["dimwise_kl"])


def test_a_guide_that_ignores_x_has_no_mutual_information_and_no_correlation(data):
    model, guide = Model(), Guide(weight_scale=0.0)  # q(z | x) = N(0, diag s²) for every x
    d = elbo_decomposition(model, guide, data, num_points=None, seed=0)
    assert d["index_code_mi"] == pytest.approx(0, abs=1e-12)
    assert d["total_correlation"] == pytest.approx(0, abs=1e-12)
    assert d["dimwise_kl"] == pytest.approx(d["kl"], abs=1e-12)


def test_copied_means_are_totally_correlated(data):
    torch.manual_seed(0)
    model = Model()
    independent = elbo_decomposition(model, Guide(weight_scale=3.0), data, num_points=None)
    copies = elbo_decomposition(model, Guide(weight_scale=3.0, copies=True), data,
                                num_points=None)
    assert copies["total_correlation"] > 0.5 and independent["total_correlation"] < 0.25


def test_a_random_subset_not_the_first_points(data):
    model, guide = Model(), Guide()
    d = elbo_decomposition(model, guide, data, num_points=50, seed=0)
    first = elbo_decomposition(model, guide, data[:50], num_points=None, seed=0)
    assert d["num_points"] == 50 and d["kl_analytic"] != first["kl_analytic"]
    with pytest.raises(ValueError, match="need a diagonal Normal"):
        elbo_decomposition(model, lambda x, y=None: pyro.sample(
            "z", pyro.distributions.Laplace(torch.zeros(len(x), 3), 1.0).to_event(1)), data)


@pytest.mark.slow
def test_vae_train_and_eval_on_sprites(tmp_path, capsys):
    """Two minutes on the shared 2-core CPU (it renders the 65,000 images of the splits and
    scores 10,000 test images): in the slow set."""
    run = str(tmp_path / "run")
    assert train_main(["--dataset", "sprites", "--train-limit", "256", "--valid", "300",
                       "--epochs", "1", "--hidden", "16", "--z-dim", "3", "--loss", "betatc",
                       "--beta", "4", "--loss-config", '{"estimator": "mws"}', "--quiet",
                       "--no-tensorboard", "--out", run]) == 0
    out = capsys.readouterr().out
    assert "data: sprites train 256 x 4096" in out and "β-TCVAE objective (β=4, mws)" in out
    assert (tmp_path / "run" / "figures" / "reconstructions.png").exists()
    assert eval_main([run, "--disentanglement", "--metrics", "mig,unsupervised",
                      "--metric-scale", "0.03", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MIG" in out and "KL term, 5000 test points: index-code MI" in out
    saved = json.loads((tmp_path / "run" / "disentanglement-scale0.03.json").read_text())
    assert saved["options"]["mig"] == {"num_train": 300} and set(saved["metrics"]) == {
        "mig", "unsupervised"}
    mnist = str(tmp_path / "mnist")
    assert train_main(["--epochs", "1", "--hidden", "8", "--z-dim", "2", "--quiet",
                       "--no-figures", "--no-tensorboard", "--out", mnist]) == 0
    with pytest.raises(SystemExit) as info:
        eval_main([mnist, "--disentanglement"])
    assert info.value.code == 2
    assert "needs a run trained on a dataset with known factors" in capsys.readouterr().err
