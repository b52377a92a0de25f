r"""Held-out metrics for a fitted :class:`~pyro_factvae.FactVAE` (sec. 4, Table 1).

Every metric is computed per row (``(N,)`` arrays, ``NaN`` where a row has nothing to
evaluate) and :func:`evaluate` averages them. Notation: ``O`` are the groups observed in a
row, ``G`` the groups given to the encoder, ``M`` the held-out (target) groups, ``q`` the
fitted posterior (the product of experts, or the JMVAE+ mixture for ``inference="mixture"``).

=========================================  =================================================
:func:`reconstruction_log_likelihood`      ``sum_{g in M} log p(x_g | z)``, one ``z ~ q(z | x_G)``
                                           (the paper's Table 1 "test log-likelihood")
:func:`iwae_log_likelihood`                ``log p(x_O)``, importance-weighted bound, ``k`` samples
:func:`conditional_log_likelihood`         ``log p(x_M | x_G)`` by self-normalised importance
                                           sampling with proposal ``q(z | x_G)``
:func:`imputation_error`                   squared / absolute error of ``E[x_M | x_G]``
=========================================  =================================================

Monte Carlo work runs over samples and rows in chunks of at most ``max_elements`` floats
per decoder output (``k = 1000`` fits in memory for any ``N``), under ``seed`` in a forked RNG.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .calibration import LEVELS, draw_scores
from .checks import interval_draws, non_negative_int, positive_int, seed_int
from .data import GroupedData, as_grouped
from .estimator import FactVAE
from .module.predict import NUM_SAMPLES, predictive_means
from .module.refine import REFINE_STEPS
from .module.scoring import (
    MAX_ELEMENTS,
    held_out,
    held_out_score,
    importance,
    reconstruction_score,
)

__all__ = [
    "conditional_log_likelihood",
    "evaluate",
    "held_out_log_likelihood",
    "imputation_error",
    "iwae_log_likelihood",
    "mean_imputation_error",
    "reconstruction_log_likelihood",
]


def _prepare(vae: FactVAE, data: Any, scored_rows: bool = False) -> GroupedData:
    """``data`` for the fitted model, rows with no observed group kept (their per-row scores
    are ``NaN``), or with ``scored_rows`` left out (there is nothing of them to score)."""
    vae.fitted_modules()
    data = vae.prepare(data, allow_empty_rows=True)
    if not scored_rows:
        return data
    seen = data.observed.any(-1)
    if not bool(seen.any()):
        raise ValueError("no row of the data has an observed group: there is nothing to score")
    return data if bool(seen.all()) else data.subset(seen)


def _as_numpy(values: torch.Tensor, valid: torch.Tensor) -> np.ndarray:
    out = values.double().numpy().copy()
    out[~valid.numpy()] = np.nan
    return out


def reconstruction_log_likelihood(
    vae: FactVAE,
    data: Any,
    given: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    """Single-sample reconstruction log-likelihood per row (the paper's Table 1 metric).

    Encodes each row with the observed groups in ``given`` (default: all observed), draws
    **one** ``z ~ q(z | x_given)`` and returns ``sum_{g in targets} log p(x_g | z)`` over the
    observed targets (default: all observed groups; a group of size factors that is not a
    target sets its count groups' depth, given or not). A noisy reconstruction score, not a
    marginal likelihood (see :func:`iwae_log_likelihood`). ``NaN`` for rows with no observed
    target. Rows are scored ``max_elements`` floats at a time, as the other scores.
    """
    _check_draws(1, seed, max_elements)
    data = _prepare(vae, data)
    model, guide = vae.fitted_modules()
    enc = data.group_mask(given, data.observed)
    tgt = data.group_mask(targets, data.observed)
    ll = reconstruction_score(model, guide, data, enc, tgt, seed, max_elements)
    return _as_numpy(ll, tgt.any(-1))


def _check_draws(num_samples: Any, seed: Any, max_elements: Any) -> None:
    """``ValueError`` for settings of the importance-weighted scores that are not integers
    (``num_samples`` and ``max_elements`` positive)."""
    positive_int("num_samples", num_samples)
    seed_int(seed)
    positive_int("max_elements", max_elements)


def iwae_log_likelihood(
    vae: FactVAE,
    data: Any,
    num_samples: int = 1000,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    r"""Importance-weighted estimate of the marginal log-likelihood ``log p(x_O)`` per row.

    ``log (1/k) sum_{s=1}^k p(x_O | z_s) p(z_s) / q(z_s | x_O)`` with ``z_s ~ q(z | x_O)``,
    ``O`` the row's observed groups (Burda et al. 2016). A lower bound in expectation that
    tightens as ``k = num_samples`` grows; with the ``Phi`` and networks at their fitted
    values (the global sites' prior is not included). ``NaN`` for rows with no observed group.
    """
    _check_draws(num_samples, seed, max_elements)
    data = _prepare(vae, data)
    model, guide = vae.fitted_modules()
    (out,) = importance(
        model,
        guide,
        data,
        data.observed,
        [torch.zeros_like(data.observed)],
        num_samples,
        seed,
        max_elements,
    )
    return _as_numpy(out, data.observed.any(-1))


def conditional_log_likelihood(
    vae: FactVAE,
    data: Any,
    targets: Sequence[str],
    given: Sequence[str] | None = None,
    num_samples: int = 1000,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    r"""``log p(x_M | x_G)`` of held-out groups ``M = targets`` given groups ``G`` per row.

    Self-normalised importance sampling with proposal ``q(z | x_G)``::

        p(x_M | x_G) = E_{p(z | x_G)}[p(x_M | z)]
                     ≈ sum_s w_s p(x_M | z_s) / sum_s w_s,
        w_s = p(x_G | z_s) p(z_s) / q(z_s | x_G)

    i.e. the difference of two importance-weighted estimates, ``log p(x_M, x_G) - log p(x_G)``,
    on the same draws (consistent as ``k`` grows). ``G`` defaults to every observed group
    not in ``targets``; a group of size factors not in ``targets`` is a covariate of both
    terms, given or not. ``NaN`` for rows where no target is observed. A row with no given
    group gets ``log p(x_M)`` under the prior proposal.
    """
    _check_draws(num_samples, seed, max_elements)
    data = _prepare(vae, data)
    tgt = data.group_mask(_named(targets), data.observed)
    enc = data.group_mask(given, data.observed & ~tgt)
    if bool((enc & tgt).any()):
        raise ValueError("a group cannot be both given and a target; remove it from one list")
    model, guide = vae.fitted_modules()
    joint, marginal = importance(
        model, guide, data, enc, [tgt, torch.zeros_like(tgt)], num_samples, seed, max_elements
    )
    return _as_numpy(joint - marginal, tgt.any(-1))


def imputation_error(
    vae: FactVAE,
    data: Any,
    targets: Sequence[str],
    given: Sequence[str] | None = None,
    num_samples: int = NUM_SAMPLES,
    seed: int = 0,
    importance: bool = True,
    standardized: bool = False,
    refine_steps: int = REFINE_STEPS,
) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the posterior-predictive mean ``E[x_M | x_G]`` against the held-out truth
    (estimated as :meth:`~pyro_factvae.FactVAE.reconstruct` does, with ``num_samples``,
    ``importance`` and ``refine_steps``; a group of size factors not in ``targets`` is read).

    Returns per-row ``(sum of squared errors, sum of absolute errors)`` over the observed
    cells of ``targets`` (``NaN`` for rows with no observed target); ``G`` defaults to every
    observed group not in ``targets``, each encoded from its observed cells. RMSE over a data
    set is ``sqrt(nansum(sse) / entries)``, see :func:`evaluate`. Errors are in the data's
    units, or with ``standardized`` divided by each feature's training standard deviation
    (normal groups; other families as they are).
    """
    data = _prepare(vae, data)
    tgt = data.group_mask(_named(targets), data.observed)
    enc = data.group_mask(given, data.observed & ~tgt)
    if bool((enc & tgt).any()):  # the target's own cells would be read to predict them
        raise ValueError("a group cannot be both given and a target; remove it from one list")
    seed_int(seed)
    model, guide = vae.fitted_modules()
    if num_samples != 0:
        positive_int("num_samples", num_samples)
    idx = [data.index(name) for name in targets]
    non_negative_int("refine_steps", refine_steps)
    args = (data.values, enc, idx, num_samples, seed, data.cells, importance, refine_steps)
    means = predictive_means(model, guide, *args, sources=data.observed & ~tgt)
    units = [u.cpu() for u in model.units()] if standardized else None
    return _errors(data, tgt, dict(zip(targets, means)), units)


def _errors(
    data: GroupedData,
    tgt: torch.Tensor,
    pred: dict[str, torch.Tensor],
    units: list[torch.Tensor] | None = None,
):
    """Per-row squared and absolute errors over the observed cells of the target groups
    (divided by each feature's unit, when ``units`` are given per group)."""
    sse = torch.zeros(len(data), dtype=torch.float64)
    sae = torch.zeros(len(data), dtype=torch.float64)
    for name, value in pred.items():
        g = data.index(name)
        seen = tgt[:, g, None] & data.group_cells(g)
        diff = (value.double() - data.values[g].double()).where(seen, 0.0)
        if units is not None:
            diff = diff / units[g].double()
        sse += diff.square().sum(-1)
        sae += diff.abs().sum(-1)
    valid = tgt.any(-1)
    return _as_numpy(sse, valid), _as_numpy(sae, valid)


def _named(targets: Any) -> Any:
    """``targets``, with a ``ValueError`` where it names no group (a string: said later)."""
    if targets is None or (not isinstance(targets, str) and not list(targets)):
        raise ValueError(f"targets must name the groups to score, e.g. ['a'], got {targets!r}")
    return targets


def mean_imputation_error(
    train: Any, data: Any, targets: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Errors of the per-feature mean of ``train`` as the imputation of ``targets`` in ``data``.

    The trivial baseline for :func:`imputation_error`; same return convention.
    """
    train = as_grouped(train)  # data may hold rows with nothing observed: NaN there
    data = as_grouped(data, allow_empty_rows=True)
    tgt = data.group_mask(_named(targets), data.observed)
    named = (train.variables or {}), (data.variables or {})
    for name in targets:  # matched by name: each target of the same width in both
        have, want = data.dims[data.index(name)], train.dims[train.index(name)]
        a, b = (list(v.get(name) or []) for v in named)  # its variables, where named
        if have != want or (a and b and a != b):
            got, kept = (f"the columns {b}", a) if a and b else (f"{have} columns", want)
            raise ValueError(
                f"group {name!r} has {got} in data and {kept} in train: give it the same "
                "columns in both, in the same order"
            )
    pred = {}
    for name in targets:
        g = train.index(name)
        obs = train.group_cells(g)
        if not bool(obs.any()):
            raise ValueError(f"group {name!r} is never observed in the training data")
        never = np.flatnonzero(~obs.any(0).numpy()).tolist()
        if never:
            raise ValueError(
                f"group {name!r}: columns {never} are never observed in the training data, so "
                "they have no mean to impute with; leave them out of both data sets"
            )
        mean = train.values[g].double().where(obs, 0.0).sum(0) / obs.sum(0).clamp(min=1)
        pred[name] = mean.expand(len(data), -1)
    return _errors(data, tgt, pred)


def evaluate(
    vae: FactVAE,
    data: Any,
    num_samples: int = 1000,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
    num_draws: int = 200,
    standardized: bool = True,
    refine_steps: int = REFINE_STEPS,
    by_group: bool = False,
) -> dict[str, Any]:
    """All metrics on ``data``, averaged over rows (and, for held-out ones, over groups);
    rows with no observed group are left out, as nothing of them can be scored.

    ``rmse``, ``mae`` and ``crps`` are in standardized units by default: each error divided
    by its feature's training standard deviation (kept in the model), so that features in
    the hundreds do not drown those near one (normal groups; the errors of other families,
    counts among them, are in their own units, as :func:`imputation_error`'s);
    ``standardized=False`` reports the data's units.

    Returns
    -------
    dict
        ``recon_ll``: :func:`reconstruction_log_likelihood` with every observed group given
        and evaluated (Table 1); ``iwae_ll``: :func:`iwae_log_likelihood` with ``num_samples``;
        ``cond_ll``: :func:`conditional_log_likelihood` of each group held out in turn given the
        other observed ones, averaged over (row, group) pairs; ``rmse`` / ``mae``: the
        same leave-one-group-out protocol for :func:`imputation_error`, per entry;
        ``coverage_50`` .. ``coverage_95`` and ``crps``: that protocol again with
        ``num_draws`` draws of each held-out group (see
        :func:`~pyro_factvae.calibration.draw_scores`): the share of held-out entries inside
        central 50 / 80 / 90 / 95% intervals, and the CRPS per entry (``num_draws=0`` skips
        them). All log-likelihoods are in nats per row. ``num_samples``: the draws of ``z``
        behind the IWAE and conditional log-likelihoods (their importance samples), each
        imputed mean and the draws (their proposals). ``refine_steps``: of the imputations
        and draws, as in :meth:`~pyro_factvae.FactVAE.impute` (0: the encoder's posterior).
        ``groups`` (with ``by_group=True``): ``{group: {"cond_ll", "rmse", "mae", coverages,
        "crps"}}``, the held-out scores of each group held out (those no row could hold out
        are absent); the pooled ones above are their averages weighted by pairs (``cond_ll``)
        and entries (the others).
    """
    non_negative_int("refine_steps", refine_steps)
    _check_draws(num_samples, seed, max_elements)
    if non_negative_int("num_draws", num_draws):  # enough for the widest coverage reported
        interval_draws(num_draws, max(LEVELS))
    data = _prepare(vae, data, scored_rows=True)
    out = {
        "recon_ll": float(
            np.nanmean(
                reconstruction_log_likelihood(vae, data, seed=seed, max_elements=max_elements)
            )
        ),
        "iwae_ll": float(np.mean(iwae_log_likelihood(vae, data, num_samples, seed, max_elements))),
    }
    per: dict[str, dict[str, Any]] = {}  # each held-out group's sums
    for g, name, sub in held_out(data):
        c = conditional_log_likelihood(vae, sub, [name], None, num_samples, seed, max_elements)
        e2, e1 = imputation_error(
            vae,
            sub,
            [name],
            num_samples=num_samples,
            seed=seed,
            standardized=standardized,
            refine_steps=refine_steps,
        )
        per[name] = {
            "cond": c,
            "sse": float(np.nansum(e2)),
            "sae": float(np.nansum(e1)),
            "entries": int(sub.group_cells(g).sum()),
        }
        if num_draws:  # the same held-out group, drawn: interval coverage and CRPS
            hide = torch.zeros_like(sub.observed)
            hide[:, g] = True
            scores = draw_scores(
                vae,
                sub,
                hide,
                num_draws,
                LEVELS,
                num_samples=num_samples,
                seed=seed,
                standardized=standardized,
                refine_steps=refine_steps,
            )
            per[name]["coverage"] = {a: scores["coverage"][a][name] for a in LEVELS}
            per[name]["crps"] = scores["crps"][name]
            per[name]["drawn"] = scores["entries"][name]  # the entries the draws scored
    if not per:
        warnings.warn(
            "no row observes two groups, so none can be held out and predicted from the "
            "others: cond_ll, rmse, mae, the coverages and crps are NaN (recon_ll and iwae_ll "
            "are scored)",
            UserWarning,
            stacklevel=2,
        )
    out.update(_held_out_scores(list(per.values()), num_draws > 0))
    if by_group:
        out["groups"] = {
            name: _held_out_scores([sums], num_draws > 0) for name, sums in per.items()
        }
    return out


def _held_out_scores(per: Sequence[dict[str, Any]], drawn: bool) -> dict[str, float]:
    """``cond_ll`` (per (row, group) pair), ``rmse`` and ``mae`` (per entry) and, when
    ``drawn``, the coverages and ``crps`` (per entry) of the held-out groups' sums ``per``
    (NaN where there is none)."""
    nan = float("nan")
    entries = sum(p["entries"] for p in per)
    cond = [p["cond"] for p in per]
    out = {
        "cond_ll": float(np.mean(np.concatenate(cond))) if cond else nan,
        "rmse": math.sqrt(sum(p["sse"] for p in per) / entries) if entries else nan,
        "mae": sum(p["sae"] for p in per) / entries if entries else nan,
    }
    if drawn:
        count = sum(p["drawn"] for p in per)
        for a in LEVELS:
            total = sum(p["coverage"][a] * p["drawn"] for p in per)
            out[f"coverage_{round(100 * a)}"] = total / count if count else nan
        out["crps"] = sum(p["crps"] * p["drawn"] for p in per) / count if count else nan
    return out


def held_out_log_likelihood(
    vae: FactVAE,
    data: Any,
    num_samples: int = 100,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> float:
    """``evaluate(...)["cond_ll"]`` alone (with 100 importance samples per row by default,
    where ``evaluate`` takes 1,000): each group held out in turn, ``log p(x_g | x_rest)``
    averaged over (row, group) pairs, in nats. The criterion of
    :func:`~pyro_factvae.tools.selection.lambda_path`."""
    _check_draws(num_samples, seed, max_elements)
    data = _prepare(vae, data, scored_rows=True)
    model, guide = vae.fitted_modules()
    return float(np.mean(held_out_score(model, guide, data, num_samples, seed, max_elements)))
