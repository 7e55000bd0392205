"""Any pair Pyro's SVI takes works with the lab: methods of a plain nn.Module registered with
pyro.module, one-argument signatures, sites named 'latent' and 'obs', functions with
pyro.param; and importing the lab changes none of Pyro's settings."""

import json
import subprocess
import sys
import textwrap

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions import constraints
from pyro.nn import PyroModule
from torch import nn

from inference import (
    check_pair,
    fit,
    importance_sample,
    iw_log_likelihood,
    load_checkpoint,
    reconstruct,
    sample,
)
from inference.programs import Sites
from inference.visualize import FIGURES, save_figures
from models import data_plate

Z, H = 4, 32


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21, self.fc22 = nn.Linear(784, H), nn.Linear(H, Z), nn.Linear(H, Z)

    def forward(self, x):
        hidden = nn.functional.softplus(self.fc1(x.reshape(-1, 784)))
        return self.fc21(hidden), torch.exp(self.fc22(hidden))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc21 = nn.Linear(Z, H), nn.Linear(H, 784)

    def forward(self, z):
        return torch.sigmoid(self.fc21(nn.functional.softplus(self.fc1(z))))


class ExampleVAE(nn.Module):
    """Pyro's examples/vae/vae.py, abridged: a plain nn.Module whose model and guide are
    methods taking one argument, networks registered with pyro.module."""

    def __init__(self):
        super().__init__()
        self.encoder, self.decoder = Encoder(), Decoder()

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = x.new_zeros((x.shape[0], Z)), x.new_ones((x.shape[0], Z))
            z = pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))
            loc_img = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(loc_img, validate_args=False).to_event(1),
                        obs=x.reshape(-1, 784))

    def guide(self, x):
        pyro.module("encoder", self.encoder)
        with pyro.plate("data", x.shape[0]):
            z_loc, z_scale = self.encoder(x)
            pyro.sample("latent", dist.Normal(z_loc, z_scale).to_event(1))


class ContractModel(PyroModule):
    """The same network written the lab's way."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, x=None, y=None):
        with data_plate(x, y):
            z = pyro.sample("z", dist.Normal(torch.zeros(Z), torch.ones(Z)).to_event(1))
            pyro.sample("x", dist.Bernoulli(self.decoder(z), validate_args=False).to_event(1),
                        obs=x)


class ContractGuide(PyroModule):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x, y=None):
        with data_plate(x, y):
            pyro.sample("z", dist.Normal(*self.encoder(x)).to_event(1))


def example_vae(seed=0):
    torch.manual_seed(seed)
    return ExampleVAE()


def flat(vae):
    return torch.cat([p.detach().flatten() for p in vae.parameters()])


def test_check_pair_discovers_the_sites(binary_x):
    vae = example_vae()
    assert check_pair(vae.model, vae.guide, binary_x[:8]) == Sites(
        x="obs", latent=("latent",), y=None, plate="data")


def test_example_style_pair_trains_checkpoints_and_resumes(binary_x, tmp_path):
    straight = example_vae()
    history = fit(straight.model, straight.guide, binary_x, valid=binary_x[:16], epochs=4,
                  batch_size=16, lr=1e-2, progress=False, fast=False)
    assert history.valid_elbo[-1] > history.valid_elbo[0] + 5  # it learns
    ckpt = tmp_path / "checkpoint.pt"
    first = example_vae()
    fit(first.model, first.guide, binary_x, valid=binary_x[:16], epochs=2, batch_size=16,
        lr=1e-2, progress=False, fast=False, checkpoint=ckpt)
    state = load_checkpoint(ckpt)
    assert set(state["model"]) == set(first.state_dict()) and state["guide"] == {}
    resumed = example_vae(seed=5)  # a fresh process: other initial weights, then the file
    again = fit(resumed.model, resumed.guide, binary_x, valid=binary_x[:16], epochs=4,
                batch_size=16, lr=1e-2, progress=False, fast=False, checkpoint=ckpt,
                resume=True)
    assert torch.equal(flat(resumed), flat(straight))
    assert again.valid_elbo == history.valid_elbo


def test_example_style_pair_takes_the_fast_path(binary_x, monkeypatch):
    from inference import capture

    monkeypatch.setattr(capture, "CAPTURE_AFTER", 1)
    runs = {}
    for fast in (False, "auto"):
        vae = example_vae()
        runs[fast] = fit(vae.model, vae.guide, binary_x, epochs=2, batch_size=16, fast=fast,
                         progress=False), flat(vae)
    assert "graph captured for batch shape (16, 784)" in runs["auto"][0].fast_path
    assert runs["auto"][0].objective == pytest.approx(runs[False][0].objective, rel=1e-5)
    torch.testing.assert_close(runs["auto"][1], runs[False][1], rtol=1e-4, atol=1e-5)
    for name, t in pyro.get_param_store()._params.items():  # pyro.module's entries are
        assert type(t) is nn.Parameter and t.is_leaf, name  # real weights, no stand-ins


def test_evaluation_equals_the_same_network_in_the_lab_contract(binary_x):
    vae = example_vae()
    x = binary_x[:6]
    pyro.set_rng_seed(3)
    theirs = importance_sample(vae.model, vae.guide, x, num_samples=50)
    pyro.set_rng_seed(3)
    ours = iw_log_likelihood(ContractModel(vae.decoder), ContractGuide(vae.encoder), x,
                             num_samples=50)
    torch.testing.assert_close(theirs.log_likelihood, ours)
    assert set(theirs.latent_means) == {"latent"}


def test_sampling_reconstruction_and_figures_use_the_discovered_names(binary_x, tmp_path):
    from inference import TensorData

    vae = example_vae()
    with pytest.raises(ValueError, match="cannot run without data.*like=x"):
        sample(vae.model, 8)
    drawn = sample(vae.model, 8, like=binary_x, mean=True)
    assert set(drawn) == {"latent", "obs"} and drawn["obs"].shape == (8, 784)
    assert 0 < drawn["obs"].min() and drawn["obs"].max() < 1  # pixel means, not draws
    pyro.set_rng_seed(1)
    means = reconstruct(vae.model, vae.guide, binary_x[:5])
    torch.manual_seed(1)
    loc, scale = vae.encoder(binary_x[:5])
    torch.testing.assert_close(means, vae.decoder(loc + scale * torch.randn(5, Z)))
    data = TensorData(binary_x, torch.arange(64) % 10)
    done = save_figures(vae.model, vae.guide, data, tmp_path, list(FIGURES), records=[
        {"epoch": 1, "objective": -1.0, "train_elbo": -1.0, "valid_elbo": -1.0}])
    assert (tmp_path / "samples.png").is_file() and (tmp_path / "interpolation.png").is_file()
    assert str(done["manifold"]).startswith("skipped: the manifold figure needs")


def functional_guide(x):
    """q(z | x) = N(x W + b, diag s²), its weights free parameters of Pyro's store."""
    w = pyro.param("enc_w", lambda: 0.01 * torch.randn(784, Z))
    b = pyro.param("enc_b", lambda: torch.zeros(Z))
    s = pyro.param("enc_s", lambda: torch.ones(Z), constraint=constraints.positive)
    with pyro.plate("data", len(x)):
        pyro.sample("latent", dist.Normal(x @ w + b, s).to_event(1))


def test_functional_guide_with_pyro_param_trains_and_is_checkpointed(binary_x, tmp_path):
    vae = example_vae()
    ckpt = tmp_path / "checkpoint.pt"
    history = fit(vae.model, functional_guide, binary_x, valid=binary_x[:16], epochs=3,
                  batch_size=16, lr=1e-2, progress=False, checkpoint=ckpt)
    assert "off (the guide is a function" in history.fast_path
    assert history.valid_elbo[-1] > history.valid_elbo[0]
    assert set(load_checkpoint(ckpt)["params"]) == {"enc_w", "enc_b", "enc_s"}
    state = load_checkpoint(ckpt.with_name("best.pt"))  # the weights fit returned with
    store = pyro.get_param_store()
    assert set(state["params"]) == {"enc_w", "enc_b", "enc_s"}
    for name in ("enc_w", "enc_b"):
        torch.testing.assert_close(state["params"][name], store[name].detach())
    torch.testing.assert_close(state["params"]["enc_s"].exp(), store["enc_s"].detach())
    trained_w = store["enc_w"].detach().clone()
    pyro.clear_param_store()  # a fresh process: the function recreates its parameters
    vae = example_vae()
    fit(vae.model, functional_guide, binary_x, valid=binary_x[:16], epochs=3, batch_size=16,
        lr=1e-2, progress=False, checkpoint=ckpt, resume=True)
    torch.testing.assert_close(pyro.param("enc_w").detach(), trained_w)


SVI_SCRIPT = textwrap.dedent("""
    import json, sys
    if sys.argv[1] == "with-lab":
        import models, guides, inference  # noqa: F401
    import pyro, pyro.distributions as dist, torch
    from pyro.nn import PyroModule, PyroParam
    from pyro.distributions import constraints

    class Model(PyroModule):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.randn(3, 5) * 0.3)
            self.noise = PyroParam(torch.tensor(0.5), constraint=constraints.positive)
        def forward(self, x):
            with pyro.plate("data", len(x)):
                z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.).to_event(1))
                pyro.sample("x", dist.Normal(z @ self.w, self.noise).to_event(1), obs=x)

    class Guide(PyroModule):
        def __init__(self):
            super().__init__()
            self.a = torch.nn.Linear(5, 3)
            self.s = PyroParam(torch.ones(3), constraint=constraints.positive)
        def forward(self, x):
            with pyro.plate("data", len(x)):
                pyro.sample("z", dist.Normal(self.a(x), self.s).to_event(1))

    pyro.set_rng_seed(0)
    model, guide, x = Model(), Guide(), torch.randn(20, 5)
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 0.05}), pyro.infer.Trace_ELBO())
    losses = [svi.step(x) for _ in range(30)]
    print(json.dumps({"settings": pyro.settings.get(), "losses": losses,
                      "params": sorted(pyro.get_param_store().keys())}))
""")


def test_importing_the_lab_changes_no_pyro_setting_and_no_svi_loss(tmp_path):
    script = tmp_path / "svi.py"
    script.write_text(SVI_SCRIPT)
    runs = {}
    for mode in ("plain", "with-lab"):
        out = subprocess.run([sys.executable, str(script), mode], capture_output=True,
                             text=True, check=True).stdout
        runs[mode] = json.loads(out)
    assert runs["with-lab"]["settings"] == runs["plain"]["settings"]
    assert runs["plain"]["settings"]["module_local_params"] is False  # Pyro's default
    assert runs["with-lab"]["losses"] == runs["plain"]["losses"]  # bit for bit
    assert runs["plain"]["params"] == ["a$$$bias", "a$$$weight", "noise", "s", "w"]


def test_example_style_pair_trains_under_ddp_and_free_parameters_are_refused(binary_x,
                                                                             tmp_path):
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous",
                                         rank=0, world_size=1)
    try:
        vae = example_vae()
        history = fit(vae.model, vae.guide, binary_x, epochs=2, batch_size=16, lr=1e-2,
                      progress=False)
        with pytest.raises(ValueError, match="parameters in modules.*enc_w"):
            fit(vae.model, functional_guide, binary_x, epochs=1, batch_size=16, progress=False)
    finally:
        torch.distributed.destroy_process_group()
    assert "DistributedDataParallel" in history.fast_path
    assert history.objective[1] > history.objective[0]


def twice_observed(x):
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(torch.zeros(784), 1.0).to_event(1))
        pyro.sample("obs1", dist.Normal(z, 1.0).to_event(1), obs=x)
        pyro.sample("obs2", dist.Normal(2 * z, 1.0).to_event(1), obs=x)


def prior_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(torch.zeros(784), 1.0).to_event(1))


def test_ambiguous_data_site_is_named_by_the_user(binary_x):
    with pytest.raises(ValueError, match=r"obs1, obs2 all fit; name it: sites=\{'x': name\}"):
        check_pair(twice_observed, prior_guide, binary_x[:4])
    sites = check_pair(twice_observed, prior_guide, binary_x[:4], sites={"x": "obs2"})
    assert sites.x == "obs2" and sites.latent == ("z",)
    with pytest.raises(ValueError, match=r"sites=\{'x': 'obs'\}: the model has no site 'obs'"):
        check_pair(twice_observed, prior_guide, binary_x[:4], sites={"x": "obs"})
