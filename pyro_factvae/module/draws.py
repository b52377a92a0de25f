"""Draws of the missing values, ``x_miss ~ p(x_miss | x_obs)``: multiple imputation.

For each row, ``S`` proposals ``z_s ~ q(z | x_O)`` from the fitted encoder are weighted by
``w_s = p(x_O | z_s) p(z_s) / q(z_s | x_O)`` over the observed cells (self-normalised
importance sampling, as the conditional log-likelihood and MIWAE's multiple imputation do);
``M`` of them are resampled in proportion to ``w_s`` (importance resampling: approximately
draws of the model's posterior ``p(z | x_O)``, not of the amortized ``q``), and each gives a
draw ``x ~ p(x | z)`` from the likelihood's own noise (a Normal draw, a 0/1 draw, a one-hot
class). Rows are processed in chunks, so memory holds one chunk's draws, never ``M`` copies of
the model's activations over all rows.

A ``spread`` other than 1 scales each continuous draw's distance from the row's
importance-weighted mean ``sum_s w_s E(x | z_s)`` (the imputed mean, which it keeps): the
held-out spread a fit measures (:mod:`~pyro_factvae.infer.spread`), so that intervals cover
as often on new rows as they say.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from pyro import distributions as dist

from ..rng import seeded
from .guide import Guide
from .model import Model
from .predict import MAX_ELEMENTS
from .refine import refined_posterior
from .weights import ImportanceWeights

__all__ = [
    "central_bounds",
    "central_ranks",
    "continuous_groups",
    "half_pair_distance",
    "posterior_draws",
]


def continuous_groups(model: Model) -> list[bool]:
    """Whether each group (in the user's order) has real-valued draws whose spread may be
    scaled (its family's ``continuous``)."""
    return model.layout.scatter([[lik.continuous] * lik.num_groups for lik in model.likelihoods])


@torch.no_grad()
def posterior_draws(
    model: Model,
    guide: Guide,
    xs: Sequence[torch.Tensor],
    mask: torch.Tensor,
    cells: torch.Tensor | None,
    num_draws: int,
    num_samples: int,
    seed: int,
    max_elements: int = MAX_ELEMENTS,
    refine_steps: int = 0,
    spread: float = 1.0,
) -> Iterator[tuple[slice, torch.Tensor, torch.Tensor]]:
    """Yield ``(rows, draws, ess)`` chunk by chunk over the rows.

    ``draws``: ``(M, b, sum d_g)`` float draws of every cell of the chunk's rows, ``x ~ p(x |
    z_m)`` with ``z_m`` importance-resampled from ``num_samples`` proposals (observed cells
    included: the caller keeps the observed values); ``ess``: ``(b,)`` effective sample size
    ``1 / sum_s w_s^2`` of the normalised weights. Drawn under ``seed`` in a forked RNG (the
    caller's RNG is left alone); the same seed gives the same draws on the CPU.
    ``refine_steps``: the proposals' ``q`` refined per row first
    (:func:`~pyro_factvae.module.refine.refined_posterior`), once for every row before the
    draws (in the refinement's own chunks, which hold many more rows than a chunk of draws).
    ``spread``: each continuous group's draws scaled about the row's importance-weighted mean
    by this factor (1: the model's own draws).
    """
    device = model.device
    n = mask.shape[0]
    rows = max(1, min(n, max_elements // (model.row_floats * max(num_draws, num_samples))))
    phis = list(guide.Phi)
    refined = None
    if refine_steps > 0:  # chunk by chunk on the device, the rows' inputs left where they are
        refined = refined_posterior(model, guide, xs, mask, cells, refine_steps, seed)
    scaled = [g for g, real in enumerate(continuous_groups(model)) if real]
    with seeded(device, seed):
        for start in range(0, n, rows):
            sl = slice(start, min(start + rows, n))
            x = [v[sl].to(device) for v in xs]
            m = mask[sl].to(device)
            c = None if cells is None else cells[sl].to(device)
            if refined is None:
                q = guide.posterior_dist(x, m, c)
            else:
                q = dist.Normal(refined.mean[sl], refined.stddev[sl]).to_event(1)
            z = q.sample((num_samples,))  # (S, b, K)
            weigh = ImportanceWeights(model, x, m, c)
            outs = model.decode(z, phis, weigh.offsets)
            log_w = weigh(q, z, outs)
            weights = torch.softmax(log_w, dim=0)
            ess = 1.0 / weights.square().sum(0)
            pick = torch.multinomial(weights.T, num_draws, replacement=True)  # (b, M)
            chosen = z.gather(0, pick.T.unsqueeze(-1).expand(-1, -1, z.shape[-1]))  # (M, b, K)
            values = model.draw(chosen, phis, weigh.offsets)  # (M, b, d_g) each
            if spread != 1.0:
                means = model.means(z, phis, outs=outs)  # (S, b, d_g) each
                for g in scaled:
                    centre = (weights.unsqueeze(-1) * means[g]).sum(0)
                    values[g] = centre + spread * (values[g] - centre)
            yield sl, torch.cat([v.to(torch.float32) for v in values], -1).cpu(), ess.cpu()


def central_ranks(num_draws: int, level: float) -> tuple[int, int]:
    """The 0-based ranks ``(j - 1, M - j)`` of the sorted ``M = num_draws`` draws that bound a
    central ``level`` interval, ``j = floor((M + 1) (1 - level) / 2)`` (at least 1).

    For ``M`` exact draws and a new value of the same distribution, the new value is below
    the ``j``-th smallest draw with probability ``j / (M + 1)``, so the interval between the
    ``j``-th smallest and the ``j``-th largest covers it with probability ``(M + 1 - 2 j) /
    (M + 1) >= level``: 0.902 for 90% at 40 draws, 0.9005 at 200, and never more than
    ``2 / (M + 1)`` above the level. (Quantiles interpolated between the draws cover less
    than their level: 0.856 at 40 draws in a simulation of exact draws.)"""
    j = max(1, math.floor(round((num_draws + 1) * (1.0 - level) / 2.0, 9)))
    return j - 1, num_draws - j


def central_bounds(draws: torch.Tensor, levels: Sequence[float]) -> torch.Tensor:
    """``(L, 2, ...)``: the central ``levels`` intervals of ``draws`` (``(M, ..., D)``), each
    bound a draw, the order statistics of :func:`central_ranks` (so in a count, 0/1 or one-hot
    column a bound is a count or 0 or 1, never between two)."""
    ordered = draws.sort(0).values
    ranks = [central_ranks(draws.shape[0], a) for a in levels]
    return torch.stack([torch.stack([ordered[lo], ordered[hi]]) for lo, hi in ranks])


def half_pair_distance(draws: torch.Tensor) -> torch.Tensor:
    """``E|X - X'| / 2`` of each entry of ``(M, ...)`` draws, over the ``M (M - 1)`` pairs of
    distinct draws (in its sorted-sample form): the spread term of the fair CRPS,
    ``E|X - y| - E|X - X'| / 2`` (Ferro 2014), whose expectation does not depend on ``M``; 0
    for one draw."""
    m = draws.shape[0]
    ordered = draws.sort(0).values
    coeff = (2 * torch.arange(1, m + 1, dtype=draws.dtype) - m - 1).view(
        -1, *[1] * (draws.dim() - 1)
    )
    return (coeff * ordered).sum(0) / (m * max(m - 1, 1))
