"""Checks of the arrays a user hands to :class:`~pyro_factvae.data.GroupedData`: each problem
becomes a ``ValueError`` that names the group, column or rows and says what to do."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any

import numpy as np
import torch

from .arrays import to_numpy
from .ranges import column_ranges, merge_ranges

__all__ = [
    "check_matrix",
    "check_numeric",
    "fmt_rows",
    "frame_arrays",
    "frame_columns",
    "group_arrays",
    "is_dataframe",
    "reject_inf",
    "reject_observed",
]


def fmt_rows(rows: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:limit])
    more = f", ... ({len(rows)} rows in all)" if len(rows) > limit else ""
    return f"[{shown}{more}]"


def check_names(names: Sequence[Any]) -> None:
    """A ``ValueError`` unless the group ``names`` are unique, non-empty strings."""
    if len(set(names)) != len(names):
        raise ValueError(f"group names must be unique, got {list(names)}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(
                f"group name {name!r} must be a non-empty string (it names the Pyro sites "
                "x_<name>, Phi_<name> and the output columns)"
            )


def group_arrays(groups: Any, names: Any) -> tuple[list[str], list[np.ndarray]]:
    """Group names and ``(N, d_g)`` float64 arrays of a sequence or mapping of arrays;
    ``ValueError`` for a single array, bad names, no groups, or groups that differ in rows."""
    kind = type(groups).__name__
    if kind == "AnnData" or (hasattr(groups, "obs") and hasattr(groups, "var")):
        raise ValueError(
            f"got {'an' if kind[0] in 'AEIOU' else 'a'} {kind}: say which variables form each "
            "group, with GroupedData.from_anndata(adata, groups=<a column of adata.var, or "
            "{group: [var_names]}>) (a MuData is read as it is: its modalities are the groups)"
        )
    if kind == "Series" and hasattr(groups, "index"):
        raise ValueError(
            "got a pandas Series (one column, or one row such as frame.iloc[3]): give the "
            "groups as {group: array} or a DataFrame with groups={group: [columns]}; for one "
            "row, a one-row DataFrame, frame.iloc[[3]]"
        )
    if isinstance(groups, Mapping):
        if names is not None:
            raise ValueError("give names either as mapping keys or as `names`, not both")
        names = [str(k) for k in groups.keys()]  # the queries look the data up by this text
        arrays = list(groups.values())
    elif isinstance(groups, (np.ndarray, torch.Tensor)):
        raise ValueError(
            "expected one array per group (a list or dict of arrays), got a single array; "
            "split its columns into groups, e.g. GroupedData([X[:, :4], X[:, 4:]])"
        )
    elif isinstance(groups, Iterable) and not isinstance(groups, (str, bytes, Set)):  # ordered
        arrays = list(groups)
        names = [f"g{i}" for i in range(len(arrays))] if names is None else list(names)
    else:
        raise ValueError(
            f"got {type(groups).__name__} {str(groups)[:40]!r} as the data: give the groups as "
            "{group: array}, a list of arrays, a DataFrame with groups={group: [columns]}, a "
            "GroupedData, a MuData or a torch Dataset"
        )
    if len(arrays) == 0:
        raise ValueError("no groups given: factVAE needs at least one group")
    if len(names) != len(arrays):
        raise ValueError(f"got {len(names)} names for {len(arrays)} groups")
    check_names(names)
    absent = [n for n, a in zip(names, arrays) if a is None]
    if absent:
        raise ValueError(
            f"groups {absent} are None: a group missing in every row is an all-NaN array "
            "of its width, e.g. np.full((n_rows, width), np.nan)"
        )
    _check_indexes(names, arrays)

    mats = [to_numpy(n, a) for n, a in zip(names, arrays)]
    counts = {n: m.shape[0] for n, m in zip(names, mats)}
    if len(set(counts.values())) != 1:
        flat = [n for n, a in zip(names, arrays) if np.ndim(a) == 1]
        note = (
            f" (the 1-D groups {flat} are read as one column each: one row is a 2-D array, "
            "e.g. x[None, :] or x.reshape(1, -1))"
            if flat
            else ""
        )
        raise ValueError(
            f"groups have different numbers of rows: {counts}; every group needs one row "
            f"per example (use a NaN row where a group is missing){note}"
        )
    for n, m in zip(names, mats):
        if m.shape[1] == 0:
            raise ValueError(f"group {n!r} has no columns")
        if m.shape[0] == 0:
            raise ValueError(f"group {n!r} has no rows")

    return list(names), mats


def _check_indexes(names: Sequence[str], arrays: Sequence[Any]) -> None:
    """A ``ValueError`` when pandas groups carry different row indexes: rows are paired by
    position, so a group in another row order would be paired with the wrong rows."""
    framed = [
        (n, a.index)
        for n, a in zip(names, arrays)
        if type(a).__name__ in ("DataFrame", "Series") and hasattr(a, "index")
    ]
    for name, index in framed[1:]:
        first, reference = framed[0]
        if not index.equals(reference):
            raise ValueError(
                f"groups {first!r} and {name!r} are pandas objects with different row indexes, "
                "and rows are paired by position: if they hold the same rows in the same "
                "order, drop the indexes (f.reset_index(drop=True) or f.to_numpy()); if the "
                "labels name the rows, align them, e.g. f.reindex(rows) with rows = "
                f"groups[{first!r}].index (a row a group lacks becomes NaN: missing)"
            )


def is_dataframe(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (without importing pandas for other inputs)."""
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns") and hasattr(obj, "iloc")


#: how a group is given the categorical likelihood, in FactVAE and on the command line
CATEGORICAL_HOW = (
    "FactVAE(likelihood={group: 'categorical'}); factvae fit --likelihood GROUP=categorical"
)


def check_numeric(group: str, name: Any, column: Any, how: str = CATEGORICAL_HOW) -> None:
    """A ``ValueError`` naming the first cell of ``column`` that is not a number (``how``:
    how the user gives a group the categorical likelihood, said for a text column)."""
    import pandas as pd
    from pandas.api.types import (
        is_bool_dtype,
        is_complex_dtype,
        is_datetime64_any_dtype,
        is_numeric_dtype,
        is_timedelta64_dtype,
    )

    if is_datetime64_any_dtype(column) or is_timedelta64_dtype(column):
        raise ValueError(
            f"group {group!r}: column {name!r} holds dates or durations; convert it to "
            "numbers first, e.g. seconds from a reference time ((frame[col] - t0) / "
            "pandas.Timedelta(seconds=1)), which leaves NaN where a date is missing"
        )
    if is_complex_dtype(column):
        raise ValueError(
            f"group {group!r}: column {name!r} holds complex numbers; give real numbers (e.g. "
            "the real and the imaginary parts as two columns)"
        )
    if is_numeric_dtype(column) or is_bool_dtype(column):
        return
    try:
        numbers = pd.to_numeric(column, errors="coerce")
    except (OverflowError, TypeError) as exc:  # 10**400 as an object
        raise ValueError(
            f"group {group!r}: a cell is not a real number that float64 holds ({exc}); give "
            "real numbers, with NaN where a value is missing"
        ) from None
    bad = numbers.isna() & column.notna()
    if bool(bad.any()) and bad.sum() > 0.5 * column.notna().sum():  # text: categories
        kinds = list(dict.fromkeys(column[bad].tolist()))[:3]
        raise ValueError(
            f"group {group!r}: column {name!r} holds text (e.g. "
            f"{', '.join(repr(k) for k in kinds)}), not numbers; if it is a categorical "
            f"variable, one-hot encode it (pandas.get_dummies(frame, columns=[{name!r}], "
            "dtype=float), with NaN in the new columns where it was empty) and give them a "
            f"group of their own with the categorical likelihood ({how})"
        )
    if bool(bad.any()):
        row = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"group {group!r}: column {name!r} is not numeric: row {row} (index "
            f"{column.index[row]!r}) holds {column.iloc[row]!r}; fix the value, or leave the "
            "cell empty to mark it missing"
        )


def reject_observed(names, mats, obs, test, problem: str, offset: int = 0) -> None:
    """``ValueError`` naming the group and rows where an observed row has ``test`` true
    (rows numbered from ``offset``: the first row of a chunk)."""
    for j, (name, m) in enumerate(zip(names, mats)):
        bad = np.flatnonzero(obs[:, j] & test(m).any(axis=1))
        if len(bad):
            raise ValueError(f"group {name!r}: rows {fmt_rows(bad + offset)} {problem}")


#: what :func:`reject_observed` says of observed rows holding inf
INF_PROBLEM = "hold inf; only finite values can be observed (use NaN to mark a cell missing)"


def reject_inf(names, mats, obs, cells, offset: int = 0) -> None:
    """``ValueError`` naming the group and rows where an observed cell holds inf."""
    if cells is None:
        reject_observed(names, mats, obs, np.isinf, INF_PROBLEM, offset)
        return
    per_group = np.split(cells, np.cumsum([m.shape[1] for m in mats])[:-1], axis=1)
    for name, m, c in zip(names, mats, per_group):
        bad = np.flatnonzero((np.isinf(m) & c).any(axis=1))
        if len(bad):
            raise ValueError(f"group {name!r}: rows {fmt_rows(bad + offset)} {INF_PROBLEM}")


def check_matrix(
    names: list[str],
    tensor: torch.Tensor,
    obs: torch.Tensor,
    dims: list[int],
    chunk: int,
    cells: torch.Tensor | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``ValueError`` naming the group and row of the first non-finite observed value or
    nonzero missing value of a side-by-side matrix, read ``chunk`` rows at a time; also its
    dtype and shapes, and rows with no observed group. ``cells``: the ``(N, sum d_g)`` cell
    mask, when some observed group misses cells (else the group mask ``obs`` says it all).
    Returns each group's column ranges over its observed cells, read on the way
    (:func:`~pyro_factvae.ranges.column_ranges`)."""
    if tensor.dim() != 2:
        raise ValueError(
            f"matrix must be 2-D, (rows, columns), got shape {tuple(tensor.shape)}; a single "
            "column is matrix.reshape(-1, 1)"
        )
    if tensor.dtype != torch.float32:
        raise ValueError(
            f"matrix must be a float32 array, got {tensor.dtype}; convert it with "
            ".astype(numpy.float32)"
        )
    if any(d < 1 for d in dims) or sum(dims) != tensor.shape[1]:
        raise ValueError(
            f"dims {dims} must be positive and sum to the matrix's {tensor.shape[1]} columns"
        )
    if obs.shape != (tensor.shape[0], len(dims)) or len(names) != len(dims):
        raise ValueError(
            f"observed has shape {tuple(obs.shape)} and {len(names)} names; expected (rows, "
            f"groups) = {(tensor.shape[0], len(dims))} or (rows, cells) = "
            f"{(tensor.shape[0], sum(dims))}, and one name per group"
        )
    empty = (~obs.any(1)).nonzero().squeeze(-1).numpy()
    if len(empty):
        raise ValueError(f"{len(empty)} rows have no observed group: {fmt_rows(empty)}")
    cols, ranges = torch.tensor(dims), None
    for start in range(0, tensor.shape[0], chunk):
        part = tensor[start : start + chunk]
        if cells is None:
            seen_cols = obs[start : start + chunk].repeat_interleave(cols, dim=1)
        else:
            seen_cols = cells[start : start + chunk]
        mats = np.split(part.detach().cpu().numpy(), np.cumsum(dims)[:-1], axis=1)
        seen = seen_cols.cpu().numpy()
        ranges = merge_ranges(ranges, column_ranges(mats, obs[start : start + chunk], seen))
        bad_obs = (~torch.isfinite(part) & seen_cols).nonzero()
        bad_miss = ((part != 0) & ~seen_cols).nonzero()
        for bad, problem in ((bad_obs, "is not finite"), (bad_miss, "is nonzero")):
            if len(bad):
                row, col = int(bad[0, 0]) + start, int(bad[0, 1])
                g = int(torch.searchsorted(cols.cumsum(0), col, right=True))
                where = "observed" if problem == "is not finite" else "missing"
                hint = ""
                if where == "missing":
                    value = float(part[int(bad[0, 0]), col])
                    problem = f"is {value:g}, not 0"
                    # NaN, as a dict of groups has it, is not how this matrix says missing
                    hint = (
                        " (the observed mask says what is missing: fill NaN with 0, e.g. "
                        "numpy.nan_to_num(matrix, nan=0.0))"
                        if math.isnan(value)
                        else " (set the matrix to 0 wherever the observed mask is False)"
                    )
                raise ValueError(
                    f"group {names[g]!r}, row {row}: a value of a {where} cell "
                    f"{problem}; observed values must be finite and missing ones 0{hint}"
                )
    return ranges


def frame_columns(frame: Any, groups: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``groups`` with each column as ``frame`` labels it: the label itself, or the frame's
    label of the same text (a model fitted on integer labels reads a CSV's text headers
    ``"0", "1", ...``, and the other way round); a label in neither form is left as it is."""
    by_text = {str(c): c for c in frame.columns}
    return {
        name: [c if c in frame.columns else by_text.get(str(c), c) for c in cols]
        for name, cols in groups.items()
    }


def check_column_spec(groups: Mapping[str, Sequence[Any]]) -> None:
    """A ``ValueError`` for a column-to-group mapping with a group of no columns or a column
    in two groups."""
    owner: dict[Any, str] = {}
    for name, cols in groups.items():
        if len(cols) == 0:
            raise ValueError(f"group {name!r} has no columns")
        for c in cols:
            if c in owner:
                raise ValueError(
                    f"column {c!r} is in groups {owner[c]!r} and {name!r}; give each column "
                    "to one group"
                )
            owner[c] = name


def frame_arrays(frame: Any, groups: Any) -> dict[str, np.ndarray]:
    """Per-group float arrays of a DataFrame's columns ``{group: [columns]}`` (NaN where a
    cell is empty); ``ValueError`` naming the group, column or cell that is wrong."""
    if not isinstance(groups, Mapping):
        raise ValueError("groups must be a mapping {group: [columns]}")
    for name, cols in groups.items():
        if isinstance(cols, str):
            raise ValueError(
                f"group {name!r}: give a list of column names, not the string {cols!r} "
                f"(e.g. {{{name!r}: [{cols!r}]}})"
            )
    groups = frame_columns(frame, groups)
    missing = [c for cols in groups.values() for c in cols if c not in frame.columns]
    if missing:
        need = "; ".join(f"{g} = [{', '.join(map(str, c))}]" for g, c in groups.items())
        have = list(frame.columns)
        shown = ", ".join(repr(c) for c in have[:8]) + (", ..." if len(have) > 8 else "")
        raise ValueError(
            f"the data have no columns {missing} (a CSV's header, a DataFrame's columns; "
            f"they have [{shown}], named exactly as these); the groups need: "
            f"{need}"
        )
    repeated = {c for c in frame.columns[frame.columns.duplicated()]}
    for name, cols in groups.items():
        for c in cols:
            if c in repeated:
                raise ValueError(
                    f"group {name!r}: the data have more than one column labelled {c!r}; "
                    "rename them so that each label names one column"
                )
    check_column_spec(groups)
    arrays = {}
    for name, cols in groups.items():
        block = frame[list(cols)]
        for c in cols:
            check_numeric(name, c, block[c])
        try:
            arrays[name] = block.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError, OverflowError) as exc:  # 1+2j, 10**400 as objects
            raise ValueError(
                f"group {name!r}: a cell is not a real number that float64 holds ({exc}); "
                "give real numbers, with NaN where a value is missing"
            ) from None
        inf = np.flatnonzero(np.isinf(arrays[name]).any(axis=1))
        if len(inf):  # named by the frame's index, as its other rows are
            more = f", ... ({len(inf)} rows in all)" if len(inf) > 5 else ""
            labels = list(frame.index[inf[:5]])
            raise ValueError(f"group {name!r}: rows at index {labels}{more} {INF_PROBLEM}")
    return arrays


def warn_constant(names: Any, constant: Any, columns: Any = None, counts: Any = None) -> None:
    """A ``UserWarning`` per group with features constant in the training data (``constant``:
    per group, a bool per feature), or (``counts``: per group, the training rows that
    observe each feature) observed in one row only, naming them (by ``columns``, when built
    from a frame)."""
    import warnings

    for g, (name, flags) in enumerate(zip(names, constant)):
        once = [] if counts is None else np.flatnonzero(np.asarray(counts[g]) == 1)
        for idx, what in ((np.flatnonzero(np.asarray(flags)), "constant"), (once, "once")):
            if not len(idx):
                continue
            cols = [columns[name][j] for j in idx] if columns else idx.tolist()
            warnings.warn(
                f"group {name!r}: columns {cols} are "
                + (
                    "constant in the training data; they are imputed as that constant (drop "
                    "them if they carry no information)"
                    if what == "constant"
                    else "observed in one training row only: their spread is unknown, so "
                    "their imputations and intervals rest on little (drop them, or check them)"
                ),
                UserWarning,
                stacklevel=4,
            )
