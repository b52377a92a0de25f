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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from .config import non_negative_int, positive_int
from .data import GroupedData
from .estimator import FactVAE
from .module.predict import NUM_SAMPLES
from .module.refine import REFINE_STEPS
from .validation import check_numeric, is_dataframe

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

    Attributes
    ----------
    vae_ : FactVAE
        The fitted model.
    groups_ : dict
        ``{group name: [column positions]}`` as fitted.
    n_features_in_, feature_names_in_
        As every scikit-learn estimator (the latter for a DataFrame with string columns).

    Notes
    -----
    It passes every check of ``sklearn.utils.estimator_checks.check_estimator`` (a test).
    The imputed means are Monte Carlo estimates from one seeded stream of draws over the
    rows given together, so a row's fills move, within the Monte Carlo error (set by
    ``num_samples``), with the rows it is transformed with.
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
            _check_frame(X, _resolve_groups(self.groups, X.shape[1], columns))
        X = self._marked(
            validate_data(self, X, ensure_all_finite="allow-nan", ensure_min_samples=2)
        )
        self.groups_ = _resolve_groups(self.groups, X.shape[1], columns)
        never = np.flatnonzero(np.isnan(X).all(axis=0))
        if len(never):
            labels = [columns[j] for j in never] if columns is not None else never.tolist()
            raise ValueError(
                f"columns {_shown(labels)} are never observed (every cell is missing): nothing "
                "can be learned of them; drop them"
            )
        model = {k: getattr(self, k) for k in _MODEL}
        model["encoder_hidden"], model["decoder_hidden"] = (
            tuple(self.encoder_hidden),
            tuple(self.decoder_hidden),
        )
        fit = {k: getattr(self, k) for k in _FIT}
        data = GroupedData(self._split(X), drop_empty_rows=True)
        self.vae_ = FactVAE(**model).fit(data, **fit)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``X`` with every missing cell filled (observed cells as given); rows with nothing
        observed get prior-predictive means."""
        check_is_fitted(self, "vae_")
        _check_frame(X, self.groups_)
        X = self._marked(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"))
        data = GroupedData(self._split(X), allow_empty_rows=True)
        if self.sample_posterior:
            (filled,) = self.vae_.impute(data, num_draws=1, **self._query())
        else:
            filled = self.vae_.impute(data, **self._query())
        return self._join(filled, X)

    def multiple_imputations(self, X: Any, num_draws: int = 20) -> np.ndarray:
        """``(num_draws, n, p)``: ``num_draws`` completed copies of ``X``, each missing cell
        drawn from ``p(x_miss | x_obs)`` (for Rubin's rules)."""
        check_is_fitted(self, "vae_")
        _check_frame(X, self.groups_)
        X = self._marked(validate_data(self, X, reset=False, ensure_all_finite="allow-nan"))
        data = GroupedData(self._split(X), allow_empty_rows=True)
        draws = self.vae_.impute(data, num_draws=num_draws, **self._query())
        return np.stack([self._join(d, X) for d in draws])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The input's column names (an imputer keeps every column, in order)."""
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
            return input_features
        names = getattr(self, "feature_names_in_", None)
        if names is not None:
            return np.asarray(names, dtype=object)
        return np.asarray([f"x{j}" for j in range(self.n_features_in_)], dtype=object)

    # ------------------------------------------------------------------ helpers
    def _marked(self, X: np.ndarray) -> np.ndarray:
        """``X`` (validated) with the cells holding ``missing_values`` set to NaN."""
        marker = self.missing_values
        if not isinstance(marker, (int, float, np.number)) or isinstance(marker, bool):
            raise ValueError(f"missing_values must be a number or NaN, got {marker!r}")
        if np.isnan(marker):
            return X
        return np.where(X == marker, np.nan, X)

    def _query(self) -> dict[str, int]:
        """The settings of every query of the fitted model."""
        return {
            "num_samples": self.num_samples,
            "seed": self._seed(),
            "refine_steps": self.refine_steps,
        }

    def _seed(self) -> int:
        """``seed``, or a fresh one from numpy's global RNG when it is ``None``."""
        return int(np.random.randint(2**31)) if self.seed is None else int(self.seed)

    def _split(self, X: np.ndarray) -> dict[str, np.ndarray]:
        return {name: X[:, cols] for name, cols in self.groups_.items()}

    def _join(self, filled: Mapping[str, np.ndarray], X: np.ndarray) -> np.ndarray:
        out = np.array(X, dtype=np.float64, copy=True)
        for name, cols in self.groups_.items():
            out[:, cols] = filled[name]
        return out


def _resolve_groups(
    groups: Mapping[str, Sequence[Any]] | None, num_features: int, columns: Any
) -> dict[str, list[int]]:
    """``{group: [column positions]}``: every column in exactly one group."""
    labels_in = None if columns is None else list(columns)
    names = None if columns is None else [str(c) for c in columns]
    # an integer is a column's label when the frame has integer labels, else its position
    by_label = labels_in is not None and any(isinstance(c, (int, np.integer)) for c in labels_in)
    if groups is None:
        labels = names or [f"x{j}" for j in range(num_features)]
        return {label: [j] for j, label in enumerate(labels)}
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty mapping {group: [columns]}")
    out, owner = {}, {}
    for group, cols in groups.items():
        if isinstance(cols, (str, int, np.integer)):
            raise ValueError(f"group {group!r}: give a list of columns, not {cols!r}")
        positions = []
        for c in cols:
            if by_label and c in labels_in:
                j = labels_in.index(c)
            elif isinstance(c, (int, np.integer)) and not isinstance(c, bool) and not by_label:
                j = int(c)
            elif names is not None and str(c) in names:
                j = names.index(str(c))
            elif by_label:
                raise ValueError(
                    f"group {group!r}: column {c!r} is not a label of the DataFrame's columns "
                    f"{_shown(labels_in)}; its integer labels are matched as labels, not positions "
                    "(give labels, or the data as an array to give positions)"
                )
            else:
                raise ValueError(
                    f"group {group!r}: column {c!r} is not in the data (give positions, or "
                    "names of a DataFrame's columns)"
                )
            if not 0 <= j < num_features:
                raise ValueError(f"group {group!r}: column {c!r} is out of range")
            if j in owner:
                raise ValueError(f"column {c!r} is in groups {owner[j]!r} and {group!r}")
            owner[j] = group
            positions.append(j)
        if str(group) in out:
            raise ValueError(
                f"group {group!r} and an earlier group are both named {str(group)!r} as text "
                "(group names are strings): rename one"
            )
        out[str(group)] = positions
    left = [j for j in range(num_features) if j not in owner]
    if left:
        labels = [names[j] if names else j for j in left]
        raise ValueError(f"columns {labels} are in no group: add them to one (or drop them)")
    return out


#: how an imputer's group gets the categorical likelihood (for a text column's message)
IMPUTER_CATEGORICAL = "FactVAEImputer(groups=..., likelihood={group: 'categorical'})"


def _check_frame(X: Any, groups: Mapping[str, list[int]]) -> None:
    """For a DataFrame, a ``ValueError`` naming the group, column and row of the first cell
    that is not a number (before scikit-learn's conversion, which names none of them)."""
    if not is_dataframe(X):
        return
    for name, cols in groups.items():
        for j in cols:
            if j < X.shape[1]:  # a frame of the wrong width is scikit-learn's to refuse
                check_numeric(name, X.columns[j], X.iloc[:, j], IMPUTER_CATEGORICAL)


def _shown(labels: list[Any], most: int = 8) -> str:
    """``labels`` for a message: the first ``most`` of them."""
    more = f", ... ({len(labels)} in all)" if len(labels) > most else ""
    return "[" + ", ".join(map(repr, labels[:most])) + more + "]"
