"""Training-step speed against plain PyTorch, and a full Fashion-MNIST epoch (time, peak RSS).

``--epochs``: an epoch of ``FactVAE.fit`` against one of :mod:`minimal_factvae`, a factVAE in
plain PyTorch without the library's classes (the reference below shares the library's
networks, so it cannot see what they cost).

The reference is a plain-PyTorch step written here from the library's own networks (the same
encoders, decoders, likelihood parameters and ``Phi``): product of experts, one
reparameterised ``z``, analytic KL, the Normal log-likelihood, ``backward``, the same Adam step
for the networks and the same column-wise Adam + group soft-threshold for ``Phi``. The library
step is :func:`pyro_factvae.infer.loop.train_step`, the step ``FactVAE.fit`` runs (minibatch
fetch, encoder dropout, loss, finiteness guard, update). The two are timed interleaved, step
by step, in one process; we report medians and their ratio.

Sizes: total width ``D = 256`` split into ``G`` groups (G = 5 gives unequal widths, one
zero-padded block, like mocap6's uneven groups), 10% of groups missing, 8 latents, widths 16. With
``--cells F`` each size is also timed with a fraction ``F`` of the cells of the observed groups
missing (the library step only: the reference has no cell masks), beside the same step on
whole-group data.

    python benchmarks/speed.py                      # steps table, ~3 min on 2 CPU cores
    python benchmarks/speed.py --cells 0.1          # plus the step with 10% missing cells
    python benchmarks/speed.py --epochs             # an epoch of FactVAE.fit against the
                                                    # minimal plain-PyTorch factVAE
    python benchmarks/speed.py --fashion-dir DIR    # plus Fashion-MNIST epochs (60,000 rows),
                                                    # in memory and streamed from a Dataset

``DIR`` holds ``train-images-idx3-ubyte(.gz)`` (Debian: ``dataset-fashion-mnist``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import pyro
import torch
from epoch_speed import epoch_table, grouped
from report import OUT, positive, write_json
from torch.nn.functional import pad

from pyro_factvae import FactVAE, FitConfig, GroupedData
from pyro_factvae.infer.loop import Position, train_step
from pyro_factvae.infer.objective import objective_for
from pyro_factvae.infer.optim import Optimizers


class Reference:
    """The plain-PyTorch step over the library's networks of a fitted ``FactVAE``."""

    def __init__(self, vae: FactVAE, data: GroupedData, lr: float, phi_lr: float, lam: float):
        self.model, self.guide = vae.model_, vae.guide_
        layout = self.model.layout
        self.groups = [list(b.groups) for b in layout.blocks]
        # a padded block (groups of unequal widths): its groups zero-padded to its width
        self.values = [
            torch.stack(
                [pad(data.values[g], (0, b.dim - w)) for g, w in zip(b.groups, b.widths)], 1
            )
            if b.padded
            else data.block(b.groups)
            for b in layout.blocks
        ]
        self.observed = data.observed
        self.p = self.model.config.decoder_width
        self.keep_prob = self.model.config.keep_prob
        self.lam = lam
        self.weights = [
            torch.tensor(v).view(-1, 1, 1) if isinstance(v, tuple) else float(v)
            for v in layout.penalty_weights
        ]
        self.phis = list(self.guide.Phi)
        ids = {id(p) for p in self.phis}
        theta = [
            p for p in [*self.model.parameters(), *self.guide.parameters()] if id(p) not in ids
        ]
        self.theta = torch.optim.Adam(theta, lr=lr, fused=True)  # the library's, on the CPU
        self.phi_lr = phi_lr
        self.state = [
            (torch.zeros_like(p), torch.zeros_like(p[..., :1, :]), [0]) for p in self.phis
        ]

    def step(self, rows: torch.Tensor, generator: torch.Generator) -> float:
        mask = self.observed[rows]
        keep = torch.rand(mask.shape, generator=generator) < self.keep_prob
        inputs = mask & keep
        mus, precs, xs = [], [], []
        for values, groups, enc, lik, phi in zip(
            self.values, self.groups, self.guide.encoders, self.model.likelihoods, self.phis
        ):
            x = values[rows]
            mu, prec = enc((x - lik.shift) / lik.unit, phi[:, self.p :, :], self.guide.baseline)
            m = inputs[:, groups].unsqueeze(-1)
            mus.append((mu * prec).where(m, 0.0).sum(1))
            precs.append(prec.where(m, 0.0).sum(1))
            xs.append(x)
        precision = 1 + sum(precs)
        loc = sum(mus) / precision
        scale = precision.rsqrt()
        z = loc + scale * torch.randn_like(loc)
        kl = 0.5 * (scale.square() + loc.square() - 1 - 2 * scale.log()).sum()
        nll = 0.0
        for x, groups, dec, lik, phi in zip(
            xs, self.groups, self.model.decoders, self.model.likelihoods, self.phis
        ):
            out = dec(z, phi[:, : self.p, :])
            sd = lik.scale * lik.unit
            lp = -((x - lik.mean(out)) ** 2) / (2 * sd**2) - sd.log() - 0.5 * math.log(2 * math.pi)
            if lik.columns is not None:  # a padded block: its groups' own columns
                lp = lp.where(lik.columns, 0.0)
            nll = nll - lp.sum(-1).where(mask[:, groups], 0.0).sum()
        theta_prior = -self.model.theta_log_prior() * self.model.config.theta_prior_weight
        loss = (nll + kl) / len(rows) + theta_prior
        loss.backward()
        self.theta.step()
        self.theta.zero_grad(set_to_none=True)
        with torch.no_grad():
            for phi, (m1, m2, t), w in zip(self.phis, self.state, self.weights):
                t[0] += 1
                g = phi.grad
                m1.lerp_(g, 0.01)
                m2.lerp_(g.square().mean(-2, keepdim=True), 0.001)
                eta = self.phi_lr / ((m2 / (1 - 0.999 ** t[0])).sqrt() + 1e-8)
                phi.sub_(eta * m1 / (1 - 0.99 ** t[0]))
                norms = phi.norm(dim=-2, keepdim=True)
                phi.mul_((1 - eta * self.lam * w / norms.clamp_min(1e-30)).clamp_min(0))
                phi.grad = None
        return float(loss.detach())


def time_size(groups: int, batch: int, args, cells: float = 0.0) -> dict:
    """Interleaved medians (ms) of the library step and the reference step (``cells``: the
    fraction of missing cells in observed groups)."""
    torch.manual_seed(0)
    pyro.set_rng_seed(0)
    data = grouped(batch * 8, args.width, groups, cells=cells)
    lam = 1e-3  # small: the prox runs, few links die over the timed steps
    vae = FactVAE(latent_dim=args.latent_dim, encoder_width=16, decoder_width=16, lam=lam)
    vae.fit(data, epochs=1, batch_size=batch, progress=False, relax_epochs=0)
    model, guide = vae.model_, vae.guide_
    fit = FitConfig()  # the default step sizes and prox method
    optim = Optimizers(model, guide, fit.lr, fit.phi_lr, fit.phi_optim)
    optim.set_lam(lam)
    objective = objective_for(model, guide, "prox", data, 1.0 / len(data))
    ref = Reference(vae, data, fit.lr, fit.phi_lr, lam)
    gen = torch.Generator().manual_seed(0)
    lib_ms, ref_ms = [], []
    pos = Position()
    with pyro.validation_enabled(False):
        for i in range(args.warmup + args.steps):
            rows = torch.randperm(len(data), generator=gen)[:batch]
            t0 = time.perf_counter()
            train_step(objective, optim, rows, gen, pos)
            t1 = time.perf_counter()
            ref.step(rows, gen)
            t2 = time.perf_counter()
            if i >= args.warmup:
                lib_ms.append(1000 * (t1 - t0))
                ref_ms.append(1000 * (t2 - t1))
    lib, plain = statistics.median(lib_ms), statistics.median(ref_ms)
    return {
        "groups": groups,
        "blocks": len(model.layout.blocks),
        "batch": batch,
        "threads": torch.get_num_threads(),
        "cells": cells,
        "library_ms": lib,
        "plain_ms": plain,
        "ratio": lib / plain,
    }


def fashion_epoch(folder: str, threads: int, streamed: bool = False) -> dict:
    """One training epoch over the 60,000 Fashion-MNIST training images as 4 quadrant groups
    (14x14 each), batch 128, fixed lam, in a fresh process: seconds and peak RSS.

    ``streamed``: the images are never loaded; the idx file is decompressed to a temporary
    file, mapped (``open_idx``) and streamed row by row (``QuadrantDataset``) through
    ``GroupedData.from_dataset`` into a float32 memmap, which training then reads."""
    if streamed:
        load = f"""
import tempfile
from pyro_factvae import GroupedData
from pyro_factvae.datasets.images import QuadrantDataset, open_idx
tmp = tempfile.mkdtemp()
images = open_idx({folder!r} + "/train-images-idx3-ubyte.gz", cache=tmp + "/train.idx")
t0 = time.perf_counter()
groups = GroupedData.from_dataset(QuadrantDataset(images), batch_size=4096)
load_sec = time.perf_counter() - t0
"""
    else:
        load = f"""
from pyro_factvae.datasets.images import load_fashion_mnist, quadrant_data
t0 = time.perf_counter()
images, _ = load_fashion_mnist({folder!r}, "train")
groups = quadrant_data(images)
load_sec = time.perf_counter() - t0
"""
    code = f"""
import json, resource, time, torch
torch.set_num_threads({threads})
import pyro_factvae
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
{load}
del images
loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from pyro_factvae import FactVAE
vae = FactVAE(lam=0.01)
t0 = time.perf_counter()
vae.fit(groups, epochs=1, batch_size=128, relax_epochs=0, patience=None, progress=False)
sec = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nbytes = groups.matrix.numel() * groups.matrix.element_size()
print(json.dumps(dict(seconds=sec, load_seconds=load_sec, rss_before_mb=before / 1024,
                      rss_loaded_mb=loaded / 1024, rss_peak_mb=peak / 1024,
                      data_mb=nbytes / 2**20, rows=len(groups), streamed={streamed})))
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _auto_int(text: str) -> int | str:
    return text if text == "auto" else int(text)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=positive, nargs="+", default=[4, 5, 16, 64, 256])
    parser.add_argument("--batch-sizes", type=positive, nargs="+", default=[128, 1024])
    parser.add_argument("--threads", type=positive, nargs="+", default=[1, 2])
    parser.add_argument("--width", type=positive, default=256, help="total width D")
    parser.add_argument("--latent-dim", type=int, default=8)
    parser.add_argument("--steps", type=positive, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--cells", type=float, default=0.0, help="also time missing cells")
    parser.add_argument("--fashion-dir", default=None)
    parser.add_argument("--json", default=os.path.join(OUT, "speed.json"))
    parser.add_argument(
        "--epochs", action="store_true", help="only the epoch against the minimal factVAE"
    )
    parser.add_argument("--epoch-groups", type=positive, nargs="+", default=[4, 16, 64, 256])
    parser.add_argument("--epoch-rows", type=int, default=30000)
    parser.add_argument("--repeats", type=positive, default=5, help="timed epochs of each, in turn")
    parser.add_argument(
        "--epoch-latent-dim", type=_auto_int, default="auto", help="K of the epoch table"
    )
    parser.add_argument(
        "--epoch-hidden", type=_auto_int, default="auto", help="H = p of the epoch table"
    )
    args = parser.parse_args(argv)
    if args.json == os.path.join(OUT, "speed.json"):  # the main table's file is its own
        if args.cells:
            args.json = os.path.join(OUT, "speed_cells.json")
        elif args.fashion_dir:
            args.json = os.path.join(OUT, "speed_fashion.json")
    if args.epochs:
        uneven = [g for g in args.epoch_groups if args.width % g]
        if uneven:
            parser.error(f"--epoch-groups {uneven}: each must divide --width {args.width}")
        torch.set_num_threads(max(args.threads))
        table = epoch_table(args)
        result = {"meta": {"torch": torch.__version__, "args": vars(args)}, "epochs": table}
        write_json(args.json.replace(".json", "_epochs.json"), result, indent=2)
        return result

    rows = []
    cells_head = f" {'cells ' + format(args.cells, '.0%'):>10}" if args.cells else ""
    print(
        f"{'G':>4} {'blocks':>6} {'batch':>5} {'thr':>3} {'library':>8} {'plain':>8} "
        f"{'ratio':>6}{cells_head}"
    )
    for threads in args.threads:
        torch.set_num_threads(threads)
        for batch in args.batch_sizes:
            for g in args.groups:
                r = time_size(g, batch, args)
                rows.append(r)
                extra = ""
                if args.cells:
                    c = time_size(g, batch, args, cells=args.cells)
                    rows.append(c)
                    extra = f" {c['library_ms']:>10.2f}"
                print(
                    f"{g:>4} {r['blocks']:>6} {batch:>5} {threads:>3} {r['library_ms']:>8.2f} "
                    f"{r['plain_ms']:>8.2f} {r['ratio']:>6.2f}{extra}",
                    flush=True,
                )
    growth = {}
    for threads in args.threads:
        for batch in args.batch_sizes:
            sel = {
                r["groups"]: r
                for r in rows
                if r["threads"] == threads and r["batch"] == batch and not r["cells"]
            }
            if 4 in sel and 64 in sel:
                growth[f"{batch}x{threads}"] = sel[64]["library_ms"] / sel[4]["library_ms"]
    print("library step, G=64 over G=4:", {k: round(v, 2) for k, v in growth.items()})
    result = {
        "meta": {
            "torch": torch.__version__,
            "pyro": pyro.__version__,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "args": vars(args),
        },
        "steps": rows,
        "growth_64_over_4": growth,
    }
    if args.fashion_dir:
        for key, streamed in (("fashion_epoch", False), ("fashion_epoch_streamed", True)):
            epoch = fashion_epoch(args.fashion_dir, max(args.threads), streamed)
            result[key] = epoch
            how = "streamed from a Dataset into a memmap" if streamed else "arrays in memory"
            print(
                f"Fashion-MNIST epoch ({how}; 60,000 rows, 4 x 196 pixels, batch 128): "
                f"{epoch['seconds']:.1f} s (loading {epoch['load_seconds']:.1f} s); peak RSS "
                f"{epoch['rss_peak_mb']:.0f} MiB (before loading {epoch['rss_before_mb']:.0f} "
                f"MiB, after {epoch['rss_loaded_mb']:.0f} MiB; data {epoch['data_mb']:.0f} MiB)",
                flush=True,
            )
    write_json(args.json, result, indent=2)
    return result


if __name__ == "__main__":
    main()
