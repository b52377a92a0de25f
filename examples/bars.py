"""Quadrant bars (paper sec. 4.1, Fig 2): factVAE recovers which quadrants share causes.

Every row of an 8x8 image is a bar, on with probability 1/8; the four quadrants are the groups
and a quarter of them are missing at random in training. Bars span left and right, never top and
bottom, so the true map links top quadrants to some latents and bottom quadrants to others.

Trains lam = 0 (factored networks, no sparsity) and lam > 0, prints both group x latent maps,
and writes ``sparsity_lam0.png``, ``sparsity_lam<lam>.png`` and ``right_from_left.png``
(the right half of held-out images predicted from their left half) to ``--out``.

    python examples/bars.py            # about 50 s on 2 CPU cores (48 s measured)
"""

from __future__ import annotations

import argparse
import os

import numpy as np

from pyro_factvae.datasets import QUADRANTS
from pyro_factvae.plotting import plot_sparsity, save_figure
from pyro_factvae.tools.experiments import BARS_FIT, BARS_LAM, bars_run
from pyro_factvae.tools.script_args import check_lam, out_folder, script_out


def plot_reconstructions(test, preds: dict[str, dict], path: str, n: int = 8) -> None:
    from matplotlib.figure import Figure

    truth = test.to_numpy()
    s = int(np.sqrt(truth["top_left"].shape[1]))

    def image(parts: dict[str, np.ndarray], i: int, left_only: bool = False) -> np.ndarray:
        q = {k: parts[k][i].reshape(s, s) for k in QUADRANTS if k in parts}
        if left_only:
            q["top_right"] = q["bottom_right"] = np.full((s, s), np.nan)
        return np.block([[q["top_left"], q["top_right"]], [q["bottom_left"], q["bottom_right"]]])

    rows = [("truth", truth, False), ("input: left half", truth, True)]
    rows += [(label, {**truth, **p}, False) for label, p in preds.items()]
    fig = Figure(figsize=(1.2 * n, 1.3 * len(rows)))
    axes = fig.subplots(len(rows), n)
    for r, (label, parts, left_only) in enumerate(rows):
        for i in range(n):
            ax = axes[r, i]
            ax.imshow(image(parts, i, left_only), cmap="gray", vmin=-0.1, vmax=0.6)
            ax.axvline(s - 0.5, color="red", lw=0.6)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("right half predicted from the left half (held-out images)")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lam", type=float, default=BARS_LAM, help="lambda of the sparse model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=10000, help="training rows")
    parser.add_argument("--epochs", type=int, default=BARS_FIT["epochs"])
    parser.add_argument("--out", default=script_out(__file__), help="folder for the PNGs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    check_lam(parser, args.lam, positive=True)  # the sparse model's, before lam = 0 runs
    for option in ("n", "epochs"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be positive, got {getattr(args, option)}")
    out_folder(parser, args.out)

    results = {}
    for lam in (0.0, args.lam):
        res = results[lam] = bars_run(
            lam, args.seed, args.n, progress=not args.no_progress, epochs=args.epochs
        )
        print(f"\nlam = {lam:g}: {res['seconds']:.1f} s, right-from-left RMSE {res['rmse']:.4f}")
        print(res["model"].sparsity().round(2).to_string())
        print(
            f"active latents {res['active_latents']}, top-bottom links {res['cross']}, "
            f"exactly-zero links {res['zero_columns']}"
        )
        plot_sparsity(
            res["model"].sparsity(),
            title=f"lam = {lam:g}",
            path=os.path.join(args.out, f"sparsity_lam{lam:g}.png"),
        )
    dense, sparse = results[0.0], results[args.lam]
    plot_reconstructions(
        sparse["test"],
        {f"lam={args.lam:g}": sparse["pred"], "lam=0": dense["pred"]},
        os.path.join(args.out, "right_from_left.png"),
    )
    print(f"\nRMSE ratio (lam={args.lam:g} / lam=0): {sparse['rmse'] / dense['rmse']:.3f}")
    print(f"figures in {args.out}/")
    return results


if __name__ == "__main__":
    main()
