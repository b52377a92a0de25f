"""Bars at the default lambda over several seeds: the Fig 2 structure check, as a table.

For each seed, trains ``lam = 0`` and ``lam = BARS_LAM`` (0.2 per variable) exactly as
``examples/bars.py`` does and reports: active latents, links joining a top quadrant with a
bottom one (0 is the true structure; zeros are exact, from the prox), whether every quadrant
has an active latent, whether ``lam = 0`` kept every link, and the right-from-left RMSE ratio.

    python benchmarks/bars_sparsity.py            # 5 seeds, ~4 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import os

from report import OUT, seed_type, write_json

from pyro_factvae.tools.experiments import BARS_LAM
from pyro_factvae.tools.experiments import bars_run as run


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--lam", type=float, default=BARS_LAM)
    parser.add_argument("--json", default=os.path.join(OUT, "bars_sparsity.json"))
    args = parser.parse_args(argv)

    rows = []
    for seed in args.seeds:
        dense = run(0.0, seed, progress=False)
        sparse = run(args.lam, seed, progress=False)
        rows.append(
            {
                "seed": seed,
                "active_latents": sparse["active_latents"],
                "cross": sparse["cross"],
                "every_quadrant": sparse["every_quadrant"],
                "dense_zero_links": dense["zero_columns"],
                "rmse_sparse": sparse["rmse"],
                "rmse_dense": dense["rmse"],
                "rmse_ratio": sparse["rmse"] / dense["rmse"],
                "seconds": sparse["seconds"] + dense["seconds"],
            }
        )
        r = rows[-1]
        r["pass"] = (
            r["cross"] == 0
            and r["every_quadrant"]
            and r["dense_zero_links"] == 0
            and r["rmse_ratio"] <= 1.15
        )
    head = "seed  active  top-bottom  all-quadrants  lam0-zeros  rmse(lam)  rmse(0)  ratio  pass"
    print(head)
    for r in rows:
        print(
            f"{r['seed']:>4}  {r['active_latents']:>6}  {r['cross']:>10}  "
            f"{str(r['every_quadrant']):>13}  {r['dense_zero_links']:>10}  "
            f"{r['rmse_sparse']:>9.4f}  {r['rmse_dense']:>7.4f}  {r['rmse_ratio']:>5.2f}  "
            f"{'yes' if r['pass'] else 'no':>4}"
        )
    passed = sum(r["pass"] for r in rows)
    print(f"{passed} of {len(rows)} seeds pass (lam = {args.lam:g})")
    write_json(args.json, {"lam": args.lam, "rows": rows, "passed": passed}, indent=2)
    return rows


if __name__ == "__main__":
    main()
