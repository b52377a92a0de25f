"""Training-step time with groups of different widths in zero-padded blocks, against one block
per width, on real tables (the same data, weights drawn from the same seed, one process).

``Layout(pad=True)`` (what ``FactVAE`` builds) puts a table's normal groups of different widths
in one block zero-padded to the widest (while the padding at most doubles the cells);
``pad=False`` makes one block per width. Both models train with the library's step
(:func:`pyro_factvae.infer.loop.train_step`: minibatch fetch, encoder dropout, loss, guard,
Adam and prox) at the default sizes and step sizes, batch 128, ``lam = 0.1``, on the tables'
hide-one training rows (``benchmarks/peers.py``'s split, seed 0); the two are timed
interleaved, step by step, and the medians reported.

    python benchmarks/padding.py                 # wine, diabetes, nutrimouse, UCI; ~1 min
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import pyro
import torch
from peer_data import loaders
from peers import split_and_hide
from report import OUT, write_json

from pyro_factvae import FitConfig, GroupedData, Guide, Layout, Model, ModelConfig
from pyro_factvae.infer.loop import Position, train_step
from pyro_factvae.infer.objective import objective_for
from pyro_factvae.infer.optim import Optimizers


def trainer(data: GroupedData, pad: bool, lam: float):
    """A model, its objective and optimizers on ``data`` with padded blocks or not."""
    torch.manual_seed(0)
    layout = Layout(data.names, data.dims, ("normal",) * len(data.dims), pad=pad)
    model = Model(layout, ModelConfig(lam=lam, num_data=len(data)))
    model.init_from_data(data.values, data.observed, data.cells)
    guide = Guide(model)
    fit = FitConfig()  # the default step sizes and prox method
    optim = Optimizers(model, guide, fit.lr, fit.phi_lr, fit.phi_optim)
    optim.set_lam(lam)
    return objective_for(model, guide, "prox", data, 1.0 / len(data)), optim, layout


def time_table(name: str, groups: dict, args) -> dict:
    train, *_ = split_and_hide(groups, 0, "one")
    data = GroupedData(train)
    runs = [trainer(data, pad, args.lam) for pad in (True, False)]
    gens = [torch.Generator().manual_seed(0) for _ in runs]
    order = torch.Generator().manual_seed(1)
    times: list[list[float]] = [[], []]
    batch = min(args.batch, len(data))
    with pyro.validation_enabled(False):
        for i in range(args.warmup + args.steps):
            rows = torch.randperm(len(data), generator=order)[:batch]
            for k, (objective, optim, _) in enumerate(runs):
                t0 = time.perf_counter()
                train_step(objective, optim, rows, gens[k], Position())
                if i >= args.warmup:
                    times[k].append(1000 * (time.perf_counter() - t0))
    padded, plain = (statistics.median(t) for t in times)
    return {
        "data": name,
        "rows": len(data),
        "widths": list(data.dims),
        "blocks_padded": len(runs[0][2].blocks),
        "blocks_plain": len(runs[1][2].blocks),
        "batch": batch,
        "padded_ms": padded,
        "plain_ms": plain,
        "speedup": plain / padded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        nargs="+",
        default=["wine", "diabetes", "nutrimouse", "mfeat"],
        choices=["wine", "diabetes", "nutrimouse", "mfeat", "breast", "digits", "sim"],
    )
    parser.add_argument("--cache", default=os.path.expanduser("~/.cache/pyro_factvae"))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lam", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=os.path.join(OUT, "padding.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = loaders(args.cache, None)
    rows = []
    print("| data | rows | widths | blocks (padded / not) | padded ms | not padded ms | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.data:
        groups, _ = load[name](0)
        r = time_table(name, groups, args)
        rows.append(r)
        widths = ", ".join(str(w) for w in r["widths"])
        print(
            f"| {name} | {r['rows']} | {widths} | {r['blocks_padded']} / {r['blocks_plain']} | "
            f"{r['padded_ms']:.2f} | {r['plain_ms']:.2f} | {r['speedup']:.2f}x |",
            flush=True,
        )
    write_json(args.json, {"threads": args.threads, "batch": args.batch, "rows": rows})


if __name__ == "__main__":
    main()
