r"""The spread of the draws, measured on rows the fit held out.

A model fitted on few rows reconstructs them better than it predicts new ones: its learned
noise scales shrink towards its training residuals, and the draws of
:meth:`~pyro_factvae.FactVAE.impute` (and the intervals of
:meth:`~pyro_factvae.FactVAE.predict_interval`) come out narrower than its errors (on
nutrimouse's 32 training rows, central 90% intervals of hidden groups covered 45-85% of the
truth). The validation rows early stopping holds out are rows the final weights never
trained on: hiding each continuous group a validation row observes in turn (where the row
observes another group), and drawing it from the fitted model, gives the ratio of the
imputations' squared errors to the draws' variance,

    s^2 = (sum_c (xbar_c - y_c)^2 - sum_c v_c / M) / sum_c v_c,

over the hidden cells ``c`` in standardized units (``xbar_c`` and ``v_c`` the mean and
variance of the ``M`` draws; the ``v_c / M`` takes out the Monte Carlo error of ``xbar_c``).
Draws scaled by ``s`` about each row's imputed mean
(:func:`~pyro_factvae.module.draws.posterior_draws`' ``spread``) then have the spread of the
held-out errors: the variance (sigma) scaling of regression uncertainty (Levi et al. 2019;
Laves et al. 2020), one number for the model, fitted on held-out rows. The imputed means do
not change.

The spread only widens (``s >= 1``): early stopping kept the epoch that did best on these very
rows, so their errors are a little smaller than a new row's, and a ratio below 1 is no
evidence that the draws are too wide. On scikit-learn's wine (14 validation rows) it came out
below 1 on five splits of five, and the intervals it would have narrowed covered 86% of
hidden groups instead of 92% (``benchmarks/peers.py``, hide one; seeds 0-4).
"""

from __future__ import annotations

import math

import torch

from ..data import GroupedData
from ..module.draws import continuous_groups, posterior_draws
from ..module.guide import Guide
from ..module.model import Model
from ..module.predict import NUM_SAMPLES
from ..module.refine import REFINE_STEPS

__all__ = ["MAX_HIDDEN", "SPREAD_DRAWS", "held_out_spread"]

#: draws of each hidden group behind the spread
SPREAD_DRAWS = 50
#: at most this many (row, group) hides, a seeded choice among them beyond it
MAX_HIDDEN = 1000


def held_out_spread(
    model: Model,
    guide: Guide,
    valid: GroupedData,
    seed: int = 0,
    num_draws: int = SPREAD_DRAWS,
    max_hidden: int = MAX_HIDDEN,
) -> float:
    """The factor ``s >= 1`` by which the draws' spread matches the errors of hidden groups on
    ``valid`` (rows the model was not trained on); 1.0 where they are within the draws'
    spread, where nothing can be hidden (no validation row observes a continuous group and
    another group) or where the draws do not vary.
    Drawn as the queries draw by default (refined posteriors, 1,000 proposals), under
    ``seed``, without touching the global RNG."""
    real = torch.tensor(continuous_groups(model))
    seen = valid.observed
    pairs = (seen & real & (seen.sum(-1, keepdim=True) > 1)).nonzero()
    if len(pairs) == 0:
        return 1.0
    if len(pairs) > max_hidden:
        pick = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
        pairs = pairs[pick[:max_hidden].sort().values]
    rows, groups = pairs.unbind(-1)
    part = valid.subset(rows)
    full = part.cell_mask()
    owner = torch.repeat_interleave(torch.arange(part.num_groups), torch.tensor(part.dims))
    hidden = full & (owner == groups.unsqueeze(-1))
    held = part.with_mask(full & ~hidden)
    unit = torch.cat([u.detach().cpu() for u in model.units()]).double()
    truth = part.matrix.double() / unit
    error = variance = 0.0
    draws_of = posterior_draws(
        model,
        guide,
        held.values,
        held.observed,
        held.cells,
        num_draws,
        NUM_SAMPLES,
        seed,
        refine_steps=REFINE_STEPS,
    )
    for sl, draws, _ in draws_of:
        x, h = draws.double() / unit, hidden[sl]
        error += float(((x.mean(0) - truth[sl]) ** 2)[h].sum())
        variance += float(x.var(0)[h].sum())
    if not variance > 0:
        return 1.0
    return max(1.0, math.sqrt(max(error - variance / num_draws, 0.0) / variance))
