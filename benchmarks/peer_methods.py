"""The imputers the benchmarks compare, each ``fit(train, seed) -> predict(test)`` on
``{group: (n, d) array}`` with NaN where a cell is missing (a whole group or single cells):
the per-feature mean, scikit-learn's ``KNNImputer(10)``, ``IterativeImputer`` (BayesianRidge)
and missForest (``IterativeImputer(ExtraTreesRegressor)``), MOFA+ (``mofapy2``), factVAE, and
on simulated data the Bayes-optimal imputer.

MOFA+ fits only its training rows: the factors of a new row are inferred from its observed
cells with the weights frozen, by MOFA's own factor update ``Sigma = (I + sum_{m, d observed}
tau_d E[w_d w_d^T])^-1``, ``E[z] = Sigma sum tau_d E[w_d] y_d``, then ``y = mean + E[W] E[z]``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable

import numpy as np

from pyro_factvae import FactVAE

Groups = dict[str, np.ndarray]

#: IterativeImputer's draws behind its coverage and CRPS, one fit each: about as few as a
#: central 95% interval needs (39, the library's own minimum), where the other methods draw 200
FITS = 40


def _matrix(groups: Groups) -> np.ndarray:
    return np.concatenate(list(groups.values()), axis=1)


def _unmatrix(x: np.ndarray, like: Groups) -> Groups:
    out, start = {}, 0
    for g, v in like.items():
        out[g] = x[:, start : start + v.shape[1]]
        start += v.shape[1]
    return out


Predictor = Callable[[Groups], Groups]


def mean_method(train: Groups, seed: int) -> Predictor:
    means = {g: np.nanmean(train[g], 0) for g in train}
    return lambda test: {g: np.where(np.isnan(test[g]), means[g], test[g]) for g in test}


def knn_method(train: Groups, seed: int) -> Predictor:
    """``KNNImputer(10)``; its draws: a Gaussian plug-in around the imputation with each
    column's residual scale, measured on held-back training rows with the test rows' own
    pattern of holes (:func:`_knn_scale`; not part of the timed fit)."""
    from sklearn.impute import KNNImputer

    x = _matrix(train)
    imp = KNNImputer(n_neighbors=10).fit(x)

    def predict(test: Groups) -> Groups:
        return _unmatrix(imp.transform(_matrix(test)), test)

    def draws(test: Groups, m: int, seed: int) -> np.ndarray:
        t = _matrix(test)
        mean = imp.transform(t)
        scale = _knn_scale(x, np.isnan(t), seed)
        noise = np.random.default_rng(seed).standard_normal((m, *t.shape)) * scale
        return np.where(np.isnan(t), mean + noise, t)

    predict.draws = draws
    return predict


def _knn_scale(x: np.ndarray, holes: np.ndarray, seed: int) -> np.ndarray:
    """Each column's RMSE of ``KNNImputer(10)`` fitted on 80% of the training rows ``x`` and
    imputing the other 20%, each of them given the holes of a random test row (``holes``):
    the error of the imputations the plug-in draws are put around, not that of a row that is
    among its own neighbours or of holes of another kind. A held-back row keeps its own
    training holes too, so where training rows miss more than test rows (the MIWAE protocol,
    whose test rows are its training rows) the scale is too large and the draws too wide."""
    from sklearn.impute import KNNImputer

    rng = np.random.default_rng(seed)
    held = rng.random(len(x)) < 0.2
    held[rng.integers(len(x))] = True
    probe = x[held]
    hide = holes[rng.integers(len(holes), size=len(probe))] & ~np.isnan(probe)
    knn = KNNImputer(n_neighbors=10, keep_empty_features=True).fit(x[~held])
    resid = np.where(hide, knn.transform(np.where(hide, np.nan, probe)) - probe, np.nan)
    with warnings.catch_warnings():  # a column never hidden: the pooled scale (else 1)
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.sqrt(np.nanmean(resid**2, 0))
        pooled = np.sqrt(np.nanmean(resid**2)) if hide.any() else 1.0
    return np.where(np.isfinite(scale), scale, pooled)


def _fitted(imp, x: np.ndarray) -> Predictor:
    """Fit a scikit-learn imputer on ``x``; its ``transform`` as a predictor of groups."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp.fit(x)

    def predict(test: Groups) -> Groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _unmatrix(imp.transform(_matrix(test)), test)

    return predict


def iterative_method(train: Groups, seed: int) -> Predictor:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import BayesianRidge

    x = _matrix(train)
    wide = x.shape[1] > 200  # hundreds of columns: hours at the full setting

    def imputer(random_state: int, sample_posterior: bool = False):
        return IterativeImputer(
            estimator=BayesianRidge(),
            max_iter=5 if wide else 10,
            n_nearest_features=min(50 if wide else 100, x.shape[1]),
            random_state=random_state,
            sample_posterior=sample_posterior,
        )

    predict = _fitted(imputer(seed), x)

    def draws(test: Groups, m: int, seed: int) -> np.ndarray:
        """M imputations with ``sample_posterior=True``, each fitted with its own seed."""
        fits = [_fitted(imputer(seed + 1 + k, True), x) for k in range(m)]
        return np.stack([_matrix(f(test)) for f in fits])

    if not wide:  # M fits: minutes per draw on hundreds of columns
        predict.draws = draws
        predict.num_draws = FITS  # each draw a fit of its own
    return predict


def missforest_method(train: Groups, seed: int) -> Predictor:
    """missForest as scikit-learn users run it: ``IterativeImputer(ExtraTreesRegressor)``.

    5 rounds of 50 trees (``min_samples_leaf=3``, ``max_features=0.5``) over the 60 nearest
    features. Its cost grows with columns x rounds x trees, so above 200 columns it is capped
    at 3 rounds of 20 trees over the 30 nearest features, fitted on at most 2,000 rows.
    """
    from sklearn.ensemble import ExtraTreesRegressor
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer

    x = _matrix(train)
    wide = x.shape[1] > 200
    if wide and len(x) > 2000:
        x = x[np.random.default_rng(seed).choice(len(x), 2000, replace=False)]
    trees = ExtraTreesRegressor(
        n_estimators=20 if wide else 50,
        min_samples_leaf=3,
        max_features=0.5,
        random_state=seed,
        n_jobs=1,
    )
    imp = IterativeImputer(
        estimator=trees,
        max_iter=3 if wide else 5,
        n_nearest_features=min(30 if wide else 60, x.shape[1]),
        random_state=seed,
    )
    return _fitted(imp, x)


def mofa_method(train: Groups, seed: int, factors: int = 10) -> Predictor:
    names = list(train)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mofapy2.run.entry_point import entry_point  # prints a banner on import

        ent = entry_point()
        ent.set_data_options(scale_views=False, center_groups=True)
        ent.set_data_matrix([[train[g]] for g in names], likelihoods=["gaussian"] * len(names))
        ent.set_model_options(factors=factors)
        ent.set_train_options(iter=1000, convergence_mode="fast", seed=seed, quiet=True)
        ent.build()
        ent.run()
    w = ent.model.nodes["W"].getExpectations()
    taus = ent.model.nodes["Tau"].getExpectation()
    centre = {g: np.nanmean(train[g], 0) for g in names}

    def predict(test: Groups) -> Groups:
        return _mofa_predict(test, names, w, taus, centre)

    def draws(test: Groups, m: int, seed: int) -> np.ndarray:
        """MOFA's posterior predictive: z from its factor posterior given the observed
        cells, then E[W] z plus Gaussian noise of its precision tau."""
        z, sigma = _mofa_predict(test, names, w, taus, centre, factors_only=True)
        rng = np.random.default_rng(seed)
        chol = np.linalg.cholesky(sigma)
        zs = z + np.einsum("nkl,mnl->mnk", chol, rng.standard_normal((m, *z.shape)))
        parts = []
        for j, g in enumerate(names):
            tau = np.asarray(taus[j]).reshape(-1, w[j]["E"].shape[0]).mean(0)
            noise = rng.standard_normal((m, *test[g].shape)) / np.sqrt(tau)
            pred = centre[g] + zs @ w[j]["E"].T + noise
            parts.append(np.where(np.isnan(test[g]), pred, test[g]))
        return np.concatenate(parts, axis=-1)

    predict.draws = draws
    return predict


def _mofa_predict(
    test: Groups,
    names: list[str],
    w: list,
    taus: list,
    centre: Groups,
    factors_only: bool = False,
):
    k = w[0]["E"].shape[1]
    n = len(next(iter(test.values())))
    precision = np.tile(np.eye(k), (n, 1, 1))
    rhs = np.zeros((n, k))
    for m, g in enumerate(names):
        e, e2 = w[m]["E"], w[m]["E2"]
        tau = np.asarray(taus[m]).reshape(-1, e.shape[0]).mean(0)
        seen = (~np.isnan(test[g])).astype(float)  # (n, d): the observed cells
        outer = np.einsum("dk,dl,d->dkl", e, e, tau)
        outer[:, np.arange(k), np.arange(k)] += (e2 - e**2) * tau[:, None]
        precision += np.einsum("nd,dkl->nkl", seen, outer)
        y = np.nan_to_num(test[g] - centre[g])
        rhs += (y * seen * tau) @ e
    z = np.linalg.solve(precision, rhs[..., None])[..., 0]
    if factors_only:  # the factors' posterior mean and covariance
        return z, np.linalg.inv(precision)
    out = {}
    for m, g in enumerate(names):
        pred = centre[g] + z @ w[m]["E"].T
        out[g] = np.where(np.isnan(test[g]), pred, test[g])
    return out


def factvae_method(**config) -> Callable[[Groups, int], Predictor]:
    def fit(train: Groups, seed: int) -> Predictor:
        vae = FactVAE(**config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vae.fit(train, seed=seed, progress=False)
        norms = vae.sparsity().values
        print(
            f"    factVAE {config}: lam {vae.lam_:g}, {int((norms > 0).sum())} links, "
            f"{int((norms > 0).any(0).sum())} of {norms.shape[1]} latents active",
            flush=True,
        )

        def predict(test: Groups) -> Groups:
            return vae.impute(test)

        predict.vae = vae  # the fitted model, for the scores of its draws
        return predict

    return fit


def factvae_average_method(fits: int = 3) -> Callable[[Groups, int], Predictor]:
    """The default ``FactVAE`` fitted ``fits`` times (seeds ``seed``, ``seed + 1000``, ...),
    its imputations averaged; draws: as many from each fit, pooled (the mixture's)."""
    single = factvae_method()

    def fit(train: Groups, seed: int) -> Predictor:
        members = [single(train, seed + 1000 * k) for k in range(fits)]

        def predict(test: Groups) -> Groups:
            filled = [member(test) for member in members]
            return {g: np.mean([f[g] for f in filled], 0) for g in filled[0]}

        def draws(test: Groups, m: int, seed: int) -> np.ndarray:
            each = -(-m // fits)
            parts = [member.vae.impute(test, num_draws=each, seed=seed) for member in members]
            stacked = np.concatenate([np.stack([_matrix(d) for d in p]) for p in parts])
            return stacked[:m]

        predict.draws = draws
        return predict

    return fit


def bayes_method(truth_info: dict) -> Callable[[Groups, int], Predictor]:
    """The exact conditional mean E[x_hidden | x_observed] under the simulation's model, in the
    benchmark's standardized units."""

    def run(test: Groups) -> Groups:
        w, noise = truth_info["W"], truth_info["noise"]
        mean, std = truth_info["standardize"]
        mu = np.concatenate([mean[g] for g in test])
        sd = np.concatenate([std[g] for g in test])
        cov = w.T @ w + noise**2 * np.eye(w.shape[1])
        cov = cov / np.outer(sd, sd)
        centre = -mu / sd  # the raw mean is 0
        x = _matrix(test)
        out = x.copy()
        for i in range(len(x)):
            h = np.isnan(x[i])
            o = ~h
            sol = np.linalg.solve(cov[np.ix_(o, o)], x[i, o] - centre[o])
            out[i, h] = centre[h] + cov[np.ix_(h, o)] @ sol
        return _unmatrix(out, test)

    return lambda train, seed: run


PEERS: dict[str, Callable] = {
    "mean": mean_method,
    "knn": knn_method,
    "iterative": iterative_method,
    "missforest": missforest_method,
    "mofa+": mofa_method,
    "factvae": factvae_method(),
    "lam0": factvae_method(lam=0.0),
    "jmvae+": factvae_method(lam=0.0, inference="mixture"),
    "factvae-avg3": factvae_average_method(3),
}
#: the methods run unless ``--methods`` names others (the average of three fits on request)
DEFAULT_PEERS = [m for m in PEERS if m != "factvae-avg3"]


def warm_up_factvae() -> None:
    """One throwaway one-epoch fit and impute on 20 rows: torch's first optimizer loads
    ``torch._dynamo`` (2-3 s), which would otherwise land on the first timed factVAE fit."""
    rng = np.random.default_rng(0)
    tiny = {"a": rng.standard_normal((20, 2)), "b": rng.standard_normal((20, 2))}
    tiny["b"][:5] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = FactVAE(latent_dim=2, lam=0.1).fit(tiny, epochs=1, progress=False)
        vae.impute(tiny, num_samples=2, refine_steps=1)


def warm_up(methods: list[str]) -> None:
    """Import what the peers among ``methods`` import, so that no method's first timed fit
    pays for loading its library (mofapy2 about 0.4 s, scikit-learn's imputers 0.15 s, and
    for factVAE what torch loads on its first optimizer step: 2-3 s here)."""
    import sklearn.ensemble  # noqa: F401
    import sklearn.impute  # noqa: F401
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401

    warm_up_factvae()

    if "mofa+" in methods:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mofapy2.run.entry_point  # noqa: F401
