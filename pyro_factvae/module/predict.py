"""Posterior-predictive means under the fitted posterior, vectorised over groups and rows."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..rng import seeded
from .guide import Guide
from .library import offsets_from
from .model import Model
from .noise import RowNoise, row_keys
from .refine import proposal
from .weights import ImportanceWeights

__all__ = ["MAX_ELEMENTS", "NUM_SAMPLES", "ImportanceWeights", "predictive_means"]

#: default memory bound of the queries, in floats per (sample x row x feature) chunk
MAX_ELEMENTS = 2**22

#: draws of ``z`` behind each imputed mean (and the proposals draws are resampled from), the
#: default of :meth:`~pyro_factvae.FactVAE.impute`, ``reconstruct``, ``predict_interval`` and
#: what reports them: a self-normalised importance-weighted mean of 100 draws carries Monte
#: Carlo error into the imputation. With 1,000, over seeds 0-9 of the peers' protocol (hide
#: one group; seeds 0-4 for the last two) the mean RMSE of the same fits fell on all six sets
#: tried: wine 0.939 → 0.923, nutrimouse 1.050 → 1.045, diabetes 0.852 → 0.850, breast
#: cancer 0.504 → 0.496, the simulation 0.518 → 0.517, digits 0.824 → 0.815; decoded in
#: batches, they took 0.02 s (wine's 36 test rows) to 0.17 s (the simulation's 400) more per
#: call than 100; on Fashion-MNIST's 2,000 test rows of 784 cells (two draws a batch) 18 s
#: against 5 s, beside the rows' refinement (:data:`~pyro_factvae.module.refine.REFINE_STEPS`),
#: which took minutes there
NUM_SAMPLES = 1000


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
    max_elements: int = MAX_ELEMENTS,
    row_noise: bool = True,
    sources: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``E[x_g | x_I]`` for the groups ``targets``, ``I`` given by ``enc_mask``.

    Monte Carlo over ``num_samples`` draws ``z_s ~ q(z | x_I)`` from
    :meth:`~pyro_factvae.module.guide.Guide.posterior_dist` (drawn under ``seed`` without touching
    the global RNG; with ``row_noise``, from standard draws keyed by each row,
    :class:`~pyro_factvae.module.noise.RowNoise`, so that a row's mean depends on the row and
    ``seed``, not on the rows queried with it) of
    ``E(x_g | z_s)``: their plain average (``E_q``), or with ``importance`` their
    self-normalised importance-weighted average, weights ``w_s = p(x_I | z_s) p(z_s) /
    q(z_s | x_I)`` over the observed cells of ``I``, which corrects the amortized encoder
    towards the model's own posterior ``p(z | x_I)`` (as the conditional log-likelihood and
    MIWAE do); ``refine_steps``: ``q`` refined per row first
    (:func:`~pyro_factvae.module.refine.refined_posterior`). ``num_samples = 0`` plugs in the
    posterior mean of ``z`` instead. Rows with no
    group in ``enc_mask`` get prior-predictive means. ``cells``: the ``(B, sum d_g)`` cell
    mask of ``xs``. Inputs may be on any device: they are computed on the model's, returned
    on the CPU. The draws are decoded in batches of about ``max_elements`` floats
    (:attr:`~pyro_factvae.module.model.Model.row_floats` per row and draw; at least one draw
    of every row). ``sources``: a ``(B, G)`` mask of groups whose observed values may serve
    as size factors (``library_size``) besides those in ``enc_mask`` (a covariate sets the
    depth whether or not the encoder reads it); default ``enc_mask``'s alone.
    """
    device = model.device
    layout = model.layout
    xs, enc_mask = [x.to(device) for x in xs], enc_mask.to(device)
    cells = None if cells is None else cells.to(device)
    phis = list(guide.Phi)
    sources = None if sources is None else sources.to(device)
    q = proposal(model, guide, xs, enc_mask, cells, refine_steps, seed, sources)
    # of the count groups, from x_I (and the size factors of ``sources``)
    offsets = offsets_from(model, xs, enc_mask, cells, sources)
    if num_samples == 0:
        means = model.means(q.mean, phis, offsets)
        return [means[g].cpu() for g in targets]
    n = enc_mask.shape[0]
    # draws in chunks of ``chunk``: one batched decode each, bounded in memory like the draws'
    chunk = max(1, min(num_samples, max_elements // (model.row_floats * max(n, 1))))
    if importance:
        log_weight = ImportanceWeights(model, xs, enc_mask, cells, sources)
        # a finite floor, so a draw of weight exactly 0 never makes (-inf) - (-inf)
        top = torch.full((n,), torch.finfo(torch.float32).min, dtype=torch.float32, device=device)
        norm = torch.zeros(n, dtype=torch.float32, device=device)
    sums = [torch.zeros(n, layout.dims[g], dtype=torch.float32, device=device) for g in targets]
    with seeded(device, seed):
        noise = RowNoise(num_samples, q.event_shape[-1], device) if row_noise else None
        keys = row_keys(xs, enc_mask, cells) if row_noise else None
        for start in range(0, num_samples, chunk):
            size = min(chunk, num_samples - start)
            z = q.sample((size,)) if noise is None else noise.sample(q, keys, start, start + size)
            outs = model.decode(z, phis, offsets)
            means = layout.scatter_unbind(
                [lik.hold(lik.mean(out)) for out, lik in zip(outs, model.likelihoods)]
            )
            if not importance:
                for total, g in zip(sums, targets):
                    total += means[g].sum(0)
                continue
            log_w = log_weight(q, z, outs)  # (S, B)
            new_top = torch.maximum(top, log_w.max(0).values)  # a running log-sum-exp
            old, this = (top - new_top).exp(), (log_w - new_top).exp()
            norm = norm * old + this.sum(0)
            for total, g in zip(sums, targets):
                total.mul_(old.unsqueeze(-1)).add_((this.unsqueeze(-1) * means[g]).sum(0))
            top = new_top
    averages = [total / (norm.unsqueeze(-1) if importance else num_samples) for total in sums]
    # a feature held constant is its value (every draw's mean), not an average's rounding of it
    constant = model.constant()
    return [
        torch.where(constant[g].to(device), means[g][0], mean).cpu()
        for mean, g in zip(averages, targets)
    ]
