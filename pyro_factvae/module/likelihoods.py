"""Per-group observation families ``p(x_g | f_g(W_g z))`` (eq 5, generalised).

New families register with :data:`~pyro_factvae.registry.LIKELIHOODS` (see there).

Each likelihood turns the decoder output of a group (one value per feature) into a Pyro
distribution over the group's ``d_g`` features. Choose one per group by name. A cell mask
(``cells``, ``True`` where a cell is observed) makes every family score the observed cells
only; a categorical group is one cell (its label), so it is observed whole or not at all.

===============  =================================================  ================
name             distribution                                       decoder output
===============  =================================================  ================
``normal``       ``Normal(out, sigma)``, sigma learned per feature  the mean
``bernoulli``    ``Bernoulli(logits=out)``                          the logits
``categorical``  ``OneHotCategorical(logits=out)``: the group's     the logits
                 ``d_g`` columns are one one-hot class label
                 (:mod:`~pyro_factvae.module.categorical`)
===============  =================================================  ================

The count families are in :mod:`~pyro_factvae.module.counts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from ..registry import LIKELIHOODS

__all__ = [
    "HALF_LOG_2PI",
    "BernoulliLikelihood",
    "Likelihood",
    "NormalLikelihood",
    "inverse_softplus",
    "masked_event",
    "with_cells",
]

#: ``log(2 pi) / 2``, the constant of a standard normal's log-density
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: lower bound on a learned Normal scale, so the log-density stays bounded
MIN_SCALE = 1e-3
#: the noise scale of a feature constant in the training data, in standardized units (the
#: floor: where a new row breaks the constant, its log-likelihood is what a learned scale
#: at the floor gives)
CONSTANT_SCALE = MIN_SCALE


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """``softplus^-1(y) = y + log(1 - exp(-y))``, finite for every ``y > 0`` (the textbook
    ``log(expm1(y))`` overflows to ``inf`` above ``y ~ 88`` in float32, e.g. for a feature of
    scale 1e6)."""
    y = torch.as_tensor(y)
    # the textbook form where it is finite (so earlier fits repeat bit for bit), else the
    # overflow-free one (equal in exact arithmetic)
    small = torch.log(torch.expm1(y.clamp(max=80.0)))
    return torch.where(y <= 80.0, small, y + torch.log(-torch.expm1(-y)))


def with_cells(method, *args, cells: torch.Tensor | None = None):
    """``method(*args)``, with ``cells`` as the last argument only when there is a cell mask:
    a likelihood written before cell masks (without the ``cells`` argument) keeps working
    on whole-group data."""
    return method(*args) if cells is None else method(*args, cells)


def masked_event(
    fn: dist.TorchDistribution, cells: torch.Tensor | None, i: int, width: int | None = None
):
    """``fn`` over the features of group ``i`` of a block, scoring only its observed cells
    (``cells[..., i, :width]``) when a cell mask is given, as one event."""
    return (fn if cells is None else fn.mask(cells[..., i, :width])).to_event(1)


class Likelihood(nn.Module):
    """Base class: parameters of one block of groups sharing a family and width (a padded
    block's groups are narrower than ``dim``: see ``widths``).

    Parameters
    ----------
    num_groups, dim : int
        The block holds ``num_groups`` groups of ``dim`` features each.
    widths : sequence of int, optional
        A *padded* block's own width of each group (the rest of its ``dim`` columns is
        padding, left out of every sum and distribution); only for a family that declares
        itself :attr:`paddable`.
    """

    name = "base"
    #: whether the family takes a per-row library-size offset (the count families)
    counts = False
    #: whether groups of different widths may share a zero-padded block (the family scores
    #: each column on its own, with no sum over a group's columns such as a softmax, and
    #: honours ``widths``; see :class:`~pyro_factvae.layout.Layout`)
    paddable = False
    #: whether constant features are held at their value (:mod:`~pyro_factvae.module.held`)
    holds = True
    #: whether draws are real numbers whose spread about a row's mean may be scaled (the
    #: held-out spread of :mod:`~pyro_factvae.infer.spread`); not counts, 0/1 or classes
    continuous = False

    def __init__(self, num_groups: int, dim: int, *, widths: Sequence[int] | None = None) -> None:
        super().__init__()
        self.num_groups, self.dim = num_groups, dim
        if widths is not None and not self.paddable:
            raise ValueError(f"the {type(self).__name__} family does not take padded blocks")
        self.widths = tuple(widths) if widths is not None else (dim,) * num_groups
        columns = None
        if any(w != dim for w in self.widths):
            columns = torch.arange(dim) < torch.tensor(self.widths).unsqueeze(-1)
        #: ``(G_b, dim)`` bool, each group's own columns (``None`` without padding)
        self.register_buffer("columns", columns, persistent=False)
        self.register_buffer("held", torch.zeros(num_groups, dim, dtype=torch.bool))
        self.register_buffer("held_value", torch.zeros(num_groups, dim))
        #: each feature's smallest and largest observed training value (empty, low > high,
        #: where none is known: before a fit, and in the padding)
        self.register_buffer("low", torch.full((num_groups, dim), math.inf))
        self.register_buffer("high", torch.full((num_groups, dim), -math.inf))
        lacking = [m for m in ("dists", "mean") if getattr(type(self), m) is getattr(Likelihood, m)]
        if lacking:  # said when the model is built, not at the first step's NotImplementedError
            raise ValueError(
                f"the likelihood {self.name!r} ({type(self).__name__}) defines no "
                f"{' and no '.join(lacking)}: a family gives dists(out, cells=None) and "
                "mean(out) (see LikelihoodFamily in pyro_factvae.protocols)"
            )

    def scored(self, cells: torch.Tensor | None) -> torch.Tensor | None:
        """The cells a block's sums run over: ``cells`` (observed cells), less the padding;
        ``None``: every column."""
        if self.columns is None:
            return cells
        return self.columns if cells is None else cells & self.columns

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        """Per-group distributions of the block given decoder outputs ``(..., G_b, dim)``;
        with ``cells`` (bool, ``(..., G_b, dim)``) each scores its observed cells only."""
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """Mean of the observations given decoder outputs ``(..., num_groups, dim)``."""
        raise NotImplementedError

    def draw(self, out: torch.Tensor) -> list[torch.Tensor]:
        """A draw of every group of the block from :meth:`dists`, ``(..., d_g)`` each, with
        the features held :meth:`constant` at their value (not their noise floor's spread)."""
        values = [fn.sample() for fn in self.dists(out)]
        constant = self.constant()
        if not bool(constant.any()):
            return values
        means = self.hold(self.mean(out))
        return [
            torch.where(constant[i, :w], means[..., i, :w], v)
            for i, (v, w) in enumerate(zip(values, self.widths))
        ]

    def hold(self, means: torch.Tensor) -> torch.Tensor:
        """``means`` (``(..., G_b, dim)``, from :meth:`mean`), held features at their value."""
        return torch.where(self.held, self.held_value, means) if self.holds else means

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(x_g | out_g)`` of every group of the block, ``(..., num_groups)``, for
        values ``x`` of shape ``(..., num_groups, dim)`` (the sum over each group's observed
        cells, all of them when ``cells`` is ``None``; the same numbers as :meth:`dists`, in
        one batched call where a subclass can). Values under missing cells must be finite."""
        fns = with_cells(self.dists, out, cells=cells)
        parts = [fn.log_prob(x[..., i, :w]) for i, (fn, w) in enumerate(zip(fns, self.widths))]
        return torch.stack(parts, dim=-1)

    @classmethod
    def check(
        cls, name: str, x: torch.Tensor, observed: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        """Raise ``ValueError`` if observed values of group ``name`` are outside the support
        (``cells``: the group's ``(N, d)`` cell mask, when it misses cells)."""

    @classmethod
    def variables(cls, dim: int) -> int:
        """How many variables a group of ``dim`` columns holds (default: one per column). The
        group-lasso weight of the group's links is ``lam`` times this, so that ``lam`` is a
        per-variable weight whose meaning does not depend on the group's width."""
        return dim

    def init_from_data(self, xs: list[torch.Tensor], observed: list[torch.Tensor]) -> None:
        """Set the block's data-dependent buffers (e.g. standardization) wholly from these data
        (default: none): when a model is built, and again before ``lam="auto"``'s final refit
        on every row, so never a learned parameter; ``observed``: ``(N,)`` rows or ``(N, dim)``
        cells per group."""

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """Block inputs ``(..., num_groups, dim)`` in the units the encoders see (default: as
        they are)."""
        return x

    def units(self) -> torch.Tensor:
        """``(num_groups, dim)``: each feature's unit of standardization (its training
        standard deviation where the family standardizes, default 1); errors divided by it
        are in standardized units."""
        return torch.ones(self.num_groups, self.dim)

    def constant(self) -> torch.Tensor:
        """``(num_groups, dim)`` bool: features whose observed training values were all one
        value (in two rows or more), predicted as that value."""
        return self.held.clone()

    def keep_varying(
        self, xs: list[torch.Tensor], observed: list[torch.Tensor], ranges: list[Any]
    ) -> None:
        """Features held constant that vary in these data (``init_from_data``'s arguments;
        ``ranges``: each group's :func:`~pyro_factvae.module.held.column_range`), or hold
        another value, are no longer held constant (default: nothing to do)."""

    @staticmethod
    def in_support(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``x`` with missing rows (``observed`` False, broadcast on the last axis) holding a
        value in the support, so that scoring them (then masking) is valid. Default: as is
        (the zeros :class:`~pyro_factvae.data.GroupedData` puts there)."""
        return x


def _moments(x: torch.Tensor, cells: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each column's count, mean and standard deviation (``n - 1``) over its observed
    ``cells``, in float64."""
    count = cells.sum(0).double()
    vals = x.double().where(cells, 0.0)
    mean = vals.sum(0) / count.clamp(min=1)
    var = ((x.double() - mean).where(cells, 0.0).square().sum(0)) / (count - 1).clamp(min=1)
    return count, mean, var.sqrt()


@LIKELIHOODS.register("normal")
class NormalLikelihood(Likelihood):
    """``x ~ Normal(shift + unit * out, unit * sigma)`` with a learned scale ``sigma`` per feature
    (``sigma >= MIN_SCALE``).

    The features are standardized inside the model: ``shift`` and ``unit`` (buffers, kept in
    the model file) are each feature's training mean and standard deviation, set by
    :meth:`init_from_data`. Networks, ``sigma`` and the noise floor work in standardized units,
    so nothing depends on the data's units; the distribution, and every output, is in the
    user's units.
    """

    paddable = True
    holds = False  # its own ``varies`` and ``shift`` hold a constant feature
    continuous = True

    def __init__(
        self,
        num_groups: int,
        dim: int,
        init_scale: float = 1.0,
        *,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__(num_groups, dim, widths=widths)
        raw = inverse_softplus(torch.tensor(init_scale - MIN_SCALE))
        self.raw_scale = nn.Parameter(torch.full((num_groups, dim), float(raw)))
        self.register_buffer("shift", torch.zeros(num_groups, dim))
        self.register_buffer("unit", torch.ones(num_groups, dim))
        #: 0.0 for a feature constant in the training data (its mean is then ``shift``)
        self.register_buffer("varies", torch.ones(num_groups, dim))

    @property
    def scale(self) -> torch.Tensor:
        """``sigma``, in standardized units."""
        return softplus(self.raw_scale) + MIN_SCALE

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        loc, scale = self.mean(out), self.noise()  # once per block
        return [
            masked_event(dist.Normal(loc[..., i, :w], scale[i, :w]), cells, i, w)
            for i, w in enumerate(self.widths)
        ]

    @torch.no_grad()
    def init_from_data(self, xs: list[torch.Tensor], observed: list[torch.Tensor]) -> None:
        """Standardize with each feature's mean and standard deviation over its observed
        cells (a constant feature, or one seen once, keeps unit 1; a constant one is
        predicted as its value)."""
        for i, (x, obs) in enumerate(zip(xs, observed)):
            w = x.shape[-1]  # a padded block's padding keeps shift 0, unit 1
            if obs.dim() == 1:  # whole rows
                rows = x[obs].double()
                if len(rows) > 0:
                    self.shift[i, :w] = rows.mean(0).float()
                if len(rows) > 1:
                    std = rows.std(0)
                    self.unit[i, :w] = torch.where(std > 0, std, torch.ones_like(std)).float()
                    self.varies[i, :w] = (std > 0).float()
                continue
            count, mean, std = _moments(x, obs)
            self.shift[i, :w] = torch.where(count > 0, mean, 0.0).float()
            ok = (count > 1) & (std > 0)
            self.unit[i, :w] = torch.where(ok, std, torch.ones_like(std)).float()
            self.varies[i, :w] = ((count < 2) | (std > 0)).float()

    @torch.no_grad()
    def keep_varying(
        self, xs: list[torch.Tensor], observed: list[torch.Tensor], ranges: list[Any]
    ) -> None:
        """A feature whose unit the fits so far could not set (held at its value, ``varies``
        0, or seen in one row: its training range one value) that varies in these data, or
        holds another value, is standardized anew with these data's mean and standard
        deviation over its observed cells (its old ``shift`` and unit 1 would leave it in its
        raw units) and freed."""
        for i, (x, obs, (low, high, seen)) in enumerate(zip(xs, observed, ranges)):
            w = x.shape[-1]
            old_low = self.low[i, :w].cpu().double()
            one = old_low == self.high[i, :w].cpu().double()
            value = torch.where(one, old_low, self.shift[i, :w].cpu().double())
            stale = (self.varies[i, :w].cpu() == 0) | one
            freed = stale & ((high > low) | ((seen > 0) & (low != value)))
            if not bool(freed.any()):
                continue
            cells = obs.unsqueeze(-1).expand_as(x) if obs.dim() == 1 else obs
            count, mean, std = _moments(x, cells)
            unit = torch.where((count > 1) & (std > 0), std, torch.ones_like(std))
            for buffer, new in ((self.shift, mean), (self.unit, unit)):
                buffer[i, :w] = torch.where(freed, new, buffer[i, :w].cpu().double()).to(buffer)
            self.varies[i, :w] = torch.where(freed.to(self.varies.device), 1.0, self.varies[i, :w])

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift) / self.unit

    def noise(self) -> torch.Tensor:
        """The noise scale in the user's units, ``unit * sigma`` (the floor for a constant
        feature, which bounds its log-likelihood; its draws are its value)."""
        return torch.where(self.varies > 0, self.scale, CONSTANT_SCALE) * self.unit

    def units(self) -> torch.Tensor:
        return self.unit

    def constant(self) -> torch.Tensor:
        return self.varies == 0

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self.shift + self.unit * self.varies * out

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        scale = self.noise()
        # torch.distributions.Normal.log_prob's expression, summed over the observed features
        # (its minus sign on the (G_b, d) denominator: the same numbers, one operation fewer
        # over the minibatch)
        z = (x - self.mean(out)) ** 2 / (-2 * scale**2) - scale.log() - HALF_LOG_2PI
        cells = self.scored(cells)
        return (z if cells is None else z.where(cells, 0.0)).sum(-1)


@LIKELIHOODS.register("bernoulli")
class BernoulliLikelihood(Likelihood):
    """``x ~ Bernoulli(logits=out)``; observed values must be 0 or 1."""

    paddable = True

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        return [
            masked_event(dist.Bernoulli(logits=out[..., i, :w]), cells, i, w)
            for i, w in enumerate(self.widths)
        ]

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(out)

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        bce = binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
        cells = self.scored(cells)
        return -(bce if cells is None else bce.where(cells, 0.0)).sum(-1)

    @classmethod
    def check(
        cls, name: str, x: torch.Tensor, observed: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        bad = ((x != 0) & (x != 1)) & (observed.unsqueeze(-1) if cells is None else cells)
        bad = bad.any(-1)
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(-1)[:5].tolist()
            raise ValueError(
                f"group {name!r} has the 'bernoulli' likelihood but rows {rows} hold values "
                "other than 0 and 1; binarise the data or use 'normal'"
            )
