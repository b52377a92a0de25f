"""Combining Gaussian experts: the product (eq 6, footnote 2) and the JMVAE+ mixture (sec. 3).

Each way of combining is a small strategy registered in
:data:`~pyro_factvae.registry.EXPERTS` (``"poe"``, ``"mixture"``): it says how a training
minibatch is presented to the model and guide (:meth:`ProductOfExperts.training_args`) and what
the posterior ``q(z | x_I)`` is at prediction time (:meth:`ProductOfExperts.posterior`). A new
one (e.g. a mixture of products) is one class here with its registry line.

**Product of experts** (factVAE). ``q(z | x) ∝ p(z) prod_{g in O} q_g(z | x_g)`` with
``p(z) = N(0, I)`` and diagonal experts ``q_g = N(mu_g, Lambda_g^-1)`` is Gaussian in closed
form::

    Lambda = 1 + sum_{g in O} Lambda_g
    mu     = Lambda^-1 sum_{g in O} Lambda_g mu_g

A row whose every group is left out falls back to the prior ``N(0, I)``.

**Uniform mixture of experts** (the paper's JMVAE+ baseline, sec. 3)::

    q(z | x) = (1 / |O|) sum_{g in O} q~_g(z | x_g),   q~_g ∝ p(z) q_g(z | x_g)

Each component is the single-group product with the prior expert (so it is built from the very
same networks as the product); a row with no group falls back to the prior. Training maximises
the average of the components' ELBOs (each group's sub-ELBO, as the paper defines JMVAE+):
:func:`expand_experts` turns a minibatch into one row per (row, given group) with weight
``1 / |O|``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch

from ..registry import EXPERTS

__all__ = [
    "MixtureOfExperts",
    "ProductOfExperts",
    "expand_experts",
    "mixture_of_experts",
    "product_of_experts",
]


def product_of_experts(
    mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor, finite: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine experts with the standard-normal prior expert.

    Parameters
    ----------
    mu, precision : torch.Tensor
        Expert means and (non-negative) diagonal precisions, shape ``(..., G, K)``.
    mask : torch.Tensor
        Bool ``(..., G)``; ``False`` leaves an expert out. Left-out experts may hold any
        finite or non-finite value: they are selected away, never multiplied by zero
        (unless ``finite``).
    finite : bool
        Every expert, left out or not, is finite (an encoder's output on finite inputs):
        leave experts out by multiplying them by zero, which on the CPU takes a third of the
        time of selecting (a non-finite left-out expert then makes the result non-finite).

    Returns
    -------
    loc, scale : torch.Tensor
        Mean and standard deviation of the product, shape ``(..., K)``.
    """
    keep = mask.unsqueeze(-1)
    if finite:
        lam = precision * keep.to(precision.dtype)
        total = 1.0 + lam.sum(-2)
        return (lam * mu).sum(-2) / total, total.rsqrt()
    lam = torch.where(keep, precision, 0.0)
    total = 1.0 + lam.sum(-2)
    loc = torch.where(keep, lam * mu, 0.0).sum(-2) / total
    return loc, total.rsqrt()


def mixture_of_experts(
    mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor
) -> dist.MixtureSameFamily:
    """The JMVAE+ posterior: a uniform mixture of the single-group products with the prior.

    Parameters
    ----------
    mu, precision, mask : torch.Tensor
        As in :func:`product_of_experts`, ``(B, G, K)``, ``(B, G, K)`` and ``(B, G)``.

    Returns
    -------
    pyro.distributions.MixtureSameFamily
        Batch shape ``(B,)``, event shape ``(K,)``; ``G + 1`` components, the last being the
        prior ``N(0, I)``, which has weight 1 exactly for rows with no expert.
    """
    keep = mask.unsqueeze(-1)
    lam = torch.where(keep, precision, 0.0)
    total = 1.0 + lam
    loc = torch.where(keep, lam * mu, 0.0) / total
    prior = torch.zeros_like(loc[..., :1, :])
    loc = torch.cat([loc, prior], dim=-2)
    scale = torch.cat([total.rsqrt(), prior + 1.0], dim=-2)
    none = ~mask.any(-1, keepdim=True)
    logits = torch.where(torch.cat([mask, none], dim=-1), 0.0, -torch.inf)
    return dist.MixtureSameFamily(
        dist.Categorical(logits=logits), dist.Normal(loc, scale).to_event(1)
    )


def expand_experts(
    mask: torch.Tensor, enc_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One row per (row, expert) pair for the JMVAE+ objective.

    Parameters
    ----------
    mask : torch.Tensor
        ``(B, G)`` bool, observed groups (the likelihood's groups).
    enc_mask : torch.Tensor
        ``(B, G)`` bool, groups fed to the encoder (a subset of ``mask``).

    Returns
    -------
    rows : torch.Tensor
        ``(B',)`` long: the source row of each expanded row (index ``xs`` and ``mask`` by it).
    one_hot : torch.Tensor
        ``(B', G)`` bool encoder mask with the one expert of the expanded row (all ``False``
        for a row with no expert: the prior).
    weight : torch.Tensor
        ``(B',)`` float, ``(B' / B) / |I_i|``: with a data plate that scales by ``N / B'``,
        each source row counts once and each of its experts ``1 / |I_i|``.
    """
    enc_mask = enc_mask & mask
    batch, groups = enc_mask.shape
    ext = torch.cat([enc_mask, ~enc_mask.any(-1, keepdim=True)], dim=-1)
    rows, cols = ext.nonzero(as_tuple=True)
    one_hot = torch.nn.functional.one_hot(cols, groups + 1)[:, :groups].bool()
    weight = (len(rows) / batch) / ext.sum(-1)[rows].float()
    return rows, one_hot, weight


def _cells_kwargs(cells: Any, enc_cells: Any) -> dict:
    """The keyword arguments that carry a minibatch's cell masks (none without them)."""
    out = {} if cells is None else {"cells": cells}
    if enc_cells is not None:
        out["enc_cells"] = enc_cells
    return out


@EXPERTS.register("poe")
class ProductOfExperts:
    """factVAE: the product of the experts of the given groups and the prior (eq 6)."""

    #: whether :meth:`training_args` turns a row into several (it does not)
    expands_rows = False

    @staticmethod
    def training_args(
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        keep: torch.Tensor,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> tuple[tuple, dict]:
        """Model/guide arguments of one training step: ``(xs, mask, enc_mask)``, and the
        cell masks ``{"cells": ..., "enc_cells": ...}`` that are given."""
        return (xs, mask, keep), _cells_kwargs(cells, enc_cells)

    @staticmethod
    def posterior(
        mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor
    ) -> dist.TorchDistribution:
        """``q(z | x_I)``, batch ``(B,)`` and event ``(K,)``."""
        loc, scale = product_of_experts(mu, precision, mask)
        return dist.Normal(loc, scale).to_event(1)


@EXPERTS.register("mixture")
class MixtureOfExperts:
    """The JMVAE+ baseline: a uniform mixture of single-group experts, trained on the average
    of their ELBOs (one expanded row per (row, expert), :func:`expand_experts`)."""

    expands_rows = True

    @staticmethod
    def training_args(
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        keep: torch.Tensor,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> tuple[tuple, dict]:
        """``(xs, mask, one_hot, weight)`` over the expanded rows (and their cells; ``keep``
        must leave out a group that ``enc_cells`` leaves no cell of)."""
        rows, one_hot, weight = expand_experts(mask, keep)
        cells = None if cells is None else cells[rows]
        enc_cells = None if enc_cells is None else enc_cells[rows]
        args = ([x[rows] for x in xs], mask[rows], one_hot, weight)
        return args, _cells_kwargs(cells, enc_cells)

    @staticmethod
    def posterior(
        mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor
    ) -> dist.TorchDistribution:
        return mixture_of_experts(mu, precision, mask)
