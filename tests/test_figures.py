"""Figures render from a briefly trained run, and show what they claim to show."""

import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch

from guides import make_guide
from inference import figures, latent, load_dataset, load_run
from inference.cli import plot_main, train_main
from inference.visualize import FIGURES, arithmetic, interpolation, save_figures
from models import make_model

STEP = 29  # a 28-pixel tile and its 1-pixel gap


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 2-latent pair trained for one epoch on the embedded MNIST subset."""
    out = tmp_path_factory.mktemp("runs") / "z2"
    assert train_main(["--epochs", "2", "--z-dim", "2", "--hidden", "64", "--quiet",
                       "--out", str(out)]) == 0
    model, guide, saved = load_run(out)
    return out, model, guide, saved, load_dataset("embedded", "test").take(500)


def grid_of(fig, axis=0):
    return torch.as_tensor(fig.axes[axis].images[0].get_array().data)


def test_vae_train_wrote_its_figures_and_vae_plot_writes_all(run, tmp_path, capsys):
    out = run[0]
    assert sorted(p.name for p in (out / "figures").iterdir()) == [
        "curves.png", "reconstructions.png", "samples.png"]
    assert plot_main([str(out), "--out", str(tmp_path)]) == 0
    assert sorted(p.stem for p in tmp_path.iterdir()) == sorted(set(FIGURES) - {"codebook"})
    for png in tmp_path.iterdir():
        pixels = matplotlib.image.imread(png)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 0.01
    printed = capsys.readouterr().out
    assert "figure manifold: " in printed
    assert "figure codebook: skipped: the codebook figure needs a guide with a codebook" in printed


def test_image_grid_layout():
    images = torch.arange(5 * 784, dtype=torch.float32).reshape(5, 784) / (5 * 784)
    grid = figures.image_grid(images, 2)
    assert grid.shape == (2 * STEP - 1, 3 * STEP - 1)
    torch.testing.assert_close(grid[:28, STEP: STEP + 28], images[1].reshape(28, 28))
    torch.testing.assert_close(grid[STEP:, STEP: STEP + 28], images[4].reshape(28, 28))
    assert (grid[STEP:, 2 * STEP:] == 1).all()  # the missing sixth tile is blank


def test_reconstruction_grid_holds_data_above_its_reconstructions(run):
    _, model, guide, _, data = run
    fig = FIGURES["reconstructions"](model, guide, data)
    grid = grid_of(fig)
    assert grid.shape == (2 * STEP - 1, 10 * STEP - 1) and grid.std() > 0.05
    torch.testing.assert_close(grid[:28, :28], data.x[0].reshape(28, 28))
    bottom = grid[STEP:, :28]
    assert not torch.equal(bottom, grid[:28, :28]) and 0 <= bottom.min() and bottom.max() <= 1


def test_interpolation_ends_are_the_decoded_encodings(run):
    _, model, guide, _, data = run
    z = latent.encode(guide, data.x[:2])
    ends = latent.decode(model, z)  # (2, 784)
    fig = interpolation(model, guide, data, steps=7)
    for axis in (0, 1):  # linear, then slerp
        grid = grid_of(fig, axis)
        assert grid.shape == (28, 7 * STEP - 1)
        torch.testing.assert_close(grid[:, :28], ends[0].reshape(28, 28))
        torch.testing.assert_close(grid[:, 6 * STEP:], ends[1].reshape(28, 28))
    assert not torch.equal(grid_of(fig, 0)[:, 3 * STEP: 3 * STEP + 28],
                           grid_of(fig, 1)[:, 3 * STEP: 3 * STEP + 28])


def test_interpolation_paths():
    z0, z1 = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    linear = latent.interpolate(z0, z1, 5)
    torch.testing.assert_close(linear[2], (z0 + z1) / 2)
    slerp = latent.interpolate(z0, z1, 5, "slerp")
    torch.testing.assert_close(slerp.norm(dim=-1), torch.full((5,), 3.0))  # on the circle
    torch.testing.assert_close(slerp[[0, -1]], torch.stack([z0, z1]))


def test_arithmetic_decodes_the_latent_equation(run):
    _, model, guide, _, data = run
    fig = arithmetic(model, guide, data)
    z = latent.encode(guide, data.x)
    c = int((data.y == 1).nonzero()[0])
    code = z[data.y == 7].mean(0) - z[data.y == 1].mean(0) + z[c]
    torch.testing.assert_close(grid_of(fig, 3), latent.decode(model, code[None]).reshape(28, 28))
    torch.testing.assert_close(grid_of(fig, 2), data.x[c].reshape(28, 28))


def test_traversals_vary_one_dimension_ranked_by_kl():
    z0 = torch.tensor([0.5, -1.0, 2.0])
    codes = latent.traversal_grid(z0, [2, 0], torch.tensor([-1.0, 0.0, 1.0]))
    assert codes.shape == (6, 3)
    assert torch.equal(codes[:3, :2], z0[:2].expand(3, 2)) and codes[:3, 2].tolist() == [-1, 0, 1]
    assert torch.equal(codes[3:, 1:], z0[1:].expand(3, 2)) and codes[3:, 0].tolist() == [-1, 0, 1]


def test_kl_per_dimension_is_the_closed_form():
    torch.manual_seed(0)
    guide = make_guide("linear_gaussian", x_dim=4, z_dim=3, covariance="diagonal")
    with torch.no_grad():
        guide.weight.normal_()
        guide.scale = torch.tensor([0.5, 1.0, 2.0])
    x = torch.randn(50, 4)
    m, s = x @ guide.weight.T + guide.bias, torch.tensor([0.5, 1.0, 2.0])
    expected = (0.5 * (s**2 + m**2 - 1 - (s**2).log())).mean(0)
    torch.testing.assert_close(latent.kl_per_dimension(guide, x), expected)
    with pytest.raises(ValueError, match="diagonal Normal guide"):
        latent.kl_per_dimension(make_guide("linear_gaussian", x_dim=4, z_dim=3), x)


def test_manifold_grid_over_prior_quantiles(run):
    _, model, guide, _, data = run
    z = latent.normal_quantile_grid(5)
    assert z.shape == (25, 2)
    torch.testing.assert_close(z[12], torch.zeros(2), atol=1e-6, rtol=0)  # the centre
    assert z[0, 0] == pytest.approx(-1.6449, abs=1e-3) and z[0, 1] == pytest.approx(1.6449,
                                                                                    abs=1e-3)
    fig = FIGURES["manifold"](model, guide, data, n=5)
    grid = grid_of(fig)
    assert grid.shape == (5 * STEP - 1, 5 * STEP - 1) and grid.std() > 0.05
    torch.testing.assert_close(grid[:28, :28], latent.decode(model, z[:1]).reshape(28, 28))
    with pytest.raises(ValueError, match="z_dim 2"):
        FIGURES["manifold"](make_model("bernoulli_mlp", z_dim=3), guide, data)


def test_latent_scatter_and_curves(run):
    _, model, guide, saved, data = run
    fig = FIGURES["latents"](model, guide, data, n=300)
    assert fig.axes[0].collections[0].get_offsets().shape == (300, 2)
    z = torch.randn(100, 5)
    p = latent.project_2d(z)
    assert p.shape == (100, 2) and p[:, 0].var() >= p[:, 1].var()  # first component first
    fig = FIGURES["curves"](model, guide, data, records=saved["history"])
    elbo, recon, kl = fig.axes[:3]
    assert [len(line.get_xdata()) for line in elbo.lines] == [2, 2]  # train, test
    test_recon = [r["valid_reconstruction"] for r in saved["history"]]
    assert list(recon.lines[1].get_ydata()) == test_recon and len(kl.lines) == 2


def test_saving_reports_what_does_not_apply(tmp_path):
    model, guide = make_model("bernoulli_mlp", z_dim=3, hidden=(8,)), make_guide(
        "gaussian_mlp", z_dim=3, hidden=(8,))
    data = load_dataset("embedded", "test").take(50)
    done = save_figures(model, guide, data, tmp_path, ["manifold", "samples", "curves"])
    assert done["manifold"].startswith("skipped: the manifold figure needs a model with z_dim 2")
    assert done["curves"].startswith("skipped: training curves need")
    assert done["samples"].exists()
    with pytest.raises(ValueError, match="unknown figure"):
        save_figures(model, guide, data, tmp_path, ["mona_lisa"])


def test_importing_the_lab_does_not_import_matplotlib():
    code = ("import sys, models, guides, inference, inference.visualize, inference.figures; "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_samples_and_traversal_figures_hold_decoded_images(run):
    _, model, guide, _, data = run
    grid = grid_of(FIGURES["samples"](model, guide, data, n=16))
    assert grid.shape == (8 * STEP - 1, 2 * STEP - 1)  # 8 rows of 2
    tiles = grid[:28, :28]
    assert 0 < tiles.min() and tiles.max() < 1 and tiles.std() > 0.01  # pixel probabilities
    fig = FIGURES["traversals"](model, guide, data, dims=2, steps=5)
    grid = grid_of(fig)
    assert grid.shape == (2 * STEP - 1, 5 * STEP - 1)  # a row per dimension, a column a value
    z0 = latent.encode(guide, data.x[:1])[0]
    kl = latent.kl_per_dimension(guide, data.x)
    top = int(kl.argmax())
    code = z0.clone()
    code[top] = -3.0
    torch.testing.assert_close(grid[:28, :28], latent.decode(model, code[None]).reshape(28, 28))
    assert f"z{top} (KL {kl[top]:.2f})" in [t.get_text() for t in fig.axes[0].get_yticklabels()]


def _rendered(fig):
    """The figure drawn as save_png saves it: an (H, W) grey array, and the title's box in
    its pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    fig.set_dpi(figures.DPI)
    canvas.draw()
    rgba = torch.as_tensor(np.asarray(canvas.buffer_rgba()).copy())  # (H, W, 4) bytes
    pixels = rgba[..., :3].float().mean(-1) / 255
    return pixels, fig.axes[0].title.get_window_extent(canvas.get_renderer())


@pytest.mark.parametrize("side", [28, 64])
def test_a_grid_keeps_every_gap_between_its_cells(side):
    """Sprites are 64 pixels a side: drawn too small, some 1-pixel gaps vanished."""
    fig = figures.grid_figure(torch.zeros(64, side * side), 8, "samples", (side, side))
    pixels, _ = _rendered(fig)
    dark = pixels < 0.5
    row = dark.sum(0) > 0.5 * dark.sum(0).max()  # columns that cross the black tiles
    first, last = row.nonzero()[[0, -1], 0].tolist()
    line = dark[:, first:last + 1].any(0)  # (W,) black, or a white gap between two tiles
    gaps = int((line[1:] & ~line[:-1]).sum())  # a gap ends where black starts again
    assert gaps == 7


@pytest.mark.parametrize("n", [1, 2, 4])
def test_a_small_grid_keeps_its_whole_title(n):
    title = "samples of class 7, temperature 0.7"
    fig = figures.grid_figure(torch.rand(n, 784), max(1, round(n ** 0.5)), title)
    pixels, box = _rendered(fig)
    assert box.x0 >= 0 and box.x1 <= pixels.shape[1]


def test_traversal_rows_show_the_kl_against_the_models_own_prior():
    """A mixture prior: each row's KL is KL(q(z_j | x) || p(z_j)) with p(z_j) the prior's
    marginal, a mixture of 1-D Normals, not N(0, 1)."""
    from pyro import poutine
    from torch.distributions import Categorical, MixtureSameFamily, Normal

    from inference import TensorData

    torch.manual_seed(0)
    model = make_model("mixture", z_dim=3, hidden=(16,), components=2)
    guide = make_guide("gaussian_mlp", z_dim=3, hidden=(16,))
    with torch.no_grad():  # components far from N(0, 1): at ±3, scale 0.5
        model.loc.copy_(torch.tensor([[3.0, -3.0, 3.0], [-3.0, 3.0, 3.0]]))
        model.scale = torch.full((2, 3), 0.5)
    x = torch.bernoulli(torch.full((60, 784), 0.3))
    fig = FIGURES["traversals"](model, guide, TensorData(x), dims=3, steps=3)
    shown = {int(t.get_text().split()[0][1:]): float(t.get_text().split("KL ")[1][:-1])
             for t in fig.axes[0].get_yticklabels()}
    q = poutine.trace(guide).get_trace(x).nodes["z"]["fn"].base_dist  # (60, 3) Normals
    z = q.sample((4000,))  # (S, N, d), the reference's own draws
    prior = MixtureSameFamily(Categorical(logits=torch.zeros(3, 2)),
                              Normal(model.loc.detach().T, model.scale.detach().T))  # (d,)
    expected = (q.log_prob(z) - prior.log_prob(z)).mean((0, 1))
    standard = torch.distributions.kl_divergence(q, Normal(0.0, 1.0)).mean(0)
    for j, value in shown.items():
        assert value == pytest.approx(expected[j].item(), abs=0.05 + 0.02 * expected[j].item())
        assert abs(value - standard[j].item()) > 1.0  # what the rows used to show


def test_vae_sample_grids_take_the_images_own_size():
    """An MLP pair on the 64 x 64 sprites has no image_shape: the grid reads it from D."""
    from inference.visualize import sample_grid

    model = make_model("bernoulli_mlp", x_dim=4096, z_dim=2, hidden=(8,))
    fig = sample_grid(model, torch.rand(4, 4096), "samples")
    assert grid_of(fig).shape == (2 * 65 - 1, 2 * 65 - 1)
