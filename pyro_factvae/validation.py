"""Checks of the arrays a user hands to :class:`~pyro_factvae.data.GroupedData`: each problem
becomes a ``ValueError`` that names the group, column or rows and says what to do."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["check_numeric", "fmt_rows", "is_dataframe", "reject_observed", "to_numpy"]


def fmt_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f", ... ({len(rows)} rows in all)" if len(rows) > limit else ""
    return f"[{shown}{more}]"


def to_numpy(name: str, array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    try:
        out = np.asarray(array)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"group {name!r}: could not be read as an array ({exc})") from None
    if out.dtype == bool:
        out = out.astype(np.float32)
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


def is_dataframe(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas for other inputs)."""
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and hasattr(obj, "iloc")


def check_numeric(group: str, name: Any, column: Any) -> None:
    """A ``ValueError`` naming the first cell of ``column`` that is not a number."""
    import pandas as pd
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    if is_numeric_dtype(column) or is_bool_dtype(column):
        return
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna()
    if bool(bad.any()):
        row = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"group {group!r}: column {name!r} is not numeric: row {row} (index "
            f"{column.index[row]!r}) holds {column.iloc[row]!r}; fix the value, or leave the "
            "cell empty to mark it missing"
        )


def reject_observed(names, mats, obs, test, problem: str) -> None:
    """``ValueError`` naming the group and rows where an observed row has ``test`` true."""
    for j, (name, m) in enumerate(zip(names, mats)):
        bad = np.flatnonzero(obs[:, j] & test(m).any(axis=1))
        if len(bad):
            raise ValueError(f"group {name!r}: rows {fmt_rows(bad)} {problem}")
