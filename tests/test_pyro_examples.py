"""The pairs of Pyro's VAE examples, written in their style (``models.pyro_examples``), pass
``check_pair``, train with ``fit`` (the objective improves; a run resumed from its
checkpoint ends where an uninterrupted one does) and score with ``iw_log_likelihood``."""

from dataclasses import replace

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.optim import Adam
from torch.nn import functional as F

from inference import TensorData, check_pair, elbo_terms, fit, iw_log_likelihood, load_splits
from inference.programs import Sites
from inference.semisupervised import SemiSupervisedData, SemiSupervisedELBO, accuracy
from models.pyro_examples import CVAE, SSVAE, VAE, BaselineNet, quadrants


@pytest.fixture(scope="module")
def mnist():
    train, valid, test = load_splits("embedded")
    return train.subset(600), valid.subset(200), test.subset(200)


def binary(data: TensorData, seed: int = 0) -> torch.Tensor:
    return torch.bernoulli(data.x, generator=torch.Generator().manual_seed(seed))


def flat(module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def straight_and_resumed(make, train, valid, tmp_path, epochs=3, **kwargs):
    """An uninterrupted run of ``epochs``, and one stopped after ``epochs - 1`` then
    resumed in a fresh pair (other initial weights) from its checkpoint."""
    pyro.set_rng_seed(0)
    straight = make(0)
    history = fit(straight.model, straight.guide, train, valid=valid, epochs=epochs,
                  progress=False, **kwargs)
    ckpt = tmp_path / "checkpoint.pt"
    pyro.set_rng_seed(0)
    first = make(0)
    fit(first.model, first.guide, train, valid=valid, epochs=epochs - 1, progress=False,
        checkpoint=ckpt, **kwargs)
    resumed = make(5)
    again = fit(resumed.model, resumed.guide, train, valid=valid, epochs=epochs,
                progress=False, checkpoint=ckpt, resume=True, **kwargs)
    torch.testing.assert_close(flat(resumed), flat(straight))
    assert again.valid_elbo == pytest.approx(history.valid_elbo, rel=1e-6)
    return straight, history


def seeded(cls, **sizes):
    def make(seed):
        torch.manual_seed(seed)
        return cls(**sizes)
    return make


def test_vae_checks_trains_resumes_and_scores(mnist, tmp_path):
    train, valid, test = mnist
    make = seeded(VAE, z_dim=5, hidden_dim=32)
    x = binary(test)[:20]
    assert check_pair(make(0).model, make(0).guide, x) == Sites(
        x="obs", latent=("latent",), y=None, plate="data")
    vae, history = straight_and_resumed(make, train, valid, tmp_path, batch_size=50, lr=3e-3)
    assert history.valid_elbo[-1] > history.valid_elbo[0] + 10  # it learns
    pyro.set_rng_seed(1)
    iw, log_w = iw_log_likelihood(vae.model, vae.guide, x, num_samples=200,
                                  return_log_weights=True)  # (20,), (200, 20)
    assert iw.shape == (20,) and log_w.shape == (200, 20) and torch.isfinite(iw).all()
    torch.testing.assert_close(iw, log_w.logsumexp(0) - torch.log(torch.tensor(200.0)))
    elbo = elbo_terms(vae.model, vae.guide, x)["elbo"]  # one draw per point
    assert log_w.mean().item() == pytest.approx(elbo, abs=5)  # E_q[log w] is the ELBO
    assert log_w.mean() < iw.mean() < log_w.mean() + 20  # the bound: above it, and close


def one_hot(data: TensorData) -> TensorData:
    """The example's labels: one-hot vectors (N, 10) instead of class numbers (N,)."""
    return replace(data, y=F.one_hot(data.y, 10).float())


def test_m2_checks_trains_resumes_and_classifies(mnist, tmp_path):
    train, valid, test = mnist
    split = SemiSupervisedData.split(train, labels=100)
    data = SemiSupervisedData(one_hot(split.labelled), split.unlabelled)
    make = seeded(SSVAE, z_dim=8, hidden=64)
    x, y = binary(data.labelled)[:10], data.labelled.y[:10]
    unlabelled, labelled = (check_pair(make(0).model, make(0).guide, *b) for b in
                            ((x, None), (x, y)))
    assert unlabelled == Sites(x="x", latent=("z",), y="y", plate="data")
    assert labelled.latent == ("z",) and labelled.y == "y"
    pair = make(0)
    before = accuracy(pair.guide, test)
    m2, history = straight_and_resumed(make, data, one_hot(valid), tmp_path, batch_size=100,
                                       lr=1e-3, loss=SemiSupervisedELBO(alpha=46.0))
    assert history.objective[-1] > history.objective[0] + 10  # the running objective
    assert accuracy(m2.guide, test) > max(0.3, before + 0.1)  # 10 labels a class teach it
    predicted = m2.classifier(test.x[:50])  # (50, 10), one-hot
    assert predicted.sum(-1).eq(1).all()
    assert (predicted.argmax(-1) == test.y[:50]).float().mean() > 0.3


@pytest.mark.filterwarnings("ignore:TraceEnum_ELBO found no sample sites")  # labelled
def test_m2_runs_in_pyros_own_svi_loop(mnist):
    """The same code is a valid Pyro program: TraceEnum_ELBO sums y out of an unlabelled
    batch and observes it in a labelled one."""
    train, _, _ = mnist
    pair = seeded(SSVAE, z_dim=8, hidden=64)(0)
    svi = SVI(pair.model, pair.guide, Adam({"lr": 1e-3}), TraceEnum_ELBO(max_plate_nesting=1))
    x = binary(train)[:32]
    y = F.one_hot(train.y[:32], 10).float()
    losses = [svi.step(x), svi.step(x, y)]
    assert all(torch.isfinite(torch.tensor(losses)))


def cvae_data(data: TensorData, seed: int = 0) -> TensorData:
    xs, ys = quadrants(binary(data, seed))  # (N, 784) each, -1 where unseen
    return TensorData(xs, ys)


def test_quadrants_split_an_image_as_the_example_does():
    images = torch.arange(784.0).div(784).reshape(1, 784)
    for inputs, seen in ((1, 196), (2, 392), (3, 588)):
        xs, ys = quadrants(images, inputs)
        assert (xs != -1).sum() == seen and (ys != -1).sum() == 784 - seen
        torch.testing.assert_close(torch.where(xs == -1, ys, xs), images)
    assert (quadrants(images, 1)[0].reshape(28, 28)[14:, :14] != -1).all()  # bottom left
    with pytest.raises(ValueError, match="1, 2 or 3"):
        quadrants(images, 4)


def test_cvae_baseline_then_cvae_train_resume_and_score(mnist, tmp_path):
    train, valid, test = (cvae_data(d, i) for i, d in enumerate(mnist))
    sites = {"x": "y"}  # the data site is the output y, scored where the input is hidden
    torch.manual_seed(0)
    baseline = BaselineNet(64, 64)
    history = fit(baseline.model, baseline.guide, train, valid=valid, epochs=3, batch_size=50,
                  lr=3e-3, progress=False, sites=sites)
    assert history.valid_elbo[-1] > history.valid_elbo[0] + 10
    frozen = flat(baseline)
    make = seeded(lambda: CVAE(baseline, z_dim=8, hidden_1=64, hidden_2=64))
    xs, ys = test.x[:20], test.y[:20]
    assert check_pair(make(0).model, make(0).guide, xs, ys, sites=sites).latent == ("z",)
    cvae, history = straight_and_resumed(make, train, valid, tmp_path, batch_size=50,
                                         lr=3e-3, sites=sites)
    assert history.valid_elbo[-1] > history.valid_elbo[0]
    torch.testing.assert_close(flat(baseline), frozen)  # the CVAE leaves its baseline be
    scores = []
    for target in (ys, torch.where(xs == -1, ys, torch.ones_like(ys))):
        pyro.set_rng_seed(2)  # the same draws: only the hidden pixels' values count
        scores.append(iw_log_likelihood(cvae.model, cvae.guide, xs, y=target, num_samples=50))
    assert scores[0].shape == (20,) and torch.isfinite(scores[0]).all()
    torch.testing.assert_close(scores[0], scores[1])  # changing the seen pixels: no effect
    flipped = torch.where(xs == -1, 1 - ys, ys)
    pyro.set_rng_seed(2)
    assert (iw_log_likelihood(cvae.model, cvae.guide, xs, y=flipped, num_samples=50)
            < scores[0] - 50).all()  # changing the hidden ones: a far worse fit


def test_fit_checks_the_values_a_model_observes_when_they_are_not_x(mnist):
    """The CVAE observes a function of its labels (the hidden pixels): grey levels there are
    refused in one line, as they are for a model that observes x."""
    from inference.check import DataError

    train, _, _ = mnist
    xs, ys = quadrants(train.x[:100])  # grey levels, not binarized
    baseline = BaselineNet(16, 16)
    with pytest.raises(DataError, match="values of y are not binary"):
        fit(baseline.model, baseline.guide, TensorData(xs, ys), epochs=1, progress=False,
            sites={"x": "y"})
