"""The benchmark scripts' own logic, on budgets a test can afford."""

import argparse
import importlib.util
from pathlib import Path

import pytest

from inference.config import RunConfig

ROOT = Path(__file__).resolve().parents[1]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_iwae_table_limit_scores_a_random_subset_and_reads_it_back(tmp_path, monkeypatch):
    """--limit N: the cell is scored on N random test points, and a second run reads that
    score back instead of scoring again (it used to look for a file evaluate_run never
    writes)."""
    table = script("iwae_table")
    tiny = RunConfig(dataset="embedded", hidden=(8,), z_dim=2, epochs=1, train_limit=200,
                     valid=0, loss="iwae", num_particles=2, seed=3, device="cpu")
    monkeypatch.setattr(table, "cell_config", lambda *a: tiny)
    args = argparse.Namespace(
        out=str(tmp_path), eval_samples=8, limit=30, device="cpu", seed=3, stages=1)
    first = table.run_cell("one:iwae:2", args)
    assert first["points"] == 30 and first["nll"] > 0

    def scored_again(*a, **k):
        raise AssertionError("the cell's score was not read back")

    monkeypatch.setattr(table, "evaluate_run", scored_again)
    assert table.run_cell("one:iwae:2", args) == first
    assert "on a random 30 test points" in table.markdown([first], args)
    with pytest.raises(SystemExit, match="LAYERS:OBJECTIVE:K"):
        table.parse_cell("one:iwae")


def test_imputation_paired_differences_use_only_shared_masks(tmp_path):
    """The paired table subtracts the baseline's RMSE on the same mask, counts the masks
    where ours is lower, and skips masks the baseline lacks (an interrupted run)."""
    import json

    imputation = script("imputation")
    rmse = {("miwae", 0): 0.5, ("miwae", 1): 0.9, ("miwae", 2): 0.7,
            ("mice", 0): 0.6, ("mice", 1): 0.8}  # mask 2 has no MICE result
    results = [{"rate": 0.3, "mask": k, "method": m, "rmse": v, "seconds": 1.0, "epoch": None}
               for (m, k), v in rmse.items()]
    (tmp_path / "iris.json").write_text(json.dumps({"n": 150, "d": 4, "results": results}))
    row = imputation.paired(tmp_path, against=("mice", "missforest")).splitlines()[-1]
    # differences -0.1 and +0.1: mean 0, sd 0.1, lower on 1 of 2; missForest never ran
    assert row == "| iris | 30% | +0.000 ± 0.100 (lower on 1 of 2) | not run |"


def test_m2_table_reports_test_accuracy_at_the_best_validation_epoch(monkeypatch):
    """Choose on validation, report on test: the example's "corresponding testing accuracy",
    the first epoch of highest validation accuracy, never the best test epoch."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its provenance module
    m2 = script("m2")
    runs = [{"labels": 100, "seed": s, "settings": "lr 0.003", "seconds": 1.0,
             "accuracy": acc, "valid_accuracy": val}
            for s, acc, val in ((0, [0.50, 0.90, 0.70, 0.60], [0.5, 0.6, 0.8, 0.8]),
                                (1, [0.40, 0.55, 0.95, 0.65], [0.9, 0.7, 0.8, 0.85]),
                                (2, [0.30, 0.45, 0.52, 0.62], [0.1, 0.2, 0.3, 0.4]))]
    assert [m2.chosen(r) for r in runs] == [(0.70, 3), (0.40, 1), (0.62, 4)]
    assert m2.chosen({"accuracy": [0.5], "valid_accuracy": []}) is None
    text = m2.table(runs, [])
    assert "| 0.7000 (3) |" in text and "| 0.4000 (1) |" in text
    assert "| 3 | 0.6233 ± 0.0252 | 0.5733 ± 0.1553 | – |" in text  # 4 epochs: no tutorial
    fifty = [{**runs[0], "labels": 600, "accuracy": [0.9] * 50, "valid_accuracy": [0.8] * 50}]
    assert "| 600 | 1 | 0.9000 | 0.9000 | 0.9437 |" in m2.table(fifty, [])


def test_m2_z_dim_reaches_model_and_guide(monkeypatch):
    """--z-dim is not a flag that does nothing: both nets of the pair get it, and the run's
    settings name it."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    m2 = script("m2")
    built = {}

    def make_guide(name, **kwargs):
        built["guide"] = kwargs
        raise StopIteration  # enough: the pair was built

    monkeypatch.setattr(m2, "make_model", lambda name, **kwargs: built.setdefault("model", kwargs))
    monkeypatch.setattr(m2, "make_guide", make_guide)
    monkeypatch.setattr(m2.SemiSupervisedData, "split", lambda *a, **k: None)
    args = m2.argparse.Namespace(
        labelled_every=1, unlabelled=None, init_std="default", hidden=[500], z_dim=7, grey=None,
        model="m2", lr=4.2e-4, alpha=46, twin_step_adam=False, schedule="constant",
        batch_size=100, beta1=0.95, labelled_weight="1", valid=0)
    with pytest.raises(StopIteration):
        m2.run(100, 0, args, None, None)
    assert built["model"]["z_dim"] == built["guide"]["z_dim"] == 7
    assert m2.settings(args) == "z 7, a labelled batch every 1"


def test_m2_refuses_training_flags_with_ours(tmp_path, capsys, monkeypatch):
    """With --ours the runs are read from files: a training flag would do nothing."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    m2 = script("m2")
    saved = tmp_path / "run.json"
    saved.write_text("[]")
    for bad in ("abc", "inf", "-1"):
        with pytest.raises(SystemExit) as stop:
            m2.main(["--labelled-weight", bad])
        assert stop.value.code == 2
        assert "is neither 'epoch' nor a number ≥ 0" in capsys.readouterr().err
    for bad in ("0", "x", "-3", "2.5"):
        with pytest.raises(SystemExit) as stop:
            m2.main(["--z-dim", bad])
        assert stop.value.code == 2
        assert "is not a whole number ≥ 1" in capsys.readouterr().err
    for flags, named in ((["--lr", "1e-3"], "--lr is a training flag"),
                         (["--z-dim", "10"], "--z-dim is a training flag"),
                         (["--grey", "--seeds", "0,1"], "--seeds, --grey are training flags")):
        with pytest.raises(SystemExit) as stop:
            m2.main(["--ours", str(saved), *flags])
        assert stop.value.code == 2
        assert named in capsys.readouterr().err
