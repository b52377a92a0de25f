"""The factVAE guide: the product-of-experts encoder (eq 6, footnote 2) and the posterior over
the global sites ``Phi_<g>`` and ``gamma_sq_<g>`` (a strategy from
:mod:`pyro_factvae.module.posteriors`).

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data",
2018.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from .. import sites
from ..registry import EXPERTS, PHI_POSTERIORS
from .experts import product_of_experts
from .model import Model, lam_totals, module_local
from .nets import BlockEncoder

__all__ = ["Guide"]

#: the posterior over Phi that prox-MAP training uses (every run can start with it)
MAP = "prox"


class Guide(PyroModule):
    r"""Product-of-experts encoder (eq 6, footnote 2) and the posterior over ``Phi``.

    For each row, over the groups ``I`` fed to the encoder (observed and kept)::

        h_g      = phi_g(x_g)                         # MLP, ReLU output of width H
        mu_g     = h_g M_g + c_g
        Lambda_g = |(h_g + b) V_g|                    # V_g from Phi_g, b a learned scalar
        q(z | x) = N(mu, Lambda^-1),  Lambda = 1 + sum_{g in I} Lambda_g,
                                      mu = Lambda^-1 sum_{g in I} Lambda_g mu_g

    A group observed in some of its cells is encoded from its zero-filled values and the
    indicator of its missing cells (:class:`~pyro_factvae.module.nets.BlockEncoder`).

    Globals: ``Phi_<g>`` and ``gamma_sq_<g>`` from the active posterior strategy
    (:attr:`phi_posterior`): point masses at the MAP for ``"prox"``, mean field for
    ``"variational"``.

    Parameters
    ----------
    model : Model
        The model this guide serves; the guide reads the model's ``config``
        (``encoder_hidden``, ``baseline``, ``inference``, ``phi_inference``, ``lam``,
        ``num_data``) and ``layout``.

    Attributes
    ----------
    Phi : torch.nn.ParameterList
        ``Phi`` per block, ``(G_b, m, K)``: the parameters the prox acts on.
    experts
        How experts combine (a strategy of :data:`~pyro_factvae.registry.EXPERTS`).
    phi_posteriors : torch.nn.ModuleDict
        The posterior strategies this guide can use (``"prox"`` always, and the configured
        ``phi_inference``); :meth:`use_phi_posterior` picks the active one.
    """

    def __init__(self, model: Model) -> None:
        super().__init__()
        config = model.config
        self.config = config
        self.layout = model.layout
        k, p, h = config.latent_dim, config.decoder_width, config.encoder_width
        conv = config.conv_spec()
        self.encoders = nn.ModuleList(
            BlockEncoder(
                len(b.groups),
                b.dim,
                [*config.encoder_hidden, h],
                k,
                conv,
                b.widths if b.padded else None,
            )
            for b in self.layout.blocks
        )
        phis = []
        for b in self.layout.blocks:
            w = torch.empty(len(b.groups), p, k).uniform_(-(k**-0.5), k**-0.5)
            v_t = torch.empty(len(b.groups), h, k).uniform_(-(h**-0.5), h**-0.5)
            phis.append(nn.Parameter(torch.cat([w, v_t], dim=1)))
        self.Phi = nn.ParameterList(phis)
        #: the model's likelihoods, to put inputs in network units (a reference, not a child)
        self.input_maps = tuple(model.likelihoods)
        self.baseline = nn.Parameter(torch.tensor(float(config.baseline)))
        self.experts = EXPERTS.get(config.inference)()
        names = dict.fromkeys([MAP, config.phi_inference])
        self.phi_posteriors = nn.ModuleDict(
            {name: PHI_POSTERIORS.get(name)(phis) for name in names}
        )
        self.phi_mode = MAP
        # with lam="auto" (FactVAE chooses it in fit) the posterior starts when training does
        self.use_phi_posterior(config.phi_inference, start=config.lam != "auto")

    @property
    def phi_posterior(self) -> nn.Module:
        """The active posterior strategy over ``Phi`` and ``gamma_sq``."""
        return self.phi_posteriors[self.phi_mode]

    def use_phi_posterior(self, name: str, start: bool = True) -> None:
        """Make ``name`` the active posterior over ``Phi``; with ``start`` it begins at the
        current ``Phi`` (e.g. the mean field started at the prox-MAP point)."""
        if name not in self.phi_posteriors:
            raise ValueError(
                f"this guide has no posterior {name!r}; it has {list(self.phi_posteriors)}"
            )
        self.phi_mode = name
        if start:
            self.phi_posterior.start(list(self.Phi), lam_totals(self.layout, self.config))

    def sample_phi(self, batch_size: int) -> list[torch.Tensor]:
        """Sample the global sites; return ``Phi`` stacked per block."""
        return self.phi_posterior.sample(
            self.layout, list(self.Phi), lam_totals(self.layout, self.config, batch_size)
        )

    def expert_params(
        self,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        phis: Sequence[torch.Tensor],
        cells: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert means and precisions ``(B, G, K)`` in the user's group order (``cells``:
        the ``(B, sum d_g)`` cell mask, ``None`` when no cell of an observed group is
        missing)."""
        blocks = self.layout.gather(xs, mask, cells)
        return self.block_expert_params(blocks, phis, self.layout.gather_cells(cells))

    def block_expert_params(
        self,
        blocks: Sequence[torch.Tensor],
        phis: Sequence[torch.Tensor],
        cells: Sequence[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`expert_params` from per-block inputs ``(B, G_b, d_b)`` and per-block cell
        masks (unchecked)."""
        p = self.config.decoder_width
        mus, precs = [], []
        for b, (x, lik, enc, phi) in enumerate(zip(blocks, self.input_maps, self.encoders, phis)):
            net = lik.to_network(x)
            missing = None
            if cells is not None:  # missing cells: zero in network units, and flagged
                net = net.where(cells[b], 0.0)
                missing = ~cells[b]
            mu, prec = enc(net, phi[..., p:, :], self.baseline, missing)
            mus.append(mu)
            precs.append(prec)
        return self.layout.scatter_axis(mus), self.layout.scatter_axis(precs)

    def posterior(
        self,
        xs: Sequence[torch.Tensor],
        enc_mask: torch.Tensor,
        phis: Sequence[torch.Tensor] | None = None,
        cells: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PoE ``q(z | x)`` loc and scale ``(B, K)`` from the groups in ``enc_mask`` (eq 6)."""
        phis = list(self.Phi) if phis is None else phis
        mu, prec = self.expert_params(xs, enc_mask, phis, cells)
        return product_of_experts(mu, prec, enc_mask)

    def posterior_dist(
        self,
        xs: Sequence[torch.Tensor],
        enc_mask: torch.Tensor,
        cells: torch.Tensor | None = None,
    ) -> dist.TorchDistribution:
        """``q(z | x_I)`` as a distribution (batch ``(B,)``, event ``(K,)``), ``I = enc_mask``,
        as the experts strategy combines them (product, or the JMVAE+ mixture); ``cells`` as
        in :meth:`expert_params`."""
        mu, prec = self.expert_params(xs, enc_mask, list(self.Phi), cells)
        return self.experts.posterior(mu, prec, enc_mask)

    @module_local
    def forward(
        self,
        xs: Sequence[torch.Tensor],
        mask: torch.Tensor,
        enc_mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        batch_size: int | None = None,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sample the guide on a minibatch (same arguments as
        :meth:`~pyro_factvae.module.model.Model.forward`).

        ``enc_mask`` (``(B, G)`` bool) selects the groups fed to the encoder; it is combined
        with ``mask`` so a missing group never enters (Algorithm 1's ``I subset O``). Training
        rows reach the guide one expert combination each (the experts strategy expands them),
        so the product of the given experts is the right ``q`` here. ``enc_cells``
        (``(B, sum d_g)`` bool, a subset of ``cells``) selects the cells fed to the encoder
        (training's cell dropout; default ``cells``); a group left with no cell is left out.
        """
        self.layout.check_mask(mask)
        if enc_mask is not None:
            self.layout.check_mask(enc_mask, "enc_mask")
            if enc_mask.shape != mask.shape:
                raise ValueError(f"enc_mask must have mask's shape {tuple(mask.shape)}")
        batch = mask.shape[0]
        phis = self.sample_phi(batch)
        inputs = mask if enc_mask is None else mask & enc_mask
        if enc_cells is not None:
            inputs = inputs & self.layout.groups_seen(enc_cells)
            cells = enc_cells
        loc, scale = self.posterior(xs, inputs, phis, cells)
        with (
            pyro.plate(
                sites.DATA_PLATE,
                self.config.num_data or batch,
                subsample=torch.arange(batch, device=mask.device),
            ),
            poutine.scale(scale=1.0 if weight is None else weight),
        ):
            return pyro.sample(sites.Z, dist.Normal(loc, scale).to_event(1))
