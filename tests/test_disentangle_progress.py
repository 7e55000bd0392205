"""Disentanglement over training (inference.disentangle.progress) and the benchmark that
records it: the KL per latent against the closed form written by hand, MIG against the
metric itself, factor labels on oracle codes, the curve file, and the benchmark's cells
trained in turns and resumed."""

import argparse
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from test_disentangle_metrics import PERMUTATION, Factors, permuted

from guides import make_guide
from inference.disentangle import progress
from inference.disentangle.metrics import mig
from inference.disentangle.sprites import Sprites
from inference.latent import encode_distribution
from models import make_model

ROOT = Path(__file__).resolve().parents[1]


def pair(seed=0):
    torch.manual_seed(seed)
    model = make_model("bernoulli_mlp", x_dim=4096, z_dim=10, hidden=(8,))
    guide = make_guide("gaussian_mlp", x_dim=4096, z_dim=10, hidden=(8,))
    return model, guide


def test_checkpoint_scores_kl_per_latent_is_the_closed_form_and_mig_the_metric():
    model, guide = pair()
    data = Sprites()
    x = data.observations(data.sample_factors(5, generator=3))  # (5, 4096), distinct sprites
    assert len(x.unique(dim=0)) == 5
    got = progress.checkpoint_scores(model, guide, data, x, seed=4, mig_points=500)
    loc, scale = encode_distribution(guide, x)  # (5, 10) each
    kl = (0.5 * (loc ** 2 + scale ** 2 - 1) - scale.log()).mean(0)  # N(0, 1) prior
    assert loc.shape == (5, 10) and len(got["kl_per_dim"]) == 10
    assert torch.allclose(torch.tensor(got["kl_per_dim"]), kl, rtol=1e-5, atol=1e-6)
    ref = mig(data, lambda v: encode_distribution(guide, v)[0], 4, num_train=500)
    assert got["mig"] == pytest.approx(ref["mig"], abs=1e-12)
    assert torch.tensor(got["mutual_info"]).shape == (10, 5)
    assert len(got["mig_per_factor"]) == 5


def test_factor_of_latents_names_each_oracle_code_after_its_factor():
    names = Factors.factor_names
    m = mig(Factors(), permuted, 0, num_train=2000)
    labels = progress.factor_of_latents(m["mutual_info"], names, [1.0] * 5)
    assert [s.split(" ")[0] for s in labels] == [names[i] for i in PERMUTATION]
    quiet = progress.factor_of_latents(m["mutual_info"], names, [1.0, 0.05, 1.0, 1.0, 0.0])
    assert quiet[1] == quiet[4] == "inactive" and quiet[0] == labels[0]


def test_read_curve_keeps_the_last_record_per_step_and_skips_a_cut_line(tmp_path):
    path = tmp_path / "curve.jsonl"
    assert progress.read_curve(path) == []
    for r in ({"steps": 20, "mig": 0.1}, {"steps": 10, "mig": 0.2}, {"steps": 20, "mig": 0.3}):
        progress.append_curve(path, r)
    with open(path, "a") as f:
        f.write('{"steps": 30, "mi')  # a write cut short
    assert progress.read_curve(path) == [{"steps": 10, "mig": 0.2}, {"steps": 20, "mig": 0.3}]


def test_labelled_traversals_label_active_rows_by_factor():
    model, guide = pair()
    x0 = Sprites().observations(torch.tensor([[0, 5, 0, 10, 20]]))[0]
    labels = ["x (1.00 nats)"] + ["inactive"] * 8 + ["scale (0.50 nats)"]
    kl = [0.5] + [0.01] * 8 + [2.0]
    fig = progress.labelled_traversals(model, guide, x0, labels, kl, steps=5)
    ticks = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert ticks == ["z9: scale (0.50 nats), KL 2.00", "z0: x (1.00 nats), KL 0.50"]


def test_kl_and_mig_curve_figures_draw_one_line_per_latent_and_seed():
    records = [{"steps": s, "mig": 0.01 * s, "kl_per_dim": [s, 0.0, 1.0]} for s in (1, 2, 3)]
    fig = progress.kl_curve_figure({"a": records, "b": records})
    assert len(fig.axes) == 2 and len(fig.axes[0].lines) == 3
    fig = progress.mig_curve_figure({"a": [records, records[:2]]})
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [3, 2]
    assert fig.axes[0].get_xlabel() == "training steps"
    fig = progress.mig_curve_figure({"a": [records]}, batch_size=512)
    assert fig.axes[0].get_xlabel() == "training steps (batch 512)"


def script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("disentanglement",
                                                  ROOT / "benchmarks" / "disentanglement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_cells_parse_and_refuse_a_beta_where_there_is_none(monkeypatch):
    bench = script(monkeypatch)
    assert bench.parse_cells("betatc:6,beta:4,vae") == [("betatc", 6.0), ("beta", 4.0),
                                                         ("vae", 1.0)]
    with pytest.raises(argparse.ArgumentTypeError, match="vae has no β"):
        bench.parse_cells("vae:4")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown objective 'tc'"):
        bench.parse_cells("tc:6")


@pytest.mark.slow
def test_benchmark_refuses_a_cell_folder_trained_with_other_networks(tmp_path, monkeypatch):
    """A resumed cell keeps its saved configuration, so asking for other hidden widths or
    another batch size on the same folder is refused in one line, not silently ignored;
    so is a report on it, whose budget line would state the asked settings."""
    bench = script(monkeypatch)
    args = argparse.Namespace(out=tmp_path, lr=1e-3, hidden=[8, 8], train_points=128,
                              valid_points=100, batch_size=64)
    cell = ("betatc", 6.0, 0)
    out = bench.folder(args, *cell)
    bench.check_folder(args, cell, out)  # nothing trained yet: nothing to refuse
    bench.train_run(bench.config(args, *cell, 1), out, progress=False, figures=(),
                    tensorboard=False, log=lambda *_: None)
    bench.check_folder(args, cell, out)  # the same settings resume
    args.hidden = [8]
    with pytest.raises(SystemExit, match=r"trained with hidden \(8, 8\), not \(8,\)"):
        bench.check_folder(args, cell, out)
    args.hidden, args.batch_size = [8, 8], 32
    with pytest.raises(SystemExit, match="trained with batch_size 64, not 32"):
        bench.check_folder(args, cell, out)
    with pytest.raises(SystemExit, match="trained with batch_size 64, not 32"):
        bench.final_scores(args, cell)  # a report would state the wrong batch in its budget


@pytest.mark.slow
def test_benchmark_trains_cells_in_turns_and_resumes(tmp_path, monkeypatch):
    """Two cells, 2 steps per epoch: after a first call to 2 epochs and a second to 4, each
    curve has records at 2, 4, 6 and 8 steps, the cells' steps agree at every record, and
    the second call did not retrain what the first had scored."""
    bench = script(monkeypatch)
    args = argparse.Namespace(out=tmp_path, lr=1e-3, hidden=[8], train_points=128,
                              valid_points=100, batch_size=64, seeds=[0],
                              cells=[("betatc", 6.0), ("vae", 1.0)], eval_every=1,
                              time_budget=None, steps=4)
    x = Sprites().observations(Sprites().sample_factors(20, generator=0))
    bench.train_cells(args, x)
    first = progress.read_curve(bench.folder(args, "vae", 1.0, 0) / "curve.jsonl")
    args.steps = 8
    bench.train_cells(args, x)
    curves = [progress.read_curve(bench.folder(args, o, b, 0) / "curve.jsonl")
              for o, b in args.cells]
    assert [[r["steps"] for r in c] for c in curves] == [[2, 4, 6, 8]] * 2
    assert curves[1][:2] == first
    assert all(math.isfinite(r["valid_elbo"]) and 0 <= r["mig"] <= 1 for r in curves[0])
    history = json.loads((bench.folder(args, "vae", 1.0, 0) / "metrics.json").read_text())
    assert sum(r["steps"] for r in history["history"]) == 8


def test_sprites_splits_are_rendered_once_and_equal_a_fresh_render():
    from inference.disentangle.data import _split, load_factor_split

    kept = load_factor_split("sprites", "valid", valid=300)
    assert load_factor_split("sprites", "valid", valid=300) is kept
    fresh = _split("sprites", "valid", 300, None, False)
    assert fresh is not kept and torch.equal(fresh.x, kept.x) and kept.x.shape == (300, 4096)
    assert load_factor_split("sprites", "valid", valid=200).x.shape == (200, 4096)
