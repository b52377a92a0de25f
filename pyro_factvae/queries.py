"""What a fitted factVAE answers: the posterior of ``z``, posterior-predictive
reconstructions and imputations, draws from the model, and the sparsity map.

:class:`Queries` is the half of :class:`~pyro_factvae.FactVAE` that reads a fitted model; it
needs only ``fitted_modules()`` and ``prepare(data)`` from the class it is mixed into.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .config import positive_int
from .data import GroupedData, is_dataframe
from .module.guide import Guide
from .module.model import Model
from .module.predict import predictive_means
from .module.priors import column_norms
from .rng import fork_rng
from .stream import is_dataset

__all__ = ["Queries"]


class Queries:
    """Queries on a fitted (model, guide) pair (mixed into :class:`~pyro_factvae.FactVAE`)."""

    def fitted_modules(self) -> tuple[Model, Guide]:  # pragma: no cover - provided by FactVAE
        raise NotImplementedError

    def prepare(self, data: Any, allow_empty_rows: bool = False) -> GroupedData:  # pragma: no cover
        raise NotImplementedError

    columns_: dict[str, list[str]] | None = None

    def latent(
        self, data: Any, given: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``q(z | x_given)``: mean and standard deviation, each ``(N, K)``.

        ``given`` names the groups to encode (default: every observed group), each with its
        observed cells. For ``inference="mixture"`` these are the mixture's moments.
        """
        model, guide = self.fitted_modules()
        data = self.prepare(data, allow_empty_rows=True)
        device = model.device
        with torch.no_grad():
            values = [v.to(device) for v in data.values]
            cells = None if data.cells is None else data.cells.to(device)
            q = guide.posterior_dist(values, data.group_mask(given).to(device), cells)
            return q.mean.cpu().numpy(), q.variance.sqrt().cpu().numpy()

    def reconstruct(
        self,
        data: Any,
        given: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
        num_samples: int = 100,
        seed: int = 0,
        importance: bool = True,
    ) -> dict[str, np.ndarray]:
        """Posterior-predictive means of ``targets`` given the groups ``given``.

        ``E[E(x_g | z) | x_given]``, estimated with ``num_samples`` draws ``z_s ~ q(z |
        x_given)`` (the encoder reads the observed cells of ``given``): with ``importance``
        (default) each draw is weighted by ``p(x_given | z_s) p(z_s) / q(z_s | x_given)``
        (self-normalised importance sampling, which corrects the amortized encoder towards
        the model's posterior); without, their plain average under ``q``. ``num_samples=0``
        plugs in the posterior mean of ``z`` instead. Rows where none of ``given`` is observed
        get prior-predictive means. The global RNG is left as it was.

        Returns
        -------
        dict
            ``{group: (N, d_g) array}`` for each target (default: all groups).
        """
        model, guide = self.fitted_modules()
        data = self.prepare(data, allow_empty_rows=True)
        if isinstance(targets, str):
            raise ValueError(f"targets must be a list of group names, not the string {targets!r}")
        targets = list(model.layout.names) if targets is None else list(targets)
        idx = [data.index(t) for t in targets]
        if num_samples != 0:
            positive_int("num_samples", num_samples)
        mask = data.group_mask(given)
        means = predictive_means(
            model, guide, data.values, mask, idx, num_samples, seed, data.cells, importance
        )
        return {t: m.numpy() for t, m in zip(targets, means)}

    def impute(
        self, data: Any, num_samples: int = 100, seed: int = 0, importance: bool = True
    ) -> Any:
        """Fill every missing cell, of missing groups and of observed ones, with its
        posterior-predictive mean given the observed cells of the row.

        Returns ``{group: (N, d_g) array}`` in each group's input dtype (float64 for integer
        input) with the observed values returned unchanged, bit for bit; for a DataFrame, a
        filled copy with the same index and columns (a nullable integer or boolean column
        becomes float64 where it had holes). Rows with no observed group get
        prior-predictive means. ``num_samples`` (the Monte Carlo draws of ``z`` behind each
        mean) and ``importance`` as in :meth:`reconstruct`. The global RNG is left as it was.
        """
        frame = data if is_dataframe(data) else None
        grouped = self.prepare(data, allow_empty_rows=True)
        recon = self.reconstruct(grouped, num_samples=num_samples, seed=seed, importance=importance)
        missing = [(~grouped.group_cells(g)).numpy() for g in range(grouped.num_groups)]
        if frame is not None:
            out = frame.copy()
            for g, (name, cols) in enumerate(self.columns_.items()):
                for j, col in enumerate(cols):
                    rows = missing[g][:, j]
                    if rows.any():
                        if out[col].dtype.kind != "f":  # e.g. a nullable Int64 with holes
                            out[col] = out[col].to_numpy(dtype=np.float64, na_value=np.nan)
                        out.loc[out.index[rows], col] = recon[name][rows, j]
            return out
        originals = _arrays(data, grouped)
        result = {}
        for g, (name, orig) in enumerate(zip(grouped.names, originals)):
            dtype = orig.dtype if np.issubdtype(orig.dtype, np.floating) else np.float64
            values = np.array(orig, dtype=dtype, copy=True)
            values[missing[g]] = recon[name][missing[g]]
            result[name] = values
        return result

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, seed: int | None = None) -> dict[str, np.ndarray]:
        """Draw ``n`` rows from the fitted generative model (``z ~ N(0, I)``, then each group).

        Parameters
        ----------
        n : int
            Rows to draw.
        mean : bool
            Return ``E(x_g | z)`` instead of a draw of ``x_g``.
        seed : int, optional
            Seeds the draws, in a fork of the global RNG (left as it was); ``None`` draws
            from, and advances, the global RNG.
        """
        positive_int("n", n)
        model, guide = self.fitted_modules()
        with fork_rng(model.device, enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            z = torch.randn(n, model.latent_dim).to(model.device)
            phis = list(guide.Phi)
            if mean:
                values = model.means(z, phis)
            else:
                values = [d.sample() for d in model.dists(z, phis)]
        return {name: v.cpu().numpy() for name, v in zip(model.layout.names, values)}

    def sparsity(self):
        """Column norms ``||Phi_g[:, j]||_2`` as a ``G x K`` pandas DataFrame.

        Rows are groups (in the user's order), columns ``z0 .. z{K-1}``. A link pruned by the
        prox is exactly ``0.0``.
        """
        import pandas as pd

        model, guide = self.fitted_modules()
        norms = [column_norms(phi.detach()).double() for phi in guide.Phi]
        table = model.layout.scatter_axis(norms, dim=0).cpu().numpy()
        return pd.DataFrame(
            table,
            index=pd.Index(model.layout.names, name="group"),
            columns=[f"z{j}" for j in range(model.latent_dim)],
        )


def _arrays(data: Any, grouped: GroupedData) -> list[np.ndarray]:
    """The caller's own per-group arrays (2-D), or the GroupedData's values (for a
    GroupedData or a streamed Dataset)."""
    if isinstance(data, GroupedData) or is_dataset(data):
        return [v.numpy() for v in grouped.values]
    items = data.values() if isinstance(data, Mapping) else data
    out = []
    for a in items:
        a = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
        out.append(a[:, None] if a.ndim == 1 else a)
    return out
