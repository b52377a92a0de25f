"""The names of each group's variables, where the data carry them, and their match with the
names a model was fitted on.

Groups given as pandas DataFrames with text column labels, an AnnData's ``var_names``
(read with :meth:`GroupedData.from_anndata <pyro_factvae.GroupedData.from_anndata>`) and a
MuData's modalities name their variables. A model keeps the names of its first fit
(:attr:`~pyro_factvae.FactVAE.variables_`), and data that name a group's variables later must
name the same ones, in the same order: a variable read in another's place would be imputed
from the wrong cells without a sign, so any difference is refused. (As in scikit-learn's
``feature_names_in_``, only text labels count: a frame made from an array, with integer
columns, is read by position, and so is a group whose labels repeat one.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from .validation import is_dataframe

__all__ = [
    "FRAME_HOW",
    "PARTS_HOW",
    "check_variables",
    "frame_variables",
    "mudata_variables",
    "named",
    "text_labels",
]

#: how the user gives each group its fitted variables, for data given group by group
PARTS_HOW = (
    "give each group the variables it was fitted on, in that order (vae.variables_): for a "
    "group's DataFrame, frame[vae.variables_[group]]; for an AnnData, "
    "GroupedData.from_anndata(adata, groups=vae.variables_) or vae.to_anndata(adata, "
    "groups=vae.variables_); for a MuData, mdata.mod[group] = mdata.mod[group][:, "
    "vae.variables_[group]].copy(), then mdata.update()"
)
#: ... for one DataFrame split into groups by a column-to-group mapping
FRAME_HOW = (
    "leave the groups out (fit(frame) and the queries split the frame by the mapping the model "
    "was fitted with; factvae: leave --groups out), or give vae.set_columns / groups= / "
    "--groups each group's columns in the fitted order (vae.variables_)"
)


def text_labels(labels: Sequence[Any]) -> list[str] | None:
    """``labels`` as a list when every one is text and none repeats, else ``None``."""
    labels = list(labels)
    if not labels or not all(isinstance(c, str) for c in labels):
        return None
    return labels if len(set(labels)) == len(labels) else None


def named(labels: Mapping[str, Sequence[Any]]) -> dict[str, list[str]] | None:
    """``{group: labels}`` of the groups whose labels name their variables
    (:func:`text_labels`); ``None`` when none does."""
    out = {str(g): cols for g, v in labels.items() if (cols := text_labels(v)) is not None}
    return out or None


def mudata_variables(mdata: Any, modalities: Sequence[str]) -> dict[str, list[str]] | None:
    """The ``var_names`` of a MuData's ``modalities``, as :func:`named` keeps them."""
    return named({m: [str(v) for v in mdata.mod[m].var_names] for m in modalities})


def frame_variables(names: Sequence[str], values: Sequence[Any]) -> dict[str, list[str]] | None:
    """``{group: [column labels]}`` of the groups given as DataFrames with text column labels
    (``None`` when none is)."""
    return named({n: v.columns for n, v in zip(names, values) if is_dataframe(v)})


def check_variables(
    names: Sequence[str],
    given: Mapping[str, Sequence[str]] | None,
    fitted: Mapping[str, Sequence[str]] | None,
    how: str = PARTS_HOW,
) -> None:
    """A ``ValueError`` naming the first group whose variables (``given``) are not the fitted
    ones in the fitted order, and saying ``how`` to give them; groups without names on either
    side are read by position."""
    if not given or not fitted:
        return
    for name in names:
        got, want = given.get(name), fitted.get(name)
        if got is None or want is None or list(got) == list(want):
            continue
        got, want = list(got), list(want)
        missing = list((Counter(want) - Counter(got)).elements())
        extra = list((Counter(got) - Counter(want)).elements())
        if missing or extra:
            what = f"lack {_few(missing)}" if missing else ""
            what += (" and " if missing and extra else "") + (
                f"name {_few(extra)}, which it was not fitted on" if extra else ""
            )
        else:
            at = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
            what = (
                f"name them in another order: from position {at}, {_few(got[at:])} where it "
                f"was fitted on {_few(want[at:])}"
            )
        raise ValueError(
            f"group {name!r}: the model was fitted on the variables {_few(want)}, and these "
            f"data {what}; {how}"
        )


def _few(labels: list[str], shown: int = 6) -> str:
    """``labels`` for a message: the first ``shown`` of them and how many in all."""
    head = ", ".join(repr(v) for v in labels[:shown])
    return f"[{head}]" if len(labels) <= shown else f"[{head}, ...] ({len(labels)} in all)"
