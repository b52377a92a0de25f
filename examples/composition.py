"""factVAE inside a larger Pyro model: digit labels as an extra, mostly missing, group.

The four 4x4 quadrants of scikit-learn's 8x8 digits are four views; the class label is a fifth
group with the ``categorical`` likelihood (a one-hot ``OneHotCategorical`` site ``x_label`` in
the same Pyro model). Labels are kept for only ``--labelled`` of the training rows: the rest
are a missing group, so the model is semi-supervised. Because the encoder is a product of
experts, the label can be predicted from *any* subset of views; the script reports held-out
accuracy from each single quadrant and from all four.

The all-views prediction is made twice: with :meth:`FactVAE.reconstruct`, and with plain
Pyro, ``pyro.infer.Predictive`` over the fitted ``Model`` with the fitted ``Guide``, which
simulates the ``x_label`` site given ``z ~ q(z | views)``. They agree: the fitted model is an
ordinary Pyro program. Writes ``composition.json`` (the accuracies) and
``composition_sparsity.png`` to ``--out`` (default: ``out`` beside the script).

    pip install scikit-learn
    python examples/composition.py      # 4 s of fitting, about 11 s in all, on one CPU core
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from pyro.infer import Predictive

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.checks import numpy_seed
from pyro_factvae.datasets.images import QUADRANTS, load_digits_quadrants
from pyro_factvae.plotting import plot_sparsity
from pyro_factvae.tools.script_args import check_lam, out_folder, script_out, write_json

ARCH = dict(latent_dim=10, encoder_hidden=[32], encoder_width=16, decoder_width=16)


def with_labels(views: GroupedData, labels: np.ndarray, keep: np.ndarray) -> GroupedData:
    """Add a one-hot ``label`` group, NaN (missing) where ``keep`` is False."""
    onehot = np.eye(10)[labels]
    onehot[~keep] = np.nan
    groups = {**views.to_numpy(), "label": onehot}
    return GroupedData(groups)


def pyro_label_probs(
    vae: FactVAE, data: GroupedData, given: list[str], n: int = 200, seed: int = 0
):
    """``p(label | given views)`` with ``pyro.infer.Predictive`` on the fitted Pyro modules,
    its draws under ``seed`` (in a fork of the global RNG, left as it was)."""
    mask = data.group_mask(given)

    def simulate_from_z(xs, mask, enc_mask):  # same arguments as the guide; x's are drawn
        return vae.model_(None, mask=mask)

    predictive = Predictive(
        simulate_from_z, guide=vae.guide_, num_samples=n, return_sites=["x_label"]
    )
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # the CPU's, where the model is
        draws = predictive(data.values, mask, mask)["x_label"]
    return draws.reshape(n, len(data), 10).mean(0).numpy()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=float, default=0.1, help="fraction with labels")
    parser.add_argument("--lam", type=float, default=0.03)
    parser.add_argument("--label-weight", type=float, default=20.0)
    parser.add_argument("--theta-prior", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=script_out(__file__))
    args = parser.parse_args(argv)
    if not 0 < args.labelled <= 1:
        parser.error(f"--labelled is a fraction in (0, 1], got {args.labelled}")
    check_lam(parser, args.lam)
    if args.epochs < 1:
        parser.error(f"--epochs must be positive, got {args.epochs}")
    out_folder(parser, args.out)

    views, labels = load_digits_quadrants()
    order = np.random.default_rng(numpy_seed(args.seed)).permutation(len(labels))
    tr, te = order[:1400], order[1400:]
    keep = np.random.default_rng(numpy_seed(args.seed + 1)).random(len(tr)) < args.labelled
    if not keep.any():
        parser.error(f"--labelled {args.labelled} keeps no labelled training row: give more")
    train = with_labels(views.subset(tr), labels[tr], keep)
    test = with_labels(views.subset(te), labels[te], np.zeros(len(te), dtype=bool))

    start = time.perf_counter()
    vae = FactVAE(
        lam=args.lam,
        likelihood={"label": "categorical"},
        group_weight={"label": args.label_weight},
        theta_prior_weight=args.theta_prior,
        **ARCH,
    )
    vae.fit(train, epochs=args.epochs, batch_size=64, seed=args.seed, progress=False)
    seconds = time.perf_counter() - start

    truth = labels[te]
    accuracy = {}
    for given in [[q] for q in QUADRANTS] + [list(QUADRANTS)]:
        probs = vae.reconstruct(test, given=given, targets=["label"], num_samples=50)["label"]
        key = "all views" if len(given) > 1 else given[0]
        accuracy[key] = float((probs.argmax(1) == truth).mean())
    pyro_probs = pyro_label_probs(vae, test, list(QUADRANTS), seed=args.seed)
    accuracy["all views (Predictive)"] = float((pyro_probs.argmax(1) == truth).mean())

    print(f"{keep.sum()} of {len(tr)} training rows labelled; fit {seconds:.0f} s")
    print(f"{'given':>24}  accuracy")
    for key, acc in accuracy.items():
        print(f"{key:>24}  {acc:.3f}")
    print("chance: 0.100")
    print(vae.sparsity().round(2).to_string())
    plot_sparsity(
        vae.sparsity(),
        title="digits: quadrants and label",
        path=os.path.join(args.out, "composition_sparsity.png"),
    )
    result = {"args": vars(args), "labelled": int(keep.sum()), "accuracy": accuracy}
    write_json(result, os.path.join(args.out, "composition.json"))
    return result


if __name__ == "__main__":
    main()
