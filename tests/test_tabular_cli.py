"""A CSV of mixed types with empty cells from the command line: vae-train --data (the
tabular pair by default, ELBO and MIWAE), vae-impute and vae-eval on the run, and one line
for a bad column."""

import json

import pandas as pd
import pytest
from test_tabular import mixed_csv

from inference.cli import eval_main, train_main
from inference.owndata import impute_cli

FAST = ["--epochs", "2", "--hidden", "16", "--z-dim", "2", "--batch-size", "16", "--quiet",
        "--no-tensorboard", "--no-figures"]


@pytest.mark.parametrize("loss", [[], ["--loss", "miwae", "--num-particles", "3"]])
def test_a_csv_with_empty_cells_trains_imputes_and_scores(tmp_path, loss, capsys):
    mixed_csv(tmp_path / "t.csv", n=80)
    run = tmp_path / "run"
    assert train_main([*FAST, *loss, "--data", str(tmp_path / "t.csv"), "--out", str(run)]) == 0
    assert "nats per row" in capsys.readouterr().out  # a table's unit, not "per image"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["name"] == config["guide"]["name"] == "tabular"
    record = json.loads((run / "data.json").read_text())
    assert record["kind"] == "table" and set(record["table"]["scaling"]) == {"score", "income"}
    assert impute_cli.main([str(run), "--data", str(tmp_path / "t.csv"), "--out",
                            str(tmp_path / "f.csv"), "--num-samples", "20"]) == 0
    filled, given = pd.read_csv(tmp_path / "f.csv"), pd.read_csv(tmp_path / "t.csv")
    assert filled.notna().all().all() and given.isna().any().any()
    assert eval_main([str(run), "--num-samples", "20", "--quiet"]) == 0


def test_a_bad_cell_of_a_csv_is_one_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n2,3\n3,4\n4,5\n5,x\n" + "6,7\n" * 10)
    (tmp_path / "s.json").write_text('{"b": "real"}')
    with pytest.raises(SystemExit) as e:
        train_main([*FAST, "--data", str(tmp_path / "t.csv"), "--schema",
                    str(tmp_path / "s.json"), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "\n" not in err
    assert "column 'b' (real): row 5 holds 'x', not a number" in err
