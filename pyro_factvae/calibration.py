r"""How sure is an imputation? Calibration of the draws of
:meth:`~pyro_factvae.FactVAE.impute` against held-out truth.

:func:`draw_scores` hides entries of data whose values are known, draws them ``M`` times from
``p(x_hidden | x_rest)`` (importance-resampled ``z``, then the likelihood's noise; see
:mod:`pyro_factvae.module.draws`) and scores the draws against the truth:

* **coverage** of central intervals: the share of hidden entries inside the central ``a``
  interval of their draws (bounded by the draws of ranks ``j`` and ``M + 1 - j``,
  ``j = floor((M + 1) (1 - a) / 2)``), for each level ``a`` (calibrated draws cover a share
  ``a``, at least, whatever ``M``);
* **CRPS** per entry, ``E|X - y| - E|X - X'| / 2`` from the draws, the second mean over
  pairs of distinct draws (the fair CRPS; lower is better; for a point forecast it is the
  absolute error);
* **energy score** per (row, group), ``E||X - y|| - E||X - X'|| / 2`` over the group's hidden
  cells (the multivariate CRPS; ``X'`` pairs each draw with the next one).

Everything is per group and pooled over the hidden entries, in the data's units (or
standardized ones).
:func:`coverage` and :func:`crps` score the draws of any imputer the same way (the
benchmarks score the peers' draws with them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .checks import interval_draws, non_negative_int, positive_int, seed_int
from .data import GroupedData
from .estimator import FactVAE
from .infer.state import check_support
from .layout import Layout
from .module.draws import central_bounds, half_pair_distance, posterior_draws
from .module.predict import NUM_SAMPLES
from .module.refine import REFINE_STEPS
from .validation import fmt_rows, frame_columns, is_dataframe

__all__ = ["LEVELS", "coverage", "crps", "draw_scores"]

#: the central interval levels :func:`draw_scores` reports by default
LEVELS = (0.5, 0.8, 0.9, 0.95)


def _crps(draws: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The fair CRPS of each entry from ``(M, ...)`` draws: ``E|X - y| - E|X - X'| / 2``, the
    second mean over the ``M (M - 1)`` pairs of distinct draws, so that its expectation is the
    CRPS of the distribution the draws come from, whatever ``M`` (Ferro 2014); one draw has no
    pair, and its CRPS is its absolute error."""
    return (draws - truth).abs().mean(0) - half_pair_distance(draws)


def crps(draws: Any, truth: Any) -> np.ndarray:
    """CRPS of each entry of ``truth`` (any shape) from ``(M, *truth.shape)`` draws of any
    imputer: ``E|X - y| - E|X - X'| / 2``, the second mean over pairs of distinct draws (the
    fair CRPS: its expectation does not depend on ``M``, so that imputers scored with
    different numbers of draws are compared on the same footing; the empirical distribution's
    CRPS, which divides by ``M ** 2``, is larger by ``E|X - X'| / (2 M)``)."""
    x = torch.as_tensor(np.asarray(draws), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(truth), dtype=torch.float64)
    if x.shape[1:] != y.shape:
        raise ValueError(f"draws have shape {tuple(x.shape)}; expected (M, *{tuple(y.shape)})")
    return _crps(x, y).numpy()


def _levels(levels: Any) -> tuple[float, ...]:
    """Interval levels as a tuple of floats in (0, 1) (one number is one level), else a
    ``ValueError``."""
    if isinstance(levels, (int, float, np.number)) and not isinstance(levels, bool):
        levels = (levels,)
    try:
        out = tuple(float(a) for a in levels)
    except (TypeError, ValueError):
        raise ValueError(f"levels must be numbers in (0, 1), got {levels!r}") from None
    if not out:
        raise ValueError("levels is empty: give at least one interval level in (0, 1)")
    for a in out:
        if not 0.0 < a < 1.0:
            raise ValueError(f"levels must be in (0, 1), got {a!r}")
    return out


def coverage(
    draws: Any, truth: Any, where: Any, levels: Sequence[float] = LEVELS
) -> dict[float, float]:
    """Share of the entries ``where`` (bool, ``truth``'s shape) of ``truth`` inside the
    central ``level`` intervals of their ``(M, *truth.shape)`` draws, for each level: the
    intervals of :meth:`~pyro_factvae.FactVAE.predict_interval`, whose bounds are order
    statistics of the draws (:func:`~pyro_factvae.module.draws.central_ranks`), so that exact
    draws cover at least ``level`` whatever ``M``; ``M`` must be at least ``(1 + level) / (1 -
    level)`` for the widest level (else a ``ValueError``)."""
    levels = _levels(levels)
    x = torch.as_tensor(np.asarray(draws), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(truth), dtype=torch.float64)
    mask = torch.as_tensor(_as_mask(where, "where"))
    if x.shape[1:] != y.shape or mask.shape != y.shape:
        raise ValueError(
            f"draws have shape {tuple(x.shape)} and where {tuple(mask.shape)}; expected "
            f"(M, *{tuple(y.shape)}) and {tuple(y.shape)}, truth's shape"
        )
    interval_draws(x.shape[0], max(levels), "len(draws)")
    for what, bad in (("truth", ~y.isfinite() & mask), ("draws", ~x.isfinite().all(0) & mask)):
        if bool(bad.any()):  # NaN is inside no interval: it would count as a miss
            at, n = tuple(int(i) for i in bad.nonzero()[0]), int(bad.sum())
            raise ValueError(
                f"{what} {'are' if what == 'draws' else 'is'} not finite at {n} "
                f"entr{'y' if n == 1 else 'ies'} where scored (the first at index {at}): "
                "score only entries with a finite truth and draws"
            )
    bounds = central_bounds(x, levels)
    inside = (y >= bounds[:, 0]) & (y <= bounds[:, 1])  # (L, *truth.shape)
    return {float(a): float(ok[mask].double().mean()) for a, ok in zip(levels, inside)}


def _check_whole(hidden: torch.Tensor, truth: GroupedData, layout: Layout) -> None:
    """A ``ValueError`` naming the rows where ``hidden`` covers some columns of a group whose
    columns are one value (a categorical group's one-hot label: fewer variables than columns)."""
    start = 0
    for name, lik, dim, whole in zip(layout.names, layout.likelihoods, layout.dims, layout.whole):
        cols = hidden[:, start : start + dim]
        start += dim
        if not whole:
            continue
        part = cols.any(-1) & ~cols.all(-1)
        if bool(part.any()):
            raise ValueError(
                f"hidden covers only some columns of group {name!r} in rows "
                f"{fmt_rows(np.flatnonzero(part.numpy()))}: its {dim} columns are one "
                f"{lik} value, hidden whole or not at all; hide all of them or none"
            )


def draw_scores(
    vae: FactVAE,
    data: Any,
    hidden: Any,
    num_draws: int = 200,
    levels: Sequence[float] = LEVELS,
    num_samples: int = NUM_SAMPLES,
    seed: int = 0,
    standardized: bool = False,
    refine_steps: int = REFINE_STEPS,
) -> dict[str, Any]:
    """Coverage, CRPS and energy score of ``num_draws`` draws of the ``hidden`` entries.

    Parameters
    ----------
    vae : FactVAE
        A fitted model.
    data
        The complete truth (anything :meth:`~pyro_factvae.FactVAE.impute` takes); entries
        already missing are not scored, nor rows that observe nothing.
    hidden : array-like of bool, or mapping
        ``(N, G)`` groups or ``(N, sum d_g)`` cells to hide and score (observed ones only;
        each row must keep an observed cell), in the order of the groups of ``data`` (a
        dict's own key order), or ``{group: (N, d_g) cells or (N,) rows}`` (groups left
        out: nothing hidden). For a DataFrame ``data``, a mask of the frame's shape is read
        by its columns (a DataFrame mask by its column labels, and its rows by their labels
        when its index holds the data's in another order).
    num_draws, num_samples, seed, refine_steps
        As in :meth:`~pyro_factvae.FactVAE.impute`; ``num_draws`` at least ``(1 + level) / (1 -
        level)`` for the largest level (39 for 95%).
    levels : sequence of float
        Central interval levels for the coverage.
    standardized : bool
        CRPS and energy score in standardized units (draws and truth divided by each
        feature's training standard deviation) instead of the data's units.

    Returns
    -------
    dict
        ``coverage``: ``{level: {"pooled": share, group: share}}``, of the intervals
        :meth:`~pyro_factvae.FactVAE.predict_interval` gives (in a count, 0/1 or one-hot
        group, bounds that are draws); ``crps``: ``{"pooled":
        mean, group: mean}`` per entry; ``energy``: ``{"pooled": mean, group: mean}`` per
        (row, group) with hidden cells; ``entries``: ``{group: count}``; ``ess``: the mean
        effective sample size of the importance weights.
    """
    non_negative_int("refine_steps", refine_steps)
    positive_int("num_samples", num_samples)
    seed_int(seed)
    levels = _levels(levels)
    interval_draws(num_draws, max(levels))  # the widest interval needs the most draws
    model, guide = vae.fitted_modules()
    truth = vae.prepare(data, allow_empty_rows=True)
    hidden = torch.as_tensor(_in_group_order(vae, data, hidden), dtype=torch.bool)
    full = truth.cell_mask()
    if hidden.shape == truth.observed.shape:
        hidden = hidden.repeat_interleave(torch.tensor(truth.dims), dim=1)
    if hidden.shape != full.shape:
        raise ValueError(
            f"hidden has shape {tuple(hidden.shape)}; expected (rows, groups) = "
            f"{tuple(truth.observed.shape)} or (rows, cells) = {tuple(full.shape)}"
        )
    hidden = hidden & full
    if not bool(hidden.any()):
        raise ValueError(
            "hidden selects no observed cell of data, so there is nothing to score: mark "
            "cells that data observes (the entries to hide and predict), not its missing ones"
        )
    _check_whole(hidden, truth, model.layout)
    seen = truth.observed.any(-1)  # a row that observes nothing has nothing to score
    bare = seen & ~(full & ~hidden).any(-1)
    if bool(bare.any()):
        raise ValueError(
            f"hidden leaves rows {fmt_rows(np.flatnonzero(bare.numpy()))} with no observed "
            "cell, so nothing is left to predict them from: hide fewer of their cells"
        )
    if not bool(seen.all()):
        truth, hidden, full = truth.subset(seen), hidden[seen], full[seen]
    held = truth.with_mask(full & ~hidden)  # a row left with nothing observed is refused here
    check_support(held, model.layout)  # e.g. a one-hot label hidden in part
    draws_of = posterior_draws(
        model,
        guide,
        held.values,
        held.observed,
        held.cells,
        num_draws,
        num_samples,
        seed,
        refine_steps=refine_steps,
        spread=vae.spread_,
    )
    groups = np.repeat(np.arange(truth.num_groups), truth.dims)
    inside = np.zeros((len(levels), truth.num_groups))
    crps = np.zeros(truth.num_groups)
    energy, rows_scored = np.zeros(truth.num_groups), np.zeros(truth.num_groups)
    ess = []
    unit = torch.cat([u.cpu() for u in model.units()]).double() if standardized else 1.0
    for rows, draws, part_ess in draws_of:
        y, hid = truth.matrix[rows].double() / unit, hidden[rows]
        x = draws.double() / unit
        q = central_bounds(x, levels)  # (L, 2, b, D), as predict_interval's
        ok = (y >= q[:, 0]) & (y <= q[:, 1]) & hid  # (L, b, D)
        score = _crps(x, y).where(hid, 0.0)
        for g in range(truth.num_groups):
            cols = torch.as_tensor(groups == g)
            inside[:, g] += ok[:, :, cols].sum((1, 2)).numpy()
            crps[g] += float(score[:, cols].sum())
            h = hid[:, cols]
            diff = (x[:, :, cols] - y[:, cols]).where(h, 0.0)
            pair = (x[:, :, cols] - x.roll(1, 0)[:, :, cols]).where(h, 0.0)
            es = diff.norm(dim=-1).mean(0) - 0.5 * pair.norm(dim=-1).mean(0)
            some = h.any(-1)
            energy[g] += float(es[some].sum())
            rows_scored[g] += int(some.sum())
        ess.append(part_ess)
    entries = np.array(
        [int(hidden[:, torch.as_tensor(groups == g)].sum()) for g in range(truth.num_groups)]
    )
    names = truth.names

    def per_group(values: np.ndarray, counts: np.ndarray) -> dict[str, float]:
        out = {"pooled": float(values.sum() / counts.sum()) if counts.sum() else float("nan")}
        for name, v, c in zip(names, values, counts):
            out[name] = float(v / c) if c else float("nan")
        return out

    return {
        "coverage": {float(a): per_group(inside[i], entries) for i, a in enumerate(levels)},
        "crps": per_group(crps, entries),
        "energy": per_group(energy, rows_scored),
        "entries": {name: int(c) for name, c in zip(names, entries)},
        "ess": float(torch.cat(ess).mean()) if ess else float("nan"),
    }


def _in_group_order(vae: FactVAE, data: Any, hidden: Any) -> np.ndarray:
    """``hidden`` as a numpy bool mask in the fitted group order: for a DataFrame ``data``, a
    mask over the frame's columns (or a DataFrame mask, by its column and row labels) as the
    cells of the groups; for a dict or a MuData ``data`` in another order than fitted, a mask
    of its groups or cells in its own order (the dict's keys, the MuData's modalities); a
    mapping ``{group: (N, d_g) cells or (N,) rows}`` as the cells of its groups (others not
    hidden)."""
    if isinstance(hidden, Mapping):
        names, dims = list(vae.layout_.names), list(vae.layout_.dims)
        masks = {str(k): _as_mask(v, f"hidden[{str(k)!r}]") for k, v in hidden.items()}
        if len(masks) != len(hidden):
            raise ValueError(f"hidden names a group twice: {list(hidden)}")
        unknown = [k for k in masks if k not in names]
        if unknown or not masks:
            raise ValueError(
                f"hidden names groups {unknown or '{}'}; give {{group: mask}} for some of the "
                f"fitted groups {names}"
            )
        rows = {k: m.shape[0] if m.ndim else 0 for k, m in masks.items()}
        if len(set(rows.values())) != 1:
            raise ValueError(f"hidden's masks have different numbers of rows: {rows}")
        n = next(iter(rows.values()))
        parts = []
        for name, d in zip(names, dims):
            m = masks.get(name, np.zeros((n, d), dtype=bool))
            m = np.repeat(m[:, None], d, axis=1) if m.ndim == 1 else m
            if m.shape != (n, d):
                raise ValueError(
                    f"hidden[{name!r}] has shape {m.shape}; expected ({n},) rows or ({n}, {d}) "
                    "cells"
                )
            parts.append(m)
        return np.concatenate(parts, axis=1)
    if is_dataframe(data) and vae.columns_ is not None:
        labels = [c for cols in frame_columns(data, vae.columns_).values() for c in cols]
        if is_dataframe(hidden):  # by its labels: columns, and rows by the frame's index
            lacking = [c for c in labels if c not in hidden.columns]
            if lacking:
                raise ValueError(f"hidden lacks the columns {lacking[:5]} of the fitted groups")
            if not hidden.index.equals(data.index):  # the same labels in another order
                repeated = hidden.index.has_duplicates or data.index.has_duplicates
                if repeated or len(hidden) != len(data) or set(hidden.index) != set(data.index):
                    raise ValueError(
                        "hidden's row index differs from the data's: give a mask with the "
                        "data's index, in any order (each label once), or in the data's "
                        "order (a frame of hidden.to_numpy() and data.index)"
                    )
                hidden = hidden.loc[data.index]
            return _as_mask(hidden[labels].to_numpy())
        hidden = _as_mask(hidden)
        if hidden.shape == data.shape:
            return hidden[:, [data.columns.get_loc(c) for c in labels]]
        return hidden
    hidden = _as_mask(hidden)
    order = [str(k) for k in data] if isinstance(data, Mapping) else []
    if type(data).__name__ == "MuData":  # its modalities are its groups, in its own order
        order = [str(m) for m in data.mod]
    names = vae.layout_.names
    if hidden.ndim == 2 and sorted(order) == sorted(names) and order != list(names):
        # a dict's or MuData's groups in its own order: its mask's columns are in that order
        width = dict(zip(names, vae.layout_.dims))
        if hidden.shape[1] == len(order):
            return hidden[:, [order.index(n) for n in names]]
        if hidden.shape[1] == sum(width.values()):
            parts = dict(zip(order, np.split(hidden, np.cumsum([width[n] for n in order])[:-1], 1)))
            return np.concatenate([parts[n] for n in names], axis=1)
    return hidden


def _as_mask(hidden: Any, what: str = "hidden") -> np.ndarray:
    """``hidden`` as a bool array; a ``ValueError`` (naming it ``what``) for values other than
    booleans, 0 and 1."""
    hidden = np.asarray(hidden)
    try:  # pandas' NA in a nullable mask is no answer
        ok = hidden.dtype == bool or bool(np.isin(hidden, (0, 1)).all())
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{what} must hold booleans (or 0 and 1), no missing values")
    return hidden.astype(bool)
