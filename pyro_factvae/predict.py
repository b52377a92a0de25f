"""Posterior-predictive means under the PoE posterior, vectorised over groups and rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .guide import Guide
from .model import Model

__all__ = ["observation_means", "predictive_means"]


@torch.no_grad()
def observation_means(
    model: Model, phis: Sequence[torch.Tensor], z: torch.Tensor
) -> list[torch.Tensor]:
    """``E(x_g | z)`` for every group, ``(..., d_g)`` each, in the user's group order."""
    per_group: list[torch.Tensor] = [torch.empty(0)] * model.layout.num_groups
    for block, out, lik in zip(model.layout.blocks, model.decode(z, phis), model.likelihoods):
        for g, mean in zip(block.groups, lik.mean(out).unbind(-2)):
            per_group[g] = mean
    return per_group


@torch.no_grad()
def predictive_means(
    model: Model,
    guide: Guide,
    xs: Sequence[torch.Tensor],
    enc_mask: torch.Tensor,
    targets: Sequence[int],
    num_samples: int,
    seed: int,
) -> list[torch.Tensor]:
    """``E_{q(z | x_I)}[E(x_g | z)]`` for the groups ``targets``, ``I`` given by ``enc_mask``.

    Monte Carlo over ``num_samples`` draws of ``z`` from :meth:`Guide.posterior_dist` (drawn
    under ``seed`` without touching the global RNG); ``num_samples = 0`` plugs in the posterior
    mean of ``z`` instead.
    """
    phis = list(guide.Phi)
    q = guide.posterior_dist(xs, enc_mask)
    if num_samples == 0:
        means = observation_means(model, phis, q.mean)
        return [means[g] for g in targets]
    sums = [torch.zeros(enc_mask.shape[0], model.layout.dims[g]) for g in targets]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(num_samples):
            means = observation_means(model, phis, q.sample())
            for total, g in zip(sums, targets):
                total += means[g]
    return [total / num_samples for total in sums]
