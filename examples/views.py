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
shown with a red frame), and held-out rows; prints held-out imputation RMSE of each view from
the others, against the per-pixel-mean baseline.

    python examples/views.py                      # about 5 minutes on 2 CPU cores
    python examples/views.py --train 60000 --epochs 20   # full-size run
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from pyro_factvae import FactVAE
from pyro_factvae.analysis import plot_sparsity
from pyro_factvae.baselines import mean_imputation_rmse
from pyro_factvae.datasets.images import load_fashion_mnist, load_views, quadrant_data
from pyro_factvae.evaluate import evaluate


def fashion(args):
    x, _ = load_fashion_mnist(args.fashion_dir, "train")
    x_test, _ = load_fashion_mnist(args.fashion_dir, "t10k")
    train = quadrant_data(x[: args.train], missing=args.missing, seed=args.seed, pad_to=16)
    test = quadrant_data(x_test[: args.test], missing=0.0, pad_to=16)
    return train, test, (1, 16, 16)


def cvl(args):
    data, subjects = load_views(args.cvl, size=64)
    cut = len(subjects) - args.test_subjects
    return data.subset(np.arange(cut)), data.subset(np.arange(cut, len(subjects))), (1, 64, 64)


def leave_one_out(model: FactVAE, data, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Each view of ``rows`` reconstructed from the other observed views of the row."""
    sub = data.subset(rows)
    out = {}
    for view in sub.names:
        others = [v for v in sub.names if v != view]
        out[view] = model.reconstruct(sub, given=others, targets=[view], num_samples=0)[view]
    return out


def plot_grid(model, train, test, shape, path: str, n: int = 6) -> None:
    """Fig 5: truth / reconstruction pairs for three kinds of rows."""
    from matplotlib.figure import Figure

    observed = train.observed.numpy()
    full = np.flatnonzero(observed.all(1))[:n]
    holes = np.flatnonzero(~observed.all(1))[:n]
    held = np.arange(min(n, len(test)))
    panels = [
        ("training rows", train, full),
        ("training rows, a view missing", train, holes),
        ("held-out rows", test, held),
    ]
    views = train.names
    fig = Figure(figsize=(1.1 * 2 * len(views), 1.15 * n * len(panels) / 2 + 1))
    axes = fig.subplots(len(panels) * n // 2, 2 * len(views), squeeze=False)
    side = shape[1]
    for p, (title, data, rows) in enumerate(panels):
        recon = leave_one_out(model, data, rows)
        mask = data.observed.numpy()
        for i, row in enumerate(rows):
            r, c0 = p * n // 2 + i // 2, (i % 2) * len(views)
            for v, view in enumerate(views):
                ax = axes[r, c0 + v]
                ax.imshow(recon[view][i].reshape(side, side), cmap="gray")
                ax.set_xticks([])
                ax.set_yticks([])
                if not mask[row, v]:  # a missing view: imputed, framed in red
                    for spine in ax.spines.values():
                        spine.set_color("red")
                        spine.set_linewidth(2)
        axes[p * n // 2, 0].set_title(title, fontsize=9, loc="left")
    fig.suptitle("each view reconstructed from all other available views (red: missing view)")
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cvl", help="CVL-layout folder (one sub-folder per subject)")
    parser.add_argument("--test-subjects", type=int, default=14)
    parser.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train", type=int, default=6000, help="Fashion-MNIST training rows")
    parser.add_argument("--test", type=int, default=1000, help="Fashion-MNIST held-out rows")
    parser.add_argument("--missing", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lam", type=float, default=0.1, help="the paper uses 0.1 for faces")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="examples/out")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    train, test, shape = cvl(args) if args.cvl else fashion(args)
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
    metrics = evaluate(model, test, num_samples=50, seed=args.seed)
    metrics.update(mean_rmse=mean_imputation_rmse(train, test), fit_seconds=round(seconds, 1))
    print({k: round(v, 4) for k, v in metrics.items()})
    print(model.sparsity().round(2).to_string())
    plot_sparsity(
        model.sparsity(), title="views", path=os.path.join(args.out, "views_sparsity.png")
    )
    plot_grid(model, train, test, shape, os.path.join(args.out, "views_grid.png"))
    with open(os.path.join(args.out, "views.json"), "w") as f:
        json.dump({"args": vars(args), "metrics": metrics}, f, indent=1)
    return metrics


if __name__ == "__main__":
    main()
