"""The factVAE guide: the product-of-experts encoder (eq 6, footnote 2) and the posterior over
the global sites ``Phi_<g>`` and ``gamma_sq_<g>`` (point masses for prox-MAP, or mean-field
variational).

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data",
2018.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn
from torch.nn.functional import softplus

from .model import INFERENCE, PHI_INFERENCE, Model, _check_mask, _stack_blocks
from .nets import BlockEncoder
from .poe import mixture_of_experts, product_of_experts
from .priors import conditional_mode

__all__ = ["Guide"]

_INIT_SCALE = 1e-2


class Guide(PyroModule):
    r"""Product-of-experts encoder (eq 6, footnote 2) with point-mass ``Phi`` (prox-MAP).

    For each row, over the groups ``I`` fed to the encoder (observed and kept)::

        h_g      = phi_g(x_g)                         # MLP, ReLU output of width H
        mu_g     = h_g M_g + c_g
        Lambda_g = |(h_g + b) V_g|                    # V_g from Phi_g, b a learned scalar
        q(z | x) = N(mu, Lambda^-1),  Lambda = 1 + sum_{g in I} Lambda_g,
                                      mu = Lambda^-1 sum_{g in I} Lambda_g mu_g

    Globals: ``Phi_<g> ~ Delta(Phi_g)`` (a parameter, the MAP point) and
    ``gamma_sq_<g> ~ Delta(mode of p(gamma_sq | Phi_g))`` (floored at 1e-12).

    Parameters
    ----------
    model : Model
        The model this guide serves (layout, ``K``, ``p``, ``H``, ``lam``, ``num_data``).
    hidden : sequence of int
        Hidden widths of ``phi_g`` before its last layer (of width ``model.encoder_width``).
    baseline : float
        Initial value of the baseline precision ``b``.
    phi_inference : {"prox", "variational"}
        ``"prox"``: point masses (prox-MAP, Algorithm 1, trained under
        :func:`~pyro_factvae.optim.collapse`). ``"variational"``: a mean-field posterior over
        the *same* explicit sites, ``Phi_<g> ~ Normal`` and ``gamma_sq_<g> ~ LogNormal``,
        trained on the full ELBO (no collapse, no prox), so every link gets a posterior.
    inference : {"poe", "mixture"}
        How experts combine at prediction time: the product (factVAE) or the uniform mixture
        of the JMVAE+ baseline (trained on expanded rows, see
        :func:`~pyro_factvae.poe.expand_experts`; the guide itself then sees one expert per row).
    """

    def __init__(
        self,
        model: Model,
        hidden: Sequence[int] = (),
        baseline: float = 100.0,
        name: str = "",
        inference: str = "poe",
        phi_inference: str = "prox",
    ) -> None:
        super().__init__(name)
        if inference not in INFERENCE:
            raise ValueError(f"unknown inference {inference!r}; choose one of {INFERENCE}")
        if phi_inference not in PHI_INFERENCE:
            raise ValueError(f"unknown phi_inference {phi_inference!r}; choose {PHI_INFERENCE}")
        self.inference = inference
        self.phi_inference = phi_inference
        self.layout = model.layout
        self.latent_dim = k = model.latent_dim
        self.decoder_width = p = model.decoder_width
        self.lam, self.num_data = model.lam, model.num_data
        h = model.encoder_width
        self.encoders = nn.ModuleList(
            BlockEncoder(len(b.groups), b.dim, [*hidden, h], k, model.conv)
            for b in self.layout.blocks
        )
        phis = []
        for b in self.layout.blocks:
            w = torch.empty(len(b.groups), p, k).uniform_(-(k**-0.5), k**-0.5)
            v_t = torch.empty(len(b.groups), h, k).uniform_(-(h**-0.5), h**-0.5)
            phis.append(nn.Parameter(torch.cat([w, v_t], dim=1)))
        self.Phi = nn.ParameterList(phis)
        self.baseline = nn.Parameter(torch.tensor(float(baseline)))
        if phi_inference == "variational":
            # q(Phi_g) = N(Phi, softplus(Phi_scale)^2), q(gamma_sq_g) = LogNormal(gamma_loc, .)
            raw = math.log(math.expm1(_INIT_SCALE))
            self.Phi_scale = nn.ParameterList(
                nn.Parameter(torch.full_like(phi, raw)) for phi in phis
            )
            self.gamma_loc = nn.ParameterList(
                nn.Parameter(torch.zeros(phi.shape[::2])) for phi in phis
            )
            self.gamma_scale = nn.ParameterList(
                nn.Parameter(torch.full(phi.shape[::2], raw)) for phi in phis
            )
            self.start_variational()

    @torch.no_grad()
    def start_variational(self) -> None:
        """Centre ``q(gamma_sq)`` at the conditional mode given the current ``Phi`` and reset the
        scales of ``q(Phi)`` and ``q(gamma_sq)`` (used to start from a prox-MAP fit)."""
        raw = math.log(math.expm1(_INIT_SCALE))
        lam_total = self.lam * (self.num_data or 1)
        for phi, scale, g_loc, g_scale in zip(
            self.Phi, self.Phi_scale, self.gamma_loc, self.gamma_scale
        ):
            g_loc.copy_(conditional_mode(phi, lam_total).clamp_min(1e-12).log())
            scale.fill_(raw)
            g_scale.fill_(raw)

    def sample_phi(self, batch_size: int) -> list[torch.Tensor]:
        """Sample the global sites; return ``Phi`` stacked per block.

        Point masses in prox-MAP training; with ``phi_inference="variational"``,
        ``Phi_<g> ~ Normal`` and ``gamma_sq_<g> ~ LogNormal`` (mean field).
        """
        if self.phi_inference == "variational":
            return self._sample_phi_variational()
        lam_total = self.lam * (self.num_data or batch_size)
        out = []
        for block, phi in zip(self.layout.blocks, self.Phi):
            gamma_sq = conditional_mode(phi.detach(), lam_total).clamp_min(1e-12)
            stack = []
            for i, g in enumerate(block.groups):
                name = self.layout.names[g]
                pyro.sample(f"gamma_sq_{name}", dist.Delta(gamma_sq[i], event_dim=1))
                stack.append(pyro.sample(f"Phi_{name}", dist.Delta(phi[i], event_dim=2)))
            out.append(torch.stack(stack, dim=-3))
        return out

    def _sample_phi_variational(self) -> list[torch.Tensor]:
        out = []
        for block, phi, raw, g_loc, g_raw in zip(
            self.layout.blocks, self.Phi, self.Phi_scale, self.gamma_loc, self.gamma_scale
        ):
            scale, g_scale = softplus(raw), softplus(g_raw)
            stack = []
            for i, g in enumerate(block.groups):
                name = self.layout.names[g]
                pyro.sample(f"gamma_sq_{name}", dist.LogNormal(g_loc[i], g_scale[i]).to_event(1))
                stack.append(pyro.sample(f"Phi_{name}", dist.Normal(phi[i], scale[i]).to_event(2)))
            out.append(torch.stack(stack, dim=-3))
        return out

    def experts(
        self, blocks: Sequence[torch.Tensor], phis: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert means and precisions ``(B, G, K)`` (user's group order) from block inputs."""
        p = self.decoder_width
        mus, precs = [], []
        for x, enc, phi in zip(blocks, self.encoders, phis):
            mu, prec = enc(x, phi[..., p:, :], self.baseline)
            mus.append(mu)
            precs.append(prec)
        if len(mus) == 1:  # one block: already in group order
            return mus[0], precs[0]
        inverse = torch.argsort(torch.tensor(self.layout.order))
        return torch.cat(mus, -2)[..., inverse, :], torch.cat(precs, -2)[..., inverse, :]

    def posterior(
        self,
        xs: Sequence[torch.Tensor],
        enc_mask: torch.Tensor,
        phis: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PoE ``q(z | x)`` loc and scale ``(B, K)`` from the groups in ``enc_mask`` (eq 6)."""
        if phis is None:
            phis = list(self.Phi)
        mu, prec = self.experts(_stack_blocks(self.layout, xs, enc_mask), phis)
        return product_of_experts(mu, prec, enc_mask)

    def posterior_dist(
        self, xs: Sequence[torch.Tensor], enc_mask: torch.Tensor
    ) -> dist.TorchDistribution:
        """``q(z | x_I)`` as a distribution (batch ``(B,)``, event ``(K,)``), ``I = enc_mask``.

        The product of experts (eq 6) when ``inference == "poe"``; the JMVAE+ uniform mixture
        of single-group experts (:func:`~pyro_factvae.poe.mixture_of_experts`) when
        ``inference == "mixture"``.
        """
        if self.inference == "poe":
            loc, scale = self.posterior(xs, enc_mask)
            return dist.Normal(loc, scale).to_event(1)
        mu, prec = self.experts(_stack_blocks(self.layout, xs, enc_mask), list(self.Phi))
        return mixture_of_experts(mu, prec, enc_mask)

    def forward(
        self,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample the guide on a minibatch (same arguments as :meth:`Model.forward`).

        ``enc_mask`` (``(B, G)`` bool) selects the groups fed to the encoder; it is combined
        with ``mask`` so a missing group never enters (Algorithm 1's ``I subset O``).
        """
        _check_mask(self.layout, mask)
        if enc_mask is not None:
            _check_mask(self.layout, enc_mask, "enc_mask")
            if enc_mask.shape != mask.shape:
                raise ValueError(f"enc_mask must have mask's shape {tuple(mask.shape)}")
        batch = mask.shape[0]
        phis = self.sample_phi(batch)
        inputs = mask if enc_mask is None else mask & enc_mask
        loc, scale = self.posterior(xs, inputs, phis)
        with (
            pyro.plate("data", self.num_data or batch, subsample=torch.arange(batch)),
            poutine.scale(scale=1.0 if weight is None else weight),
        ):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))
