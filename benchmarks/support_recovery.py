"""Support recovery on prior-predictive data with a known Phi support (AUC, exact zeros).

Draws data from the model itself (:func:`pyro_factvae.tools.simulate.simulate`: 5 groups of 10
features, 4 latents, 9 of 20 links on), fits factVAE with prox-MAP and with the variational
mode, and reports, after matching fitted latents to true ones
(:func:`pyro_factvae.analysis.support_recovery`):

* ``auc``: variational P(active) (or, for prox, the column norm) against the true support;
* ``zeros``: fraction of links where "exactly zero" equals "absent" (prox) or where
  P(active) < 0.5 equals "absent" (variational).

    python benchmarks/support_recovery.py        # 3 seeds x K in (4, 6) x 2 modes, ~20 min
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from report import OUT, positive, seed_type, write_json

from pyro_factvae import FactVAE
from pyro_factvae.analysis import active_probability, support_recovery, to_inference_data
from pyro_factvae.tools.simulate import simulate

#: which latent drives which group: shared, pairwise and private structure
SUPPORT = np.array(
    [
        [1, 1, 0, 0],
        [1, 0, 1, 0],
        [0, 1, 1, 0],
        [0, 0, 0, 1],
        [1, 0, 0, 1],
    ],
    dtype=bool,
)


def run(
    mode: str, latent_dim: int, seed: int, rows: int, epochs: int, lam: float
) -> dict[str, float]:
    """Simulate with ``seed``, fit one model, score its support."""
    sim = simulate(SUPPORT, 10, rows, seed=seed)
    start = time.perf_counter()
    vae = FactVAE(latent_dim=latent_dim, lam=lam, phi_inference=mode)
    vae.fit(sim.data, epochs=epochs, batch_size=64, seed=seed, progress=False)
    seconds = time.perf_counter() - start
    if mode == "prox":
        rec = support_recovery(vae.sparsity(), sim.support)
        zeros = rec["zeros_match"]
    else:
        p = active_probability(to_inference_data(vae, num_draws=500, seed=seed))
        rec = support_recovery(p, sim.support)
        zeros = float(((np.asarray(p) >= 0.5) == rec["truth"]).mean())
    return {"auc": rec["auc"], "zeros": zeros, "seconds": seconds}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0, 1, 2])
    parser.add_argument("--latent-dims", type=positive, nargs="+", default=[4, 6])
    parser.add_argument(
        "--modes", nargs="+", default=["prox", "variational"], choices=["prox", "variational"]
    )
    parser.add_argument("--rows", type=positive, default=2000)
    parser.add_argument("--epochs", type=positive, default=100)
    parser.add_argument(
        "--lam", type=float, default=3.0, help="a fixed lam (default: %(default)s, the docs' table)"
    )
    parser.add_argument("--json", default=os.path.join(OUT, "support_recovery.json"))
    args = parser.parse_args(argv)

    results = []
    print(" mode         K  seed    auc  zeros  seconds")
    for mode in args.modes:
        for k in args.latent_dims:
            for seed in args.seeds:
                r = {"mode": mode, "latent_dim": k, "seed": seed}
                r.update(run(mode, k, seed, args.rows, args.epochs, args.lam))
                results.append(r)
                print(
                    f" {mode:<11} {k:>2}  {seed:>4}  {r['auc']:.3f}  {r['zeros']:.3f}  "
                    f"{r['seconds']:7.1f}",
                    flush=True,
                )
    print("\n mode         K  mean auc  min auc  mean zeros")
    for mode in args.modes:
        for k in args.latent_dims:
            rs = [r for r in results if r["mode"] == mode and r["latent_dim"] == k]
            aucs = [r["auc"] for r in rs]
            print(
                f" {mode:<11} {k:>2}  {np.mean(aucs):8.3f}  {min(aucs):7.3f}  "
                f"{np.mean([r['zeros'] for r in rs]):10.3f}"
            )
    write_json(args.json, {"args": vars(args), "rows": results}, indent=2)
    return results


if __name__ == "__main__":
    main()
