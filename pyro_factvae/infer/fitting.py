"""One fit at a given ``lam``: the plan of its phases, its seeds and validation split, and
its resume (Algorithm 1 runs in :class:`~pyro_factvae.infer.run.Trainer`).

:func:`train` builds the model on a first call (seeded initialisation from the data), plans
the phases from the fit settings and the posterior over ``Phi`` (prox-MAP; for a variational
posterior, a MAP start then the full ELBO; with ``lam > 0``, a relaxed refit of the selected
support at :data:`~pyro_factvae.config.REFIT_LR` of the step sizes), splits off the
early-stopping rows and hands the run to the trainer. :func:`resume_from` continues a run
saved in a checkpoint. Both work on a :class:`~pyro_factvae.infer.state.FitState`; the
``lam="auto"`` path (:mod:`~pyro_factvae.infer.path`) is a sequence of such fits.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..config import REFIT_LR, FewRowsWarning, FitConfig
from ..data import GroupedData
from ..io import check_writable
from ..module.guide import MAP
from ..registry import PHI_POSTERIORS
from ..validation import warn_constant
from .callbacks import Epoch
from .checkpoint import Checkpoint, write
from .distributed import world
from .loop import Phase
from .run import Run, fingerprint
from .state import FitState

__all__ = ["FEW_ROWS", "MIN_ROWS_TO_STOP", "plan", "resume_from", "train", "warn_if_few_rows"]

#: early stopping's default (``patience="auto"``) needs at least this many rows
MIN_ROWS_TO_STOP = 20
#: below this many rows the defaults (a 16-dimensional z, widths for hundreds of rows, lam
#: chosen on held-out rows) are more than the data can support: fit warns
FEW_ROWS = 50

Callbacks = Sequence[Callable[[Epoch], Any]]


def warn_if_few_rows(rows: int, lam: Any) -> None:
    """A :class:`~pyro_factvae.config.FewRowsWarning` below :data:`FEW_ROWS` rows."""
    if rows < FEW_ROWS:
        held = rows - int(round(0.8 * rows))
        held = f"lam='auto' chooses lam on {held} held-out rows, and " if lam == "auto" else ""
        warnings.warn(
            f"only {rows} rows: {held}the defaults are sized for hundreds of rows or more; on "
            "fewer the fit can overfit (on a 32-row table it imputed worse than the column "
            "means, with intervals far too narrow, and a smaller latent_dim or widths did not "
            "help): check it on held-out cells (pyro_factvae.metrics.evaluate; factvae "
            "evaluate) against a simple imputer before trusting it",
            FewRowsWarning,
            stacklevel=4,
        )


def plan(fit: FitConfig, posterior: str, lam: float) -> list[Phase]:
    """The phases of a fit at ``lam`` with the resolved settings ``fit``: ``map_epochs`` of
    prox-MAP (a variational posterior's start), the main phase under ``posterior``, and
    ``relax_epochs`` of relaxed refit (the selected support, unshrunk, smaller steps). Each
    phase carries ``lam`` and its warm-up: the trainer takes lam from the plan."""
    phases = [Phase(MAP, fit.map_epochs, fit.warmup_epochs, lam=lam)] if fit.map_epochs else []
    rest_warmup = 0.0 if fit.map_epochs else fit.warmup_epochs
    main = fit.epochs - fit.map_epochs - fit.relax_epochs
    if main:
        phases.append(Phase(posterior, main, rest_warmup, lam=lam))
    if fit.relax_epochs:  # the relaxed group lasso: the selected support, refit unshrunk
        relaxed = Phase(MAP, fit.relax_epochs, 0.0, relaxed=True, lr_scale=REFIT_LR, lam=lam)
        phases.append(relaxed)
    return phases


def _seeding(seed: int | None) -> tuple[torch.Generator, torch.Tensor | None]:
    """The run's data-order generator and the torch RNG state it trains under (``None``:
    the global RNG, for ``seed=None``)."""
    if seed is None and world()[1] > 1:
        raise ValueError(
            "seed=None in a distributed run: every rank must draw the same data order, so "
            "give every rank the same seed (the default, seed=0, does)"
        )
    generator = torch.Generator()
    if seed is None:
        generator.manual_seed(int(torch.randint(2**62, ()).item()))
        return generator, None
    generator.manual_seed(seed)
    return generator, torch.Generator().manual_seed(seed).get_state()


def train(
    state: FitState,
    data: GroupedData,
    given: Mapping[str, Any],
    progress: bool = False,
    checkpoint: str | None = None,
    callbacks: Callbacks = (),
) -> None:
    """Fit ``state`` (built here on a first call) on ``data`` at its numeric ``lam`` with the
    fit settings ``given`` (:class:`~pyro_factvae.config.FitConfig` fields, defaults still
    unresolved); a later call continues training. ``state.interrupted`` names the signal
    that stopped it, if any."""
    state.interrupted = None
    data.require_trainable()
    given = dict(given)
    collapsed_only = PHI_POSTERIORS.get(state.config.phi_inference).collapsed
    if given.get("patience", "auto") == "auto" and len(data) < MIN_ROWS_TO_STOP:
        given["patience"] = None  # too few rows to hold some out
    fit = FitConfig(**given).resolved(
        bool(state.history), collapsed_only, len(data), sparse=state.config.lam > 0
    )
    layout = state.layout_of(data)
    generator, rng_state = _seeding(fit.seed)
    if state.model is None:
        seeded = rng_state is not None
        with torch.random.fork_rng(devices=[], enabled=seeded):
            if seeded:
                torch.set_rng_state(rng_state)
            state.build(layout, len(data))
            state.model.init_from_data(data.values, data.observed, data.cells)
            warn_constant(data.names, state.model.constant(), data.columns)
            state.to_device()
            if seeded:
                rng_state = torch.get_rng_state()
    state.config.num_data = len(data)
    lam = float(state.config.lam)
    run = Run(fit, plan(fit, state.config.phi_inference, lam), fingerprint(data))
    _execute(state, run, data, generator, rng_state, progress, checkpoint, callbacks)


def resume_from(
    state: FitState,
    data: GroupedData,
    ckpt: Checkpoint,
    target: str | os.PathLike,
    progress: bool = False,
    callbacks: Callbacks = (),
    restored: bool = False,
) -> None:
    """Continue the run saved in ``ckpt`` on ``data`` (the same rows), checkpointing to
    ``target``; ``restored``: ``state`` already holds the checkpoint's model."""
    state.interrupted = None
    if not restored:
        ckpt.restore_into(state)
    lam = float(state.config.lam)
    run = Run.restore(ckpt.meta["run"], ckpt.tensors.get("perm"), data, ckpt.path, lam)
    if run.finished:  # a later fit continues with the optimizers' moments, as it would have
        state.trainer.continue_from(ckpt.tensors, run.fit)
        return
    rng_state, generator = state.trainer.restore(ckpt.tensors)
    target = check_writable(target, "checkpoint")
    _execute(state, run, data, generator, rng_state, progress, target, callbacks)


def _execute(state, run, data, generator, rng_state, progress, checkpoint, callbacks) -> None:
    valid = None
    if run.fit.patience is not None:  # the same split on every call, resume included
        data, valid = data.split(1 - run.fit.validation, seed=run.fit.seed or 0)

    def save(path: str, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
        write(state, path, meta, tensors)

    state.interrupted = state.trainer.execute(
        run,
        data,
        generator,
        rng_state,
        state.history,
        state.prior_history,
        progress,
        checkpoint,
        save,
        valid,
        callbacks,
    )
    if not state.interrupted and PHI_POSTERIORS.get(state.guide.phi_mode).collapsed:
        norms = state.sparsity()
        for name in norms.index[(norms.values == 0).all(axis=1)]:
            warnings.warn(
                f"every link of group {name!r} was pruned at lam = {state.config.lam:g}: the "
                "model ignores that group (it is imputed by its mean); lower lam",
                stacklevel=5,
            )
    if state.interrupted and checkpoint is None:
        warnings.warn(
            f"fit interrupted by {state.interrupted} after step {run.global_step}; no "
            "checkpoint path was given, so the model holds the weights after that step",
            stacklevel=5,
        )
