"""Shared experiment runners: the ones ``examples/`` and ``benchmarks/`` both use.

:func:`bars_run` fits factVAE on quadrant bars (paper sec. 4.1, Fig 2) and reports the learned
structure and the right-from-left imputation error; ``examples/bars.py`` prints and plots it,
``benchmarks/bars_sparsity.py`` tabulates it over seeds.
"""

from __future__ import annotations

import time

import numpy as np

from ..datasets import bars_data, bars_structure
from ..estimator import FactVAE

__all__ = ["BARS_FIT", "BARS_LAM", "BARS_MODEL", "bars_run", "right_from_left", "rmse"]

BARS_MODEL = dict(latent_dim=12, encoder_width=16, decoder_width=16)
#: per-variable lam of the bars runs: 16 pixels a quadrant, so 3.2 per example (the old default)
BARS_LAM = 0.2
BARS_FIT = dict(epochs=15, batch_size=64)


def right_from_left(model: FactVAE, test) -> dict[str, np.ndarray]:
    """Posterior-predictive right quadrants given the left ones."""
    return model.reconstruct(
        test,
        given=["top_left", "bottom_left"],
        targets=["top_right", "bottom_right"],
        num_samples=20,
    )


def rmse(pred: dict[str, np.ndarray], test) -> float:
    """RMSE of the groups ``pred`` against ``test``'s values, over all their entries (groups
    of any widths)."""
    truth = test.to_numpy()
    return float(
        np.sqrt(np.mean(np.concatenate([((pred[k] - truth[k]) ** 2).ravel() for k in pred])))
    )


def bars_run(
    lam: float, seed: int, n: int = 10000, progress: bool = True, epochs: int | None = None
) -> dict:
    """Fit one model on bars; return it with its structure and right-from-left RMSE."""
    train = bars_data(n, missing=0.25, seed=seed)
    test = bars_data(1000, missing=0.0, seed=seed + 1000)
    fit = {**BARS_FIT, **({} if epochs is None else {"epochs": epochs})}  # 0 is refused
    t0 = time.perf_counter()
    model = FactVAE(lam=lam, **BARS_MODEL).fit(train, seed=seed, progress=progress, **fit)
    seconds = time.perf_counter() - t0
    pred = right_from_left(model, test)
    return {
        "model": model,
        "test": test,
        "pred": pred,
        "rmse": rmse(pred, test),
        "seconds": seconds,
        **bars_structure(model.sparsity().values),
    }
