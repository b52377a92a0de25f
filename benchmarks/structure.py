"""The structure a default fit finds, where the truth is known: exact-zero F1 on a linear
simulation and the pure Fig 2 pattern on quadrant bars, over several seeds.

* ``sim``: the peers' linear-Gaussian simulation (``peer_data.sim_data``: 6 groups of 5
  features, 4 latents, each group driven by 2 of them, 12 true links; 2,000 rows), split and
  masked as in ``peers.py`` (80% training rows, 20% of their group entries missing). Score:
  F1 of the links the prox kept (exactly nonzero columns of ``Phi``) against the true links,
  after matching fitted latents to true ones (:func:`pyro_factvae.analysis.support_recovery`),
  and the RMSE of one hidden group per test row.
* ``bars``: the paper's quadrant bars (Fig 2; 2,000 rows, each quadrant missing with
  probability 0.2). The pure pattern: no latent links a top quadrant with a bottom one, and
  every quadrant keeps a latent (:func:`pyro_factvae.datasets.bars.bars_structure`).

Every fit is ``FactVAE().fit(train, seed=seed)``: every default, ``lam="auto"`` included.

    python benchmarks/structure.py --threads 1     # 5 seeds of each, about 4 min on one core
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from peer_data import sim_data
from peer_methods import warm_up_factvae
from peers import rmse, split_and_hide
from report import OUT, positive, seed_type, write_json

from pyro_factvae import FactVAE
from pyro_factvae.analysis import support_recovery
from pyro_factvae.datasets.bars import bars_data, bars_structure


def _fit(train, seed: int) -> tuple[FactVAE, float]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = FactVAE().fit(train, seed=seed, progress=False)
    return vae, time.perf_counter() - t0


def sim_row(seed: int) -> dict:
    groups, info = sim_data(seed)
    train, test, truth, hidden, _ = split_and_hide(groups, seed, "one")
    vae, seconds = _fit(train, seed)
    w, d = info["W"], 5  # (latents, groups x features)
    support = np.array(
        [
            [np.any(w[j, g * d : (g + 1) * d] != 0) for j in range(len(w))]
            for g in range(len(groups))
        ]
    )
    norms = vae.sparsity().to_numpy()
    found = support_recovery(norms, support)
    return {
        "data": "sim",
        "seed": seed,
        "lam": vae.lam_,
        "links": int((norms > 0).sum()),
        "true_links": int(support.sum()),
        "active_latents": int((norms > 0).any(0).sum()),
        "f1": found["f1"],
        "rmse": rmse(vae.impute(test), truth, hidden),
        "seconds": seconds,
    }


def bars_row(seed: int) -> dict:
    train = bars_data(2000, missing=0.2, seed=seed)
    vae, seconds = _fit(train, seed)
    shape = bars_structure(vae.sparsity().to_numpy())
    return {
        "data": "bars",
        "seed": seed,
        "lam": vae.lam_,
        "links": shape["active_links"],
        "active_latents": shape["active_latents"],
        "cross": shape["cross"],
        "pure": shape["cross"] == 0 and shape["every_quadrant"],
        "seconds": seconds,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["sim", "bars"], choices=["sim", "bars"])
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=positive, default=None, help="torch threads")
    parser.add_argument("--json", default=os.path.join(OUT, "structure.json"))
    args = parser.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    make = {"sim": sim_row, "bars": bars_row}
    warm_up_factvae()  # the first timed fit does not load torch's optimizer machinery
    rows = []
    for name in args.data:
        for seed in args.seeds:
            row = make[name](seed)
            rows.append(row)
            text = (
                f"F1 {row['f1']:.3f} ({row['links']} links, {row['true_links']} true), "
                f"RMSE {row['rmse']:.4f}"
                if name == "sim"
                else f"top-bottom links {row['cross']}, pure {row['pure']}"
            )
            print(
                f"{name:>4} seed {seed}  lam {row['lam']:g}  {row['active_latents']} latents  "
                f"{text}  {row['seconds']:.1f} s",
                flush=True,
            )
    print()
    print("| data | seeds | lam chosen | mean exact-zero F1 | pure pattern | mean seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in dict.fromkeys(r["data"] for r in rows):
        sub = [r for r in rows if r["data"] == name]
        lams = ", ".join(f"{r['lam']:g}" for r in sub)
        f1 = f"{np.mean([r['f1'] for r in sub]):.3f}" if name == "sim" else ""
        pure = f"{sum(r['pure'] for r in sub)} of {len(sub)}" if name == "bars" else ""
        seconds = np.mean([r["seconds"] for r in sub])
        print(f"| {name} | {len(sub)} | {lams} | {f1} | {pure} | {seconds:.1f} |")
    write_json(args.json, rows, indent=1)
    return rows


if __name__ == "__main__":
    main()
