"""Row-keyed Monte Carlo draws against independent ones: does a row's imputed mean depend on
the rows imputed with it, and how much does an RMSE over rows move between seeds?

For each data set and split (the peers' protocol, hide one group; ``FactVAE(lam=0)`` at its
other defaults), the test rows' importance-weighted means (1,000 draws, the default
refinement) are computed with the library's row-keyed draws and with each row's own draws
from the query's stream (``predictive_means(..., row_noise=False)``; the refinement is keyed
in both), under ``--seeds`` seeds of the imputation. Printed per (data, split, draws): the mean
and sample sd of the RMSE over the seeds, and the largest change of a row's mean between the
query of every test row and the query of its first ten.

    python benchmarks/draw_spread.py --data breast wine --splits 0 1 --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_data import breast_cancer_data, diabetes_data, wine_data  # noqa: E402
from peers import rmse, split_and_hide  # noqa: E402
from report import OUT, positive, seed_type, write_json  # noqa: E402

from pyro_factvae import FactVAE  # noqa: E402
from pyro_factvae.module.predict import predictive_means  # noqa: E402

LOADERS = {"breast": breast_cancer_data, "wine": wine_data, "diabetes": diabetes_data}


def means(vae: FactVAE, test: dict, seed: int, keyed: bool) -> dict:
    """The importance-weighted means of every group given each row's observed ones."""
    data = vae.prepare(test)
    names = list(test)
    out = predictive_means(
        vae.model_,
        vae.guide_,
        data.values,
        data.observed,
        list(range(len(names))),
        1000,
        seed,
        data.cells,
        importance=True,
        refine_steps=100,
        row_noise=keyed,
    )
    return {g: m.numpy() for g, m in zip(names, out)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", default=["breast", "wine"], choices=list(LOADERS))
    parser.add_argument("--splits", nargs="+", type=seed_type, default=[0, 1])
    parser.add_argument("--seeds", nargs="+", type=seed_type, default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=positive, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.data:
        groups, _ = LOADERS[name](0)
        for split in args.splits:
            train, test, truth, hidden, _ = split_and_hide(groups, split, "one")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                vae = FactVAE(lam=0.0).fit(train, seed=split, progress=False)
            first = {g: v[:10] for g, v in test.items()}
            for keyed in (True, False):
                scores = [rmse(means(vae, test, s, keyed), truth, hidden) for s in args.seeds]
                every, few = means(vae, test, 0, keyed), means(vae, first, 0, keyed)
                moved = max(float(np.abs(every[g][:10] - few[g]).max()) for g in test)
                row = {
                    "data": name,
                    "split": split,
                    "draws": "row-keyed" if keyed else "independent",
                    "rmse_mean": float(np.mean(scores)),
                    "rmse_sd": float(np.std(scores, ddof=1)) if len(scores) > 1 else 0.0,
                    "row_change": moved,
                    "rmse": scores,
                }
                rows.append(row)
                print(
                    f"{name:>8} split {split} {row['draws']:>11}: RMSE {row['rmse_mean']:.4f} "
                    f"sd {row['rmse_sd']:.4f}  a row's mean moved by {moved:.2g}",
                    flush=True,
                )
    print("\n| data | split | draws | mean RMSE | sd over seeds | largest change of a row |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['data']} | {r['split']} | {r['draws']} | {r['rmse_mean']:.3f} | "
            f"{r['rmse_sd']:.4f} | {r['row_change']:.1e} |"
        )
    write_json(os.path.join(OUT, "draw_spread.json"), {"seeds": args.seeds, "rows": rows})


if __name__ == "__main__":
    main()
