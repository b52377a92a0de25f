"""The groups' layout: names, widths, likelihoods, and the blocks of groups whose networks
run as one batched call. The block <-> group mapping is written here once.

Groups of one likelihood and width form a block. Groups of a *paddable* likelihood (one whose
columns are scored independently: ``normal``, ``bernoulli``) and different widths share a
block too, zero-padded to its widest group, as long as the padding at most doubles the
block's cells (:data:`PAD_LIMIT`): a table of groups of 2 to 5 columns then runs its networks
as one batched call per step instead of one per width (``benchmarks/padding.py`` times both).
Padded columns are zeros that the encoders read as nothing, and the likelihoods leave them out
of every sum (``Likelihood.columns``)."""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.nn.functional import pad

from .registry import LIKELIHOODS

__all__ = ["PAD_LIMIT", "Block", "Layout"]

#: groups of different widths share a block while its padded cells are at most this many
#: times its real ones
PAD_LIMIT = 2.0


@dataclass(frozen=True)
class Block:
    """Groups of one likelihood, computed together along a group axis: ``dim`` columns each,
    of which group ``i`` uses the first ``widths[i]`` (the rest is padding)."""

    groups: tuple[int, ...]
    dim: int
    likelihood: str
    widths: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.widths:
            object.__setattr__(self, "widths", (self.dim,) * len(self.groups))

    @property
    def padded(self) -> bool:
        """Whether some group of the block is narrower than ``dim``."""
        return any(w != self.dim for w in self.widths)


def _partition(dims: Sequence[int], liks: Sequence[str], limit: float) -> list[Block]:
    """The blocks: groups of one likelihood and width, or (``limit > 0``, paddable
    likelihoods) runs of the likelihood's groups sorted by width, each as wide as its widest
    group and with at most ``limit`` times its real cells; blocks in the order of their first
    group (without padding, the order of the (width, likelihood) pairs)."""
    keys: dict[tuple[int, str], list[int]] = {}
    for g, key in enumerate(zip(dims, liks)):
        keys.setdefault(key, []).append(g)
    if not limit:
        return [Block(tuple(g), d, lk) for (d, lk), g in keys.items()]
    blocks, merged = [], {}
    for (d, lik), groups in keys.items():
        if getattr(LIKELIHOODS.get(lik), "paddable", False):
            merged.setdefault(lik, []).extend(groups)
        else:
            blocks.append(Block(tuple(groups), d, lik))
    for lik, groups in merged.items():
        run: list[int] = []
        for g in sorted(groups, key=lambda g: (dims[g], g)):
            if run and (len(run) + 1) * dims[g] > limit * (sum(dims[h] for h in run) + dims[g]):
                blocks.append(_padded(run, dims, lik))
                run = []
            run.append(g)
        blocks.append(_padded(run, dims, lik))
    return sorted(blocks, key=lambda b: min(b.groups))  # in the order the groups come


def _given(
    blocks: Sequence[Sequence[int]], dims: Sequence[int], liks: Sequence[str]
) -> list[Block]:
    """The blocks of an explicit partition (a model file's), checked: every group once, one
    likelihood per block, and groups of different widths only of a paddable likelihood."""
    try:
        parts = [[_index(g) for g in b] for b in blocks if not isinstance(b, (str, bytes))]
    except TypeError:
        parts = []
    if (
        len(parts) != len(blocks)
        or not all(parts)
        or sorted(g for b in parts for g in b) != list(range(len(dims)))
    ):
        raise ValueError(
            f"pad: the blocks {blocks!r} must be lists of group indices holding each of the "
            f"{len(dims)} groups once"
        )
    out = []
    for b in parts:
        kinds = {liks[g] for g in b}
        if len(kinds) > 1:
            raise ValueError(f"pad: block {b} mixes the likelihoods {sorted(kinds)}")
        lik = kinds.pop()
        widths = {dims[g] for g in b}
        if len(widths) > 1 and not getattr(LIKELIHOODS.get(lik), "paddable", False):
            raise ValueError(f"pad: block {b} pads groups of {lik!r}, which is not paddable")
        out.append(_padded(b, dims, lik))
    return out


def _index(g: Any) -> int:
    """A group index (an integer, not a bool or a float), else a ``TypeError``."""
    if isinstance(g, bool):
        raise TypeError("a bool is not a group index")
    return operator.index(g)


def _padded(groups: list[int], dims: Sequence[int], lik: str) -> Block:
    widths = tuple(dims[g] for g in groups)
    return Block(tuple(groups), max(widths), lik, widths)


@dataclass(frozen=True)
class Layout:
    """Names, widths and likelihoods of the groups, and their blocks.

    Groups of equal width and likelihood form a :class:`Block` whose networks run as one
    batched call (with ``pad``, groups of a paddable likelihood and different widths too,
    zero-padded: see the module docstring); :meth:`gather` and :meth:`scatter` move between
    the user's group order and the blocks, the only place that mapping is written.

    Parameters
    ----------
    names : sequence of str
        Group names in the user's order.
    dims : sequence of int
        Features per group.
    likelihoods : sequence of str
        Likelihood name per group (see :mod:`pyro_factvae.module.likelihoods`).
    pad : bool, float or sequence of sequences of int
        Let groups of different widths share a padded block while its padded cells are at
        most this many times its real ones (``True``, the default: :data:`PAD_LIMIT`;
        ``False``: one block per width, as a model file written without padded blocks is
        read back), kept as that number (``0.0`` for ``False``); or the blocks themselves,
        each a sequence of group indices (what model files record, so that a file reads
        back into the blocks it was written with), kept as a tuple of tuples.
    """

    names: tuple[str, ...]
    dims: tuple[int, ...]
    likelihoods: tuple[str, ...]
    # how the blocks were made; two layouts with the same blocks are the same
    pad: bool | float | Sequence[Sequence[int]] = field(default=True, compare=False)
    blocks: tuple[Block, ...] = field(init=False)

    def __post_init__(self) -> None:
        names, dims, liks = tuple(self.names), tuple(self.dims), tuple(self.likelihoods)
        if not (len(names) == len(dims) == len(liks)):
            raise ValueError("names, dims and likelihoods must have one entry per group")
        for lik in liks:
            LIKELIHOODS.get(lik)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "likelihoods", liks)
        if isinstance(self.pad, (bool, numbers.Real)):
            limit = PAD_LIMIT if self.pad is True else float(self.pad)
            if limit and limit < 1:
                raise ValueError(f"pad must be True, False or a number >= 1, got {self.pad!r}")
            object.__setattr__(self, "pad", limit)
            blocks = _partition(dims, liks, limit)
        else:
            blocks = _given(self.pad, dims, liks)
            object.__setattr__(self, "pad", tuple(b.groups for b in blocks))
        object.__setattr__(self, "blocks", tuple(blocks))
        # block order -> group order, per device (made once: scatter_axis runs every step)
        order = torch.tensor([g for b in self.blocks for g in b.groups])
        in_order = len(self.blocks) == 1 and bool((order == torch.arange(len(order))).all())
        object.__setattr__(self, "_in_order", in_order)
        object.__setattr__(self, "_inverse", {torch.device("cpu"): torch.argsort(order)})

    @property
    def partition(self) -> tuple[tuple[int, ...], ...]:
        """The groups of each block (``Layout(..., pad=layout.partition)`` builds the same
        blocks whatever the padding rule)."""
        return tuple(b.groups for b in self.blocks)

    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def penalty_weights(self) -> tuple[int | tuple[int, ...], ...]:
        """Per block, the number of variables of each of its groups (the likelihood's
        ``variables(width)``): a link of that group is penalised by ``lam`` times this. One
        number where the block's groups share it, else a tuple with one per group."""
        out: list[int | tuple[int, ...]] = []
        for b in self.blocks:
            per_group = tuple(LIKELIHOODS.get(b.likelihood).variables(w) for w in b.widths)
            out.append(per_group[0] if len(set(per_group)) == 1 else per_group)
        return tuple(out)

    @property
    def whole(self) -> tuple[bool, ...]:
        """Whether each group (in the user's order) is one value over its columns (fewer
        variables than columns, as a categorical group's one-hot label), hidden whole."""
        return tuple(
            LIKELIHOODS.get(lik).variables(dim) != dim
            for lik, dim in zip(self.likelihoods, self.dims)
        )

    def penalty_rates(self, lam_total: float) -> list[float | torch.Tensor]:
        """Per block, ``lam_total`` (``N lam``) times :attr:`penalty_weights`: a number, or
        a ``(G_b, 1)`` tensor (one rate per group, broadcast over a block's ``(G_b, K)``
        columns) where the block's groups differ."""
        return [rate_of(lam_total, v) for v in self.penalty_weights]

    def check_mask(self, mask: torch.Tensor, what: str = "mask") -> None:
        """A ``(B, G)`` bool mask, else a ``ValueError``."""
        if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != self.num_groups:
            raise ValueError(
                f"{what} must be a bool tensor of shape (batch, {self.num_groups}), "
                f"got {mask.dtype} {tuple(mask.shape)}"
            )

    def gather(
        self,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        cells: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Validate a minibatch; return per-block ``(B, G_b, d_b)`` inputs, zero where a group
        (``mask``) or a cell (``cells``, ``(B, sum d_g)`` bool, optional) is missing.

        Zero-filling matters: a NaN under a missing group would give NaN gradients even where
        its contribution is masked out.
        """
        if len(xs) != self.num_groups:
            raise ValueError(f"expected {self.num_groups} groups {self.names}, got {len(xs)}")
        self.check_mask(mask)
        for x, name, d in zip(xs, self.names, self.dims):
            if x.shape != (mask.shape[0], d):
                raise ValueError(
                    f"group {name!r}: expected shape ({mask.shape[0]}, {d}), got {tuple(x.shape)}"
                )
        if cells is not None and cells.shape[0] != mask.shape[0]:
            raise ValueError(f"cells has {cells.shape[0]} rows, mask {mask.shape[0]}")
        cell_blocks = self.gather_cells(cells)
        out = []
        for b, block in enumerate(self.blocks):
            x = torch.stack([_pad(xs[g], block.dim, 0.0) for g in block.groups], dim=-2)
            keep = mask[:, list(block.groups)].unsqueeze(-1)
            if cell_blocks is not None:
                keep = keep & cell_blocks[b]
            out.append(torch.where(keep, x, 0.0))
        return out

    def split_cells(self, cells: torch.Tensor | None) -> list[torch.Tensor] | None:
        """An ``(..., sum d_g)`` cell mask as per-group ``(..., d_g)`` masks (``None`` stays
        ``None``: every cell of an observed group observed)."""
        if cells is None:
            return None
        if cells.dtype != torch.bool or cells.shape[-1] != sum(self.dims):
            raise ValueError(
                f"cells must be a bool tensor with {sum(self.dims)} columns (the groups' "
                f"columns side by side), got {cells.dtype} {tuple(cells.shape)}"
            )
        return list(torch.split(cells, list(self.dims), dim=-1))

    def groups_seen(self, cells: torch.Tensor) -> torch.Tensor:
        """``(B, G)`` bool: the groups with at least one observed cell in ``cells``."""
        return torch.stack([c.any(-1) for c in self.split_cells(cells)], dim=-1)

    def gather_cells(self, cells: torch.Tensor | None) -> list[torch.Tensor] | None:
        """An ``(B, sum d_g)`` cell mask as per-block ``(B, G_b, d_b)`` masks, or ``None``
        (a padded column reads as observed: it is zero, which the encoder reads as nothing,
        and the likelihoods leave it out themselves)."""
        per_group = self.split_cells(cells)
        if per_group is None:
            return None
        return [
            torch.stack([_pad(per_group[g], b.dim, True) for g in b.groups], dim=-2)
            for b in self.blocks
        ]

    def unbind(self, b: int, tensor: torch.Tensor) -> list[torch.Tensor]:
        """Block ``b``'s ``(..., G_b, d_b)`` tensor as one ``(..., d_g)`` tensor per group
        (its own columns, without the padding)."""
        block = self.blocks[b]
        parts = tensor.unbind(-2)
        if not block.padded:
            return list(parts)
        return [part[..., :w] for part, w in zip(parts, block.widths)]

    def locate(self, g: int) -> tuple[int, int]:
        """``(block, position)``: the block that holds group ``g`` and its place in it."""
        for b, block in enumerate(self.blocks):
            if g in block.groups:
                return b, block.groups.index(g)
        raise ValueError(f"no group {g} among {self.num_groups}")

    def scatter_unbind(self, per_block: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-block ``(..., G_b, d_b)`` tensors -> per-group ``(..., d_g)`` tensors in the
        user's group order (:meth:`unbind` of each block)."""
        return self.scatter([self.unbind(b, t) for b, t in enumerate(per_block)])

    def scatter(self, per_block: Sequence[Sequence[Any]]) -> list[Any]:
        """Per-block sequences (one item per group of the block) -> a list in group order."""
        out: list[Any] = [None] * self.num_groups
        for block, items in zip(self.blocks, per_block):
            for g, item in zip(block.groups, items):
                out[g] = item
        return out

    def scatter_axis(self, per_block: Sequence[torch.Tensor], dim: int = -2) -> torch.Tensor:
        """Per-block tensors with a group axis ``dim`` -> one tensor in group order."""
        if self._in_order:  # one block holding the groups in the user's order
            return per_block[0]
        device = per_block[0].device
        inverse = self._inverse.get(device)
        if inverse is None:
            inverse = self._inverse[device] = self._inverse[torch.device("cpu")].to(device)
        return torch.cat(list(per_block), dim).index_select(dim, inverse)


def _pad(x: torch.Tensor, width: int, value: float | bool) -> torch.Tensor:
    """``x`` ``(..., d)`` padded with ``value`` to ``(..., width)`` columns."""
    return x if x.shape[-1] == width else pad(x, (0, width - x.shape[-1]), value=value)


def rate_of(lam_total: float, weight: int | Sequence[int]) -> float | torch.Tensor:
    """``lam_total`` times a block's penalty weight (:attr:`Layout.penalty_weights`): a
    number, or a ``(G_b, 1)`` float tensor for per-group weights."""
    if isinstance(weight, (int, float)):
        return lam_total * weight
    return lam_total * torch.tensor(weight, dtype=torch.float32).unsqueeze(-1)
