"""The fit loop: collapsed SVI with encoder group dropout (Algorithm 1).

Each step takes a minibatch of rows with their observed groups ``O``, keeps every observed group
for the encoder with probability ``keep_prob`` (the random subset ``I subset O``), evaluates the
likelihood on all of ``O``, and applies :class:`~pyro_factvae.optim.ProximalOptim`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyro
import torch
from pyro import poutine
from pyro.infer import SVI, TraceMeanField_ELBO
from tqdm.auto import tqdm

from .data import GroupedData
from .guide import Guide
from .model import Model
from .optim import ProximalOptim, collapse
from .poe import expand_experts

__all__ = ["train"]


def train(
    model: Model,
    guide: Guide,
    data: GroupedData,
    optim: ProximalOptim,
    epochs: int,
    batch_size: int,
    keep_prob: float,
    generator: torch.Generator,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    warmup_epochs: float = 0.0,
    lr_decay: float = 1.0,
    collapsed: bool = True,
) -> list[float]:
    """Run Algorithm 1 for ``epochs`` passes over ``data``; return the per-epoch mean loss.

    The loss is scaled by ``1 / N``: each reported value is the negative collapsed ELBO
    ``-L~`` per row (likelihood and KL of the rows, plus the theta prior, over ``N``), and
    ``optim.lam`` is the per-example lambda, ramped linearly from 0 over the first
    ``warmup_epochs`` (and restored at the end); all step sizes follow a cosine from their
    initial value to ``lr_decay`` times it. ``generator`` drives the data order and the
    encoder dropout; ``z`` draws use Pyro's global RNG. ``collapsed=False`` keeps the prior
    sites in the loss (the variational mode over ``Phi`` and ``gamma_sq``; use ``lam = 0`` in
    ``optim`` then).
    """
    wrap = collapse if collapsed else (lambda fn: fn)
    num_data = len(data)
    scale = 1.0 / num_data
    svi = SVI(
        poutine.scale(wrap(model), scale),
        poutine.scale(wrap(guide), scale),
        optim,
        TraceMeanField_ELBO(),
    )
    loader = data.loader(batch_size, shuffle=True, generator=generator)
    history: list[float] = []
    lam = optim.lam
    warmup = warmup_epochs * len(loader)
    total_steps = epochs * len(loader)
    step = 0
    try:
        bar = tqdm(range(epochs), disable=not progress, desc="factVAE", unit="epoch")
        for epoch in bar:
            total = 0.0
            # inputs were validated once (GroupedData); Pyro's per-site checks only cost time here
            with pyro.validation_enabled(False):
                for xs, mask in loader:
                    keep = torch.rand(mask.shape, generator=generator) < keep_prob
                    lam_factor, lr_factor = schedule(step, total_steps, warmup, lr_decay)
                    optim.lam = lam * lam_factor
                    optim.set_lr_factor(lr_factor)
                    step += 1
                    if guide.inference == "mixture":  # JMVAE+: one row per given expert
                        rows, one_hot, weight = expand_experts(mask, keep)
                        loss = svi.step([x[rows] for x in xs], mask[rows], one_hot, weight)
                    else:
                        loss = svi.step(xs, mask, keep)
                    if not math.isfinite(loss):
                        raise FloatingPointError(
                            f"the loss became {loss} at epoch {epoch + 1}, step {step}; the "
                            "parameters are no longer usable. Standardise features of very "
                            "different scales, or lower lr / phi_lr"
                        )
                    total += loss * mask.shape[0]
            history.append(total / num_data)
            bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
            if callback is not None:
                callback(epoch, history[-1])
    finally:
        optim.lam = lam
    return history


def schedule(step: int, total: int, warmup: float, lr_decay: float) -> tuple[float, float]:
    """Factors for ``lam`` (linear warm-up over ``warmup`` steps) and for every step size
    (cosine from 1 at step 0 to ``lr_decay`` at the last of ``total`` steps)."""
    lam_factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cos = 0.5 * (1 + math.cos(math.pi * step / max(total - 1, 1)))
    return lam_factor, lr_decay + (1 - lr_decay) * cos


def seed_everything(seed: int) -> torch.Generator:
    """Seed Pyro/torch globals and return a generator for data order and dropout."""
    pyro.set_rng_seed(seed)
    return torch.Generator().manual_seed(seed)
