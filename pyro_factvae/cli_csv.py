"""A CSV as the ``factvae`` command reads and writes it: its header checked to name each
column once, its cells written back as the text they were read as."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["blank_headers", "check_header", "csv_ready", "read_text"]


def _header(path: str) -> list[str]:
    """The cells of a CSV's header line, as written (Excel's BOM left out)."""
    import csv

    with open(path, newline="", encoding="utf-8-sig", errors="replace") as f:
        return next(csv.reader(f), [])


def check_header(path: str, frame: Any) -> None:
    """A ``ValueError`` for a CSV read into ``frame`` whose columns the header does not
    name one to one: a name given to two columns (pandas would read the second as
    ``x0.1``), a first column without a header cell (R's row names: pandas would take it as
    the index, and lose it from what is written back), or no data rows."""
    import pandas as pd

    header = _header(path)
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        quoted = '"' in f.readline()  # "a;b" quoted is one name
    if len(header) == 1 and not quoted and any(sep in header[0] for sep in ";\t"):
        raise ValueError(
            f"{path}: its header is one field, {header[0][:60]!r}: are its fields separated "
            "by ';' or tabs? factvae reads comma-separated files (pandas' to_csv writes them)"
        )
    named = [c for c in header if c.strip()]
    repeated = sorted({c for c in named if named.count(c) > 1})
    if repeated:
        raise ValueError(
            f"{path}: the header names more than one column {repeated}; rename them so that "
            "each name is one column's"
        )
    if not isinstance(frame.index, pd.RangeIndex):
        raise ValueError(
            f"{path}: its rows have more fields than its header ({len(header)}): a first "
            "column without a header cell (row names, as R's write.table(sep=',') writes "
            "them), or a comma at the end of each row? Give every column a name in the "
            "header (e.g. id; a column in no group is written back as it is)"
        )
    if len(frame) == 0:
        raise ValueError(f"{path} has a header but no data rows")


def blank_headers(path: str) -> dict[str, str]:
    """The columns of a CSV whose header cell is empty, as pandas labels them
    (``"Unnamed: 0"``, say: the index column that ``DataFrame.to_csv`` writes), each mapped
    to ``""``, so that what is written back keeps the header as it was read."""

    if not path.lower().endswith(".csv"):
        return {}
    return {f"Unnamed: {i}": "" for i, cell in enumerate(_header(path)) if not cell.strip()}


def read_text(path: str) -> Any:
    """A CSV's cells as the text they hold (empty cells as ``""``), with the labels
    :func:`read_data` gives its columns."""
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)


def csv_ready(frame: Any, header: dict[str, str] | None = None, source: Any = None) -> Any:
    """``frame`` (the filled copy of a CSV, its imputations or bounds) as it is written back:
    with ``source = (cells' text, which were empty)`` (:func:`read_text`, the read frame's
    ``isna()``), every other cell as the text it was read as, and each filled cell with the
    shortest digits of its value (a whole number as an integer; an imputation, computed in
    float32, with float32's digits: ``5.869993``, not ``5.869993209838867``); the columns in
    ``header`` renamed (:func:`blank_headers`)."""
    out = frame
    if source is not None:
        text, empty = source
        out = text.copy()
        empty = empty.reindex(index=frame.index, columns=frame.columns, fill_value=False)
        for j in range(frame.shape[1]):
            if frame.iloc[:, j].dtype.kind not in "fiu":
                continue
            values = frame.iloc[:, j].to_numpy(dtype=float)
            # the cells filled (a column in no group keeps its empty cells' text: "NA", "")
            rows = empty.iloc[:, j].to_numpy(dtype=bool) & ~np.isnan(values)
            if rows.any():
                out.iloc[rows, j] = _digits(values[rows])
    return out.rename(columns=header) if header else out


def _digits(values: np.ndarray) -> np.ndarray:
    """Each value's shortest text: an integer where whole, float32's digits where the value
    is a float32, else float64's; ``""`` for NaN."""
    out = np.where(np.isnan(values), "", values.astype(str)).astype(object)
    with np.errstate(over="ignore", invalid="ignore"):
        single = values.astype(np.float32)
    exact = np.isfinite(values) & (single == values)
    out[exact] = single[exact].astype(str)
    whole = np.isfinite(values) & (np.abs(values) < 2.0**53)
    whole[whole] = values[whole] == np.round(values[whole])
    out[whole] = values[whole].astype(np.int64).astype(str)
    return out
