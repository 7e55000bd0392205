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
