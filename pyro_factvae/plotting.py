"""Figures, all built on ``matplotlib.figure.Figure`` (no pyplot: headless, and the caller's
backend is left alone): the sparsity map (Fig 2/4), per-link posterior intervals, and the
lambda path."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .checks import number
from .data import is_dataframe
from .io import atomic_path

__all__ = ["plot_lambda_path", "plot_link_intervals", "plot_sparsity", "save_figure"]


def plot_sparsity(
    norms: Any,
    title: str | None = None,
    path: str | os.PathLike | None = None,
    ax: Any = None,
    label: str = "||Phi_g[:, j]||",
):
    """Heatmap of a group x latent sparsity map; exact zeros are left blank.

    Parameters
    ----------
    norms : pandas.DataFrame or array-like
        ``G x K`` column norms, e.g. :meth:`~pyro_factvae.FactVAE.sparsity` (its index gives group
        names).
    title : str, optional
        Axes title.
    path : path-like, optional
        Write the figure there, in the format its extension names (``.png``, ``.pdf``,
        ``.svg``).
    ax : matplotlib Axes, optional
        Draw into it instead of a new figure (whose layout is then the caller's: the figure's
        ``tight_layout`` is called only on a figure made here).
    label : str
        The colour bar's label: the default names column norms; give e.g. ``"P(active)"``
        for :func:`~pyro_factvae.analysis.active_probability`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # no pyplot: works headless, leaves the backend alone

    if hasattr(norms, "sparsity") and callable(norms.sparsity):
        raise ValueError("give the model's map, plot_sparsity(vae.sparsity()), not the model")
    values = np.asarray(norms, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"norms must be a G x K table, got shape {values.shape}")
    framed = is_dataframe(norms)  # a list has an .index too: a method, not labels
    groups = list(norms.index) if framed else list(range(values.shape[0]))
    latents = list(norms.columns) if framed else [f"z{j}" for j in range(values.shape[1])]
    own = ax is None
    if own:
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
    fig.colorbar(image, ax=ax, label=label)
    if own:
        fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_link_intervals(
    idata: Any,
    var: str = "column_norm",
    prob: float = 0.9,
    path: str | os.PathLike | None = None,
):
    """Per-link posterior intervals of ``var`` from
    :func:`~pyro_factvae.analysis.to_inference_data`, one panel per group.

    Each (group, latent) link gets its posterior median and central ``prob`` interval; links
    whose posterior probability of being active (mean of ``active``) is below 0.5 are grey.

    Returns
    -------
    matplotlib.figure.Figure
        Also written to ``path`` when given, in the format its extension names.
    """
    from matplotlib.figure import Figure

    from .analysis import sparsity_posterior

    prob = number("prob", prob, strict=True)
    if not prob < 1:
        raise ValueError(f"prob must be in (0, 1), got {prob}")
    post = sparsity_posterior(idata)
    if var not in post:
        raise ValueError(f"no variable {var!r} in the posterior; have {list(post.data_vars)}")
    draws = post[var].stack(sample=("chain", "draw")).transpose("sample", "group", "latent")
    values = draws.values.astype(float)  # "active" is bool: its interval is of 0 and 1
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
        save_figure(fig, path)
    return fig


def plot_lambda_path(path_result: Any, path: str | os.PathLike | None = None):
    """Held-out score and active links against ``lam`` for a
    :class:`~pyro_factvae.tools.selection.LambdaPath` (its log-likelihood) or a
    ``FactVAE(lam="auto")`` fit's ``lam_path_`` (its imputation MSE); the choice is marked.

    Returns the matplotlib Figure (also written to ``path`` when given, in the format its
    extension names). ``lam = 0``
    is drawn at the left edge of the log axis.
    """
    from matplotlib.figure import Figure

    lams, score, label, best, links = _path_series(path_result)
    positive = lams[lams > 0]
    floor = positive.min() / 3 if positive.size else 1.0
    x = np.where(lams > 0, lams, floor)
    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    ax.plot(x, score, "o-", color="tab:blue")
    ax.set_xscale("log")
    ax.set_xlabel("lam" + (f" (lam = 0 drawn at {floor:.2g})" if (lams == 0).any() else ""))
    ax.set_ylabel(label, color="tab:blue")
    ax.axvline(x[best], color="0.4", ls="--", lw=1)
    ax.set_title(f"lambda path: chosen lam = {lams[best]:g}")
    ax2 = ax.twinx()
    ax2.step(x, links, where="mid", color="tab:orange")
    ax2.set_ylabel("active links", color="tab:orange")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def _path_series(path_result: Any) -> tuple[np.ndarray, list[float], str, int, list[int]]:
    """``(lams, score, its label, index of the choice, active links)`` of a
    :class:`~pyro_factvae.tools.selection.LambdaPath` or of a ``lam_path_`` dict."""
    if hasattr(path_result, "lam_path_"):
        raise ValueError("give the model's path, plot_lambda_path(vae.lam_path_), not the model")
    if path_result is None or not (
        isinstance(path_result, Mapping) or hasattr(path_result, "lams")
    ):
        raise ValueError(
            "give a lam path: a FactVAE(lam='auto') fit's lam_path_ (a model fitted at a "
            f"number lam has none), or a lambda_path result; got {path_result!r}"
        )
    if not isinstance(path_result, Mapping):
        lams = np.asarray(path_result.lams, dtype=float)
        label = "held-out log p(x_g | x_rest)"
        return lams, path_result.held_out_ll, label, path_result.best, path_result.active_links
    if "held_out_ll" in path_result:  # a LambdaPath's to_dict (or lambda-path --json)
        raise ValueError("give the LambdaPath itself (lambda_path's result), not its dict")
    if "held_out_mse" not in path_result:
        raise ValueError(
            f"this lam path scored no lam ({path_result.get('criterion', 'interrupted')}): "
            "there is nothing to plot"
        )
    if "chosen_lam" not in path_result:
        raise ValueError("this lam path names no chosen lam (a file of an earlier version)")
    lacking = [k for k in ("lams", "active_links") if k not in path_result]
    if lacking:
        raise ValueError(
            f"this lam path has no {' or '.join(lacking)}: give a fit's lam_path_ as it is"
        )
    lams = np.asarray(path_result["lams"], dtype=float)
    best = int(np.argmin(np.abs(lams - float(path_result["chosen_lam"]))))
    mse = path_result["held_out_mse"]
    return lams, mse, "held-out imputation MSE", best, path_result["active_links"]


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> str:
    """Write ``fig`` to ``path`` whole or not at all (through a temporary file renamed onto
    it: an interrupted write leaves the old file, or none).

    Parameters
    ----------
    fig : matplotlib Figure
        The figure, e.g. what :func:`plot_sparsity` returns.
    path : path-like
        Where to write it, in the format its extension names (``.png``, ``.pdf``, ``.svg``);
        without one, matplotlib's default format, its extension added (as ``savefig`` does).
    dpi : int
        Resolution of raster formats.

    Returns
    -------
    str
        The path written.
    """
    from matplotlib import rcParams

    path = os.fspath(path).rstrip(".")  # "fig." is "fig", as savefig reads it
    ext = os.path.splitext(path)[1].lstrip(".").lower()
    if not ext:
        ext = rcParams["savefig.format"]
        path = f"{path}.{ext}"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=ext)
    return path
