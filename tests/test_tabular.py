"""Tables with missing cells: the reader, the tabular pair, the MIWAE bound, imputation and
vae-impute."""

import math

import numpy as np
import pandas as pd
import pyro
import pytest
import torch

from guides import make_guide
from inference import check_pair, fit
from inference.check import DataError
from inference.data import TensorData
from inference.miwae import MIWAE
from inference.objectives import IWAE
from inference.owndata import impute_cli
from inference.owndata.imputation import impute_table
from inference.owndata.tables import read_table, scale
from inference.run_folder import save_run
from inference.traces import log_weights
from models import make_model

NAN = float("nan")


def mixed_csv(path, n=60, seed=0):
    """A CSV of mixed types with empty cells: real, positive, count, binary, categorical."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    frame = pd.DataFrame({
        "score": z + 0.1 * rng.normal(size=n),
        "income": np.exp(10 + 0.5 * z + 0.1 * rng.normal(size=n)).round(2),
        "kids": rng.poisson(np.exp(0.5 + 0.5 * z)),
        "smoker": np.where(z + rng.normal(size=n) > 0, "yes", "no"),
        "city": np.array(["Lyon", "Nice", "Paris"])[np.digitize(z, [-0.5, 0.5])],
    })
    holes = rng.random(frame.shape) < 0.2
    holes[0] = False  # one complete row
    frame = frame.astype(object).mask(holes)
    frame.to_csv(path, index=False)
    return frame


def test_read_table_infers_types_masks_empty_cells_and_scales_with_training_rows(tmp_path):
    frame = mixed_csv(tmp_path / "t.csv")
    data, record = read_table(tmp_path / "t.csv")
    assert record["types"] == {"score": "real", "income": "positive", "kids": "count",
                               "smoker": "binary", "city": "categorical"}
    assert torch.equal(data.mask, torch.tensor(frame.notna().to_numpy()))
    assert (data.x[~data.mask] == 0).all() and data.serve(slice(None))[0].isnan().sum() == (
        ~data.mask).sum()  # missing cells are NaN in a batch, never a silent zero
    assert record["schema"][4]["categories"] == ["Lyon", "Nice", "Paris"]
    train = torch.arange(40)
    scaled, record = scale(data, record, train)
    seen = frame["income"][:40].dropna().astype(float)
    assert record["scaling"]["income"]["mean"] == pytest.approx(np.log(seen).mean(), rel=1e-5)
    col = scaled.x[:40, 1][scaled.mask[:40, 1]]
    assert col.mean().abs() < 1e-4 and (col.std() - 1).abs() < 1e-4
    again, _ = read_table(tmp_path / "t.csv", like=record)  # a new file, scaled as the run's
    assert torch.allclose(again.x, scaled.x)


@pytest.mark.parametrize("text, schema, message", [
    ("a,b\n1,x\n2,3\n", {"b": "real"}, r"column 'b' \(real\): row 1 holds 'x', not a number"),
    ("a,b\n1,-2\n2,3\n", {"b": "positive"}, r"column 'b' is positive but holds -2"),
    ("a,b\n1,2.5\n2,3\n4,5\n", {"b": "count"}, r"column 'b' is a count but holds 2.5"),
    ("a,b\n1,x\n2,y\n3,z\n", {"b": "binary"}, r"column 'b' is binary but holds 3 distinct"),
    ("a,b\n1,\n2,\n", None, r"column 'b' has no value in any row; drop it"),
    ("a,b\n1,2\n", {"c": "real"}, r"the schema names column 'c', which the table lacks"),
    ("a,b\n1,2\n", {"b": "complex"}, r"column 'b' has type 'complex'; choose one of"),
    ("a,b\n1,inf\n2,3\n", {"b": "real"}, r"column 'b': row 1 is infinite"),
])
def test_bad_columns_and_values_give_one_line(tmp_path, text, schema, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(DataError, match=message) as e:
        read_table(tmp_path / "t.csv", schema=schema)
    assert "\n" not in str(e.value)


def test_bad_files_and_schema_files_give_one_line(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "none.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="not a readable table"):
        read_table(tmp_path / "empty.csv")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "s.toml").write_text('a = "real"\nb = "positive"\n')
    assert read_table(tmp_path / "t.csv", schema=tmp_path / "s.toml")[1]["types"] == {
        "a": "real", "b": "positive"}
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(DataError, match="not valid json"):
        read_table(tmp_path / "t.csv", schema=tmp_path / "s.json")


SCHEMA = [{"name": "r", "type": "real"}, {"name": "p", "type": "positive"},
          {"name": "c", "type": "count"}, {"name": "b", "type": "binary", "categories": [0, 1]},
          {"name": "k", "type": "categorical", "categories": ["u", "v", "w"]}]


def pair(z_dim=2):
    pyro.clear_param_store()
    torch.manual_seed(0)
    return (make_model("tabular", x_dim=5, z_dim=z_dim, hidden=(8,), schema=SCHEMA),
            make_guide("tabular", x_dim=5, z_dim=z_dim, hidden=(8,), schema=SCHEMA))


ROWS = torch.tensor([[0.3, -1.0, 2.0, 1.0, 2.0],
                     [NAN, 0.5, 0.0, NAN, 1.0],
                     [1.2, NAN, NAN, 0.0, NAN],
                     [NAN, NAN, 4.0, 1.0, 0.0]])  # N = 4 rows, four different masks


def test_masked_log_likelihood_equals_hand_written_on_the_same_draws():
    model, guide = pair()
    check_pair(model, guide, ROWS)
    k = 3
    _, log_lik, g = log_weights(model, guide, ROWS, None, k, -2)  # (K, N)
    z = g.nodes["z"]["value"]  # (K, N, z_dim)
    h = model.decoder(z)  # (K, N, P): r, p, c, b, k0..k2
    sd = model.scale
    seen = ~ROWS.isnan()
    x = ROWS.nan_to_num()
    cells = torch.stack([
        -0.5 * ((x[:, 0] - h[..., 0]) / sd[0]) ** 2 - sd[0].log() - 0.5 * math.log(2 * math.pi),
        -0.5 * ((x[:, 1] - h[..., 1]) / sd[1]) ** 2 - sd[1].log() - 0.5 * math.log(2 * math.pi),
        x[:, 2] * h[..., 2] - h[..., 2].exp() - torch.lgamma(x[:, 2] + 1),
        x[:, 3] * h[..., 3] - torch.nn.functional.softplus(h[..., 3]),
        torch.log_softmax(h[..., 4:7], -1).gather(-1, x[:, 4].long().expand(k, 4)[..., None])[
            ..., 0],
    ], -1)  # (K, N, D)
    expected = (cells * seen).sum(-1)
    assert log_lik.shape == (k, 4)
    torch.testing.assert_close(log_lik, expected)
    assert torch.isfinite(log_lik).all()


def test_miwae_equals_iwae_when_nothing_is_missing():
    model, guide = pair()
    x = ROWS.nan_to_num()
    values = []
    for objective in (IWAE, MIWAE):
        pyro.set_rng_seed(1)
        values.append(objective(num_particles=4).log_weights(model, guide, x))  # (K, N)
    assert values[0].shape == (4, 4)
    torch.testing.assert_close(values[0], values[1])


def test_miwae_bound_is_below_the_exact_marginal_of_the_observed_cells():
    """Linear-Gaussian oracle: p(x_obs) = N(b_o, W_o W_oᵀ + σ² I) exactly; a diagonal guide
    shown the zero-filled rows gives a bound below it for K = 3, which tightens to it as K
    grows."""
    torch.manual_seed(0)
    model = make_model("linear_gaussian", x_dim=5, z_dim=2).double()
    guide = make_guide("linear_gaussian", x_dim=5, z_dim=2, covariance="diagonal").double()
    guide.set_posterior(model)
    guide.scale = guide.scale * 1.5  # an imperfect guide: the bound has a gap to close
    x = model.marginal().sample((4,))
    x[0, 1], x[1, [0, 3]], x[2, 4], x[3, [1, 2, 3]] = NAN, NAN, NAN, NAN
    cov = model.marginal().covariance_matrix
    exact = torch.stack([torch.distributions.MultivariateNormal(
        model.bias[o], cov[o][:, o]).log_prob(row[o]) for row in x for o in [~row.isnan()]])
    with torch.no_grad():
        pyro.set_rng_seed(0)
        lw = MIWAE(num_particles=3 * 2000).log_weights(model, guide, x).reshape(2000, 3, 4)
        bound = torch.logsumexp(lw, 1) - math.log(3)  # (2000, N): K = 3 bounds
        mean, se = bound.mean(0), bound.std(0) / math.sqrt(2000)
        assert (mean + 3 * se < exact).all(), (mean, exact)
        big = torch.logsumexp(lw.reshape(-1, 4), 0) - math.log(6000)
        assert (big > mean).all()
        torch.testing.assert_close(big, exact, atol=0.02, rtol=0)


def test_fit_impute_and_score_a_csv_with_missing_cells(tmp_path):
    frame = mixed_csv(tmp_path / "t.csv", n=80)
    data, record = read_table(tmp_path / "t.csv")
    data, record = scale(data, record, torch.arange(len(data)))
    torch.manual_seed(0)
    schema = record["schema"]
    model = make_model("tabular", x_dim=5, z_dim=2, hidden=(16,), schema=schema)
    guide = make_guide("tabular", x_dim=5, z_dim=2, hidden=(16,), schema=schema)
    history = fit(model, guide, data, epochs=3, batch_size=20, loss=MIWAE(num_particles=3),
                  progress=False)
    assert all(math.isfinite(r["objective"]) for r in history.records)
    result = impute_table(model, guide, data, num_samples=20, multiple=2)
    assert result.mean.shape == (80, 5) and result.draws.shape == (2, 80, 5)
    assert torch.equal(result.mean[data.mask], data.x[data.mask])  # observed cells kept
    run = tmp_path / "run"
    save_run(run, model, guide, history=history, data=record)
    out = tmp_path / "filled.csv"
    assert impute_cli.main([str(run), "--data", str(tmp_path / "t.csv"), "--out", str(out),
                            "--multiple", "2", "--num-samples", "20",
                            "--scores", str(tmp_path / "scores.csv")]) == 0
    filled = pd.read_csv(out)
    assert list(filled.columns) == list(frame.columns) and filled.notna().all().all()
    given = pd.read_csv(tmp_path / "t.csv")
    observed = given.notna().to_numpy()
    assert (filled.to_numpy()[observed] == given.to_numpy()[observed]).all()
    as_text = pd.read_csv(out, dtype=str).to_numpy()  # observed cells: the very same text
    assert (as_text[observed] == pd.read_csv(tmp_path / "t.csv", dtype=str).to_numpy()[
        observed]).all()
    assert set(filled["city"]) <= {"Lyon", "Nice", "Paris"} and set(filled["smoker"]) <= {
        "yes", "no"}
    assert (filled["kids"] == filled["kids"].round()).all()
    spread = pd.read_csv(tmp_path / "filled.spread.csv")
    assert spread.isna().to_numpy()[observed].all()
    assert (tmp_path / "filled.draw2.csv").exists()
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 80 and np.isfinite(scores["nll"]).all()


def test_vae_impute_refuses_in_one_line(tmp_path, capsys):
    model, guide = pair()
    save_run(tmp_path / "run", model, guide, x=ROWS.nan_to_num())
    (tmp_path / "t.csv").write_text("r,p\n1,2\n")
    code = None
    with pytest.raises(SystemExit) as e:
        impute_cli.main([str(tmp_path / "run"), "--data", str(tmp_path / "t.csv"), "--out",
                         str(tmp_path / "o.csv")])
    code = e.value.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and "was not trained on a table" in err and "\n" not in err


def test_tensor_data_mask_is_checked_and_carried():
    x = torch.tensor([[1.0, NAN], [2.0, 3.0], [NAN, 4.0]])
    data = TensorData(x.nan_to_num(), mask=~x.isnan())
    assert torch.equal(data.take(2, 1).mask, data.mask[1:])
    assert data.subset(2).mask.shape == (2, 2)
    served = data.serve(torch.tensor([0, 2]))[0]
    assert served.isnan().tolist() == [[False, True], [True, False]]
    with pytest.raises(DataError, match="mark them missing"):
        TensorData(x)
    with pytest.raises(DataError, match="mask must be a bool tensor"):
        TensorData(x.nan_to_num(), mask=torch.ones(3, 2))


def test_every_flag_of_vae_impute_has_help_with_its_default_and_choices():
    parser = impute_cli.impute_parser()
    for action in [a for a in parser._actions if a.dest != "help" and a.option_strings]:
        text = action.help or ""
        assert "default" in text or action.required, action.dest
        if action.default not in (None, False):
            assert str(action.default) in text, action.dest
        for choice in action.choices or ():
            assert choice in text, (action.dest, choice)


def test_vae_impute_fills_the_nan_pixels_of_an_image_array(tmp_path):
    """Images go through the inpainting of inference.impute on the same importance weights."""
    torch.manual_seed(0)
    model = make_model("gaussian_mlp", x_dim=16, z_dim=2, hidden=(8,))
    guide = make_guide("gaussian_mlp", x_dim=16, z_dim=2, hidden=(8,))
    images = torch.rand(3, 4, 4)
    save_run(tmp_path / "run", model, guide, x=images.reshape(3, -1))
    holes = images.clone()
    holes[0, :2], holes[2, :, 1] = NAN, NAN
    np.save(tmp_path / "x.npy", holes.numpy())
    assert impute_cli.main([str(tmp_path / "run"), "--data", str(tmp_path / "x.npy"), "--out",
                            str(tmp_path / "out.npy"), "--num-samples", "10"]) == 0
    out = torch.as_tensor(np.load(tmp_path / "out.npy"))
    assert out.shape == (3, 4, 4) and torch.isfinite(out).all()
    seen = ~holes.isnan()
    assert torch.equal(out[seen], images[seen])
