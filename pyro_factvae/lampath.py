"""The warm-started ``lam`` path behind ``FactVAE(lam="auto")`` and
:func:`~pyro_factvae.tools.selection.lambda_path`.

One model is fitted along an increasing grid of ``lam``: the first value from scratch, every
later one continuing from the previous fit (a warm start, as in glmnet's regularisation paths,
but walked from weak to strong penalty so that the networks have learned the data before the
prox prunes). At each ``lam`` the path records, on validation rows, the held-out conditional
log-likelihood of each group given the others
(:func:`~pyro_factvae.module.scoring.held_out_score`) and the active links. The choice is the
*one-standard-error rule* (as
glmnet's ``lambda.1se``): the largest ``lam`` whose mean held-out log-likelihood is within
one standard error of the best one, so a sparser map wins when the data cannot tell the two
apart. The standard error is that of the per-pair difference from the best ``lam`` (all
``lam`` are scored on the same pairs): the scores themselves can be heavy-tailed (digits'
near-constant pixels), and their own spread would let almost any ``lam`` pass.
The model is left at the chosen ``lam`` with its weights.

With ``relax_epochs`` (the default of ``lam="auto"``) every ``lam`` > 0 is scored after a
*relaxed* refit: its support (the links the prox kept) is refit without shrinkage, and that
refit is scored, as in the relaxed lasso (Meinshausen 2007). Scoring the shrunk fit instead
charges every sparser ``lam`` for its shrinkage, and the criterion then prefers the dense end
of the path even where the data have a sparse structure.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .config import REFIT_LR, FitConfig
from .data import GroupedData
from .module.scoring import held_out_error, held_out_score
from .registry import PHI_POSTERIORS

__all__ = ["AUTO_GRID", "PathResult", "check_path_data", "fit_auto", "walk"]

#: the grid of ``lam="auto"`` (per-example, per-variable weights; features standardized)
AUTO_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class PathResult:
    lams: list[float]
    held_out_ll: list[float]
    active_links: list[int]
    sparsity: list[Any]
    best: int
    standard_error: list[float]


def _smaller_steps(fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``fit_kwargs`` with the step sizes of a refit (:data:`REFIT_LR` of a first fit's):
    full steps from a fitted point undid the fit (on digits, back to the mean imputation)."""
    defaults = FitConfig()
    lr = fit_kwargs.get("lr", defaults.lr)
    phi_lr = fit_kwargs.get("phi_lr", defaults.phi_lr)
    return {**fit_kwargs, "lr": lr * REFIT_LR, "phi_lr": phi_lr * REFIT_LR}


def check_path_data(train: GroupedData, valid: GroupedData) -> None:
    """A ``ValueError`` unless both parts have rows with two observed groups (so that a
    group can be held out and scored)."""
    for name, part in (("training", train), ("validation", valid)):
        if not bool((part.observed.sum(1) > 1).any()):
            raise ValueError(
                f"no {name} row has two observed groups, so no group can be held out and "
                "scored; choosing lam needs rows that observe at least two groups (or give "
                "lam a number)"
            )


def walk(
    vae: Any,
    train: GroupedData,
    valid: GroupedData,
    lams: Sequence[float],
    epochs: int,
    warm_epochs: int,
    seed: int = 0,
    num_samples: int = 100,
    progress: bool = False,
    fit_kwargs: Mapping[str, Any] | None = None,
    relax_epochs: int = 0,
    criterion: str = "ll",
    rule: str = "1se",
    tolerance: float = 0.01,
) -> PathResult:
    """Fit ``vae`` (a :class:`~pyro_factvae.FactVAE`) along ``lams`` (increasing) on ``train``,
    score each on ``valid``, and leave it at the best ``lam`` with that fit's weights.

    ``relax_epochs > 0``: at every ``lam > 0`` the prox fit is followed by that many epochs of
    relaxed refit (support kept, no shrinkage), and the refit is what is scored and kept; the
    next ``lam`` continues from it. ``criterion``: ``"ll"`` scores the held-out conditional
    log-likelihood, ``"mse"`` minus the held-out imputation error (standardized units).
    ``rule``: ``"1se"`` keeps the largest ``lam`` within one paired standard error of the best
    score; ``"min"`` the largest within ``tolerance`` (relative) of it."""
    if criterion not in ("ll", "mse"):
        raise ValueError(f"criterion must be 'll' or 'mse', got {criterion!r}")
    grid = sorted(float(v) for v in lams)
    check_path_data(train, valid)
    fit_kwargs = {k: v for k, v in (fit_kwargs or {}).items() if k != "relax_epochs"}
    scores, pairs, links, maps, states = [], [], [], [], []
    for i, lam in enumerate(grid):
        vae.set_lam(lam)
        n = epochs if i == 0 else warm_epochs
        # full steps here: with a tenth of them the prox did not prune within warm_epochs
        with warnings.catch_warnings():  # pruning whole groups is what strong lams are for
            warnings.filterwarnings("ignore", message="every link of group")
            vae.fit(train, epochs=n, seed=seed + i, progress=progress, relax_epochs=0, **fit_kwargs)
            if relax_epochs and lam > 0:
                refit = {**fit_kwargs, "warmup_epochs": 0.0}
                vae.fit(
                    train,
                    epochs=relax_epochs,
                    relax_epochs=relax_epochs,
                    seed=seed + i,
                    progress=progress,
                    **refit,
                )
        model, guide = vae.fitted_modules()
        if criterion == "ll":
            per_pair = held_out_score(model, guide, valid, num_samples, seed)
        else:
            per_pair = -held_out_error(model, guide, valid, 20, seed)
        pairs.append(per_pair)
        scores.append(float(np.mean(per_pair)))
        norms = vae.sparsity()
        maps.append(norms)
        links.append(int((norms.values > 0).sum()))
        states.append(copy.deepcopy((model.state_dict(), guide.state_dict())))
    top = int(np.nanargmax(scores))
    # paired standard errors: every lam is scored on the same (row, group) pairs, so the
    # spread of the per-pair differences, not of the scores (heavy-tailed on data with
    # near-constant features), says whether the data can tell two lams apart
    errors = [
        float(np.std(pairs[top] - p) / np.sqrt(len(p))) if np.isfinite(s) else float("nan")
        for p, s in zip(pairs, scores)
    ]
    if rule == "1se":
        slack = errors
    else:  # within a relative tolerance of the best score
        slack = [tolerance * abs(scores[top])] * len(scores)
    best = max(i for i, v in enumerate(scores) if np.isfinite(v) and scores[top] - v <= slack[i])
    model, guide = vae.fitted_modules()
    model.load_state_dict(states[best][0])
    guide.load_state_dict(states[best][1])
    vae.set_lam(grid[best])
    vae.reset_optimizers()  # their moments belong to the last lam
    return PathResult(grid, scores, links, maps, best, errors)


def _fresh_dense_fit(vae: Any, data: GroupedData, given: Mapping[str, Any], progress: bool) -> None:
    """``lam = 0`` chosen: no support to keep, so train afresh on every row, exactly as
    ``lam=0`` would (on digits the path's warm-started model, refit, imputed with RMSE 0.913
    where a fresh dense fit reaches 0.881), and take its weights and history."""
    fresh = type(vae)(**{**vae.config.user_dict(), "lam": 0.0}, device=vae.device)
    fresh.fit(data, progress=progress, **given)
    vae.model_.load_state_dict(fresh.model_.state_dict())
    vae.guide_.load_state_dict(fresh.guide_.state_dict())
    vae.history_.extend(fresh.history_)
    vae.prior_history_.extend(fresh.prior_history_)
    vae.reset_optimizers()


def fit_auto(vae: Any, data: GroupedData, given: Mapping[str, Any], progress: bool) -> dict:
    """``FactVAE(lam="auto").fit``: walk :data:`AUTO_GRID` on 80% of the rows with relaxed
    refits, choose ``lam`` on the other 20% by the held-out imputation error of each group
    given the others (the largest ``lam`` within 1% of the best), then refit the chosen
    support on every row (a relaxed refit of a quarter of ``epochs``; at ``lam = 0``, a fresh
    dense fit). With nothing to hold out (one group) it falls back to ``lam = 0`` with a
    warning. Returns the path as plain data (``vae.lam_path_``)."""
    data.require_trainable()
    seed = 0 if given["seed"] is None else given["seed"]
    train, valid = data.split(0.8, seed=seed)
    try:
        check_path_data(train, valid)
    except ValueError as exc:  # e.g. one group: nothing to hold out, so nothing to choose by
        warnings.warn(f"lam='auto' fell back to lam=0: {exc}", stacklevel=3)
        vae.set_lam(0.0)
        vae.fit(
            data,
            progress=progress,
            **{k: v for k, v in given.items() if k != "seed"},
            seed=given["seed"],
        )
        return {"lams": [0.0], "criterion": "none: nothing can be held out"}
    epochs = given["epochs"]
    if epochs is None:
        epochs = FitConfig(batch_size=given["batch_size"]).resolved(False, True, len(train)).epochs
    fit_kwargs = {k: v for k, v in given.items() if k not in ("epochs", "seed", "relax_epochs")}
    warm = max(1, epochs // 4)
    refits = PHI_POSTERIORS.get(vae.config.phi_inference).collapsed  # relaxed: prox only
    if given.get("map_epochs"):
        fit_kwargs["map_epochs"] = min(given["map_epochs"], warm - 1)
    path = walk(
        vae,
        train,
        valid,
        AUTO_GRID,
        epochs,
        warm,
        seed,
        progress=progress,
        fit_kwargs=fit_kwargs,
        relax_epochs=warm if refits else 0,
        criterion="mse",
        rule="min",
    )
    if vae.config.lam > 0 or not refits:
        relax = warm if refits else 0
        # the relaxed phase takes smaller steps itself; plain training (lam = 0) is told to
        rest = {**(fit_kwargs if relax else _smaller_steps(fit_kwargs)), "warmup_epochs": 0.0}
        seed_final = seed + len(AUTO_GRID)
        vae.fit(data, epochs=warm, seed=seed_final, progress=progress, relax_epochs=relax, **rest)
    else:
        _fresh_dense_fit(vae, data, given, progress)
    return {
        "lams": path.lams,
        "criterion": "held-out imputation MSE (standardized units)",
        "held_out_mse": [-v for v in path.held_out_ll],
        "standard_error": path.standard_error,
        "active_links": path.active_links,
    }
