"""Quality: factVAE vs lam = 0 vs JMVAE+ on four data sets, several seeds (mean +- sd).

Every method shares the networks, data and number of optimizer steps of its data set
(:func:`pyro_factvae.tools.baselines.compare`); metrics are those of
:func:`pyro_factvae.metrics.evaluate` on held-out rows, plus the per-feature-mean imputation
baseline. Data sets:

* ``bars``: 8x8 quadrant bars, 25% of quadrants missing in training, 3000 train / 500 test;
* ``mocap6``: bnpy's real CMU sequences (downloaded once), train on sequences 0 and 1 (the
  small-data regime of Table 1), test on sequence 4;
* ``digits``: scikit-learn's 8x8 digits as 4 quadrants, 25% missing in training, 1400 / 397;
* ``fashion``: Fashion-MNIST 28x28 as 4 quadrant views (conv networks), 25% missing in
  training, 3000 train / 500 test, 50 importance samples (skipped if Debian's
  ``dataset-fashion-mnist`` is absent).

    python benchmarks/quality.py                     # 3 seeds, about 45 minutes on 2 cores
    python benchmarks/quality.py --datasets bars --seeds 0

Prints a table (and the README's rows) and writes ``benchmarks/out/quality.json``; re-running
some ``--datasets`` replaces their runs there and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from report import OUT, seed_type, write_json

from pyro_factvae.datasets import bars_data
from pyro_factvae.datasets.images import load_digits_quadrants, load_fashion_mnist, quadrant_data
from pyro_factvae.datasets.mocap import MinMax, fetch_mocap6, load_mocap6, to_grouped
from pyro_factvae.tools.baselines import METHODS, compare

MLP = dict(latent_dim=8, encoder_hidden=[32], encoder_width=16, decoder_width=16, lam=1.0)
METRICS = ("recon_ll", "iwae_ll", "cond_ll", "rmse", "mean_rmse", "active_links")


def bars(seed):
    return (
        bars_data(3000, seed=seed),
        bars_data(500, missing=0.0, seed=seed + 1000),
        (dict(MLP, latent_dim=12, encoder_hidden=[]), 3000),
    )


def mocap6(seed):
    motion = load_mocap6(fetch_mocap6())
    scaler = MinMax.fit(motion.select([0, 1]).frames)
    train = to_grouped(motion.select([0, 1]), scaler)
    config = dict(MLP, keep_prob=0.9, lam=0.3)  # as examples/mocap.py: 12 channels, not 59
    return train, to_grouped(motion.select([4]), scaler), (config, 3000)


def digits(seed):
    data, _ = load_digits_quadrants(missing=0.25, seed=seed)
    full, _ = load_digits_quadrants(missing=0.0)
    order = np.random.default_rng(seed).permutation(len(full))
    return data.subset(order[:1400]), full.subset(order[1400:]), (dict(MLP, lam=0.03), 3000)


def fashion(seed):
    x, _ = load_fashion_mnist(split="train")
    x_test, _ = load_fashion_mnist(split="t10k")
    rows = np.random.default_rng(seed).permutation(len(x))[:3000]
    train = quadrant_data(x[rows], missing=0.25, seed=seed, pad_to=16)
    test = quadrant_data(x_test[:500], pad_to=16)
    conv = dict(
        latent_dim=16,
        image_shape=[1, 16, 16],
        conv_width=8,
        encoder_width=32,
        decoder_width=32,
        keep_prob=0.9,
        lam=0.1,
    )
    return train, test, (conv, 3000)


DATASETS = {"bars": bars, "mocap6": mocap6, "digits": digits, "fashion": fashion}


def summarise(results: list[dict]) -> list[dict]:
    table = []
    for name in dict.fromkeys(r["dataset"] for r in results):
        for method in METHODS:
            runs = [r for r in results if r["dataset"] == name and r["method"] == method]
            if runs:
                row = {"dataset": name, "method": method, "seeds": len(runs)}
                for m in METRICS:
                    values = np.array([r[m] for r in runs], dtype=float)
                    row[m] = [
                        float(values.mean()),
                        float(values.std(ddof=1) if len(runs) > 1 else 0),
                    ]
                table.append(row)
    return table


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", type=seed_type, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--samples", type=int, default=None, help="importance samples (200; fashion 50)"
    )
    parser.add_argument("--out", default=OUT)
    args = parser.parse_args(argv)
    if args.samples is not None and args.samples < 1:
        parser.error(f"--samples must be positive, got {args.samples}")
    os.makedirs(args.out, exist_ok=True)
    results = []
    for name in args.datasets:
        for seed in args.seeds:
            samples = (50 if name == "fashion" else 200) if args.samples is None else args.samples
            try:
                train, test, (config, steps) = DATASETS[name](seed)
            except (ValueError, ImportError, RuntimeError) as exc:
                print(f"skipping {name}: {exc}", file=sys.stderr)
                break
            for row in compare(train, test, config, steps=steps, seed=seed, num_samples=samples):
                row.pop("model")
                results.append({"dataset": name, "seed": seed, **row})
                print(
                    f"{name:>8} seed {seed} {row['method']:>8} recon {row['recon_ll']:9.2f} "
                    f"iwae {row['iwae_ll']:9.2f} cond {row['cond_ll']:8.2f} "
                    f"rmse {row['rmse']:.4f} (mean {row['mean_rmse']:.4f}) "
                    f"links {row['active_links']} {row['fit_seconds']:.0f}s",
                    flush=True,
                )
    path = os.path.join(args.out, "quality.json")
    if os.path.exists(path):  # keep earlier runs of the data sets not re-run now
        with open(path) as f:
            kept = [r for r in json.load(f)["runs"] if r["dataset"] not in args.datasets]
        results = kept + results
    table = summarise(results)
    print(
        "\n| data | method | recon LL (Table 1) | IWAE LL | cond. LL | RMSE "
        "| mean-imputation RMSE | links |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in table:
        cells = [f"{row[m][0]:.2f} ± {row[m][1]:.2f}" for m in ("recon_ll", "iwae_ll", "cond_ll")]
        cells += [f"{row[m][0]:.4f} ± {row[m][1]:.4f}" for m in ("rmse", "mean_rmse")]
        cells.append(f"{row['active_links'][0]:.0f}")
        print(f"| {row['dataset']} | {row['method']} | " + " | ".join(cells) + " |")
    write_json(path, {"args": vars(args), "runs": results, "table": table}, indent=1)
    return table


if __name__ == "__main__":
    main()
