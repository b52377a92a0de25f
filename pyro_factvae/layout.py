"""The groups' layout: names, widths, likelihoods, and the blocks of equal-shaped groups
whose networks run as one batched call. The block <-> group mapping is written here once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .registry import LIKELIHOODS

__all__ = ["Block", "Layout"]


@dataclass(frozen=True)
class Block:
    """Groups of equal width and likelihood, computed together along a group axis."""

    groups: tuple[int, ...]
    dim: int
    likelihood: str


@dataclass(frozen=True)
class Layout:
    """Names, widths and likelihoods of the groups, and their blocks.

    Groups of equal width and likelihood form a :class:`Block` whose networks run as one
    batched call; :meth:`gather` and :meth:`scatter` move between the user's group order and
    the blocks, the only place that mapping is written.

    Parameters
    ----------
    names : sequence of str
        Group names in the user's order.
    dims : sequence of int
        Features per group.
    likelihoods : sequence of str
        Likelihood name per group (see :mod:`pyro_factvae.module.likelihoods`).
    """

    names: tuple[str, ...]
    dims: tuple[int, ...]
    likelihoods: tuple[str, ...]
    blocks: tuple[Block, ...] = field(init=False)

    def __post_init__(self) -> None:
        names, dims, liks = tuple(self.names), tuple(self.dims), tuple(self.likelihoods)
        if not (len(names) == len(dims) == len(liks)):
            raise ValueError("names, dims and likelihoods must have one entry per group")
        for lik in liks:
            LIKELIHOODS.get(lik)
        keys: dict[tuple[int, str], list[int]] = {}
        for g, key in enumerate(zip(dims, liks)):
            keys.setdefault(key, []).append(g)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "likelihoods", liks)
        object.__setattr__(
            self, "blocks", tuple(Block(tuple(g), d, lk) for (d, lk), g in keys.items())
        )
        # block order -> group order, per device (made once: scatter_axis runs every step)
        order = torch.tensor([g for b in self.blocks for g in b.groups])
        object.__setattr__(self, "_inverse", {torch.device("cpu"): torch.argsort(order)})

    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def penalty_weights(self) -> tuple[int, ...]:
        """Per block, the number of variables of each of its groups (the likelihood's
        ``variables(dim)``): a link of that group is penalised by ``lam`` times this."""
        return tuple(LIKELIHOODS.get(b.likelihood).variables(b.dim) for b in self.blocks)

    def penalty_rates(self, lam_total: float) -> list[float]:
        """Per block, ``lam_total`` (``N lam``) times :attr:`penalty_weights`."""
        return [lam_total * v for v in self.penalty_weights]

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
            x = torch.stack([xs[g] for g in block.groups], dim=-2)
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
        """An ``(B, sum d_g)`` cell mask as per-block ``(B, G_b, d_b)`` masks, or ``None``."""
        per_group = self.split_cells(cells)
        if per_group is None:
            return None
        return [torch.stack([per_group[g] for g in b.groups], dim=-2) for b in self.blocks]

    def locate(self, g: int) -> tuple[int, int]:
        """``(block, position)``: the block that holds group ``g`` and its place in it."""
        for b, block in enumerate(self.blocks):
            if g in block.groups:
                return b, block.groups.index(g)
        raise ValueError(f"no group {g} among {self.num_groups}")

    def scatter(self, per_block: Sequence[Sequence[Any]]) -> list[Any]:
        """Per-block sequences (one item per group of the block) -> a list in group order."""
        out: list[Any] = [None] * self.num_groups
        for block, items in zip(self.blocks, per_block):
            for g, item in zip(block.groups, items):
                out[g] = item
        return out

    def scatter_axis(self, per_block: Sequence[torch.Tensor], dim: int = -2) -> torch.Tensor:
        """Per-block tensors with a group axis ``dim`` -> one tensor in group order."""
        if len(per_block) == 1:
            return per_block[0]
        device = per_block[0].device
        inverse = self._inverse.get(device)
        if inverse is None:
            inverse = self._inverse[device] = self._inverse[torch.device("cpu")].to(device)
        return torch.cat(list(per_block), dim).index_select(dim, inverse)
