"""The columns of :class:`~pyro_factvae.sklearn.FactVAEImputer`'s table: its groups as
column positions (from positions or a DataFrame's labels), and a DataFrame's cells checked
by group, column and row before scikit-learn converts them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .validation import INF_PROBLEM, check_numeric, fmt_rows, is_dataframe

__all__ = [
    "IMPUTER_CATEGORICAL",
    "check_frame",
    "check_labels",
    "resolve_groups",
    "shown",
    "without_groups",
]


def resolve_groups(
    groups: Mapping[str, Sequence[Any]] | None, num_features: int, columns: Any
) -> dict[str, list[int]]:
    """``{group: [column positions]}``: every column in exactly one group."""
    labels_in = None if columns is None else list(columns)
    names = None if columns is None else [str(c) for c in columns]
    # an integer is a column's label when the frame has integer labels, else its position
    by_label = labels_in is not None and any(isinstance(c, (int, np.integer)) for c in labels_in)
    if groups is None:
        labels = names or [f"x{j}" for j in range(num_features)]
        return {label: [j] for j, label in enumerate(labels)}
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty mapping {group: [columns]}")
    out, owner = {}, {}
    for group, cols in groups.items():
        if isinstance(cols, (str, int, np.integer)):
            raise ValueError(f"group {group!r}: give a list of columns, not {cols!r}")
        if len(cols) == 0:
            raise ValueError(f"group {group!r} has no column: give it some, or leave it out")
        positions = []
        for c in cols:
            if by_label and c in labels_in:
                j = labels_in.index(c)
            elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and not by_label:
                j = int(c)
            elif names is not None and str(c) in names:
                j = names.index(str(c))
            elif by_label:
                raise ValueError(
                    f"group {group!r}: column {c!r} is not a label of the DataFrame's columns "
                    f"{shown(labels_in)}; its integer labels are matched as labels, not positions "
                    "(give labels, or the data as an array to give positions)"
                )
            else:
                known = "" if names is None else f" {shown(names)}"
                raise ValueError(
                    f"group {group!r}: column {c!r} is not in the data (give positions, or "
                    f"names of a DataFrame's columns{known})"
                )
            if not 0 <= j < num_features:
                raise ValueError(f"group {group!r}: column {c!r} is out of range")
            if j in owner:
                raise ValueError(f"column {c!r} is in groups {owner[j]!r} and {group!r}")
            owner[j] = group
            positions.append(j)
        if str(group) in out:
            raise ValueError(
                f"group {group!r} and an earlier group are both named {str(group)!r} as text "
                "(group names are strings): rename one"
            )
        out[str(group)] = positions
    left = [j for j in range(num_features) if j not in owner]
    if left:
        labels = [names[j] if names else j for j in left]
        raise ValueError(f"columns {labels} are in no group: add them to one (or drop them)")
    return out


#: how an imputer's group gets the categorical likelihood (for a text column's message)
IMPUTER_CATEGORICAL = "FactVAEImputer(groups=..., likelihood={group: 'categorical'})"


def check_frame(X: Any, groups: Mapping[str, list[int]]) -> None:
    """For a DataFrame, a ``ValueError`` naming the group, column and rows of the first cell
    that is not a number, or is inf (before scikit-learn's conversion, which names none of
    them)."""
    if not is_dataframe(X):
        return
    for name, cols in groups.items():
        for j in cols:
            if j < X.shape[1]:  # a frame of the wrong width is scikit-learn's to refuse
                column = X.iloc[:, j]
                check_numeric(name, X.columns[j], column, IMPUTER_CATEGORICAL)
                values = column.to_numpy(dtype=np.float64, na_value=np.nan)
                rows = np.flatnonzero(np.isinf(values))
                if len(rows):
                    raise ValueError(
                        f"group {name!r}: column {X.columns[j]!r}, rows {fmt_rows(rows)} "
                        f"(index {shown(list(X.index[rows[:5]]), 5)}) {INF_PROBLEM}"
                    )


def check_labels(X: Any, labels: list[Any] | None) -> None:
    """A ``ValueError`` when ``X`` is a DataFrame whose columns are not the (non-string)
    ``labels`` fitted on, in that order (``None``: nothing to check)."""
    if labels is not None and is_dataframe(X) and list(X.columns) != labels:
        raise ValueError(
            f"X's columns {shown(list(X.columns))} are not those fitted on, {shown(labels)}, "
            "by which groups names them: give them in that order (X[imputer.column_labels_])"
        )


def shown(labels: list[Any], most: int = 8) -> str:
    """``labels`` for a message: the first ``most`` of them."""
    more = f", ... ({len(labels)} in all)" if len(labels) > most else ""
    plain = [
        v.item() if isinstance(v, np.generic) else v for v in labels[:most]
    ]  # 11, not np.int64(11)
    return "[" + ", ".join(map(repr, plain)) + more + "]"


def without_groups(
    settings: Mapping[str, Any], groups: Sequence[str], gone: Sequence[str]
) -> dict[str, Any]:
    """The per-group settings of ``settings`` (``likelihood``, ``group_weight``,
    ``library_size``) without the groups ``gone`` (left out of the model: every column never
    observed), whether a setting names the groups or (``likelihood``) lists them in the order
    of ``groups``;
    a ``ValueError`` where a count group's size factors are in a group left out."""
    order, out = [str(g) for g in groups], {}
    for key in ("likelihood", "group_weight", "library_size"):
        value = settings[key]
        if isinstance(value, Mapping):
            out[key] = {g: v for g, v in value.items() if str(g) not in gone}
        elif key == "likelihood" and isinstance(value, (list, tuple)) and len(value) == len(order):
            out[key] = [v for g, v in zip(order, value) if g not in gone]
    sizes = out.get("library_size", {})
    for g, source in sizes.items():
        if str(source) in gone:
            raise ValueError(
                f"library_size of {g!r}: its size-factor group {source!r} is never observed "
                "(every cell is missing), so the counts have no size factors; give rows where "
                f"{source!r} is observed, or library_size={{{g!r}: 'data'}} (the counts' own "
                "sums)"
            )
    return out
