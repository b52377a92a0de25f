"""Training runs that lose nothing: phases, checkpoints, resume and signals.

A run is a list of :class:`~pyro_factvae.infer.loop.Phase` (prox-MAP, then optionally another
posterior over ``Phi``), each trained by :func:`~pyro_factvae.infer.loop.train_phase`. Its
complete state — weights (through the caller's ``save``), both optimizers and their step-size
schedules, the phase, epoch, batch and data order, the torch RNG and the run's generator, the
history and the config — goes into a checkpoint, written atomically, so the file is always the
last complete one. Resuming restores all of it, so on CPU an interrupted and resumed run ends
bit for bit where an uninterrupted one would. Training runs under a forked torch RNG seeded by
the run: the caller's global RNG is left as it was.

SIGINT and SIGTERM during a run finish the current step, write a checkpoint (when a path was
given) and return; a second signal interrupts at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..config import FitConfig
from ..data import GroupedData
from ..module.guide import Guide
from ..module.model import Model
from ..module.priors import column_norms
from ..rng import cuda_index, fork_rng
from .callbacks import Epoch
from .distributed import barrier, broadcast_, is_writer, max_over_ranks
from .loop import (
    NonFiniteError,
    Phase,
    Position,
    cosine,
    train_phase,
    validation_loss,
)
from .optim import Optimizers

__all__ = ["Run", "Trainer", "fingerprint"]

#: writes a checkpoint: ``save(path, run_meta, run_tensors)`` (model weights added by the caller)
SaveFn = Callable[[str, dict[str, Any], dict[str, Any]], None]


def fingerprint(data: GroupedData) -> str:
    """SHA-256 of the values and masks: a resumed run must see the same data."""
    h = hashlib.sha256()
    for v in data.values:
        h.update(v.contiguous().numpy().tobytes())
    h.update(data.observed.numpy().tobytes())
    if data.cells is not None:
        h.update(data.cells.numpy().tobytes())
    return h.hexdigest()


class _Signals:
    """Turn SIGINT / SIGTERM into a flag for the duration of a run (main thread only)."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class Run:
    """The state of one ``fit`` call: its settings, phases and position."""

    fit: FitConfig
    phases: list[Phase]
    fingerprint: str
    phase: int = 0
    global_step: int = 0
    position: Position = field(default_factory=Position)
    saved_step: int = 0  #: global step of the last checkpoint written in this session
    #: early stopping in the current phase (best validation loss, its epoch, epochs since)
    stopper: dict[str, Any] = field(default_factory=lambda: {"best": None, "epoch": 0, "wait": 0})

    @property
    def finished(self) -> bool:
        return self.phase >= len(self.phases)

    def meta(self) -> dict[str, Any]:
        return {
            "fit": self.fit.to_dict(),
            "phases": [
                [p.posterior, p.epochs, p.warmup_epochs, p.relaxed, p.lr_scale, p.lam]
                for p in self.phases
            ],
            "fingerprint": self.fingerprint,
            "phase": self.phase,
            "global_step": self.global_step,
            "position": self.position.meta(),
            "stopper": self.stopper,
        }

    @classmethod
    def restore(
        cls,
        meta: dict[str, Any],
        perm: torch.Tensor | None,
        data: GroupedData,
        path: Any,
        lam: float = 0.0,
    ) -> Run:
        """The run saved in a checkpoint (at ``path``), checked to be training on ``data``
        (``lam``: the phases' ``lam`` where the file is older than phases that carry one)."""
        run = cls.from_meta(meta, perm, lam)
        if fingerprint(data) != run.fingerprint:
            raise ValueError(
                f"the data differ from those the run in {os.fspath(path)!r} was training on; "
                "resume with the same rows, groups and missing pattern"
            )
        return run

    @classmethod
    def from_meta(cls, meta: dict[str, Any], perm: torch.Tensor | None, lam: float = 0.0) -> Run:
        phases = [
            Phase(str(p[0]), int(p[1]), float(p[2]), bool(p[3]), float(p[4]), float(lam))
            if len(p) == 5  # a file from before phases carried their lam
            else Phase(str(p[0]), int(p[1]), float(p[2]), bool(p[3]), float(p[4]), float(p[5]))
            for p in meta["phases"]
        ]
        return cls(
            FitConfig(**meta["fit"]),
            phases,
            meta["fingerprint"],
            meta["phase"],
            meta["global_step"],
            Position(**meta["position"], perm=perm),
            stopper=dict(meta["stopper"]),
        )


class Trainer:
    """Trains a (model, guide) pair with Algorithm 1; owns the optimizers across ``fit`` calls
    (a later call continues with their moments)."""

    def __init__(self, model: Model, guide: Guide) -> None:
        self.model, self.guide = model, guide
        self.optimizers: Optimizers | None = None
        self._pending: dict[str, Any] | None = None
        self._best: dict[str, Any] | None = None

    def reset(self) -> None:
        """Forget the optimizers' moments (the next run starts them afresh)."""
        self.optimizers = None

    def _optimizers(self, fit: FitConfig) -> Optimizers:
        if self.optimizers is None or self.optimizers.phi_optim != fit.phi_optim:
            self.optimizers = Optimizers(self.model, self.guide, fit.lr, fit.phi_lr, fit.phi_optim)
        return self.optimizers

    def continue_from(self, tensors: dict[str, Any], fit: FitConfig) -> None:
        """Take the optimizers of a *finished* checkpoint (written at the end of a run with
        ``fit``), so that a later run continues with their moments, as it would have in the
        process that wrote it."""
        self.optimizers = Optimizers(self.model, self.guide, fit.lr, fit.phi_lr, fit.phi_optim)
        self.optimizers.load_state_dict(tensors["optim"])

    def restore(self, tensors: dict[str, Any]) -> tuple[torch.Tensor, torch.Generator]:
        """Take a checkpoint's training state (from :meth:`execute`'s ``save``); return its
        torch RNG state and generator, to pass to :meth:`execute`."""
        self._pending = {
            "optim": tensors["optim"],
            "sched": tensors["sched"],
            "best": tensors.get("best"),
            "cuda_rng": tensors["rng"].get("cuda"),
        }
        generator = torch.Generator()
        generator.set_state(tensors["rng"]["generator"])
        return tensors["rng"]["torch"], generator

    def execute(
        self,
        run: Run,
        data: GroupedData,
        generator: torch.Generator,
        rng_state: torch.Tensor | None,
        history: list[float],
        prior_history: list[float],
        progress: bool,
        checkpoint: str | None,
        save: SaveFn,
        valid: GroupedData | None = None,
        callbacks: Sequence[Callable[[Epoch], Any]] = (),
    ) -> str | None:
        """Train from the run's position to its end; return the name of the signal that
        stopped it (``"callback"`` when a callback did), or ``None``.

        ``rng_state``: the torch RNG state to train under, in a fork of the global RNG
        (``None``: use and advance the global RNG). ``valid``: held-out rows for early
        stopping (``run.fit.patience`` epochs without a better validation loss end a phase,
        and the weights of its best epoch are restored). ``callbacks``: each called with an
        :class:`~pyro_factvae.infer.callbacks.Epoch` after every epoch; one that returns
        ``True`` stops the run there, as a signal does.
        """
        optimizers = self._optimizers(run.fit)
        # a distributed run starts every rank from rank 0's weights
        broadcast_([*self.model.state_dict().values(), *self.guide.state_dict().values()])
        batches = math.ceil(len(data) / min(run.fit.batch_size, len(data)))  # per epoch
        every = run.fit.checkpoint_every or batches
        device = self.model.device
        with fork_rng(device, enabled=rng_state is not None), _Signals() as signals:
            if rng_state is not None:
                torch.set_rng_state(rng_state)
                self._seed_cuda(device)
            interrupted: str | None = None

            def write() -> None:
                if is_writer():  # rank 0 of a distributed run
                    save(checkpoint, {"run": run.meta()}, self._tensors(run, generator, scheds))
                run.saved_step = run.global_step

            requested = False  # a callback asked to stop

            def after_epoch(pos: Position) -> bool:
                nonlocal requested
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
                    )
                    answers = [bool(callback(event)) for callback in callbacks]
                    requested = requested or any(answers)
                if not stopping:
                    return False
                if pos.epoch <= run.phases[run.phase].warmup_epochs:
                    return False  # lam is still ramping up: the objective is not the final one
                loss = validation_loss(self.model, self.guide, valid, self.guide.phi_mode)
                stop = run.stopper
                if stop["best"] is None or loss < stop["best"]:
                    stop.update(best=loss, epoch=pos.epoch, wait=0)
                    self._best = self._weights()
                else:
                    stop["wait"] += 1
                return stop["wait"] >= run.fit.patience

            def after_step(pos: Position) -> bool:
                nonlocal interrupted
                run.global_step += 1
                # a signal on any rank stops every rank at this step
                received = max_over_ranks(signals.received or 0)
                stop = received > 0 or requested
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
                if self._pending is None and run.position.step == 0:
                    scale = phase.lr_scale
                    optimizers.set_base_lr(run.fit.lr * scale, run.fit.phi_lr * scale)
                total = phase.epochs * batches
                factor = cosine(total, run.fit.lr_decay)
                scheds = [LambdaLR(optimizers.theta, factor), LambdaLR(optimizers.phi, factor)]
                if self._pending is not None:
                    optimizers.load_state_dict(self._pending["optim"])
                    for sched, state in zip(scheds, self._pending["sched"]):
                        sched.load_state_dict(state)
                    self._best = self._pending["best"]
                    self._pending = None
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
                    )
                except NonFiniteError as exc:
                    raise NonFiniteError(f"{exc}; {self._last_good(run, checkpoint)}") from None
                if interrupted:
                    barrier()  # rank 0's checkpoint is on disk before any rank goes on
                    return interrupted
                if stopping and self._best is not None:  # the best epoch's weights
                    self.model.load_state_dict(self._best["model"])
                    self.guide.load_state_dict(self._best["guide"])
                run.phase += 1
                run.position = Position()
                run.stopper = {"best": None, "epoch": 0, "wait": 0}
                self._best = None
            if checkpoint is not None:
                write()
                barrier()
        return None

    def _weights(self) -> dict[str, Any]:
        clone = lambda sd: {k: v.detach().clone() for k, v in sd.items()}  # noqa: E731
        return {"model": clone(self.model.state_dict()), "guide": clone(self.guide.state_dict())}

    def active_links(self) -> int:
        """Nonzero columns of ``Phi``: the (group, latent) links the prox has kept."""
        with torch.no_grad():
            return int(sum(int((column_norms(p) > 0).sum()) for p in self.guide.Phi))

    def _seed_cuda(self, device: torch.device) -> None:
        """A seeded run on CUDA: the device's RNG (which Pyro's guide draws from in a
        variational phase) continues from the checkpoint's state, or starts from a seed drawn
        from the seeded CPU RNG. The collapsed objective draws its noise on the CPU."""
        index = cuda_index(device)
        if index is None:
            return
        saved = None if self._pending is None else self._pending.get("cuda_rng")
        if saved is not None:
            torch.cuda.set_rng_state(saved, index)
        else:
            seed = int(torch.randint(2**62, ()))
            with torch.cuda.device(index):
                torch.cuda.manual_seed(seed)

    def _tensors(self, run: Run, generator: torch.Generator, scheds: list) -> dict[str, Any]:
        assert self.optimizers is not None
        index = cuda_index(self.model.device)
        cuda = {} if index is None else {"cuda": torch.cuda.get_rng_state(index)}
        return {
            "optim": self.optimizers.state_dict(),
            "sched": [s.state_dict() for s in scheds],
            "perm": run.position.perm,
            "best": self._best,
            "rng": {"torch": torch.get_rng_state(), "generator": generator.get_state(), **cuda},
        }

    @staticmethod
    def _last_good(run: Run, checkpoint: str | None) -> str:
        if run.saved_step:
            return f"the last good checkpoint is {checkpoint!r} (step {run.saved_step})"
        if checkpoint is not None and os.path.exists(checkpoint):
            return f"{checkpoint!r} holds the state from before this fit call"
        return "no checkpoint was written"
