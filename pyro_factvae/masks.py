"""Observed masks of grouped data: per group ``(N, G)`` and per cell ``(N, sum d_g)``.

A cell is missing where it is NaN (or an explicit mask says so); a group is observed in a row
when at least one of its cells is. The cell mask is kept only where it says more than the group
mask (some observed group misses a cell): ``None`` otherwise, so whole-group data pays nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .validation import fmt_rows, reject_observed

__all__ = [
    "bool_mask",
    "complete_or_cells",
    "group_cells",
    "masks_from_explicit",
    "narrowed",
    "never_observed_columns",
    "require_trainable",
    "observed_from_nan",
]


def observed_from_nan(names, mats) -> tuple[np.ndarray, np.ndarray | None]:
    """The observed masks of per-group float arrays, NaN = missing: ``(N, G)`` groups (a
    group is observed in a row where any of its cells is) and ``(N, sum d_g)`` cells, or
    ``None`` for the cells when no observed group misses a cell (the group mask says it all)."""
    seen = [~np.isnan(m) for m in mats]
    obs = np.stack([s.any(axis=1) for s in seen], axis=1)
    partial = any(bool((o & ~s.all(axis=1)).any()) for o, s in zip(obs.T, seen))
    return obs, (np.concatenate(seen, axis=1) if partial else None)


def bool_mask(mask: Any, what: str = "mask") -> np.ndarray:
    """``mask`` (an array or tensor of bools, or of 0 and 1) as a numpy bool array; a
    ``ValueError`` for any other value (a mask of probabilities, NaN) rather than reading
    every nonzero as observed."""
    arr = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    if arr.dtype != bool:
        if not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{what} must be boolean (True = observed)")
        arr = arr.astype(bool)
    return arr


def group_cells(cells: np.ndarray, dims) -> list[np.ndarray]:
    """Per-group column blocks ``(N, d_g)`` of an ``(N, sum d_g)`` cell mask."""
    return np.split(cells, np.cumsum(list(dims))[:-1], axis=1)


def masks_from_explicit(names, mats, mask: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """An explicit bool mask, ``(N, G)`` per group or ``(N, sum d_g)`` per cell, as the
    ``(N, G)`` group mask and the cell mask (``None`` when no observed group misses a cell);
    ``ValueError`` for a wrong shape or dtype, or NaN under a cell marked observed."""
    obs = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask)
    num_rows, dims = mats[0].shape[0], [m.shape[1] for m in mats]
    shapes = {(num_rows, len(mats)), (num_rows, sum(dims))}
    if obs.ndim != 2 or tuple(obs.shape) not in shapes:
        raise ValueError(
            f"mask has shape {obs.shape}, expected (rows, groups) = {(num_rows, len(mats))} "
            f"or (rows, cells) = {(num_rows, sum(dims))}"
        )
    obs = bool_mask(obs)
    if obs.shape[1] == sum(dims) and obs.shape[1] != len(mats):
        cells = group_cells(obs, dims)
        groups = np.stack([c.any(axis=1) for c in cells], axis=1)
        partial = any(bool((c.any(1) & ~c.all(1)).any()) for c in cells)
        for name, m, c in zip(names, mats, cells):
            bad = np.flatnonzero((np.isnan(m) & c).any(axis=1))
            if len(bad):
                raise ValueError(
                    f"group {name!r}: rows {fmt_rows(bad)} hold NaN in cells marked observed; "
                    "set the mask False there or fill the values"
                )
        return groups, (obs if partial else None)
    reject_observed(
        names,
        mats,
        obs,
        np.isnan,
        "are marked observed but hold NaN; set mask False there or fill the values (or give "
        "a per-cell mask of shape (rows, cells))",
    )
    return obs, None


def complete_or_cells(
    cells: torch.Tensor, groups: torch.Tensor, dims: Sequence[int]
) -> torch.Tensor | None:
    """``cells``, or ``None`` when every observed group has all its cells (the group mask
    then says it all, and the whole-group fast paths apply)."""
    full = groups.repeat_interleave(torch.tensor(list(dims)), dim=1)
    return None if bool(torch.equal(cells, full)) else cells


def groups_of(cells: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """The ``(N, G)`` group mask of an ``(N, sum d_g)`` cell mask (any cell observed)."""
    return torch.stack([c.any(1) for c in torch.split(cells, list(dims), 1)], dim=1)


def narrowed(
    observed: torch.Tensor, groups: torch.Tensor, cells: torch.Tensor, dims: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(groups, cells)`` masks left when ``observed`` (an ``(N, G)`` group mask or an
    ``(N, sum d_g)`` cell mask) narrows the current ``groups`` and full ``cells`` masks;
    ``ValueError`` when it reveals something missing or has the wrong shape."""
    n, width = groups.shape[0], sum(dims)
    if observed.shape == groups.shape:
        if bool((observed & ~groups).any()):
            raise ValueError("the new mask marks observed a group that is missing in the data")
        cells = cells & observed.repeat_interleave(torch.tensor(list(dims)), dim=1)
    elif observed.shape == (n, width):
        if bool((observed & ~cells).any()):
            raise ValueError("the new mask marks observed a cell that is missing in the data")
        cells = observed
    else:
        raise ValueError(
            f"mask has shape {tuple(observed.shape)}, expected (rows, groups) = "
            f"{tuple(groups.shape)} or (rows, cells) = {(n, width)}"
        )
    return groups_of(cells, dims), cells


def never_observed_columns(
    names: Sequence[str],
    cells: torch.Tensor,
    dims: Sequence[int],
    columns: dict[str, list[Any]] | None,
) -> None:
    """``ValueError`` naming the first group with a column that no row observes."""
    for name, c in zip(names, torch.split(cells, list(dims), 1)):
        unseen = (~c.any(0)).nonzero().squeeze(-1).tolist()
        if unseen:
            cols = columns.get(name) if columns is not None else None
            which = [cols[j] for j in unseen] if cols else unseen
            label = "columns" if cols else "columns (by position in the group)"
            raise ValueError(
                f"group {name!r}: {label} {which} are never observed (all NaN) in the training "
                "data: nothing can be learned about them; drop them from the data or add rows "
                "that observe them"
            )


def require_trainable(
    names: Sequence[str],
    observed: torch.Tensor,
    cells: torch.Tensor | None,
    dims: Sequence[int],
    columns: Any = None,
) -> None:
    """Raise a ``ValueError`` naming any group or column that no row observes, or rows with
    no observed group (nothing can be learned from either)."""
    never = [n for n, seen in zip(names, observed.any(0).tolist()) if not seen]
    if never:
        raise ValueError(
            f"groups {never} are never observed (all NaN) in the training data: nothing "
            "can be learned about them; drop them from the data or add rows that observe them"
        )
    if cells is not None:
        never_observed_columns(names, cells, dims, columns)
    empty = (~observed.any(1)).nonzero().squeeze(-1).numpy()
    if len(empty):
        raise ValueError(
            f"{len(empty)} training rows have no observed group: {fmt_rows(empty)}; "
            "pass drop_empty_rows=True to GroupedData (factvae fit: --drop-empty-rows)"
        )
