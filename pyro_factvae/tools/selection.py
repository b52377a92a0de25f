"""Choosing ``lam`` on evidence: a warm-started path scored by held-out conditional likelihood.

:func:`lambda_path` fits one model along an increasing grid of ``lam``. The first value is
trained from scratch; every later one continues from the previous fit (a warm start, as in
glmnet's regularisation paths, but walked from weak to strong penalty so that the networks
have learned the data before the prox starts pruning). At each ``lam`` it records, on a
validation split, the held-out conditional log-likelihood ``log p(x_g | x_rest)`` of each
group given the others (:func:`~pyro_factvae.metrics.held_out_log_likelihood`) and the
number of active links (nonzero columns of ``Phi``). The chosen ``lam`` follows the
one-standard-error rule (:attr:`LambdaPath.best`): of the ``lam`` s whose held-out
likelihood is within one paired standard error of the best, the sparsest map at the smallest
``lam`` that keeps it; the model is restored to its weights at that ``lam``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checks import number, positive_int, seed_int
from ..data import as_grouped
from ..estimator import FactVAE
from ..fit_config import FitConfig
from ..infer.path import check_path_data, walk
from ..plotting import plot_lambda_path
from ..rng import float32_default

__all__ = ["LambdaPath", "lambda_path"]


@dataclass
class LambdaPath:
    """The result of :func:`lambda_path`.

    Attributes
    ----------
    lams : list of float
        The grid, increasing.
    held_out_ll : list of float
        Validation ``log p(x_g | x_rest)`` per row and group (nats) at each ``lam``.
    active_links : list of int
        Nonzero ``(group, latent)`` columns of ``Phi`` at each ``lam``.
    sparsity : list of pandas.DataFrame
        :meth:`~pyro_factvae.FactVAE.sparsity` at each ``lam``.
    best : int
        Index of the chosen ``lam``: of those within one standard error of the highest
        ``held_out_ll``, the one with the fewest active links, and of several, the smallest
        (see :mod:`pyro_factvae.infer.path`).
    model : FactVAE
        The fitted model, with the weights it had at the chosen ``lam``.
    """

    lams: list[float]
    held_out_ll: list[float]
    active_links: list[int]
    sparsity: list[Any] = field(repr=False)
    best: int
    model: FactVAE = field(repr=False)

    @property
    def best_lam(self) -> float:
        """The chosen ``lam``."""
        return self.lams[self.best]

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers, for JSON."""
        return {
            "lams": self.lams,
            "held_out_ll": self.held_out_ll,
            "active_links": self.active_links,
            "best_lam": self.best_lam,
        }

    def plot(self, path: str | os.PathLike | None = None):
        """Held-out log-likelihood and active links against ``lam``
        (:func:`~pyro_factvae.plotting.plot_lambda_path`); returns the Figure, also written to
        ``path`` when given, in the format its extension names."""
        return plot_lambda_path(self, path)


def lambda_path(
    data: Any,
    lams: Sequence[float],
    validation: Any = 0.2,
    epochs: int = 20,
    warm_epochs: int | None = None,
    num_samples: int = 100,
    seed: int = 0,
    progress: bool = False,
    fit_kwargs: Mapping[str, Any] | None = None,
    **model_kwargs: Any,
) -> LambdaPath:
    """Fit factVAE along a grid of ``lam`` with warm starts and pick ``lam`` by held-out fit.

    Parameters
    ----------
    data : GroupedData or anything it accepts
        Training rows (NaN rows = missing groups).
    lams : sequence of float
        The grid (``>= 0``); it is walked in increasing order.
    validation : float or data
        A fraction of ``data`` to hold out (split with ``seed``; any number in (0, 1)), or a
        validation set with the same groups (a dict is matched by group name).
    epochs : int
        Epochs at the first (smallest) ``lam``.
    warm_epochs : int, optional
        Epochs at each later ``lam``, continuing from the previous fit (default
        ``epochs // 2``).
    num_samples : int
        Importance samples of the held-out log-likelihood.
    seed : int
        Seeds the split, the fits and the scores.
    progress : bool
        Progress bars of the fits.
    fit_kwargs : mapping, optional
        Extra :meth:`~pyro_factvae.FactVAE.fit` arguments (``batch_size``, ``lr``, ...).
    **model_kwargs
        :class:`~pyro_factvae.FactVAE` arguments other than ``lam`` (``latent_dim``, ...).

    Returns
    -------
    LambdaPath

    Raises
    ------
    KeyboardInterrupt
        A SIGINT or SIGTERM stopped one of the fits (the path is not returned).
    """
    if isinstance(lams, (str, bytes)) or not isinstance(lams, Iterable):
        raise ValueError(f"lams must be a list of numbers >= 0, e.g. [0, 0.1, 1]; got {lams!r}")
    grid = sorted(
        number("lams", v.item() if np.ndim(v) == 0 and hasattr(v, "item") else v) for v in lams
    )
    if not grid:
        raise ValueError("lams must be a non-empty list of numbers >= 0, got []")
    if len(set(grid)) != len(grid):
        twice = sorted({v for v in grid if grid.count(v) > 1})
        raise ValueError(f"lams {twice} appear more than once: give each lam once")
    seed = seed_int(seed)
    if "lam" in model_kwargs:
        raise ValueError("give lam through lams, not as a model argument")
    # lambda_path's own, or the walk's, not settings (its fits write no checkpoint)
    own = ("epochs", "seed", "relax_epochs", "checkpoint_every")
    given = set(fit_kwargs or {})
    unknown = sorted((given - set(FitConfig().to_dict())) | (given & set(own)))
    if unknown:
        raise ValueError(
            f"fit_kwargs {unknown} are not training settings lambda_path passes on; give "
            f"some of {sorted(set(FitConfig().to_dict()) - set(own))} (epochs, warm_epochs "
            "and seed are lambda_path's own arguments; it fits no relaxed refits and writes no "
            "checkpoint)"
        )
    positive_int("epochs", epochs)
    positive_int("num_samples", num_samples)
    if warm_epochs is not None:
        positive_int("warm_epochs", warm_epochs)
    # a path under a caller's no_grad, inference_mode or float64 default trains the same
    with torch.inference_mode(False), torch.enable_grad(), float32_default():
        data = as_grouped(data)
        if isinstance(validation, (bool, np.bool_)):
            raise ValueError(
                f"validation must be a fraction of the rows or data, got {validation!r}"
            )
        if isinstance(validation, (int, float, np.number)):
            if not 0 < validation < 1:
                raise ValueError(f"validation fraction must be in (0, 1), got {validation}")
            train, valid = data.split(1 - float(validation), seed=seed)
        elif isinstance(validation, Mapping):  # its groups by name
            if set(validation) != set(data.names):
                raise ValueError(
                    f"the validation data have groups {sorted(validation)}, the data "
                    f"{data.names}: give the same groups"
                )
            train, valid = data, as_grouped({name: validation[name] for name in data.names})
        else:
            train, valid = data, as_grouped(validation, names=data.names)
            if list(valid.names) != list(data.names) or list(valid.dims) != list(data.dims):
                raise ValueError(
                    f"the validation data have groups {dict(zip(valid.names, valid.dims))} "
                    f"(name: width), the data {dict(zip(data.names, data.dims))}: give the "
                    "same groups, in the same order (or a dict of them by name)"
                )
        check_path_data(train, valid)
        warm_epochs = max(1, epochs // 2) if warm_epochs is None else warm_epochs
        vae = FactVAE(lam=grid[0], **model_kwargs)
        state = vae.fit_state
        path = walk(
            state, train, valid, grid, epochs, warm_epochs, seed, num_samples, progress, fit_kwargs
        )
        if path is None:  # a SIGINT or SIGTERM stopped a fit: there is no path to return
            raise KeyboardInterrupt(
                f"lambda_path was stopped by {state.interrupted} before every lam was scored; "
                "it keeps no checkpoint: run it again"
            )
        return LambdaPath(grid, path.held_out_ll, path.active_links, path.sparsity, path.best, vae)
