r"""Posteriors over the global sites ``Phi_<g>`` and ``gamma_sq_<g>``: small strategies that the
:class:`~pyro_factvae.module.guide.Guide` delegates to, registered in
:data:`~pyro_factvae.registry.PHI_POSTERIORS`.

``"prox"`` (:class:`PointMass`)
    ``Phi_<g> ~ Delta(Phi_g)`` (the MAP point) and ``gamma_sq_<g> ~ Delta(mode of
    p(gamma_sq | Phi_g))``; trained under :func:`~pyro_factvae.infer.collapse.collapse` with the
    group-lasso prox of Algorithm 1, which gives exact zeros.
``"variational"`` (:class:`MeanField`)
    ``Phi_<g> ~ Normal(Phi_g, s^2)`` and ``gamma_sq_<g> ~ LogNormal``, trained on the full ELBO
    (no collapse, no prox), so every link gets a posterior.

Each strategy says whether it is trained collapsed (``collapsed``), emits the sites
(:meth:`~PointMass.sample`), starts from the current ``Phi`` when a training phase begins
(:meth:`~PointMass.start`), and draws the posterior of each link for analysis
(:meth:`~PointMass.draws`). The ``Phi`` means themselves belong to the guide and are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from .. import sites
from ..layout import Layout
from ..registry import PHI_POSTERIORS
from .likelihoods import inverse_softplus
from .priors import column_norms, conditional_mode, conditional_sample

__all__ = ["MeanField", "PointMass"]

#: initial posterior standard deviation of the mean-field factors
_INIT_SCALE = 1e-2


@PHI_POSTERIORS.register("prox")
class PointMass(nn.Module):
    """Point masses at the MAP ``Phi`` (prox-MAP training, Algorithm 1)."""

    collapsed = True
    #: trained with the one-pass collapsed loss (:mod:`pyro_factvae.infer.objective`)
    objective = "collapsed"

    def __init__(self, phis: Sequence[torch.Tensor]) -> None:
        super().__init__()

    def sample(
        self,
        layout: Layout,
        phis: Sequence[torch.Tensor],
        lam_totals: Sequence[float | torch.Tensor],
    ) -> list[torch.Tensor]:
        """Emit ``gamma_sq_<g>`` and ``Phi_<g>``; return ``Phi`` stacked per block."""
        out = []
        for block, phi, lam_total in zip(layout.blocks, phis, lam_totals):
            gamma_sq = conditional_mode(phi.detach(), lam_total).clamp_min(1e-12)
            stack = []
            for i, g in enumerate(block.groups):
                name = layout.names[g]
                delta = dist.Delta(gamma_sq[i], event_dim=1)
                pyro.sample(sites.gamma_sq(name), delta, infer=sites.tagged("gamma_sq"))
                delta = dist.Delta(phi[i], event_dim=2)
                stack.append(pyro.sample(sites.phi(name), delta, infer=sites.tagged("Phi")))
            out.append(torch.stack(stack, dim=-3))
        return out

    def start(
        self, phis: Sequence[torch.Tensor], lam_totals: Sequence[float | torch.Tensor]
    ) -> None:
        """Nothing to start: the point is ``Phi`` itself."""

    @torch.no_grad()
    def draws(
        self,
        phis: Sequence[torch.Tensor],
        lam_totals: Sequence[float | torch.Tensor],
        num_draws: int,
        generator: torch.Generator,
        active_factor: float,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per block, ``(column norms, gamma_sq, active)`` draws, each ``(S, G_b, K)``.

        ``Phi`` is a point, so its norms repeat; ``gamma_sq`` comes from its exact conditional
        ``p(gamma_sq | Phi)``; a link is active where its column is not exactly zero. Drawn on
        the CPU from ``generator`` (a CPU generator), whatever the model's device, so a seed
        gives the same draws everywhere.
        """
        out = []
        for phi, lam_total in zip(phis, lam_totals):
            phi = phi.detach().cpu()
            norm = column_norms(phi).double().expand(num_draws, *phi.shape[::2])
            gamma = conditional_sample(phi, lam_total, num_draws, generator)
            out.append((norm, gamma, norm > 0))
        return out


@PHI_POSTERIORS.register("variational")
class MeanField(nn.Module):
    """Mean-field ``q(Phi_g) = N(Phi_g, s^2)`` and ``q(gamma_sq_g) = LogNormal(loc, scale)``."""

    collapsed = False
    #: sampled globals, trained on Pyro's trace of the full ELBO
    objective = "trace"

    def __init__(self, phis: Sequence[torch.Tensor]) -> None:
        super().__init__()
        raw = float(inverse_softplus(torch.tensor(_INIT_SCALE)))
        self.Phi_scale = nn.ParameterList(
            nn.Parameter(torch.full_like(p.detach(), raw)) for p in phis
        )
        self.gamma_loc = nn.ParameterList(nn.Parameter(torch.zeros(p.shape[::2])) for p in phis)
        self.gamma_scale = nn.ParameterList(
            nn.Parameter(torch.full(p.shape[::2], raw)) for p in phis
        )

    def sample(
        self,
        layout: Layout,
        phis: Sequence[torch.Tensor],
        lam_totals: Sequence[float | torch.Tensor],
    ) -> list[torch.Tensor]:
        out = []
        for block, phi, raw, g_loc, g_raw in zip(
            layout.blocks, phis, self.Phi_scale, self.gamma_loc, self.gamma_scale
        ):
            scale, g_scale = softplus(raw), softplus(g_raw)
            stack = []
            for i, g in enumerate(block.groups):
                name = layout.names[g]
                q_gamma_sq = dist.LogNormal(g_loc[i], g_scale[i]).to_event(1)
                pyro.sample(sites.gamma_sq(name), q_gamma_sq, infer=sites.tagged("gamma_sq"))
                q_phi = dist.Normal(phi[i], scale[i]).to_event(2)
                stack.append(pyro.sample(sites.phi(name), q_phi, infer=sites.tagged("Phi")))
            out.append(torch.stack(stack, dim=-3))
        return out

    @torch.no_grad()
    def start(
        self, phis: Sequence[torch.Tensor], lam_totals: Sequence[float | torch.Tensor]
    ) -> None:
        """Centre ``q(gamma_sq)`` at the conditional mode given the current ``Phi`` and reset
        the scales (a start from the prox-MAP point)."""
        raw = float(inverse_softplus(torch.tensor(_INIT_SCALE)))
        for phi, scale, g_loc, g_scale, lam_total in zip(
            phis, self.Phi_scale, self.gamma_loc, self.gamma_scale, lam_totals
        ):
            g_loc.copy_(conditional_mode(phi, lam_total).clamp_min(1e-12).log())
            scale.fill_(raw)
            g_scale.fill_(raw)

    @torch.no_grad()
    def draws(
        self,
        phis: Sequence[torch.Tensor],
        lam_totals: Sequence[float | torch.Tensor],
        num_draws: int,
        generator: torch.Generator,
        active_factor: float,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Per block, ``(column norms, gamma_sq, active)`` draws from ``q``, each
        ``(S, G_b, K)``; a link is active where its norm exceeds ``active_factor`` times the
        norm a column of pure posterior noise would have. Drawn on the CPU from ``generator``
        (a CPU generator), whatever the model's device."""
        out = []
        for phi, raw, g_loc, g_raw in zip(phis, self.Phi_scale, self.gamma_loc, self.gamma_scale):
            phi, raw, g_loc, g_raw = (t.detach().cpu() for t in (phi, raw, g_loc, g_raw))
            scale = softplus(raw).double()
            eps = torch.randn((num_draws, *phi.shape), generator=generator, dtype=torch.float64)
            norm = column_norms(phi.double() + scale * eps)
            g_eps = torch.randn((num_draws, *g_loc.shape), generator=generator, dtype=torch.float64)
            gamma = (g_loc.double() + softplus(g_raw).double() * g_eps).exp()
            out.append((norm, gamma, norm > active_factor * column_norms(scale)))
        return out
