"""A minimal factVAE in plain PyTorch: the speed reference of ``benchmarks/speed.py``.

Written without the library's classes, for groups of one width: the group axis goes through
``torch.bmm``; each group's encoder is ``h_g = ReLU(x_g A_g + a_g)``, its expert
``N(h_g M_g + m_g, |(h_g + b) V_g|^-1)``; the product of the observed (and kept) experts with
the prior gives ``q(z | x)``; one reparameterised ``z``; the decoder is
``ReLU(W_g z + c_g) B_g + b_g`` with ``Phi_g = [W_g; V_g^T]``; a Normal likelihood with a
learned scale per feature; the analytic KL; the ``N(0, 1)`` prior on the generator weights.
One Adam on the networks; Adam then the group soft-threshold of each ``Phi_g`` column
(Algorithm 1's prox) on ``Phi``. The same shapes as ``FactVAE``'s defaults (one hidden layer
of width ``H`` in the encoder, ``p`` in the decoder), the same work per step, none of the
library's machinery.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class MinimalFactVAE(nn.Module):
    """``G`` groups of ``d`` features, ``K`` latents, encoder width ``H``, decoder width ``p``."""

    def __init__(self, groups: int, dim: int, latent: int, width: int, tau: float = 0.01):
        super().__init__()
        g, d, k, h, p = groups, dim, latent, width, width

        def uniform(*shape: int, fan_in: int) -> nn.Parameter:
            bound = 1.0 / math.sqrt(fan_in)
            return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))

        self.enc_w, self.enc_b = uniform(g, d, h, fan_in=d), uniform(g, 1, h, fan_in=d)
        self.mean_w, self.mean_b = uniform(g, h, k, fan_in=h), uniform(g, 1, k, fan_in=h)
        self.dec_c = uniform(g, 1, p, fan_in=p)
        self.dec_w, self.dec_b = uniform(g, p, d, fan_in=p), uniform(g, 1, d, fan_in=p)
        self.raw_scale = nn.Parameter(torch.zeros(g, 1, d))
        self.baseline = nn.Parameter(torch.tensor(100.0))
        self.phi = nn.Parameter(torch.randn(g, p + h, k) * 0.1)
        self.p, self.tau = p, tau

    def networks(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "phi"]

    def loss(self, x: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor, n: int):
        """Negative ELBO per row of a minibatch ``x`` ``(G, B, d)`` (zeros where missing),
        ``mask`` / ``keep`` ``(G, B)``: observed groups, and those fed to the encoder."""
        h = torch.relu(torch.baddbmm(self.enc_b, x, self.enc_w))  # (G, B, H)
        mu = torch.baddbmm(self.mean_b, h, self.mean_w)  # (G, B, K)
        w, v = self.phi[:, : self.p], self.phi[:, self.p :]  # (G, p, K), (G, H, K)
        precision = torch.bmm(h + self.baseline, v).abs() * (keep & mask).unsqueeze(-1)
        total = 1.0 + precision.sum(0)  # (B, K): the product of experts and the prior (eq 6)
        loc = (precision * mu).sum(0) / total
        scale = total.rsqrt()
        z = loc + scale * torch.randn_like(loc)
        a = torch.relu(torch.bmm(w, z.t().expand(len(w), -1, -1)).transpose(1, 2) + self.dec_c)
        out = torch.baddbmm(self.dec_b, a, self.dec_w)  # (G, B, d)
        sd = nn.functional.softplus(self.raw_scale) + 1e-3
        ll = (-0.5 * ((x - out) / sd) ** 2 - sd.log() - 0.5 * math.log(2 * math.pi)).sum(-1)
        kl = 0.5 * (loc**2 + scale**2 - 1.0 - 2.0 * scale.log()).sum(-1)
        data = -((ll * mask).sum(0) - kl).mean()
        theta = sum(p.square().sum() for p in (self.dec_c, self.dec_w, self.dec_b))
        return data + 0.5 * self.tau * theta


class MinimalTrainer:
    """Adam on the networks; Adam and the group soft-threshold on ``Phi`` (Algorithm 1)."""

    def __init__(self, model: MinimalFactVAE, lam: float, lr: float = 1e-2) -> None:
        self.model, self.lam, self.lr = model, lam, lr
        # fused: one kernel a step, the Adam the library's networks take on the CPU
        self.theta = torch.optim.Adam(model.networks(), lr=lr, fused=True)
        self.phi = torch.optim.Adam([model.phi], lr=lr, fused=True)

    def step(self, x: torch.Tensor, mask: torch.Tensor, keep_prob: float, n: int) -> float:
        keep = torch.rand(mask.shape) < keep_prob
        loss = self.model.loss(x, mask, keep, n)
        self.theta.zero_grad(set_to_none=True)
        self.phi.zero_grad(set_to_none=True)
        loss.backward()
        self.theta.step()
        self.phi.step()
        with torch.no_grad():  # prox: shrink every column's norm by lr * lam * d
            phi = self.model.phi
            norms = phi.norm(dim=1, keepdim=True)
            cut = self.lr * self.lam * self.model.enc_w.shape[1]
            phi.mul_((1 - cut / norms.clamp_min(1e-12)).clamp_min(0.0))
        return loss.item()


def epoch(trainer: MinimalTrainer, x: torch.Tensor, mask: torch.Tensor, batch: int) -> float:
    """One pass over ``x`` ``(G, N, d)`` in shuffled minibatches; the mean loss."""
    n = x.shape[1]
    total = 0.0
    for rows in torch.randperm(n).split(batch):
        total += trainer.step(x[:, rows], mask[:, rows], 0.75, n) * len(rows)
    return total / n
