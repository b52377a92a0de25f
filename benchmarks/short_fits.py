"""Fit time against imputation error of shorter fits on small tables: what a user trades by
giving ``fit`` fewer epochs or a fixed ``lam`` instead of the defaults.

Each data set and seed of the peers' protocol (rows split 80/20, 20% of the training rows'
groups missing, each test row hides one group; ``peers.split_and_hide``) is fitted with each
variant and imputed at the defaults of ``impute``; the seconds are the fit and the imputation
together, in one process that has already fitted once (torch's first-optimizer import is not
counted). Printed: per variant and data set, the mean test RMSE (standardized units) and the
mean seconds over the seeds.

    python benchmarks/short_fits.py --threads 1   # wine, diabetes, nutrimouse, breast; ~15 min
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from peer_data import loaders
from peer_methods import warm_up_factvae
from peers import rmse, split_and_hide
from report import OUT, write_json

from pyro_factvae import FactVAE

#: ``name: (FactVAE settings, fit settings)``
VARIANTS: dict[str, tuple[dict, dict]] = {
    "defaults": ({}, {}),
    "epochs=200": ({}, {"epochs": 200}),
    "lam=0.1": ({"lam": 0.1}, {}),
    "lam=0.1, epochs=200": ({"lam": 0.1}, {"epochs": 200}),
}


def run(name: str, groups: dict, seed: int, variant: str) -> dict:
    """One fit and imputation of ``variant`` on ``seed``'s split of ``groups``."""
    settings, fit_settings = VARIANTS[variant]
    train, test, truth, hidden, _ = split_and_hide(groups, seed, "one")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few rows (nutrimouse): the point is measured here
        vae = FactVAE(**settings).fit(train, seed=seed, progress=False, **fit_settings)
        filled = vae.impute(test)
    seconds = time.perf_counter() - start
    return {
        "data": name,
        "seed": seed,
        "variant": variant,
        "rmse": rmse(filled, truth, hidden),
        "seconds": seconds,
        "lam": vae.lam_,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["wine", "diabetes", "nutrimouse", "breast"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=os.path.join(OUT, "short_fits.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = loaders(args.cache, None)
    warm_up_factvae()  # torch's imports, once, before the first timed fit and imputation
    rows = []
    for name in args.data:
        for seed in args.seeds:
            groups, _ = sets[name](seed)
            for variant in args.variants:
                row = run(name, groups, seed, variant)
                rows.append(row)
                print(
                    f"{name:>10} seed {seed} {variant:>20}  RMSE {row['rmse']:.4f}  "
                    f"{row['seconds']:5.1f} s  lam {row['lam']:g}",
                    flush=True,
                )
    print(f"\n| variant | {' | '.join(args.data)} |")
    print(f"| --- | {' | '.join('---' for _ in args.data)} |")
    for variant in args.variants:
        cells = []
        for name in args.data:
            mine = [r for r in rows if r["data"] == name and r["variant"] == variant]
            rmse_mean = np.mean([r["rmse"] for r in mine])
            seconds = np.mean([r["seconds"] for r in mine])
            cells.append(f"{rmse_mean:.3f} / {seconds:.1f} s")
        print(f"| {variant} | {' | '.join(cells)} |")
    write_json(args.json, {"rows": rows})
    return rows


if __name__ == "__main__":
    main()
