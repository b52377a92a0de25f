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

from .checks import interval_draws, non_negative_int, positive_int, seed_int
from .data import GroupedData, is_dataframe
from .extrapolation import warn_far_outside
from .infer.state import phi_norms
from .module.draws import central_bounds, posterior_draws
from .module.guide import Guide
from .module.held import training_range
from .module.model import Model
from .module.predict import NUM_SAMPLES, predictive_means
from .module.refine import REFINE_STEPS
from .omics import anndata_groups, mudata_groups, var_groups, write_results
from .outputs import caller_arrays, float_dtype, returned_as, reusable, shaped_like, split_columns
from .rng import seeded
from .validation import frame_columns
from .variables import mudata_variables, named

__all__ = ["INTERVAL_DRAWS", "Queries"]

#: draws behind each bound of :meth:`Queries.predict_interval` (and ``factvae impute
#: --interval``) by default
INTERVAL_DRAWS = 1000


class Queries:
    """Queries on a fitted (model, guide) pair (mixed into :class:`~pyro_factvae.FactVAE`)."""

    def fitted_modules(self) -> tuple[Model, Guide]:  # pragma: no cover - provided by FactVAE
        raise NotImplementedError

    def prepare(self, data: Any, allow_empty_rows: bool = False) -> GroupedData:  # pragma: no cover
        raise NotImplementedError

    #: the draws' spread about the imputed means (provided by FactVAE)
    spread_: float = 1.0
    columns_: dict[str, list[str]] | None = None
    #: per row, the effective sample size of the importance weights behind the last draws
    #: (``impute(num_draws=...)``, ``predict_interval``); ``None`` after a query of means
    ess_: np.ndarray | None = None

    def _read(self, data: Any) -> tuple[Any, GroupedData]:
        """``(data, the model's form of it)``: an iterator of groups read once into a list,
        as the answer is read back into the caller's form from it."""
        data = reusable(data)
        return data, self.prepare(data, allow_empty_rows=True)

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
        num_samples: int = NUM_SAMPLES,
        seed: int = 0,
        importance: bool = True,
        refine_steps: int = REFINE_STEPS,
    ) -> dict[str, np.ndarray]:
        """Posterior-predictive means of ``targets`` given the groups ``given``.

        ``E[E(x_g | z) | x_given]``, estimated with ``num_samples`` draws ``z_s ~ q(z |
        x_given)`` (the encoder reads the observed cells of ``given``): with ``importance``
        (default) each draw is weighted by ``p(x_given | z_s) p(z_s) / q(z_s | x_given)``
        (self-normalised importance sampling, which corrects the amortized encoder towards
        the model's posterior); without, their plain average under ``q``. ``num_samples=0``
        plugs in the posterior mean of ``z`` instead. ``refine_steps``: before that, each row's
        ``q`` takes this many steps from the encoder's towards the model's posterior (Adam on
        its mean and scale, the ELBO of the row's given cells: semi-amortized inference,
        :mod:`~pyro_factvae.module.refine`); 0 keeps the encoder's. Rows where none of
        ``given`` is observed get prior-predictive means. A group of size factors
        (``library_size``) sets the depth of its count groups wherever it is observed, given
        or not. ``seed`` seeds the draws of ``z`` (in a fork of the global RNG, which is left
        as it was): results repeat.

        Returns
        -------
        dict
            ``{group: (N, d_g) array}`` for each target (default: all groups), in the
            group's input dtype as :meth:`impute` returns it (a group given 1-D, 1-D).
        """
        model, guide = self.fitted_modules()
        data_in, data = self._read(data)
        self.ess_ = None  # of the last draws: these are means
        for name, value in (("targets", targets), ("given", given)):
            if isinstance(value, str):
                one = (
                    f" (for that group: {name}=[{value!r}])" if value in model.layout.names else ""
                )
                raise ValueError(
                    f"{name} must be a list of group names, not the string {value!r}{one}"
                )
        # group names are text: a dict keyed by 0 names its group "0"
        targets = list(model.layout.names) if targets is None else [str(t) for t in targets]
        given = None if given is None else [str(g) for g in given]
        idx = [data.index(t) for t in targets]
        if num_samples != 0:
            positive_int("num_samples", num_samples)
        non_negative_int("refine_steps", refine_steps)
        seed_int(seed)
        mask = data.group_mask(given)
        args = (data.values, mask, idx, num_samples, seed, data.cells, importance, refine_steps)
        # a group of size factors is a covariate (read where observed), given or not
        means = predictive_means(model, guide, *args, sources=data.observed)
        forms = returned_as(data_in, data)
        keys = {str(k): k for k in data_in} if isinstance(data_in, Mapping) else {}
        return {
            keys.get(t, t): shaped_like(m.numpy(), *forms[i])
            for t, i, m in zip(targets, idx, means)
        }

    def impute(
        self,
        data: Any,
        num_samples: int = NUM_SAMPLES,
        seed: int = 0,
        importance: bool = True,
        num_draws: int | None = None,
        refine_steps: int = REFINE_STEPS,
    ) -> Any:
        """Fill every missing cell, of missing groups and of observed ones, given the observed
        cells of the row: with posterior-predictive means, or with ``num_draws`` draws.

        Parameters
        ----------
        data
            Anything :meth:`fit` takes, with NaN (or a mask) where cells are missing.
        num_samples : int
            Monte Carlo draws of ``z`` behind each mean; with ``num_draws``, the importance
            proposals ``z_s ~ q(z | x_O)`` the draws are resampled from.
        seed : int
            Seeds the draws, in a fork of the global RNG (left as it was).
        importance : bool
            Means as self-normalised importance-weighted averages (see :meth:`reconstruct`);
            ``False`` (the plain average under ``q``) for means only.
        num_draws : int, optional
            ``M``: return ``M`` completed data sets (multiple imputation), each missing cell
            drawn from ``p(x_miss | x_obs)``: ``z`` importance-resampled from the proposals
            (approximately the model's posterior given the observed cells), then the
            likelihood's own noise (a categorical draw is a one-hot class). The effective
            sample size of each row's weights is kept in ``ess_``. ``None``: the means.
        refine_steps : int
            Steps of per-row refinement of the encoder's ``q(z | x_O)`` before it proposes
            (see :meth:`reconstruct`); 0 keeps the encoder's.

        Returns
        -------
        dict, DataFrame, or a list of them
            ``{group: (N, d_g) array}`` (``(N,)`` for a group given 1-D; a GroupedData holds
            every group 2-D) in each group's input dtype (float64 for integer input, a
            GroupedData and a MuData; float32 for a stream, a torch Dataset or a GroupedData
            of ``from_dataset`` or ``from_matrix``) with the
            observed values returned unchanged, bit for bit; for a DataFrame,
            a filled copy with the same index and columns (a nullable integer or boolean
            column becomes float64 where it had holes; a column in no group, an id say, is
            returned as it is, holes included). With ``num_draws``, a list of ``M``
            such objects. Rows with no observed group get prior-predictive values.

        Notes
        -----
        A normal group's fills are real numbers: an integer-valued column (counts, scores)
        comes back unrounded (``numpy.rint`` it if it must be whole; a 0/1 column fits
        better as ``bernoulli``, a class as a ``categorical`` group). A column constant in
        the training data is filled with its value, to float32 precision (fit warns about
        it). A mean that lies farther outside its column's training range than the range is
        wide is returned as it is, with an
        :class:`~pyro_factvae.extrapolation.ExtrapolationWarning` that names where.
        """
        data, grouped = self._read(data)
        if num_draws is None:
            recon = self.reconstruct(
                grouped,
                num_samples=num_samples,
                seed=seed,
                importance=importance,
                refine_steps=refine_steps,
            )
            fills = [recon[n] for n in grouped.names]
            labelled = is_dataframe(data) and not data.index.has_duplicates
            index = data.index.tolist() if labelled else None  # else positions
            warn_far_outside(grouped, fills, training_range(self.fitted_modules()[0]), 3, index)
            return self._filled(data, grouped, fills)
        positive_int("num_draws", num_draws)
        positive_int("num_samples", num_samples)
        if not importance:
            raise ValueError(
                "importance=False applies to means; draws are always importance-resampled "
                "from the proposals (leave importance out with num_draws)"
            )
        draws = torch.empty(num_draws, len(grouped), sum(grouped.dims), dtype=torch.float32)
        ess = torch.empty(len(grouped), dtype=torch.float32)
        for rows, part, part_ess in self._draws(
            grouped, num_draws, num_samples, seed, refine_steps
        ):
            draws[:, rows], ess[rows] = part, part_ess
        self.ess_ = ess.numpy()
        return [self._filled(data, grouped, split_columns(d, grouped.dims)) for d in draws.numpy()]

    def predict_interval(
        self,
        data: Any,
        level: float = 0.9,
        num_draws: int = INTERVAL_DRAWS,
        num_samples: int = NUM_SAMPLES,
        seed: int = 0,
        refine_steps: int = REFINE_STEPS,
    ) -> tuple[Any, Any]:
        """Central ``level`` intervals of every entry: ``(lower, upper)``, each shaped like
        :meth:`impute`'s output. Missing cells get the ``j``-th smallest and the ``j``-th
        largest of ``num_draws = M`` draws from ``p(x_miss | x_obs)`` (as ``impute(...,
        num_draws=)``; rows are processed in chunks, so memory holds one chunk's draws), ``j =
        floor((M + 1) (1 - level) / 2)``: exact draws cover at least ``level`` of new values
        whatever ``M`` (:func:`~pyro_factvae.module.draws.central_ranks`), and each bound is
        a draw (a count, 0 or 1 in a discrete group); observed entries get their value in
        both (zero width).

        Parameters
        ----------
        data
            Anything :meth:`impute` takes.
        level : float
            The central probability of each interval, in (0, 1).
        num_draws : int
            Draws per row; at least ``(1 + level) / (1 - level)`` (19 for 90%), so that the
            interval covers the level even where its bounds are the smallest and the largest
            draw.
        num_samples, seed, refine_steps
            As in :meth:`impute`: importance samples per row behind the draws, the seed of
            the draws (the global RNG is left as it was) and the refinement steps.

        Returns
        -------
        tuple
            ``(lower, upper)``, each shaped like :meth:`impute`'s output."""
        interval_draws(num_draws, level)
        positive_int("num_samples", num_samples)
        data, grouped = self._read(data)
        bounds = torch.empty(2, len(grouped), sum(grouped.dims), dtype=torch.float32)
        ess = torch.empty(len(grouped), dtype=torch.float32)
        for rows, part, part_ess in self._draws(
            grouped, num_draws, num_samples, seed, refine_steps
        ):
            bounds[:, rows] = central_bounds(part, [level])[0]
            ess[rows] = part_ess
        self.ess_ = ess.numpy()
        lower, upper = (self._filled(data, grouped, split_columns(b, grouped.dims)) for b in bounds)
        return lower, upper

    def _draws(
        self, grouped: GroupedData, num_draws: int, num_samples: int, seed: int, refine: int
    ):
        non_negative_int("refine_steps", refine)
        seed_int(seed)
        model, guide = self.fitted_modules()
        return posterior_draws(
            model,
            guide,
            grouped.values,
            grouped.observed,
            grouped.cells,
            num_draws,
            num_samples,
            seed,
            refine_steps=refine,
            spread=self.spread_,
        )

    def _filled(self, data: Any, grouped: GroupedData, fills: list[np.ndarray]) -> Any:
        """The caller's data with its missing cells taken from ``fills`` (per group, in the
        group order), observed cells as they were."""
        missing = [(~grouped.group_cells(g)).numpy() for g in range(grouped.num_groups)]
        if is_dataframe(data):
            import pandas as pd

            out = data.copy()
            for g, cols in enumerate(frame_columns(data, self.columns_).values()):
                for j, col in enumerate(cols):
                    rows = missing[g][:, j]
                    if rows.any():  # by position: the index may repeat labels
                        at = out.columns.get_loc(col)
                        kind = out.dtypes.iloc[at]
                        values = out.iloc[:, at].to_numpy(dtype=np.float64, na_value=np.nan)
                        values[rows] = fills[g][rows, j]
                        if kind.kind == "f":  # a float column keeps its dtype
                            values = pd.array(values, dtype=kind)
                        out.isetitem(at, values)  # else float64 (e.g. an Int64 with holes)
            return out
        result = {}
        # a dict's own keys (0, not "0"); else the group names
        keys = {str(k): k for k in data} if isinstance(data, Mapping) else {}
        for g, (name, orig) in enumerate(zip(grouped.names, caller_arrays(data, grouped))):
            values = np.array(orig, dtype=float_dtype(orig.dtype), copy=True)
            flat = values.reshape(len(values), -1)  # a 1-D group is given back 1-D
            flat[missing[g]] = fills[g][missing[g]]
            result[keys.get(name, name)] = values
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

        Returns
        -------
        dict
            ``{group: (n, d_g) array}`` in the data's units, a group of one column too (there
            is no query data whose shapes to follow, as :meth:`impute` follows them).
        """
        positive_int("n", n)
        if seed is not None:
            seed_int(seed)
        model, guide = self.fitted_modules()
        with seeded(model.device, seed):
            z = torch.randn(n, model.latent_dim, dtype=torch.float32).to(model.device)
            phis = list(guide.Phi)
            if mean:
                values = model.means(z, phis)
            else:
                values = model.draw(z, phis)
        return {name: v.cpu().numpy() for name, v in zip(model.layout.names, values)}

    def to_mudata(
        self,
        mdata: Any,
        modalities: Sequence[str] | None = None,
        layer: str | None = None,
        key: str = "factvae",
    ) -> Any:
        """Write the results for a MuData whose modalities are the model's groups: the
        latent means in ``mdata.obsm["X_<key>"]``, each modality's filled values (of the
        observations it has) in its layer ``<key>_imputed``, the sparsity map in
        ``mdata.uns["<key>_sparsity"]``. Returns ``mdata``. (A modality's values for the
        observations it lacks: :meth:`impute` on ``GroupedData.from_mudata(mdata)``.)"""
        groups, obs = mudata_groups(mdata, modalities, layer)
        names = list(groups)
        data = self.prepare(groups, allow_empty_rows=True)  # the fitted groups, in any order
        data.variables = mudata_variables(mdata, list(data.names))
        filled = self.impute(data)
        where = {o: i for i, o in enumerate(obs)}
        for m in names:
            rows = [where[str(o)] for o in mdata.mod[m].obs_names]
            dtype = groups[m].dtype  # the modality's own precision
            mdata.mod[m].layers[f"{key}_imputed"] = filled[m][rows].astype(dtype, copy=False)
        write_results(mdata, key, self.latent(data)[0], None, self.sparsity())
        return mdata

    def to_anndata(
        self, adata: Any, groups: Any, layer: str | None = None, key: str = "factvae"
    ) -> Any:
        """Write the results for an AnnData read with ``GroupedData.from_anndata(adata,
        groups)``: latent means in ``obsm["X_<key>"]``, the filled matrix (variables in
        ``adata``'s order; a variable in no group as it is) in the layer ``<key>_imputed``,
        the sparsity map in ``uns["<key>_sparsity"]``. A row with no observed group gets
        prior-predictive means. Returns ``adata``."""
        arrays = anndata_groups(adata, groups, layer)
        data = self.prepare(arrays, allow_empty_rows=True)  # the fitted groups, in any order
        spec = var_groups(adata, groups)
        data.variables = named(spec)  # checked by the queries' prepare
        filled = self.impute(data)
        where = {str(v): j for j, v in enumerate(adata.var_names)}
        # in the matrix's own precision: a float64 matrix's observed values kept exactly
        dtype = next(iter(arrays.values())).dtype
        imputed = np.empty((adata.n_obs, adata.n_vars), dtype=dtype)
        grouped = {v for cols in spec.values() for v in cols}
        rest = [str(v) for v in adata.var_names if str(v) not in grouped]
        if rest:  # read as the groups are, chunk by chunk
            imputed[:, [where[v] for v in rest]] = anndata_groups(adata, {"": rest}, layer)[""]
        for g, cols in spec.items():
            imputed[:, [where[v] for v in cols]] = filled[g]
        write_results(adata, key, self.latent(data)[0], imputed, self.sparsity())
        return adata

    def sparsity(self):
        """Column norms ``||Phi_g[:, j]||_2`` as a ``G x K`` pandas DataFrame.

        Rows are groups (in the user's order), columns ``z0 .. z{K-1}``. A link pruned by the
        prox is exactly ``0.0``.
        """
        return phi_norms(*self.fitted_modules())
