"""The self-normalised importance weights of the encoder's proposals (or of any proposal
``q(z | x_O)``): the weighting behind predictive means, draws and refinement."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .library import offsets_from
from .likelihoods import with_cells
from .model import Model

__all__ = ["ImportanceWeights"]


class ImportanceWeights:
    """``log p(x_O | z) + log p(z) - log q(z | x_O)`` of draws ``z``: the self-normalised
    importance weights of the encoder's proposals, over the observed cells of the groups in
    ``mask`` (``cells``: the ``(B, sum d_g)`` cell mask of ``xs``, or ``None``; ``sources``:
    groups whose observed values may serve as size factors besides ``mask``'s,
    :func:`~pyro_factvae.module.library.offsets_from`)."""

    def __init__(
        self,
        model: Model,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        cells: torch.Tensor | None,
        sources: torch.Tensor | None = None,
    ) -> None:
        layout = model.layout
        self.model, self.mask = model, mask
        self.blocks = [
            lik.in_support(x, mask[:, list(b.groups)].unsqueeze(-1))
            for b, x, lik in zip(layout.blocks, layout.gather(xs, mask, cells), model.likelihoods)
        ]
        cell_blocks = layout.gather_cells(cells)
        self.cells = cell_blocks or [None] * len(self.blocks)
        #: the rows' library-size offsets (``None`` without count groups that take one)
        self.offsets = offsets_from(model, xs, mask, cells, sources)
        self.prior = torch.distributions.Normal(torch.zeros((), device=mask.device), 1.0)

    def __call__(self, q, z: torch.Tensor, outs: Sequence[torch.Tensor]) -> torch.Tensor:
        """Log-weights ``(..., B)`` of ``z ~ q`` whose decoder outputs are ``outs``."""
        model = self.model
        ll = model.layout.scatter_axis(
            [
                with_cells(lik.log_prob, out, x, cells=c)
                for out, x, c, lik in zip(outs, self.blocks, self.cells, model.likelihoods)
            ],
            dim=-1,
        )
        prior = self.prior.log_prob(z).sum(-1)
        return prior - q.log_prob(z) + ll.where(self.mask, 0.0).sum(-1)
