"""The names of each group's variables, where the data carry them, and their match with the
names a model was fitted on.

Groups given as pandas DataFrames with text column labels, an AnnData's ``var_names``
(read with :meth:`GroupedData.from_anndata <pyro_factvae.GroupedData.from_anndata>`) and a
MuData's modalities name their variables. A model keeps the names of its first fit
(:attr:`~pyro_factvae.FactVAE.variables_`), and data that name a group's variables later must
name the same ones, in the same order: a variable read in another's place would be imputed
from the wrong cells without a sign, so any difference is refused. (As in scikit-learn's
``feature_names_in_``, only text labels count: a frame made from an array, with integer
columns, is read by position.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["check_variables", "frame_variables", "text_labels"]

#: how the user gives a group its fitted variables, said where they differ
HOW = (
    "give each group the variables it was fitted on, in that order (vae.variables_): for a "
    "DataFrame, frame[vae.variables_[group]]; for an AnnData, GroupedData.from_anndata(adata, "
    "groups=vae.variables_); for a MuData, mdata.mod[group] = mdata.mod[group][:, "
    "vae.variables_[group]].copy(), then mdata.update()"
)


def text_labels(labels: Sequence[Any]) -> list[str] | None:
    """``labels`` as a list when every one is text, else ``None``."""
    labels = list(labels)
    return labels if labels and all(isinstance(c, str) for c in labels) else None


def _labels(value: Any) -> list[str] | None:
    """A DataFrame's column labels when every one is text, else ``None``."""
    if type(value).__name__ != "DataFrame" or not hasattr(value, "columns"):
        return None
    return text_labels(value.columns)


def frame_variables(names: Sequence[str], values: Sequence[Any]) -> dict[str, list[str]] | None:
    """``{group: [column labels]}`` of the groups given as DataFrames with text column labels
    (``None`` when none is)."""
    out = {name: cols for name, v in zip(names, values) if (cols := _labels(v)) is not None}
    return out or None


def check_variables(
    names: Sequence[str],
    given: Mapping[str, Sequence[str]] | None,
    fitted: Mapping[str, Sequence[str]] | None,
) -> None:
    """A ``ValueError`` naming the first group whose variables (``given``) are not the fitted
    ones in the fitted order; groups without names on either side are read by position."""
    if not given or not fitted:
        return
    for name in names:
        got, want = given.get(name), fitted.get(name)
        if got is None or want is None or list(got) == list(want):
            continue
        missing = [v for v in want if v not in set(got)]
        extra = [v for v in got if v not in set(want)]
        if missing or extra:
            what = f"lack {_few(missing)}" if missing else ""
            what += (" and " if missing and extra else "") + (
                f"name {_few(extra)}, which it was not fitted on" if extra else ""
            )
        else:
            what = f"name them in another order ({_few(list(got))})"
        raise ValueError(
            f"group {name!r}: the model was fitted on the variables {_few(list(want))}, and "
            f"these data {what}; {HOW}"
        )


def _few(labels: list[str], shown: int = 6) -> str:
    """``labels`` for a message: the first ``shown`` of them and how many in all."""
    head = ", ".join(repr(v) for v in labels[:shown])
    return f"[{head}]" if len(labels) <= shown else f"[{head}, ...] ({len(labels)} in all)"
