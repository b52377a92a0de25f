"""An epoch of ``FactVAE.fit`` against an epoch of :mod:`minimal_factvae` (``speed.py
--epochs``), and the grouped data both speed tables train on."""

from __future__ import annotations

import time
import warnings
from time import perf_counter as now

import numpy as np
import torch
from minimal_factvae import MinimalFactVAE, MinimalTrainer
from minimal_factvae import epoch as minimal_epoch

from pyro_factvae import FactVAE, GroupedData


def grouped(n: int, width: int, groups: int, seed: int = 0, cells: float = 0.0) -> GroupedData:
    """``n`` rows of standard normals, ``width`` columns split into ``groups`` near-equal
    groups, 10% of (row, group) entries missing (never a whole row), and a fraction ``cells``
    of the other cells missing."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, width)).astype(np.float32)
    holes = rng.random(x.shape) < cells
    x[holes] = np.nan
    x[holes.all(1), 0] = 0.0  # never a row without any cell
    parts = np.array_split(x, groups, axis=1)
    gone = rng.random((n, groups)) < 0.1
    gone[gone.all(1), 0] = False
    for j, p in enumerate(parts):
        p[gone[:, j]] = np.nan
    return GroupedData(parts)


def epoch_vs_minimal(
    groups: int,
    batch: int,
    rows: int,
    width: int,
    seed: int = 0,
    repeats: int = 5,
    latent_dim: int | str = "auto",
    hidden: int | str = "auto",
) -> dict:
    """Seconds of one ``FactVAE.fit`` epoch (``lam=0.1``, the default networks, no early
    stopping) against one epoch of :mod:`minimal_factvae` of the same shapes, on ``rows``
    rows of ``width`` columns in ``groups`` groups (10% of groups missing). Each is timed
    after a first epoch (the model built, the caches warm); the two are then timed in turn,
    ``repeats`` epochs each, and the best epoch of each is kept (a shared machine's noise
    moves single epochs by up to 1.5x). A library epoch is the second of a two-epoch ``fit``,
    timed between the ends of its epochs (a callback): what one more epoch of training costs,
    not the call's own setup (reading the data's ranges, building the optimizers).
    ``latent_dim`` and ``hidden`` (the encoder and decoder widths): ``"auto"`` takes the
    defaults, which grow with ``G``; a number holds them fixed, so that sizes differ in ``G``
    alone."""
    data = grouped(rows, width, groups, seed)
    shapes = dict(latent_dim=latent_dim, encoder_width=hidden, decoder_width=hidden)
    settings = dict(batch_size=batch, patience=None, relax_epochs=0, warmup_epochs=0.0)
    with warnings.catch_warnings():  # pruning a group of noise is not the point here
        warnings.simplefilter("ignore")
        vae = FactVAE(lam=0.1, **shapes).fit(data, epochs=1, progress=False, **settings)
    torch.manual_seed(seed)
    d = width // groups
    model = MinimalFactVAE(groups, d, vae.config.latent_dim, vae.config.encoder_width)
    trainer = MinimalTrainer(model, lam=0.1)
    x = torch.stack([torch.nan_to_num(v) for v in data.values])  # (G, N, d)
    mask = data.observed.t().contiguous()
    minimal_epoch(trainer, x, mask, batch)
    library, plain = [], []
    for _ in range(repeats):  # interleaved: a slow spell of the machine hits both
        ends: list[float] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mark = ends.append  # bound now, called at each epoch's end
            vae.fit(
                data, epochs=2, progress=False, callbacks=[lambda _, m=mark: m(now())], **settings
            )
        library.append(ends[1] - ends[0])
        start = time.perf_counter()
        minimal_epoch(trainer, x, mask, batch)
        plain.append(time.perf_counter() - start)
    return {
        "groups": groups,
        "batch": batch,
        "rows": rows,
        "latent_dim": vae.config.latent_dim,
        "width": vae.config.encoder_width,
        "library_s": min(library),
        "minimal_s": min(plain),
        "ratio": min(library) / min(plain),
    }


def epoch_table(args) -> list[dict]:
    """:func:`epoch_vs_minimal` at every size; prints the table."""
    out = []
    print(f"{'G':>4} {'batch':>5} {'K':>3} {'H':>3} {'library s':>9} {'minimal s':>9} {'ratio':>6}")
    for batch in args.batch_sizes:
        for g in args.epoch_groups:
            r = epoch_vs_minimal(
                g,
                batch,
                args.epoch_rows,
                args.width,
                repeats=args.repeats,
                latent_dim=args.epoch_latent_dim,
                hidden=args.epoch_hidden,
            )
            out.append(r)
            print(
                f"{g:>4} {batch:>5} {r['latent_dim']:>3} {r['width']:>3} {r['library_s']:>9.2f} "
                f"{r['minimal_s']:>9.2f} {r['ratio']:>6.2f}",
                flush=True,
            )
    for batch in args.batch_sizes:
        sel = {r["groups"]: r for r in out if r["batch"] == batch}
        if 4 in sel and 64 in sel:
            lib, plain = (sel[64][k] / sel[4][k] for k in ("library_s", "minimal_s"))
            print(f"batch {batch}, G=64 over G=4: library {lib:.2f}x, minimal {plain:.2f}x")
    return out
