"""The values float32 training can hold: a ``ValueError`` for a column whose observed values
overflow or underflow it, a warning naming the columns whose spread it rounds away.

The model holds data in float32 and scores values in their own units, so a column must fit
:data:`MAGNITUDES`; and float32 keeps about seven significant digits, so a column whose range
is small for its size (Unix times in seconds over a day, values near 1e8 that vary by a few
units) loses its variation to rounding. :func:`column_ranges` reads each column's observed
extremes (of in-memory arrays, or batch by batch of a stream, :func:`merge_ranges`);
:func:`refuse_overflow` refuses values beyond float32 as the data are built (for any use),
and :func:`check_ranges` judges the rest once, over every group, when the data are trained
on (a few query rows have small ranges that say nothing of the training data).
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence

import numpy as np

__all__ = [
    "COARSE",
    "MAGNITUDES",
    "check_ranges",
    "column_ranges",
    "merge_ranges",
    "refuse_overflow",
]

#: the observed values a column may hold: at least the first in magnitude where it is not
#: zero, and a range of at most the second (the squares of deviations overflow float32 past
#: about 1e19, and values below about 1e-19 underflow)
MAGNITUDES = (1e-18, 1e18)
#: a column is named in the warning when float32's step at its largest value exceeds this
#: share of its range (values near 1.7e9, steps of 128, over less than about 36 hours)
COARSE = 1e-3

Range = tuple[np.ndarray, np.ndarray]


def column_ranges(
    mats: Sequence[np.ndarray], obs: np.ndarray, cells: np.ndarray | None, nan_missing: bool = False
) -> list[Range]:
    """Per group, the ``(largest, smallest)`` observed value of each column (``-inf``,
    ``inf`` where none is observed); ``obs``, ``cells``: the ``(N, G)`` group mask and the
    ``(N, sum d_g)`` cell mask (``None``: every cell of an observed group).
    ``nan_missing``: every missing cell holds NaN (the masks were read from the NaN), so
    NaN-skipping reductions read the arrays without the masks (about 2.5x faster)."""
    if nan_missing:
        out = []
        for m in mats:
            top, bottom = np.fmax.reduce(m, axis=0), np.fmin.reduce(m, axis=0)
            out.append((np.nan_to_num(top, nan=-np.inf), np.nan_to_num(bottom, nan=np.inf)))
        return out
    if cells is not None:
        seen = np.split(cells, np.cumsum([m.shape[1] for m in mats])[:-1], axis=1)
    else:
        seen = [obs[:, [j]] for j in range(len(mats))]
    return [
        (
            np.max(m, axis=0, where=s, initial=-np.inf),
            np.min(m, axis=0, where=s, initial=np.inf),
        )
        for m, s in zip(mats, seen)
    ]


def merge_ranges(ranges: list[Range] | None, more: list[Range]) -> list[Range]:
    """The ranges of two sets of rows together (``None``: no rows yet)."""
    if ranges is None:
        return more
    return [(np.maximum(t, t2), np.minimum(b, b2)) for (t, b), (t2, b2) in zip(ranges, more)]


def refuse_overflow(names: Sequence[str], ranges: list[Range]) -> None:
    """A ``ValueError`` naming the first column (over every group) with an observed value
    beyond float32's largest (it would be held as inf)."""
    for name, (top, bottom) in zip(names, ranges):
        peak = np.where(np.isfinite(top), np.maximum(np.abs(top), np.abs(bottom)), 0.0)
        for j in np.flatnonzero(peak >= np.finfo(np.float32).max):
            raise ValueError(
                f"group {name!r}, column {j}: observed values reach {peak[j]:.3g}, beyond "
                "float32's largest, which the model holds values in: rescale the column (e.g. "
                f"divide it by {peak[j]:.0e}) and scale what the model returns back"
            )


def check_ranges(names: Sequence[str], ranges: list[Range]) -> None:
    """A ``ValueError`` naming the first column (over every group) whose values float32
    training cannot hold; then one ``UserWarning`` naming every column whose spread float32
    rounds away, with what to do."""
    refuse_overflow(names, ranges)
    low, high = MAGNITUDES
    coarse = []
    for name, (top, bottom) in zip(names, ranges):
        seen = np.isfinite(top)
        peak = np.where(seen, np.maximum(np.abs(top), np.abs(bottom)), 0.0)
        spread = np.where(seen, top - bottom, 0.0)
        for j in np.flatnonzero((spread > high) | ((peak > 0) & (peak < low))):
            if spread[j] > high:
                what, scale = f"span {spread[j]:.3g}", spread[j]
            else:
                what, scale = f"are at most {peak[j]:.3g} in magnitude", peak[j]
            raise ValueError(
                f"group {name!r}, column {j}: observed values {what}; the model trains in "
                f"float32 on values of at least {low:g} in magnitude that span at most "
                f"{high:g}: rescale the column (e.g. divide it by {scale:.0e}) and scale what "
                "the model returns back"
            )
        step = np.spacing(peak.astype(np.float32)).astype(np.float64)
        for j in np.flatnonzero((spread > 0) & (step > COARSE * spread)):
            near, span, by = f"{peak[j]:.6g}", f"{spread[j]:.3g}", f"{step[j]:.3g}"
            coarse.append(f"{name!r} column {j} (near {near}, range {span}, steps of {by})")
    if coarse:
        warnings.warn(
            f"columns vary little for their size: {'; '.join(coarse[:5])}"
            f"{f'; and {len(coarse) - 5} more' if len(coarse) > 5 else ''}. The model holds "
            "values in float32, which rounds them to those steps, so their variation is "
            "lost: subtract an offset (e.g. each column's mean) before fitting, and add it "
            "back to what the model returns",
            UserWarning,
            stacklevel=_outside(),
        )


def _outside() -> int:
    """The ``stacklevel`` that points a warning raised in :func:`check_ranges` at the first
    caller outside this package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe(), 0
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return max(level, 1)
