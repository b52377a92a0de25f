"""Library sizes of count groups (``FactVAE(library_size=...)``): where a row's depth comes
from, per block of groups, for :meth:`~pyro_factvae.module.model.Model.decode`.

``library_size="data"``: from the row's own seen counts of the group (the decoder then gives
the row's profile: the rates of its seen cells sum to their total, see
:meth:`~pyro_factvae.module.counts.CountLikelihood.depth`); a group name: from that one-column
group of size factors, where it is observed and positive (else from the counts).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["offsets", "offsets_from"]

# ``model`` below is a :class:`~pyro_factvae.module.model.Model` (which calls these): its
# ``layout``, ``likelihoods`` and ``library`` (each group's source of depth) are read


def offsets(
    model: nn.Module,
    blocks: Sequence[torch.Tensor],
    mask: torch.Tensor,
    cell_blocks: Sequence[torch.Tensor] | None = None,
    sources: torch.Tensor | None = None,
) -> list[tuple | None] | None:
    """Per block, what ``Model.decode`` needs for the library sizes of its count groups
    (``library_size``), from per-block values ``(B, G_b, d_b)``, the ``(B, G)`` groups seen
    and per-block cell masks: ``(log totals, seen cells, from the data, given log size
    factors)``. A row's depth comes from the group of size factors it names where that is
    observed (``sources``, default ``mask``: a covariate, not dropped with the encoder's
    inputs) and positive, else from its own seen counts (``"data"``). ``None`` for a block
    without one; ``None`` when no group has one."""
    if all(source is None for source in model.library):
        return None
    out: list[tuple | None] = []
    for b, (block, x, lik) in enumerate(zip(model.layout.blocks, blocks, model.likelihoods)):
        kinds = [model.library[g] for g in block.groups]
        if all(kind is None for kind in kinds):
            out.append(None)
            continue
        seen = mask[:, list(block.groups)].unsqueeze(-1).expand_as(x)
        if cell_blocks is not None:
            seen = seen & cell_blocks[b]
        from_data = torch.tensor([k is not None for k in kinds], device=x.device)
        given = None
        if any(isinstance(k, int) for k in kinds):
            cols = []
            for s in kinds:
                col = torch.full((x.shape[0],), torch.nan, device=x.device)
                if isinstance(s, int):  # a one-column group of size factors
                    sb, pos = model.layout.locate(s)
                    value = blocks[sb][:, pos, 0]
                    ok = (mask if sources is None else sources)[:, s] & (value > 0)
                    col = torch.where(ok, value.clamp(min=1e-12).log(), col)
                cols.append(col)
            given = torch.stack(cols, -1)
        out.append((lik.log_total(x, seen), seen, from_data, given))
    return out


def offsets_from(
    model: nn.Module,
    xs: Sequence[torch.Tensor],
    mask: torch.Tensor,
    cells: torch.Tensor | None = None,
    sources: torch.Tensor | None = None,
) -> list[tuple | None] | None:
    """:func:`offsets` from per-group values ``xs`` (the user's order), a ``(B, G)`` mask
    of the groups given and a ``(B, sum d_g)`` cell mask. ``sources``: a ``(B, G)`` mask of
    the groups whose observed values may serve as size factors besides those of ``mask``
    (a covariate sets the depth of its count groups whether or not the encoder reads it);
    default ``mask``'s alone."""
    if all(source is None for source in model.library):
        return None
    read = mask if sources is None else mask | sources
    blocks = [
        lik.in_support(x, read[:, list(block.groups)].unsqueeze(-1))
        for block, x, lik in zip(
            model.layout.blocks, model.layout.gather(xs, read, cells), model.likelihoods
        )
    ]
    # a count group's own total is read where it is given (``mask``) only
    return offsets(model, blocks, mask, model.layout.gather_cells(cells), sources=read)
