"""Where ``lam="auto"`` should end its walk, and what its choice of ``lam`` leaves on the
table: full paths, replayed under other gaps and other choice rules.

Each data set and seed of the peers' protocol (hide one group; ``peers.split_and_hide``) is
fitted at the defaults with the walk's gap (``infer.path_choice.STOP_GAP``) set out of reach,
so that every ``lam`` of the grid is fitted and scored; as each ``lam`` is scored on the
validation rows, the test RMSE of the fit at that ``lam`` (the relaxed refit on the path's
rows, before the final refit on every row) is recorded too. The end of each walk is then
replayed on its validation errors under each gap of ``--gaps`` (the walk ends at a ``lam``
that pruned every link, or, once some ``lam`` imputes better than the mean, at one whose error
is more than the gap above the best so far) with the choice of ``lam="auto"`` (of the ``lam``
within 1% of the best error, the sparsest map at its smallest ``lam``). Printed: per gap, the
fits the walks leave out and the choices that move against the full paths'; per choice rule
and data set, the mean test RMSE of the ``lam`` it picks (``hindsight``: the best test RMSE
of any ``lam``) beside that of the final fit.

    python benchmarks/path_gap.py --threads 1   # wine, diabetes, nutrimouse, breast; ~15 min
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
import pyro_factvae.infer.path_state as path_state
from pyro_factvae import FactVAE
from pyro_factvae.data import as_grouped
from pyro_factvae.module.predict import NUM_SAMPLES, predictive_means
from pyro_factvae.module.refine import REFINE_STEPS

TOLERANCE = 0.01  # lam="auto"'s relative reach of the best error


def walk_end(errors: list[float], links: list[int], mean: float, gap: float) -> int:
    """The index of the last ``lam`` a walk with this gap fits."""
    for i in range(len(errors)):
        best = np.nanmin(np.where(np.isfinite(errors[: i + 1]), errors[: i + 1], np.nan))
        if links[i] == 0 or (best < mean and errors[i] - best > gap * best):
            return i
    return len(errors) - 1


def rule_within(tolerance: float):
    """The choice of ``lam="auto"`` with another relative reach of the best error."""

    def rule(errors: list[float], links: list[int]) -> int:
        best = np.nanmin(np.where(np.isfinite(errors), errors, np.nan))
        within = [
            i for i, v in enumerate(errors) if np.isfinite(v) and v - best <= tolerance * best
        ]
        fewest = min(links[i] for i in within)
        return min(i for i in within if links[i] == fewest)

    return rule


#: choice rules replayed on the full paths: index of the chosen lam from (errors, links)
RULES = {
    "lam=auto (1%)": rule_within(TOLERANCE),
    "within 2%": rule_within(0.02),
    "within 5%": rule_within(0.05),
    "best validation error": lambda errors, links: int(
        np.nanargmin(np.where(np.isfinite(errors), errors, np.nan))
    ),
    "lam = 0": lambda errors, links: 0,
}


class TestScores:
    """While active, each ``lam`` the path scores (``PathRecords.score``) also records the
    test RMSE of the fit at that ``lam``: means as ``FactVAE.impute`` makes them."""

    def __init__(self, test: dict, truth: dict, hidden: np.ndarray) -> None:
        self.test, self.truth, self.hidden, self.rmse = test, truth, hidden, []
        self.score = path_state.PathRecords.score

    def __enter__(self) -> TestScores:
        outer = self

        def score(records, state, *args, **kwargs):
            outer.score(records, state, *args, **kwargs)
            outer.rmse.append(outer.test_rmse(*state.fitted()))

        path_state.PathRecords.score = score
        return self

    def __exit__(self, *exc) -> None:
        path_state.PathRecords.score = self.score

    def test_rmse(self, model, guide) -> float:
        names = list(self.test)
        data = as_grouped([self.test[n] for n in names], names=names)
        targets = list(range(len(names)))
        args = (data.values, data.observed, targets, NUM_SAMPLES, 0, data.cells, True)
        means = predictive_means(model, guide, *args, REFINE_STEPS)
        filled = {
            n: np.where(np.isnan(self.test[n]), m.numpy(), self.test[n])
            for n, m in zip(names, means)
        }
        return rmse(filled, self.truth, self.hidden)


def full_path(name: str, groups: dict, seed: int) -> dict:
    train, test, truth, hidden, _ = split_and_hide(groups, seed, "one")
    start = time.perf_counter()
    with warnings.catch_warnings(), TestScores(test, truth, hidden) as scores:
        warnings.simplefilter("ignore")
        vae = FactVAE().fit(train, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    path = vae.lam_path_
    errors = list(path["held_out_mse"])
    return {
        "data": name,
        "seed": seed,
        "seconds": seconds,
        "test_rmse": rmse(vae.impute(test), truth, hidden),
        "lams": path["lams"][: len(errors)],
        "errors": errors,
        "links": list(path["active_links"]),
        "mean_error": path["mean_imputation_mse"],
        "chosen": vae.lam_,
        "lam_test_rmse": scores.rmse,
    }


def rules_table(paths: list[dict]) -> list[dict]:
    """Per rule and data set, the mean test RMSE of the ``lam`` each path's rule picks."""
    names = list(dict.fromkeys(p["data"] for p in paths))
    picks = {
        rule: lambda p, r=fn: p["lam_test_rmse"][r(p["errors"], p["links"])]
        for rule, fn in RULES.items()
    }
    picks["hindsight (best test RMSE)"] = lambda p: min(p["lam_test_rmse"])
    picks["the final fit (every row)"] = lambda p: p["test_rmse"]
    print(f"\n| rule | {' | '.join(names)} |\n| --- |{' --- |' * len(names)}")
    rows = []
    for rule, pick in picks.items():
        means = {n: float(np.mean([pick(p) for p in paths if p["data"] == n])) for n in names}
        rows.append({"rule": rule, **means})
        print(f"| {rule} | {' | '.join(f'{means[n]:.3f}' for n in names)} |")
    return rows


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
            choice = RULES["lam=auto (1%)"]
            full = choice(p["errors"], p["links"])
            moved += choice(p["errors"][: end + 1], p["links"][: end + 1]) != full
        total = int(np.sum([len(p["errors"]) for p in paths]))
        rows.append({"gap": gap, "left_out": left, "fits": total, "moved": moved})
        print(f"| {gap:g} | {left} | {total} | {moved} of {len(paths)} |")
    result = {"args": vars(args), "paths": paths, "table": rows, "rules": rules_table(paths)}
    write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
