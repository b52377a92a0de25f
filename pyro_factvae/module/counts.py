"""Count likelihoods: ``"poisson"`` and ``"negative_binomial"`` (registered in
:data:`~pyro_factvae.registry.LIKELIHOODS`), for the read counts of omics and other tallies.

Counts are not z-scored. Their scale is carried by a per-feature log-mean ``log_mean``
(a buffer, each feature's log mean count over its observed training cells, set by
``init_from_data``): the decoder's output ``out`` is the log-rate relative to it, and, with
``FactVAE(library_size=...)``, a per-row log size factor ``log s_i`` is added to it:

    rate = s_i exp(log_mean + out)
    x ~ Poisson(rate)                                   ("poisson")
    x ~ NegativeBinomial(mean = rate, dispersion r)     ("negative_binomial")

with a learned per-feature dispersion ``r`` (variance ``rate + rate^2 / r``). ``s_i`` comes
from the row's own observed counts of the group (``library_size="data"``: the rates of its
observed cells sum to their observed total, so the decoder gives the row's profile and its
counts its depth, as scVI's observed library size) or is given (a one-column group of size
factors, 1 for a typical row). A row whose counts are all hidden
(a missing group) is imputed at its given size factor, else at a typical one. The encoders
see ``log1p(x)`` standardized by its training mean and standard deviation. Posterior-
predictive means are rates (real numbers); draws are whole counts.
"""

from __future__ import annotations

from typing import Any

import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from ..registry import LIKELIHOODS
from .likelihoods import Likelihood, inverse_softplus, masked_event

__all__ = ["CountLikelihood", "NegativeBinomialLikelihood", "PoissonLikelihood"]

#: the smallest mean count a feature's ``log_mean`` starts from (an all-zero feature)
MIN_MEAN = 1e-3
#: the ``log_mean`` of a feature with no observed count, or only zeros (float32)
NO_DATA_LOG_MEAN = float(torch.tensor(MIN_MEAN, dtype=torch.float64).log().float())


class CountLikelihood(Likelihood):
    """What both count families share: the log-mean offset, the encoders' units, the check,
    and the rows' library sizes."""

    #: the count families take a per-row library-size offset (``library_size=``)
    counts = True

    def __init__(self, num_groups: int, dim: int) -> None:
        super().__init__(num_groups, dim)
        self.register_buffer("log_mean", torch.zeros(num_groups, dim))
        self.register_buffer("log1p_shift", torch.zeros(num_groups, dim))
        self.register_buffer("log1p_unit", torch.ones(num_groups, dim))

    @torch.no_grad()
    def init_from_data(self, xs: list[torch.Tensor], observed: list[torch.Tensor]) -> None:
        """``log_mean`` and the ``log1p`` standardization from each feature's observed cells."""
        for i, (x, obs) in enumerate(zip(xs, observed)):
            self.log_mean[i], self.log1p_shift[i], self.log1p_unit[i] = _scales(x, obs)

    @torch.no_grad()
    def keep_varying(
        self, xs: list[torch.Tensor], observed: list[torch.Tensor], ranges: list[Any]
    ) -> None:
        """A feature whose ``log_mean`` and ``log1p`` standardization the fits so far could not
        set (seen in no row, or one value in all: its training range one value or empty) that
        varies in these data, or holds another value, takes them from these data."""
        for i, (x, obs, (low, high, seen)) in enumerate(zip(xs, observed, ranges)):
            w = x.shape[-1]
            old_low, old_high = self.low[i, :w].cpu().double(), self.high[i, :w].cpu().double()
            # one value, or none: an empty range (inf, -inf) where the scales are still those
            # of no data (a file written before ranges were kept has empty ranges throughout)
            blank = (self.log_mean[i, :w] == NO_DATA_LOG_MEAN) & (self.log1p_shift[i, :w] == 0)
            blank = (blank & (self.log1p_unit[i, :w] == 1)).cpu()
            stale = (old_low == old_high) | ((old_low > old_high) & blank)
            freed = (stale & ((high > low) | ((seen > 0) & (low != old_low)))).to(self.log_mean)
            for buffer, new in zip(
                (self.log_mean, self.log1p_shift, self.log1p_unit), _scales(x, obs)
            ):
                buffer[i, :w] = torch.where(freed > 0, new.to(buffer), buffer[i, :w])

    @staticmethod
    def log_total(x: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        """``(B, G_b)``: the log of each row's total over its ``seen`` (bool, like ``x``)
        counts (a total under half a count reads as half a count)."""
        return x.where(seen, 0.0).sum(-1).clamp(min=0.5).log()

    def depth(self, out: torch.Tensor, log_total: torch.Tensor, seen: torch.Tensor):
        """``(..., B, G_b)``: the log offset that makes the rates of a row's ``seen`` cells
        sum to its observed total ``exp(log_total)``: the decoder gives the row's profile,
        its counts its depth (scVI's observed library size); 0 where nothing is seen."""
        logits = (self.log_mean + out).masked_fill(~seen, -torch.inf)
        norm = torch.logsumexp(logits, -1)
        return torch.where(seen.any(-1), log_total - norm, torch.zeros_like(norm))

    def to_network(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.log1p(x.clamp(min=0)) - self.log1p_shift) / self.log1p_unit

    def log_rate(self, out: torch.Tensor) -> torch.Tensor:
        return self.log_mean + out

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        return self.log_rate(out).exp()

    @classmethod
    def check(
        cls, name: str, x: torch.Tensor, observed: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        seen = observed.unsqueeze(-1).expand_as(x) if cells is None else cells
        bad = ((x < 0) | (x != x.round())) & seen
        if bool(bad.any()):
            rows = bad.any(-1).nonzero().squeeze(-1)[:5].tolist()
            raise ValueError(
                f"group {name!r} has the {cls.name!r} likelihood but rows {rows} hold values "
                "that are not whole counts >= 0; give counts, or use 'normal' (e.g. on "
                "log1p of the data)"
            )


def _scales(x: torch.Tensor, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Each feature's log mean count (at least :data:`MIN_MEAN`) and the mean and standard
    deviation of its ``log1p`` (1 where it does not vary) over its observed cells, float32."""
    seen = (obs.unsqueeze(-1) if obs.dim() == 1 else obs).expand_as(x)
    count = seen.sum(0).clamp(min=1).double()
    mean = x.double().where(seen, 0.0).sum(0) / count
    logs = torch.log1p(x.double()).where(seen, 0.0)
    shift = logs.sum(0) / count
    var = (logs - shift).where(seen, 0.0).square().sum(0) / (count - 1).clamp(min=1)
    unit = torch.where(var > 0, var.sqrt(), torch.ones_like(var))
    return mean.clamp(min=MIN_MEAN).log().float(), shift.float(), unit.float()


@LIKELIHOODS.register("poisson")
class PoissonLikelihood(CountLikelihood):
    """``x ~ Poisson(exp(log_mean + out))``; observed values must be whole counts >= 0."""

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        rate = self.mean(out)
        return [masked_event(dist.Poisson(rate[..., i, :]), cells, i) for i in range(out.shape[-2])]

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        log_rate = self.log_rate(out)
        z = x * log_rate - log_rate.exp() - torch.lgamma(x + 1)
        return (z if cells is None else z.where(cells, 0.0)).sum(-1)


@LIKELIHOODS.register("negative_binomial")
class NegativeBinomialLikelihood(CountLikelihood):
    """``x ~ NegativeBinomial(mean = exp(log_mean + out), dispersion r)``, a learned ``r`` per
    feature (variance ``mean + mean^2 / r``; ``r`` starts at 10)."""

    def __init__(self, num_groups: int, dim: int, init_dispersion: float = 10.0) -> None:
        super().__init__(num_groups, dim)
        raw = inverse_softplus(torch.tensor(init_dispersion))
        self.raw_dispersion = nn.Parameter(torch.full((num_groups, dim), float(raw)))

    @property
    def dispersion(self) -> torch.Tensor:
        """``r`` per feature (``total_count`` of torch's parameterisation)."""
        return softplus(self.raw_dispersion) + 1e-4

    def dists(
        self, out: torch.Tensor, cells: torch.Tensor | None = None
    ) -> list[dist.TorchDistribution]:
        r = self.dispersion
        logits = self.log_rate(out) - r.log()
        return [
            masked_event(
                dist.NegativeBinomial(total_count=r[i], logits=logits[..., i, :]), cells, i
            )
            for i in range(out.shape[-2])
        ]

    def log_prob(
        self, out: torch.Tensor, x: torch.Tensor, cells: torch.Tensor | None = None
    ) -> torch.Tensor:
        r = self.dispersion
        log_mu = self.log_rate(out)
        log_r_mu = torch.logaddexp(r.log(), log_mu)  # log(r + mu)
        z = (
            torch.lgamma(x + r)
            - torch.lgamma(r)
            - torch.lgamma(x + 1)
            + r * (r.log() - log_r_mu)
            + x * (log_mu - log_r_mu)
        )
        return (z if cells is None else z.where(cells, 0.0)).sum(-1)
