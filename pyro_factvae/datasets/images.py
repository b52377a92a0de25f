"""Images as groups: quadrant views (digits, Fashion-MNIST) and multi-view folders (CVL faces).

* :func:`quadrant_data` splits square images into four quadrant groups and removes whole
  quadrants at random (a missing view).
* :func:`load_digits_quadrants`: scikit-learn's bundled 8x8 digits (optional dependency).
* :func:`read_idx` / :func:`load_fashion_mnist`: the MNIST ``idx`` format, as shipped by
  Debian's ``dataset-fashion-mnist`` in ``/usr/share/datasets/fashion-mnist``;
  :func:`open_idx` maps one without reading it, and :class:`QuadrantDataset` serves the
  quadrants of such images row by row (a torch ``Dataset`` for
  :meth:`~pyro_factvae.GroupedData.from_dataset <pyro_factvae.data.GroupedData.from_dataset>`).
* :func:`load_views`: the CVL face database layout (paper sec. 4.3): one folder per subject,
  files ``MVC-001F`` .. ``MVC-007F`` (any image extension) for the 7 views; a missing file is
  a missing view. Images are centre-cropped, converted to grayscale, resized and scaled to
  ``[-1, 1]``, as in the authors' preprocessing.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from ..checks import non_negative_int, number, numpy_seed

__all__ = [
    "CVL_VIEWS",
    "FASHION_MNIST_DIR",
    "QUADRANTS",
    "QuadrantDataset",
    "load_digits_quadrants",
    "load_fashion_mnist",
    "load_views",
    "open_idx",
    "quadrant_data",
    "read_idx",
]

QUADRANTS = ("top_left", "top_right", "bottom_left", "bottom_right")

#: CVL file stem of each view (paper sec. 4.3 / NOTES): 5 rotations and 2 smiles
CVL_VIEWS: dict[str, str] = {
    "right": "MVC-001F",
    "half_right": "MVC-002F",
    "front": "MVC-003F",
    "half_left": "MVC-004F",
    "left": "MVC-005F",
    "smile": "MVC-006F",
    "teeth_smile": "MVC-007F",
}

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".pgm", ".ppm")


def quadrant_data(images: np.ndarray, missing: float = 0.0, seed: int = 0, pad_to: int = 0):
    """Four quadrant groups of ``(n, s, s)`` images, each missing with probability ``missing``.

    Missingness is independent per (row, quadrant), drawn from ``seed`` (an integer); a row
    that would lose all four keeps one at random. ``pad_to`` zero-pads every quadrant to
    ``pad_to x pad_to`` (e.g. 14 -> 16 so that strided convolutions halve cleanly). Returns a
    :class:`~pyro_factvae.GroupedData` with groups :data:`QUADRANTS`, each ``(n, h * h)``.
    """
    from ..data import GroupedData

    seed, pad_to = numpy_seed(seed), non_negative_int("pad_to", pad_to)
    if not 0.0 <= number("missing", missing) <= 1.0:
        raise ValueError(f"missing is a probability: it must be in [0, 1], got {missing}")
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] % 2:
        raise ValueError(f"expected (n, s, s) images with even s, got shape {images.shape}")
    n, s, _ = images.shape
    h = s // 2
    parts = [images[:, :h, :h], images[:, :h, h:], images[:, h:, :h], images[:, h:, h:]]
    if pad_to:
        if pad_to < h:
            raise ValueError(f"pad_to={pad_to} is smaller than the quadrant size {h}")
        lo = (pad_to - h) // 2
        widths = ((0, 0), (lo, pad_to - h - lo), (lo, pad_to - h - lo))
        parts = [np.pad(p, widths) for p in parts]
    groups = {name: p.reshape(n, -1).copy() for name, p in zip(QUADRANTS, parts)}
    if missing > 0:
        rng = np.random.default_rng(seed)
        gone = rng.random((n, 4)) < missing
        every = gone.all(1)
        gone[every, rng.integers(0, 4, size=int(every.sum()))] = False
        for j, name in enumerate(QUADRANTS):
            groups[name][gone[:, j]] = np.nan
    return GroupedData(groups)


def load_digits_quadrants(missing: float = 0.0, seed: int = 0):
    """scikit-learn's 1797 bundled 8x8 digits in ``[0, 1]``, as four 4x4 quadrants.

    Returns ``(data, labels)``. Needs ``scikit-learn`` (``pip install pyro_factvae[examples]``).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError(
            "the digits data come with scikit-learn: pip install scikit-learn"
        ) from None
    digits = load_digits()
    return quadrant_data(digits.images / 16.0, missing, seed), digits.target


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an ``idx`` file (``.gz`` or plain): the MNIST / Fashion-MNIST array format.

    Only unsigned-byte data (type code ``0x08``) is supported; anything else, a bad magic
    number or a truncated file raises a ``ValueError`` naming the file.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot read the idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise ValueError(f"{path}: truncated or padded: header says shape {shape}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _decompress(path: Path, cache: Path, stamp: Path, source: str) -> None:
    """``path`` (gzip) decompressed into ``cache`` through a temporary file of its own beside
    it, renamed into place when complete (no half-written cache, and two processes never
    write one file), with ``stamp`` (``source``) written after it and removed before."""
    try:
        handle, part = tempfile.mkstemp(dir=cache.parent, prefix=cache.name + ".", suffix=".part")
    except OSError as exc:
        raise ValueError(f"cache {cache}: cannot be written ({exc})") from None
    try:
        with os.fdopen(handle, "wb") as dst, gzip.open(path, "rb") as src:
            while True:
                try:
                    chunk = src.read(1 << 20)
                except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
                    raise ValueError(f"{path}: not a readable gzip file ({exc})") from None
                if not chunk:
                    break
                dst.write(chunk)
        stamp.unlink(missing_ok=True)  # no stamp of the file it replaces beside the new cache
        os.replace(part, cache)
        stamp.write_text(source)
    except OSError as exc:  # the cache's own: a full disk, a folder in its place
        raise ValueError(f"cache {cache}: cannot be written ({exc})") from None
    finally:
        Path(part).unlink(missing_ok=True)


def open_idx(path: str | os.PathLike, cache: str | os.PathLike | None = None) -> np.memmap:
    """An unsigned-byte ``idx`` file as a read-only ``numpy.memmap``: nothing is read into
    memory until indexed. A ``.gz`` file is first decompressed, a chunk at a time, into
    ``cache`` (required for ``.gz``; reused while it was made from this file, as it is now:
    its path, size and modification time are kept beside it, in ``cache + ".source"``)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.suffix == ".gz":
        if cache is None:
            raise ValueError(f"{path} is compressed: give cache=PATH to decompress it into")
        cache = Path(cache)
        if cache.resolve() == path.resolve():
            raise ValueError(f"cache {cache} is the compressed file itself: give another path")
        stat = path.stat()
        source = f"{path.resolve()}\n{stat.st_size}\n{stat.st_mtime_ns}\n"
        stamp = cache.with_name(cache.name + ".source")
        made = cache.is_file() and stamp.is_file() and stamp.read_text() == source
        if not made:
            _decompress(path, cache, stamp, source)
        path = cache
    with open(path, "rb") as f:
        magic = f.read(4)
        if len(magic) < 4 or magic[:3] != b"\x00\x00\x08":
            raise ValueError(f"{path}: not an unsigned-byte idx file (bad magic number)")
        dims = f.read(4 * magic[3])
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(magic[3]))
    header = 4 + 4 * len(shape)
    if path.stat().st_size != header + int(np.prod(shape)):
        raise ValueError(f"{path}: truncated or padded: header says shape {shape}")
    return np.memmap(path, dtype=np.uint8, mode="r", offset=header, shape=shape)


class QuadrantDataset(Dataset):
    """The four quadrants (:data:`QUADRANTS`) of each of ``(n, s, s)`` images as a torch
    ``Dataset``: item ``i`` is ``{quadrant: (s/2 * s/2,) float32}``, divided by ``divisor``
    (as :func:`load_fashion_mnist` scales). Reads one image per item, so a ``numpy.memmap``
    (:func:`open_idx`) is never loaded whole."""

    def __init__(self, images: np.ndarray, divisor: float = 255.0) -> None:
        if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] % 2:
            raise ValueError(f"expected (n, s, s) images with even s, got shape {images.shape}")
        self.images, self.divisor = images, number("divisor", divisor, strict=True)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        image = np.asarray(self.images[i], dtype=np.float32) / self.divisor
        h = image.shape[0] // 2
        parts = (image[:h, :h], image[:h, h:], image[h:, :h], image[h:, h:])
        return {name: p.reshape(-1) for name, p in zip(QUADRANTS, parts)}


def load_fashion_mnist(
    directory: str | os.PathLike = FASHION_MNIST_DIR, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST images ``(n, 28, 28)`` in ``[0, 1]`` and labels, from idx files.

    ``split`` is ``"train"`` (60,000) or ``"t10k"`` (10,000). The default folder is where
    Debian's ``dataset-fashion-mnist`` package puts them (``apt-get install
    dataset-fashion-mnist``).
    """
    if split not in ("train", "t10k"):
        raise ValueError(f"split must be 'train' or 't10k', got {split!r}")
    directory = Path(directory)
    images = directory / f"{split}-images-idx3-ubyte.gz"
    if not images.exists():
        raise ValueError(
            f"no {images}; install Debian's dataset-fashion-mnist or pass the folder "
            "holding the idx files"
        )
    x = read_idx(images)
    y = read_idx(directory / f"{split}-labels-idx1-ubyte.gz")
    if x.ndim != 3 or y.shape != (len(x),):
        raise ValueError(f"{directory}: images {x.shape} and labels {y.shape} do not match")
    return x.astype(np.float32) / 255.0, y.astype(np.int64)


def _read_view(path: Path, size: int, crop: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode.startswith("I"):  # 16-bit grey ("I" before Pillow 10.3): "L" clips
                wide = np.asarray(image, dtype=np.float64)
                if wide.size and (wide.min() < 0 or wide.max() > 65535):
                    raise ValueError(
                        f"{path}: a {image.mode!r} image with values outside 0..65535, whose "
                        "scale is its own: convert it to 8 or 16 bits first"
                    )
                gray = Image.fromarray(np.round(wide / 65535.0 * 255.0).astype(np.uint8))
            elif image.mode == "F":
                raise ValueError(
                    f"{path}: a float image, whose scale is its own: convert it to 8 or 16 "
                    "bits first"
                )
            else:
                gray = image.convert("L")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from None
    w, h = gray.size
    side = min(crop, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    gray = gray.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    return np.asarray(gray, dtype=np.float32) / 127.5 - 1.0


def load_views(
    directory: str | os.PathLike,
    views: dict[str, str] = CVL_VIEWS,
    size: int = 64,
    crop: int = 450,
    subjects: Sequence[str] | None = None,
):
    """Multi-view images, one folder per subject, one file per view (the CVL layout).

    Parameters
    ----------
    directory : path-like
        Holds one sub-folder per subject (sorted by name), each holding files whose stem is a
        value of ``views`` (e.g. ``MVC-003F.JPG``); a missing file is a missing view.
    views : dict
        ``{group name: file stem}``; default: the 7 CVL views.
    size, crop : int
        Centre crop ``crop x crop`` (or the short side if smaller), then resize to
        ``size x size``; pixels scaled to ``[-1, 1]``.
    subjects : sequence of str, optional
        Sub-folders to read, in this order (default: all, sorted by name); each must exist.

    Returns
    -------
    (GroupedData, list of str)
        One ``size * size`` group per view, and the subject of each row. Subjects with no
        view at all are skipped.
    """
    from ..data import GroupedData

    for name, value in (("size", size), ("crop", crop)):  # before any image is read
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"{name} must be an integer >= 2 (pixels), got {value!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"no folder {directory}")
    folders = sorted(p for p in directory.iterdir() if p.is_dir())
    if subjects is not None:
        if isinstance(subjects, (str, bytes)):
            raise ValueError(f"subjects must be a list of folder names, e.g. [{subjects!r}]")
        subjects = [str(s) for s in subjects]
        by_name = {p.name: p for p in folders}
        unknown = [s for s in subjects if s not in by_name]
        if unknown:
            shown = sorted(by_name)[:10]
            raise ValueError(f"{directory} has no subject folders {unknown}; it has {shown}")
        folders = [by_name[s] for s in dict.fromkeys(subjects)]
    rows, names = [], []
    for folder in folders:
        files: dict[str, list[Path]] = {}
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                files.setdefault(p.stem.upper(), []).append(p)
        paths = {view: files.get(stem.upper(), [None])[0] for view, stem in views.items()}
        for view, stem in views.items():
            if len(files.get(stem.upper(), [])) > 1:
                same = [p.name for p in files[stem.upper()]]
                raise ValueError(
                    f"{folder}: view {view!r} could be any of {same}; keep one of them"
                )
        if all(path is None for path in paths.values()):
            continue
        rows.append(
            {
                view: _read_view(path, size, crop).ravel()
                if path is not None
                else np.full(size * size, np.nan, dtype=np.float32)
                for view, path in paths.items()
            }
        )
        names.append(folder.name)
    if not rows:
        raise ValueError(f"{directory}: no subject folder holds any of {list(views.values())}")
    return GroupedData({v: np.stack([r[v] for r in rows]) for v in views}), names
