"""The learned sparsity as a posterior: ArviZ ``InferenceData`` of the links, the probability
that each is active, and recovery of a known support. (Figures: :mod:`pyro_factvae.plotting`.)"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .checks import number, positive_int, seed_int
from .estimator import FactVAE
from .validation import is_dataframe

__all__ = [
    "active_probability",
    "sparsity_posterior",
    "support_recovery",
    "to_inference_data",
]


def to_inference_data(
    vae: FactVAE,
    num_draws: int = 1000,
    num_chains: int = 2,
    seed: int = 0,
    active_factor: float = 3.0,
):
    """The posterior of the sparsity structure as :class:`arviz.InferenceData`.

    Posterior variables, each with dims ``("group", "latent")`` (coordinates: the group names
    and ``z0 .. z{K-1}``):

    ``column_norm``
        ``||Phi_g[:, j]||_2``. With prox-MAP training (``phi_inference="prox"``) ``Phi`` is a
        point estimate, so this is the same in every draw; with ``"variational"`` it is the
        norm of a draw from ``q(Phi)``.
    ``gamma_sq``
        Prox mode: draws from the exact conditional posterior ``p(gamma_sq | Phi)``
        (:func:`~pyro_factvae.module.priors.conditional_sample`; the full data's rate
        ``N lam v_g``, ``v_g`` the group's number of variables).
        Variational mode: draws from ``q(gamma_sq)``.
    ``active``
        ``1`` where the link is on in that draw, else ``0``. Prox mode: ``column_norm > 0``
        (an exact zero). Variational mode: ``column_norm`` exceeds ``active_factor`` times
        ``sqrt(sum_i s_ij^2)``, the norm a column of pure posterior noise (``q``'s scales
        ``s``) would have; its mean over draws is the posterior probability of the link.
        ``active_factor`` must be a finite number above 0 (prox mode does not use it).

    ``arviz.summary``, ``arviz.plot_forest`` and ``arviz.plot_posterior`` work on it directly.
    Needs ``lam > 0`` (with ``lam = 0`` the prior on ``Phi`` is flat).
    """
    import arviz as az

    positive_int("num_draws", num_draws)
    positive_int("num_chains", num_chains)
    seed_int(seed)
    active_factor = number("active_factor", active_factor, strict=True)
    model, guide = vae.fitted_modules()
    if model.config.lam <= 0:
        raise ValueError("to_inference_data needs a model fitted with lam > 0")
    names, k = list(model.layout.names), model.latent_dim
    total = num_chains * num_draws
    gen = torch.Generator().manual_seed(seed)
    draws = guide.phi_posterior.draws(
        list(guide.Phi), model.lam_totals(), total, gen, active_factor
    )
    layout = model.layout
    norms, gamma, active = (
        layout.scatter_axis([d[i] for d in draws], dim=1).cpu().numpy() for i in range(3)
    )
    shape = (num_chains, num_draws, len(names), k)
    posterior = {
        "column_norm": norms.reshape(shape),
        "gamma_sq": gamma.reshape(shape),
        "active": active.reshape(shape).astype(np.int8),  # numbers: ArviZ takes quantiles
    }
    dims = {v: ["group", "latent"] for v in posterior}
    coords = {"group": names, "latent": [f"z{j}" for j in range(k)]}
    return az.from_dict(posterior=posterior, coords=coords, dims=dims)


def sparsity_posterior(idata: Any) -> Any:
    """The ``posterior`` group of ``idata``, checked to be what :func:`to_inference_data`
    returns (its variables ``column_norm``, ``gamma_sq`` and ``active``, dims ``group`` and
    ``latent``); else a ``ValueError`` that says what to give."""
    post = getattr(idata, "posterior", None)
    wanted = ("column_norm", "gamma_sq", "active")
    ok = post is not None and all(v in post for v in wanted)
    if ok:
        ok = all(set(post[v].dims) == {"chain", "draw", "group", "latent"} for v in wanted)
    if not ok:
        raise ValueError(
            "give what to_inference_data(vae) returns: an InferenceData whose posterior has "
            f"{list(wanted)} over (chain, draw, group, latent), got {type(idata).__name__} "
            "(to show some groups, plot it whole; .sel(group=[...]) keeps the group axis)"
        )
    return post


def active_probability(idata: Any):
    """Posterior probability that each link is active: the mean of ``active`` over draws.

    Returns a ``G x K`` pandas DataFrame (groups by latents) from
    :func:`~pyro_factvae.analysis.to_inference_data`.
    """
    import pandas as pd

    post = sparsity_posterior(idata)
    p = post["active"].mean(("chain", "draw"))
    return pd.DataFrame(
        p.values,
        index=pd.Index([str(g) for g in post["group"].values], name="group"),
        columns=[str(j) for j in post["latent"].values],
    )


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties)."""
    from scipy.stats import rankdata

    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _support(truth: Any) -> np.ndarray:
    """``truth`` as a bool array: booleans, or the numbers 0 and 1."""
    t = np.asarray(truth)
    if t.dtype == bool:
        return t
    try:
        values = t.astype(float)
    except (TypeError, ValueError):
        values = np.array([np.nan])
    if not np.isin(values, (0.0, 1.0)).all():
        raise ValueError(
            "truth must be the true support: booleans, or 0 and 1 (True or 1 = a link); give "
            "e.g. truth != 0 for a matrix of loadings"
        )
    return values.astype(bool)


def support_recovery(scores: Any, truth: Any, threshold: float = 0.0) -> dict[str, Any]:
    """Compare a fitted link map with a known support, up to a relabelling of the latents.

    The latents of a fitted model are exchangeable, so each true latent is first matched to one
    fitted latent (Hungarian assignment maximising ``sum_g s_gj t_gi + (1 - s_gj)(1 - t_gi)``
    on scores scaled to [0, 1]); true latents beyond the fitted ``K`` and fitted latents left
    over are compared with all-absent columns.

    Parameters
    ----------
    scores : DataFrame or array-like
        ``G x K_fit``: a posterior probability of being active (:func:`active_probability`),
        a column-norm map (:meth:`~pyro_factvae.FactVAE.sparsity`), or any score that is higher for
        links.
    truth : DataFrame or array-like of bool
        ``G x K_true`` true support (e.g. ``support`` of
        :class:`~pyro_factvae.tools.simulate.Simulation`).
    threshold : float
        A link is found where its score is above it: 0 for a prox fit's column norms (whose
        absent links are exact zeros), e.g. 0.5 for :func:`active_probability`.

    Returns
    -------
    dict
        ``auc`` (of ``scores`` against the matched truth), ``zeros_match`` (fraction of links
        where ``scores > threshold`` equals the truth), ``f1`` (of the links with
        ``scores > threshold`` against the true links: twice the
        links both found and true over the found plus the true), ``assignment`` (fitted
        latent matched to each true latent; -1 where the model has fewer latents than the
        truth and none is left for it), and the matched ``truth`` as a ``G x K_fit`` bool
        array. Two DataFrames are matched by their group labels (the index).
    """
    from scipy.optimize import linear_sum_assignment

    if is_dataframe(scores) and is_dataframe(truth):  # rows matched by their group labels
        for name, frame in (("scores", scores), ("truth", truth)):
            if frame.index.has_duplicates:
                repeated = list(dict.fromkeys(frame.index[frame.index.duplicated()]))
                raise ValueError(f"the groups {repeated} of {name} repeat: give each group once")
        if set(scores.index) != set(truth.index):
            raise ValueError(
                f"scores' groups {list(scores.index)} differ from truth's {list(truth.index)}: "
                "give both for the same groups"
            )
        truth = truth.loc[scores.index]
    try:
        s = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("scores must be numbers (a G x K array or DataFrame)") from None
    t = _support(truth)
    if s.ndim != 2 or t.ndim != 2 or s.shape[0] != t.shape[0] or 0 in s.shape + t.shape:
        raise ValueError(
            f"scores {s.shape} and truth {t.shape} must be (groups, latents) with equal groups, "
            "neither empty"
        )
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite: a NaN or inf score cannot be ranked")
    k = max(s.shape[1], t.shape[1])
    s_pad = np.zeros((s.shape[0], k))
    s_pad[:, : s.shape[1]] = s
    t_pad = np.zeros((t.shape[0], k), dtype=bool)
    t_pad[:, : t.shape[1]] = t
    span = s_pad.max() - s_pad.min()
    u = (s_pad - s_pad.min()) / span if span > 0 else np.zeros_like(s_pad)
    agree = u.T @ t_pad + (1 - u).T @ (~t_pad)  # [fitted j, true i]
    fitted, true = linear_sum_assignment(-agree)
    matched = np.zeros_like(t_pad)
    matched[:, fitted] = t_pad[:, true]
    order = np.argsort(true)
    found = s_pad > number("threshold", threshold, low=-np.inf)
    found[:, s.shape[1] :] = False  # the padding is no latent of the model: never found
    hits = int((found & matched).sum())
    return {
        "auc": _auc(s_pad.ravel(), matched.ravel()),
        "zeros_match": float((found == matched).mean()),
        "f1": 2 * hits / max(int(found.sum()) + int(matched.sum()), 1),
        "assignment": [int(j) if j < s.shape[1] else -1 for j in fitted[order][: t.shape[1]]],
        "truth": matched[:, : s.shape[1]],
    }
