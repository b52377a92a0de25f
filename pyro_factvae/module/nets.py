"""Group encoders and decoders, batched along a group axis.

Groups of one width (or zero-padded to the widest of them: :mod:`pyro_factvae.layout`) form a
*block*; every layer of a block holds one weight matrix per group,
stacked as ``(G_b, in, out)``, and runs as one batched matrix product over the group axis
(:func:`grouped_matmul`). The step time thus grows with the total width of the data, not with
the number of Python-level groups.

Shapes: inputs are ``(..., G_b, in)``; a latent ``z`` is ``(..., K)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..config import ConvSpec

__all__ = [
    "grouped_matmul",
    "BlockDecoder",
    "BlockEncoder",
    "ConvFeatures",
    "ConvGenerator",
    "GroupedLinear",
    "GroupedMLP",
]


def grouped_matmul(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x[..., g, :] @ weight[g] (+ bias[g])`` for ``x`` ``(..., G, i)`` and ``weight``
    ``(G, i, o)``: ``(..., G, o)``. A minibatch ``(B, G, i)`` goes through one ``bmm`` with
    the group axis as its batch (the result is a view in group-major memory, which the next
    grouped product reads without a copy; the same sums as ``einsum``, a third less time on
    the CPU at these sizes); other shapes through ``einsum``."""
    if x.dim() == 3:  # torch.bmm itself: ``@`` adds an expand and two reshapes a call
        out = torch.bmm(x.transpose(0, 1), weight).transpose(0, 1)
    else:
        out = torch.einsum("...gi,gio->...go", x, weight)
    return out if bias is None else out + bias


#: a decoder block of more groups than this lays its first layer's activations out
#: group-major in memory (one copy) before its grouped products: read through a transposed
#: view, the products' weight gradient took a sixth of a step at 256 groups, batch 1024; at 4
#: and 16 groups the copy did not pay (and their products keep their rounding)
GROUP_MAJOR_ABOVE = 16


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
        return grouped_matmul(x, self.weight, self.bias)


class GroupedMLP(nn.Sequential):
    """Grouped linear layers with ReLU between them (and after the last if ``final_relu``).

    ``forward(x, shift)`` adds ``shift`` (``(..., G, sizes[1])``) to the first layer's output,
    before its activation (the encoders' missing-cell term).
    """

    def __init__(self, num_groups: int, sizes: Sequence[int], final_relu: bool = False) -> None:
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(GroupedLinear(num_groups, a, b))
            if i < len(sizes) - 2 or final_relu:
                layers.append(nn.ReLU())
        super().__init__(*layers)

    @property
    def first_width(self) -> int:
        """Width of the first layer's output (where ``shift`` is added)."""
        return self[0].weight.shape[-1]

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        for i, layer in enumerate(self):
            x = layer(x)
            if i == 0 and shift is not None:
                x = x + shift
        return x


class BlockEncoder(nn.Module):
    """Experts ``q_g(z | x_g) = N(mu_g, Lambda_g^-1)`` of one block of groups (sec. 2).

    ``h_g = phi_g(x_g)`` (an MLP ending in ReLU), ``mu_g = h_g M_g + c_g`` and
    ``Lambda_g = |(h_g + b) V_g|``, where ``V_g`` (stored transposed, ``H x K``) is the lower
    part of ``Phi_g`` and is passed in. The baseline ``b`` sits inside the product with
    ``V_g``, so a zero column of ``V_g`` gives exactly zero precision: the group then says
    nothing about that latent.

    **Missing cells.** A group observed in some of its cells is encoded from its zero-filled
    values (in network units: a missing normal feature reads as its training mean) together
    with the indicator of the cells it did not see, as partial VAEs do: the first layer is
    ``[x_g * m_g, 1 - m_g] [A_g ; U_g]``, i.e. the missing cells add the rows of
    :attr:`missing_weight` (``U_g``, ``d_g x H_1``, initialised at zero) to its
    pre-activation. So the expert's mean and precision can both change with what it did not
    see; with every cell observed the term vanishes and the encoder is the paper's.
    For image groups the term enters the last layer of the convolutional body.

    In a padded block (``widths``: each group's own width) a group's first layer starts as
    ``nn.Linear``'s for its own width, and its rows for the padding (inputs that are always
    zero) are zero.
    """

    def __init__(
        self,
        num_groups: int,
        dim: int,
        hidden: Sequence[int],
        latent_dim: int,
        conv: ConvSpec | None = None,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        sizes = [dim, *hidden]
        if conv is None:
            self.features = GroupedMLP(num_groups, sizes, final_relu=True)
            if widths is not None:  # a padded block: each group's first layer as if unpadded
                first = self.features[0]
                with torch.no_grad():
                    for g, w in enumerate(widths):
                        # nn.Linear's init for the group's own fan-in; the padding's rows
                        # read zeros, and zero they stay
                        first.weight[g, :w] *= math.sqrt(dim / w)
                        first.weight[g, w:] = 0.0
                        first.bias[g] *= math.sqrt(dim / w)
        else:  # images: convolutions, then one grouped layer to H = hidden[-1]
            self.features = ConvFeatures(num_groups, conv, sizes[-1])
        self.mean = GroupedLinear(num_groups, sizes[-1], latent_dim)
        first = self.features.first_width
        #: ``U_g``: what a missing cell adds to the first layer's pre-activation
        self.missing_weight = nn.Parameter(torch.zeros(num_groups, dim, first))

    @property
    def width(self) -> int:
        """``H``, the width of ``h_g`` (rows of ``V_g^T`` in ``Phi_g``)."""
        return self.mean.weight.shape[1]

    def forward(
        self,
        x: torch.Tensor,
        v_t: torch.Tensor,
        baseline: torch.Tensor,
        missing: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert means and precisions ``(..., G_b, K)`` of inputs ``x`` (network units,
        zero under missing cells); ``missing``: bool ``(..., G_b, d)``, ``True`` at the
        missing cells of observed groups (``None``: none is missing)."""
        shift = None
        if missing is not None:
            shift = grouped_matmul(missing.to(x.dtype), self.missing_weight)
        h = self.features(x, shift)
        mu = self.mean(h)
        if v_t.dim() == 3:
            precision = grouped_matmul(h + baseline, v_t).abs()
        else:  # V with batch dims (e.g. Phi drawn under pyro.infer.Predictive)
            precision = ((h + baseline).unsqueeze(-2) @ v_t).squeeze(-2).abs()
        return mu, precision


class BlockDecoder(nn.Module):
    """Generators ``f_g(W_g z)`` of one block of groups (eq 5).

    ``a_g = W_g z + c_g`` (``W_g``, ``p x K``, is the upper part of ``Phi_g`` and is passed in),
    then ``ReLU`` and an MLP to the group's ``d_g`` outputs. In a padded block (``widths``:
    each group's own width) the outputs past a group's width are held at exactly zero: their
    weights start at zero and nothing moves them (the likelihoods do not score them, and the
    ``N(0, 1)`` prior's gradient at zero is zero); :attr:`held_zero` counts them.
    """

    def __init__(
        self,
        num_groups: int,
        dim: int,
        width: int,
        hidden: Sequence[int],
        conv: ConvSpec | None = None,
        widths: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(width)
        self.shift = nn.Parameter(torch.empty(num_groups, width).uniform_(-bound, bound))
        #: how many parameters of the padding's outputs are held at zero (not the model's)
        self.held_zero = 0
        if conv is None:
            body: nn.Module = GroupedMLP(num_groups, [width, *hidden, dim])
            if widths is not None:
                last = body[-1]
                with torch.no_grad():
                    for g, w in enumerate(widths):
                        last.weight[g, :, w:] = 0.0
                        last.bias[g, w:] = 0.0
                        self.held_zero += (last.weight.shape[1] + 1) * (dim - w)
        else:  # images: transposed convolutions (hidden widths are not used)
            body = ConvGenerator(num_groups, width, conv)
        self.net = nn.Sequential(nn.ReLU(), body)

    def forward(self, z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if w.dim() == 3:
            g, p, k = w.shape  # every group's W_g z in one product
            a = (z @ w.reshape(g * p, k).T).unflatten(-1, (g, p)) + self.shift
            if a.dim() == 3 and g > GROUP_MAJOR_ABOVE:  # group-major, as the products read it
                a = a.transpose(0, 1).contiguous().transpose(0, 1)
        else:  # W with batch dims (e.g. Phi drawn under pyro.infer.Predictive)
            a = (w @ z[..., None, :, None]).squeeze(-1) + self.shift
        return self.net(a)

    def prior_parameters(self) -> list[nn.Parameter]:
        """Parameters of ``f_g`` under the ``N(0, 1)`` prior against rescaling (sec. 2)."""
        return list(self.net.parameters())


# ---------------------------------------------------------------------- convolutional groups
def _grouped_images(x: torch.Tensor, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Size]:
    """``(..., G, C*H*W)`` -> ``(N, G*C, H, W)`` (group-major channels) and the leading shape."""
    lead = x.shape[:-2]
    return x.reshape(-1, x.shape[-2] * shape[0], shape[1], shape[2]), lead


class ConvFeatures(nn.Module):
    """Grouped DCGAN discriminator body: ``n`` stride-2 4x4 convolutions (ReLU), then a grouped
    linear map to ``out`` features with a final ReLU. ``(..., G, C*H*W) -> (..., G, out)``."""

    def __init__(self, num_groups: int, spec: ConvSpec, out: int) -> None:
        super().__init__()
        self.spec, self.num_groups = spec, num_groups
        c, layers = spec.image_shape[0], []
        for i in range(spec.layers):
            width = spec.width * 2**i
            layers += [
                nn.Conv2d(num_groups * c, num_groups * width, 4, 2, 1, groups=num_groups),
                nn.ReLU(),
            ]
            c = width
        self.convs = nn.Sequential(*layers)
        self.head = nn.Sequential(GroupedLinear(num_groups, c * 16, out), nn.ReLU())

    @property
    def first_width(self) -> int:
        """Width of the layer where ``shift`` is added (the last one)."""
        return self.head[0].weight.shape[-1]

    def forward(self, x: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        images, lead = _grouped_images(x, self.spec.image_shape)
        h = self.head[0](self.convs(images).reshape(*lead, self.num_groups, -1))
        return self.head[1](h if shift is None else h + shift)


class ConvGenerator(nn.Module):
    """Grouped DCGAN generator: a grouped linear map to ``4 x 4`` feature maps (ReLU), then
    ``n`` stride-2 4x4 transposed convolutions (ReLU between).

    ``(..., G, in) -> (..., G, C*H*W)``.
    """

    def __init__(self, num_groups: int, in_features: int, spec: ConvSpec) -> None:
        super().__init__()
        self.spec, self.num_groups = spec, num_groups
        width = spec.width * 2 ** (spec.layers - 1)
        self.width = width
        self.head = nn.Sequential(GroupedLinear(num_groups, in_features, width * 16), nn.ReLU())
        layers: list[nn.Module] = []
        for i in reversed(range(spec.layers)):
            out = spec.image_shape[0] if i == 0 else spec.width * 2 ** (i - 1)
            layers.append(
                nn.ConvTranspose2d(num_groups * width, num_groups * out, 4, 2, 1, groups=num_groups)
            )
            if i > 0:
                layers.append(nn.ReLU())
            width = out
        self.deconvs = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        h = self.head(a)
        lead = h.shape[:-2]
        maps = h.reshape(-1, self.num_groups * self.width, 4, 4)
        return self.deconvs(maps).reshape(*lead, self.num_groups, self.spec.dim)
