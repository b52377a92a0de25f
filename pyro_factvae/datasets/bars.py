"""Quadrant bars (the paper's sec. 4.1, Fig 2).

Each image is ``size x size`` pixels. Every row of pixels is switched on (value ``value``)
independently with probability ``p``, plus ``Normal(0, noise^2)`` noise on every pixel. The four
quadrants are the groups: a bar spans the left and right quadrants of its half, so the top
quadrants share latent causes, the bottom quadrants share others, and no cause links top and
bottom.
"""

from __future__ import annotations

import numpy as np

from ..checks import number, numpy_seed, positive_int, seed_int
from ..validation import is_dataframe
from .images import QUADRANTS, quadrant_data

__all__ = ["QUADRANTS", "bars_data", "bars_structure", "make_bars", "quadrant_groups"]

#: group names, in order: top-left, top-right, bottom-left, bottom-right


def make_bars(
    n: int,
    size: int = 4,
    p: float = 0.125,
    value: float = 0.5,
    noise: float = 0.05,
    seed: int = 0,
) -> np.ndarray:
    """``n`` images of horizontal bars, shape ``(n, size, size)``; ``seed``: an integer, or
    ``None`` for fresh randomness."""
    if positive_int("size", size) < 2 or size % 2:
        raise ValueError(f"size must be an even number >= 2, got {size}")
    positive_int("n", n)
    if not 0.0 <= number("p", p) <= 1.0:
        raise ValueError(f"p is a probability: it must be in [0, 1], got {p}")
    number("noise", noise)
    number("value", value, low=-np.inf)
    rng = np.random.default_rng(None if seed is None else numpy_seed(seed))
    rows = (rng.random((n, size, 1)) < p) * value
    return (rows + noise * rng.standard_normal((n, size, size))).astype(np.float32)


def quadrant_groups(images: np.ndarray) -> dict[str, np.ndarray]:
    """Split ``(n, s, s)`` images into the four quadrant groups, each ``(n, s*s/4)``."""
    if images.ndim != 3 or images.shape[1] != images.shape[2] or images.shape[1] % 2:
        raise ValueError(f"expected (n, s, s) images with even s, got shape {images.shape}")
    n, s, _ = images.shape
    h = s // 2
    parts = [images[:, :h, :h], images[:, :h, h:], images[:, h:, :h], images[:, h:, h:]]
    return {name: q.reshape(n, -1) for name, q in zip(QUADRANTS, parts)}


def bars_data(
    n: int,
    size: int = 8,
    missing: float = 0.25,
    seed: int = 0,
):
    """Quadrant bars as :class:`~pyro_factvae.GroupedData`, each quadrant missing with
    probability ``missing`` independently (rows that would lose all four keep one);
    ``seed``: an integer (``None`` is refused: the missing quadrants are drawn from
    ``seed + 7919``)."""
    seed = seed_int(seed)
    return quadrant_data(make_bars(n, size=size, seed=seed), missing, (seed + 7919) % 2**64)


def bars_structure(norms: np.ndarray) -> dict[str, int | bool]:
    """Summarise a ``4 x K`` sparsity map of the quadrant groups (in ``QUADRANTS`` order).

    Returns the number of active latents (a latent is active for a group when its column is
    not exactly zero), how many connect a top quadrant with a bottom one (``cross``, 0 for
    the true structure), and whether every quadrant has an active latent. A DataFrame (as
    :meth:`~pyro_factvae.FactVAE.sparsity` gives) is read by its index's quadrant names.
    """
    if is_dataframe(norms):  # rows by name
        lacking = [q for q in QUADRANTS if q not in norms.index]
        if lacking or len(norms.index) != len(QUADRANTS):
            raise ValueError(f"norms must have the rows {list(QUADRANTS)}, got {list(norms.index)}")
        norms = norms.loc[list(QUADRANTS)]
    active = np.asarray(norms, dtype=float)
    if active.ndim != 2 or active.shape[0] != len(QUADRANTS):
        raise ValueError(
            f"norms must be a 4 x K map (rows {list(QUADRANTS)}), got shape {active.shape}"
        )
    active = active != 0
    top, bottom = active[:2].any(0), active[2:].any(0)
    return {
        "active_latents": int(active.any(0).sum()),
        "active_links": int(active.sum()),
        "cross": int((top & bottom).sum()),
        "every_quadrant": bool(active.any(1).all()),
        "zero_columns": int((~active).sum()),
    }
