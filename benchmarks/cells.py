"""Imputing single missing cells as well as whole groups: factVAE against the tools people use.

**Cells protocol** (each data set of ``peers.py``, and breast cancer in its three natural
groups): rows split 80 / 20 (seeded); features standardized with the training rows' statistics;
training rows: 20% of (row, group) entries missing, then 10% of the remaining cells missing at
random (never a row without a cell); test rows: one random whole group hidden per row, then 10%
of the cells of their observed groups (never a row without a cell). Every method is fitted on
the training rows and applied to the test rows; scores: RMSE over all hidden test entries
(``all``) and, apart, over the hidden single cells only (``cells``), in standardized units.

**MIWAE protocol** (Mattei & Frellsen 2019, their breast-cancer notebook): scikit-learn's
``load_breast_cancer`` (569 x 30) standardized with the full data's mean and sd;
``floor(569 * 30 / 2)`` cells missing completely at random (``np.random.seed(1234 + seed)``,
``np.random.choice`` over the flattened cells, as the notebook); imputation scored on the same
rows it was fitted on: MSE over the missing cells. MIWAE's published MSE: 0.2867.

Methods: those of ``peer_methods.py`` (mean, KNN(10), IterativeImputer, missForest, MOFA+,
factVAE at its defaults; on the simulation also the Bayes-optimal imputer). The scikit-learn
peers run with one BLAS thread (``OMP_NUM_THREADS=1``, set before numpy loads unless given).

    python benchmarks/cells.py --data breast sim nutrimouse digits mfeat --seeds 0 --threads 1
    python benchmarks/cells.py --miwae --seeds 0 1 2 --threads 1

Each run writes its rows to ``benchmarks/out/cells_<data sets>_s<seeds>[_<methods>].json``
(``--json`` names another file), and prints the docs' tables.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: the scikit-learn peers' BLAS

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from grids import draw_grid, rmse_grid  # noqa: E402
from peer_data import breast_cancer_data, loaders  # noqa: E402
from peer_methods import PEERS, Groups, _matrix, _unmatrix, bayes_method, warm_up  # noqa: E402
from peer_scores import draw_columns, draw_row, draw_text  # noqa: E402
from report import out_path, positive, seed_type, write_json  # noqa: E402

MIWAE_MSE = 0.2867
METHODS = ["mean", "knn", "iterative", "missforest", "mofa+", "factvae"]


def _keep_one_cell(miss: np.ndarray, rng: np.random.Generator) -> None:
    """Reveal one random cell of every row whose cells are all hidden (in place)."""
    for i in np.flatnonzero(miss.all(1)):
        miss[i, rng.integers(miss.shape[1])] = False


def cells_split(groups: Groups, seed: int):
    """Standardized training rows and test rows with hidden groups and cells (see above)."""
    rng = np.random.default_rng(seed)
    names = list(groups)
    dims = [groups[g].shape[1] for g in names]
    n = len(groups[names[0]])
    perm = rng.permutation(n)
    cut = int(0.8 * n)
    tr, te = perm[:cut], perm[cut:]
    x = _matrix(groups)
    mean, std = x[tr].mean(0), x[tr].std(0)
    std = np.where(std > 0, std, 1.0)
    full = (x - mean) / std
    col_group = np.repeat(np.arange(len(names)), dims)
    # training: 20% of (row, group) entries, then 10% of the remaining cells
    gone = rng.random((cut, len(names))) < 0.2
    gone[gone.all(1), rng.integers(0, len(names), gone.all(1).sum())] = False
    miss = gone[:, col_group] | (rng.random((cut, x.shape[1])) < 0.1)
    _keep_one_cell(miss, rng)
    train = np.where(miss, np.nan, full[tr])
    # test: one whole group per row, then 10% of the cells of the observed groups
    hide_group = np.zeros((len(te), len(names)), bool)
    hide_group[np.arange(len(te)), rng.integers(0, len(names), len(te))] = True
    group_cells = hide_group[:, col_group]
    single = ~group_cells & (rng.random((len(te), x.shape[1])) < 0.1)
    hidden = group_cells | single
    for i in np.flatnonzero(hidden.all(1)):  # keep one cell of an observed group
        j = rng.choice(np.flatnonzero(~group_cells[i]))
        single[i, j], hidden[i, j] = False, False
    truth = full[te]
    test = np.where(hidden, np.nan, truth)
    per_group = [{g: v[0] for g, v in _unmatrix(a[None], groups).items()} for a in (mean, std)]
    return _unmatrix(train, groups), _unmatrix(test, groups), truth, hidden, single, per_group


def _rmse(pred: np.ndarray, truth: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(np.mean((pred[where] - truth[where]) ** 2)))


def run_cells(name: str, groups: Groups, info: dict | None, seed: int, methods: list[str]):
    train, test, truth, hidden, single, standardize = cells_split(groups, seed)
    fits = {m: PEERS[m] for m in methods}
    if info is not None:  # the simulation: the exact conditional mean
        fits["bayes"] = bayes_method({**info, "standardize": standardize})
    rows = []
    for method, fit in fits.items():
        t0 = time.perf_counter()
        predictor = fit(train, seed)
        pred = _matrix(predictor(test))
        seconds = time.perf_counter() - t0
        row = {
            "protocol": "cells",
            "data": name,
            "seed": seed,
            "method": method,
            "rmse_all": _rmse(pred, truth, hidden),
            "rmse_cells": _rmse(pred, truth, single),
            "seconds": seconds,
        }
        row.update(draw_row(predictor, test, _unmatrix(truth, groups), hidden, seed))
        rows.append(row)
        print(
            f"{name:>10} seed {seed} {method:>10}  RMSE all {row['rmse_all']:.4f}  "
            f"cells {row['rmse_cells']:.4f}  {seconds:7.1f} s{draw_text(row)}",
            flush=True,
        )
    return rows


def miwae_masks(seed: int):
    """The notebook's data and mask: full-data standardization, half the cells missing."""
    groups, _ = breast_cancer_data()
    x = _matrix(groups)
    x = (x - x.mean(0)) / x.std(0)
    n, p = x.shape
    np.random.seed(1234 + seed)
    flat = np.zeros(n * p, bool)
    flat[np.random.choice(n * p, int(np.floor(n * p * 0.5)), replace=False)] = True
    return groups, x, flat.reshape(n, p)


def run_miwae(seed: int, methods: list[str]):
    groups, x, miss = miwae_masks(seed)
    holed = _unmatrix(np.where(miss, np.nan, x), groups)
    rows = []
    for method in methods:
        t0 = time.perf_counter()
        predictor = PEERS[method](holed, seed)
        pred = _matrix(predictor(holed))
        seconds = time.perf_counter() - t0
        mse = float(np.mean((pred[miss] - x[miss]) ** 2))
        row = {"protocol": "miwae", "data": "breast", "seed": seed, "method": method}
        row.update(mse=mse, seconds=seconds)
        row.update(draw_row(predictor, holed, _unmatrix(x, groups), miss, seed))
        rows.append(row)
        print(
            f"MIWAE protocol seed {seed} {method:>10}  MSE {mse:.4f}  {seconds:7.1f} s"
            f"{draw_text(row)}",
            flush=True,
        )
    return rows


def summary(rows: list[dict]) -> None:
    print()
    cells = [r for r in rows if r["protocol"] == "cells"]
    for name in dict.fromkeys(r["data"] for r in cells):
        print(
            f"cells protocol, {name}: | method | RMSE all | RMSE cells | seconds | "
            "90% coverage | CRPS |"
        )
        sub = [r for r in cells if r["data"] == name]
        for method in dict.fromkeys(r["method"] for r in sub):
            v = [r for r in sub if r["method"] == method]
            extra = draw_columns(v)
            print(
                f"| {method} | {np.mean([r['rmse_all'] for r in v]):.4f} | "
                f"{np.mean([r['rmse_cells'] for r in v]):.4f} | "
                f"{np.mean([r['seconds'] for r in v]):.1f} |{extra}"
            )
    miwae = [r for r in rows if r["protocol"] == "miwae"]
    if miwae:
        print(
            f"MIWAE protocol (published MIWAE MSE {MIWAE_MSE}): | method | MSE mean | sd | "
            "seeds | 90% coverage | CRPS |"
        )
        for method in dict.fromkeys(r["method"] for r in miwae):
            sel = [r for r in miwae if r["method"] == method]
            v = np.array([r["mse"] for r in sel])
            extra = draw_columns(sel)
            sd = v.std(ddof=1) if len(v) > 1 else float("nan")  # the sample sd over seeds
            print(f"| {method} | {v.mean():.4f} | {sd:.4f} | {len(v)} |{extra}")
    if cells:
        print("\ncells protocol, RMSE all / cells (the docs' table):")
        print(rmse_grid(cells, [("rmse_all", {}), ("rmse_cells", {})]))
    if miwae:
        print("\nMIWAE protocol, MSE mean ± sd over seeds (the docs' table):")
        print(rmse_grid(miwae, [("mse", {})], spread=True))
    if any("crps" in r for r in rows):
        print("\n90% coverage / CRPS (the docs' table; MIWAE: of its first seed):")
        first = [r for r in miwae if r["seed"] == min(x["seed"] for x in miwae)]
        print(draw_grid([*cells, *({**r, "data": "miwae"} for r in first)]))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=[])
    parser.add_argument("--miwae", action="store_true", help="run the MIWAE protocol")
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument(
        "--json",
        default=None,
        help="results file (default: benchmarks/out/cells_<data sets>_s<seeds>[_<methods>]"
        ".json, so that other runs do not overwrite it)",
    )
    parser.add_argument("--fashion-dir", default=None, help="Fashion-MNIST idx files")
    parser.add_argument("--threads", type=positive, default=None, help="torch threads")
    args = parser.parse_args(argv)
    known = sorted(loaders(args.cache, args.fashion_dir))
    if set(args.data) - set(known):
        parser.error(f"--data: unknown {sorted(set(args.data) - set(known))}; choose from {known}")
    if not (args.data or args.miwae):
        parser.error("give --data (the cells protocol) or --miwae, or both")
    if args.json is None:  # a file per run of other data, seeds or methods
        parts = [*args.data, *(["miwae"] if args.miwae else [])]
        args.json = out_path("cells", parts, args.seeds, args.methods, METHODS)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    os.makedirs(args.cache, exist_ok=True)
    load = loaders(args.cache, args.fashion_dir)
    warm_up(args.methods)  # no method's timed fit loads its library
    rows: list[dict] = []
    for name in args.data:
        for seed in args.seeds:
            try:
                groups, info = load[name](seed)
            except (OSError, FileNotFoundError, ValueError) as exc:
                print(f"{name}: skipped ({exc})")
                break
            rows += run_cells(name, groups, info, seed, args.methods)
        write_json(args.json, rows, indent=1)  # each data set's rows kept as they come
    if args.miwae:
        for seed in args.seeds:
            rows += run_miwae(seed, args.methods)
    summary(rows)
    write_json(args.json, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
