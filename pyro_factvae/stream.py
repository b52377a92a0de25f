"""A torch ``Dataset`` written once, batch by batch, into a float32 ``numpy.memmap``.

:meth:`GroupedData.from_dataset <pyro_factvae.GroupedData.from_dataset>` is built on
:func:`dataset_to_memmap`: a ``DataLoader`` reads the items (one row each: per-group 1-D
values, NaN where a cell is missing), every batch is validated and written, zero-filled under
missing cells, into the rows of one ``(N, sum d_g)`` file-backed matrix. The first batch in
which an observed group misses a cell starts a bool memmap of the cell mask (the rows before it
filled from their group mask): data without missing cells never get one. Memory holds a
batch; the file holds the data, and training reads it page by page.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate

from .arrays import to_numpy
from .io import new_file_mode
from .masks import observed_from_nan
from .ranges import Range, column_ranges, merge_ranges, refuse_overflow
from .validation import check_names, fmt_rows, reject_inf

__all__ = ["dataset_to_memmap", "is_dataset"]


def is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a torch ``Dataset``."""
    return isinstance(obj, Dataset)


def _split(batch: Any, start: int) -> tuple[list[str], list[np.ndarray]]:
    """A collated batch of items ``start, start + 1, ...`` as group names and ``(B, d_g)``
    float arrays."""
    if isinstance(batch, Mapping):
        names = [str(k) for k in batch.keys()]
        parts = list(batch.values())
    elif isinstance(batch, Sequence) and not isinstance(batch, (str, torch.Tensor)):
        names = [f"g{i}" for i in range(len(batch))]
        parts = list(batch)
    else:
        raise ValueError(
            f"dataset item {start} is a {type(batch).__name__}; each item must be a sequence "
            "or a mapping of per-group 1-D values (e.g. return (x_a, x_b) or {'a': x_a, ...} "
            "from __getitem__)"
        )
    if not parts:
        raise ValueError(f"dataset item {start} holds no group")
    return names, [to_numpy(n, p) for n, p in zip(names, parts)]


class _Indexed(Dataset):
    """``dataset``'s items with their indices, so that a batch's problems name its items."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        if callable(getattr(dataset, "__getitems__", None)):  # a batched fetch, kept
            self.__getitems__ = lambda indices: list(zip(indices, dataset.__getitems__(indices)))

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Any]:
        return index, self.dataset[index]


def _row(value: Any) -> Any:
    """A group's value in an item as a row: a list or tuple of numbers (``None``: missing)
    as a float64 array, which ``default_collate`` stacks as rows (it would make one tensor
    per position of a list, the values of a batch transposed)."""
    if isinstance(value, (list, tuple)):
        return np.array(value, dtype=np.float64)
    return value


def _text_group(item: Any) -> tuple[str, Any] | None:
    """``(name, dtype)`` of the first group of ``item`` given as a numpy array of text."""
    if isinstance(item, Mapping):
        pairs = [(str(k), v) for k, v in item.items()]
    elif isinstance(item, (list, tuple)):
        pairs = [(f"g{i}", v) for i, v in enumerate(item)]
    else:
        return None
    for name, value in pairs:
        dtype = getattr(value, "dtype", None)
        if isinstance(dtype, np.dtype) and dtype.kind in "USO":
            if dtype.kind != "O" or any(isinstance(v, (str, bytes)) for v in value.flat):
                return name, dtype
    return None


def _groups_of(item: Any) -> tuple[list[str], list[int]]:
    """An item's group names and widths, as its batch is checked."""
    if isinstance(item, Mapping):
        names, values = [str(k) for k in item], list(item.values())
    else:
        names, values = [f"g{i}" for i in range(len(item))], list(item)
    return names, [int(np.prod(np.shape(v))) for v in values]


def _collate_same_widths(indexed: list[tuple[int, Any]]) -> Any:
    """torch's ``default_collate`` of a batch of ``(index, item)``, lists read as rows
    (:func:`_row`), with a ``ValueError`` that names the first item whose groups or widths
    differ from the batch's first."""
    items = []
    for index, item in indexed:
        try:
            if isinstance(item, Mapping):
                item = {k: _row(v) for k, v in item.items()}
            elif isinstance(item, (list, tuple)):
                item = [_row(v) for v in item]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"dataset item {index}: a group's list is not a row of numbers ({exc}); give "
                "each group as a flat list, array or tensor of numbers (None or NaN: missing)"
            ) from None
        text = _text_group(item)
        if text is not None:
            raise ValueError(
                f"dataset item {index}: group {text[0]!r} holds text (dtype {text[1]}), not "
                "numbers; encode categories as numbers (e.g. one-hot) first"
            )
        items.append(item)
    try:
        first = _groups_of(items[0])
        for (index, _), item in zip(indexed, items):
            if _groups_of(item) != first:
                names, widths = _groups_of(item)
                raise ValueError(
                    f"dataset item {index} has groups {dict(zip(names, widths))}; item "
                    f"{indexed[0][0]} has {dict(zip(*first))}: every item needs the same groups "
                    "and widths (a missing group is a row of NaN of its width)"
                )
    except TypeError:  # not a mapping or a sequence: said by _split
        pass
    try:
        return default_collate(items)
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ValueError(
            f"dataset items {indexed[0][0]}..{indexed[-1][0]} do not stack into one batch "
            f"({exc}): every item needs the same groups and widths (a missing group is a row "
            "of NaN of its width)"
        ) from None


def dataset_to_memmap(
    dataset: Any,
    path: Any = None,
    batch_size: int = 1024,
    num_workers: int = 0,
    drop_empty_rows: bool = False,
    allow_empty_rows: bool = False,
) -> tuple[np.memmap, np.ndarray, list[str], list[int], np.ndarray, np.memmap | None, list[Range]]:
    """Write the rows of a map-style ``dataset`` into a float32 memmap.

    Returns ``(matrix, observed, names, dims, row_index, cells, ranges)``: the ``(N', sum
    d_g)`` memmap (zero under missing cells), the ``(N', G)`` bool group mask, the group names
    and widths, each row's item index (``N' < N`` only when ``drop_empty_rows`` dropped rows),
    and the ``(N', sum d_g)`` bool cell mask, or ``None`` when no observed group misses a cell
    (a memmap of a temporary file, or of ``path + ".cells"`` when ``path`` is given), and each
    group's column ranges (:func:`~pyro_factvae.ranges.column_ranges`). ``path``:
    the file to write (default: an anonymous temporary file, freed with the matrix); its
    folder is created. It is written beside ``path`` and moved there when complete, so an
    earlier matrix mapped from ``path`` keeps its data, and a failed stream leaves nothing
    (a ``path + ".cells"`` left by other data is removed when these miss no cell).
    """
    if path is None:
        return _write(
            dataset, None, None, batch_size, num_workers, drop_empty_rows, allow_empty_rows
        )
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ValueError(f"path {path!r} is a folder; name the file to write the data to")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    hidden = "." + os.path.basename(path) + "."  # until complete, out of sight
    parts = [tempfile.NamedTemporaryFile(dir=folder, prefix=hidden, delete=False) for _ in range(2)]
    for part in parts:
        part.close()
    temps = [part.name for part in parts]
    try:
        out = _write(dataset, *temps, batch_size, num_workers, drop_empty_rows, allow_empty_rows)
        matrix, observed, names, dims, row_index, cells, ranges = out
        shape = matrix.shape
        del out, matrix  # unmapped before the files are moved (Windows refuses mapped ones)
        for temp in temps:
            os.chmod(temp, new_file_mode())  # as open() would make them, not 0600
        os.replace(temps[0], path)
        matrix = np.memmap(path, dtype=np.float32, mode="r+", shape=shape)
        if cells is not None:
            del cells
            os.replace(temps[1], path + ".cells")
            cells = np.memmap(path + ".cells", dtype=bool, mode="r+", shape=shape)
        elif os.path.exists(path + ".cells"):  # another stream's mask: not these data's
            os.remove(path + ".cells")
        return matrix, observed, names, dims, row_index, cells, ranges
    finally:
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)


def _write(
    dataset: Any,
    path: str | None,
    cells_path: str | None,
    batch_size: int,
    num_workers: int,
    drop_empty_rows: bool,
    allow_empty_rows: bool,
) -> tuple[np.memmap, np.ndarray, list[str], list[int], np.ndarray, np.memmap | None, list[Range]]:
    """:func:`dataset_to_memmap` into ``path`` and ``cells_path`` (``None``: temporary
    files)."""
    if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
        raise ValueError(
            "from_dataset needs a map-style Dataset with __len__ and __getitem__ (the number "
            "of rows sizes the file); collect an IterableDataset into arrays first"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    num_rows = len(dataset)
    if num_rows == 0:
        raise ValueError("the dataset has no items")
    loader = DataLoader(
        _Indexed(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate_same_widths,
    )
    matrix: np.memmap | None = None
    cells: np.memmap | None = None
    observed = np.zeros((num_rows, 0), dtype=bool)
    names: list[str] = []
    dims: list[int] = []
    kept: list[np.ndarray] = []
    written = start = 0
    ranges = None  # each column's observed extremes, judged once over every batch
    for batch in loader:
        batch_names, mats = _split(batch, start)
        rows_of = {n: m.shape[0] for n, m in zip(batch_names, mats)}
        expected = min(batch_size, num_rows - start)
        if set(rows_of.values()) != {expected}:
            raise ValueError(
                f"dataset items {start}..{start + expected - 1} stack into groups of "
                f"{rows_of} rows, not one row per item ({expected}): give each group of an "
                "item as one row of values (a 1-D array, tensor or list)"
            )
        widths = [m.shape[1] for m in mats]
        if matrix is None:
            names, dims = batch_names, widths
            check_names(names)  # unique and non-empty, as the arrays' are
            shape = (num_rows, sum(dims))
            matrix = _mapped(path, np.dtype(np.float32), shape)
            observed = np.zeros((num_rows, len(dims)), dtype=bool)
        elif batch_names != names or widths != dims:
            raise ValueError(
                f"dataset items {start}..{start + len(mats[0]) - 1} have groups "
                f"{dict(zip(batch_names, widths))}; the first items had "
                f"{dict(zip(names, dims))}: every item needs the same groups and widths"
            )
        obs, seen = observed_from_nan(names, mats)
        reject_inf(names, mats, obs, seen, offset=start)
        ranges = merge_ranges(ranges, column_ranges(mats, obs, seen, nan_missing=True))
        if seen is not None and cells is None:  # the first missing cell: start the cell mask
            cells = _mapped(cells_path, np.dtype(bool), (num_rows, sum(dims)))
            for first in range(0, written, batch_size):
                last = min(first + batch_size, written)
                cells[first:last] = np.repeat(observed[first:last], dims, axis=1)
        if seen is None:
            seen = np.repeat(obs, widths, axis=1)
        keep = obs.any(axis=1)
        if not keep.all() and not (drop_empty_rows or allow_empty_rows):
            raise ValueError(
                f"dataset items {fmt_rows(np.flatnonzero(~keep) + start)} have no observed "
                "group; build the data with GroupedData.from_dataset(dataset, "
                "drop_empty_rows=True) (or allow_empty_rows=True for prediction)"
            )
        if allow_empty_rows and not drop_empty_rows:
            keep = np.ones_like(keep)
        rows = np.flatnonzero(keep)
        values = np.where(seen, np.concatenate(mats, 1), 0.0)
        with np.errstate(over="ignore"):  # values beyond float32: refused after the pass
            matrix[written : written + len(rows)] = values[rows]
        observed[written : written + len(rows)] = obs[rows]
        if cells is not None:
            cells[written : written + len(rows)] = seen[rows]
        kept.append(rows + start)
        written += len(rows)
        start += len(mats[0])
    assert matrix is not None and ranges is not None
    if written == 0:
        raise ValueError("no item of the dataset has an observed group")
    refuse_overflow(names, ranges)
    matrix.flush()
    if path is not None and written < num_rows:  # the kept file holds the kept rows alone
        dtype, width = matrix.dtype, matrix.shape[1]
        matrix.flush()
        matrix = None  # unmapped before its file is cut (Windows refuses a mapped one)
        matrix = _cut(path, dtype, width, written)
        if cells is not None and cells_path is not None:
            cells.flush()
            cells = None
            cells = _cut(cells_path, np.dtype(bool), width, written)
    cell_mask = None if cells is None else cells[:written]
    rows = np.concatenate(kept)
    return matrix[:written], observed[:written], names, dims, rows, cell_mask, ranges


def _mapped(path: str | None, dtype: np.dtype, shape: tuple[int, int]) -> np.memmap:
    """A new memmap of ``shape`` at ``path``, or (``None``) of an anonymous temporary file,
    whose storage is freed with the map (the file object is closed once mapped)."""
    if path is not None:
        return np.memmap(path, dtype=dtype, mode="w+", shape=shape)
    with tempfile.TemporaryFile() as file:
        return np.memmap(file, dtype=dtype, mode="w+", shape=shape)


def _cut(file: str, dtype: np.dtype, width: int, rows: int) -> np.memmap:
    """``file`` (no longer mapped) cut to its first ``rows`` rows of ``width``, mapped again."""
    os.truncate(file, rows * width * dtype.itemsize)
    return np.memmap(file, dtype=dtype, mode="r+", shape=(rows, width))
