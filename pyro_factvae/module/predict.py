"""Posterior-predictive means under the fitted posterior, vectorised over groups and rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..rng import fork_rng
from .guide import Guide
from .model import Model

__all__ = ["predictive_means"]


@torch.no_grad()
def predictive_means(
    model: Model,
    guide: Guide,
    xs: Sequence[torch.Tensor],
    enc_mask: torch.Tensor,
    targets: Sequence[int],
    num_samples: int,
    seed: int,
    cells: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``E_{q(z | x_I)}[E(x_g | z)]`` for the groups ``targets``, ``I`` given by ``enc_mask``.

    Monte Carlo over ``num_samples`` draws of ``z`` from :meth:`Guide.posterior_dist` (drawn
    under ``seed`` without touching the global RNG); ``num_samples = 0`` plugs in the posterior
    mean of ``z`` instead. Rows with no group in ``enc_mask`` get prior-predictive means.
    ``cells``: the ``(B, sum d_g)`` cell mask of ``xs`` (the encoder reads the observed cells
    of the groups in ``enc_mask``). Inputs may be on any device: they are computed on the
    model's, returned on the CPU.
    """
    device = model.device
    xs, enc_mask = [x.to(device) for x in xs], enc_mask.to(device)
    cells = None if cells is None else cells.to(device)
    phis = list(guide.Phi)
    q = guide.posterior_dist(xs, enc_mask, cells)
    if num_samples == 0:
        means = model.means(q.mean, phis)
        return [means[g].cpu() for g in targets]
    sums = [torch.zeros(enc_mask.shape[0], model.layout.dims[g], device=device) for g in targets]
    with fork_rng(device):
        torch.manual_seed(seed)
        for _ in range(num_samples):
            means = model.means(q.sample(), phis)
            for total, g in zip(sums, targets):
                total += means[g]
    return [(total / num_samples).cpu() for total in sums]
