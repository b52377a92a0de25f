"""Looking at the learned sparsity: the group x latent map of ``||Phi_g[:, j]||`` (Fig 2/4), and
its posterior as ArviZ ``InferenceData``."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["plot_sparsity", "to_inference_data"]


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


def to_inference_data(vae: Any, num_draws: int = 1000, num_chains: int = 2, seed: int = 0):
    """The posterior of the sparsity structure as :class:`arviz.InferenceData`.

    Posterior variables, each with dims ``("group", "latent")`` (coordinates: the group names
    and ``z0 .. z{K-1}``):

    ``column_norm``
        ``||Phi_g[:, j]||_2``. With prox-MAP training ``Phi`` is a point estimate, so this is
        the same in every draw.
    ``gamma_sq``
        Draws from the exact conditional posterior ``p(gamma_sq | Phi)``
        (:func:`~pyro_factvae.priors.conditional_sample`; full-data scale ``N lam``).
    ``active``
        ``1`` where the link is on (``column_norm > 0``), else ``0``.

    ``arviz.summary``, ``arviz.plot_forest`` and ``arviz.plot_posterior`` work on it directly.
    Needs ``lam > 0`` (with ``lam = 0`` the prior on ``Phi`` is flat).
    """
    import arviz as az
    import torch

    from .priors import column_norms, conditional_sample

    model, guide = vae._fitted()
    if model.lam <= 0:
        raise ValueError("to_inference_data needs a model fitted with lam > 0")
    names, k = list(model.layout.names), model.latent_dim
    lam_total = model.lam_total(vae.num_data_)
    gen = torch.Generator().manual_seed(seed)
    norms = np.zeros((len(names), k))
    gamma = np.zeros((num_chains * num_draws, len(names), k))
    for block, phi in zip(model.layout.blocks, guide.Phi):
        rows = list(block.groups)
        norms[rows] = column_norms(phi.detach()).double().numpy()
        gamma[:, rows] = conditional_sample(phi, lam_total, num_chains * num_draws, gen).numpy()
    shape = (num_chains, num_draws, len(names), k)
    posterior = {
        "column_norm": np.broadcast_to(norms, shape).copy(),
        "gamma_sq": gamma.reshape(shape),
        "active": np.broadcast_to(norms > 0, shape).astype(np.int64),
    }
    dims = {v: ["group", "latent"] for v in posterior}
    coords = {"group": names, "latent": [f"z{j}" for j in range(k)]}
    return az.from_dict(posterior=posterior, coords=coords, dims=dims)
