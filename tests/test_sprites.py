"""The procedural dSprites: hand-computed pixels, which combinations coincide, the splits,
and DeepMind's file read through the same interface."""

import hashlib
import io
import math
import zipfile

import numpy as np
import pytest
import torch

from inference import DataError, load_dataset
from inference.disentangle import dsprites
from inference.disentangle.data import TEST, TRAIN, split_rows
from inference.disentangle.sprites import Sprites, factor_values, render, stamps


def image(*factors):
    return render(torch.tensor([factors]))[0]  # (64, 64) uint8


def test_square_and_ellipse_pixels_by_hand():
    # square, scale 1, angle 0, centre (16, 16): half side 14/√2 = 9.90 px, so the pixel
    # centres j + 0.5 with |j + 0.5 − 16| ≤ 9.90 are on: rows and columns 6..25
    expected = torch.zeros(64, 64, dtype=torch.uint8)
    expected[6:26, 6:26] = 1
    assert torch.equal(image(0, 5, 0, 0, 0), expected)
    # ellipse, scale 1 (axes 14 and 7 px), angle 0: row 16 (dy = 0.5) spans |dx| ≤ 13.96,
    # columns 2..29; row 9 (dy = −6.5) spans |dx| ≤ 14 √(1 − (6.5/7)²) = 5.20, columns 11..20
    ellipse = image(1, 5, 0, 0, 0)
    assert ellipse[16].nonzero().flatten().tolist() == list(range(2, 30))
    assert ellipse[9].nonzero().flatten().tolist() == list(range(11, 21))
    assert ellipse[:9].sum() == 0 and ellipse[23:].sum() == 0  # |dy| ≤ 7


def test_orientation_turns_counter_clockwise_on_screen():
    theta = factor_values()["orientation"][4].item()  # 4 · 2π/39 = 36.9°
    # 12 px along the ellipse's long axis, (cos θ, sin θ) with y up: column 16 + 9.6, row
    # 16 − 7.2; its mirror image in the horizontal axis lies on the short side, outside
    col, up = 16 + 12 * math.cos(theta), 12 * math.sin(theta)
    ellipse = image(1, 5, 4, 0, 0)
    assert ellipse[int(16 - up), int(col)] == 1 and ellipse[int(16 + up), int(col)] == 0


def test_position_moves_the_sprite_one_pixel_per_step_and_scale_grows_it():
    heart = image(2, 3, 7, 0, 0)
    moved = image(2, 3, 7, 31, 5)  # x + 31 columns, y + 5 rows
    assert torch.equal(moved[5:, 31:], heart[:59, :33]) and moved.sum() == heart.sum()
    areas = [image(2, s, 0, 10, 10).sum().item() for s in range(6)]
    assert areas == sorted(areas) and len(set(areas)) == 6
    assert image(2, 5, 0, 0, 0)[:, :2].sum() == 0  # two pixels clear of the border
    assert image(2, 5, 0, 31, 31)[62:].sum() == 0


def _trimmed_stamps():
    """Each stamp as (pattern id, top-left of its bounding box)."""
    s = stamps().numpy().reshape(720, 28, 28)
    ids, origins, patterns = np.zeros(720, int), np.zeros((720, 2), int), {}
    for k in range(720):
        rows, cols = np.flatnonzero(s[k].any(1)), np.flatnonzero(s[k].any(0))
        t = s[k][rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        ids[k] = patterns.setdefault((t.shape, t.tobytes()), len(patterns))
        origins[k] = rows[0], cols[0]
    return ids, origins


def test_which_combinations_give_the_same_image():
    """An image is its stamp pasted at the position, the whole stamp inside the canvas, so
    two images are equal exactly when their trimmed stamps are and they land on the same
    pixels. Orientation 0 and 2π (indices 0 and 39) coincide for every sprite, as in
    dSprites; small squares also coincide when their angles differ by less than 14° modulo a
    quarter turn (both nearly axis-aligned, at pixel resolution); nothing else."""
    ids, origins = _trimmed_stamps()
    pos = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1).reshape(-1, 2)
    keys = (ids[:, None] * 10_000 + (origins[:, None, 0] + pos[None, :, 0]) * 100
            + origins[:, None, 1] + pos[None, :, 1])  # (720, 1024): one per image
    per_shape = [np.unique(keys.reshape(3, -1)[s]).size for s in range(3)]
    assert per_shape == [188_416, 239_616, 239_616]  # 245,760 each; 39/40 of it for two
    assert np.unique(keys).size == 667_648  # of 737,280
    same = ids * 10_000 + origins[:, 0] * 100 + origins[:, 1]
    angles = factor_values()["orientation"].numpy()
    for k in range(720):
        shape, rest = divmod(k, 240)
        for j in np.flatnonzero(same == same[k]):
            if j == k:
                continue
            assert j // 240 == shape and (j % 240) // 40 == rest // 40  # shape, scale
            turn = abs(angles[j % 40] - angles[rest % 40])
            quarter = math.pi / 2 if shape == 0 else 2 * math.pi  # squares: quarter turns
            assert min(turn % quarter, quarter - turn % quarter) < math.radians(14)


@pytest.mark.slow
def test_every_rendered_image_by_brute_force():
    """All 737,280 renders, hashed: the count of distinct images the stamp argument gives."""
    data, digests = Sprites(), set()
    for start in range(0, len(data), 65_536):
        idx = torch.arange(start, min(start + 65_536, len(data)))
        packed = np.packbits(render(data.factors_of(idx)).numpy(), axis=-1)
        digests.update(hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in packed)
    assert len(digests) == 667_648


def test_factor_index_round_trip_and_sampler():
    data = Sprites()
    idx = torch.tensor([0, 1, 32, 1024, 40_960, 737_279])
    factors = data.factors_of(idx)
    assert factors[-1].tolist() == [2, 5, 39, 31, 31] and factors[2].tolist() == [0, 0, 0, 1, 0]
    assert torch.equal(data.index(factors), idx)
    a, b = data.sample_factors(5000, 3), data.sample_factors(5000, 3)
    assert torch.equal(a, b) and a.shape == (5000, 5)
    assert a.min(0).values.tolist() == [0] * 5 and a.max(0).values.tolist() == [2, 5, 39, 31, 31]
    with pytest.raises(ValueError, match="out of range"):
        render(torch.tensor([[3, 0, 0, 0, 0]]))


def test_splits_are_disjoint_random_and_fixed():
    total = len(Sprites())
    test, valid, train = (split_rows(total, s, 5000) for s in ("test", "valid", "train"))
    assert (len(test), len(valid), len(train)) == (TEST, 5000, TRAIN)
    union = set(test.tolist()) | set(valid.tolist()) | set(train.tolist())
    assert len(union) == TEST + 5000 + TRAIN
    assert test.max() > 700_000 and test.min() < 1000  # spread over the whole space
    assert torch.equal(test, split_rows(total, "test", 0))  # the test set never moves
    assert not torch.equal(test[:100], test[:100].sort().values)  # random order, not sorted


def test_load_dataset_gives_binary_images_of_the_rendered_combinations():
    test, valid = load_dataset("sprites", "test"), load_dataset("sprites", "valid", valid=500)
    assert test.x.shape == (TEST, 4096) and valid.x.shape == (500, 4096)
    assert test.image_shape == (1, 64, 64) and test.y is None and test.binarize == "none"
    rows = split_rows(len(Sprites()), "test", 0)[:3]
    assert torch.equal(test.x[:3], Sprites().observations(Sprites().factors_of(rows)))
    assert "random 10000 of the 737280" in test.info["rows"]
    assert set(test.x.unique().tolist()) == {0.0, 1.0}


def _fake_npz(path, images):
    """A dSprites-shaped npz (its imgs.npy member) holding ``images``."""
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, images)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("imgs.npy", buffer.getvalue())


def test_dsprites_file_is_read_bit_packed_and_checked(tmp_path, monkeypatch):
    images = render(Sprites().sample_factors(7, 0)).numpy()
    _fake_npz(tmp_path / "a.npz", images)
    packed = dsprites.read_packed(tmp_path / "a.npz", count=7)
    assert packed.shape == (7, 64, 8) and np.array_equal(np.unpackbits(packed, axis=-1), images)
    with pytest.raises(DataError, match="not .*is it the dSprites file"):
        dsprites.read_packed(tmp_path / "a.npz")  # 7 images, not 737,280
    (tmp_path / "b.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="cannot read .* as the dSprites file"):
        dsprites.read_packed(tmp_path / "b.npz", count=7)
    with pytest.raises(DataError, match="is not in .*dSprites.*--dataset sprites"):
        load_dataset("dsprites", "test", data_dir=tmp_path, download=False)

    def fake_download(url, target):  # a download that brings the wrong bytes
        assert url == dsprites.URL
        with open(target, "wb") as f:
            f.write(b"wrong")

    monkeypatch.setattr(dsprites.urllib.request, "urlretrieve", fake_download)
    with pytest.raises(DataError, match="does not match its published digests"):
        load_dataset("dsprites", "test", data_dir=tmp_path)
    assert not list((tmp_path / "dSprites").iterdir())  # nothing half-written left
