"""Product of Gaussian experts (eq 6 and footnote 2).

``q(z | x) ∝ p(z) prod_{g in O} q_g(z | x_g)`` with ``p(z) = N(0, I)`` and diagonal experts
``q_g = N(mu_g, Lambda_g^-1)`` is Gaussian in closed form::

    Lambda = 1 + sum_{g in O} Lambda_g
    mu     = Lambda^-1 sum_{g in O} Lambda_g mu_g

A row whose every group is left out falls back to the prior ``N(0, I)``.
"""

from __future__ import annotations

import torch

__all__ = ["product_of_experts"]


def product_of_experts(
    mu: torch.Tensor, precision: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Combine experts with the standard-normal prior expert.

    Parameters
    ----------
    mu, precision : torch.Tensor
        Expert means and (non-negative) diagonal precisions, shape ``(..., G, K)``.
    mask : torch.Tensor
        Bool ``(..., G)``; ``False`` leaves an expert out. Left-out experts may hold any
        finite or non-finite value: they are selected away, never multiplied by zero.

    Returns
    -------
    loc, scale : torch.Tensor
        Mean and standard deviation of the product, shape ``(..., K)``.
    """
    keep = mask.unsqueeze(-1)
    lam = torch.where(keep, precision, 0.0)
    total = 1.0 + lam.sum(-2)
    loc = torch.where(keep, lam * mu, 0.0).sum(-2) / total
    return loc, total.rsqrt()
