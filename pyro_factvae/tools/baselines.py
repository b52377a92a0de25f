"""The paper's comparisons, inside the same framework (sec. 3, sec. 4.2 Table 1).

Every method is a :class:`~pyro_factvae.FactVAE` with the *same* networks, data and training
budget per fit; only the prior and the way experts combine differ (``factvae`` at the
config's ``lam``, or at ``lam="auto"`` when it gives none, whose path trains several fits: the
``epochs`` of each result are the epochs it trained in all):

===========  ====================================================================
``factvae``  product of experts + group-lasso prior (``lam > 0``, or chosen)
``lam0``     product of experts, no sparsity (``lam = 0``): the paper's "lambda = 0"
``jmvae+``   uniform mixture of the single-group experts (JMVAE+), ``lam = 0``
===========  ====================================================================

:func:`compare` fits each of them and evaluates it on held-out rows with
:func:`pyro_factvae.metrics.evaluate`, next to the per-feature-mean imputation baseline.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..checks import positive_int
from ..data import GroupedData, as_grouped
from ..estimator import FactVAE
from ..metrics import evaluate, mean_imputation_error
from ..module.scoring import held_out

__all__ = ["METHODS", "compare", "make", "mean_imputation_rmse"]

#: overrides of the shared architecture for each compared method
METHODS: dict[str, dict[str, Any]] = {
    "factvae": {},
    "lam0": {"lam": 0.0},
    "jmvae+": {"lam": 0.0, "inference": "mixture"},
}


def make(method: str, **config: Any) -> FactVAE:
    """A fresh :class:`~pyro_factvae.FactVAE` for ``method`` with the shared ``config`` (see
    :data:`METHODS`)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return FactVAE(**{**config, **METHODS[method]})


def epochs_for(steps: int, num_rows: int, batch_size: int) -> int:
    """Epochs that give at least ``steps`` optimizer steps (an equal budget across sizes)."""
    return max(1, math.ceil(steps / math.ceil(num_rows / batch_size)))


def _same_groups(train: GroupedData, test: GroupedData) -> None:
    """A ``ValueError`` unless ``test`` has ``train``'s groups, in order, of the same widths."""
    if train.names != test.names or train.dims != test.dims:
        raise ValueError(
            f"test's groups {dict(zip(test.names, test.dims))} (name: width) differ from "
            f"train's {dict(zip(train.names, train.dims))}: give both the same groups, in "
            "the same order"
        )


def mean_imputation_rmse(train: Any, test: Any) -> float:
    """RMSE of imputing each group, held out in turn, by its training feature means."""
    train, test = as_grouped(train), as_grouped(test)
    _same_groups(train, test)
    sse, entries = 0.0, 0
    for g, name, sub in held_out(test):  # the held-out rows of every other metric
        e2, _ = mean_imputation_error(train, sub, [name])
        sse += float(np.nansum(e2))
        entries += int(sub.group_cells(g).sum())  # the observed cells scored
    return math.sqrt(sse / entries) if entries else float("nan")


def compare(
    train: GroupedData,
    test: GroupedData,
    config: Mapping[str, Any],
    steps: int = 3000,
    batch_size: int = 64,
    methods: Sequence[str] = tuple(METHODS),
    seed: int = 0,
    num_samples: int = 1000,
    fit_args: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Fit every method on ``train`` for ``steps`` steps; evaluate on ``test``.

    Returns one dict per method with the metrics of :func:`~pyro_factvae.metrics.evaluate`
    (errors in the data's units, as the baseline's),
    ``active_links`` (non-zero ``(group, latent)`` pairs), ``fit_seconds``, and, in every row,
    ``mean_rmse``: the per-feature-mean imputation baseline. Fitted models are under ``model``.
    ``config``: the settings of :class:`~pyro_factvae.FactVAE` every method shares;
    ``fit_args``: further arguments of :meth:`~pyro_factvae.FactVAE.fit` (not ``epochs``,
    ``batch_size``, ``seed`` or ``progress``, which ``compare`` sets).
    """
    positive_int("steps", steps)  # every argument checked before a model is fitted
    positive_int("batch_size", batch_size)
    positive_int("num_samples", num_samples)
    if isinstance(methods, str):
        raise ValueError(f"methods is a list of names, e.g. [{methods!r}]; got the string")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods {list(methods)}: choose one or more of {sorted(METHODS)}")
    for name, value in (("config", config), ("fit_args", fit_args or {})):
        if not isinstance(value, Mapping):
            raise ValueError(f"{name} must be a dict of settings, got {type(value).__name__}")
    owned = sorted({"epochs", "batch_size", "seed", "progress"} & set(fit_args or {}))
    if owned:
        raise ValueError(
            f"fit_args sets {owned}, which compare sets itself: give steps=, batch_size= or "
            "seed= to compare (progress is off)"
        )
    train, test = as_grouped(train), as_grouped(test)
    _same_groups(train, test)
    models = {method: make(method, **config) for method in methods}  # settings checked
    epochs = epochs_for(steps, len(train), batch_size)
    baseline = mean_imputation_rmse(train, test)
    rows = []
    for method, vae in models.items():
        start, before = time.perf_counter(), len(vae.history_)
        vae.fit(
            train,
            epochs=epochs,
            batch_size=batch_size,
            seed=seed,
            progress=False,
            **(fit_args or {}),
        )
        seconds = time.perf_counter() - start
        # in the data's units, as the mean baseline beside it
        metrics = evaluate(vae, test, num_samples=num_samples, seed=seed, standardized=False)
        rows.append(
            {
                "method": method,
                **metrics,
                "mean_rmse": baseline,
                "active_links": int((vae.sparsity().to_numpy() > 0).sum()),
                "epochs": len(vae.history_) - before,  # a lam="auto" path's fits included
                "fit_seconds": round(seconds, 1),
                "model": vae,
            }
        )
    return rows
