"""The warm-started ``lam`` path behind ``FactVAE(lam="auto")`` and
:func:`~pyro_factvae.tools.selection.lambda_path`, as a sequence of fits
(:meth:`~pyro_factvae.infer.run.Trainer.train`) on one :class:`~pyro_factvae.infer.state.FitState`.

One model is fitted along an increasing grid of ``lam``: the first value from scratch, every
later one continuing from the previous fit (a warm start, as in glmnet's regularisation
paths, but walked from weak to strong penalty so that the networks have learned the data
before the prox prunes). At each ``lam`` the path records, on validation rows, the held-out
conditional log-likelihood of each group given the others
(:func:`~pyro_factvae.module.scoring.held_out_score`) and the active links. The choice is
the *one-standard-error rule* (as glmnet's ``lambda.1se``): of the ``lam`` s whose mean
held-out log-likelihood is within one standard error of the best one, the sparsest map, at
the smallest ``lam`` that keeps it, so a sparser map wins when the data cannot tell the two
apart, and a larger ``lam`` that prunes nothing more (it only shrinks more) does not. The
standard error is that of the per-pair difference from the best ``lam`` (all ``lam`` are
scored on the same pairs): the scores themselves can be heavy-tailed (digits' near-constant
pixels), and their own spread would let almost any ``lam`` pass. The model is left at the
chosen ``lam`` with its weights.

With ``relax_epochs`` (the default of ``lam="auto"``) every ``lam`` > 0 is scored after a
*relaxed* refit: its support (the links the prox kept) is refit without shrinkage, and that
refit is scored, as in the relaxed lasso (Meinshausen 2007). Scoring the shrunk fit instead
charges every sparser ``lam`` for its shrinkage, and the criterion then prefers the dense
end of the path even where the data have a sparse structure.
"""

from __future__ import annotations

import dataclasses
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..data import GroupedData
from ..fit_config import REFIT_LR, FewRowsWarning, FitConfig
from ..module.scoring import held_out_mean_errors, missing_cell_fraction
from ..registry import PHI_POSTERIORS
from ..validation import warn_constant
from .callbacks import staged
from .checkpoint import Checkpoint
from .path_choice import PathResult, beats_mean, choose, past_support, warn_if_the_mean_wins
from .path_state import PathRecords, PathStore, at_stage, stages
from .plan import Signals
from .run import Trainer
from .spread import held_out_spread
from .state import FitState

__all__ = [
    "AUTO_GRID",
    "AUTO_SAMPLES",
    "AUTO_TAIL",
    "WARM_DIVISOR",
    "check_path_data",
    "fit_auto",
    "walk",
]

#: the grid of ``lam="auto"`` (per-example, per-variable weights; features standardized):
#: steps of about 3 up to 0.1, then of about 1.8 where the prox starts to prune on the
#: measured data (between 0.1 and 0.3 a simulation went from a dense map to two true links
#: lost; 0.17 kept exactly the true ones)
AUTO_GRID = (0.0, 0.01, 0.03, 0.1, 0.17, 0.3, 0.55, 1.0)
#: the grid goes on with these only while no ``lam`` imputes better than the mean (``beats_mean``):
#: on a nutrimouse split lam 1 kept 4 links (test RMSE 4.1), 1.8 one (0.99, as the mean)
AUTO_TAIL = (1.8, 3.2, 5.6, 10.0)
#: the grid of a path file that does not name its own (written by pyro_factvae 0.2.0)
UNNAMED_GRID = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)
#: ``lam="auto"``: every ``lam`` after the first, its relaxed refit, and the final refit on every
#: row train ``epochs // WARM_DIVISOR`` epochs each (a warm start needs fewer than a first fit:
#: with an eighth instead of a quarter, seven data sets over two seeds imputed as well, mean
#: hide-one RMSE 0.743 against 0.746, worse on 3 of the 14 fits and by at most 4%, 24% faster)
WARM_DIVISOR = 8
#: ``lam="auto"`` scores each ``lam``'s held-out imputations with this many draws of ``z`` per
#: row (1,000 instead, hide one over seeds 0-9, changed the choice on one split in ten of each of
#: wine, nutrimouse and diabetes and on none of nine of breast cancer's; test RMSE moved <= 0.003)
AUTO_SAMPLES = 20


def _smaller_steps(fit_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``fit_kwargs`` with the step sizes of a refit (:data:`REFIT_LR` of a first fit's):
    full steps from a fitted point undid the fit (on digits, back to the mean imputation)."""
    defaults = FitConfig()
    lr = fit_kwargs.get("lr", defaults.lr)
    phi_lr = fit_kwargs.get("phi_lr", defaults.phi_lr)
    return {**fit_kwargs, "lr": lr * REFIT_LR, "phi_lr": phi_lr * REFIT_LR}


def check_path_data(train: GroupedData, valid: GroupedData) -> None:
    """A ``ValueError`` unless both parts have rows with two observed groups to score."""
    for name, part in (("training", train), ("validation", valid)):
        if not bool((part.observed.sum(1) > 1).any()):
            raise ValueError(
                f"no {name} row has two observed groups, so no group can be held out and "
                "scored; choosing lam needs rows that observe at least two groups (or give lam "
                "a number: FactVAE(lam=0.1); factvae fit --lam 0.1)"
            )


def walk(
    state: FitState,
    train: GroupedData,
    valid: GroupedData,
    lams: Sequence[float],
    epochs: int,
    warm_epochs: int,
    seed: int = 0,
    num_samples: int = 100,
    progress: bool = False,
    fit_kwargs: Mapping[str, Any] | None = None,
    relax_epochs: int = 0,
    criterion: str = "ll",
    rule: str = "1se",
    tolerance: float = 0.01,
    checkpoint: str | None = None,
    store: Callable[[PathRecords], None] | None = None,
    done: str | None = None,
    records: PathRecords | None = None,
    callbacks: Sequence[Callable[..., Any]] = (),
    stop_early: bool = False,
    tail: int = 0,
    signals: Signals | None = None,
) -> PathResult | None:
    """Fit ``state`` along ``lams`` (increasing) on ``train``, score each on ``valid``, and
    leave it at the best ``lam`` with that fit's weights (its draws' spread not measured).

    ``relax_epochs > 0``: at every ``lam > 0`` the prox fit is followed by that many epochs of
    relaxed refit (support kept, no shrinkage), and the refit is what is scored and kept; the
    next ``lam`` continues from it. ``criterion``: ``"ll"`` scores the held-out conditional
    log-likelihood, ``"mse"`` minus the held-out imputation error (standardized units).
    ``rule``: ``"1se"`` takes the ``lam`` s within one paired standard error of the best
    score, ``"min"`` those within ``tolerance`` (relative) of it; of these, the sparsest map
    at its smallest ``lam`` (:func:`~pyro_factvae.infer.path_choice.choose`).

    ``checkpoint``: every stage checkpoints there, naming itself in ``state.lam_path``;
    ``store(records)`` runs after each ``lam`` is scored. A resumed walk gives the stage
    ``done`` (every stage up to it is complete in ``state``) and the ``records`` of the scored
    ``lam`` s. ``stop_early``: end the walk at a ``lam`` that scores worse than the best
    by more than :data:`~pyro_factvae.infer.path_choice.STOP_GAP` (relative; for
    ``criterion="mse"``): the penalty has pruned links the data need, and the larger
    ``lam`` s are not fitted; with ``criterion="mse"`` only once some ``lam`` imputes better
    than the mean (:func:`~pyro_factvae.infer.path_choice.beats_mean`); and at a ``lam``
    that pruned every link. ``tail``: the last ``tail`` values of ``lams`` are walked only
    while no ``lam`` imputes better than the mean (``criterion="mse"``). Returns ``None``
    when a signal interrupted a stage, or (``signals``) came between two (``state.interrupted``)."""
    if criterion not in ("ll", "mse"):
        raise ValueError(f"criterion must be 'll' or 'mse', got {criterion!r}")
    grid = sorted(float(v) for v in lams)
    check_path_data(train, valid)
    fit_kwargs = {k: v for k, v in (fit_kwargs or {}).items() if k != "relax_epochs"}
    order = stages(grid, relax_epochs > 0)
    last = -1 if done is None else order.index(done)
    rec = PathRecords() if records is None else records

    def run(stage: str, **kwargs: Any) -> bool:
        """Train ``stage`` unless it is done; ``False`` when a signal stopped it."""
        if order.index(stage) <= last:
            return True
        if signals is not None and signals.stopped(state):
            return False
        if checkpoint is not None:
            at_stage(state, stage)
        trainer, told = Trainer(state, measure_spread=False), staged(callbacks, "path")
        trainer.train(train, kwargs, progress, checkpoint, told)
        return not state.interrupted

    # the mean imputation's score on the validation pairs ("mse"; after a fit: its units)
    mean_score: float | None = None
    for i, lam in enumerate(grid):
        if i >= len(grid) - tail and beats_mean(rec, mean_score):
            break  # the tail is for data that no lam has yet imputed better than the mean
        state.set_lam(lam)
        n = epochs if i == 0 else warm_epochs
        # full steps here: with a tenth of them the prox did not prune within warm_epochs
        with warnings.catch_warnings():  # pruning whole groups is what strong lams are for
            warnings.filterwarnings("ignore", message="every link of group")
            if not run(f"fit:{i}", epochs=n, seed=seed + i, relax_epochs=0, **fit_kwargs):
                return None
            if relax_epochs and lam > 0:
                refit = {**fit_kwargs, "warmup_epochs": 0.0, "epochs": relax_epochs}
                if not run(f"refit:{i}", relax_epochs=relax_epochs, seed=seed + i, **refit):
                    return None
        if len(rec) <= i:  # else scored before the path was interrupted
            rec.score(state, valid, criterion, num_samples, seed, missing_cell_fraction(train))
            if store is not None:
                store(rec)
        if criterion == "mse" and mean_score is None and (stop_early or tail):
            errors = held_out_mean_errors(state.fitted()[0], train, valid, seed)
            mean_score = rec.mean_score = -float(np.mean(errors))
        if stop_early and (
            rec.links[-1] == 0 or (past_support(rec) and beats_mean(rec, mean_score))
        ):
            break
    path = choose(grid[: len(rec)], rec, rule, tolerance)
    model, guide = state.fitted()
    model.load_state_dict(rec.states[path.best][0])
    guide.load_state_dict(rec.states[path.best][1])
    state.set_lam(grid[path.best])
    state.reset_optimizers()  # their moments belong to the last lam
    return path


def _fresh_dense_fit(
    state: FitState,
    data: GroupedData,
    given: Mapping[str, Any],
    progress: bool,
    checkpoint: str | None = None,
    resume: Checkpoint | None = None,
    history: tuple[list[float], list[float]] | None = None,
    callbacks: Sequence[Callable[..., Any]] = (),
) -> None:
    """``lam = 0`` chosen: no support to keep, so train afresh on every row, exactly as
    ``lam=0`` would (on digits the path's warm-started model, refit, imputed with RMSE 0.913
    where a fresh dense fit reaches 0.881), and take its weights and history. ``resume``:
    that fresh fit was stopped; ``state`` (new) finishes it and takes the path's ``history``."""
    if resume is not None:
        state.set_lam(0.0)
        Trainer(state).resume(data, resume, checkpoint, progress, callbacks)
        if state.interrupted:
            return
        state.history = list(history[0]) + state.history
        state.prior_history = list(history[1]) + state.prior_history
    else:
        fresh = state.fresh(lam=0.0)  # its checkpoints carry what the model's do
        if checkpoint is not None:
            fresh.lam_path = at_stage(state, "fresh")
        Trainer(fresh).train(data, given, progress, checkpoint, callbacks)
        if fresh.interrupted:
            state.interrupted = fresh.interrupted
            return
        state.model.load_state_dict(fresh.model.state_dict())
        state.guide.load_state_dict(fresh.guide.state_dict())
        state.spread = fresh.spread
        state.history.extend(fresh.history)
        state.prior_history.extend(fresh.prior_history)
    state.set_config(num_data=len(data))  # the weights were fitted on every row
    state.reset_optimizers()


def fit_auto(
    state: FitState,
    data: GroupedData,
    given: Mapping[str, Any],
    progress: bool,
    checkpoint: str | None = None,
    resume: Checkpoint | None = None,
    callbacks: Sequence[Callable[..., Any]] = (),
) -> None:
    """``FactVAE(lam="auto").fit``: walk :data:`AUTO_GRID` (and :data:`AUTO_TAIL` while no
    ``lam`` imputes better than the mean) on 80% of the rows with relaxed refits, choose
    ``lam`` on the other 20% by the held-out imputation error of each group given the others,
    and where the data miss cells, of as large a share of the cells given the rest
    (:func:`~pyro_factvae.module.scoring.held_out_errors`; of the ``lam`` s within 1% of the
    best, the sparsest map at its smallest ``lam``), then refit the chosen support on every row (a
    relaxed refit of ``epochs // WARM_DIVISOR`` standardized by every row; at ``lam = 0``, a
    fresh dense fit). With nothing to hold out (one group) it falls back to ``lam = 0`` with a
    warning. Leaves the path as plain data in ``state.lam_path``, or, when a signal
    interrupted it (``state.interrupted``), the stage to resume.

    ``checkpoint``: every stage checkpoints there, and the scored lams are kept beside it
    (:class:`~pyro_factvae.infer.path_state.PathStore`). ``resume``: such a checkpoint; the
    path goes on from the stage it was written in (into ``state``, a new one) with the
    settings it was started with."""
    with warnings.catch_warnings():  # said once, by the caller, not per fit of the path
        warnings.simplefilter("ignore", FewRowsWarning)
        # the path's fits see 80% of the rows: constant or rare columns are told of at its end
        warnings.filterwarnings("ignore", message=".*(constant in the|in one) training")
        with Signals(redeliver=True) as signals:  # one between two stages stops it there
            args = (state, data, given, progress, checkpoint, resume, callbacks, signals)
            path = _walk_and_refit(*args)
    if path is not None:  # else a signal stopped it: lam_path names the stage to resume
        state.lam_path = path
        warn_constant(data.names, state.model.constant(), data.columns, data.cell_counts())


def _walk_and_refit(state, data, given, progress, checkpoint, resume, callbacks, signals):
    """:func:`fit_auto`'s stages; the path as plain data, or ``None`` when interrupted."""
    state.interrupted = None
    data.require_trainable()
    records, history = PathRecords(), None
    done = None if resume is None else resume.stage
    beyond = [v for v in AUTO_TAIL if v > max(AUTO_GRID)]
    grid, tail = [*AUTO_GRID, *beyond], len(beyond)
    if resume is not None:
        records, settings, history = PathStore(resume.path).load()
        run = settings.pop("run", None)  # ties the checkpoint to its .path file
        written = (resume.meta.get("lam_path") or {}).get("run")
        if run is not None and written is not None and run != written:
            raise ValueError(
                f"{PathStore(resume.path).path!r} is not the .path file of {resume.path!r} "
                "(another lam='auto' run wrote it): keep each checkpoint with its own"
            )
        grid = [float(v) for v in settings.pop("grid", UNNAMED_GRID)]  # the path's own
        tail = int(settings.pop("tail", 0))
        FitConfig.check_resumed(dict(given), settings)
        given = settings
    run = uuid.uuid4().hex if resume is None else run
    settings = {**given, "grid": grid, "tail": tail, "run": run}  # what the path store keeps
    if checkpoint is not None and resume is None:
        state.lam_path = {"run": run}
    store = None if checkpoint is None else PathStore(checkpoint)
    seed = 0 if given["seed"] is None else given["seed"]

    def finish(part: GroupedData) -> None:  # the stage the checkpoint was written in
        stage = {"fallback": "fit", "final": "final", "fresh": "final"}.get(done, "path")
        trainer = Trainer(state, measure_spread=stage == "fit")  # the final refit's: kept
        trainer.resume(part, resume, checkpoint, progress, staged(callbacks, stage))

    try:
        try:
            train, valid = data.split(0.8, seed=seed)
        except ValueError:  # too few rows to split is as nothing to hold out
            raise ValueError(f"{len(data)} rows are too few to hold out validation rows") from None
        check_path_data(train, valid)
    except ValueError as exc:  # e.g. one group: nothing to hold out, so nothing to choose by
        warnings.warn(f"lam='auto' fell back to lam=0: {exc}", stacklevel=4)
        state.set_lam(0.0)
        if store is not None:
            store.save(records, settings)
            at_stage(state, "fallback")
        if done == "fallback":
            finish(data)
        else:
            Trainer(state).train(data, given, progress, checkpoint, callbacks)
        if state.interrupted:
            return None
        return {"lams": [0.0], "criterion": "none: nothing can be held out"}
    epochs = given["epochs"]
    if epochs is None:
        epochs = FitConfig(batch_size=given["batch_size"]).resolved(False, True, len(train)).epochs
    fit_kwargs = {k: v for k, v in given.items() if k not in ("epochs", "seed", "relax_epochs")}
    warm = max(1, epochs // WARM_DIVISOR)
    refits = PHI_POSTERIORS.get(state.config.phi_inference).collapsed  # relaxed: prox only
    relax = warm if refits else 0
    if given.get("map_epochs"):
        fit_kwargs["map_epochs"] = min(given["map_epochs"], warm - 1)
    if store is not None:
        store.save(records, settings, history)
    if done in ("final", "fresh"):  # the walk is over: the checkpoint trains its choice
        path = choose(grid[: len(records)], records, "min", 0.01)
        # the lam chosen when the walk ended (a file of a version whose rule differed too)
        chosen_lam = float(resume.config.lam)
        best = min(range(len(path.lams)), key=lambda i: abs(path.lams[i] - chosen_lam))
        path = dataclasses.replace(path, best=best)
    else:
        if done is not None:  # finish the stage the checkpoint was written in
            state.set_lam(grid[int(done.split(":")[1])])
            finish(train)
            if state.interrupted:
                return None
        path = walk(
            state,
            train,
            valid,
            grid,
            epochs,
            warm,
            seed,
            num_samples=AUTO_SAMPLES,
            progress=progress,
            fit_kwargs=fit_kwargs,
            relax_epochs=relax,
            criterion="mse",
            rule="min",
            checkpoint=checkpoint,
            store=None if store is None else (lambda rec: store.save(rec, settings)),
            done=done,
            records=records,
            callbacks=callbacks,
            stop_early=True,
            tail=tail,
            signals=signals,
        )
        if path is None:
            return None
        history = (list(state.history), list(state.prior_history))
        if store is not None:
            store.save(records, settings, history)
    # the mean imputation on the validation pairs in the path's units (the final fit
    # standardizes by every row), kept in the final stage's checkpoints for a resume
    mean_mse = (resume.meta.get("lam_path") or {}).get("mean_mse") if resume else None
    if done not in ("final", "fresh"):  # the walk took it (its first lam's fit, "mse")
        mean_mse = -records.mean_score
        if isinstance(state.lam_path, dict):
            state.lam_path["mean_mse"] = mean_mse
    chosen = grid[path.best]
    if signals.stopped(state):
        return None
    if chosen > 0 or not refits:
        # the path saw 80% of the rows: the final fit on every row standardizes by every row,
        # as a fresh fit does (on nutrimouse's 32-row splits a group left with no link was
        # imputed 0.1 sd from its mean), and so frees a feature that varies in the rest
        if done == "final":
            state.set_lam(chosen)
            finish(data)
        else:  # measured on the rows the path held out: the final fit's own were trained on
            state.spread = held_out_spread(*state.fitted(), valid, seed)
            state.model.init_from_data(data.values, data.observed, data.cells)
            # the relaxed phase takes smaller steps itself; plain training (lam = 0) is told to
            rest = {**(fit_kwargs if relax else _smaller_steps(fit_kwargs)), "warmup_epochs": 0.0}
            if checkpoint is not None:
                at_stage(state, "final")
            final = {**rest, "epochs": warm, "seed": seed + len(grid), "relax_epochs": relax}
            trainer = Trainer(state, measure_spread=False)
            trainer.train(data, final, progress, checkpoint, staged(callbacks, "final"))
    else:
        fresh = resume if done == "fresh" else None
        last = staged(callbacks, "final")
        _fresh_dense_fit(state, data, given, progress, checkpoint, fresh, history, last)
    if state.interrupted:
        return None
    if mean_mse is None:  # an old checkpoint did not keep it: the final model's units
        mean_mse = float(np.mean(held_out_mean_errors(state.fitted()[0], train, valid, seed)))
    warn_if_the_mean_wins(path, chosen, mean_mse, stacklevel=4)
    return path.as_mse_record(mean_mse)
