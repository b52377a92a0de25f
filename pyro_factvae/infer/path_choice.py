"""How a ``lam`` path chooses from its scored ``lam`` s
(:class:`~pyro_factvae.infer.path_state.PathRecords`): the rule of the choice
(:func:`choose`) and the end of the walk (:func:`past_support`).

``rule="1se"`` keeps the ``lam`` s within one paired standard error of the best score (the
standard error of the per-pair differences from the best ``lam``: every ``lam`` is scored on
the same (row, group) pairs), ``rule="min"`` those within a relative ``tolerance`` of it; of
these the choice is the sparsest map (fewest active links), at the smallest ``lam`` that
keeps it: a larger ``lam`` that prunes nothing more only shrinks more. The walk of
``lam="auto"`` ends at a ``lam`` whose score is worse than the best by more than
:data:`STOP_GAP` once some ``lam`` imputes better than the mean (:func:`beats_mean`), or at
a ``lam`` that pruned every link.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from .path_state import PathRecords

__all__ = [
    "STOP_GAP",
    "PathResult",
    "beats_mean",
    "choose",
    "past_support",
    "warn_if_the_mean_wins",
]

#: ``lam="auto"`` ends its walk at a ``lam`` whose held-out error is this much (relative)
#: above the best one's
STOP_GAP = 0.25


@dataclass
class PathResult:
    """A path's choice: the ``lam`` s scored, their scores, active links and sparsity maps,
    the index of the chosen ``lam`` and each score's paired standard error."""

    lams: list[float]
    held_out_ll: list[float]
    active_links: list[int]
    sparsity: list[Any]
    best: int
    standard_error: list[float]

    def as_mse_record(self, mean_mse: float) -> dict[str, Any]:
        """The path of ``lam="auto"`` (scored by minus the held-out imputation MSE) as plain
        data, as ``FactVAE.lam_path_`` keeps it; ``mean_mse``: the mean imputation's MSE on
        the same validation pairs."""
        return {
            "lams": self.lams,
            "criterion": "held-out imputation MSE (standardized units)",
            "held_out_mse": [-v for v in self.held_out_ll],
            "mean_imputation_mse": mean_mse,
            "standard_error": self.standard_error,
            "active_links": self.active_links,
            "chosen_lam": self.lams[self.best],
        }


def past_support(rec: PathRecords) -> bool:
    """Whether the last scored ``lam`` is worse than the best by more than
    :data:`STOP_GAP` (relative): it has pruned links the data need, and a larger ``lam``
    prunes more. (A smaller gap is no sign: on bars the error rose by 3-6% at small ``lam``
    and then fell below lam = 0's at 0.17 and 0.3.)"""
    top = max(rec.scores)
    return top - rec.scores[-1] > STOP_GAP * abs(top)


def beats_mean(rec: PathRecords, mean_score: float | None) -> bool:
    """Whether some scored ``lam`` imputes the validation pairs better than the mean
    imputation, whose score is ``mean_score`` (``None``: not known, taken as beaten). While
    none does, the data have not shown a link worth keeping, and the walk goes on towards
    the mean imputation's model (every link pruned): on 32 training rows of nutrimouse every
    ``lam`` up to 0.55 scored far worse than the mean, and the walk that ended there imputed
    the test rows with twice the mean's error."""
    finite = [v for v in rec.scores if np.isfinite(v)]
    return mean_score is None or (len(finite) > 0 and max(finite) > mean_score)


def choose(grid: list[float], rec: PathRecords, rule: str, tolerance: float) -> PathResult:
    """The path's choice from its records (see :func:`~pyro_factvae.infer.path.walk`)."""
    scores, pairs = rec.scores, rec.pairs
    if not any(np.isfinite(s) for s in scores):
        raise ValueError(
            "no lam of the path scored a finite held-out error on its validation rows (an "
            "extreme value in the data?): check the data, or give lam a number (e.g. lam=0.1)"
        )
    top = int(np.nanargmax(np.where(np.isfinite(scores), scores, np.nan)))
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
    within = [i for i, v in enumerate(scores) if np.isfinite(v) and scores[top] - v <= slack[i]]
    # the sparsest map the data cannot tell from the best; of the lams that keep it, the
    # smallest (a larger lam that prunes nothing more only shrinks more)
    fewest = min(rec.links[i] for i in within)
    best = min(i for i in within if rec.links[i] == fewest)
    return PathResult(grid, list(scores), list(rec.links), list(rec.maps), best, errors)


def warn_if_the_mean_wins(
    path: PathResult, chosen: float, mean_mse: float, stacklevel: int = 2
) -> None:
    """Warn when no scored ``lam`` imputed the validation pairs better than the mean
    imputation, whose held-out MSE is ``mean_mse``."""
    top = -float(np.nanmax(path.held_out_ll))  # the best lam's error
    if not top < mean_mse:
        warnings.warn(
            "lam='auto': no lam imputed the validation rows better than each group's mean "
            f"(held-out MSE {top:.3g} at best, {-path.held_out_ll[path.best]:.3g} at the "
            f"chosen lam {chosen:g}, {mean_mse:.3g} for the mean, in standardized units); the "
            "data may be too few for links between groups: compare the model's imputations "
            "of whole groups with a mean imputation before using them (lam_path_ holds both "
            "scores)",
            stacklevel=stacklevel + 1,
        )
