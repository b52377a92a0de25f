"""The ``categorical`` family: a group that is one class label, one-hot over its columns
(registered with :data:`~pyro_factvae.registry.LIKELIHOODS`; the other families are in
:mod:`~pyro_factvae.module.likelihoods` and :mod:`~pyro_factvae.module.counts`)."""

from __future__ import annotations

import pyro.distributions as dist
import torch

from ..registry import LIKELIHOODS
from .likelihoods import Likelihood

__all__ = ["CategoricalLikelihood"]


@LIKELIHOODS.register("categorical")
class CategoricalLikelihood(Likelihood):
    """``x ~ OneHotCategorical(logits=out)``: the group is one class label, one-hot over its
    ``d_g`` columns (e.g. a label group for semi-supervised learning; a missing label is a
    missing group). Needs ``d_g >= 2``."""

    holds = False  # one label: held column by column, a class never seen would be no class

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        """One label per group: it is observed whole (``cells`` plays no part; a partly
        observed one-hot is refused by
        :meth:`~pyro_factvae.module.likelihoods.Likelihood.check`)."""
        return [dist.OneHotCategorical(logits=out[..., i, :]) for i in range(out.shape[-2])]

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return torch.softmax(out, dim=-1)

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        return (x * torch.log_softmax(out, dim=-1)).sum(-1)

    @classmethod
    def variables(cls, dim: int) -> int:
        """One label, whatever the number of classes."""
        return 1

    @staticmethod
    def in_support(x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """Missing labels become class 0 (one-hot), a valid value for the masked site."""
        first = torch.zeros(x.shape[-1], dtype=x.dtype, device=x.device)
        first[0] = 1.0
        return torch.where(observed, x, first)

    @classmethod
    def check(
        cls, name: str, x: torch.Tensor, observed: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        if x.shape[-1] < 2:
            raise ValueError(
                f"group {name!r} has the 'categorical' likelihood but {x.shape[-1]} column; "
                "give one column per class (one-hot)"
            )
        if cells is not None:
            partial = (observed & ~cells.all(-1)).nonzero().squeeze(-1)
            if len(partial):
                raise ValueError(
                    f"group {name!r} has the 'categorical' likelihood, whose one-hot label is "
                    f"one cell, but rows {partial[:5].tolist()} have only some of its columns "
                    "empty; leave all its columns empty where the label is missing, or fill "
                    "them all"
                )
        bad = (((x != 0) & (x != 1)).any(-1) | (x.sum(-1) != 1)) & observed
        if bool(bad.any()):
            rows = bad.nonzero().squeeze(-1)[:5].tolist()
            zeros = bool((((x == 0).all(-1)) & observed).any())
            raise ValueError(
                f"group {name!r} has the 'categorical' likelihood but rows {rows} are not "
                "one-hot (exactly one 1, the rest 0); encode the labels one-hot"
                + (
                    " (a row of all 0, what pandas.get_dummies gives a missing label, is no "
                    "label: mark a missing label with NaN in all its columns)"
                    if zeros
                    else ""
                )
            )
