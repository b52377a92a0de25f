"""Looking at the learned sparsity: the group x latent map of ``||Phi_g[:, j]||`` (Fig 2/4), and
its posterior as ArviZ ``InferenceData``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = [
    "active_probability",
    "plot_link_intervals",
    "plot_sparsity",
    "support_recovery",
    "to_inference_data",
]


def plot_sparsity(
    norms: Any,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    ax: Any = None,
):
    """Heatmap of a group x latent sparsity map; exact zeros are left blank.

    Parameters
    ----------
    norms : pandas.DataFrame or array-like
        ``G x K`` column norms, e.g. :meth:`FactVAE.sparsity` (its index gives group names).
    title : str, optional
        Axes title.
    path : path-like, optional
        Write the figure there as PNG.
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # no pyplot: works headless, leaves the backend alone

    values = np.asarray(norms, dtype=float)
    groups = list(getattr(norms, "index", range(values.shape[0])))
    latents = list(getattr(norms, "columns", [f"z{j}" for j in range(values.shape[1])]))
    if ax is None:
        fig = Figure(figsize=(0.45 * len(latents) + 2.5, 0.45 * len(groups) + 1.2))
        ax = fig.subplots()
    else:
        fig = ax.figure
    shown = np.ma.masked_equal(values, 0.0)  # exact zeros: blank
    image = ax.imshow(shown, cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_facecolor("white")
    ax.set_xticks(range(len(latents)), latents, rotation=90)
    ax.set_yticks(range(len(groups)), [str(g) for g in groups])
    ax.set_xlabel("latent dimension")
    if title:
        ax.set_title(title)
    fig.colorbar(image, ax=ax, label="||Phi_g[:, j]||")
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def to_inference_data(
    vae: Any,
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
        (:func:`~pyro_factvae.priors.conditional_sample`; full-data scale ``N lam``).
        Variational mode: draws from ``q(gamma_sq)``.
    ``active``
        ``1`` where the link is on in that draw, else ``0``. Prox mode: ``column_norm > 0``
        (an exact zero). Variational mode: ``column_norm`` exceeds ``active_factor`` times
        ``sqrt(sum_i s_ij^2)``, the norm a column of pure posterior noise (``q``'s scales
        ``s``) would have; its mean over draws is the posterior probability of the link.

    ``arviz.summary``, ``arviz.plot_forest`` and ``arviz.plot_posterior`` work on it directly.
    Needs ``lam > 0`` (with ``lam = 0`` the prior on ``Phi`` is flat).
    """
    import arviz as az
    import torch
    from torch.nn.functional import softplus

    from .priors import column_norms, conditional_sample

    model, guide = vae._fitted()
    if model.lam <= 0:
        raise ValueError("to_inference_data needs a model fitted with lam > 0")
    names, k = list(model.layout.names), model.latent_dim
    total = num_chains * num_draws
    gen = torch.Generator().manual_seed(seed)
    norms = np.zeros((total, len(names), k))
    gamma = np.zeros((total, len(names), k))
    active = np.zeros((total, len(names), k), dtype=np.int64)
    with torch.no_grad():
        for b, (block, phi) in enumerate(zip(model.layout.blocks, guide.Phi)):
            rows = list(block.groups)
            if guide.phi_inference == "prox":
                norm = column_norms(phi).double().expand(total, *phi.shape[::2])
                lam_total = model.lam_total(vae.num_data_)
                gamma[:, rows] = conditional_sample(phi, lam_total, total, gen).numpy()
                on = norm > 0
            else:
                scale = softplus(guide.Phi_scale[b]).double()
                eps = torch.randn((total, *phi.shape), generator=gen, dtype=torch.float64)
                norm = column_norms(phi.double() + scale * eps)
                on = norm > active_factor * column_norms(scale)
                g_loc, g_scale = (
                    guide.gamma_loc[b].double(),
                    softplus(guide.gamma_scale[b]).double(),
                )
                g_eps = torch.randn((total, *g_loc.shape), generator=gen, dtype=torch.float64)
                gamma[:, rows] = (g_loc + g_scale * g_eps).exp().numpy()
            norms[:, rows] = norm.numpy()
            active[:, rows] = on.numpy()
    shape = (num_chains, num_draws, len(names), k)
    posterior = {
        "column_norm": norms.reshape(shape),
        "gamma_sq": gamma.reshape(shape),
        "active": active.reshape(shape),
    }
    dims = {v: ["group", "latent"] for v in posterior}
    coords = {"group": names, "latent": [f"z{j}" for j in range(k)]}
    return az.from_dict(posterior=posterior, coords=coords, dims=dims)


def plot_link_intervals(
    idata: Any,
    var: str = "column_norm",
    prob: float = 0.9,
    path: str | os.PathLike | None = None,
):
    """Per-link posterior intervals of ``var`` from :func:`to_inference_data`, one panel per group.

    Each (group, latent) link gets its posterior median and central ``prob`` interval; links
    whose posterior probability of being active (mean of ``active``) is below 0.5 are grey.

    Returns
    -------
    matplotlib.figure.Figure
        Also written to ``path`` as PNG when given.
    """
    from matplotlib.figure import Figure

    if not 0 < prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    post = idata.posterior
    if var not in post:
        raise ValueError(f"no variable {var!r} in the posterior; have {list(post.data_vars)}")
    draws = post[var].stack(sample=("chain", "draw")).transpose("sample", "group", "latent")
    values = draws.values
    lo, mid, hi = np.quantile(values, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=0)
    p_active = post["active"].mean(("chain", "draw")).values
    groups, latents = list(post["group"].values), list(post["latent"].values)
    fig = Figure(figsize=(4.0 * len(groups), 0.3 * len(latents) + 1.2))
    axes = np.atleast_1d(fig.subplots(1, len(groups), sharex=True, sharey=True))
    y = np.arange(len(latents))
    for g, (ax, name) in enumerate(zip(axes, groups)):
        colors = np.where(p_active[g] >= 0.5, "tab:blue", "0.6")
        ax.hlines(y, lo[g], hi[g], colors=colors, lw=2)
        ax.scatter(mid[g], y, c=colors, s=12, zorder=3)
        ax.set_title(str(name), fontsize=9)
        ax.set_yticks(y, [str(v) for v in latents])
        ax.set_xlabel(f"{var} ({prob:.0%} interval)")
    axes[0].invert_yaxis()
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def active_probability(idata: Any):
    """Posterior probability that each link is active: the mean of ``active`` over draws.

    Returns a ``G x K`` pandas DataFrame (groups by latents) from :func:`to_inference_data`.
    """
    import pandas as pd

    post = idata.posterior
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


def support_recovery(scores: Any, truth: Any) -> dict[str, Any]:
    """Compare a fitted link map with a known support, up to a relabelling of the latents.

    The latents of a fitted model are exchangeable, so each true latent is first matched to one
    fitted latent (Hungarian assignment maximising ``sum_g s_gj t_gi + (1 - s_gj)(1 - t_gi)``
    on scores scaled to [0, 1]); true latents beyond the fitted ``K`` and fitted latents left
    over are compared with all-absent columns.

    Parameters
    ----------
    scores : DataFrame or array-like
        ``G x K_fit``: a posterior probability of being active (:func:`active_probability`),
        a column-norm map (:meth:`FactVAE.sparsity`), or any score that is higher for links.
    truth : DataFrame or array-like of bool
        ``G x K_true`` true support (e.g. :attr:`~pyro_factvae.simulate.Simulation.support`).

    Returns
    -------
    dict
        ``auc`` (of ``scores`` against the matched truth), ``zeros_match`` (fraction of links
        where ``scores > 0`` equals the truth; for prox fits, whose absent links are exact
        zeros), ``assignment`` (fitted latent matched to each true latent), and the matched
        ``truth`` as a ``G x K_fit`` bool array.
    """
    from scipy.optimize import linear_sum_assignment

    s = np.asarray(scores, dtype=float)
    t = np.asarray(truth).astype(bool)
    if s.ndim != 2 or t.ndim != 2 or s.shape[0] != t.shape[0]:
        raise ValueError(
            f"scores {s.shape} and truth {t.shape} must be (groups, latents) with equal groups"
        )
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
    return {
        "auc": _auc(s_pad.ravel(), matched.ravel()),
        "zeros_match": float(((s_pad > 0) == matched).mean()),
        "assignment": fitted[order][: t.shape[1]].tolist(),
        "truth": matched[:, : s.shape[1]],
    }
