"""A group's data read as a numpy array, missing cells NaN, every value checked to be a
number: the first step of :mod:`~pyro_factvae.validation`'s checks of what a user hands to
:class:`~pyro_factvae.data.GroupedData`."""

from __future__ import annotations

import decimal
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["as_array", "to_numpy"]


def as_array(name: str, array: Any) -> np.ndarray:
    """A group's data as a numpy array, missing cells NaN: a tensor's values, a masked
    array's masked cells, a pandas object's ``NA`` and an object array's ``None`` (its other
    cells numbers) are read as such; ``ValueError`` for a sparse matrix or ragged lists."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu()
        # numpy has no bfloat16 (nor complex is data): read as float32, what it holds exactly
        array = (array.float() if array.dtype == torch.bfloat16 else array).numpy()
    if type(array).__module__.startswith("scipy.sparse"):
        raise ValueError(
            f"group {name!r}: a scipy.sparse matrix; densify it (.toarray()) first, or give "
            "the data as an AnnData (GroupedData.from_anndata), whose sparse X is read in "
            "chunks"
        )
    # a float group keeps its precision (float32 comes back float32); others become float64
    if np.ma.isMaskedArray(array) and array.dtype.kind in "biuf":  # masked cells: missing
        kind = array.dtype if array.dtype.kind == "f" else np.float64
        array = np.ma.filled(np.ma.asarray(array).astype(kind), np.nan)
    elif np.ma.isMaskedArray(array):  # dates, text, complex: refused below, as unmasked
        array = np.ma.getdata(array)
    held = getattr(getattr(array, "dtype", None), "numpy_dtype", None)
    if held is not None and hasattr(array, "to_numpy") and np.dtype(held).kind in "biuf":
        kind = held if np.dtype(held).kind == "f" else np.float64  # pandas' nullable dtypes
        array = array.to_numpy(dtype=kind, na_value=np.nan)
    try:
        out = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"group {name!r}: could not be read as an array ({exc})") from None
    if out.dtype == object:  # numbers with None (or pandas' NA) for missing cells
        cells = out.ravel()
        bad = None  # each type judged once; the cells one by one only for a doubtful type
        if not all(map(_real_or_missing, set(map(type, cells)))):
            bad = next((i for i, v in enumerate(cells) if not _cell_ok(v)), None)
        if bad is not None:
            at = np.unravel_index(bad, out.shape)
            where = f"row {at[0]}" + (f", column {at[1]}" if out.ndim > 1 else "")
            raise ValueError(
                f"group {name!r}: {where} holds {cells[bad]!r} ({type(cells[bad]).__name__}), "
                "not a number; give numbers, with NaN or None where a value is missing (dates "
                "and durations as numbers, e.g. seconds from a reference time; categories "
                "one-hot encoded)"
            )
        try:
            cells = [np.nan if _missing(v) else v for v in cells]
            out = np.array(cells, dtype=np.float64).reshape(out.shape)
        except (TypeError, ValueError, OverflowError) as exc:  # a decimal sNaN, 10**400
            raise ValueError(f"group {name!r}: a cell is not a number ({exc})") from None
    return out


#: the missing values of an object array: ``None``, pandas' ``NA`` and ``NaT``
_MISSING = ("NoneType", "NAType", "NaTType")


def _missing(value: Any) -> bool:
    """Whether an object array's cell is a missing value."""
    return type(value).__name__ in _MISSING or (
        isinstance(value, np.datetime64) and np.isnat(value)
    )


def _real_or_missing(kind: type) -> bool:
    """Whether every cell of this type is a real number or a missing value (not text, a date
    or a duration, which ``numpy.array(..., float)`` reads as days or its own unit)."""
    if kind.__name__ in _MISSING:
        return True
    if issubclass(kind, (np.datetime64, np.timedelta64, complex, np.complexfloating)):
        return False
    return issubclass(kind, (numbers.Real, np.number, np.bool_, decimal.Decimal))


def _cell_ok(value: Any) -> bool:
    return _real_or_missing(type(value)) or _missing(value)


def to_numpy(name: str, array: Any) -> np.ndarray:
    """A group's data as a 2-D float64 array (:func:`as_array`; a 1-D group as one column);
    ``ValueError`` naming the group for data that are not numbers or not 1-D or 2-D."""
    out = as_array(name, array)
    if out.dtype == bool:
        out = out.astype(np.float32)
    if out.dtype.kind in "mM":
        raise ValueError(
            f"group {name!r}: dates or durations (dtype {out.dtype}); convert them to numbers "
            "first, e.g. seconds from a reference time, with NaN where a value is missing"
        )
    if not (np.issubdtype(out.dtype, np.number)):
        raise ValueError(
            f"group {name!r}: data must be numeric, got dtype {out.dtype}; "
            "encode categories as numbers (e.g. one-hot) first"
        )
    if np.iscomplexobj(out):
        raise ValueError(f"group {name!r}: complex values are not supported")
    if out.ndim == 1:
        out = out[:, None]
    if out.ndim != 2:
        raise ValueError(
            f"group {name!r}: expected a 2-D array (rows x features), got shape {out.shape}; "
            "flatten images to rows first"
        )
    return out.astype(np.float64, copy=False)
