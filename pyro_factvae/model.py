"""The factVAE generative model (the guide is in :mod:`pyro_factvae.guide`).

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data"
(2018). Equation numbers refer to that paper.

Sites (stable names, usable with ``poutine.condition`` / ``block`` / ``replay``):

========================  ==========================================================
``gamma_sq_<g>``          ``(K,)`` group-lasso scales of group ``g`` (eq 7)
``Phi_<g>``               ``(m, K)`` matrix ``[W_g ; V_g^T]`` of group ``g`` (eq 8)
``theta_prior``           factor: ``N(0, 1)`` prior on the generator networks (sec. 2)
``z``                     ``(K,)`` latent of each row, in plate ``data`` (eq 4)
``x_<g>``                 ``(d_g,)`` observations of group ``g``, masked where missing (eq 5)
========================  ==========================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from . import likelihoods
from .nets import BlockDecoder, ConvSpec
from .priors import gamma_sq_prior, phi_prior

__all__ = ["INFERENCE", "PHI_INFERENCE", "Layout", "Model"]

_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
#: ways the guide's experts combine: product (factVAE) or uniform mixture (JMVAE+)
INFERENCE = ("poe", "mixture")
#: inference over the global sites: prox-MAP (Algorithm 1) or mean-field variational
PHI_INFERENCE = ("prox", "variational")


@dataclass(frozen=True)
class Block:
    """Groups of equal width and likelihood, computed together along a group axis."""

    groups: tuple[int, ...]
    dim: int
    likelihood: str


@dataclass(frozen=True)
class Layout:
    """Names, widths and likelihoods of the groups, and their blocks.

    Parameters
    ----------
    names : sequence of str
        Group names in the user's order.
    dims : sequence of int
        Features per group.
    likelihoods : sequence of str
        Likelihood name per group (see :mod:`pyro_factvae.likelihoods`).
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
            likelihoods.get(lik)
        keys: dict[tuple[int, str], list[int]] = {}
        for g, key in enumerate(zip(dims, liks)):
            keys.setdefault(key, []).append(g)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "dims", dims)
        object.__setattr__(self, "likelihoods", liks)
        object.__setattr__(
            self, "blocks", tuple(Block(tuple(g), d, lk) for (d, lk), g in keys.items())
        )

    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def order(self) -> list[int]:
        """Group indices in block order (blocks concatenated)."""
        return [g for b in self.blocks for g in b.groups]


def _check_mask(layout: Layout, mask: torch.Tensor, what: str = "mask") -> None:
    if mask.dtype != torch.bool or mask.dim() != 2 or mask.shape[1] != layout.num_groups:
        raise ValueError(
            f"{what} must be a bool tensor of shape (batch, {layout.num_groups}), "
            f"got {mask.dtype} {tuple(mask.shape)}"
        )


def _stack_blocks(
    layout: Layout, xs: Sequence[torch.Tensor], mask: torch.Tensor
) -> list[torch.Tensor]:
    """Validate a minibatch; return per-block ``(B, G_b, d_b)`` inputs, zero where missing.

    Zero-filling matters: a NaN under a missing group would give NaN gradients even where
    its contribution is masked out.
    """
    if len(xs) != layout.num_groups:
        raise ValueError(f"expected {layout.num_groups} groups {layout.names}, got {len(xs)}")
    _check_mask(layout, mask)
    for x, name, d in zip(xs, layout.names, layout.dims):
        if x.shape != (mask.shape[0], d):
            raise ValueError(
                f"group {name!r}: expected shape ({mask.shape[0]}, {d}), got {tuple(x.shape)}"
            )
    out = []
    for block in layout.blocks:
        x = torch.stack([xs[g] for g in block.groups], dim=-2)
        keep = mask[:, list(block.groups)].unsqueeze(-1)
        out.append(torch.where(keep, x, 0.0))
    return out


class Model(PyroModule):
    r"""The factVAE generative model (eqs 4-8).

    For every group ``g`` and latent ``j`` and every row ``i``::

        gamma_sq_g[j] ~ Gamma((m + 1)/2, (N lam)^2 / 2)                 # eq 7
        Phi_g[:, j]   ~ Normal(0, gamma_sq_g[j] I_m),  Phi_g = [W_g ; V_g^T]   # eq 8
        theta_f       ~ Normal(0, (N tau)^-1 I)        # generator nets, sec. 2
        z_i           ~ Normal(0, I_K)                 # eq 4
        x_i^(g)       ~ lik_g(f_g(W_g z_i))   for the observed groups of row i   # eq 5

    ``m = p + H`` stacks the decoder's ``p x K`` latent-to-group matrix ``W_g`` over the
    ``H x K`` transpose of the encoder's precision matrix ``V_g``; the guide reads ``V_g`` from
    the same ``Phi_g``, so one group-lasso prior couples encoder and decoder sparsity.
    ``N = num_data`` (or the batch size) makes ``lam`` and ``tau`` per-example weights: the
    log joint divided by ``N`` is the paper's eq 9 averaged over rows.

    Parameters
    ----------
    layout : Layout
        Group names, widths and likelihoods.
    latent_dim : int
        ``K``.
    encoder_width : int
        ``H``, width of the encoder features ``h_g`` (rows of ``V_g^T`` in ``Phi_g``).
    decoder_width : int
        ``p``, rows of ``W_g``.
    decoder_hidden : sequence of int
        Hidden widths of ``f_g`` after ``ReLU(W_g z + c_g)`` (MLP generators only).
    lam : float
        Per-example group-lasso weight (``>= 0``).
    num_data : int, optional
        ``N``, the data-set size: minibatches are scaled by ``N / batch`` (``pyro.plate``).
    theta_prior_weight : float
        Per-example weight ``tau`` of the ``N(0, 1)`` log-prior on the generator networks
        ``f_g`` (the paper uses 1; 0 switches it off).
    conv : ConvSpec, optional
        Image groups: DCGAN-style grouped convolutional encoders and generators
        (:class:`~pyro_factvae.nets.ConvSpec`) instead of MLPs; every group must be an image
        of ``conv.image_shape``.
    group_weight : sequence of float, optional
        A weight per group on its log-likelihood (``poutine.scale`` on ``x_<g>``), e.g. to
        make a small label group count in semi-supervised use (the ``alpha`` of Kingma et
        al. 2014). Default: all 1, the paper's model.
    """

    def __init__(
        self,
        layout: Layout,
        latent_dim: int,
        encoder_width: int,
        decoder_width: int,
        decoder_hidden: Sequence[int] = (),
        lam: float = 1.0,
        num_data: int | None = None,
        theta_prior_weight: float = 1.0,
        name: str = "",
        conv: ConvSpec | None = None,
        group_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__(name)
        if group_weight is not None and len(group_weight) != layout.num_groups:
            raise ValueError(f"give one group_weight per group ({layout.num_groups})")
        self.group_weight = None if group_weight is None else [float(w) for w in group_weight]
        if conv is not None:
            for g, d in zip(layout.names, layout.dims):
                if d != conv.dim:
                    raise ValueError(
                        f"group {g!r} has {d} features but the conv networks expect images "
                        f"of shape {conv.image_shape} ({conv.dim} features)"
                    )
        self.layout = layout
        self.conv = conv
        self.latent_dim = latent_dim
        self.encoder_width = encoder_width
        self.decoder_width = decoder_width
        if not lam >= 0:
            raise ValueError(f"lam must be >= 0, got {lam}")
        self.lam = float(lam)
        self.num_data = num_data
        self.theta_prior_weight = float(theta_prior_weight)
        self.decoders = nn.ModuleList(
            BlockDecoder(len(b.groups), b.dim, decoder_width, decoder_hidden, conv)
            for b in layout.blocks
        )
        self.likelihoods = nn.ModuleList(
            likelihoods.get(b.likelihood)(len(b.groups), b.dim) for b in layout.blocks
        )

    def init_from_data(self, xs: Sequence[torch.Tensor], mask: torch.Tensor) -> None:
        """Data-dependent initialisation of the likelihoods (e.g. Normal scales = data std)."""
        for block, lik in zip(self.layout.blocks, self.likelihoods):
            lik.init_from_data([xs[g] for g in block.groups], [mask[:, g] for g in block.groups])

    @property
    def phi_rows(self) -> int:
        """``m = p + H``, the rows of every ``Phi_g``."""
        return self.decoder_width + self.encoder_width

    def lam_total(self, batch_size: int) -> float:
        """Rate ``N * lam`` of the full-data prior."""
        return self.lam * (self.num_data or batch_size)

    def sample_phi(self, batch_size: int) -> list[torch.Tensor]:
        """Sample the ``gamma_sq_<g>`` and ``Phi_<g>`` sites; return ``Phi`` stacked per block."""
        m, k = self.phi_rows, self.latent_dim
        gamma_prior = gamma_sq_prior(m, k, self.lam_total(batch_size))  # same for every group
        phis = []
        for block in self.layout.blocks:
            stack = []
            for g in block.groups:
                name = self.layout.names[g]
                gamma_sq = pyro.sample(f"gamma_sq_{name}", gamma_prior)
                stack.append(pyro.sample(f"Phi_{name}", phi_prior(gamma_sq, m)))
            phis.append(torch.stack(stack, dim=-3))
        return phis

    def theta_log_prior(self) -> torch.Tensor:
        """``sum log N(theta_f; 0, 1)`` over the generator networks' parameters."""
        params = [p for dec in self.decoders for p in dec.prior_parameters()]
        count = sum(p.numel() for p in params)
        return -0.5 * sum(p.square().sum() for p in params) - count * _HALF_LOG_2PI

    def decode(self, z: torch.Tensor, phis: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Decoder outputs ``(..., G_b, d_b)`` per block, given ``z`` and ``Phi`` per block."""
        p = self.decoder_width
        return [dec(z, phi[..., :p, :]) for dec, phi in zip(self.decoders, phis)]

    def forward(
        self,
        xs: Sequence[torch.Tensor] | None,
        mask: torch.Tensor | None = None,
        enc_mask: torch.Tensor | None = None,
        batch_size: int | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the model on a minibatch (or simulate one).

        Parameters
        ----------
        xs : sequence of torch.Tensor or None
            One ``(B, d_g)`` tensor per group; values under missing groups are ignored.
            ``None`` simulates: every ``x_<g>`` site is sampled (prior predictive with
            :class:`pyro.infer.Predictive`).
        mask : torch.Tensor, optional
            ``(B, G)`` bool, ``True`` where a group is observed (likelihood on those).
            Required with data; when simulating, defaults to all ``True``.
        enc_mask : torch.Tensor, optional
            Ignored here: the groups fed to the encoder only matter to the guide.
        batch_size : int, optional
            Rows to simulate when ``xs`` and ``mask`` are ``None``.
        weight : torch.Tensor, optional
            ``(B,)`` per-row weights of the row terms (``poutine.scale`` inside the data
            plate), e.g. the JMVAE+ expansion of :func:`~pyro_factvae.poe.expand_experts`.

        Returns
        -------
        torch.Tensor
            The sampled ``z``, shape ``(B, K)``.
        """
        if xs is None:
            if mask is None:
                if batch_size is None:
                    raise ValueError("to simulate, give mask or batch_size")
                mask = torch.ones(batch_size, self.layout.num_groups, dtype=torch.bool)
            zeros = [torch.zeros(mask.shape[0], d) for d in self.layout.dims]
            blocks: list[torch.Tensor | None] = [None] * len(self.layout.blocks)
            _stack_blocks(self.layout, zeros, mask)  # validates the mask
        else:
            if mask is None:
                raise ValueError("mask is required with data: (B, G) bool, True = observed")
            blocks = [
                lik.in_support(x, mask[:, list(block.groups)].unsqueeze(-1))
                for block, x, lik in zip(
                    self.layout.blocks, _stack_blocks(self.layout, xs, mask), self.likelihoods
                )
            ]
        batch = mask.shape[0]
        phis = self.sample_phi(batch)
        num_data = self.num_data or batch
        if self.theta_prior_weight > 0:
            pyro.factor("theta_prior", self.theta_prior_weight * num_data * self.theta_log_prior())
        with (
            pyro.plate("data", num_data, subsample=torch.arange(batch)),
            poutine.scale(scale=1.0 if weight is None else weight),
        ):
            prior = dist.Normal(torch.zeros(batch, self.latent_dim), 1.0).to_event(1)
            z = pyro.sample("z", prior)
            outs = self.decode(z, phis)
            for block, x, out, lik in zip(self.layout.blocks, blocks, outs, self.likelihoods):
                for i, (g, fn) in enumerate(zip(block.groups, lik.dists(out))):
                    weight_g = 1.0 if self.group_weight is None else self.group_weight[g]
                    with poutine.mask(mask=mask[:, g]), poutine.scale(scale=weight_g):
                        obs = None if x is None else x[:, i]
                        pyro.sample(f"x_{self.layout.names[g]}", fn, obs=obs)
        return z
