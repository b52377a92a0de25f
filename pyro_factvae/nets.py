"""Group encoders and decoders, batched along a group axis.

Groups of equal width form a *block*; every layer of a block holds one weight matrix per group,
stacked as ``(G_b, in, out)``, and runs as one einsum over the group axis. The step time thus
grows with the total width of the data, not with the number of Python-level groups.

Shapes: inputs are ``(..., G_b, in)``; a latent ``z`` is ``(..., K)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["GroupedLinear", "GroupedMLP", "BlockEncoder", "BlockDecoder"]


class GroupedLinear(nn.Module):
    """``G`` independent linear maps ``y[..., g, :] = x[..., g, :] @ weight[g] + bias[g]``."""

    def __init__(self, num_groups: int, in_features: int, out_features: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default init, per group
        self.weight = nn.Parameter(
            torch.empty(num_groups, in_features, out_features).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(num_groups, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...gi,gio->...go", x, self.weight) + self.bias


class GroupedMLP(nn.Sequential):
    """Grouped linear layers with ReLU between them (and after the last if ``final_relu``)."""

    def __init__(self, num_groups: int, sizes: Sequence[int], final_relu: bool = False) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(GroupedLinear(num_groups, a, b))
            if i < len(sizes) - 2 or final_relu:
                layers.append(nn.ReLU())
        super().__init__(*layers)


class BlockEncoder(nn.Module):
    """Experts ``q_g(z | x_g) = N(mu_g, Lambda_g^-1)`` of one block of groups (sec. 2).

    ``h_g = phi_g(x_g)`` (an MLP ending in ReLU), ``mu_g = h_g M_g + c_g`` and
    ``Lambda_g = |(h_g + b) V_g|``, where ``V_g`` (stored transposed, ``H x K``) is the lower
    part of ``Phi_g`` and is passed in. The baseline ``b`` sits inside the product with
    ``V_g``, so a zero column of ``V_g`` gives exactly zero precision: the group then says
    nothing about that latent.
    """

    def __init__(self, num_groups: int, dim: int, hidden: Sequence[int], latent_dim: int) -> None:
        super().__init__()
        sizes = [dim, *hidden]
        self.features = GroupedMLP(num_groups, sizes, final_relu=True)
        self.mean = GroupedLinear(num_groups, sizes[-1], latent_dim)

    @property
    def width(self) -> int:
        """``H``, the width of ``h_g`` (rows of ``V_g^T`` in ``Phi_g``)."""
        return self.mean.weight.shape[1]

    def forward(
        self, x: torch.Tensor, v_t: torch.Tensor, baseline: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x)
        mu = self.mean(h)
        precision = torch.einsum("...gh,ghk->...gk", h + baseline, v_t).abs()
        return mu, precision


class BlockDecoder(nn.Module):
    """Generators ``f_g(W_g z)`` of one block of groups (eq 5).

    ``a_g = W_g z + c_g`` (``W_g``, ``p x K``, is the upper part of ``Phi_g`` and is passed in),
    then ``ReLU`` and an MLP to the group's ``d_g`` outputs.
    """

    def __init__(self, num_groups: int, dim: int, width: int, hidden: Sequence[int]) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(width)
        self.shift = nn.Parameter(torch.empty(num_groups, width).uniform_(-bound, bound))
        self.net = nn.Sequential(nn.ReLU(), GroupedMLP(num_groups, [width, *hidden, dim]))

    def forward(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        a = torch.einsum("...k,gpk->...gp", z, w) + self.shift
        return self.net(a)

    def prior_parameters(self) -> list[nn.Parameter]:
        """Parameters of ``f_g`` under the ``N(0, 1)`` prior against rescaling (sec. 2)."""
        return list(self.net.parameters())
