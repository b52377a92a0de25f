"""A warning when imputed means land far outside what the training data spanned.

A model fitted on few rows can extrapolate wildly: on 32 rows with 141 columns, a dense fit
(``lam`` 0) filled a group with values 17 standard deviations from its training mean. Each
feature's observed training range ``[low, high]`` is kept with the weights
(:func:`~pyro_factvae.module.held.training_range`); :meth:`~pyro_factvae.FactVAE.impute`
warns with an :class:`ExtrapolationWarning` when a filled mean lies farther outside that range
than the range is wide (below ``low - (high - low)`` or above ``high + (high - low)``), and
says where. The fills are returned as they are: the warning tells, it does not clip.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from .data import GroupedData

__all__ = ["LIMIT", "ExtrapolationWarning", "outside_widths", "warn_far_outside"]

#: a fill this many range widths outside its feature's training range is warned of
LIMIT = 1.0


class ExtrapolationWarning(UserWarning):
    """Imputed means far outside the training data's range of their features."""


def outside_widths(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """How far each of ``values`` (``(N, d)``) lies outside its column's ``[low, high]``
    (``(d,)`` each), in widths ``high - low``: 0 inside; 0 too where the width is 0 (a
    constant feature, filled with its value) or the range is not known (``low > high``)."""
    width = high - low
    known = width > 0
    safe = np.where(known, width, 1.0)
    out = np.maximum(np.maximum(low - values, values - high), 0.0) / safe
    return np.where(known, out, 0.0)


def _named(positions: np.ndarray, labels: Sequence[Any] | None) -> str:
    """The first five ``positions``, or their ``labels``, and how many there are."""
    shown = [str(int(i)) if labels is None else repr(labels[int(i)]) for i in positions[:5]]
    more = f", ... ({len(positions)} in all)" if len(positions) > 5 else ""
    return f"[{', '.join(shown)}{more}]"


def warn_far_outside(
    data: GroupedData,
    fills: Sequence[np.ndarray],
    ranges: Sequence[tuple[np.ndarray, np.ndarray]],
    stacklevel: int = 3,
    index: Sequence[Any] | None = None,
) -> None:
    """Warn (:class:`ExtrapolationWarning`) of the missing cells of ``data`` whose ``fills``
    (``(N, d_g)`` per group) lie more than :data:`LIMIT` widths outside their feature's
    training range (``ranges``: ``(low, high)`` per group), naming groups, rows and columns
    (rows by ``index``, a frame's row labels as a list, and columns by a frame's column names
    where ``data`` were read from one)."""
    parts, total, worst = [], 0, 0.0
    for g, (name, fill, (low, high)) in enumerate(zip(data.names, fills, ranges)):
        far = outside_widths(np.asarray(fill, dtype=np.float64), low, high)
        far = np.where(data.group_cells(g).numpy(), 0.0, far)
        hits = far > LIMIT
        if not hits.any():
            continue
        rows, cols = np.nonzero(hits)
        total += len(rows)
        worst = max(worst, float(far.max()))
        where = f"rows {_named(np.unique(rows), index)}, columns "
        where += _named(np.unique(cols), None if data.columns is None else data.columns[name])
        parts.append(f"group {name!r}: {len(rows)} cells ({where})")
    if parts:
        warnings.warn(
            f"{total} imputed means lie farther outside their column's training range than "
            f"the range is wide (up to {worst:.1f} widths out): {'; '.join(parts)}. The "
            "model extrapolates there, as a fit on few rows can (a dense map, lam 0, most). A "
            "larger lam (FactVAE(lam=...), or `factvae fit --lam`) or more training rows "
            "hold it in.",
            ExtrapolationWarning,
            stacklevel=stacklevel,
        )
