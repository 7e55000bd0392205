"""Latent samplers (inference/samplers): on synthetic codes of known density, the
diffusion's loss against a hand-written one, save, load, resume, and the commands."""

import math

import pyro.poutine as poutine
import pytest
import torch
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from inference.samplers import load_sampler, make_sampler
from inference.samplers.codes import aggregate_kl, fitted_sampler
from models import make_model

MIXTURE = MixtureSameFamily(Categorical(torch.tensor([0.3, 0.7])),
                            Independent(Normal(torch.tensor([[-2.0, 0.0], [2.0, 1.0]]),
                                               torch.tensor([[0.5, 0.5], [0.7, 0.3]])), 1))
RADIUS, WIDTH = 2.0, 0.15


def ring(n: int, g: torch.Generator) -> torch.Tensor:
    """Points at radius ~ N(2, 0.15²), uniform angle: density N(r; 2, 0.15) / (2π r)."""
    r = RADIUS + WIDTH * torch.randn(n, generator=g)
    a = 2 * math.pi * torch.rand(n, generator=g)
    return torch.stack([r * a.cos(), r * a.sin()], -1)


def ring_log_prob(z: torch.Tensor) -> torch.Tensor:
    r = z.norm(dim=-1)
    return Normal(RADIUS, WIDTH).log_prob(r) - torch.log(2 * math.pi * r)


def splits(kind: str):
    g = torch.Generator().manual_seed(1)
    if kind == "mixture":
        torch.manual_seed(1)
        draw, log_prob = lambda n: MIXTURE.sample((n,)), MIXTURE.log_prob
    else:
        draw, log_prob = lambda n: ring(n, g), ring_log_prob
    return draw(2000), draw(500), draw(1000), log_prob


SPLINE = {"kind": "spline", "layers": 2, "hidden": 32, "batch_size": 128, "lr": 3e-3}
SLOW = pytest.mark.slow
# (density, sampler, options, the held-out log-density's tolerance in nats per point)
CASES = [("mixture", "gmm", {"components": (1, 2, 4, 8)}, 0.1),
         ("ring", "gmm", {"components": (1, 2, 4, 8)}, 0.1),
         ("mixture", "flow", {**SPLINE, "epochs": 15}, 0.15),
         pytest.param("ring", "flow", {**SPLINE, "epochs": 30}, 0.15, marks=SLOW),
         pytest.param("mixture", "flow", {"kind": "maf", "layers": 4, "hidden": 32,
                                          "epochs": 30, "batch_size": 128, "lr": 3e-3}, 0.3,
                      marks=SLOW),
         # an importance-weighted bound of a small VAE: looser by construction
         ("mixture", "two-stage", {"hidden": 128, "epochs": 40, "lr": 3e-3, "batch_size": 128,
                                   "iw_samples": 200}, 0.4)]


@pytest.mark.parametrize("kind,name,options,tol", CASES)
def test_a_sampler_learns_a_known_density_and_its_moments(kind, name, options, tol):
    train, valid, test, log_prob = splits(kind)
    sampler = make_sampler(name, **options).fit(train, valid, seed=0)
    truth = log_prob(test).mean().item()
    held_out = sampler.log_prob(test)
    assert held_out.shape == (len(test),)
    assert held_out.mean().item() == pytest.approx(truth, abs=tol)
    z = sampler.sample(4000)
    assert z.shape == (4000, 2)
    spread = 0.2 if name == "two-stage" else 0.15  # decoder means shrink the spread
    assert torch.allclose(z.mean(0), train.mean(0), atol=0.15)
    assert torch.allclose(z.std(0), train.std(0), rtol=spread)


def test_the_normal_sampler_is_the_standard_normal():
    z = torch.randn(5, 3)
    sampler = make_sampler("normal").fit(z, z)
    ref = -0.5 * (z**2).sum(-1) - 1.5 * math.log(2 * math.pi)
    assert torch.allclose(sampler.log_prob(z), ref, atol=1e-5)
    draws = sampler.sample(20_000)
    assert draws.mean().abs() < 0.02 and (draws.std() - 1).abs() < 0.02


def test_the_diffusion_sampler_draws_a_ring():
    train, valid, _, _ = splits("ring")
    sampler = make_sampler("diffusion", hidden=128, steps=100, sample_steps=100, epochs=60,
                           lr=3e-3, batch_size=128).fit(train, valid, seed=0)
    assert sampler.log_prob(train) is None
    torch.manual_seed(0)
    z = sampler.sample(3000)
    r = z.norm(dim=-1)
    assert abs(r.mean().item() - RADIUS) < 0.1 and r.std().item() < 2 * WIDTH
    assert torch.allclose(z.mean(0), torch.zeros(2), atol=0.2)


def test_the_diffusion_loss_is_the_hand_written_noise_prediction_loss():
    """The observed site's log-density is −½‖ε − ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε, t)‖² for N = 5
    points, each at its own t and ε, on the same draws, by hand."""
    model = make_model("code_diffusion", x_dim=3, hidden=(16,), steps=50, embed=8)
    model.standardize(torch.randn(100, 3) * 2 + 1)
    x = torch.randn(5, 3)
    torch.manual_seed(7)
    tr = poutine.trace(model).get_trace(x)
    got = tr.nodes["x"]["fn"].log_prob(x)  # (5,)
    torch.manual_seed(7)
    t, eps = torch.randint(0, 50, (5,)), torch.randn(5, 3)
    assert len(t.unique()) >= 3
    a = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 50, dtype=torch.float64), 0)[t]
    a = a.float().unsqueeze(-1)
    x_std = (x - model.loc) / model.scale
    xt = a.sqrt() * x_std + (1 - a).sqrt() * eps
    half, steps = 4, 50
    freq = torch.exp(-math.log(10_000.0) * torch.arange(half) / half)
    angle = (t.float() / steps * 1000.0)[:, None] * freq
    emb = torch.cat([angle.sin(), angle.cos()], -1)
    eps_hat = model.net(torch.cat([xt, emb], -1))
    ref = -0.5 * ((eps - eps_hat) ** 2).sum(-1)
    assert got.shape == (5,)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(tr.log_prob_sum(), ref.sum())


def test_the_full_schedule_samples_with_the_original_betas():
    """Respaced to all T steps, β_i = 1 − ᾱ_i / ᾱ_{i−1} is the schedule's own β."""
    model = make_model("code_diffusion", x_dim=2, hidden=(8,), steps=30)
    betas = torch.linspace(1e-4, 0.02, 30, dtype=torch.float64)
    a = model.alpha_bar.double()
    respaced = 1 - a / torch.cat([a.new_ones(1), a[:-1]])
    torch.testing.assert_close(respaced, betas, rtol=1e-4, atol=1e-6)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(model.generate(4, 10, g1), model.generate(4, 10, g2))


def test_aggregate_kl_matches_the_closed_form_when_every_posterior_is_the_same():
    loc = torch.tensor([[0.5, -1.0, 0.0]]).expand(50, 3)
    scale = torch.tensor([[0.3, 2.0, 1.0]]).expand(50, 3)
    q = Normal(loc[0].double(), scale[0].double())
    closed = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).sum().item()
    assert aggregate_kl(loc, scale, draws=20_000) == pytest.approx(closed, abs=0.05)
    # a mixture of separated posteriors has less KL than its components' mean KL
    loc = torch.tensor([[-3.0], [0.0], [3.0]]).repeat(10, 1)
    scale = torch.full_like(loc, 0.5)
    mean_kl = torch.distributions.kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).mean()
    kl = aggregate_kl(loc, scale, draws=20_000)
    assert 0 < kl < mean_kl.item() - math.log(3) + 0.1


@pytest.mark.parametrize("name,options", [("gmm", {"components": (1, 2)}),
                                          ("flow", {"layers": 1, "hidden": 16, "epochs": 2}),
                                          ("two-stage", {"hidden": 16, "epochs": 2}),
                                          ("diffusion", {"hidden": 16, "epochs": 2,
                                                         "steps": 20, "sample_steps": 5})])
def test_save_load_and_resume(name, options, tmp_path):
    train, valid, test, _ = splits("mixture")
    first = fitted_sampler(tmp_path, name, options, train, valid, weights="w1", log=print)
    again = fitted_sampler(tmp_path, name, options, train, valid, weights="w1",
                           log=lambda s: pytest.fail(s))  # read back, not refitted
    loaded = load_sampler(tmp_path / "sampler.pt")  # weights_only
    for other in (again, loaded):
        if name != "two-stage":  # its log-density is a random importance estimate
            lp = first.log_prob(test[:5])
            assert lp is None or torch.equal(lp, other.log_prob(test[:5]))
        torch.manual_seed(0)
        z1 = first.sample(5)
        torch.manual_seed(0)
        assert torch.equal(z1, other.sample(5))
    if name in ("flow", "diffusion"):  # resume: two more epochs continue from the checkpoint
        longer = {**options, "epochs": 4}
        resumed = make_sampler(name, **longer).fit(train, valid, folder=tmp_path, seed=0)
        assert resumed.info["epochs_run"] == 4
        fresh = make_sampler(name, **longer).fit(train, valid, folder=tmp_path / "f", seed=0)
        torch.manual_seed(0)
        z1 = resumed.sample(5)
        torch.manual_seed(0)
        assert torch.equal(z1, fresh.sample(5))  # as if never interrupted
    refit = fitted_sampler(tmp_path, name, options, train, valid, weights="w2", log=print)
    assert refit.info["run_weights"] == "w2"


def test_the_vqvaes_code_grid_is_refused_in_one_line():
    from guides import make_guide
    from inference.data import TensorData
    from inference.samplers.codes import check_continuous
    from models import tie

    guide, model = make_guide("vqvae"), make_model("vqvae")
    tie(model, guide)
    with pytest.raises(ValueError, match="discrete.*code_prior"):
        check_continuous(guide, TensorData(torch.rand(4, 784)))


@pytest.mark.slow  # about 20 s: trains a pair, encodes its splits twice
def test_vae_sample_with_a_sampler_fits_it_once_and_refuses_what_it_does_not_use(
        tmp_path, capsys):
    from inference.cli import sample_main, train_main

    run = str(tmp_path / "run")
    assert train_main(["--epochs", "1", "--hidden", "32", "--z-dim", "4", "--quiet",
                       "--no-figures", "--no-tensorboard", "--out", run]) == 0
    argv = [run, "--sampler", "gmm", "--gmm-components", "1,2", "-n", "4"]
    assert sample_main(argv) == 0
    out = capsys.readouterr().out
    assert "gmm: fitted on 9000 codes" in out and out.strip().endswith("n4-gmm.png")
    assert sample_main(argv) == 0  # read back
    assert "fitted" not in capsys.readouterr().out
    assert (tmp_path / "run" / "samples" / "n4-gmm.png").stat().st_size > 500
    for bad, flag in ([[run, "--codes", "draw"], "--codes"],
                      [[*argv, "--temperature", "0.5"], "--temperature"]):
        with pytest.raises(SystemExit):
            sample_main(bad)
        assert f"{flag} does nothing" in capsys.readouterr().err


@pytest.mark.slow  # about 20 s: trains a conditional pair
def test_a_conditional_pair_gets_a_sampler_per_class(tmp_path, capsys):
    from inference.cli import sample_main, train_main
    from inference.samplers.run import RunSamplers

    run = str(tmp_path / "cvae")
    assert train_main(["--epochs", "1", "--hidden", "32", "--quiet", "--no-figures",
                       "--no-tensorboard", "--model", "conditional_mlp", "--guide",
                       "conditional_mlp", "--out", run]) == 0
    assert sample_main([run, "--sampler", "gmm", "--gmm-components", "1", "--label", "3",
                        "-n", "4"]) == 0
    assert (tmp_path / "cvae" / "samples" / "n4-gmm-label3.png").exists()
    rs = RunSamplers(run, log=lambda _: None)
    samplers = rs.sampler("gmm", {"components": (1,)})  # read back: ten, one per class
    assert sorted(samplers) == list(range(10))
    z3 = rs._split("train", 3)
    torch.testing.assert_close(samplers[3].means[0].float(), z3.mean(0), atol=1e-4, rtol=0)
    images, y = rs.draw(samplers, 30)
    assert images.shape == (30, 784) and y.shape == (30,) and len(y.unique()) > 3
