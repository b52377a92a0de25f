"""What the queries give back in: each group in the shape and floating dtype the caller gave
it in (a 1-D group 1-D; float64 for integers and for data the library holds itself), read
from the caller's data without copying it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .arrays import as_array
from .data import GroupedData, is_dataframe
from .stream import is_dataset

__all__ = [
    "caller_arrays",
    "float_dtype",
    "returned_as",
    "reusable",
    "shaped_like",
    "split_columns",
]


def split_columns(matrix: Any, dims: Sequence[int]) -> list[np.ndarray]:
    """An ``(N, sum d_g)`` array as per-group column blocks."""
    matrix = np.asarray(matrix)
    return np.split(matrix, np.cumsum(list(dims))[:-1], axis=-1)


def float_dtype(dtype: Any) -> np.dtype:
    """What a group of ``dtype`` is returned in: its own floating dtype, float64 for anything
    else (integers, booleans)."""
    dtype = np.dtype(dtype)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _held_dtype(data: Any) -> np.dtype | None:
    """The dtype of data the library holds itself: float64 for a GroupedData (whose float64
    input it gives back exactly), a DataFrame and a MuData, float32 for a stream and for a
    GroupedData of a float32 matrix or a stream's memmap; ``None`` for the caller's own
    per-group arrays."""
    if isinstance(data, GroupedData) and data.single:
        return np.dtype(np.float32)
    if isinstance(data, GroupedData) or is_dataframe(data) or type(data).__name__ == "MuData":
        return np.dtype(np.float64)
    return np.dtype(np.float32) if is_dataset(data) else None


def reusable(data: Any) -> Any:
    """``data`` in a form that can be read twice: an iterator of groups (a generator, say)
    as a list; anything else as it is."""
    return list(data) if isinstance(data, Iterator) else data


def _items(data: Any, grouped: GroupedData) -> list[Any]:
    """The caller's per-group objects, in the fitted group order."""
    if not isinstance(data, Mapping):
        return list(data)
    by_name = {str(k): v for k, v in data.items()}  # names are the keys' text (0 -> "0")
    return [by_name[name] for name in grouped.names]


def caller_arrays(data: Any, grouped: GroupedData) -> list[np.ndarray]:
    """The caller's own per-group arrays (a 1-D group as given), or the values of data the
    library holds itself (float64, or a stream's float32)."""
    held = _held_dtype(data)
    if held == np.float64:
        return list(grouped.to_numpy().values())
    if held == np.float32:
        return [v.numpy() for v in grouped.values]
    return [as_array(name, a) for name, a in zip(grouped.names, _items(data, grouped))]


def returned_as(data: Any, grouped: GroupedData) -> list[tuple[np.dtype, tuple[int, ...]]]:
    """Per group, the dtype and shape it is returned in (as :func:`caller_arrays` gives it),
    read without copying any data (a tensor stays where it is)."""
    held = _held_dtype(data)
    if held is not None:
        return [(held, (len(grouped), d)) for d in grouped.dims]
    forms = []
    for a in _items(data, grouped):
        dtype = None
        if isinstance(a, torch.Tensor):  # bfloat16, which numpy lacks, as float32
            kind = torch.float32 if a.dtype == torch.bfloat16 else a.dtype
            dtype = torch.empty(0, dtype=kind).numpy().dtype
        forms.append((float_dtype(np.asarray(a).dtype if dtype is None else dtype), np.shape(a)))
    return forms


def shaped_like(values: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """Model outputs ``(N, d_g)`` in the ``dtype`` and ``shape`` (1-D for a 1-D group) a
    group is returned in."""
    return values.astype(dtype, copy=False).reshape(shape)
