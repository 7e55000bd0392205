"""Every registered guide trains with every registered model of the same data shape."""

import inspect
import itertools

import pytest
import torch
from pyro.infer import Trace_ELBO

from guides import GUIDES, make_guide
from inference import PairError, check_pair, fit
from inference.train import Trainer, parameters
from inference.vq import VQELBO
from models import MODELS, TieError, make_model, tie


def _small(registry, name):
    accepts = inspect.signature(registry[name]).parameters
    small = {"z_dim": 4, "hidden": (32,), "z1_dim": 6, "z2_dim": 3, "hidden1": (16,),
             "hidden2": (8,), "num_codes": 8, "code_dim": 2, "channels": (8, 16),
             "x_dim": 784, "d_model": 8, "heads": 2, "layers": 1}
    return {k: v for k, v in small.items() if k in accepts}


def _family(cls) -> str:
    """What a model's or guide's latent sites are: Gaussian vectors unless it says (the
    VQ-VAE's are codebook vectors, which only its own guide gives)."""
    return getattr(cls, "latent", "gaussian")


def _latent_sites(fn, x, y):
    import pyro.poutine as poutine

    tr = poutine.trace(fn).get_trace(x, y)
    return {n for n, s in tr.nodes.items() if s["type"] == "sample" and not s["is_observed"]
            and n != "data"}


IMAGE_MODELS = [n for n, cls in MODELS.items() if getattr(cls, "observes", "x") != "codes"]


@pytest.mark.parametrize("model_name,guide_name", list(itertools.product(IMAGE_MODELS, GUIDES)))
def test_every_pair_takes_a_finite_step(model_name, guide_name, binary_x):
    """Pairs with the same latent sites train; the others are refused, naming a site (or,
    for a model that shares a network with its guide, naming the guide that lacks it).
    Every batch carries labels y, which label-conditional pairs use and the others ignore."""
    model = make_model(model_name, **_small(MODELS, model_name))
    guide = make_guide(guide_name, **_small(GUIDES, guide_name))
    try:
        tie(model, guide)  # as vae-train and load_run build a pair
    except TieError as e:
        assert repr(guide_name) in str(e)
        return
    x, y = binary_x[:16], torch.arange(16) % 10
    families = _family(MODELS[model_name]), _family(GUIDES[guide_name])
    if _latent_sites(model, x, y) != _latent_sites(guide, x, y) or len(set(families)) > 1:
        with pytest.raises(PairError, match="site 'z"):
            check_pair(model, guide, x, y)
        return
    check_pair(model, guide, x, y)
    params = parameters(model, guide)
    before = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=1e-2)
    loss = VQELBO() if "codebook" in families else Trace_ELBO()
    trainer = Trainer(model, guide, loss, opt, seed=0, clip_norm=None, progress=False)
    loss = trainer.step(x, y)
    assert torch.isfinite(loss)
    name_of = {id(p): n for m in (model, guide) for n, p in m.named_parameters()}
    names = [name_of[id(p)] for p in params]  # a shared network's parameters appear once
    unchanged = [n for n, b, p in zip(names, before, params, strict=True) if torch.equal(b, p)
                 and not n.startswith("classifier.")]  # q(y | x) is unused when y is given
    assert not unchanged


def test_registry_lists_the_issue_names():
    assert {"bernoulli_mlp", "gaussian_mlp", "conv"} <= set(MODELS)
    assert {"gaussian_mlp", "conv"} <= set(GUIDES)


def test_make_records_resolved_config():
    model = make_model("bernoulli_mlp", z_dim=3)
    assert model.config == {"name": "bernoulli_mlp", "x_dim": 784, "z_dim": 3,
                            "hidden": [400], "activation": "softplus"}


def test_unknown_names_and_arguments_are_named():
    with pytest.raises(KeyError, match="unknown model 'vae'.*bernoulli_mlp"):
        make_model("vae")
    with pytest.raises(TypeError, match="guide 'gaussian_mlp'.*depth"):
        make_guide("gaussian_mlp", depth=3)
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_model("bernoulli_mlp", activation="gelu")
    with pytest.raises(ValueError, match="unknown scale transform 'abs'"):
        make_guide("gaussian_mlp", scale="abs")


def test_a_model_registered_elsewhere_trains_with_fit(binary_x):
    """Adding a model is one decorator in one file (here: in the test)."""
    import pyro
    import pyro.distributions as dist
    from pyro.nn import PyroModule

    from models import data_plate, register_model
    from models.nets import StandardNormal

    @register_model("test_logistic_pca")
    class LogisticPCA(PyroModule):
        def __init__(self, x_dim=784, z_dim=4):
            super().__init__()
            self.prior = StandardNormal(z_dim)
            self.linear = torch.nn.Linear(z_dim, x_dim)

        def forward(self, x=None, y=None):
            with data_plate(x, y):
                z = pyro.sample("z", self.prior())
                return pyro.sample("x", dist.Bernoulli(logits=self.linear(z)).to_event(1), obs=x)

    try:
        assert "test_logistic_pca" in MODELS
        model = make_model("test_logistic_pca")
        history = fit(model, make_guide("gaussian_mlp", z_dim=4, hidden=(16,)), binary_x,
                      epochs=2, batch_size=32, progress=False)
        assert len(history) == 2 and all(torch.isfinite(torch.tensor(history.objective)))
    finally:
        MODELS._classes.pop("test_logistic_pca")


def test_duplicate_registration_is_refused():
    from models import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model("bernoulli_mlp")(type("Other", (), {}))
