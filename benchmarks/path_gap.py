"""Where ``lam="auto"`` should end its walk: full paths, replayed under smaller gaps.

Each data set and seed of the peers' protocol (hide one group; ``peers.split_and_hide``) is
fitted at the defaults with the walk's gap (``infer.path_choice.STOP_GAP``) set out of reach,
so that every ``lam`` of the grid is fitted and scored. The end of each walk is then replayed
on its recorded validation errors under each gap of ``--gaps`` (the walk ends at a ``lam``
that pruned every link, or, once some ``lam`` imputes better than the mean, at one whose error
is more than the gap above the best so far) with the choice of ``lam="auto"`` (of the ``lam``
within 1% of the best error, the sparsest map at its smallest ``lam``). Printed: per gap, the
fits the walks leave out and the choices that move against the full paths'.

    python benchmarks/path_gap.py --threads 1   # wine, diabetes, nutrimouse, breast; ~10 min
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
import torch
from peer_data import loaders
from peers import rmse, split_and_hide
from report import OUT, write_json

import pyro_factvae.infer.path_choice as path_choice
from pyro_factvae import FactVAE

TOLERANCE = 0.01  # lam="auto"'s relative reach of the best error


def choice(errors: list[float], links: list[int]) -> int:
    """The index ``lam="auto"`` chooses from these validation errors and active links."""
    best = min(errors)
    within = [i for i, v in enumerate(errors) if v - best <= TOLERANCE * best]
    fewest = min(links[i] for i in within)
    return min(i for i in within if links[i] == fewest)


def walk_end(errors: list[float], links: list[int], mean: float, gap: float) -> int:
    """The index of the last ``lam`` a walk with this gap fits."""
    for i in range(len(errors)):
        best = min(errors[: i + 1])
        if links[i] == 0 or (best < mean and errors[i] - best > gap * best):
            return i
    return len(errors) - 1


def full_path(name: str, groups: dict, seed: int) -> dict:
    train, test, truth, hidden, _ = split_and_hide(groups, seed, "one")
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = FactVAE().fit(train, seed=seed, progress=False)
    path = vae.lam_path_
    errors = list(path["held_out_mse"])
    return {
        "data": name,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "test_rmse": rmse(vae.impute(test), truth, hidden),
        "lams": path["lams"][: len(errors)],
        "errors": errors,
        "links": list(path["active_links"]),
        "mean_error": path["mean_imputation_mse"],
        "chosen": vae.lam_,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["wine", "diabetes", "nutrimouse", "breast"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--gaps", nargs="+", type=float, default=[0.05, 0.1, 0.15, 0.25])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument("--json", default=os.path.join(OUT, "path_gap.json"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load = loaders(args.cache, None)
    saved = path_choice.STOP_GAP
    path_choice.STOP_GAP = float("inf")  # every lam of the grid fitted and scored
    try:
        paths = []
        for name in args.data:
            for seed in args.seeds:
                paths.append(full_path(name, load[name](seed)[0], seed))
                p = paths[-1]
                print(f"{name} seed {seed}: lam {p['chosen']:g}, {p['seconds']:.1f} s", flush=True)
    finally:
        path_choice.STOP_GAP = saved
    rows = []
    print("\n| gap | fits left out | of | choices moved |\n| --- | --- | --- | --- |")
    for gap in args.gaps:
        left, moved = 0, 0
        for p in paths:
            end = walk_end(p["errors"], p["links"], p["mean_error"], gap)
            left += len(p["errors"]) - 1 - end
            full = choice(p["errors"], p["links"])
            moved += choice(p["errors"][: end + 1], p["links"][: end + 1]) != full
        total = int(np.sum([len(p["errors"]) for p in paths]))
        rows.append({"gap": gap, "left_out": left, "fits": total, "moved": moved})
        print(f"| {gap:g} | {left} | {total} | {moved} of {len(paths)} |")
    result = {"args": vars(args), "paths": paths, "table": rows}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
