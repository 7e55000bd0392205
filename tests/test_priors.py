"""Mixture priors (vamp, mixture): log p(z) against logsumexps written by hand, the mixture
density's precision, and the VampPrior's encoder shared with its guide through training,
the fast path, checkpoints, resume, load_run and the CLI.

N = 5 distinct points, K = 3 particles, z of 4 dimensions.
"""

import inspect
import json
import math

import pyro
import pyro.poutine as poutine
import pytest
import torch
from torch.nn import functional as F

from guides import GUIDES, make_guide
from inference import PairError, capture, check_pair, fit, load_run, sample
from inference.cli import eval_main, train_main
from inference.objectives import MeanFieldELBO, ParticleELBO
from inference.traces import kl_forms
from inference.train import Trainer, parameters
from models import TieError, make_model, tie
from models.distributions import DiagNormalMixture

K, N, D = 3, 5, 4
SMALL = {"z_dim": D, "hidden": (16,)}
F64 = torch.float64


def normal_lp(z, loc, scale):
    """Σ_j log N(z_j; loc_j, scale_j²), broadcasting."""
    return (-0.5 * ((z - loc) / scale).pow(2) - scale.log() - 0.5 * math.log(2 * math.pi)).sum(-1)


def model_trace(model, guide, x, seed=7):
    pyro.set_rng_seed(seed)
    with pyro.plate("particles", K, dim=-2):
        g = poutine.trace(guide).get_trace(x)
        return poutine.trace(poutine.replay(model, trace=g)).get_trace(x)


def test_mixture_density_is_exact_where_the_direct_form_is_large():
    """Scales of 1e-3 make the quadratic terms ~1e7: the float64 products keep log p within
    1e-6 nats of the direct float64 form, for float32 draws too."""
    g = torch.Generator().manual_seed(0)
    logits, loc = torch.randn(7, generator=g, dtype=F64), 3 * torch.randn(7, D, generator=g,
                                                                          dtype=F64)
    scale = torch.rand(7, D, generator=g, dtype=F64) * 0.01 + 1e-3
    z = loc[torch.arange(K * N) % 7].reshape(K, N, D) + 2e-3 * torch.randn(K, N, D, generator=g,
                                                                            dtype=F64)
    direct = torch.logsumexp(torch.log_softmax(logits, -1)
                             + normal_lp(z.unsqueeze(-2), loc, scale), -1)  # (K, N)
    mine = DiagNormalMixture(logits.float(), loc.float(), scale.float())
    z32 = z.float()
    want = torch.logsumexp(torch.log_softmax(logits.float().double(), -1) + normal_lp(
        z32.double().unsqueeze(-2), loc.float().double(), scale.float().double()), -1)
    assert direct.abs().max() > 10  # sharp components: large log-densities
    torch.testing.assert_close(mine.log_prob(z32).double(), want, rtol=0, atol=1e-4)
    torch.testing.assert_close(DiagNormalMixture(logits, loc, scale).log_prob(z), direct,
                               rtol=0, atol=1e-6)


def test_mixture_expands_and_samples_under_plates():
    prior = DiagNormalMixture(torch.tensor([0.0, 2.0]), torch.tensor([[-5.0] * D, [5.0] * D]),
                              torch.full((2, D), 0.1))
    wide = prior.expand((K, N))
    assert wide.batch_shape == (K, N) and wide.log_prob(torch.zeros(K, N, D)).shape == (K, N)
    draws = wide.sample((2000,))  # (2000, K, N, D)
    share = (draws[..., 0] > 0).double().mean().item()  # π_2 = e² / (1 + e²) = 0.881
    assert share == pytest.approx(math.exp(2) / (1 + math.exp(2)), abs=0.01)


def shared_vamp(guide_name="gaussian_mlp", **config):
    model = make_model("vamp", **SMALL, pseudo_inputs=6, **config).double()
    guide = make_guide(guide_name, **SMALL).double()
    tie(model, guide)
    return model, guide


@pytest.mark.parametrize("encoder", ["guide", "own"])
def test_vamp_log_prior_is_the_mean_of_the_pseudo_input_posteriors(encoder, binary_x):
    model, guide = shared_vamp(encoder=encoder)
    x = binary_x[:N].double()
    tr = model_trace(model, guide, x)
    z = tr.nodes["z"]["value"]  # (K, N, D)
    u = model.pseudo.clamp(0, 1)  # hardtanh(w)
    net = guide if encoder == "guide" else None
    if net is not None:
        loc, raw = guide.head(F.softplus(guide.trunk[0](u))).chunk(2, -1)
    else:
        enc = model.prior_encoder
        loc, raw = enc.head(F.softplus(enc.trunk[0](u))).chunk(2, -1)
    scale = F.softplus(raw) + 1e-5  # (6, D) each
    want = torch.logsumexp(normal_lp(z.unsqueeze(-2), loc, scale), -1) - math.log(6)  # (K, N)
    got = tr.nodes["z"]["fn"].log_prob(z)
    assert got.shape == (K, N) and want.std() > 0.1
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_mixture_log_prior_is_the_weighted_logsumexp(binary_x):
    model = make_model("mixture", **SMALL, components=3).double()
    guide = make_guide("iaf", **SMALL, flow_hidden=(8,)).double()
    with torch.no_grad():
        model.logits.copy_(torch.tensor([0.5, -1.0, 0.2], dtype=F64))
        model.scale = torch.rand(3, D, dtype=F64) + 0.3
    tr = model_trace(model, guide, binary_x[:N].double())
    z = tr.nodes["z"]["value"]
    want = torch.logsumexp(torch.log_softmax(model.logits, 0)
                           + normal_lp(z.unsqueeze(-2), model.loc, model.scale), -1)
    torch.testing.assert_close(tr.nodes["z"]["fn"].log_prob(z), want, rtol=1e-10, atol=1e-10)


def test_the_guide_owns_the_shared_encoder(binary_x):
    """The model holds a reference: its parameters and state are its own (pseudo-inputs,
    decoder), the prior follows the guide's weights, and the encoder's gradient gets the
    prior's share as well as the posterior's."""
    model, guide = shared_vamp()
    assert {n.split(".")[0] for n, _ in model.named_parameters()} == {"pseudo", "decoder"}
    assert not set(model.state_dict()) & set(guide.state_dict())
    before = model.prior().log_prob(torch.zeros(D, dtype=F64))
    with torch.no_grad():
        guide.head.bias.add_(0.5)
    assert model.prior().log_prob(torch.zeros(D, dtype=F64)) != before
    x = binary_x[:N].double()
    pyro.set_rng_seed(0)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x)
    prior_only = model.prior().log_prob(torch.zeros(D, dtype=F64))
    (g_prior,) = torch.autograd.grad(prior_only, [guide.head.weight])
    (g_loss,) = torch.autograd.grad(loss, [guide.head.weight])
    assert g_prior.abs().sum() > 0 and torch.isfinite(g_loss).all()


def test_an_untied_or_unshareable_pair_is_refused_in_one_line(tmp_path, capsys):
    model = make_model("vamp", **SMALL)
    with pytest.raises(TieError, match="not tied to a guide: call models.tie"):
        model.prior()
    with pytest.raises(TieError, match="guide 'linear_gaussian' has none to share"):
        tie(model, make_guide("linear_gaussian", z_dim=D))
    tie(make_model("vamp", **SMALL, encoder="own"), make_guide("linear_gaussian", z_dim=D))
    with pytest.raises(ValueError, match="encoder must be 'guide'"):
        make_model("vamp", encoder="shared")
    with pytest.raises(SystemExit):
        train_main(["--model", "vamp", "--guide", "linear_gaussian", "--quiet", "--out",
                    str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--model-config" in err and "'linear_gaussian'" in err


@pytest.mark.parametrize("guide_name", sorted(GUIDES))
def test_vamp_with_its_own_encoder_takes_a_step_with_every_guide_of_z(guide_name, binary_x):
    """The contract test's check for the model in its other configuration: with its own
    encoder it needs nothing of the guide, so every guide of z pairs with it."""
    model = make_model("vamp", **SMALL, pseudo_inputs=6, encoder="own")
    small = {"z_dim": D, "hidden": (16,), "z1_dim": 6, "z2_dim": 3, "hidden1": (8,),
             "hidden2": (8,), "x_dim": binary_x.shape[-1]}
    accepts = inspect.signature(GUIDES[guide_name]).parameters
    guide = make_guide(guide_name, **{k: v for k, v in small.items() if k in accepts})
    tie(model, guide)
    x, y = binary_x[:16], torch.arange(16) % 10
    # two_layer samples z1 and z2, empty no z, vqvae codebook vectors of another shape
    if guide_name in ("two_layer", "empty") or getattr(GUIDES[guide_name], "latent", None):
        with pytest.raises(PairError, match="site 'z"):
            check_pair(model, guide, x, y)
        return
    check_pair(model, guide, x, y)
    opt = torch.optim.Adam(parameters(model, guide), lr=1e-2)
    before = model.pseudo.detach().clone()
    loss = Trainer(model, guide, pyro.infer.Trace_ELBO(), opt, seed=0, clip_norm=None,
                   progress=False).step(x, y)
    assert torch.isfinite(loss) and not torch.equal(before, model.pseudo)


@pytest.mark.parametrize("pair", [("vamp", "iaf"), ("mixture", "gaussian_mlp")])
def test_the_fast_path_captures_mixture_priors_and_changes_no_number(pair, binary_x,
                                                                     monkeypatch):
    monkeypatch.setattr(capture, "CAPTURE_AFTER", 2)
    results = {}
    for fast in (False, "auto"):
        pyro.set_rng_seed(0)
        model = make_model(pair[0], **SMALL)
        guide = make_guide(pair[1], **SMALL)
        tie(model, guide)
        history = fit(model, guide, binary_x, valid=binary_x[:16], epochs=2, batch_size=16,
                      fast=fast, progress=False)
        results[fast] = history, torch.cat([p.detach().flatten() for p in
                                            parameters(model, guide)])
    (plain, p_params), (quick, q_params) = results[False], results["auto"]
    assert "graph captured for batch shape (16, 784)" in quick.fast_path
    assert quick.objective == pytest.approx(plain.objective, rel=1e-5)
    torch.testing.assert_close(q_params, p_params, rtol=1e-4, atol=1e-5)


def test_a_shared_vamp_run_trains_resumes_loads_and_scores_from_the_cli(tmp_path, capsys):
    """vae-train and vae-eval on the shared pair: a run resumed after epoch 1 ends where an
    uninterrupted one does, load_run ties the rebuilt pair, vae-eval scores it."""
    common = ["--model", "vamp", "--guide", "iaf", "--z-dim", "4", "--hidden", "32",
              "--model-config", '{"pseudo_inputs": 20}', "--guide-config",
              '{"flow_hidden": [16]}', "--train-limit", "600", "--valid", "200", "--quiet",
              "--no-tensorboard", "--no-figures", "--threads", "1"]
    whole, split = str(tmp_path / "whole"), str(tmp_path / "split")
    assert train_main([*common, "--epochs", "2", "--out", whole]) == 0
    assert train_main([*common, "--epochs", "1", "--out", split]) == 0
    assert train_main([*common, "--epochs", "2", "--out", split, "--resume"]) == 0
    metrics = [json.loads((tmp_path / f / "metrics.json").read_text()) for f in ("whole",
                                                                                   "split")]
    assert metrics[0]["test_elbo"] == pytest.approx(metrics[1]["test_elbo"], rel=1e-6)
    model, guide, saved = load_run(whole)
    assert model._tied == (guide,) and saved["model"]["encoder"] == "guide"
    assert sample(model, 3)["x"].shape == (3, 784)
    capsys.readouterr()
    assert eval_main([whole, "--num-samples", "32", "--limit", "50", "--quiet"]) == 0
    out = capsys.readouterr().out
    scores = json.loads((tmp_path / "whole" / "eval-test-K32-random50.json").read_text())
    assert "NLL" in out and scores["n"] == 50
    assert -scores["nll"] >= metrics[0]["test_elbo"] - 15  # IW bound vs one-draw ELBO


def test_meanfield_says_where_its_kl_is_closed_and_is_the_monte_carlo_elbo_elsewhere(binary_x):
    x = binary_x[:N]
    pairs = {("bernoulli_mlp", "gaussian_mlp"): "closed form",
             ("bernoulli_mlp", "iaf"): "Monte Carlo (no KL(FlowPosterior || DiagNormal))",
             ("mixture", "gaussian_mlp"): "Monte Carlo (no KL(DiagNormal || DiagNormalMixture))"}
    for (m, g), want in pairs.items():
        assert kl_forms(make_model(m, **SMALL), make_guide(g, **SMALL), x) == {"z": want}
    model, guide = make_model("mixture", **SMALL), make_guide("gaussian_mlp", **SMALL)
    values = []
    for loss in (MeanFieldELBO(num_particles=K), ParticleELBO(num_particles=K)):
        pyro.set_rng_seed(1)
        values.append(loss.differentiable_loss(model, guide, x))
    assert values[0].item() == values[1].item()
