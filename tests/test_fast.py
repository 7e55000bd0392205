"""The fast path gives the plain path's numbers; it steps aside where it would not."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO, TraceMeanField_ELBO
from pyro.nn import PyroModule

from guides import make_guide
from inference import capture, fit
from inference.objectives import MeanFieldELBO, ParticleELBO, lean_equivalent
from inference.train import Trainer, default_optimizer, parameters
from models import data_plate, make_model
from models.distributions import BernoulliPixels
from models.nets import StandardNormal

SMALL = {"z_dim": 4, "hidden": (32,)}


def small_pair(seed=0):
    torch.manual_seed(seed)
    return make_model("bernoulli_mlp", **SMALL), make_guide("gaussian_mlp", **SMALL)


def flat(*modules):
    return torch.cat([p.detach().flatten() for m in modules for p in m.parameters()])


@pytest.mark.parametrize("plain,lean", [
    (Trace_ELBO(), ParticleELBO()),
    (TraceMeanField_ELBO(), MeanFieldELBO()),
    (Trace_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1), ParticleELBO(4)),
    (TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
     MeanFieldELBO(4)),
])
def test_lean_objectives_equal_pyro_in_value_and_gradient(plain, lean, binary_x):
    model, guide = small_pair()
    params = parameters(model, guide)
    with pyro.validation_enabled(False):
        pyro.set_rng_seed(1)
        a = plain.differentiable_loss(model, guide, binary_x, None)
        pyro.set_rng_seed(1)
        b = lean.differentiable_loss(model, guide, binary_x, None)
    torch.testing.assert_close(b, a)
    for ga, gb in zip(torch.autograd.grad(a, params), torch.autograd.grad(b, params),
                      strict=True):
        torch.testing.assert_close(gb, ga)
    assert type(lean_equivalent(plain)) is type(lean)
    assert lean_equivalent(plain).particle_dim == -2  # Pyro's +1 for particles undone


def test_lean_objective_api_and_limits(binary_x):
    model, guide = small_pair()
    elbo = ParticleELBO()
    pyro.set_rng_seed(2)
    value = elbo.loss(model, guide, binary_x)
    pyro.set_rng_seed(2)
    assert elbo.loss_and_grads(model, guide, binary_x) == pytest.approx(value)
    assert all(p.grad is not None for p in parameters(model, guide))
    assert lean_equivalent(RenyiELBO()) is None
    assert lean_equivalent(Trace_ELBO(num_particles=3)) is None  # sequential particles


class CoinGuide(PyroModule):
    """A guide with a discrete latent: no reparameterized gradient."""

    def __init__(self):
        super().__init__()
        self.logit = torch.nn.Parameter(torch.zeros(4))

    def forward(self, x, y=None):
        with data_plate(x, y):
            pyro.sample("z", dist.Bernoulli(logits=self.logit).to_event(1))


class CoinModel(PyroModule):
    def __init__(self):
        super().__init__()
        self.decoder = torch.nn.Linear(4, 784)

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", dist.Bernoulli(0.5 * torch.ones(4)).to_event(1))
            pyro.sample("x", BernoulliPixels(self.decoder(z)), obs=x)


def test_non_reparameterized_guides_keep_pyros_objective(binary_x):
    with pytest.raises(ValueError, match="reparameterized guide sites.*'z' is Independent"):
        ParticleELBO().loss(CoinModel(), CoinGuide(), binary_x)
    history = fit(CoinModel(), CoinGuide(), binary_x, epochs=1, batch_size=16, progress=False)
    assert history.fast_path.startswith("off (Pyro's objective and the lean one gave")


@pytest.mark.parametrize("loss", [Trace_ELBO(), TraceMeanField_ELBO()])
def test_fast_and_plain_fits_give_the_same_numbers(loss, binary_x, monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 2)  # capture within this short run
    results = {}
    for fast in (False, "auto"):
        model, guide = small_pair()
        history = fit(model, guide, binary_x, valid=binary_x[:16], epochs=3, batch_size=16,
                      loss=loss, fast=fast, progress=False)
        results[fast] = (history, flat(model, guide))
    (plain, p_params), (quick, q_params) = results[False], results["auto"]
    assert plain.fast_path == "off (fast=False)"
    assert "graph captured for batch shape (16, 784)" in quick.fast_path
    assert quick.objective == pytest.approx(plain.objective, rel=1e-5)
    assert quick.valid_elbo == pytest.approx(plain.valid_elbo, rel=1e-5)
    torch.testing.assert_close(q_params, p_params, rtol=1e-4, atol=1e-5)


def test_compiled_fast_path_gives_the_same_numbers(binary_x, monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 2)
    histories = {}
    for fast in (False, "compile"):
        model, guide = small_pair()
        histories[fast] = fit(model, guide, binary_x, epochs=2, batch_size=16, fast=fast,
                              progress=False)
    assert "graph captured and compiled for batch shape (16, 784)" in histories[
        "compile"].fast_path
    assert histories["compile"].objective == pytest.approx(histories[False].objective,
                                                            rel=1e-4)


class BranchOnData(PyroModule):
    """A model whose operations depend on the data's values: it must not be captured."""

    def __init__(self):
        super().__init__()
        self.prior = StandardNormal(4)
        self.decoder = torch.nn.Linear(4, 784)

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", self.prior())
            logits = self.decoder(z)
            if x is not None and x.mean() > 0.5:  # data-dependent Python control flow
                logits = -logits
            pyro.sample("x", BernoulliPixels(logits), obs=x)


def test_data_dependent_programs_are_not_captured(binary_x, monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    torch.manual_seed(0)
    history = fit(BranchOnData(), make_guide("gaussian_mlp", **SMALL), binary_x, epochs=1,
                  batch_size=16, progress=False)
    assert "capture refused for shape (16, 784)" in history.fast_path
    assert history.fast_path.startswith("on (ParticleELBO)")  # still lean, eagerly


def test_the_fast_loss_reads_nothing_back_from_the_device(binary_x, monkeypatch):
    """Pyro's Trace_ELBO calls .item() (a device sync on a GPU) in every loss; ours never.
    (torch's Adam reads its step counters, which live on the host, so they are not counted.)"""
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    reads = []
    original = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or original(self))
    model, guide = small_pair()
    opt = torch.optim.Adam(parameters(model, guide), lr=1e-3)
    trainer = Trainer(model, guide, Trace_ELBO(), opt, seed=0, clip_norm=None, progress=False,
                      fast="auto")
    x = binary_x[:16]
    counts = {}
    with pyro.validation_enabled(False):
        trainer.fast.step(x, None)  # captures the graph
        pyro_step = lambda: Trace_ELBO().differentiable_loss(model, guide, x).backward()  # noqa: E731
        for name, step in (("fast", lambda: trainer.fast.step(x, None)), ("pyro", pyro_step)):
            reads.clear()
            for _ in range(3):
                step()
            counts[name] = len(reads)
    assert counts["fast"] == 0 and counts["pyro"] >= 3  # Pyro: at least one per loss


@pytest.mark.parametrize("loss", [
    Trace_ELBO(),
    TraceMeanField_ELBO(),
    Trace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1),
    TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1),
])
def test_the_default_step_gives_pyros_svi_loss_and_gradients(loss, binary_x, monkeypatch):
    """The default path's step (a joint forward-backward graph once captured) against the
    plain Pyro SVI step (``loss_and_grads``, what ``SVI.step`` runs), same seed, 5 points."""
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 2)
    model, guide = small_pair()
    params = parameters(model, guide)
    trainer = Trainer(model, guide, loss, default_optimizer(params), seed=0, clip_norm=None,
                      progress=False, fast="auto")
    x = binary_x[3:8]  # (5, 784): five distinct points
    with pyro.validation_enabled(False), trainer.handled():
        for seed in range(4):  # eager, eager (then captured), graph, graph
            pyro.set_rng_seed(seed)
            ours = trainer.fast.step(x, None)
            got = [p.grad.clone() for p in params]
            for p in params:
                p.grad = None
            pyro.set_rng_seed(seed)
            theirs = loss.loss_and_grads(model, guide, x, None)
            torch.testing.assert_close(ours.item(), theirs, rtol=1e-6, atol=0)
            for g, p in zip(got, params, strict=True):
                assert g.shape == p.shape
                torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6)
                p.grad = None
    assert "joint forward-backward graph captured for batch shape (5, 784)" in (
        trainer.fast.reason)


def test_the_joint_graph_is_refused_when_it_would_differ(binary_x, monkeypatch):
    """A joint graph whose gradients differ from the eager ones is not used."""
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    monkeypatch.setattr(capture, "_close", lambda a, b: len(a) == 1)  # gradients differ
    model, guide = small_pair()
    trainer = Trainer(model, guide, Trace_ELBO(), default_optimizer(parameters(model, guide)),
                      seed=0, clip_norm=None, progress=False, fast="auto")
    with pyro.validation_enabled(False):
        value = trainer.fast.step(binary_x[:4], None)
    assert "gave the same value but different gradients" in trainer.fast.reason
    assert value.requires_grad is False and all(p.grad is not None for p in parameters(
        model, guide))


def test_the_default_optimizer_is_adam_fused_where_it_can_be(binary_x):
    model, guide = small_pair()
    fused = default_optimizer(parameters(model, guide), lr=1e-2, eps=1e-6)
    assert isinstance(fused, torch.optim.Adam) and fused.defaults["fused"]
    assert fused.defaults["eps"] == 1e-6
    twin_model, twin_guide = small_pair()
    plain = torch.optim.Adam(parameters(twin_model, twin_guide), lr=1e-2, eps=1e-6)
    for opt, pair in ((fused, (model, guide)), (plain, (twin_model, twin_guide))):
        for seed in range(3):
            pyro.set_rng_seed(seed)
            with pyro.validation_enabled(False):
                Trace_ELBO().loss_and_grads(*pair, binary_x[:8], None)
            opt.step()
            opt.zero_grad()
    torch.testing.assert_close(flat(model, guide), flat(twin_model, twin_guide))
    ints = torch.nn.Linear(2, 2).to(torch.float16)  # no fused Adam for float16 on a CPU
    assert isinstance(default_optimizer(ints.parameters()), torch.optim.Adam)


def test_asking_for_the_impossible_is_clear(binary_x):
    with pytest.raises(ValueError, match="no fast path for RenyiELBO"):
        fit(*small_pair(), binary_x, loss=RenyiELBO(), fast=True, progress=False)
    with pytest.raises(ValueError, match="fast must be False, True, 'auto' or 'compile'"):
        fit(*small_pair(), binary_x, fast="turbo", progress=False)


def test_compiled_evaluation_draws_the_same_particles(linear_model):
    from inference.marginal import _COMPILED, importance_sample

    guide = make_guide("linear_gaussian", x_dim=6, z_dim=2, covariance="diagonal").double()
    guide.set_posterior(linear_model)
    with torch.no_grad():
        guide.bias.add_(0.3)
    x = linear_model.marginal().sample((40,))
    runs = {}
    for fast in (False, "compile", "compile"):
        pyro.set_rng_seed(4)
        runs.setdefault(fast, []).append(importance_sample(
            linear_model, guide, x, num_samples=256, chunk_size=64, batch_size=20, fast=fast))
    plain, compiled = runs[False][0], runs["compile"][0]
    assert plain.fast_path == "eager"
    assert compiled.fast_path == "graph captured and compiled for batch shape (20, 6)"
    torch.testing.assert_close(compiled.log_likelihood, plain.log_likelihood, atol=1e-6, rtol=0)
    torch.testing.assert_close(compiled.latent_means["z"], plain.latent_means["z"])
    assert len(_COMPILED[linear_model]) == 1  # the second call reused the compiled chunks
