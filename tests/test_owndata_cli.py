"""vae-train --data from the command line on data the tests write (an RGB image folder, an
.npz file), the commands that read such a run again, and one line for each bad input."""

import json

import numpy as np
import pytest
from PIL import Image

from inference.cli import encode_main, eval_main, plot_main, sample_main, train_main

FAST = ["--epochs", "1", "--hidden", "16", "--z-dim", "2", "--batch-size", "8", "--quiet",
        "--no-tensorboard"]


@pytest.fixture(scope="module")
def rgb_folder(tmp_path_factory):
    """24 colour images of 10x12 pixels in two classes: reddish and bluish noise."""
    root = tmp_path_factory.mktemp("own") / "pictures"
    rng = np.random.default_rng(0)
    for label, name in enumerate(("blue", "red")):
        (root / name).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 90, (10, 12, 3), dtype=np.uint8)
            pixels[..., 2 - 2 * label] += 160
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(rgb_folder, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "pictures"
    assert train_main([*FAST, "--data", str(rgb_folder), "--image-size", "8", "--out",
                       str(run)]) == 0
    return run


def test_an_rgb_folder_trains_with_the_colour_pair_and_records_its_data(folder_run,
                                                                         rgb_folder):
    config = json.loads((folder_run / "config.json").read_text())
    record = json.loads((folder_run / "data.json").read_text())
    assert config["run"]["model"] == config["run"]["guide"] == "conv_rgb"
    assert config["run"]["binarize"] == "none" and config["model"]["image_shape"] == [3, 8, 8]
    assert record["source"] == str(rgb_folder) and record["classes"] == ["blue", "red"]
    assert record["image_shape"] == [3, 8, 8] and record["channels"] == "rgb"
    assert record["splits"] == {"train": 20, "valid": 2, "test": 2, "seed": 0,
                                "stratified": True}
    assert (folder_run / "figures" / "reconstructions.png").exists()


def test_the_commands_that_read_the_run_again_use_its_data(folder_run, capsys):
    assert eval_main([str(folder_run), "--num-samples", "3", "--quiet"]) == 0
    assert "pictures test (none)" in capsys.readouterr().out
    summary = json.loads((folder_run / "eval-test-K3.json").read_text())
    assert summary["n"] == 2 and summary["data"]["shape"] == [3, 8, 8]
    assert sample_main([str(folder_run), "-n", "4"]) == 0
    assert plot_main([str(folder_run), "interpolation"]) == 0
    assert encode_main([str(folder_run), "--split", "valid"]) == 0
    assert (folder_run / "figures" / "interpolation.png").exists()


def test_an_npz_of_vectors_trains_with_the_gaussian_pair(tmp_path, capsys):
    x = np.random.default_rng(0).normal(5, 3, (30, 4)).astype(np.float32)
    np.savez(tmp_path / "v.npz", x=x, y=np.arange(30) % 3)
    run = tmp_path / "run"
    assert train_main([*FAST, "--no-figures", "--data", str(tmp_path / "v.npz"), "--valid", "6",
                       "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "data: v.npz train 21 x 4 (none binarization), valid 6, test 3 (none)" in out
    assert "pair: gaussian_mlp + gaussian_mlp" in out
    record = json.loads((run / "data.json").read_text())
    assert record["scaling"]["kind"] == "standardise" and len(record["scaling"]["std"]) == 4


def test_an_npz_of_grey_images_trains_with_a_chosen_pair(tmp_path):
    images = np.random.default_rng(1).integers(0, 2, (20, 8, 8), dtype=np.uint8) * 255
    np.savez(tmp_path / "g.npz", x=images)
    assert train_main([*FAST, "--no-figures", "--data", str(tmp_path / "g.npz"), "--model",
                       "conv", "--guide", "conv", "--out", str(tmp_path / "run")]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"]["image_shape"] == [1, 8, 8] and config["run"]["model"] == "conv"


def refused(capsys, argv) -> str:
    with pytest.raises(SystemExit) as info:
        train_main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    return err


def test_bad_data_is_refused_in_one_line_before_any_run_is_written(tmp_path, capsys,
                                                                    rgb_folder):
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.new("RGB", (4, 4)).save(bad / "fine.png")
    (bad / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan]]))
    out = ["--out", str(tmp_path / "run")]
    cases = [
        ([*FAST, "--data", str(bad), *out], "cannot read 1 of the 2 images"),
        ([*FAST, "--data", str(tmp_path / "nan.npy"), *out], "NaN or infinite"),
        ([*FAST, "--data", str(tmp_path / "missing.npz"), *out], "no such file or folder"),
        ([*FAST, "--data", str(rgb_folder), "--dataset", "mnist", *out], "two data sources"),
        ([*FAST, "--image-size", "8", *out], "--image-size is for your own data"),
        ([*FAST, "--data", str(rgb_folder), "--image-size", "9", *out], "even height"),
        ([*FAST, "--data", str(rgb_folder), "--valid", "20", "--test", "4", *out],
         "cannot hold out 4 test and 20 validation rows of 24"),
    ]
    for argv, words in cases:
        assert words in refused(capsys, argv)
    assert not (tmp_path / "run" / "config.json").exists()


def test_a_changed_source_is_refused_by_the_run_that_read_it(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    for i in range(10):
        Image.new("RGB", (4, 4), (20 * i, 0, 0)).save(tmp_path / "imgs" / f"{i}.png")
    run = tmp_path / "run"
    assert train_main([*FAST, "--no-figures", "--no-divergence-check", "--data",
                       str(tmp_path / "imgs"), "--out", str(run)]) == 0
    Image.new("RGB", (4, 4), (0, 255, 0)).save(tmp_path / "imgs" / "3.png")
    with pytest.raises(SystemExit):
        eval_main([str(run), "--num-samples", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert "changed since the run" in err and "\n" not in err


def test_evaluations_that_need_a_named_dataset_refuse_a_data_run(folder_run, capsys):
    for flag, words in (("--quality", "--quality compares samples"),
                        ("--disentanglement", "needs a run trained on a dataset with known")):
        with pytest.raises(SystemExit):
            eval_main([str(folder_run), flag])
        err = capsys.readouterr().err.strip()
        assert words in err and "pictures" in err and "\n" not in err
