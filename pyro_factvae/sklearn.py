"""factVAE as a scikit-learn imputer: a transformer over one 2-D table with holes.

:class:`FactVAEImputer` takes an array or a DataFrame with NaN wherever a cell is missing
(single cells, or every cell of a group in a row), groups its columns (``groups=``), fits a
:class:`~pyro_factvae.FactVAE` and fills every missing cell with its posterior-predictive
mean, or, with ``sample_posterior=True``, with one draw from ``p(x_miss | x_obs)`` (as
scikit-learn's ``IterativeImputer(sample_posterior=True)``). Every setting of the model and
of its fit for a table (all but the image networks' ``image_shape`` and ``conv_width``, and
the fit's ``callbacks``) is a constructor parameter, so ``get_params``, ``set_params``, ``clone``,
``Pipeline``, ``ColumnTransformer`` and ``GridSearchCV`` work as with any imputer.

scikit-learn is an optional dependency (``pip install pyro_factvae[sklearn]``, or scikit-learn
itself); this module imports it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import MissingIndicator
from sklearn.utils.validation import check_is_fitted, validate_data

from .checks import non_negative_int, positive_int, seed_int
from .data import GroupedData
from .estimator import FactVAE
from .module.predict import NUM_SAMPLES
from .module.refine import REFINE_STEPS
from .sklearn_columns import check_frame, check_labels, resolve_groups, shown, without_groups
from .validation import is_dataframe

__all__ = ["FactVAEImputer"]

_MODEL = (
    "latent_dim",
    "lam",
    "likelihood",
    "encoder_hidden",
    "encoder_width",
    "decoder_width",
    "decoder_hidden",
    "keep_prob",
    "cell_keep_prob",
    "theta_prior_weight",
    "baseline",
    "inference",
    "phi_inference",
    "group_weight",
    "library_size",
    "device",
)
_FIT = (
    "epochs",
    "batch_size",
    "lr",
    "phi_lr",
    "phi_optim",
    "warmup_epochs",
    "lr_decay",
    "seed",
    "progress",
    "map_epochs",
    "checkpoint",
    "checkpoint_every",
    "patience",
    "validation",
    "relax_epochs",
)


class FactVAEImputer(TransformerMixin, BaseEstimator):
    """Impute the missing cells of a table with factVAE.

    Parameters
    ----------
    groups : mapping, optional
        ``{group name: [columns]}``: the columns of each group, as positions (or, for a
        DataFrame, its column labels: a DataFrame whose labels are integers is matched by
        label, as ``DataFrame.loc`` does, not by position). Default: every column its own
        group (named after it), so the product of experts combines one expert per observed
        cell of a row and the group lasso learns which latent dimensions drive which column.
        Columns left out of every group are refused.
    latent_dim, lam, likelihood, encoder_width, decoder_width
        As :class:`~pyro_factvae.FactVAE` (``likelihood`` keyed by group name when per group).
    encoder_hidden, decoder_hidden, keep_prob, cell_keep_prob, theta_prior_weight, baseline
        As :class:`~pyro_factvae.FactVAE`.
    inference, phi_inference, group_weight, library_size, device
        As :class:`~pyro_factvae.FactVAE`.
    epochs, batch_size, lr, phi_lr, phi_optim, warmup_epochs, lr_decay, seed, map_epochs
        As :meth:`FactVAE.fit <pyro_factvae.FactVAE.fit>`.
    progress, checkpoint, checkpoint_every, patience, validation, relax_epochs
        As :meth:`FactVAE.fit <pyro_factvae.FactVAE.fit>` (``progress`` off by default).
    num_samples : int
        Monte Carlo draws of ``z`` behind each imputed mean (or the proposals of a draw).
    refine_steps : int
        Steps of per-row refinement of the encoder's posterior before it proposes, as in
        :meth:`FactVAE.impute <pyro_factvae.FactVAE.impute>` (0 keeps the encoder's).
    sample_posterior : bool
        Fill with one draw from ``p(x_miss | x_obs)`` instead of the mean (seeded by
        ``seed``): several imputers with different seeds give multiple imputations.
    missing_values : float
        The value that marks a missing cell, as in scikit-learn's imputers (e.g. ``-999``);
        NaN is always missing too.
    keep_empty_features : bool
        As scikit-learn's imputers: a column with no observed cell in the data fitted on is
        left out of the model (and a group left with no column too); by default it is left
        out of :meth:`transform`'s output as well (with a warning where it holds values
        there); with ``True`` it is kept, its missing cells filled with 0.
    add_indicator : bool
        As scikit-learn's imputers: append a
        :class:`~sklearn.impute.MissingIndicator`'s columns (one 0/1 column for each column
        with a missing cell in the data fitted on) to :meth:`transform`'s output.

    Attributes
    ----------
    vae_ : FactVAE
        The fitted model.
    groups_ : dict
        ``{group name: [column positions]}`` as fitted (without the columns never observed).
    indicator_ : sklearn.impute.MissingIndicator or None
        The indicator of ``add_indicator=True``.
    n_features_in_, feature_names_in_
        As every scikit-learn estimator (the latter for a DataFrame with string columns).
    column_labels_ : list or None
        A DataFrame's other (e.g. integer) column labels, by which ``groups`` named its
        columns: a DataFrame given to :meth:`transform` must have them, in that order.

    Notes
    -----
    It passes every check of ``sklearn.utils.estimator_checks.check_estimator`` (a test).
    The imputed means are Monte Carlo estimates from draws keyed by each row
    (:mod:`~pyro_factvae.module.noise`): a row's fills are the same, up to float rounding,
    whatever rows it is transformed with. The draws of ``sample_posterior=True`` and of
    :meth:`multiple_imputations` come from one seeded stream over the rows given together,
    so a row's draw changes with the rows transformed with it.
    """

    def __init__(
        self,
        groups: Mapping[str, Sequence[Any]] | None = None,
        *,
        latent_dim: int | str = "auto",
        lam: float | str = "auto",
        likelihood: str | Mapping[str, str] = "normal",
        encoder_hidden: Sequence[int] = (),
        encoder_width: int | str = "auto",
        decoder_width: int | str = "auto",
        decoder_hidden: Sequence[int] = (),
        keep_prob: float = 0.75,
        cell_keep_prob: float = 1.0,
        theta_prior_weight: float = 0.01,
        baseline: float = 100.0,
        inference: str = "poe",
        phi_inference: str = "prox",
        group_weight: Mapping[str, float] | None = None,
        library_size: str | Mapping[str, str] | None = None,
        device: str = "cpu",
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-2,
        phi_lr: float = 1e-2,
        phi_optim: str = "adam",
        warmup_epochs: float | None = None,
        lr_decay: float = 0.05,
        seed: int | None = 0,
        progress: bool = False,
        map_epochs: int | None = None,
        checkpoint: str | None = None,
        checkpoint_every: int | None = None,
        patience: int | str | None = "auto",
        validation: float = 0.1,
        relax_epochs: int | None = None,
        num_samples: int = NUM_SAMPLES,
        refine_steps: int = REFINE_STEPS,
        sample_posterior: bool = False,
        missing_values: float = np.nan,
        keep_empty_features: bool = False,
        add_indicator: bool = False,
    ) -> None:
        self.groups = groups
        self.latent_dim = latent_dim
        self.lam = lam
        self.likelihood = likelihood
        self.encoder_hidden = encoder_hidden
        self.encoder_width = encoder_width
        self.decoder_width = decoder_width
        self.decoder_hidden = decoder_hidden
        self.keep_prob = keep_prob
        self.cell_keep_prob = cell_keep_prob
        self.theta_prior_weight = theta_prior_weight
        self.baseline = baseline
        self.inference = inference
        self.phi_inference = phi_inference
        self.group_weight = group_weight
        self.library_size = library_size
        self.device = device
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.phi_lr = phi_lr
        self.phi_optim = phi_optim
        self.warmup_epochs = warmup_epochs
        self.lr_decay = lr_decay
        self.seed = seed
        self.progress = progress
        self.map_epochs = map_epochs
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.patience = patience
        self.validation = validation
        self.relax_epochs = relax_epochs
        self.num_samples = num_samples
        self.refine_steps = refine_steps
        self.sample_posterior = sample_posterior
        self.missing_values = missing_values
        self.keep_empty_features = keep_empty_features
        self.add_indicator = add_indicator

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # NaN marks a missing cell: what it is for
        tags.transformer_tags.preserves_dtype = ["float64"]
        return tags

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, y: Any = None) -> FactVAEImputer:
        """Fit factVAE to ``X`` (``(n, p)``, NaN = missing); rows with nothing observed are
        left out. ``y`` is ignored. Returns ``self``."""
        for name in ("num_samples", "refine_steps"):  # checked before the fit, not after it
            non_negative_int(name, getattr(self, name))
        if self.sample_posterior:  # draws need proposals: num_samples=0 plugs in a mean
            positive_int("num_samples (with sample_posterior=True)", self.num_samples)
        columns = getattr(X, "columns", None)
        if is_dataframe(X):  # its cells named before scikit-learn converts them
            check_frame(X, resolve_groups(self.groups, X.shape[1], columns))
        validated = ("n_features_in_", "feature_names_in_")  # what validate_data sets
        before = {k: v for k, v in vars(self).items() if k in validated}
        try:
            return self._fit(
                validate_data(self, X, ensure_all_finite="allow-nan", ensure_min_samples=2), columns
            )
        except BaseException:  # a failed refit leaves the fit before it whole
            for key in validated:
                vars(self).pop(key, None)
            vars(self).update(before)
            raise

    def _fit(self, X: np.ndarray, columns: Any) -> FactVAEImputer:
        """:meth:`fit` on the validated ``X`` (``columns``: a DataFrame's labels)."""
        X = self._marked(X)
        never = set(np.flatnonzero(np.isnan(X).all(axis=0)).tolist())
        if len(never) == X.shape[1]:
            raise ValueError(
                "every column is missing in every row: there is nothing to learn from; give "
                "data with observed cells"
            )
        groups = resolve_groups(self.groups, X.shape[1], columns)
        # as scikit-learn's imputers: a column never observed is left out (a group with it)
        kept = {name: [j for j in cols if j not in never] for name, cols in groups.items()}
        fitted = {name: cols for name, cols in kept.items() if cols}
        gone = [name for name in groups if name not in fitted]
        named = gone if self.groups else []  # by default each column is a group of its own
        if never and (named or not self.keep_empty_features):
            labels = [columns[j] if columns is not None else j for j in sorted(never)]
            also = f" (groups {shown(named)} with them)" if named else ""
            output = (
                "; transform fills their missing cells with 0"
                if self.keep_empty_features
                else " and of transform's output (keep_empty_features=True keeps them, with 0)"
            )
            warnings.warn(
                f"columns {shown(labels)} are never observed (every cell is missing): they are "
                f"left out of the model{also}{output}",
                UserWarning,
                stacklevel=2,
            )
        model = {k: getattr(self, k) for k in _MODEL}
        model["encoder_hidden"], model["decoder_hidden"] = (
            tuple(self.encoder_hidden),
            tuple(self.decoder_hidden),
        )
        model.update(without_groups(model, list(groups), gone))
        fit = {k: getattr(self, k) for k in _FIT}
        data = GroupedData({g: X[:, cols] for g, cols in fitted.items()}, drop_empty_rows=True)
        vae = FactVAE(**model).fit(data, **fit)
        # set together, once the fit succeeded
        self.vae_, self.groups_, self.indicator_ = vae, fitted, None
        by_label = columns is not None and not hasattr(self, "feature_names_in_")
        self.column_labels_ = list(columns) if by_label else None
        if self.add_indicator:
            self.indicator_ = MissingIndicator(error_on_new=False).fit(X)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X`` with every missing cell filled (observed cells as given); rows with nothing
        observed get prior-predictive means. The columns are :meth:`get_feature_names_out`'s:
        without those never observed in the data fitted on (unless
        ``keep_empty_features``), then the indicator's (``add_indicator``)."""
        X = self._checked(X)
        data = GroupedData(self._split(X), allow_empty_rows=True)
        if self.sample_posterior:
            (filled,) = self._impute(data, num_draws=1)
        else:
            filled = self._impute(data)
        return self._output(filled, X)

    def multiple_imputations(self, X: Any, num_draws: int = 20) -> np.ndarray:
        """``(num_draws, n, p_out)``: ``num_draws`` completed copies of ``X``, each missing
        cell drawn from ``p(x_miss | x_obs)`` (for Rubin's rules); ``p_out`` columns as
        :meth:`transform` gives them."""
        X = self._checked(X)
        data = GroupedData(self._split(X), allow_empty_rows=True)
        draws = self._impute(data, num_draws=num_draws)
        return np.stack([self._output(d, X) for d in draws])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The names of :meth:`transform`'s columns: the input's (without the columns never
        observed, unless ``keep_empty_features``), then the indicator's
        (``missingindicator_<name>``) with ``add_indicator``."""
        check_is_fitted(self, "n_features_in_")
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            fitted = getattr(self, "feature_names_in_", None)
            if fitted is not None and not np.array_equal(input_features, fitted):
                raise ValueError(
                    f"input_features {list(input_features)} differ from the names fitted on, "
                    f"feature_names_in_ = {list(fitted)}"
                )
            if len(input_features) != self.n_features_in_:
                raise ValueError(
                    f"input_features has {len(input_features)} names; expected "
                    f"{self.n_features_in_}"
                )
            names = input_features
        else:
            names = getattr(self, "feature_names_in_", None)
            if names is None:
                names = [f"x{j}" for j in range(self.n_features_in_)]
            names = np.asarray(names, dtype=object)
        out = np.delete(names, self._dropped())
        if self.indicator_ is not None:
            out = np.concatenate([out, self.indicator_.get_feature_names_out(names)])
        return out.astype(object)

    # ------------------------------------------------------------------ helpers
    def _checked(self, X: Any) -> np.ndarray:
        """``X`` to transform, validated as fitted (its width and column names first, then a
        DataFrame's cells by group and column), its missing cells NaN."""
        check_is_fitted(self, "vae_")
        names = getattr(self, "feature_names_in_", None)
        check_labels(X, getattr(self, "column_labels_", None))
        if is_dataframe(X) and (  # else scikit-learn's own check names the mismatch
            X.shape[1] == self.n_features_in_
            and (names is None or list(map(str, X.columns)) == list(map(str, names)))
        ):
            check_frame(X, self.groups_)
        X = self._marked(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"))
        seen = [j for j in self._dropped() if not np.isnan(X[:, j]).all()]
        if seen:
            labels = [names[j] if names is not None else j for j in seen]
            warnings.warn(
                f"columns {shown(labels)} were never observed in the data fitted on: their "
                "values here are left out of the output (keep_empty_features=True keeps them)",
                UserWarning,
                stacklevel=3,
            )
        return X

    def _marked(self, X: np.ndarray) -> np.ndarray:
        """``X`` (validated) with the cells holding ``missing_values`` set to NaN."""
        marker = self.missing_values
        if not isinstance(marker, (int, float, np.number)) or isinstance(marker, bool):
            raise ValueError(f"missing_values must be a number or NaN, got {marker!r}")
        if np.isnan(marker):
            return X
        return np.where(X == marker, np.nan, X)

    def _impute(self, data: GroupedData, **draws: Any) -> Any:
        """The fitted model's imputation of ``data``, leaving the model as fitted (its
        ``ess_``, of the last query, as it was: transform changes no fitted state)."""
        kept = self.vae_.ess_
        seed = int(np.random.randint(2**31)) if self.seed is None else seed_int(self.seed)
        query = {"num_samples": self.num_samples, "seed": seed, "refine_steps": self.refine_steps}
        try:
            return self.vae_.impute(data, **query, **draws)
        finally:
            self.vae_.ess_ = kept

    def _split(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {name: X[:, cols] for name, cols in self.groups_.items()}

    def _empty(self) -> list[int]:
        """The positions of the columns never observed in the data fitted on."""
        fitted = {j for cols in self.groups_.values() for j in cols}
        return [j for j in range(self.n_features_in_) if j not in fitted]

    def _dropped(self) -> list[int]:
        """The positions of the input's columns that :meth:`transform` leaves out."""
        return [] if self.keep_empty_features else self._empty()

    def _output(self, filled: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        """``X`` with the fills of every group, its never-observed columns filled with 0 or
        left out, and the indicator's columns appended."""
        out = np.array(X, dtype=np.float64, copy=True)
        for name, cols in self.groups_.items():
            out[:, cols] = filled[name]
        empty = self._empty()  # as scikit-learn's: their missing cells are 0
        out[:, empty] = np.nan_to_num(out[:, empty], nan=0.0)
        out = np.delete(out, self._dropped(), axis=1)
        if self.indicator_ is not None:
            out = np.hstack([out, self.indicator_.transform(X).astype(np.float64)])
        return out
