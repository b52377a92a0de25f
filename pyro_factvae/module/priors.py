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
in prox training. Equivalently ``1 / gamma_sq`` is inverse Gaussian with mean
``lam_total / ||Phi_g[:, j]||`` and shape ``lam_total^2`` (as in the Bayesian lasso, Park &
Casella 2008, sec. 2; Kyung et al. 2010 for the group version); :func:`conditional_sample`
draws from it exactly.

``lam_total`` is the rate of the full data set, ``num_data * lam``
(``ModelConfig.lam_total``), so that ``lam`` is the paper's per-example
lambda.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch

__all__ = [
    "column_norms",
    "prox_group_lasso",
    "prox_factor",
    "gamma_sq_prior",
    "phi_prior",
    "log_marginal",
    "conditional_mode",
    "conditional_sample",
]

#: the Gamma rate used when ``lam = 0`` (the flat limit of eq 7; only ever masked out)
_FLAT_RATE = 1e-30


def column_norms(phi: torch.Tensor) -> torch.Tensor:
    """``||Phi[..., :, j]||_2`` for every column ``j``: shape ``phi.shape[:-2] + (K,)``."""
    return torch.linalg.vector_norm(phi, dim=-2)


def prox_group_lasso(
    phi: torch.Tensor, threshold: float | torch.Tensor, check: bool = True
) -> torch.Tensor:
    r"""Group soft-threshold of Algorithm 1 (the prox of ``threshold * sum_j ||Phi_.j||``).

    ``Phi_.j <- Phi_.j / ||Phi_.j|| * max(||Phi_.j|| - threshold, 0)``: columns whose norm is
    at most ``threshold`` become exactly zero, the others shrink toward zero by ``threshold``.
    ``threshold`` is a number or a tensor broadcasting against ``phi.shape[:-2] + (1, K)``
    (one threshold per column). ``check=False`` skips the test that ``threshold >= 0``: for a
    tensor it reads the threshold back to the host, which
    :class:`~pyro_factvae.infer.optim.ProximalOptim` (whose
    thresholds are ``>= 0`` by construction) does not pay on every step.
    """
    if check and bool(torch.as_tensor(threshold).lt(0).any()):
        raise ValueError("prox threshold must be >= 0")
    return phi * prox_factor(phi, threshold)


def prox_factor(phi: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """The factor ``max(||Phi_.j|| - threshold, 0) / ||Phi_.j||`` of each column, shaped
    ``phi.shape[:-2] + (1, K)`` (a zero column's: 0, or 1 at a zero threshold; it stays
    zero): :func:`prox_group_lasso` is ``phi`` times it (an optimizer applies it in place)."""
    norms = column_norms(phi).unsqueeze(-2)
    return torch.clamp(1.0 - threshold / norms.clamp_min(1e-30), min=0.0)


def gamma_sq_prior(
    num_rows: int, latent_dim: int, lam_total: float, device: torch.device | str | None = None
) -> dist.Distribution:
    """``Gamma((m + 1)/2, lam_total^2 / 2)`` for the ``K`` columns of one group (eq 7), with
    its parameters on ``device`` (the model's; default: torch's default device)."""
    rate = max(0.5 * lam_total**2, _FLAT_RATE)
    return (
        dist.Gamma(
            torch.tensor(0.5 * (num_rows + 1), device=device), torch.tensor(rate, device=device)
        )
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


def conditional_mode(phi: torch.Tensor, lam_total: float | torch.Tensor) -> torch.Tensor:
    """Mode of ``p(gamma_sq | Phi)``, a ``GIG(1/2, lam_total^2, ||Phi_.j||^2)``, per column
    (``lam_total``: a number, or a tensor that broadcasts against the ``(..., K)`` columns,
    e.g. one rate per group of a padded block)."""
    b = column_norms(phi).square()
    a = torch.as_tensor(lam_total, dtype=b.dtype).to(b.device) ** 2
    return b / (0.5 + torch.sqrt(0.25 + a * b))


def _inverse_gaussian(mean: torch.Tensor, shape: torch.Tensor, generator=None) -> torch.Tensor:
    """Exact inverse-Gaussian draws (Michael, Schucany & Haas 1976), stable for large means."""
    nu = torch.randn(mean.shape, generator=generator, dtype=mean.dtype)
    r = mean * nu.square() / (2 * shape)
    # mean * (1 + r - sqrt(r^2 + 2 r)), written without cancellation
    x = mean / (1 + r + torch.sqrt(r.square() + 2 * r))
    u = torch.rand(mean.shape, generator=generator, dtype=mean.dtype)
    return torch.where(u <= mean / (mean + x), x, mean.square() / x)


def conditional_sample(
    phi: torch.Tensor,
    lam_total: float,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Draws of ``gamma_sq`` from its exact conditional posterior given ``Phi``, per column.

    With ``gamma_sq ~ Gamma((m+1)/2, lam^2/2)`` and ``Phi_.j | gamma_sq ~ N(0, gamma_sq I_m)``,

    .. math::
        p(\gamma^2 \mid \Phi_{\cdot j}) \propto (\gamma^2)^{-1/2}
        \exp\{-(\lambda^2 \gamma^2 + \|\Phi_{\cdot j}\|^2 / \gamma^2) / 2\},

    i.e. ``GIG(1/2, lam^2, ||Phi_.j||^2)``, so ``1 / gamma_sq ~ InverseGaussian(mean =
    lam / ||Phi_.j||, shape = lam^2)`` (Park & Casella 2008). A zero column (pruned by the prox)
    gives ``gamma_sq ~ Gamma(1/2, lam^2 / 2)``, the limit ``||Phi_.j|| -> 0``.

    Parameters
    ----------
    phi : torch.Tensor
        ``(..., m, K)``.
    lam_total : float or torch.Tensor
        The full-data rate ``N * lam`` (> 0); a tensor broadcasts against ``(..., K)`` (one
        rate per group of a padded block).
    num_samples : int
        Draws per column.
    generator : torch.Generator, optional
        Source of the draws (default: the global RNG).

    Returns
    -------
    torch.Tensor
        ``(num_samples, ..., K)`` draws of ``gamma_sq`` (float64).
    """
    lam = torch.as_tensor(lam_total, dtype=torch.float64).cpu()
    if not bool((lam > 0).all()):
        raise ValueError("the conditional of gamma_sq is improper for lam = 0; use lam > 0")
    norms = column_norms(phi.detach()).double()
    norms = norms.expand(num_samples, *norms.shape)
    lam = lam.expand_as(norms)
    zero = norms == 0
    mean = lam / torch.where(zero, 1.0, norms)
    inv = _inverse_gaussian(mean, lam.square().expand_as(mean), generator)
    # Gamma(1/2, 1) is exactly N(0, 1)^2 / 2; then rate lam^2 / 2
    half_chi2 = torch.randn(norms.shape, generator=generator, dtype=torch.float64).square() / 2
    flat = half_chi2 / (0.5 * lam.square())
    return torch.where(zero, flat, 1.0 / inv)
