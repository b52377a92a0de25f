r"""The hierarchical group-lasso prior on ``Phi_g = [W_g ; V_g^T]`` (eqs 7-8) and its prox.

For each group ``g`` and latent ``j`` (Kyung et al. 2010, the paper's [6])::

    gamma_sq[g, j]  ~ Gamma((m + 1) / 2, rate = lam_total^2 / 2)          (eq 7)
    Phi_g[:, j]     ~ Normal(0, gamma_sq[g, j] * I_m)                     (eq 8)

with ``m`` the rows of ``Phi_g``. Integrating ``gamma_sq`` out gives the group-lasso marginal
``p(Phi_g[:, j]) = c_m(lam_total) exp(-lam_total ||Phi_g[:, j]||_2)``, so MAP estimation of
``Phi`` adds ``-lam_total * sum_{g,j} ||Phi_g[:, j]||_2`` to the objective (eq 9). Its proximal
operator, the group soft-threshold of Algorithm 1, sets whole columns exactly to zero.

Given ``Phi``, the conditional posterior of ``gamma_sq[g, j]`` is a generalised inverse Gaussian
``GIG(p = 1/2, a = lam_total^2, b = ||Phi_g[:, j]||^2)``, whose mode is used as its point value
in prox training.

``lam_total`` is the rate of the full data set; :class:`~pyro_factvae.model.Model` sets it to
``num_data * lam`` so that ``lam`` is the paper's per-example lambda.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

__all__ = [
    "column_norms",
    "prox_group_lasso",
    "gamma_sq_prior",
    "phi_prior",
    "log_marginal",
    "conditional_mode",
]

#: the Gamma rate used when ``lam = 0`` (the flat limit of eq 7; only ever masked out)
_FLAT_RATE = 1e-30


def column_norms(phi: torch.Tensor) -> torch.Tensor:
    """``||Phi[..., :, j]||_2`` for every column ``j``: shape ``phi.shape[:-2] + (K,)``."""
    return torch.linalg.vector_norm(phi, dim=-2)


def prox_group_lasso(phi: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    r"""Group soft-threshold of Algorithm 1 (the prox of ``threshold * sum_j ||Phi_.j||``).

    ``Phi_.j <- Phi_.j / ||Phi_.j|| * max(||Phi_.j|| - threshold, 0)``: columns whose norm is
    at most ``threshold`` become exactly zero, the others shrink toward zero by ``threshold``.
    ``threshold`` is a number or a tensor broadcasting against ``phi.shape[:-2] + (1, K)``
    (one threshold per column).
    """
    if bool(torch.as_tensor(threshold).lt(0).any()):
        raise ValueError("prox threshold must be >= 0")
    norms = column_norms(phi).unsqueeze(-2)
    factor = torch.clamp(1.0 - threshold / norms.clamp_min(1e-30), min=0.0)
    return phi * factor


def gamma_sq_prior(num_rows: int, latent_dim: int, lam_total: float) -> dist.Distribution:
    """``Gamma((m + 1)/2, lam_total^2 / 2)`` for the ``K`` columns of one group (eq 7)."""
    rate = max(0.5 * lam_total**2, _FLAT_RATE)
    return (
        dist.Gamma(torch.tensor(0.5 * (num_rows + 1)), torch.tensor(rate))
        .expand([latent_dim])
        .to_event(1)
    )


def phi_prior(gamma_sq: torch.Tensor, num_rows: int) -> dist.Distribution:
    """``Normal(0, gamma_sq[j] I)`` for each column of one ``(m, K)`` matrix ``Phi_g`` (eq 8)."""
    scale = gamma_sq.sqrt().unsqueeze(-2).expand(*gamma_sq.shape[:-1], num_rows, -1)
    return dist.Normal(torch.zeros_like(scale), scale).to_event(2)


def log_marginal(phi: torch.Tensor, lam_total: float) -> torch.Tensor:
    r"""``log p(Phi_g)`` with ``gamma_sq`` integrated out: ``sum_j log c_m - lam ||Phi_.j||``.

    ``c_m(lam) = lam^m / (2^m pi^((m-1)/2) Gamma((m+1)/2))`` normalises
    ``exp(-lam ||x||)`` on ``R^m``. Requires ``lam_total > 0``.
    """
    if lam_total <= 0:
        raise ValueError("the group-lasso marginal is improper for lam = 0")
    m, k = phi.shape[-2:]
    log_c = (
        m * math.log(lam_total)
        - m * math.log(2.0)
        - 0.5 * (m - 1) * math.log(math.pi)
        - math.lgamma(0.5 * (m + 1))
    )
    return k * log_c - lam_total * column_norms(phi).sum(-1)


def conditional_mode(phi: torch.Tensor, lam_total: float) -> torch.Tensor:
    """Mode of ``p(gamma_sq | Phi)``, a ``GIG(1/2, lam_total^2, ||Phi_.j||^2)``, per column."""
    b = column_norms(phi).square()
    a = lam_total**2
    return b / (0.5 + torch.sqrt(0.25 + a * b))
