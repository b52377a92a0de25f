import gzip
import os

import numpy as np
import pytest

from pyro_factvae.datasets.images import (
    CVL_VIEWS,
    QUADRANTS,
    QuadrantDataset,
    load_fashion_mnist,
    load_views,
    open_idx,
    quadrant_data,
    read_idx,
)


def test_quadrant_data_splits_pads_and_removes_whole_quadrants():
    images = np.arange(5 * 4 * 4, dtype=float).reshape(5, 4, 4)
    data = quadrant_data(images, missing=0.0)
    parts = data.to_numpy()
    np.testing.assert_array_equal(parts["top_right"][1], images[1, :2, 2:].ravel())
    np.testing.assert_array_equal(parts["bottom_left"][2], images[2, 2:, :2].ravel())
    padded = quadrant_data(images, pad_to=4).to_numpy()["top_left"].reshape(5, 4, 4)
    np.testing.assert_array_equal(padded[0, 1:3, 1:3], images[0, :2, :2])
    assert padded[0, 0].sum() == 0
    gone = quadrant_data(np.zeros((400, 4, 4)), missing=0.5, seed=1).observed.numpy()
    assert 0.35 < 1 - gone.mean() < 0.55 and gone.any(1).all()
    with pytest.raises(ValueError, match="even s"):
        quadrant_data(np.zeros((2, 3, 3)))


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_round_trip_and_fashion_mnist_layout(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(3, 28, 28))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", x)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 9]))
    np.testing.assert_array_equal(read_idx(tmp_path / "t10k-images-idx3-ubyte.gz"), x)
    images, labels = load_fashion_mnist(tmp_path, "t10k")
    assert images.shape == (3, 28, 28) and images.max() <= 1.0 and labels.tolist() == [1, 2, 9]
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path, "train")


def test_idx_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match=r"bad\.gz: not an unsigned-byte idx"):
        read_idx(bad)
    short = tmp_path / "short.gz"
    with gzip.open(short, "wb") as f:
        f.write(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(ValueError, match=r"short\.gz: truncated"):
        read_idx(short)


@pytest.fixture
def cvl(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for subject, skip in (("01", ()), ("02", ("MVC-007F",)), ("03", tuple(CVL_VIEWS.values()))):
        folder = tmp_path / subject
        folder.mkdir()
        for stem in CVL_VIEWS.values():
            if stem not in skip:
                rgb = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
                Image.fromarray(rgb).save(
                    folder / f"{stem}.JPG" if subject == "01" else folder / f"{stem.lower()}.png"
                )
    return tmp_path


def test_cvl_layout_missing_file_is_missing_view(cvl):
    data, subjects = load_views(cvl, size=16, crop=24)
    assert subjects == ["01", "02"]  # 03 has no view at all
    assert data.names == list(CVL_VIEWS)
    assert data.dims == [256] * 7
    observed = data.observed.numpy()
    assert observed[0].all() and observed[1].tolist() == [True] * 6 + [False]
    front = data.to_numpy()["front"]
    assert front.min() >= -1.0 and front.max() <= 1.0


def test_cvl_subjects_are_read_in_the_order_given_and_unknown_ones_named(cvl):
    data, subjects = load_views(cvl, size=8, crop=24, subjects=["02", "01"])
    assert subjects == ["02", "01"] and data.observed[0].tolist() == [True] * 6 + [False]
    with pytest.raises(ValueError, match=r"has no subject folders \['zz'\]; it has \['01'"):
        load_views(cvl, size=8, subjects=["01", "zz"])
    with pytest.raises(ValueError, match=r"subjects must be a list of folder names, e.g. \['01'\]"):
        load_views(cvl, size=8, subjects="01")


def test_cvl_unreadable_image_names_the_file(cvl):
    (cvl / "01" / "MVC-003F.JPG").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"01/MVC-003F\.JPG: unreadable image"):
        load_views(cvl, size=16)
    with pytest.raises(ValueError, match="no folder"):
        load_views(cvl / "missing")


def test_cvl_two_files_for_one_view_are_refused_and_an_image_too_large_is_named(cvl, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((30, 40), np.uint8)).save(cvl / "01" / "MVC-001F.png")
    with pytest.raises(ValueError, match=r"could be any of \['MVC-001F.JPG', 'MVC-001F.png'\]"):
        load_views(cvl, size=8)
    (cvl / "01" / "MVC-001F.png").unlink()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as if each image were too large
    with pytest.raises(ValueError, match=r"01/MVC-001F\.JPG: unreadable image"):
        load_views(cvl, size=8)


def test_quadrant_names_are_shared_with_bars():
    from pyro_factvae.datasets import bars

    assert bars.QUADRANTS == QUADRANTS


def test_a_mapped_idx_file_streams_the_same_quadrants_as_the_loaded_images(tmp_path):
    from pyro_factvae import GroupedData

    x = np.random.default_rng(0).integers(0, 256, size=(37, 6, 6))
    write_idx(tmp_path / "img.gz", x)
    with pytest.raises(ValueError, match="give cache=PATH"):
        open_idx(tmp_path / "img.gz")
    mapped = open_idx(tmp_path / "img.gz", cache=tmp_path / "img.idx")
    assert isinstance(mapped, np.memmap) and mapped.shape == (37, 6, 6)
    np.testing.assert_array_equal(mapped, x)
    streamed = GroupedData.from_dataset(QuadrantDataset(mapped), batch_size=8)
    loaded = quadrant_data(read_idx(tmp_path / "img.gz").astype(np.float32) / 255.0)
    assert streamed.names == list(QUADRANTS)
    np.testing.assert_array_equal(streamed.matrix.numpy(), loaded.matrix.numpy())
    (tmp_path / "cut.idx").write_bytes((tmp_path / "img.idx").read_bytes()[:-5])
    with pytest.raises(ValueError, match="truncated"):
        open_idx(tmp_path / "cut.idx")
    with pytest.raises(ValueError, match="even s"):
        QuadrantDataset(np.zeros((2, 3, 3)))


def test_open_idx_refuses_a_missing_or_damaged_file_and_keeps_no_broken_cache(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        open_idx(tmp_path / "none.gz", cache=tmp_path / "c.idx")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    for _ in range(2):  # the second call is refused for the same reason
        with pytest.raises(ValueError, match="bad.gz: not a readable gzip file"):
            open_idx(tmp_path / "bad.gz", cache=tmp_path / "c.idx")
    assert not (tmp_path / "c.idx").exists() and not list(tmp_path.glob("*.part"))
    good = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    write_idx(tmp_path / "good.gz", good)
    flipped = bytearray((tmp_path / "good.gz").read_bytes())
    flipped[15] ^= 0xFF  # a corrupt deflate stream: zlib's own error
    (tmp_path / "flip.gz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="flip.gz: not a readable gzip file"):
        open_idx(tmp_path / "flip.gz", cache=tmp_path / "c.idx")
    with pytest.raises(ValueError, match="flip.gz: cannot read the idx file"):
        read_idx(tmp_path / "flip.gz")
    assert not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError, match=r"cache .*nowhere.*cannot be written"):
        open_idx(tmp_path / "good.gz", cache=tmp_path / "nowhere" / "c.idx")
    before = (tmp_path / "good.gz").read_bytes()
    with pytest.raises(ValueError, match="is the compressed file itself"):
        open_idx(tmp_path / "good.gz", cache=tmp_path / "good.gz")
    assert (tmp_path / "good.gz").read_bytes() == before  # the source is left as it was


def test_an_idx_cache_serves_only_the_file_it_was_made_from(tmp_path):
    write_idx(tmp_path / "train.gz", np.zeros((5, 4, 4)))
    write_idx(tmp_path / "test.gz", np.ones((2, 4, 4)))
    assert open_idx(tmp_path / "train.gz", cache=tmp_path / "c.idx").shape == (5, 4, 4)
    again = open_idx(tmp_path / "test.gz", cache=tmp_path / "c.idx")  # another file: remade
    assert again.shape == (2, 4, 4) and again.max() == 1
    stamp = (tmp_path / "c.idx.source").read_text()
    assert open_idx(tmp_path / "test.gz", cache=tmp_path / "c.idx").shape == (2, 4, 4)
    assert (tmp_path / "c.idx.source").read_text() == stamp  # reused as it was


def test_bars_arguments_are_checked():
    from pyro_factvae.datasets import bars_data, make_bars

    for kwargs, message in [
        ({"n": 0}, "n must be a positive integer"),
        ({"n": 10, "missing": 1.5}, r"missing is a probability: it must be in \[0, 1\]"),
    ]:
        with pytest.raises(ValueError, match=message):
            bars_data(**kwargs)
    for kwargs, message in [
        ({"p": 1.5}, "p is a probability"),
        ({"noise": -1}, "noise must"),
        ({"size": 4.0}, "size must be a positive integer"),
        ({"size": 3}, "size must be an even number"),
        ({"value": float("nan")}, "value must be a finite number"),
        ({"seed": 1.5}, "seed must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            make_bars(10, **kwargs)
    assert make_bars(3, seed=None).shape == (3, 4, 4)  # fresh randomness
    with pytest.raises(ValueError, match="seed must be an integer"):
        bars_data(10, seed=None)
    from pyro_factvae.datasets.images import QuadrantDataset

    with pytest.raises(ValueError, match="divisor must be a finite number > 0"):
        QuadrantDataset(np.zeros((2, 4, 4)), divisor=0)


def test_load_views_refuses_sizes_that_leave_no_image(tmp_path):
    for kwargs in ({"crop": 0}, {"size": 0}, {"size": 1.5}):
        with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an integer >= 2"):
            load_views(tmp_path, **kwargs)


def test_the_views_example_refuses_a_split_that_leaves_no_subject(cvl, capsys):
    import runpy

    script = os.path.join(os.path.dirname(__file__), "..", "examples", "views.py")
    main = runpy.run_path(script)["main"]
    with pytest.raises(SystemExit) as stop:
        main(["--cvl", str(cvl), "--test-subjects", "5", "--epochs", "1", "--out", str(cvl)])
    said = capsys.readouterr().err
    assert stop.value.code == 2 and "--test-subjects 5 leaves no training subject of the 2" in said


def test_a_16_bit_grey_view_keeps_its_shades_and_a_float_one_is_refused(tmp_path):
    from PIL import Image

    from pyro_factvae.datasets.images import _read_view

    grey = tmp_path / "g16.png"
    Image.fromarray(np.full((8, 8), 30000, np.uint16)).save(grey)
    value = _read_view(grey, size=4, crop=8)
    np.testing.assert_allclose(value, round(30000 / 65535 * 255) / 127.5 - 1.0)  # not white
    floats = tmp_path / "f.tiff"
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(floats)
    with pytest.raises(ValueError, match=r"f\.tiff: a float image"):
        _read_view(floats, size=4, crop=8)
