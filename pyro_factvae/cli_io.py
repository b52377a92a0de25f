"""Data in and out for the ``factvae`` command: group specs, reading ``.csv`` / ``.npz``,
checking output paths, strict JSON, and the command's own exceptions."""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from .cli_csv import check_header, csv_ready
from .data import GroupedData
from .io import atomic_path, check_writable
from .validation import fmt_rows, frame_columns

__all__ = [
    "PLOT_FORMATS",
    "Interrupted",
    "UserError",
    "loggers",
    "emit",
    "finite_json",
    "model_groups",
    "output_path",
    "parse_groups",
    "read_data",
    "restrict_groups",
]

#: figure formats matplotlib writes without extra packages
PLOT_FORMATS = (".png", ".pdf", ".svg")


class UserError(Exception):
    """An error in the user's input: reported as one line, exit status 1."""


class Interrupted(Exception):
    """Training stopped by a signal: one line, exit status 128 + the signal number."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.signal_name = signal_name


# ---------------------------------------------------------------------- data in and out
def parse_groups(spec: str | None) -> dict[str, list[str]] | None:
    """``'a=x1,x2;b=x3'`` or a JSON file path -> ``{"a": ["x1", "x2"], "b": ["x3"]}``."""
    if spec is None:
        return None
    if os.path.isfile(spec):
        try:
            with open(spec) as f:
                groups = json.load(f)
        except json.JSONDecodeError as exc:
            raise UserError(f"group spec {spec!r} is not valid JSON: {exc}") from None
        if not isinstance(groups, dict) or not all(
            isinstance(v, list) and v and all(isinstance(c, str) for c in v)
            for v in groups.values()
        ):
            raise UserError(
                f"group spec {spec!r} must be a JSON object of non-empty lists of column names"
            )
        return {str(k): list(v) for k, v in groups.items()}
    if "=" not in spec and spec.lower().endswith(".json"):
        raise UserError(f"no such group spec file: {spec}")
    groups: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, sep, cols = part.partition("=")
        columns = [c.strip() for c in cols.split(",") if c.strip()]
        if not sep or not name.strip() or not columns:
            raise UserError(
                f"malformed group spec {part!r}: write 'group=col1,col2;other=col3' "
                "or give a JSON file"
            )
        if name.strip() in groups:
            raise UserError(f"group {name.strip()!r} appears twice in the group spec")
        groups[name.strip()] = columns
    if not groups:
        raise UserError("the group spec is empty: write 'group=col1,col2;other=col3'")
    return groups


def read_data(
    path: str,
    groups: dict[str, list[str]] | None,
    drop_empty_rows: bool = False,
    allow_empty_rows: bool = False,
    order: Sequence[str] | None = None,
):
    """Read ``.npz`` or ``.csv`` into ``(GroupedData, what was read, groups or None)``: what
    was read is the DataFrame of a CSV, the dict of arrays of an ``.npz`` (in their own
    dtypes). ``order``: a fitted model's group names: those arrays of an ``.npz`` are read
    (in that order, whatever the file's; any other array is left out)."""
    import pandas as pd

    strict = not (drop_empty_rows or allow_empty_rows)  # empty rows refused here, for a shell
    if not os.path.isfile(path):
        raise UserError(f"no such data file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: np.asarray(f[k]) for k in f.files}
        except Exception as exc:
            raise UserError(f"cannot read {path} as .npz: {exc}") from None
        if groups is not None:
            unknown = sorted(set(groups) - set(arrays))
            if unknown:
                raise UserError(f"groups {unknown} are not in {path}; it has {sorted(arrays)}")
            arrays = {g: arrays[g] for g in groups}
        elif order is not None:  # a fitted model's groups, by name (other arrays are left)
            lacking = [g for g in order if g not in arrays]
            if lacking:
                raise UserError(
                    f"{path} lacks the arrays {lacking} of the groups the model was fitted on "
                    f"({list(order)}); it has {sorted(arrays)}"
                )
            arrays = {g: arrays[g] for g in order}
        data = GroupedData(arrays, drop_empty_rows=drop_empty_rows, allow_empty_rows=True)
        return refuse_empty_rows(data, path, "rows") if strict else data, arrays, None
    if ext != ".csv":
        raise UserError(f"{path}: unknown data format {ext!r}; use .npz or .csv")
    try:  # the exact float64 of each cell
        frame = pd.read_csv(path, float_precision="round_trip")
    except Exception as exc:
        raise UserError(f"cannot read {path} as CSV: {exc}") from None
    try:
        check_header(path, frame)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if groups is None:
        raise UserError(f"{path} is a CSV: give --groups 'group=col1,col2;other=col3'")
    groups = frame_columns(frame, groups)  # a model's integer labels are the header's text
    try:
        data = GroupedData.from_dataframe(
            frame, groups, drop_empty_rows=drop_empty_rows, allow_empty_rows=True
        )
    except ValueError as exc:  # named with its file (a ';' CSV has one column, say)
        spaced = [c for c in frame.columns if isinstance(c, str) and c != c.strip()][:3]
        if spaced and "have no columns" in str(exc):  # "x0, x1": the spec's names are stripped
            exc = f"{exc}; its header's names have spaces around them ({spaced}): remove the "
            exc += "spaces after the commas, or name them so in a JSON --groups file"
        raise UserError(f"{path}: {exc}") from None
    return refuse_empty_rows(data, path, "data rows") if strict else data, frame, groups


def refuse_empty_rows(data: GroupedData, path: str, what: str) -> GroupedData:
    """``data``, or a :class:`UserError` naming its rows with no observed group (counted
    from 0, as ``what`` of the file ``path``) and the command-line option that drops them."""
    empty = np.flatnonzero(~data.observed.any(-1).numpy())
    if len(empty):
        rows = f"{len(empty)} rows of {path} have" if len(empty) > 1 else f"a row of {path} has"
        raise UserError(
            f"{rows} no observed group ({what} {fmt_rows(empty)}, counted from 0): give them "
            "an observed value, delete them, or add --drop-empty-rows to leave them out"
        )
    return data


def model_groups(vae, given: dict[str, list[str]] | None) -> dict[str, list[str]] | None:
    """The CSV spec for data to feed a fitted model: ``--groups`` or the one saved by fit."""
    if given is not None and list(given) != list(vae.layout_.names):
        raise UserError(
            f"--groups names {list(given)}, but the model was fitted on groups "
            f"{list(vae.layout_.names)} (in that order)"
        )
    return given if given is not None else vae.columns_


def output_path(
    path: str | None,
    option: str,
    extensions: tuple[str, ...] = (),
    inputs: Any = (),
    outputs: dict[str, str | None] | None = None,
) -> str | None:
    """Check an output path before any work: a known extension (when ``extensions`` are
    given), a writable folder (created), none of the files the command reads (``inputs``:
    their paths, ``None`` for one not given), which writing would destroy, and none of its
    other ``outputs`` (``{option: path}``)."""
    if path is None:
        return None
    for given in inputs:
        if _same_file(given, path):
            raise UserError(f"{option} {path} is a file this command reads; give another path")
    for other, given in (outputs or {}).items():
        if _same_file(given, path):
            raise UserError(f"{option} {path} is also {other}'s path; give each its own")
    ext = os.path.splitext(path)[1].lower()
    if extensions and ext not in extensions:
        raise UserError(
            f"{option} {path}: unknown format {ext or '(none)'!r}; use {' or '.join(extensions)}"
        )
    try:
        return check_writable(path, option)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _same_file(a: str | None, b: str) -> bool:
    """Whether the paths ``a`` and ``b`` name one file (spelt otherwise, linked, hard-linked)."""
    if a is None:
        return False
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def save_npz(path: str, arrays: dict[str, Any]) -> None:
    """``arrays`` as an ``.npz`` archive (what ``numpy.savez`` writes), each under its own
    name, those of ``savez``'s own arguments (``file``, ``allow_pickle``) included."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for name, value in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def finite_json(value: Any) -> Any:
    """JSON-safe: non-finite floats become ``None`` (``null``), recursively."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def restrict_groups(data, names: Sequence[str] | None, option: str) -> list[str] | None:
    if not names:
        return None
    unknown = [n for n in names if n not in data.names]
    if unknown:
        raise UserError(f"{option}: unknown groups {unknown}; the groups are {data.names}")
    return list(names)


def emit(args: Any, result: dict[str, Any], text: str) -> None:
    """Print ``result`` as strict JSON with ``--json``, else ``text``."""
    print(json.dumps(finite_json(result), indent=1, allow_nan=False) if args.json else text)


class Output:
    """Writes what ``impute`` returns to ``.csv`` or ``.npz``: a filled DataFrame (CSV input:
    ``groups`` maps each group to its columns) or per-group arrays (columns ``<group>_<j>``)."""

    def __init__(
        self,
        names: Sequence[str],
        groups: dict[str, list[str]] | None,
        header: dict[str, str] | None = None,
        source: Any = None,
    ) -> None:
        # source: a CSV's (cells' text, which were empty), for what is written back
        self.names, self.groups, self.header, self.source = list(names), groups, header, source

    def table(self, filled: Any) -> Any:
        import pandas as pd

        if self.groups is not None:
            return filled
        blocks = {g: filled[g].reshape(len(filled[g]), -1) for g in self.names}  # 1-D: 1 column
        cols = {f"{g}_{j}": m[:, j] for g, m in blocks.items() for j in range(m.shape[1])}
        return pd.DataFrame(cols)

    def arrays(self, filled: Any) -> dict[str, Any]:
        """Per-group arrays; from a CSV also ``<group>_columns`` (the column names) and each
        column outside the groups (an id, say) under its own name."""
        if self.groups is None:
            return filled
        out = {g: filled[c].to_numpy() for g, c in self.groups.items()}
        out.update({f"{g}_columns": np.array(c, dtype=str) for g, c in self.groups.items()})
        grouped = {c for cols in self.groups.values() for c in cols}
        for col in filled.columns:
            if col not in grouped:
                values = filled[col].to_numpy()
                key = f"column_{col}" if str(col) in out else str(col)
                out[key] = values.astype(str) if values.dtype == object else values
        return out

    def write(self, filled: Any, path: str) -> None:
        """``filled`` to ``path``, atomically (a complete file or the old one)."""
        with atomic_path(path) as tmp:
            if path.lower().endswith(".npz"):
                save_npz(tmp, self.arrays(filled))
            else:
                csv_ready(self.table(filled), self.header, self.source).to_csv(tmp, index=False)

    def write_draws(self, draws: Sequence[Any], path: str) -> None:
        """``M`` completed data sets: one CSV stacked with a leading ``draw`` column (1..M;
        ``draw_`` where the data have a ``draw`` column), or an ``.npz`` whose arrays have a
        leading draw axis."""
        import pandas as pd

        if path.lower().endswith(".npz"):
            per = [self.arrays(d) for d in draws]
            stack = {k: np.stack([d[k] for d in per]) for k in self.names}
            with atomic_path(path) as tmp:
                save_npz(tmp, {**per[0], **stack})
            return
        parts = [csv_ready(self.table(d), self.header, self.source) for d in draws]
        name = "draw"
        while name in parts[0].columns:  # the data's own column of that name is kept
            name += "_"
        for m, part in enumerate(parts, start=1):
            part.insert(0, name, m)
        with atomic_path(path) as tmp:
            pd.concat(parts, ignore_index=True).to_csv(tmp, index=False)


def loggers(log_dir: str) -> list[Any]:
    """``--log-dir``: a CSV row per epoch in ``LOG_DIR/history.csv``, and TensorBoard
    scalars in ``LOG_DIR`` when the tensorboard package is installed."""
    from .infer.callbacks import CSVLogger, TensorBoardLogger

    try:
        os.makedirs(log_dir, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--log-dir {log_dir}: cannot create it ({exc})") from None
    loggers: list[Any] = [CSVLogger(os.path.join(log_dir, "history.csv"))]
    try:
        loggers.append(TensorBoardLogger(log_dir))
    except ValueError:
        pass  # no tensorboard: the CSV alone
    return loggers
