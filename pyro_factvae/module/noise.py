"""Common random numbers: one set of standard draws shared by every row of a query.

An estimate per row (an imputed mean, a refined posterior, an importance-sampled score)
averages over draws ``z_s ~ q(z | x_O)``. Drawn independently for each row, row ``i``'s
``z_s`` depend on where it sits in the query, so the same row imputed with other rows, or
in another chunk, got another Monte Carlo error (up to 0.2 standard deviations of a wine
column at 1,000 draws with the default refinement). With the same standard draws
``eps_s`` for every row, ``z_s = loc_i + scale_i * eps_s``, each row's estimate is a function
of its own values and the seed alone, and still averages over ``S`` independent draws of its
own ``q``. Shared draws correlate the rows' Monte Carlo errors, which an average over rows
then does not shrink: the scores of :mod:`~pyro_factvae.module.scoring` (the ``lam``
criterion, the log-likelihoods of :mod:`~pyro_factvae.metrics`), which are read as averages
over rows, draw each row on its own, and so do multiple imputation's draws
(:mod:`~pyro_factvae.module.draws`), as the rows of one imputed data set must. The errors of
:func:`~pyro_factvae.metrics.evaluate` score the means :meth:`~pyro_factvae.FactVAE.impute`
returns, and so take them as it does (at 1,000 draws their Monte Carlo error is small
beside the imputation's).
"""

from __future__ import annotations

import torch
from pyro import distributions as dist

__all__ = ["SharedNoise"]


class SharedNoise:
    """``num`` standard Normal draws of ``dim`` values (and ``num`` uniforms, which pick a
    mixture's component), drawn from the current RNG on ``device`` when made and shared by
    every row a :meth:`sample` is given.

    Parameters
    ----------
    num : int
        The number of draws ``S``.
    dim : int
        The latent dimension ``K``.
    device : torch.device or str
        Where the draws are made and kept (in float32, the model's precision).
    """

    def __init__(self, num: int, dim: int, device: torch.device | str) -> None:
        # float32, the model's precision, whatever torch's default dtype
        self.eps = torch.randn(num, 1, dim, device=device, dtype=torch.float32)  # (S, 1, K)
        self.uniform = torch.rand(num, 1, device=device, dtype=torch.float32)  # (S, 1)

    def sample(self, q: dist.TorchDistribution, start: int = 0, stop: int | None = None):
        """Draws ``start:stop`` of ``z ~ q`` for every row: ``(S', B, K)``.

        ``q`` is a diagonal Normal (batch ``(B,)``, event ``(K,)``), as the product of experts
        and refinement give, or a mixture of them (the JMVAE+ posterior), whose component is
        the one each row's cumulative weights put the draw's uniform in."""
        eps, u = self.eps[start:stop], self.uniform[start:stop]
        if isinstance(q, dist.MixtureSameFamily):
            cdf = q.mixture_distribution.probs.cumsum(-1)  # (B, C)
            # u in [0, total): a component of weight 0 is never picked, whatever the rounding
            u = u.unsqueeze(-1) * cdf[..., -1:]
            pick = (u >= cdf).sum(-1).clamp(max=cdf.shape[-1] - 1)  # (S, B)
            comp = q.component_distribution.base_dist  # loc, scale: (B, C, K)
            index = pick.unsqueeze(-1).expand(-1, -1, eps.shape[-1]).unsqueeze(-2)
            loc = comp.loc.expand(len(eps), *comp.loc.shape).gather(-2, index).squeeze(-2)
            scale = comp.scale.expand(len(eps), *comp.scale.shape).gather(-2, index).squeeze(-2)
            return loc + scale * eps
        if not (
            isinstance(q, torch.distributions.Independent)
            and isinstance(q.base_dist, torch.distributions.Normal)
        ):
            raise TypeError(f"q must be a diagonal Normal or a mixture of them, got {q!r}")
        return q.base_dist.loc + q.base_dist.scale * eps
