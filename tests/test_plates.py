"""Plates as Pyro's users write them, everywhere a pair enters the lab: ``pyro.plate("data")``
without a size (the batch's), ``subsample_size`` over the batch (Pyro's tutorial idiom) and
a declared full size ``pyro.plate("data", M, subsample_size=len(x))``. Scores of every style
equal those of the same network under a sized plate; training runs the plate as written."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO
from torch import nn

from inference import (
    check_pair,
    elbo_terms,
    fit,
    importance_sample,
    iw_log_likelihood,
    reconstruct,
    score,
)
from inference.latent import encode
from inference.objectives import ParticleELBO
from inference.plates import whole_plates
from inference.programs import program

D, Z, SUB, DECLARED = 12, 3, 4, 1000
STYLES = ("sizeless", "subsample", "declared")


class PyroStyle(nn.Module):
    """A VAE written as Pyro's examples write one (methods, ``pyro.module``), its data plate
    in one of four styles; the same weights for every style under one seed."""

    def __init__(self, style: str = "sized", seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.style = style
        self.dec, self.enc = nn.Linear(Z, D), nn.Linear(D, 2 * Z)

    def plate(self, x):
        if self.style == "sizeless":
            return pyro.plate("data")
        if self.style == "subsample":
            return pyro.plate("data", len(x), subsample_size=SUB)
        if self.style == "declared":
            return pyro.plate("data", DECLARED, subsample_size=len(x))
        return pyro.plate("data", len(x))

    def rows(self, x, ind):
        return x[ind] if self.style == "subsample" else x

    def model(self, x):
        pyro.module("style", self)
        with self.plate(x) as ind:
            xs = self.rows(x, ind)
            z = pyro.sample("z", dist.Normal(xs.new_zeros(len(xs), Z), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(z)).to_event(1), obs=xs)

    def guide(self, x):
        pyro.module("style", self)
        with self.plate(x) as ind:
            loc, log_scale = self.enc(self.rows(x, ind)).chunk(2, -1)  # (n, Z) each
            pyro.sample("z", dist.Normal(loc, log_scale.exp()).to_event(1))


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((9, D), 0.4), generator=torch.Generator().manual_seed(1))


def flat(m):
    return torch.cat([p.detach().flatten() for p in m.parameters()])


@pytest.mark.parametrize("style", STYLES)
def test_check_pair_takes_the_plate(style, x):
    pair = PyroStyle(style)
    assert check_pair(pair.model, pair.guide, x).plate == "data"


def test_a_sized_model_and_a_sizeless_guide_agree(x):
    sized, sizeless = PyroStyle("sized"), PyroStyle("sizeless")
    assert check_pair(sized.model, sizeless.guide, x).latent == ("z",)


@pytest.mark.parametrize("style", STYLES)
def test_scores_figures_and_encodings_equal_the_sized_pair(style, x):
    """Every point scored once at scale 1, the same draws: the same numbers."""
    runs = {}
    for s in ("sized", style):
        pair = PyroStyle(s)
        pyro.set_rng_seed(4)
        runs[s] = {
            "iw": iw_log_likelihood(pair.model, pair.guide, x, num_samples=5, batch_size=4),
            "is": importance_sample(pair.model, pair.guide, x, num_samples=3,
                                    return_log_weights=True).log_weights,  # (3, 9)
            "terms": elbo_terms(pair.model, pair.guide, x, batch_size=4),
            "score": score(pair.model, pair.guide, x, num_samples=5, seed=1)[0]["nll"],
            "encode": encode(pair.guide, x),
            "reconstruct": reconstruct(pair.model, pair.guide, x),
        }
    assert runs[style]["iw"].shape == (9,) and runs[style]["is"].shape == (3, 9)
    assert runs[style]["encode"].shape == runs[style]["reconstruct"].shape[:1] + (Z,)
    for key, value in runs["sized"].items():
        if torch.is_tensor(value):
            torch.testing.assert_close(runs[style][key], value, msg=key)
        else:
            assert runs[style][key] == pytest.approx(value, rel=1e-6), key


def test_training_runs_a_subsampling_plate_as_written(x):
    """The lean objective of the fast path gives Pyro's Trace_ELBO, the B/s-scaled sum over
    the s points the plate drew; a batch shorter than s is taken whole."""
    pair = PyroStyle("subsample")
    model, guide = program(pair.model), program(pair.guide)  # called as fn(x, y)
    values = []
    for loss in (Trace_ELBO(), ParticleELBO()):
        pyro.set_rng_seed(2)
        with pyro.validation_enabled(False):
            values.append(loss.differentiable_loss(model, guide, x))
    pyro.set_rng_seed(2)
    ind = torch.randperm(len(x))[:SUB]  # the guide's subsample, drawn first
    xs = x[ind]
    loc, log_scale = pair.enc(xs).chunk(2, -1)
    z = loc + log_scale.exp() * torch.randn(SUB, Z)
    q = dist.Normal(loc, log_scale.exp()).log_prob(z).sum(-1)
    p = dist.Normal(0.0, 1.0).log_prob(z).sum(-1) + dist.Bernoulli(
        logits=pair.dec(z)).log_prob(xs).sum(-1)
    expected = -(len(x) / SUB) * (p - q).sum()
    torch.testing.assert_close(values[0], expected)
    torch.testing.assert_close(values[1], expected)
    with pytest.raises(ValueError, match="subsample_size does not match"):
        pair.model(x[:2])  # Pyro's own plate refuses a batch of 2 < 4 points
    with whole_plates():
        pair.model(x[:2])  # the lab's training steps take it whole


@pytest.mark.parametrize("style", STYLES)
def test_fit_trains_every_style_on_the_fast_path(style, x, monkeypatch, tmp_path):
    from inference import capture

    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    data = x.repeat(4, 1)  # 36 points: batches of 8, the last of 4 (< SUB + 1 = 5)
    pair = PyroStyle(style)
    history = fit(pair.model, pair.guide, data, valid=x, epochs=3, batch_size=8, lr=0.05,
                  progress=False, checkpoint=tmp_path / "c.pt")
    assert "graph captured for batch shape (8, 12)" in history.fast_path
    assert history.valid_elbo[-1] > history.valid_elbo[0]
    if style == "sizeless":  # the same steps as the sized plate, to float rounding
        sized = PyroStyle("sized")
        again = fit(sized.model, sized.guide, data, valid=x, epochs=3, batch_size=8, lr=0.05,
                    progress=False)
        assert history.valid_elbo == pytest.approx(again.valid_elbo, rel=1e-5)
        torch.testing.assert_close(flat(pair), flat(sized), rtol=1e-4, atol=1e-5)


def test_ddp_trains_a_sizeless_plate_as_a_sized_one_and_a_subsampling_plate(x, tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous",
                                         rank=0, world_size=1)
    runs = {}
    try:
        for style in ("sized", "sizeless", "subsample"):
            pair = PyroStyle(style)
            runs[style] = fit(pair.model, pair.guide, x.repeat(4, 1), valid=x, epochs=3,
                              batch_size=8, lr=0.05, progress=False), flat(pair)
    finally:
        torch.distributed.destroy_process_group()
    assert "DistributedDataParallel" in runs["sizeless"][0].fast_path
    torch.testing.assert_close(runs["sizeless"][1], runs["sized"][1])
    history = runs["subsample"][0]
    assert all(torch.isfinite(torch.tensor(history.objective)))
    assert not torch.allclose(runs["subsample"][1], runs["sized"][1])  # it trained, its way
