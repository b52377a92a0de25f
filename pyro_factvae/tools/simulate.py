"""Prior-predictive data sets with a known sparsity pattern, drawn from the model itself.

:func:`simulate` runs :class:`pyro.infer.Predictive` on :class:`~pyro_factvae.module.model.Model`
with the group-lasso scales ``gamma_sq_<g>`` fixed by ``poutine.condition``: ``link_scale**2``
where a (group, latent) link is on and ``1e-30`` where it is off. ``Phi_<g>`` (eq 8), ``z``
(eq 4) and every ``x_<g>`` (eq 5) are then drawn through the model's own sample sites, so the
data follow the generative story exactly and the columns of ``Phi`` that are (numerically)
zero are known. Used to check that inference recovers the support
(:func:`~pyro_factvae.analysis.support_recovery`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pyro import poutine
from pyro.infer import Predictive

from .. import sites
from ..checks import number, positive_int, seed_int
from ..config import ModelConfig
from ..data import GroupedData
from ..layout import Layout
from ..module.likelihoods import MIN_SCALE, NormalLikelihood, inverse_softplus
from ..module.model import Model

__all__ = ["Simulation", "simulate"]

#: gamma_sq of an absent link: Phi's column is drawn with sd 1e-15, zero for every purpose
_OFF = 1e-30


@dataclass
class Simulation:
    """A simulated data set and the truth behind it.

    Attributes
    ----------
    data : GroupedData
        ``num_rows`` rows, every group observed.
    support : pandas.DataFrame
        ``G x K`` bool, ``True`` where latent ``j`` drives group ``g``.
    phi : dict
        The drawn ``Phi_<g>`` (``m x K``); absent columns are ~1e-15.
    z : numpy.ndarray
        ``(num_rows, K)`` latents.
    model : Model
        The generator (random networks) the data came from.
    """

    data: GroupedData
    support: Any
    phi: dict[str, np.ndarray]
    z: np.ndarray
    model: Model


def simulate(
    support: Any,
    dims: int | Sequence[int],
    num_rows: int,
    likelihood: str | Sequence[str] = "normal",
    noise: float = 0.1,
    link_scale: float = 1.0,
    decoder_width: int = 16,
    encoder_width: int = 16,
    decoder_hidden: Sequence[int] = (),
    seed: int = 0,
) -> Simulation:
    """Draw a data set from factVAE's prior predictive with a given sparsity pattern.

    Parameters
    ----------
    support : pandas.DataFrame or array-like of bool
        ``G x K``: which latent drives which group (a DataFrame's index names the groups,
        else ``g0, g1, ...``).
    dims : int or sequence of int
        Features per group.
    num_rows : int
        Rows to draw.
    likelihood : str or sequence of str
        Per-group likelihood names (see :mod:`~pyro_factvae.module.likelihoods`).
    noise : float
        Standard deviation of ``normal`` groups.
    link_scale : float
        ``sqrt(gamma_sq)`` of an active link: the sd of its ``Phi`` entries.
    decoder_width, encoder_width, decoder_hidden
        Shapes of the random generator (as in :class:`~pyro_factvae.FactVAE`).
    seed : int
        Seeds the networks and every draw; the global RNG is left as it was.

    Returns
    -------
    Simulation
    """
    import pandas as pd

    values = np.asarray(support)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 1:
        raise ValueError(f"support must be a (groups, latents) table, got shape {values.shape}")
    if not np.isin(values, (0, 1)).all():
        raise ValueError("support must hold booleans (or 0 / 1)")
    values = values.astype(bool)
    num_groups, k = values.shape
    if isinstance(support, pd.DataFrame):  # a list has an .index too: a frame's names only
        names = [str(n) for n in support.index]
        if len(set(names)) != len(names):
            raise ValueError(f"the support's index names each group once, got {names}")
    else:
        names = [f"g{g}" for g in range(num_groups)]
    seed = seed_int(seed)
    if isinstance(dims, (int, np.integer)) and not isinstance(dims, bool):
        dims = [dims] * num_groups
    elif isinstance(dims, (str, bytes)) or not isinstance(dims, Iterable):
        raise ValueError(f"dims must be an integer or one per group, got {dims!r}")
    dims = list(dims)
    liks = [likelihood] * num_groups if isinstance(likelihood, str) else list(likelihood)
    if len(dims) != num_groups or len(liks) != num_groups:
        raise ValueError(f"give one dim and one likelihood per group ({num_groups} groups)")
    for d in dims:
        positive_int("dims", d)
    dims = [int(d) for d in dims]
    positive_int("num_rows", num_rows)
    noise = number("noise", noise, low=MIN_SCALE, strict=True)
    link_scale = number("link_scale", link_scale, strict=True)
    layout = Layout(names, dims, liks)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = ModelConfig(
            latent_dim=k,
            encoder_width=encoder_width,
            decoder_width=decoder_width,
            decoder_hidden=decoder_hidden,
            lam=1.0,
        )
        model = Model(layout, config)
        for lik in model.likelihoods:
            if isinstance(lik, NormalLikelihood):
                with torch.no_grad():
                    lik.raw_scale.fill_(float(inverse_softplus(torch.tensor(noise - MIN_SCALE))))
        gamma = {
            sites.gamma_sq(name): torch.where(
                torch.as_tensor(values[g]), link_scale**2, _OFF
            ).float()
            for g, name in enumerate(names)
        }
        wanted = [sites.Z] + [f(n) for f in (sites.x, sites.phi) for n in names]
        predictive = Predictive(poutine.condition(model, data=gamma), num_samples=1)
        with torch.no_grad():
            draws = {s: v[0] for s, v in predictive(None, batch_size=num_rows).items()}
    missing = [s for s in wanted if s not in draws]
    if missing:  # pragma: no cover - a renamed site would be a bug
        raise RuntimeError(f"prior predictive lacks sites {missing}")
    xs = {n: draws[sites.x(n)].reshape(num_rows, d).numpy() for n, d in zip(names, dims)}
    data = GroupedData(xs)
    table = pd.DataFrame(
        values, index=pd.Index(names, name="group"), columns=[f"z{j}" for j in range(k)]
    )
    return Simulation(
        data=data,
        support=table,
        phi={n: draws[sites.phi(n)].reshape(config.phi_rows, k).numpy() for n in names},
        z=draws[sites.Z].reshape(num_rows, k).numpy(),
        model=model,
    )
