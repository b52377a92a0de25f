"""What the model, the guide and the trainer need of each pluggable part
(:mod:`pyro_factvae.registry`), as :class:`typing.Protocol` s.

A new part is one module with a class that satisfies its protocol and one registry line:

- :class:`LikelihoodFamily` (``LIKELIHOODS``): an observation family for a block of groups of
  one width. The model scores and samples with ``dists`` / ``log_prob``, imputes with
  ``mean``; the guide reads ``to_network``; the estimator checks data with ``check`` and
  reports standardized errors with ``units``. :class:`~pyro_factvae.module.likelihoods.Likelihood`
  gives defaults for all but ``dists`` and ``mean``.
- :class:`Experts` (``EXPERTS``): how the groups' Gaussian experts combine into ``q(z | x_I)``,
  and what a training step passes to the model and guide (``expands_rows``: whether a row
  becomes several, as the JMVAE+ mixture's one row per expert).
- :class:`PhiPosterior` (``PHI_POSTERIORS``): a posterior over the global sites ``Phi`` and
  ``gamma_sq``. The trainer reads ``collapsed`` (a point mass: the prox step of Algorithm 1
  applies and the collapsed objective trains it) and ``objective`` (the name of its training
  objective in ``OBJECTIVES``); its phase in a fit's plan is the posterior's name.

The tests check every registered part against its protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Experts", "LikelihoodFamily", "PhiPosterior"]


@runtime_checkable
class LikelihoodFamily(Protocol):
    """An observation family (see :class:`~pyro_factvae.module.likelihoods.Likelihood`)."""

    name: str
    #: whether it is a count family, which takes library sizes (``library_size=``) and
    #: gives ``log_total`` and ``depth`` (see :class:`~pyro_factvae.module.counts.CountLikelihood`)
    counts: bool
    #: whether groups of different widths may share a zero-padded block (its ``dists`` then
    #: cut group ``i`` to ``widths[i]`` columns and its sums leave out the padding; see
    #: :class:`~pyro_factvae.module.likelihoods.Likelihood`)
    paddable: bool
    #: whether features constant in the training data are held at their value (buffers
    #: ``held``, ``held_value``, set by :mod:`~pyro_factvae.module.held`); ``False`` for a
    #: family whose columns are not free one by one (a one-hot label, a composition)
    holds: bool

    def hold(self, means: torch.Tensor) -> torch.Tensor:
        """``means`` with the held features at their value."""

    def draw(self, out: torch.Tensor) -> list[torch.Tensor]:
        """A draw of every group given decoder outputs, held features at their value."""

    def dists(self, out: torch.Tensor, cells: torch.Tensor | None = None) -> list[Any]:
        """Per-group distributions given decoder outputs ``(..., G_b, d)``."""

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        """The observations' mean given decoder outputs."""

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``log p(x_g | out_g)`` per group, ``(..., G_b)``."""

    def check(self, name: str, x: torch.Tensor, observed: torch.Tensor, cells: Any = None) -> None:
        """A ``ValueError`` for observed values outside the support."""

    def variables(self, dim: int) -> int:
        """Variables in a group of ``dim`` columns (the group-lasso weight per link)."""

    def init_from_data(self, xs: list[torch.Tensor], observed: list[torch.Tensor]) -> None:
        """Data-dependent initialisation."""

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        """Values in the units the encoders read."""

    def units(self) -> torch.Tensor:
        """``(G_b, d)`` units of standardized errors."""

    def constant(self) -> torch.Tensor:
        """``(G_b, d)`` bool: features constant in the training data."""

    def keep_varying(
        self, xs: list[torch.Tensor], observed: list[torch.Tensor], ranges: list[Any]
    ) -> None:
        """Features held constant that vary in these data (or hold another value) are freed."""

    def in_support(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """``x`` with in-support values under missing rows."""


@runtime_checkable
class Experts(Protocol):
    """A combination of the groups' experts (see :mod:`~pyro_factvae.module.experts`)."""

    expands_rows: bool

    def training_args(
        self,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        keep: torch.Tensor,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> tuple[tuple, dict]:
        """Model and guide arguments of one training step."""

    def posterior(self, mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor) -> Any:
        """``q(z | x_I)``, batch ``(B,)`` and event ``(K,)``."""


@runtime_checkable
class PhiPosterior(Protocol):
    """A posterior over ``Phi`` and ``gamma_sq`` (see :mod:`~pyro_factvae.module.posteriors`)."""

    collapsed: bool
    objective: str

    def sample(
        self, layout: Any, phis: Sequence[torch.Tensor], lam_totals: Sequence[float | torch.Tensor]
    ) -> list:
        """Emit the ``gamma_sq`` and ``Phi`` sites; ``Phi`` stacked per block."""

    def start(
        self, phis: Sequence[torch.Tensor], lam_totals: Sequence[float | torch.Tensor]
    ) -> None:
        """Start the posterior at the point ``phis``."""

    def draws(
        self,
        phis: Sequence[torch.Tensor],
        lam_totals: Sequence[float | torch.Tensor],
        num_draws: int,
        generator: torch.Generator,
        active_factor: float,
    ) -> list:
        """Per block, ``(column norms, gamma_sq, active)`` draws."""
