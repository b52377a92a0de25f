"""Importance-sampled scores of a fitted (model, guide): the engine behind
:mod:`pyro_factvae.metrics`, and the held-out criterion that chooses ``lam``.

Every score is vectorised over samples and rows in chunks of at most ``max_elements`` floats
per decoder output, and draws ``z`` under ``seed`` in a forked RNG (the global RNG is left
alone, results repeat).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..data import GroupedData
from ..rng import seeded
from .guide import Guide
from .model import Model
from .predict import MAX_ELEMENTS, predictive_means

__all__ = [
    "MAX_ELEMENTS",
    "held_out",
    "held_out_cell_error",
    "held_out_error",
    "held_out_errors",
    "held_out_mean_cell_error",
    "held_out_mean_error",
    "held_out_mean_errors",
    "held_out_score",
    "importance",
    "missing_cell_fraction",
    "reconstruction_score",
]


def _group_log_likelihoods(
    model: Model,
    guide: Guide,
    xs: Sequence[torch.Tensor],
    observed: torch.Tensor,
    z: torch.Tensor,
    cells: torch.Tensor | None,
    given: torch.Tensor | None = None,
    scored: torch.Tensor | None = None,
):
    """``log p(x_g | z)`` over the observed cells of every group, ``(S, B, G)``; ``z`` is
    ``(S, B, K)``, inferred from the groups ``given``. Missing groups are scored at an
    in-support placeholder; callers mask them out. ``scored``: the ``(B, G)`` groups being
    predicted; every other observed group of size factors sets its count groups' depth (a
    covariate, given or not)."""
    sources = None if scored is None else observed & ~scored
    return model.log_likelihoods(xs, observed, z, list(guide.Phi), cells, given, sources)


def _chunks(model: Model, num_samples: int, num_rows: int, max_elements: int):
    """Row and sample chunk sizes so that one chunk holds at most ``max_elements`` floats."""
    per_row = max(1, max_elements // model.row_floats)
    rows = max(1, min(num_rows, per_row // max(1, min(num_samples, per_row))))
    samples = max(1, min(num_samples, per_row // rows))
    return rows, samples


@torch.no_grad()
def importance(
    model: Model,
    guide: Guide,
    data: GroupedData,
    given: torch.Tensor,
    masks: Sequence[torch.Tensor],
    num_samples: int,
    seed: int,
    max_elements: int,
) -> list[torch.Tensor]:
    r"""``log (1/k) sum_s w_s prod_{g in mask} p(x_g | z_s)`` per row, for each mask.

    ``z_s ~ q(z | x_given)`` and ``w_s = p(x_given | z_s) p(z_s) / q(z_s | x_given)``; every
    group contributes its observed cells.
    """
    n = len(data)
    rows, samples = _chunks(model, num_samples, n, max_elements)
    results = [torch.empty(n, dtype=torch.float32) for _ in masks]
    scored = torch.stack(list(masks)).any(0)  # what is predicted lends no size factor
    normal = torch.distributions.Normal(0.0, 1.0)
    with seeded(model.device, seed):
        for start in range(0, n, rows):
            sl = slice(start, start + rows)
            dev = model.device  # computed where the model is, kept on the CPU
            xs = [x[sl].to(dev) for x in data.values]
            giv, obs = given[sl].to(dev), data.observed[sl].to(dev)
            cells = None if data.cells is None else data.cells[sl].to(dev)
            q = guide.posterior_dist(xs, giv, cells)
            acc: list[list[torch.Tensor]] = [[] for _ in masks]
            out = scored[sl].to(dev)
            for s0 in range(0, num_samples, samples):
                z = q.sample((min(samples, num_samples - s0),))
                ll = _group_log_likelihoods(model, guide, xs, obs, z, cells, giv, out)  # (S, B, G)
                log_w = normal.log_prob(z).sum(-1) - q.log_prob(z)
                log_w = log_w + torch.where(giv, ll, 0.0).sum(-1)
                for a, m in zip(acc, masks):
                    keep = m[sl].to(dev)
                    a.append(torch.logsumexp(log_w + torch.where(keep, ll, 0.0).sum(-1), 0))
            for r, a in zip(results, acc):
                r[sl] = (torch.logsumexp(torch.stack(a), 0) - math.log(num_samples)).cpu()
    return results


@torch.no_grad()
def reconstruction_score(
    model: Model,
    guide: Guide,
    data: GroupedData,
    given: torch.Tensor,
    targets: torch.Tensor,
    seed: int,
    max_elements: int,
) -> torch.Tensor:
    """``sum_{g in targets} log p(x_g | z)`` over the observed cells, with **one** ``z ~ q(z |
    x_given)`` per row (Table 1's metric): ``(N,)`` on the CPU, rows in chunks of at most
    ``max_elements`` floats."""
    n = len(data)
    rows, _ = _chunks(model, 1, n, max_elements)
    out = torch.empty(n, dtype=torch.float32)
    dev = model.device
    with seeded(dev, seed):
        for start in range(0, n, rows):
            sl = slice(start, start + rows)
            xs = [x[sl].to(dev) for x in data.values]
            giv, obs = given[sl].to(dev), data.observed[sl].to(dev)
            cells = None if data.cells is None else data.cells[sl].to(dev)
            z = guide.posterior_dist(xs, giv, cells).sample((1,))
            tgt = targets[sl].to(dev)
            ll = _group_log_likelihoods(model, guide, xs, obs, z, cells, giv, tgt)[0]
            out[sl] = torch.where(tgt, ll, 0.0).sum(-1).cpu()
    return out


def held_out(data: GroupedData) -> Iterator[tuple[int, str, GroupedData]]:
    """``(g, name, rows)`` for each group: the rows where it and some other group are observed."""
    for g, name in enumerate(data.names):
        rows = data.observed[:, g] & (data.observed.sum(-1) > 1)
        if bool(rows.any()):
            yield g, name, data.subset(rows.nonzero().squeeze(-1))


def held_out_score(
    model: Model,
    guide: Guide,
    data: GroupedData,
    num_samples: int = 100,
    seed: int = 0,
    max_elements: int = MAX_ELEMENTS,
) -> np.ndarray:
    """Each group held out in turn: ``log p(x_g | x_rest)`` per (row, group) pair, in nats
    (self-normalised importance sampling with proposal ``q(z | x_rest)``); average it for the
    score."""
    scores = []
    for g, _, sub in held_out(data):
        tgt = torch.zeros_like(sub.observed)
        tgt[:, g] = True
        given = sub.observed & ~tgt
        joint, marginal = importance(
            model, guide, sub, given, [tgt, torch.zeros_like(tgt)], num_samples, seed, max_elements
        )
        scores.append((joint - marginal).double().numpy())
    if not scores:
        raise ValueError("no row has two observed groups: nothing can be held out")
    return np.concatenate(scores)


def _network_units(model: Model, g: int, x: torch.Tensor) -> torch.Tensor:
    """Group ``g``'s values ``(n, d_g)`` in the units its networks see (standardized for
    normal groups, as they are for bernoulli and categorical ones)."""
    b, i = model.layout.locate(g)
    block = model.layout.blocks[b]
    full = x.new_zeros(x.shape[0], len(block.groups), block.dim)
    full[:, i, : x.shape[-1]] = x
    return model.likelihoods[b].to_network(full)[:, i, : x.shape[-1]]


def _squared_errors(model: Model, g: int, data: GroupedData, pred: torch.Tensor) -> np.ndarray:
    """Per row of ``data``, the mean squared error of ``pred`` (group ``g``'s predictions in
    network units) over the group's observed cells, in network units."""
    dev = model.device
    sq = (pred - _network_units(model, g, data.values[g].to(dev))).double().square()
    if data.cells is None:
        sq = sq.mean(-1)
    else:
        seen = data.group_cells(g).to(dev)
        sq = sq.where(seen, 0.0).sum(-1) / seen.sum(-1)
    return sq.cpu().numpy()


@torch.no_grad()
def held_out_error(
    model: Model, guide: Guide, data: GroupedData, num_samples: int = 20, seed: int = 0
) -> np.ndarray:
    """Each group held out in turn: the mean squared error of its posterior-predictive mean
    given the other observed groups, per (row, group) pair, averaged over the group's
    observed cells in network units (each normal feature divided by its training standard
    deviation; the Brier score for bernoulli and categorical groups)."""
    scores = []
    for g, _, sub in held_out(data):
        given = sub.observed.clone()
        given[:, g] = False
        # each row drawn from the query's stream: an average of independent errors
        (pred,) = predictive_means(
            model, guide, sub.values, given, [g], num_samples, seed, sub.cells, row_noise=False
        )
        scores.append(
            _squared_errors(model, g, sub, _network_units(model, g, pred.to(model.device)))
        )
    if not scores:
        raise ValueError("no row has two observed groups: nothing can be held out")
    return np.concatenate(scores)


@torch.no_grad()
def held_out_mean_error(
    model: Model, train: GroupedData, data: GroupedData, max_rows: int = 2**16
) -> np.ndarray:
    """:func:`held_out_error` of the mean imputation, on the same (row, group) pairs: each
    group predicted by its mean over the observed cells of ``train`` (in network units), the
    imputation of a model whose every link is pruned (the end of a ``lam`` path). The
    training rows are read in chunks of ``max_rows``."""
    scores = []
    for g, _, sub in held_out(data):
        mean = _train_mean(model, train, g, max_rows)
        scores.append(_squared_errors(model, g, sub, mean.expand(len(sub), -1)))
    if not scores:
        raise ValueError("no row has two observed groups: nothing can be held out")
    return np.concatenate(scores)


def _train_mean(model: Model, train: GroupedData, g: int, max_rows: int = 2**16) -> torch.Tensor:
    """Group ``g``'s mean over the observed cells of ``train``, in network units (0 where no
    training row saw a cell: the standardized mean)."""
    dev = model.device
    rows = train.observed[:, g].nonzero().squeeze(-1)
    total = torch.zeros(train.dims[g], dtype=torch.float64, device=dev)
    count = torch.zeros(train.dims[g], dtype=torch.float64, device=dev)
    for first in range(0, len(rows), max_rows):  # chunks: the training rows stay put
        idx = rows[first : first + max_rows]
        net = _network_units(model, g, train.values[g][idx].to(dev)).double()
        seen = train.group_cells(g)[idx].to(dev)
        total += net.where(seen, 0.0).sum(0)
        count += seen.sum(0)
    return (total / count.clamp(min=1)).float()


def missing_cell_fraction(data: GroupedData) -> float:
    """The share of the cells of observed groups that are missing (0 without cell masks)."""
    if data.cells is None:
        return 0.0
    whole = data.observed.repeat_interleave(torch.tensor(data.dims), dim=1)
    return 1.0 - float(data.cells.sum()) / max(1.0, float(whole.sum()))


def _hidden_cells(
    data: GroupedData, fraction: float, seed: int, model: Model
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(given, hidden)`` ``(N, sum d_g)`` cell masks: each observed cell hidden with
    probability ``fraction`` (drawn under ``seed``), every row keeping at least one; the
    columns of a group that is one value (a categorical group's one-hot label) are hidden
    together, by its first column's draw."""
    seen = data.cell_mask()
    draw = torch.rand(seen.shape, generator=torch.Generator().manual_seed(seed))
    unit = torch.arange(seen.shape[1])  # the column whose draw each column takes
    start = 0
    for whole, dim in zip(model.layout.whole, model.layout.dims):
        if whole:
            unit[start : start + dim] = start
        start += dim
    hidden = seen & (draw[:, unit] < fraction)
    lost = seen.any(-1) & ~(seen & ~hidden).any(-1)
    first = unit[seen.float().argmax(-1)]  # the first observed cell, with its label's others
    hidden[lost] &= unit != first[lost].unsqueeze(-1)
    return seen & ~hidden, hidden


def _cell_errors(model, data, hidden, predict) -> np.ndarray:
    """Per (row, group) pair with hidden cells, the mean squared error of ``predict(g)``
    (``(N, d_g)`` in network units) over them."""
    dev = model.device
    per_group = model.layout.split_cells(hidden)
    scores = []
    for g, hid in enumerate(per_group):
        rows = hid.any(-1)
        if not bool(rows.any()):
            continue
        truth = _network_units(model, g, data.values[g][rows].to(dev))
        sq = (predict(g, rows) - truth).double().square()
        h = hid[rows].to(dev)
        scores.append((sq.where(h, 0.0).sum(-1) / h.sum(-1)).cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


@torch.no_grad()
def held_out_cell_error(
    model: Model,
    guide: Guide,
    data: GroupedData,
    fraction: float,
    num_samples: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """Cells held out: in every row each observed cell is hidden with probability
    ``fraction`` (a row keeps at least one; drawn under ``seed``), and predicted from the
    cells left (posterior-predictive means). Per (row, group) pair with a hidden cell, the
    mean squared error over its hidden cells, in network units: the task of data that miss
    single cells, which whole held-out groups do not score (a map that predicts each group
    from the others with few latents can fill single cells poorly)."""
    given, hidden = _hidden_cells(data, fraction, seed, model)
    groups = model.layout.groups_seen(given)
    names = range(len(data.names))
    preds = predictive_means(
        model, guide, data.values, groups, list(names), num_samples, seed, given, row_noise=False
    )

    def predict(g: int, rows: torch.Tensor) -> torch.Tensor:
        return _network_units(model, g, preds[g][rows].to(model.device))

    return _cell_errors(model, data, hidden, predict)


@torch.no_grad()
def held_out_mean_cell_error(
    model: Model, train: GroupedData, data: GroupedData, fraction: float, seed: int = 0
) -> np.ndarray:
    """:func:`held_out_cell_error` of the mean imputation, on the same hidden cells (each
    predicted by its column's mean over the observed cells of ``train``)."""
    _, hidden = _hidden_cells(data, fraction, seed, model)
    means = [_train_mean(model, train, g) for g in range(len(data.names))]

    def predict(g: int, rows: torch.Tensor) -> torch.Tensor:
        return means[g].expand(int(rows.sum()), -1)

    return _cell_errors(model, data, hidden, predict)


def held_out_errors(
    model: Model,
    guide: Guide,
    data: GroupedData,
    fraction: float,
    num_samples: int = 20,
    seed: int = 0,
) -> np.ndarray:
    """The criterion ``lam="auto"`` chooses by: :func:`held_out_error` of every (row, group)
    pair, and where the data miss cells (``fraction``, their share:
    :func:`missing_cell_fraction` of the training rows) :func:`held_out_cell_error` of that
    share of the cells too."""
    errors = held_out_error(model, guide, data, num_samples, seed)
    if fraction > 0:
        cells = held_out_cell_error(model, guide, data, fraction, num_samples, seed)
        errors = np.concatenate([errors, cells])
    return errors


def held_out_mean_errors(
    model: Model, train: GroupedData, data: GroupedData, seed: int = 0
) -> np.ndarray:
    """The mean imputation's errors on the pairs of :func:`held_out_errors`."""
    errors = held_out_mean_error(model, train, data)
    fraction = missing_cell_fraction(train)
    if fraction > 0:
        cells = held_out_mean_cell_error(model, train, data, fraction, seed)
        errors = np.concatenate([errors, cells])
    return errors
