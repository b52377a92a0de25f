"""Multi-view images (paper sec. 4.3, Fig 5) with DCGAN-style group networks.

No multi-pose face set can be had offline, so by default the same pipeline runs on
Fashion-MNIST (Debian's ``dataset-fashion-mnist``): each 28x28 image is cut into 4 quadrant
views (zero-padded to 16x16 so that strided convolutions halve cleanly), and a quarter of the
views of the training rows are missing at random. With ``--cvl DIR`` it reads the CVL face
database layout instead (one folder per subject, ``MVC-001F`` .. ``MVC-007F`` = 7 views, a
missing file = a missing view; 64x64 grayscale), subjects sorted by name, the last
``--test-subjects`` held out (the paper: 100 train, 14 test).

Draws the Fig 5 grid (``views_grid.png``): every view reconstructed from *all other available
views*, for training rows, training rows with a view missing (the missing view is imputed;
shown with a red frame), and held-out rows, and the sparsity map (``views_sparsity.png``);
prints and writes (``views.json``) the held-out scores of each view imputed from the others,
pooled over the views (RMSE in pixel units against the per-pixel-mean baseline, coverage,
CRPS, log-likelihoods).

    python examples/views.py       # 6 min 50 s measured on 2 CPU cores (fit: 48 s)
    python examples/views.py --train 60000 --epochs 20
        # full size: 6x the rows, 2x the epochs: about 10 minutes of fitting (estimated
        # from the measured 48 s), plus evaluation
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from pyro_factvae import FactVAE
from pyro_factvae.datasets.images import QUADRANTS, load_fashion_mnist, load_views, quadrant_data
from pyro_factvae.metrics import evaluate
from pyro_factvae.plotting import plot_sparsity, save_figure
from pyro_factvae.tools.baselines import mean_imputation_rmse
from pyro_factvae.tools.script_args import (
    check_lam,
    out_folder,
    read_or_exit,
    script_out,
    write_json,
)


def fashion(args, parser):
    where = "--fashion-dir: Debian's dataset-fashion-mnist, or the idx files' folder"
    x, _ = read_or_exit(parser, lambda: load_fashion_mnist(args.fashion_dir, "train"), where)
    x_test, _ = read_or_exit(parser, lambda: load_fashion_mnist(args.fashion_dir, "t10k"), where)
    for option, have in (("train", len(x)), ("test", len(x_test))):
        if getattr(args, option) > have:
            parser.error(f"--{option} {getattr(args, option)}: the data have {have} rows")
    train = quadrant_data(x[: args.train], missing=args.missing, seed=args.seed, pad_to=16)
    test = quadrant_data(x_test[: args.test], missing=0.0, pad_to=16)
    return train, test, (1, 16, 16)


def cvl(args, parser):
    data, subjects = read_or_exit(parser, lambda: load_views(args.cvl, size=64), "--cvl")
    cut = len(subjects) - args.test_subjects
    if cut <= 0:
        parser.error(
            f"--test-subjects {args.test_subjects} leaves no training subject of the "
            f"{len(subjects)} found"
        )
    return data.subset(np.arange(cut)), data.subset(np.arange(cut, len(subjects))), (1, 64, 64)


def leave_one_out(model: FactVAE, data, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each view of ``rows`` reconstructed from the other observed views of the row."""
    sub = data.subset(rows)
    out = {}
    for view in sub.names:
        others = [v for v in sub.names if v != view]
        out[view] = model.reconstruct(sub, given=others, targets=[view], num_samples=0)[view]
    return out


def compose(parts: dict[str, np.ndarray], i: int, side: int, crop: int) -> np.ndarray:
    """One picture of row ``i``: quadrant views reassembled (padding cropped), or views in a row."""
    tiles = {k: v[i].reshape(side, side) for k, v in parts.items()}
    if set(tiles) == set(QUADRANTS):
        lo = (side - crop) // 2
        q = {k: t[lo : lo + crop, lo : lo + crop] for k, t in tiles.items()}
        return np.block([[q["top_left"], q["top_right"]], [q["bottom_left"], q["bottom_right"]]])
    return np.hstack(list(tiles.values()))


def plot_grid(model, train, test, shape, path: str, crop: int, n: int = 8) -> None:
    """Fig 5: for three kinds of rows, the input (missing views blank) above the reconstruction
    of every view from all the other available views (a missing view is thus imputed)."""
    from matplotlib.figure import Figure

    observed = train.observed.numpy()
    panels = [
        ("training rows", train, np.flatnonzero(observed.all(1))[:n]),
        ("training rows with a view missing", train, np.flatnonzero(~observed.all(1))[:n]),
        ("held-out rows", test, np.arange(min(n, len(test)))),
    ]
    panels = [p for p in panels if len(p[2])]  # e.g. no training row misses a view
    fig = Figure(figsize=(1.0 * n, 1.15 * 2 * len(panels)))
    axes = fig.subplots(2 * len(panels), n, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for p, (title, data, rows) in enumerate(panels):
        recon = leave_one_out(model, data, rows)
        sub = data.subset(rows)
        truth = {k: np.nan_to_num(v, nan=np.nan) for k, v in sub.to_numpy().items()}
        for i in range(len(rows)):
            axes[2 * p, i].imshow(compose(truth, i, shape[1], crop), cmap="gray")
            axes[2 * p + 1, i].imshow(compose(recon, i, shape[1], crop), cmap="gray")
        axes[2 * p, 0].set_title(f"{title}: input (blank = missing)", fontsize=8, loc="left")
        axes[2 * p + 1, 0].set_title("each view from the others", fontsize=8, loc="left")
    fig.subplots_adjust(left=0.02, right=0.98, top=0.95, bottom=0.02, hspace=0.35, wspace=0.05)
    save_figure(fig, path, dpi=90)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cvl", help="CVL-layout folder (one sub-folder per subject)")
    parser.add_argument("--test-subjects", type=int, default=14, help="CVL: held-out subjects")
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train", type=int, help="Fashion-MNIST training rows (20000)")
    parser.add_argument("--test", type=int, help="Fashion-MNIST held-out rows (1000)")
    parser.add_argument("--missing", type=float, help="Fashion-MNIST's missing views (0.25)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lam", type=float, default=0.1, help="the paper uses 0.1 for faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refine-steps",
        type=int,
        default=0,
        help="per-row refinement of the posterior before scoring (default 0: the encoder's; "
        "the library's 100 costs about a second a row with these conv nets on 2 CPU cores)",
    )
    parser.add_argument("--out", default=script_out(__file__))
    args = parser.parse_args(argv)
    fashion_only = [f"--{k}" for k in ("train", "test", "missing") if getattr(args, k) is not None]
    if args.cvl and fashion_only:
        parser.error(f"{', '.join(fashion_only)}: Fashion-MNIST's options; --cvl takes none")
    for option, default in (("train", 20000), ("test", 1000), ("missing", 0.25)):
        setattr(args, option, default if getattr(args, option) is None else getattr(args, option))
    if args.refine_steps < 0:
        parser.error(f"--refine-steps must be >= 0, got {args.refine_steps}")
    if args.test_subjects < 1:
        parser.error(f"--test-subjects must be positive, got {args.test_subjects}")
    for option in ("train", "test", "epochs"):  # before any work
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be positive, got {getattr(args, option)}")
    check_lam(parser, args.lam)
    if not 0 <= args.missing <= 1:
        parser.error(f"--missing must be a fraction in [0, 1], got {args.missing}")
    out_folder(parser, args.out)
    train, test, shape = cvl(args, parser) if args.cvl else fashion(args, parser)
    model = FactVAE(
        latent_dim=16 if not args.cvl else 128,
        lam=args.lam,
        image_shape=shape,
        conv_width=8 if not args.cvl else 32,
        encoder_width=32,
        decoder_width=32,
        keep_prob=0.9,
    )
    start = time.perf_counter()
    model.fit(train, epochs=args.epochs, batch_size=64 if not args.cvl else 16, seed=args.seed)
    seconds = time.perf_counter() - start
    # in the data's units, as the mean baseline beside it
    metrics = evaluate(
        model,
        test,
        num_samples=50,
        seed=args.seed,
        standardized=False,
        refine_steps=args.refine_steps,
    )
    metrics.update(mean_rmse=mean_imputation_rmse(train, test), fit_seconds=round(seconds, 1))
    print({k: round(v, 4) for k, v in metrics.items()})
    print(model.sparsity().round(2).to_string())
    plot_sparsity(
        model.sparsity(), title="views", path=os.path.join(args.out, "views_sparsity.png")
    )
    # the scores before the grid
    write_json({"args": vars(args), "metrics": metrics}, os.path.join(args.out, "views.json"))
    crop = shape[1] if args.cvl else 14
    plot_grid(model, train, test, shape, os.path.join(args.out, "views_grid.png"), crop)
    return metrics


if __name__ == "__main__":
    main()
