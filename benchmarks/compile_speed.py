"""Whether ``torch.compile`` pays on the CPU: the training step of ``FactVAE`` with its
objective compiled, against the same step in eager mode.

For each size (``G`` groups of 256 columns in all, 30,000 rows, the default networks,
``lam=0.1``) a ``FactVAE`` is fitted for one epoch; then its training objective
(:mod:`pyro_factvae.infer.objective`, the loss ``FactVAE.fit`` minimises) is compiled with
``torch.compile`` (``dynamic=False``, full minibatches only) and the two are timed in turn on
the same minibatches: the minibatch, the encoder's subsets, the objective, ``backward`` and the
update of both optimizers (a step of ``fit`` less its gradient check). Reported: the seconds
the first three compiled steps took (the compilation, and three steps), cold (an empty
inductor cache folder, as a first run on a machine meets it; within one run only the first
size is wholly cold, as later ones may reuse kernels torch holds in memory, so theirs are
lower bounds: run one size a process for each) and warm (the same graphs compiled again in the
same process after ``torch.compiler.reset()``: a lower bound on what a later run pays), the
median milliseconds of a step each way, and the steps after which each compilation would have
paid for itself (never where the compiled step is not faster).

    python benchmarks/compile_speed.py              # ~10 min on one core
    python benchmarks/compile_speed.py --groups 4 --batch-sizes 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from epoch_speed import grouped
from report import OUT, positive, write_json

from pyro_factvae import FactVAE
from pyro_factvae.infer.loop import encoder_subset
from pyro_factvae.infer.objective import objective_for
from pyro_factvae.infer.optim import Optimizers


def compile_vs_eager(groups: int, batch: int, rows: int, width: int, steps: int) -> dict:
    """Compilation seconds and median step milliseconds (eager, compiled) at one size."""
    data = grouped(rows, width, groups)
    with warnings.catch_warnings():  # pruning a group of noise is not the point here
        warnings.simplefilter("ignore")
        vae = FactVAE(lam=0.1).fit(data, epochs=1, batch_size=batch, progress=False)
    model, guide = vae.model_, vae.guide_
    objective = objective_for(model, guide, "prox", data, 1.0 / len(data))
    optimizers = Optimizers(model, guide, 1e-3, 1e-3, "adam")
    generator = torch.Generator().manual_seed(0)

    def eager(*args, **kwargs):
        return objective(*args, **kwargs).loss

    perm = torch.randperm(rows, generator=generator)
    full = rows // batch

    def step(loss_fn, i: int) -> float:
        start = time.perf_counter()
        rows_i = perm[(i % full) * batch : (i % full + 1) * batch]
        xs, mask, cells = objective.batch(rows_i)
        keep, enc_cells = encoder_subset(guide, mask, cells, generator)
        args, kwargs = guide.experts.training_args(xs, mask, keep, cells, enc_cells)
        loss_fn(*args, **kwargs).backward()
        optimizers.step()
        optimizers.zero_grad()
        return time.perf_counter() - start

    for i in range(3):
        step(eager, i)

    def compile_seconds() -> tuple[float, object]:
        torch.compiler.reset()  # forget compiled code (inductor's files on disk stay)
        compiled = torch.compile(eager, dynamic=False)
        start = time.perf_counter()
        for i in range(3):
            step(compiled, i)
        return time.perf_counter() - start, compiled

    # cold: an empty inductor cache folder, as a first run on a machine meets it
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor_")
    compile_s, _ = compile_seconds()
    warm_s, compiled = compile_seconds()  # the same graphs again: read from that folder
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for i in range(steps):  # interleaved: a slow spell of the machine hits both
        times["eager"].append(step(eager, i))
        times["compiled"].append(step(compiled, i))
    eager_ms, compiled_ms = (1e3 * statistics.median(times[k]) for k in ("eager", "compiled"))
    saved = (eager_ms - compiled_ms) / 1e3
    return {
        "groups": groups,
        "batch": batch,
        "compile_s": compile_s,
        "warm_compile_s": warm_s,
        "eager_ms": eager_ms,
        "compiled_ms": compiled_ms,
        "ratio": compiled_ms / eager_ms,
        "break_even_steps": round(compile_s / saved) if saved > 0 else None,
        "warm_break_even_steps": round(warm_s / saved) if saved > 0 else None,
    }


def _steps(n: int | None) -> str:
    return "never" if n is None else f"{n:,} steps"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=positive, nargs="+", default=[4, 16, 64])
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[128, 1024])
    parser.add_argument("--rows", type=positive, default=30000)
    parser.add_argument("--width", type=positive, default=256, help="total width D")
    parser.add_argument("--steps", type=positive, default=60, help="timed steps of each")
    parser.add_argument("--threads", type=positive, default=1)
    parser.add_argument("--json", default=os.path.join(OUT, "compile_speed.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    head = ("G", 4), ("batch", 5), ("compile s", 9), ("warm s", 6), ("eager ms", 8)
    print(" ".join(f"{h:>{w}}" for h, w in head), f"{'compiled ms':>11} {'ratio':>6}")
    out = []
    for batch in args.batch_sizes:
        for g in args.groups:
            r = compile_vs_eager(g, batch, args.rows, args.width, args.steps)
            out.append(r)
            print(
                f"{g:>4} {batch:>5} {r['compile_s']:>9.1f} {r['warm_compile_s']:>6.1f} "
                f"{r['eager_ms']:>8.2f} {r['compiled_ms']:>11.2f} {r['ratio']:>6.2f}  "
                f"pays after: {_steps(r['break_even_steps'])} "
                f"(warm: {_steps(r['warm_break_even_steps'])})",
                flush=True,
            )
    write_json(args.json, {"threads": args.threads, "torch": torch.__version__, "rows": out})
    return out


if __name__ == "__main__":
    main()
