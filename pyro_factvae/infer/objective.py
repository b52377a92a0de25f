"""Training objectives: the loss of a minibatch, split into its data and prior parts.

Registered in :data:`~pyro_factvae.registry.OBJECTIVES`; each posterior over ``Phi`` names the
one it trains with (its ``objective`` attribute):

``"collapsed"`` (:class:`CollapsedELBO`), for the prox-MAP point masses
    ``-L~`` of Algorithm 1 (the ELBO without the group-lasso term, sec. 2.1) computed straight
    from the networks in one pass: the product of experts (eq 6), one reparameterised draw of
    ``z``, its analytic KL, and one batched log-likelihood per block of equal-shaped groups.
    It is the number :func:`~pyro_factvae.infer.elbo.elbo_terms` gives for
    ``collapse(model)`` and ``collapse(guide)`` (a test holds them equal, draw for draw), but
    without Pyro's per-site messages (three sites per group per step), so the cost of a step
    does not grow with the number of groups.
``"trace"`` (:class:`TraceELBO`), for posteriors with sampled globals (the mean field)
    Pyro's trace of the guide replayed through the model
    (:func:`~pyro_factvae.infer.elbo.elbo_terms`).

An objective also fetches minibatches in the form it reads (:meth:`CollapsedELBO.batch`):
per-block ``(B, G_b, d_b)`` tensors cut from :meth:`~pyro_factvae.GroupedData.block` views
(zero-padded columns of the matrix for a padded block), or per-group
tensors for the Pyro programs, moved to the parameters' device.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from pyro import poutine

from .. import sites
from ..data import GroupedData
from ..module.experts import product_of_experts
from ..module.guide import Guide
from ..module.model import Model
from ..registry import OBJECTIVES
from .collapse import collapse
from .elbo import elbo_terms, is_data_term

__all__ = ["CollapsedELBO", "Terms", "TraceELBO", "objective_for"]


class Terms:
    """A minibatch loss: ``data`` (likelihoods and KL of ``z``) and ``prior`` (the theta
    prior, and the group-lasso prior in a non-collapsed phase), both scalar tensors.
    :meth:`named` splits it by model term (:func:`pyro_factvae.sites.term`), for errors."""

    def __init__(
        self, data: torch.Tensor, prior: torch.Tensor, named: Callable[[], dict[str, Any]]
    ) -> None:
        self.data, self.prior, self._named = data, prior, named

    @property
    def loss(self) -> torch.Tensor:
        return self.data + self.prior

    def named(self) -> dict[str, torch.Tensor]:
        """``{term: -contribution}``; the loss is their sum."""
        return self._named()


def _device(guide: Guide) -> torch.device:
    return next(guide.parameters()).device


def _columns(groups: list[int]) -> slice | list[int]:
    """``groups`` as an index of the mask's group axis: a slice where they are consecutive
    and ascending."""
    if groups == list(range(groups[0], groups[0] + len(groups))):
        return slice(groups[0], groups[0] + len(groups))
    return groups


def _block_reader(data: GroupedData, block: Any) -> Callable[[torch.Tensor], torch.Tensor]:
    """``read(rows)``: a block's ``(B, G_b, d_b)`` values of ``rows``, cut from a
    :meth:`~pyro_factvae.GroupedData.block` view; for a padded block, from the matrix (no
    padded copy of the data): its groups' columns read as one span (then zero-padded and put
    in place) where the span is at most twice their width, else gathered one by one (a wide
    group between them is not read)."""
    if not block.padded:
        return data.block(block.groups).__getitem__
    matrix, shape = data.matrix, (len(block.groups), block.dim)
    starts = [0, *itertools.accumulate(data.dims)]
    own = [(starts[g], w) for g, w in zip(block.groups, block.widths)]
    lo = min(s for s, _ in own)
    hi = max(s + w for s, w in own)
    if hi - lo <= 2 * sum(w for _, w in own):
        zero = hi - lo  # the zero column padded on after the span
        take = torch.tensor(
            [s - lo + j if j < w else zero for s, w in own for j in range(block.dim)]
        )

        def read(rows: torch.Tensor) -> torch.Tensor:
            span = matrix.index_select(0, rows)[:, lo:hi]
            return torch.nn.functional.pad(span, (0, 1)).index_select(1, take).unflatten(1, shape)

        return read
    source = torch.tensor([s + j for s, w in own for j in range(w)])
    place = torch.tensor([i * block.dim + j for i, (_, w) in enumerate(own) for j in range(w)])
    size = len(own) * block.dim

    def gather(rows: torch.Tensor) -> torch.Tensor:
        out = matrix.new_zeros(len(rows), size)
        out[:, place] = matrix[rows[:, None], source]
        return out.unflatten(1, shape)

    return gather


@OBJECTIVES.register("collapsed")
class CollapsedELBO:
    """``-L~`` of Algorithm 1 for the point-mass posterior over ``Phi``, in one pass.

    Parameters
    ----------
    model, guide : Model, Guide
    data : GroupedData
        The rows minibatches are cut from.
    scale : float
        Multiplies the loss (training: ``1 / N``, so the loss is per row).
    collapsed : bool
        Must be ``True``: this objective is the collapsed one.
    """

    #: whether ``__call__`` takes the ``z`` noise (distributed training shares it out)
    takes_noise = True

    def __init__(
        self, model: Model, guide: Guide, data: GroupedData, scale: float, collapsed: bool = True
    ) -> None:
        if not collapsed:
            raise ValueError("CollapsedELBO computes the collapsed objective only")
        self.model, self.guide, self.scale = model, guide, scale
        layout = model.layout
        self._blocks = [_block_reader(data, b) for b in layout.blocks]
        # each block's columns of the (B, G) mask: a slice (a view) where its groups are
        # consecutive, as in a single block
        self._groups = [_columns(list(b.groups)) for b in layout.blocks]
        self._observed = data.observed
        self._cells = data.cells  # None: no observed group misses a cell (the fast path)
        self._device = _device(guide)
        weights = model.group_weight  # per-group likelihood weights, made a tensor once
        self._group_weight = None if weights is None else torch.tensor(weights, device=self._device)

    def batch(self, rows: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, Any]:
        """Per-block values ``(B, G_b, d_b)`` (in-support placeholders under missing groups,
        zeros under missing cells), the ``(B, G)`` observed mask of ``rows``, and their
        ``(B, sum d_g)`` cell mask (``None`` when no observed group misses a cell)."""
        mask = self._observed[rows].to(self._device)
        out = []
        for read, groups, lik in zip(self._blocks, self._groups, self.model.likelihoods):
            x = read(rows).to(self._device)
            out.append(lik.in_support(x, mask[:, groups].unsqueeze(-1)))
        cells = None if self._cells is None else self._cells[rows].to(self._device)
        return out, mask, cells

    def __call__(
        self,
        blocks: list[torch.Tensor],
        mask: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> Terms:
        """The loss of a minibatch from :meth:`batch` (``enc_mask``, ``weight``, ``cells``
        and ``enc_cells`` as in :meth:`~pyro_factvae.module.model.Model.forward` and
        :meth:`~pyro_factvae.module.guide.Guide.forward`); ``noise``:
        the standard-normal draw behind ``z`` (``(B, K)``; default: drawn here, as the guide
        draws it)."""
        model, guide, config = self.model, self.guide, self.model.config
        layout = model.layout
        phis = list(guide.Phi)
        batch = mask.shape[0]
        inputs = mask if enc_mask is None else mask & enc_mask
        if enc_cells is not None:  # a group with no cell left for the encoder is left out
            inputs = inputs & layout.groups_seen(enc_cells)
        cell_blocks = layout.gather_cells(cells)
        enc_blocks = cell_blocks if enc_cells is None else layout.gather_cells(enc_cells)
        mu, precision = guide.block_expert_params(blocks, phis, enc_blocks)
        # eq 6; the experts come from finite (zero-filled) inputs: a non-finite one makes the
        # loss non-finite, which the training step refuses
        loc, scale = product_of_experts(mu, precision, inputs, finite=True)
        if noise is None:  # drawn on the CPU: seeded and resumable on every device
            noise = torch.randn(loc.shape, dtype=loc.dtype).to(loc.device)
        z = loc + scale * noise  # the guide's reparameterised draw
        # KL(N(loc, scale^2) || N(0, I)), as torch.distributions computes it
        var = scale.square()
        kl = 0.5 * (var + loc.square() - 1 - var.log()).sum(-1)
        # a count group's depth is read where the encoder reads: what it was given
        offsets = model.offsets(blocks, inputs, enc_blocks, sources=mask)
        log_lik = model.block_log_likelihoods(blocks, z, phis, cell_blocks, offsets)  # (B, G)
        if self._group_weight is not None:
            log_lik = log_lik * self._group_weight
        num_data = config.num_data or batch
        # the data plate's N / B, then the loss's (a rank with no row of a small last minibatch
        # adds nothing: its share of the gradient is 0)
        row_scale = self.scale * num_data / max(batch, 1)
        if weight is not None:
            kl, log_lik = kl * weight, log_lik * weight.unsqueeze(-1)
        nll = log_lik.where(mask, 0.0).sum(0) * -row_scale  # (G,)
        kl_total = kl.sum() * row_scale
        tau = config.theta_prior_weight
        if tau > 0:
            prior = -self.scale * tau * num_data * model.theta_log_prior()
        else:
            prior = torch.zeros((), device=loc.device)

        def named() -> dict[str, torch.Tensor]:
            out = {sites.term(sites.x(n)): v for n, v in zip(model.layout.names, nll)}
            out[sites.term(sites.Z)] = kl_total
            if tau > 0:
                out[sites.term(sites.THETA_PRIOR)] = prior
            return out

        return Terms(nll.sum() + kl_total, prior, named)


@OBJECTIVES.register("trace")
class TraceELBO:
    """The negative ELBO from Pyro's traces of the (collapsed, where the posterior is)
    model and guide: :func:`~pyro_factvae.infer.elbo.elbo_terms`. Same parameters as
    :class:`CollapsedELBO`, plus ``collapsed``."""

    takes_noise = False

    def __init__(
        self, model: Model, guide: Guide, data: GroupedData, scale: float, collapsed: bool = False
    ) -> None:
        wrap = collapse if collapsed else (lambda fn: fn)
        self.model, self.guide = model, guide
        self._programs = (poutine.scale(wrap(model), scale), poutine.scale(wrap(guide), scale))
        self._data = data
        self._device = _device(guide)

    def batch(self, rows: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor, Any]:
        """Per-group values ``(B, d_g)``, the ``(B, G)`` observed mask of ``rows`` and their
        ``(B, sum d_g)`` cell mask (``None`` when no observed group misses a cell)."""
        xs, mask = self._data[rows]
        cells = self._data.cells
        cells = None if cells is None else cells[rows].to(self._device)
        return [x.to(self._device) for x in xs], mask.to(self._device), cells

    def __call__(self, *args: Any, **kwargs: Any) -> Terms:
        terms = elbo_terms(*self._programs, *args, **kwargs)
        data = [v for k, v in terms.items() if is_data_term(k)]
        prior = [v for k, v in terms.items() if not is_data_term(k)]
        zero = torch.zeros((), device=self._device)
        return Terms(sum(data, zero), sum(prior, zero), lambda: terms)


def objective_for(
    model: Model, guide: Guide, posterior: str, data: GroupedData, scale: float
) -> CollapsedELBO | TraceELBO:
    """The objective the posterior strategy ``posterior`` trains with, on ``data``."""
    strategy = guide.phi_posteriors[posterior]
    cls = OBJECTIVES.get(strategy.objective)
    return cls(model, guide, data, scale, collapsed=strategy.collapsed)
