"""Posterior-predictive means under the fitted posterior, vectorised over groups and rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..rng import fork_rng
from .guide import Guide
from .model import Model
from .refine import proposal
from .weights import ImportanceWeights

__all__ = ["ImportanceWeights", "predictive_means"]


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
    importance: bool = False,
    refine_steps: int = 0,
) -> list[torch.Tensor]:
    """``E[x_g | x_I]`` for the groups ``targets``, ``I`` given by ``enc_mask``.

    Monte Carlo over ``num_samples`` draws ``z_s ~ q(z | x_I)`` from
    :meth:`~pyro_factvae.module.guide.Guide.posterior_dist` (drawn under ``seed`` without touching
    the global RNG) of
    ``E(x_g | z_s)``: their plain average (``E_q``), or with ``importance`` their
    self-normalised importance-weighted average, weights ``w_s = p(x_I | z_s) p(z_s) /
    q(z_s | x_I)`` over the observed cells of ``I``, which corrects the amortized encoder
    towards the model's own posterior ``p(z | x_I)`` (as the conditional log-likelihood and
    MIWAE do); ``refine_steps``: ``q`` refined per row first
    (:func:`~pyro_factvae.module.refine.refined_posterior`). ``num_samples = 0`` plugs in the
    posterior mean of ``z`` instead. Rows with no
    group in ``enc_mask`` get prior-predictive means. ``cells``: the ``(B, sum d_g)`` cell
    mask of ``xs``. Inputs may be on any device: they are computed on the model's, returned
    on the CPU.
    """
    device = model.device
    layout = model.layout
    xs, enc_mask = [x.to(device) for x in xs], enc_mask.to(device)
    cells = None if cells is None else cells.to(device)
    phis = list(guide.Phi)
    q = proposal(model, guide, xs, enc_mask, cells, refine_steps, seed)
    offsets = model.offsets_from(xs, enc_mask, cells)  # of the count groups, from x_I
    if num_samples == 0:
        means = model.means(q.mean, phis, offsets)
        return [means[g].cpu() for g in targets]
    if importance:
        log_weight = ImportanceWeights(model, xs, enc_mask, cells)
        # a finite floor, so a draw of weight exactly 0 never makes (-inf) - (-inf)
        top = torch.full((enc_mask.shape[0],), torch.finfo(torch.float32).min, device=device)
        norm = torch.zeros(enc_mask.shape[0], device=device)
    sums = [torch.zeros(enc_mask.shape[0], layout.dims[g], device=device) for g in targets]
    with fork_rng(device):
        torch.manual_seed(seed)
        for _ in range(num_samples):
            z = q.sample()
            outs = model.decode(z, phis, offsets)
            means = layout.scatter_unbind(
                [lik.mean(out) for out, lik in zip(outs, model.likelihoods)]
            )
            if not importance:
                for total, g in zip(sums, targets):
                    total += means[g]
                continue
            log_w = log_weight(q, z, outs)
            new_top = torch.maximum(top, log_w)  # a running log-sum-exp over the draws
            old, this = (top - new_top).exp(), (log_w - new_top).exp()
            norm = norm * old + this
            for total, g in zip(sums, targets):
                total.mul_(old.unsqueeze(-1)).add_(this.unsqueeze(-1) * means[g])
            top = new_top
    if importance:
        return [(total / norm.unsqueeze(-1)).cpu() for total in sums]
    return [(total / num_samples).cpu() for total in sums]
