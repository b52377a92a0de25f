"""Draws keyed by each row: a row's Monte Carlo noise depends on the row, not on its company.

An estimate per row (an imputed mean, a refined posterior) averages over draws ``z_s ~ q(z |
x_O)``. Drawn for the rows of a query in turn, row ``i``'s ``z_s`` depend on where it sits in
the query, so the same row imputed with other rows, or in another chunk, got another Monte
Carlo error (up to 0.2 standard deviations of a wine column at 1,000 draws with the default
refinement). The same standard draws ``eps_s`` for every row (common random numbers) make a
row's estimate a function of its own values and the seed, but correlate the rows' errors: one
unlucky draw moves every row at once, and an average over rows (an RMSE) then varies 2-3
times as much between seeds (the breast cancer RMSE of one λ = 0 fit on each of two splits,
over six seeds of the imputation: sd 0.015 and 0.011, against 0.007 and 0.004 with each row's
own draws and 0.004 and 0.005 with the keyed draws below; ``benchmarks/draw_spread.py``
prints the last two, and that a row's own draws moved a row's mean by up to 0.5 between two
queries).

:class:`RowNoise` takes both: a pool of ``pool * S`` standard draws is made under the seed,
and row ``i`` takes the ``S`` consecutive ones (cyclically) from an offset that is a hash of
what the encoder reads of the row (:func:`row_keys`: its read cells' bit patterns and which
cells are read). A row's draws are then a function of the row and the seed, identical rows
get identical estimates, and two different rows share a draw only where their windows
overlap (on average ``1 / pool`` of them), so an average over rows is nearly one of
independent errors. Multiple imputation's draws (:mod:`~pyro_factvae.module.draws`) and the
scores of :mod:`~pyro_factvae.module.scoring` (the ``lam`` criterion among them) draw each
row from the query's stream; the errors of :func:`~pyro_factvae.metrics.evaluate` score the
means :meth:`~pyro_factvae.FactVAE.impute` returns, with its keyed draws. The keys read the
values as given, so data in other units (or rounded otherwise) get other draws: the same
means up to their Monte Carlo error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro import distributions as dist

__all__ = ["POOL", "POOL_FLOATS", "RowNoise", "row_keys"]

#: the pool of draws is this many times the draws a row takes
POOL = 32
#: ... as long as it holds at most this many floats, draws and uniforms (then fewer times,
#: and at least once: above about 2,000 draws of 64 latents a row the rows share more draws,
#: but each row's own Monte Carlo error is small)
POOL_FLOATS = 2**22
#: the modulus of the row hash (a Mersenne prime: every term stays below 2**63)
_PRIME = 2**31 - 1


def row_keys(
    xs: Sequence[torch.Tensor], mask: torch.Tensor, cells: torch.Tensor | None
) -> torch.Tensor:
    """``(B,)`` int64: a hash of what the encoder reads of each row, in integer arithmetic on
    the float32 bit patterns of the read cells and on which cells are read, so that the same
    row gets the same key in any query, chunk or order (two different rows may get the same
    key, rarely: they then share their draws, as every row did with one set of draws).

    Parameters
    ----------
    xs : sequence of torch.Tensor
        Each group's values, ``(B, d_g)``.
    mask : torch.Tensor
        ``(B, G)`` bool: the groups read.
    cells : torch.Tensor or None
        ``(B, sum d_g)`` bool: the cells observed (``None``: every cell of a read group).
    """
    device = mask.device
    width = sum(x.shape[-1] for x in xs)
    coeff = torch.Generator().manual_seed(20_240_917)  # fixed: keys must not change
    a = torch.randint(1, 2**30, (width,), generator=coeff).to(device)
    b = torch.randint(1, 2**30, (width,), generator=coeff).to(device)
    read = torch.cat([m.unsqueeze(-1).expand_as(x) for m, x in zip(mask.unbind(-1), xs)], -1)
    if cells is not None:
        read = read & cells.to(device)
    values = torch.cat([x.to(device=device, dtype=torch.float32) for x in xs], -1)
    values = torch.where(read, values, 0.0) + 0.0  # -0.0 reads as 0.0
    bits = values.view(torch.int32).long() & 0xFFFFFFFF  # below 2**32
    terms = (bits % _PRIME) * a % _PRIME + read.long() * b % _PRIME
    return terms.sum(-1) % _PRIME


class RowNoise:
    """A pool of ``pool * num`` standard Normal draws of ``dim`` values (and as many uniforms,
    which pick a mixture's component), made from the current RNG on ``device``; each row
    takes ``num`` consecutive ones from its key's offset.

    Parameters
    ----------
    num : int
        The draws a row takes, ``S``.
    dim : int
        The latent dimension ``K``.
    device : torch.device or str
        Where the draws are made and kept (in float32, the model's precision).
    pool : int
        The pool's size in multiples of ``num``: fewer where that would hold more than
        :data:`POOL_FLOATS` floats, and at least one (which may hold more).
    """

    def __init__(self, num: int, dim: int, device: torch.device | str, pool: int = POOL) -> None:
        num = max(1, num)
        size = num * max(1, min(pool, POOL_FLOATS // (num * (max(1, dim) + 1))))
        # float32, the model's precision, whatever torch's default dtype
        self.eps = torch.randn(size, dim, device=device, dtype=torch.float32)
        self.uniform = torch.rand(size, device=device, dtype=torch.float32)

    def _index(self, keys: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """``(S', B)``: where in the pool draws ``start:stop`` of the rows with ``keys`` are."""
        steps = torch.arange(start, stop, device=keys.device)
        return (keys.unsqueeze(0) + steps.unsqueeze(-1)) % len(self.uniform)

    def standard(self, keys: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        """Draws ``start:stop`` of the standard Normals of the rows with ``keys`` (``(B,)``):
        ``(S', B, K)``."""
        return self.eps[self._index(keys, start, stop)]

    def sample(self, q: dist.TorchDistribution, keys: torch.Tensor, start: int, stop: int):
        """Draws ``start:stop`` of ``z ~ q`` for the rows with ``keys``: ``(S', B, K)``.

        ``q`` is a diagonal Normal (batch ``(B,)``, event ``(K,)``), as the product of experts
        and refinement give, or a mixture of them (the JMVAE+ posterior), whose component is
        the one each row's cumulative weights put the draw's uniform in."""
        index = self._index(keys, start, stop)
        eps = self.eps[index]
        if isinstance(q, dist.MixtureSameFamily):
            cdf = q.mixture_distribution.probs.cumsum(-1)  # (B, C)
            # u in [0, total): a component of weight 0 is never picked, whatever the rounding
            u = self.uniform[index].unsqueeze(-1) * cdf[..., -1:]
            pick = (u >= cdf).sum(-1).clamp(max=cdf.shape[-1] - 1)  # (S', B)
            comp = q.component_distribution.base_dist  # loc, scale: (B, C, K)
            rows = torch.arange(cdf.shape[0], device=pick.device)
            return comp.loc[rows, pick] + comp.scale[rows, pick] * eps
        if not (
            isinstance(q, torch.distributions.Independent)
            and isinstance(q.base_dist, torch.distributions.Normal)
        ):
            raise TypeError(f"q must be a diagonal Normal or a mixture of them, got {q!r}")
        return q.base_dist.loc + q.base_dist.scale * eps
