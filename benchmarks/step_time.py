"""Step time vs number of groups at equal total width (64 groups must not cost 16x what 4 do).

Data: ``N`` rows of total width ``D`` split into ``G`` equal groups, 10% of groups missing.
Each configuration trains for ``--steps`` steps after ``--warmup`` untimed steps, ``--repeats``
times; we report the best (least disturbed by other load) and the median ms/step, and the
ratio of best times. Prints a table and writes JSON.

    python benchmarks/step_time.py                 # ~1 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np
import pyro
import torch

from pyro_factvae import FactVAE, GroupedData


def grouped(n: int, width: int, groups: int, seed: int = 0) -> GroupedData:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, width)).astype(np.float32)
    parts = np.split(x, groups, axis=1)
    gone = rng.random((n, groups)) < 0.1
    gone[gone.all(1), 0] = False
    for j, p in enumerate(parts):
        p[gone[:, j]] = np.nan
    return GroupedData(parts)


def time_steps(groups: int, args) -> float:
    data = grouped(args.batch_size * (args.steps + args.warmup), args.width, groups)
    model = FactVAE(latent_dim=args.latent_dim, encoder_width=16, decoder_width=16)
    # one epoch = warmup + steps minibatches; time the tail through the loss history hook
    pyro.clear_param_store()
    model.fit(
        data.subset(range(args.batch_size * args.warmup)),
        epochs=1,
        batch_size=args.batch_size,
        progress=False,
    )
    timed = data.subset(range(args.batch_size * args.steps))
    t0 = time.perf_counter()
    model.fit(timed, epochs=1, batch_size=args.batch_size, progress=False, seed=None)
    return 1000 * (time.perf_counter() - t0) / args.steps


def time_parts(groups: int, args, repeats: int = 30) -> dict[str, float]:
    """ms for the guide, the model, the rest of the ELBO, and the backward pass (one batch)."""
    from pyro import poutine
    from pyro.infer import TraceMeanField_ELBO

    from pyro_factvae import collapse

    data = grouped(args.batch_size, args.width, groups)
    fitted = FactVAE(latent_dim=args.latent_dim, encoder_width=16, decoder_width=16)
    fitted.fit(data, epochs=1, batch_size=args.batch_size, progress=False)
    xs, mask = data[torch.arange(args.batch_size)]
    model, guide = collapse(fitted.model_), collapse(fitted.guide_)
    elbo = TraceMeanField_ELBO()

    def best(fn) -> float:
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(1000 * (time.perf_counter() - t0))
        return min(times)

    with pyro.validation_enabled(False):
        guide_tr = poutine.trace(guide).get_trace(xs, mask)
        t_guide = best(lambda: poutine.trace(guide).get_trace(xs, mask))
        t_model = best(lambda: poutine.trace(poutine.replay(model, guide_tr)).get_trace(xs, mask))
        t_loss = best(lambda: elbo.differentiable_loss(model, guide, xs, mask))
        t_all = best(lambda: elbo.differentiable_loss(model, guide, xs, mask).backward())
    return {
        "guide": t_guide,
        "model": t_model,
        "elbo_rest": t_loss - t_guide - t_model,
        "backward": t_all - t_loss,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--width", type=int, default=256, help="total width D")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/out/step_time.json")
    args = parser.parse_args(argv)

    rows = []
    for g in args.groups:
        runs = [time_steps(g, args) for _ in range(args.repeats)]
        rows.append(
            {
                "groups": g,
                "width": args.width,
                "ms_per_step": min(runs),
                "median_ms_per_step": statistics.median(runs),
                "runs_ms": runs,
            }
        )
    base = rows[0]["ms_per_step"]
    print(f"{'G':>4} {'D':>5} {'best ms':>8} {'median':>8} {'vs G=' + str(args.groups[0]):>8}")
    for r in rows:
        r["ratio"] = r["ms_per_step"] / base
        print(
            f"{r['groups']:>4} {r['width']:>5} {r['ms_per_step']:>8.2f} "
            f"{r['median_ms_per_step']:>8.2f} {r['ratio']:>8.2f}"
        )
    print(
        f"\nparts of one loss + backward (best of 30, ms)\n{'G':>4} {'guide':>7} {'model':>7} "
        f"{'elbo':>7} {'backward':>9}"
    )
    for r in rows:
        r["parts_ms"] = parts = time_parts(r["groups"], args)
        print(
            f"{r['groups']:>4} {parts['guide']:>7.2f} {parts['model']:>7.2f} "
            f"{parts['elbo_rest']:>7.2f} {parts['backward']:>9.2f}"
        )
    meta = {
        "torch": torch.__version__,
        "pyro": pyro.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "batch_size": args.batch_size,
        "latent_dim": args.latent_dim,
    }
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=2)
    print(f"wrote {args.json}")
    return rows


if __name__ == "__main__":
    main()
