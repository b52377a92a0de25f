"""Training that loses nothing: the trainer of Algorithm 1, its checkpoints, resume and
signals.

:class:`Trainer` takes a :class:`~pyro_factvae.infer.state.FitState` and owns everything of
a fit but the model: it builds the model on a first fit (seeded initialisation from the
data), plans the phases (:func:`~pyro_factvae.infer.plan.plan`), seeds the run, splits off
the early-stopping rows, trains each phase (:func:`~pyro_factvae.infer.loop.train_phase`),
handles signals and callbacks, and checkpoints. A checkpoint holds the complete state —
weights, both optimizers and their step-size schedules, the phase, epoch, batch and data
order, the torch RNG and the run's generator, the history and the config — written
atomically (:mod:`~pyro_factvae.infer.checkpoint`), so the file is always the last complete
one. :meth:`Trainer.resume` restores all of it, so on CPU an interrupted and resumed run
ends bit for bit where an uninterrupted one would. Training runs under a forked torch RNG
seeded by the run: the caller's global RNG is left as it was.

SIGINT and SIGTERM during a run finish the current step, write a checkpoint (when a path was
given) and return; a second signal interrupts at once.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from ..data import GroupedData
from ..fit_config import FitConfig
from ..io import check_writable
from ..module.priors import column_norms
from ..registry import PHI_POSTERIORS
from ..rng import cuda_index, fork_rng
from ..validation import warn_constant
from .callbacks import Epoch, after_raise
from .checkpoint import Checkpoint
from .checkpoint import write as write_checkpoint
from .distributed import World
from .loop import NonFiniteError, Position, cosine, fresh_stopper, train_phase, validation_loss
from .optim import Optimizers
from .plan import (
    MIN_ROWS_TO_STOP,
    VALIDATE_STEPS,
    Run,
    Signals,
    check_posterior,
    check_validation_rows,
    fingerprint,
    plan,
    seeding,
    stopping_split,
)
from .spread import held_out_spread
from .state import FitState

__all__ = ["Trainer"]

Callbacks = Sequence[Callable[[Epoch], Any]]


class Trainer:
    """Trains a :class:`~pyro_factvae.infer.state.FitState` with Algorithm 1. The optimizers
    live in the state across fits (a later fit continues with their moments). A finished run
    with validation rows measures the draws' spread on them (``state.spread``,
    :mod:`~pyro_factvae.infer.spread`; without them it is 1), before its last checkpoint,
    unless ``measure_spread`` is false (the fits of the ``lam`` path, which measures it)."""

    def __init__(
        self, state: FitState, world: World | None = None, measure_spread: bool = True
    ) -> None:
        self.state = state
        self.measure_spread = measure_spread
        #: the processes of this run (read once, here, and passed down to the step)
        self.world = World.current() if world is None else world
        self._best: dict[str, Any] | None = None

    @property
    def model(self):
        return self.state.model

    @property
    def guide(self):
        return self.state.guide

    def train(
        self,
        data: GroupedData,
        given: Mapping[str, Any],
        progress: bool = False,
        checkpoint: str | None = None,
        callbacks: Callbacks = (),
    ) -> None:
        """Fit the state (built here on a first call) on ``data`` at its numeric ``lam``
        with the fit settings ``given`` (:class:`~pyro_factvae.fit_config.FitConfig` fields,
        defaults still unresolved); a later call continues training. ``state.interrupted``
        names the signal that stopped it, if any."""
        state = self.state
        if isinstance(state.config.lam, str):
            raise ValueError(
                "Trainer.train fits at a number lam; lam='auto' is the lam path's "
                "(pyro_factvae.infer.path.fit_auto, which FactVAE(lam='auto').fit runs)"
            )
        state.interrupted = None
        data.require_trainable()
        given = dict(given)
        collapsed_only = PHI_POSTERIORS.get(state.config.phi_inference).collapsed
        check_posterior(state.config.phi_inference, state.config.lam)
        if given.get("patience", "auto") == "auto" and len(data) < MIN_ROWS_TO_STOP:
            given["patience"] = None  # too few rows to hold some out
        fit = FitConfig(**given).resolved(
            bool(state.history), collapsed_only, len(data), sparse=state.config.lam > 0
        )
        check_validation_rows(len(data), fit)
        layout = state.layout_of(data)
        generator, rng_state = seeding(fit.seed, self.world.size)
        if state.model is None:
            seeded = rng_state is not None
            with torch.random.fork_rng(devices=[], enabled=seeded):
                if seeded:
                    torch.set_rng_state(rng_state)
                state.build(layout, len(data))
                state.model.init_from_data(data.values, data.observed, data.cells)
                warn_constant(data.names, state.model.constant(), data.columns, data.cell_counts())
                state.to_device()
                if seeded:
                    rng_state = torch.get_rng_state()
        else:  # a continued fit: a feature held constant that varies in these data is freed
            state.model.keep_varying(data.values, data.observed, data.cells)
        state.set_config(num_data=len(data))
        lam = float(state.config.lam)
        digest = None if checkpoint is None else fingerprint(data)  # 30 MB hashed in 28 ms
        run = Run(fit, plan(fit, state.config.phi_inference, lam), digest)
        self._run(run, data, generator, rng_state, progress, checkpoint, callbacks)

    def resume(
        self,
        data: GroupedData,
        ckpt: Checkpoint,
        target: str | os.PathLike,
        progress: bool = False,
        callbacks: Callbacks = (),
        restored: bool = False,
    ) -> None:
        """Continue the run saved in ``ckpt`` on ``data`` (the same rows), checkpointing to
        ``target``; ``restored``: the state already holds the checkpoint's model."""
        state = self.state
        state.interrupted = None
        if not restored:
            ckpt.restore_into(state)
        lam = float(state.config.lam)
        run = Run.restore(ckpt.meta["run"], ckpt.tensors.get("perm"), data, ckpt.path, lam)
        if run.finished:  # a later fit continues with the optimizers' moments, as it would have
            self.continue_from(ckpt.tensors, run.fit)
            return
        saved, rng_state, generator = ckpt.run_state()
        target = check_writable(target, "checkpoint")
        self._run(run, data, generator, rng_state, progress, target, callbacks, saved)

    def _run(self, run, data, generator, rng_state, progress, checkpoint, callbacks, saved=None):
        """:meth:`execute` on the training rows (validation held out); what a run tells."""
        state, valid = self.state, None
        if run.fit.patience is not None:  # the same split on every call, resume included
            data, valid = stopping_split(data, run.fit)
        state.interrupted = self.execute(
            run, data, generator, rng_state, progress, checkpoint, valid, callbacks, saved
        )
        if not state.interrupted and PHI_POSTERIORS.get(state.guide.phi_mode).collapsed:
            norms = state.sparsity()
            for name in norms.index[(norms.values == 0).all(axis=1)]:
                warnings.warn(
                    f"every link of group {name!r} was pruned at lam = {state.config.lam:g}: "
                    "the model ignores that group (it is imputed by its mean); lower lam",
                    stacklevel=4,
                )
        if state.interrupted and checkpoint is None:
            warnings.warn(
                f"fit interrupted by {state.interrupted} after step {run.global_step}; no "
                "checkpoint path was given, so the model holds the weights after that step",
                stacklevel=4,
            )

    def _optimizers(self, fit: FitConfig) -> Optimizers:
        state = self.state
        if state.optimizers is None or state.optimizers.phi_optim != fit.phi_optim:
            state.optimizers = Optimizers(
                state.model, state.guide, fit.lr, fit.phi_lr, fit.phi_optim
            )
            saved, state.saved_optimizers = state.saved_optimizers, None
            if saved is not None and saved[0] == fit.phi_optim:  # a model file's moments
                state.optimizers.load_state_dict(saved[1])
        return state.optimizers

    def continue_from(self, tensors: dict[str, Any], fit: FitConfig) -> None:
        """Take the optimizers of a *finished* checkpoint (written at the end of a run with
        ``fit``), so that a later run continues with their moments, as it would have in the
        process that wrote it."""
        self.state.optimizers = None
        self._optimizers(fit).load_state_dict(tensors["optim"])

    def execute(
        self,
        run: Run,
        data: GroupedData,
        generator: torch.Generator,
        rng_state: torch.Tensor | None,
        progress: bool = False,
        checkpoint: str | None = None,
        valid: GroupedData | None = None,
        callbacks: Callbacks = (),
        saved: dict[str, Any] | None = None,
    ) -> str | None:
        """Train from the run's position to its end; return the name of the signal that
        stopped it (``"callback"`` when a callback did), or ``None``.

        The history goes to the state's ``history`` and ``prior_history``; checkpoints to
        ``checkpoint`` (:func:`~pyro_factvae.infer.checkpoint.write`). ``saved``: a checkpoint's
        training state (:meth:`~pyro_factvae.infer.checkpoint.Checkpoint.run_state`), taken at
        the start.
        ``rng_state``: the torch RNG state to train under, in a fork of the global RNG
        (``None``: use and advance the global RNG). ``valid``: held-out rows for early
        stopping (``run.fit.patience`` epochs without a better validation loss end a phase,
        and the weights of its best scored epoch are restored; the rows are scored every
        epoch, or every few epochs where an epoch is under
        :data:`~pyro_factvae.infer.plan.VALIDATE_STEPS` steps, and at a phase's last).
        ``callbacks``: each called with an
        :class:`~pyro_factvae.infer.callbacks.Epoch` after every epoch; one that returns
        ``True`` stops the run there, as a signal does.
        """
        history, prior_history = self.state.history, self.state.prior_history
        pending = saved
        optimizers = self._optimizers(run.fit)
        # a distributed run starts every rank from rank 0's weights
        world = self.world
        world.broadcast_([*self.model.state_dict().values(), *self.guide.state_dict().values()])
        batches = math.ceil(len(data) / min(run.fit.batch_size, len(data)))  # per epoch
        every = run.fit.checkpoint_every or batches
        scored_every = math.ceil(VALIDATE_STEPS / batches)  # epochs between validation scores
        device = self.model.device
        with fork_rng(device, enabled=rng_state is not None), Signals() as signals:
            if rng_state is not None:
                torch.set_rng_state(rng_state)
                self._seed_cuda(device, None if pending is None else pending.get("cuda_rng"))
            interrupted: str | None = None

            def write() -> None:
                if world.writer:  # rank 0 of a distributed run
                    meta, tensors = {"run": run.meta()}, self._tensors(run, generator, scheds)
                    write_checkpoint(self.state, checkpoint, meta, tensors)
                run.saved_step = run.global_step

            requested = False  # a callback asked to stop
            raised: BaseException | None = None  # what a callback raised, re-raised once saved

            def after_epoch(pos: Position) -> bool:
                nonlocal requested, raised
                if callbacks:
                    phase = run.phases[run.phase]
                    event = Epoch(
                        epoch=len(history),
                        phase=phase.label,
                        loss=history[-1],
                        prior=prior_history[-1],
                        # the relaxed refit shrinks nothing: lam 0 is what it applies
                        lam=0.0 if phase.relaxed else phase.lam_at(pos.step - 1, batches),
                        active_links=self.active_links(),
                        target_lam=phase.lam,
                    )
                    # True stops (numpy's too); a raise stops too, re-raised once saved
                    for callback in callbacks:
                        try:
                            answer = callback(event)
                        except Exception as exc:  # the others still see the epoch
                            raised = raised or exc
                            continue
                        except BaseException as exc:  # Ctrl-C: stop now, nothing scored
                            raised = raised or exc
                            return False
                        stop_now = isinstance(answer, (bool, np.bool_)) and bool(answer)
                        requested = requested or stop_now
                if not stopping:
                    return False
                phase = run.phases[run.phase]
                if pos.epoch <= phase.warmup_epochs:
                    return False  # lam is still ramping up: the objective is not the final one
                if pos.epoch % scored_every and pos.epoch < phase.epochs:
                    return False  # epochs of a few steps: scored every few epochs
                # the objective the phase minimises, with the prox's group-lasso term (else the
                # best epoch predates the prox's pruning: on wine 15 links for 3), counted per
                # row of the score as the steps count it, N_train / N (docs/objective.md)
                loss = validation_loss(self.model, self.guide, valid, self.guide.phi_mode)
                loss += optimizers.phi.penalty() * len(data) / self.model.config.num_data
                stop = run.stopper
                if stop["best"] is None or loss < stop["best"]:
                    stop.update(best=loss, epoch=pos.epoch, wait=0)
                    model_state, guide_state = self.state.weights()
                    self._best = {"model": model_state, "guide": guide_state}
                else:
                    stop["wait"] += scored_every
                return stop["wait"] >= run.fit.patience

            def after_step(pos: Position) -> bool:
                nonlocal interrupted
                run.global_step += 1
                # a signal (its number, >= 2) or a callback's stop (1) on any rank stops every
                # rank here: one rank stopping alone would leave the others in a collective
                code = world.max_over_ranks(signals.received or int(requested or bool(raised)))
                received = code if code > 1 else 0
                stop = code > 0
                if checkpoint is not None and (stop or run.global_step % every == 0):
                    write()
                if stop:
                    interrupted = signal.Signals(received).name if received else "callback"
                return stop

            scheds: list[LambdaLR] = []
            stopping = valid is not None and run.fit.patience is not None
            while not run.finished:
                phase = run.phases[run.phase]
                start = self.guide.phi_mode != phase.posterior
                self.guide.use_phi_posterior(phase.posterior, start=start)
                if pending is None and run.position.step == 0:
                    scale = phase.lr_scale
                    optimizers.set_base_lr(run.fit.lr * scale, run.fit.phi_lr * scale)
                total = phase.epochs * batches
                factor = cosine(total, run.fit.lr_decay)
                scheds = [LambdaLR(optimizers.theta, factor), LambdaLR(optimizers.phi, factor)]
                if pending is not None:
                    optimizers.load_state_dict(pending["optim"])
                    for sched, state in zip(scheds, pending["sched"]):
                        sched.load_state_dict(state)
                    self._best = pending["best"]
                    pending = None
                try:
                    train_phase(
                        self.model,
                        self.guide,
                        data,
                        optimizers,
                        scheds,
                        phase,
                        run.fit,
                        generator,
                        history,
                        prior_history,
                        run.position,
                        after_step,
                        progress,
                        self.active_links,
                        after_epoch if stopping or callbacks else None,
                        world,
                    )
                except NonFiniteError as exc:
                    raise NonFiniteError(f"{exc}; {self._last_good(run, checkpoint)}") from None
                if interrupted:
                    world.barrier()  # rank 0's checkpoint is on disk before any rank goes on
                    if raised is not None:
                        self.state.interrupted = interrupted
                        if hasattr(raised, "add_note"):  # Python 3.11 on
                            raised.add_note(after_raise(len(history), checkpoint))
                        raise raised
                    return interrupted
                if stopping and self._best is not None:  # the best epoch's weights
                    self.model.load_state_dict(self._best["model"])
                    self.guide.load_state_dict(self._best["guide"])
                run.phase += 1
                run.position = Position()
                run.stopper = fresh_stopper()
                self._best = None
            if self.measure_spread:  # before the last checkpoint, which keeps it
                seed, fitted = run.fit.seed or 0, self.state.fitted()
                spread = 1.0 if valid is None else held_out_spread(*fitted, valid, seed)
                self.state.spread = spread
            if checkpoint is not None:
                write()
                world.barrier()
        return None

    def active_links(self) -> int:
        """Nonzero columns of ``Phi``: the (group, latent) links the prox has kept."""
        with torch.no_grad():
            return int(sum(int((column_norms(p) > 0).sum()) for p in self.guide.Phi))

    def _seed_cuda(self, device: torch.device, saved: torch.Tensor | None) -> None:
        """A seeded run on CUDA: the device's RNG (which Pyro's guide draws from in a
        variational phase) continues from the checkpoint's state, or starts from a seed drawn
        from the seeded CPU RNG. The collapsed objective draws its noise on the CPU."""
        index = cuda_index(device)
        if index is None:
            return
        if saved is not None:
            torch.cuda.set_rng_state(saved, index)
        else:
            seed = int(torch.randint(2**62, ()))
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)

    def _tensors(self, run: Run, generator: torch.Generator, scheds: list) -> dict[str, Any]:
        index = cuda_index(self.model.device)
        cuda = {} if index is None else {"cuda": torch.cuda.get_rng_state(index)}
        return {
            "optim": self.state.optimizers.state_dict(),
            "sched": [s.state_dict() for s in scheds],
            "perm": run.position.perm,
            "best": self._best,
            "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state(), **cuda},
        }

    def _last_good(self, run: Run, checkpoint: str | None) -> str:
        if run.saved_step:
            return f"the last good checkpoint is {checkpoint!r} (step {run.saved_step})"
        if checkpoint is not None and self.state.written == os.path.realpath(checkpoint):
            return f"{checkpoint!r} holds the state from before this fit call"
        return "no checkpoint was written"
