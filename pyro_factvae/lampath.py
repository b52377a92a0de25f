"""The warm-started ``lam`` path behind ``FactVAE(lam="auto")`` and
:func:`~pyro_factvae.tools.selection.lambda_path`.

One model is fitted along an increasing grid of ``lam``: the first value from scratch, every
later one continuing from the previous fit (a warm start, as in glmnet's regularisation paths,
but walked from weak to strong penalty so that the networks have learned the data before the
prox prunes). At each ``lam`` the path records, on validation rows, the held-out conditional
log-likelihood of each group given the others (:func:`~pyro_factvae.module.scoring.
held_out_score`) and the active links. The choice is the *one-standard-error rule* (as
glmnet's ``lambda.1se``): the largest ``lam`` whose mean held-out log-likelihood is within
one standard error of the best one, so a sparser map wins when the data cannot tell the two
apart. The model is left at the chosen ``lam`` with its weights.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import GroupedData
from .module.scoring import held_out_score

__all__ = ["AUTO_GRID", "PathResult", "check_path_data", "fit_auto", "walk"]

#: the grid of ``lam="auto"`` (per-example weights, features standardized)
AUTO_GRID = (0.0, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass
class PathResult:
    lams: list[float]
    held_out_ll: list[float]
    active_links: list[int]
    sparsity: list[Any]
    best: int
    standard_error: list[float]


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
) -> PathResult:
    """Fit ``vae`` (a :class:`~pyro_factvae.FactVAE`) along ``lams`` (increasing) on ``train``,
    score each on ``valid``, and leave it at the best ``lam`` with that fit's weights."""
    grid = sorted(float(v) for v in lams)
    check_path_data(train, valid)
    fit_kwargs = dict(fit_kwargs or {})
    scores, errors, links, maps, states = [], [], [], [], []
    for i, lam in enumerate(grid):
        vae.set_lam(lam)
        n = epochs if i == 0 else warm_epochs
        with warnings.catch_warnings():  # pruning whole groups is what strong lams are for
            warnings.filterwarnings("ignore", message="every link of group")
            vae.fit(train, epochs=n, seed=seed + i, progress=progress, **fit_kwargs)
        model, guide = vae.fitted_modules()
        per_pair = held_out_score(model, guide, valid, num_samples, seed)
        scores.append(float(np.mean(per_pair)))
        errors.append(float(np.std(per_pair) / np.sqrt(len(per_pair))))
        norms = vae.sparsity()
        maps.append(norms)
        links.append(int((norms.values > 0).sum()))
        states.append(copy.deepcopy((model.state_dict(), guide.state_dict())))
    top = int(np.nanargmax(scores))
    best = max(i for i, v in enumerate(scores) if v >= scores[top] - errors[top])
    model, guide = vae.fitted_modules()
    model.load_state_dict(states[best][0])
    guide.load_state_dict(states[best][1])
    vae.set_lam(grid[best])
    vae.reset_optimizers()  # their moments belong to the last lam
    return PathResult(grid, scores, links, maps, best, errors)


def fit_auto(vae: Any, data: GroupedData, given: Mapping[str, Any], progress: bool) -> dict:
    """``FactVAE(lam="auto").fit``: walk :data:`AUTO_GRID` on 80% of the rows, choose ``lam``
    on the other 20% (one-standard-error rule), then train on every row at that ``lam`` for a
    quarter of ``epochs``. Returns the path as plain data (``vae.lam_path_``)."""
    data.require_trainable()
    seed = 0 if given["seed"] is None else given["seed"]
    train, valid = data.split(0.8, seed=seed)
    fit_kwargs = {k: v for k, v in given.items() if k not in ("epochs", "seed")}
    warm = max(1, given["epochs"] // 4)
    path = walk(
        vae,
        train,
        valid,
        AUTO_GRID,
        given["epochs"],
        warm,
        seed,
        progress=progress,
        fit_kwargs=fit_kwargs,
    )
    rest = {**fit_kwargs, "warmup_epochs": 0.0}
    vae.fit(data, epochs=warm, seed=seed + len(AUTO_GRID), progress=progress, **rest)
    return {
        "lams": path.lams,
        "held_out_ll": path.held_out_ll,
        "standard_error": path.standard_error,
        "active_links": path.active_links,
    }
