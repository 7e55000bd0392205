import os
from pathlib import Path

import pyro
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def pytest_configure(config):
    # Tests read data through the project's own setting and never download. CI sets
    # VAE_LAB_DATA; a checkout with ../shared beside it gets the same folder by default.
    if not os.environ.get("VAE_LAB_DATA") and SHARED_DATA.is_dir():
        os.environ["VAE_LAB_DATA"] = str(SHARED_DATA)


@pytest.fixture(autouse=True)
def _seed_and_validate():
    pyro.clear_param_store()  # as in Pyro's own tests: no parameter outlives its test
    pyro.set_rng_seed(0)
    with pyro.validation_enabled(True):
        yield


@pytest.fixture
def data_dir() -> Path:
    from inference import resolve_data_dir

    path = resolve_data_dir()
    if not (path / "MNIST" / "raw").is_dir():
        pytest.skip(f"MNIST is not in {path}; set VAE_LAB_DATA to the shared data folder")
    return path


@pytest.fixture
def linear_model():
    """A float64 linear-Gaussian model, x_dim 6, z_dim 2, with a random bias: the oracle."""
    from models import make_model

    torch.manual_seed(3)
    model = make_model("linear_gaussian", x_dim=6, z_dim=2, init_noise=0.7,
                       init_weight_scale=1.0).double()
    with torch.no_grad():
        model.bias.copy_(torch.randn(6, dtype=torch.float64))
    return model


@pytest.fixture
def binary_x() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.bernoulli(torch.full((64, 784), 0.3), generator=g)
