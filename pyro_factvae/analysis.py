"""Looking at the learned sparsity: the group x latent map of ``||Phi_g[:, j]||`` (Fig 2/4)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_sparsity"]


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
