"""Soak: many thousands of steps with changing missingness; memory must not grow, loss stays finite.

Trains one model on bars for ``--rounds`` rounds; every round draws a new missingness pattern
(5% to 60% of quadrants missing, including rows with a single observed group), fits
``--epochs`` epochs from where the last round stopped, writes a checkpoint every 200 steps,
and records the resident memory (``ru_maxrss`` and current RSS from ``/proc``), the loss and
the step count. Prints a table and writes JSON.

    python benchmarks/soak.py      # 10,240 steps; 76 s measured on 2 CPU cores
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import tempfile
import time

import numpy as np
from report import OUT, positive, write_json

from pyro_factvae import FactVAE
from pyro_factvae.datasets import bars_data


def rss_mb() -> float:
    """Current resident set size in MiB (Linux ``/proc``; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=positive, default=20)
    parser.add_argument("--rows", type=positive, default=2000)
    parser.add_argument("--epochs", type=positive, default=16, help="epochs per round")
    parser.add_argument("--batch-size", type=positive, default=64)
    parser.add_argument("--json", default=os.path.join(OUT, "soak.json"))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    vae = FactVAE(latent_dim=12, lam=1.0)
    rows, steps, start = [], 0, time.perf_counter()
    per_epoch = math.ceil(args.rows / args.batch_size)  # every row trains: no early stopping
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "soak.ckpt")
        for r in range(args.rounds):
            missing = float(rng.uniform(0.05, 0.6))
            data = bars_data(args.rows, missing=missing, seed=r)
            vae.fit(
                data,
                epochs=args.epochs,
                batch_size=args.batch_size,
                seed=r,
                progress=False,
                checkpoint=ckpt,
                checkpoint_every=200,
                patience=None,
            )
            steps += args.epochs * per_epoch
            loss = vae.history_[-1]
            rows.append(
                {
                    "round": r,
                    "missing": missing,
                    "steps": steps,
                    "loss": loss,
                    "finite": bool(np.isfinite(vae.history_).all()),
                    "rss_mb": rss_mb(),
                    "seconds": time.perf_counter() - start,
                }
            )
            x = rows[-1]
            print(
                f"round {r:>3}  missing {missing:4.2f}  steps {steps:>6}  loss {loss:9.3f}  "
                f"rss {x['rss_mb']:7.1f} MiB  {x['seconds']:6.0f} s",
                flush=True,
            )
    warm = rows[len(rows) // 4]["rss_mb"]  # after warm-up (allocator pools, caches)
    summary = {
        "steps": steps,
        "all_finite": all(r["finite"] for r in rows),
        "rss_after_warmup_mb": warm,
        "rss_final_mb": rows[-1]["rss_mb"],
        "rss_growth_mb": rows[-1]["rss_mb"] - warm,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds": rows[-1]["seconds"],
    }
    print(
        f"\n{steps} steps, loss finite throughout: {summary['all_finite']}; RSS after warm-up "
        f"{warm:.1f} MiB, at the end {summary['rss_final_mb']:.1f} MiB "
        f"(growth {summary['rss_growth_mb']:+.1f} MiB); {summary['seconds']:.0f} s"
    )
    write_json(args.json, {"args": vars(args), "rounds": rows, "summary": summary}, indent=1)
    return summary


if __name__ == "__main__":
    main()
