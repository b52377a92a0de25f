"""How sure each method is: coverage of central intervals and CRPS of its draws of the hidden
entries, shared by ``peers.py`` (whole groups) and ``cells.py`` (cells, MIWAE).

The methods that give draws: factVAE (``DRAWS`` importance-resampled posterior-predictive
draws), ``IterativeImputer`` with ``sample_posterior=True`` (``peer_methods.FITS`` = 40 imputations,
each its own seeded fit), MOFA+'s posterior predictive (Gaussian with its noise precision and the
factors' posterior covariance) and a Gaussian plug-in around KNN with each column's residual
scale on held-back training rows given the test rows' holes (``DRAWS`` each).
"""

from __future__ import annotations

import numpy as np
from peer_methods import Groups, _matrix

DRAWS = 200  # draws per hidden entry behind the coverage and CRPS (a method's own
# ``num_draws`` where each draw costs a fit: IterativeImputer's)


def draw_row(predictor, test: Groups, truth: Groups, hidden: np.ndarray, seed: int) -> dict:
    """``coverage_50 .. coverage_95``, ``crps`` (and factVAE's ``ess``) over the hidden
    entries (``hidden``: an ``(n, sum d)`` cell mask); ``{}`` for a method without draws."""
    from pyro_factvae.calibration import coverage, crps, draw_scores

    vae = getattr(predictor, "vae", None)
    if vae is not None:
        scores = draw_scores(vae, truth, hidden, num_draws=DRAWS)
        out = {f"coverage_{round(100 * a)}": v["pooled"] for a, v in scores["coverage"].items()}
        return {**out, "crps": scores["crps"]["pooled"], "ess": scores["ess"]}
    draw = getattr(predictor, "draws", None)
    if draw is None:
        return {}
    x = draw(test, getattr(predictor, "num_draws", DRAWS), seed)
    y = _matrix(truth)
    out = {f"coverage_{round(100 * a)}": v for a, v in coverage(x, y, hidden).items()}
    return {**out, "crps": float(crps(x, y)[hidden].mean())}


def draw_text(row: dict) -> str:
    """The draw scores of one result row, for the progress line."""
    if "crps" not in row:
        return ""
    ess = f"  ESS {row['ess']:.0f}" if "ess" in row else ""
    return f"  90% cover {row['coverage_90']:.3f}  CRPS {row['crps']:.4f}{ess}"


def draw_columns(rows: list[dict]) -> str:
    """The mean 90% coverage and CRPS of ``rows`` as two table cells (blank without draws)."""
    if not rows or not all("crps" in r for r in rows):
        return " | |"
    cover = np.mean([r["coverage_90"] for r in rows])
    return f" {cover:.3f} | {np.mean([r['crps'] for r in rows]):.4f} |"
