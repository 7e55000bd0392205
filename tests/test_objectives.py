"""IWAE, DReG and STL: their values are the IWAE bound, their gradients what the papers say."""

import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import SVI, RenyiELBO, Trace_ELBO

from guides import make_guide
from inference import capture, fit, iw_log_likelihood
from inference.objectives import IWAE, STL, DReG
from inference.train import parameters
from models import make_model

SMALL = {"z_dim": 4, "hidden": (32,)}


def small_pair():
    torch.manual_seed(0)
    return make_model("bernoulli_mlp", **SMALL), make_guide("gaussian_mlp", **SMALL)


def seeded(fn, seed=1):
    pyro.set_rng_seed(seed)
    with pyro.validation_enabled(False):
        return fn()


TWO = {"z1_dim": 6, "z2_dim": 3, "hidden1": (16,), "hidden2": (8,)}


@pytest.mark.parametrize("layers", ["one latent site", "two latent sites"])
def test_iwae_value_is_the_evaluators_bound_and_renyis_per_point(binary_x, layers):
    model, guide = small_pair()
    if layers == "two latent sites":  # the IWAE paper's two-stochastic-layer pair
        torch.manual_seed(0)
        model, guide = make_model("two_layer", **TWO), make_guide("two_layer", **TWO)
    x = binary_x[:6]
    iwae = seeded(lambda: IWAE(5).differentiable_loss(model, guide, x))
    log_px = seeded(lambda: iw_log_likelihood(model, guide, x, num_samples=5, fast=False))
    assert iwae.item() == pytest.approx(-log_px.sum().item(), rel=1e-6)
    renyi = RenyiELBO(alpha=0, num_particles=5, vectorize_particles=True, max_plate_nesting=1)
    for i in range(2):  # RenyiELBO bounds a whole minibatch jointly: compare one point at a time
        ours = seeded(lambda i=i: IWAE(5).loss(model, guide, x[i:i + 1]), seed=i)
        assert ours == pytest.approx(seeded(lambda i=i: renyi.loss(model, guide, x[i:i + 1]),
                                            seed=i), rel=1e-6)
    one = seeded(lambda: IWAE(1).differentiable_loss(model, guide, x))
    trace = seeded(lambda: Trace_ELBO().differentiable_loss(model, guide, x))
    assert one.item() == pytest.approx(trace.item(), rel=1e-6)  # K = 1 is the ELBO
    for cls in (STL, DReG):  # the same value: they change only the gradient
        value = seeded(lambda cls=cls: cls(5).differentiable_loss(model, guide, x))
        assert value.item() == pytest.approx(iwae.item(), rel=1e-6)


def guide_gradients(objective, model, guide, x, draws):
    params = list(guide.parameters())
    rows = []
    for _ in range(draws):
        loss = objective.differentiable_loss(model, guide, x)
        rows.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    return torch.stack(rows)  # (draws, n_params)


def poor_guide(model):
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2, covariance="diagonal").double()
    guide.set_posterior(model)
    with torch.no_grad():
        guide.bias.add_(0.5)
    return guide


def test_dreg_is_unbiased_with_less_variance_at_k50(linear_model, capsys):
    """A batch of 16 distinct points: the weights of one point must never scale another's
    gradient (the mistake a single point cannot show). Every guide parameter's mean
    gradient agrees with IWAE's within 4 standard errors."""
    x = linear_model.marginal().sample((16,))
    guide = poor_guide(linear_model)
    draws = 400
    with pyro.validation_enabled(False):
        iwae = guide_gradients(IWAE(50), linear_model, guide, x, draws)
        dreg = guide_gradients(DReG(50), linear_model, guide, x, draws)
    assert iwae.shape == (draws, 16)  # weight (2 x 6), bias (2), scale (2): every component
    z = (iwae.mean(0) - dreg.mean(0)) / ((iwae.var(0) + dreg.var(0)) / draws).sqrt()
    assert z.abs().max() < 4, z
    ratio = (iwae.var(0).sum() / dreg.var(0).sum()).item()
    with capsys.disabled():
        print(f"\n  N=16, K=50, {draws} draws: guide-gradient variance IWAE / DReG = {ratio:.2f},"
              f" largest |z| = {z.abs().max():.2f}")
    assert ratio > 2


@pytest.mark.parametrize("cls,vanishes", [(STL, True), (DReG, True), (IWAE, False)])
def test_stl_and_dreg_gradients_vanish_at_the_exact_posterior_for_every_point(linear_model,
                                                                             cls, vanishes):
    """With q = p(z | x), log w is constant in z: the pathwise gradient is zero for each
    point of a batch (each point's terms isolated by a mask over the data plate)."""
    x = linear_model.marginal().sample((5,))
    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2).double().set_posterior(linear_model)
    params = list(guide.parameters())
    for n in range(len(x)):
        only = torch.arange(len(x)) == n
        with pyro.validation_enabled(False):
            loss = cls(5).differentiable_loss(poutine.mask(linear_model, mask=only),
                                              poutine.mask(guide, mask=only), x)
        largest = max(g.abs().max() for g in torch.autograd.grad(loss, params))
        assert (largest < 1e-10) == vanishes, (cls.__name__, n, largest)


@pytest.mark.parametrize("cls", [IWAE, STL, DReG])
def test_differentiable_loss_gives_loss_and_grads_gradients(cls, binary_x, tmp_path):
    model, guide = small_pair()
    x, params = binary_x[:8], parameters(model, guide)

    def grads_of(run):
        for p in params:
            p.grad = None
        seeded(run)
        return [p.grad.clone() for p in params]

    reference = grads_of(lambda: cls(5).loss_and_grads(model, guide, x))
    as_module = cls(5)(model, guide)  # Pyro's ELBOModule: a plain torch loss
    torch_loss = grads_of(lambda: as_module(x).backward())
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous",
                                         rank=0, world_size=1)
    try:
        ddp = torch.nn.parallel.DistributedDataParallel(cls(5)(model, guide))
        under_ddp = grads_of(lambda: ddp(x).backward())
    finally:
        torch.distributed.destroy_process_group()
    for got in (torch_loss, under_ddp):
        for a, b in zip(got, reference, strict=True):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls", [IWAE, STL, DReG])
def test_objectives_train_in_pyro_svi(cls, binary_x):
    """pyro.infer.SVI collects parameters from Pyro's global param store: build and train
    the pair with module_local_params off (the lab turns it on for its own loop)."""
    with pyro.settings.context(module_local_params=False):
        pyro.clear_param_store()
        model, guide = small_pair()
        svi = SVI(model, guide, pyro.optim.Adam({"lr": 1e-2}), loss=cls(3))
        losses = [svi.step(binary_x) for _ in range(30)]
        assert len(pyro.get_param_store()) == len(parameters(model, guide))
    assert math.isfinite(losses[-1]) and losses[-1] < losses[0]


def test_objectives_train_in_fit(binary_x, monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    for objective, note in ((IWAE(3), "graph captured"),
                            (DReG(3), "on (DReG, eager: a captured forward graph drops")):
        model, guide = small_pair()
        history = fit(model, guide, binary_x, epochs=2, batch_size=16, loss=objective,
                      progress=False)
        assert history.objective[1] > history.objective[0]
        assert note in history.fast_path  # DReG replays the guide itself: it runs eagerly
