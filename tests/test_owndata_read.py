"""Reading your own data: image folders and array files, exact pixels and labels, random
stratified splits, and one line for each bad file."""

import numpy as np
import pytest
import torch
from PIL import Image

import inference.owndata
from inference.check import DataError
from inference.owndata.arrays import read_arrays
from inference.owndata.images import read_image_folder
from inference.owndata.load import load_like, load_source, source_kind, split_rows

RED, BLUE = (200, 10, 30), (5, 40, 250)


def solid(path, colour, size=(6, 4), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path)


@pytest.fixture
def folder(tmp_path):
    """Two classes, 3 red and 2 blue images of 6x4 pixels."""
    for i in range(3):
        solid(tmp_path / "imgs" / "red" / f"{i}.png", RED)
    for i in range(2):
        solid(tmp_path / "imgs" / "blue" / f"{i}.jpg" if i else
              tmp_path / "imgs" / "blue" / f"{i}.png", BLUE)
    return tmp_path / "imgs"


def test_a_folder_gives_exact_pixels_channels_first_and_sorted_class_labels(folder):
    x, y, record = read_image_folder(folder)
    assert x.shape == (5, 3 * 4 * 6) and record["image_shape"] == [3, 4, 6]
    assert record["classes"] == ["blue", "red"] and y.tolist() == [0, 0, 1, 1, 1]
    red = x[2].reshape(3, 4, 6)
    assert torch.equal(red, torch.tensor(RED).float().div(255)[:, None, None].expand(3, 4, 6))
    assert record["channels"] == "rgb" and record["scaling"]["by"] == 255


def test_image_size_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    pixels = np.zeros((4, 8, 3), dtype=np.uint8)  # 8 wide, 4 high: centre 4 columns are 2..5
    pixels[:, 2:6] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    x, _, record = read_image_folder(tmp_path, image_size=4)
    assert record["image_shape"] == [3, 4, 4] and torch.equal(x, torch.ones(1, 48))


def test_grey_is_detected_or_chosen(tmp_path):
    for i in range(2):
        solid(tmp_path / f"{i}.png", 77, mode="L")
    x, _, record = read_image_folder(tmp_path)
    assert record["channels"] == "grey" and x.shape == (2, 24)
    assert torch.allclose(x, torch.full((2, 24), 77 / 255))
    solid(tmp_path / "c.png", RED)  # one colour image: the folder is read as RGB
    assert read_image_folder(tmp_path)[2]["channels"] == "rgb"
    x, _, record = read_image_folder(tmp_path, channels="grey")
    assert record["channels"] == "grey" and x.shape == (3, 24)


def test_every_damaged_image_is_named_in_one_line(folder):
    (folder / "red" / "broken.png").write_bytes(b"not an image")
    good = (folder / "blue" / "0.png").read_bytes()
    (folder / "blue" / "cut.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError) as info:
        read_image_folder(folder)
    text = str(info.value)
    assert "\n" not in text and "cannot read 2 of the 7 images" in text
    assert "red/broken.png" in text and "blue/cut.png" in text and "delete or replace them" in text


@pytest.mark.parametrize("layout, words", [
    ("mixed", "both at its top"), ("empty", "holds no image files"), ("sizes", "differ in size")])
def test_a_bad_folder_layout_is_one_line(tmp_path, layout, words):
    if layout == "mixed":
        solid(tmp_path / "a.png", RED)
        solid(tmp_path / "cls" / "b.png", RED)
    elif layout == "sizes":
        solid(tmp_path / "a.png", RED, (4, 4))
        solid(tmp_path / "b.png", RED, (5, 4))
    (tmp_path / "notes.txt").write_text("not an image, skipped")
    with pytest.raises(DataError, match=words) as info:
        read_image_folder(tmp_path)
    assert "\n" not in str(info.value)
    if layout == "sizes":
        assert "--image-size" in str(info.value)


def test_arrays_channels_last_bytes_become_channels_first_in_0_1(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 6, 3), dtype=np.uint8)
    np.savez(tmp_path / "a.npz", x=images, y=np.array([0, 1, 0, 1, 1]))
    x, y, record = read_arrays(tmp_path / "a.npz")
    assert record["image_shape"] == [3, 4, 6] and y.tolist() == [0, 1, 0, 1, 1]
    want = torch.from_numpy(images).permute(0, 3, 1, 2).reshape(5, -1).float() / 255
    assert torch.equal(x, want)
    torch.save({"images": torch.from_numpy(images[..., 0]), "labels": torch.arange(5)},
               tmp_path / "g.pt")
    x, y, record = read_arrays(tmp_path / "g.pt")
    assert record["image_shape"] == [1, 4, 6] and torch.equal(y, torch.arange(5))


def test_vectors_are_standardised_with_the_training_rows_statistics(tmp_path):
    x = np.random.default_rng(1).normal(3.0, 2.0, (40, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    splits, record = load_source(tmp_path / "v.npy", valid=5, test=5, seed=2)
    rows = split_rows(None, 40, {"test": 5, "valid": 5}, 2)
    mean, std = x[rows["train"]].mean(0), x[rows["train"]].std(0)
    assert np.allclose(record["scaling"]["mean"], mean, atol=1e-5)
    assert torch.allclose(splits["test"].x, torch.from_numpy((x[rows["test"]] - mean) / std),
                          atol=1e-5)
    assert torch.allclose(splits["train"].x.mean(0), torch.zeros(3), atol=1e-5)
    again = load_like(tmp_path / "v.npy", record)  # a new file, scaled as the run's data
    assert torch.allclose(again.x[rows["test"]], splits["test"].x, atol=1e-6)


def test_splits_are_random_disjoint_stratified_and_seeded():
    y = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)  # a file ordered by class
    rows = split_rows(y, 100, {"test": 10, "valid": 20}, seed=0)
    assert sorted(torch.cat(list(rows.values())).tolist()) == list(range(100))
    assert torch.bincount(y[rows["test"]]).tolist() == [6, 3, 1]
    assert torch.bincount(y[rows["valid"]]).tolist() == [12, 6, 2]
    assert rows["test"].max() >= 60  # not the first rows of the file
    again = split_rows(y, 100, {"test": 10, "valid": 20}, seed=0)
    other = split_rows(y, 100, {"test": 10, "valid": 20}, seed=1)
    assert torch.equal(again["test"], rows["test"]) and not torch.equal(other["test"],
                                                                          rows["test"])


@pytest.mark.parametrize("case, words", [
    ("nan", r"1 NaN or infinite values \(first at row 1, column 0\)"),
    ("y_shape", r"y has shape \(3, 1\)"),
    ("y_float", "non-whole values"),
    ("range", "image values range from -1 to 2"),
    ("keys", "name the data array x"),
    ("damaged", "cannot read"),
    ("objects", "cannot read"),
    ("one_d", "expected N >= 1 rows"),
])
def test_every_bad_array_file_is_one_line(tmp_path, case, words):
    path = tmp_path / ("a.npz" if case in ("y_shape", "y_float", "keys", "damaged")
                       else "a.npy")
    x = np.zeros((3, 2), dtype=np.float32)
    if case == "nan":
        x[1, 0] = np.nan
        np.save(path, x)
    elif case == "y_shape":
        np.savez(path, x=x, y=np.zeros((3, 1)))
    elif case == "y_float":
        np.savez(path, x=x, y=np.array([0, 0.5, 1]))
    elif case == "range":
        np.save(path, np.linspace(-1, 2, 48).reshape(3, 4, 4))
    elif case == "keys":
        np.savez(path, a=x, b=x)
    elif case == "damaged":
        path.write_bytes(b"PK\x03\x04 not really a zip")
    elif case == "objects":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif case == "one_d":
        np.save(path, np.zeros(3))
    with pytest.raises((DataError, ValueError), match=words) as info:
        read_arrays(path)
    assert "\n" not in str(info.value)


def test_a_path_names_its_kind_or_is_refused_in_one_line(tmp_path, folder):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    (tmp_path / "w.xlsx").write_text("")
    assert source_kind(folder) == "images" and source_kind(tmp_path / "t.csv") == "table"
    with pytest.raises(DataError, match="unknown kind of file .xlsx"):
        source_kind(tmp_path / "w.xlsx")
    with pytest.raises(DataError, match="no such file or folder"):
        source_kind(tmp_path / "nothing.npy")


def test_load_dataset_load_splits_and_fit_take_a_path(tmp_path, folder):
    from guides import make_guide
    from inference import fit, load_dataset, load_splits
    from models import make_model

    test = load_dataset(folder, "test", image_size=4, test=2)
    assert test.x.shape == (2, 48) and test.image_shape == (3, 4, 4)
    assert sorted(test.y.tolist()) == [0, 1]  # stratified: one of each class
    train, valid, held = load_splits(folder, valid=1, test=2, image_size=4)
    assert (len(train), len(valid), len(held)) == (2, 1, 2)
    with pytest.raises(ValueError, match="hold out rows with valid=N"):
        load_dataset(folder, "valid")
    x = np.random.default_rng(0).normal(size=(12, 3)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    model = make_model("gaussian_mlp", x_dim=3, z_dim=2, hidden=(8,))
    guide = make_guide("gaussian_mlp", x_dim=3, z_dim=2, hidden=(8,))
    history = fit(model, guide, str(tmp_path / "v.npy"), epochs=1, progress=False,
                  divergence=None)
    assert len(history) == 1 and np.isfinite(history.records[0]["train_elbo"])


def test_a_table_goes_to_the_table_reader_and_is_scaled_with_the_training_rows(
        tmp_path, monkeypatch):
    """The contract with inference.owndata.tables: read_table(path, schema) gives every row
    and a record; scale(data, record, train_rows) is called with the training rows only."""
    import sys
    import types

    from inference.data import TensorData

    seen = {}

    def read_table(path, schema=None):
        seen["schema"] = schema
        x = torch.arange(40.0).reshape(20, 2)
        return TensorData(x, info={"schema": [{"name": "a"}, {"name": "b"}]}), {
            "sha256": "0123", "columns": ["a", "b"]}

    def scale(data, record, rows):
        seen["rows"] = rows
        return data, {**record, "scaling": {"kind": "standardise", "rows": len(rows)}}

    fake = types.ModuleType("inference.owndata.tables")
    fake.read_table, fake.scale = read_table, scale
    monkeypatch.setitem(sys.modules, "inference.owndata.tables", fake)
    monkeypatch.setattr(inference.owndata, "tables", fake, raising=False)  # if imported before
    (tmp_path / "t.csv").write_text("a,b\n")
    splits, record = load_source(tmp_path / "t.csv", valid=4, test=2, schema="s.json")
    assert seen["schema"] == "s.json" and len(seen["rows"]) == 14
    assert torch.equal(splits["train"].x[:, 0] / 2, seen["rows"].float())
    assert record["kind"] == "table" and record["table"]["columns"] == ["a", "b"]
    assert record["scaling"] == {"kind": "standardise", "rows": 14} and record["sha256"] == "0123"
    assert splits["test"].info["schema"] == [{"name": "a"}, {"name": "b"}]
    with pytest.raises(ValueError, match="--image-size and --channels are for images"):
        load_source(tmp_path / "t.csv", image_size=32)
