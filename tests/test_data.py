"""Data: readers, binarization, the embedded default, the offline and bad-file errors."""

import gzip
import hashlib
import struct

import pytest
import torch

from inference import DataError, TensorData, load_dataset
from inference.datasets import read_amat, read_idx


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.dim()) + b"".join(
        struct.pack(">I", n) for n in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.numpy().tobytes())


def test_idx_round_trip_and_truncation(tmp_path):
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)
    _write_idx(tmp_path / "a-idx3-ubyte.gz", images)
    assert torch.equal(read_idx(tmp_path / "a-idx3-ubyte.gz"), images)
    raw = gzip.open(tmp_path / "a-idx3-ubyte.gz").read()
    (tmp_path / "b-idx3-ubyte").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated or corrupted"):
        read_idx(tmp_path / "b-idx3-ubyte")
    (tmp_path / "c-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read .*c-idx3-ubyte.gz"):
        read_idx(tmp_path / "c-idx3-ubyte.gz")


def test_amat_reader(tmp_path):
    rows = torch.bernoulli(torch.full((3, 784), 0.4))
    text = "".join(" ".join(str(int(v)) for v in r) + "\n" for r in rows)
    (tmp_path / "x.amat").write_text(text)
    assert torch.equal(read_amat(tmp_path / "x.amat"), rows)
    (tmp_path / "y.amat").write_text(text.replace("1", "2", 1))
    with pytest.raises(DataError, match="not a binarized-MNIST .amat file"):
        read_amat(tmp_path / "y.amat")


def test_embedded_default_ships_with_the_package():
    train, test = load_dataset("embedded", "train"), load_dataset("embedded", "test")
    assert train.x.shape == (10_000, 784) and test.x.shape == (2_000, 784)
    assert train.y.shape == (10_000,) and set(train.y.unique().tolist()) == set(range(10))
    assert 0 <= train.x.min() and train.x.max() <= 1 and train.binarize == "dynamic"
    assert set(test.x.unique().tolist()) == {0.0, 1.0}  # the test split is one fixed draw
    torch.testing.assert_close(test.x, load_dataset("embedded", "test").x)  # same seed, same draw


def test_dynamic_binarization_draws_afresh_each_batch():
    data = TensorData(torch.full((1000, 784), 0.5), binarize="dynamic")
    a, _ = data.head(1000)
    b, _ = data.head(1000)
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, b)
    assert a.mean().item() == pytest.approx(0.5, abs=0.01)


def test_finiteness_check_by_sum_accepts_an_overflowing_sum_and_finds_every_bad_value():
    """TensorData checks one sum first; a sum that overflows on finite values falls back to
    the full pass, and NaN, +inf, -inf and +inf with -inf (whose sum is NaN) are refused."""
    big = torch.full((3, 4), 3e38)  # finite, but the float32 sum overflows
    assert not torch.isfinite(big.sum())
    assert TensorData(big).x is big
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.zeros(3, 4)
        x[2, 1] = bad
        with pytest.raises(DataError, match="1 NaN or infinite values \\(first in row 2\\)"):
            TensorData(x)
    x = torch.zeros(3, 4)
    x[0, 0], x[1, 3] = float("inf"), -float("inf")
    with pytest.raises(DataError, match="2 NaN or infinite values \\(first in row 0\\)"):
        TensorData(x)


def test_tensor_data_rejects_bad_input():
    with pytest.raises(DataError, match="NaN or infinite values \\(first in row 1\\)"):
        TensorData(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
    with pytest.raises(DataError, match="needs x in \\[0, 1\\].*divide pixel bytes by 255"):
        TensorData(torch.full((2, 4), 255.0), binarize="dynamic")
    with pytest.raises(DataError, match="floating point.*x.float\\(\\) / 255"):
        TensorData(torch.zeros(2, 4, dtype=torch.uint8))
    with pytest.raises(DataError, match="one entry per row"):
        TensorData(torch.zeros(3, 4), torch.zeros(2))


def test_missing_folder_offline_is_one_clear_line(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("mnist", data_dir=tmp_path / "nowhere", download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "nowhere/MNIST/raw" in message and "VAE_LAB_DATA" in message


def test_failed_download_is_one_clear_line(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DataError, match="downloading it failed \\(OSError.*VAE_LAB_DATA"):
        load_dataset("mnist", data_dir=tmp_path, download=True)


def test_download_path_goes_through_torchvision(tmp_path, monkeypatch):
    """Online users get torchvision's download; its files are then read like local ones."""
    import torchvision

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            raw = tmp_path / "MNIST" / "raw"
            raw.mkdir(parents=True, exist_ok=True)
            prefix = "train" if train else "t10k"
            _write_idx(raw / f"{prefix}-images-idx3-ubyte.gz", torch.zeros(4, 28, 28,
                                                                           dtype=torch.uint8))
            _write_idx(raw / f"{prefix}-labels-idx1-ubyte.gz", torch.arange(4, dtype=torch.uint8))

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    data = load_dataset("mnist", "train", data_dir=tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True), (str(tmp_path), False, True)]
    assert data.x.shape == (4, 784) and data.y.tolist() == [0, 1, 2, 3]


def test_shared_data_is_read_byte_exact(data_dir):
    train = load_dataset("mnist", "train", binarize="none", download=False)
    test = load_dataset("mnist", "test", binarize="none", download=False)
    assert train.x.shape == (60_000, 784) and test.x.shape == (10_000, 784)
    digest = hashlib.md5((test.x * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()
    header = struct.pack(">IIII", 2051, 10000, 28, 28)
    expected = gzip.open(data_dir / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz").read()
    assert digest == hashlib.md5(expected[len(header):]).hexdigest()
    assert train.info["folder"].endswith("MNIST/raw") and train.info["binarize"] == "none"


@pytest.mark.parametrize("name,n", [("fashion-mnist", 10_000), ("binarized-mnist", 10_000)])
def test_other_shared_sets(data_dir, name, n):
    test = load_dataset(name, "test", download=False)
    assert test.x.shape == (n, 784)
    assert set(test.x.unique().tolist()) == {0.0, 1.0}
