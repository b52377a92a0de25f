"""Features constant in the training data, held at their value; each feature's training range.

A feature whose observed training values are all one value (seen in two rows or more) is
predicted as that value: its means and every draw are the value itself, not what the decoder
makes of it (a 0/1 column that is always 1 would otherwise be imputed as 0.99 and drawn as 0
now and then; a count column that is always 0, as a small rate). Every family keeps two
buffers, ``held`` (bool, ``(G_b, dim)``) and ``held_value``, set here from the data where it
:attr:`~pyro_factvae.module.likelihoods.Likelihood.holds` (not the categorical: a class never
seen, a column always 0, would leave some draws no class, nor the Normal, whose own
standardization, ``varies`` and ``shift``, predicts a constant feature as its value).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["CHUNK", "column_range", "find_constant", "keep_varying", "note_range", "training_range"]


def _seen(x: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """``obs`` (rows ``(N,)`` or cells ``(N, d)``) as a cell mask like ``x``."""
    return (obs.unsqueeze(-1) if obs.dim() == 1 else obs).expand_as(x)


#: rows read at a time for the columns' ranges (memory holds one such chunk in float64)
CHUNK = 65_536


def column_range(
    x: torch.Tensor, obs: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each column's smallest and largest value over its observed cells, and how many there
    are (``obs``: rows ``(N,)`` or cells ``(N, d)``), read ``CHUNK`` rows at a time, on the
    CPU (a memmap's pages are read once, never copied whole); in float64, each the exact value
    of a cell (a minimum is one of the values: taken in the data's own dtype)."""
    low = torch.full((x.shape[-1],), float("inf"), dtype=torch.float64)
    high, count = -low, torch.zeros(x.shape[-1], dtype=torch.int64)
    for start in range(0, x.shape[0], CHUNK):
        part = x[start : start + CHUNK].cpu()
        part = part if part.is_floating_point() else part.double()
        seen = _seen(part, obs[start : start + CHUNK].cpu())
        low = torch.minimum(low, part.where(seen, float("inf")).amin(0).double())
        high = torch.maximum(high, part.where(seen, float("-inf")).amax(0).double())
        count += seen.sum(0)
    return low, high, count


#: each group's ``(low, high, count)`` from :func:`column_range`, read once per fit
Ranges = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@torch.no_grad()
def find_constant(lik, ranges: Ranges) -> None:
    """Set ``lik``'s ``held`` and ``held_value`` from each group's column ranges over its
    observed training cells: held where a column is seen in two rows or more, always with one
    value."""
    for i, (low, high, count) in enumerate(ranges):
        w = len(low)  # a padded block's padding is never held
        held = (count >= 2) & (low == high)
        lik.held[i, :w] = held.to(lik.held.device)
        lik.held_value[i, :w] = torch.where(held, low, 0.0).to(lik.held_value)


@torch.no_grad()
def keep_varying(lik, ranges: Ranges) -> None:
    """Release the held columns of ``lik`` that vary in these data (their column ranges) or
    hold another value than the one held."""
    for i, (low, high, count) in enumerate(ranges):
        w = len(low)
        other = (count > 0) & (low != lik.held_value[i, :w].cpu().double())
        lik.held[i, :w] &= ~((high > low) | other).to(lik.held.device)


@torch.no_grad()
def note_range(lik, ranges: Ranges) -> None:
    """Widen ``lik``'s ``low`` and ``high`` (each feature's observed training range, kept
    with the weights; empty until data are seen) to cover these data's column ranges (empty,
    ``(inf, -inf)``, where nothing is observed): a fit on more data widens them, nothing
    narrows them."""
    for i, (low, high, _) in enumerate(ranges):
        w = len(low)  # a padded block's padding keeps an empty range
        lik.low[i, :w] = torch.minimum(lik.low[i, :w].cpu().double(), low).to(lik.low)
        lik.high[i, :w] = torch.maximum(lik.high[i, :w].cpu().double(), high).to(lik.high)


def training_range(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each group of ``model`` (a :class:`~pyro_factvae.module.model.Model`) as ``(low,
    high)``, ``(d_g,)`` float64 arrays: its features' observed training range (empty, ``low >
    high``, where none is known: a model read from a file written without them), in the
    user's group order."""
    layout, liks = model.layout, model.likelihoods
    lows = layout.scatter_unbind([lik.low.cpu().double() for lik in liks])
    highs = layout.scatter_unbind([lik.high.cpu().double() for lik in liks])
    return [(low.numpy(), high.numpy()) for low, high in zip(lows, highs)]
