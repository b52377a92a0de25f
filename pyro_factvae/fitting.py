"""Training runs that lose nothing: phases, checkpoints, resume and signals for ``FactVAE.fit``.

A run is a list of phases (prox-MAP, then optionally the variational mode), each a call of
:func:`~pyro_factvae.train.train`. Its complete state — weights, both parts of the proximal
optimizer, the phase, epoch, batch and data order, every RNG (torch, the data generator, Python,
NumPy), the history and the config — goes into a checkpoint, written atomically (temporary
file, fsync, rename; :func:`~pyro_factvae.persist.atomic_save`), so the file at ``path`` is
always the last complete one. Resuming restores all of it, so on CPU an interrupted and
resumed run ends bit for bit where an uninterrupted one would.

SIGINT and SIGTERM during a run finish the current step, write a checkpoint (when a path was
given) and return; a second signal interrupts at once.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .config import _positive_int
from .data import GroupedData
from .persist import read_payload
from .train import NonFiniteError, Position, train

if TYPE_CHECKING:  # pragma: no cover
    from .factvae import FactVAE

__all__ = ["Run", "fingerprint"]


def fingerprint(data: GroupedData) -> str:
    """SHA-256 of the values and mask: a resumed run must see the same data."""
    h = hashlib.sha256()
    for v in data.values:
        h.update(v.contiguous().numpy().tobytes())
    h.update(data.observed.numpy().tobytes())
    return h.hexdigest()


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every RNG the run uses, as tensors and plain data (safe to load)."""
    py = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
    }


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["generator"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


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
    """The state of one ``fit`` call: its arguments, phases and position."""

    args: dict[str, Any]
    phases: list[tuple[str, int, float]]
    fingerprint: str
    phase: int = 0
    global_step: int = 0
    position: Position = field(default_factory=Position)
    saved_step: int = 0  #: global step of the last checkpoint written in this session

    def meta(self) -> dict[str, Any]:
        pos = self.position.state_dict()
        pos.pop("perm")
        return {
            "args": self.args,
            "phases": [list(p) for p in self.phases],
            "fingerprint": self.fingerprint,
            "phase": self.phase,
            "global_step": self.global_step,
            "position": pos,
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], perm: torch.Tensor | None) -> Run:
        pos = Position(**meta["position"], perm=perm)
        phases = [(str(m), int(n), float(w)) for m, n, w in meta["phases"]]
        return cls(
            meta["args"], phases, meta["fingerprint"], meta["phase"], meta["global_step"], pos
        )

    def execute(
        self,
        vae: FactVAE,
        data: GroupedData,
        generator: torch.Generator,
        progress: bool,
        checkpoint: str | None,
        checkpoint_every: int | None,
    ) -> bool:
        """Train from the current position to the end; return ``False`` if interrupted."""
        guide = vae.guide_
        with _Signals() as signals:

            def after_step(pos: Position) -> bool:
                self.global_step += 1
                stop = signals.received is not None
                due = checkpoint_every is not None and self.global_step % checkpoint_every == 0
                if checkpoint is not None and (due or stop):
                    write_checkpoint(vae, checkpoint, self, generator)
                    self.saved_step = self.global_step
                if stop:
                    vae.interrupted_ = signal.Signals(signals.received).name
                return stop

            while self.phase < len(self.phases):
                mode = self.phases[self.phase][0]
                if self.position.step == 0 and mode == "variational":
                    if guide.phi_inference == "prox":
                        guide.start_variational()  # q(Phi) starts at the MAP point
                guide.phi_inference = mode
                vae.optim_.lam = vae.config.lam if mode == "prox" else 0.0
                try:
                    self._phase(vae, data, generator, progress, after_step)
                except NonFiniteError as exc:
                    if self.saved_step:
                        last = (
                            f"the last good checkpoint is {checkpoint!r} (step {self.saved_step})"
                        )
                    elif checkpoint is not None and os.path.exists(checkpoint):
                        last = f"{checkpoint!r} holds the state from before this fit call"
                    else:
                        last = "no checkpoint was written"
                    raise NonFiniteError(f"{exc}; {last}") from None
                if vae.interrupted_:
                    if checkpoint is None:
                        warnings.warn(
                            f"fit interrupted by {vae.interrupted_} after step "
                            f"{self.global_step}; no checkpoint path was given, so the model "
                            "holds the weights after that step",
                            stacklevel=3,
                        )
                    return False
                self.phase += 1
                self.position = Position()
        if checkpoint is not None:
            write_checkpoint(vae, checkpoint, self, generator)
        return True

    def _phase(self, vae, data, generator, progress, after_step) -> None:
        mode, epochs, warmup = self.phases[self.phase]
        train(
            vae.model_,
            vae.guide_,
            data,
            vae.optim_,
            epochs=epochs,
            batch_size=self.args["batch_size"],
            keep_prob=vae.config.keep_prob,
            generator=generator,
            progress=progress,
            warmup_epochs=warmup,
            lr_decay=self.args["lr_decay"],
            collapsed=mode == "prox",
            history=vae.history_,
            position=self.position,
            after_step=after_step,
        )


# ---------------------------------------------------------------------- checkpoint files
def checkpoint_every(every: int | None, rows: int, batch_size: int) -> int:
    """Steps between checkpoints: ``every``, or one epoch."""
    if every is None:
        return -(-rows // min(batch_size, rows))
    return _positive_int("checkpoint_every", every)


def write_checkpoint(vae: FactVAE, path: str, run: Run, generator: torch.Generator) -> None:
    """The complete training state of ``vae`` in ``run``, atomically (see the module doc)."""
    optim = rename_params(vae.optim_.get_state(), vae._prefix(), "@")
    extra_meta = {"run": run.meta(), "optim_scalars": [vae.optim_.lr_factor]}
    extra_payload = {"optim": optim, "perm": run.position.perm, "rng": rng_state(generator)}
    vae._save(path, None, extra_meta, extra_payload)


def resume(vae: FactVAE, data, path, progress, checkpoint, every) -> FactVAE:
    """Restore the run saved at ``path`` into ``vae`` and finish it."""
    from .optim import ProximalOptim

    meta, payload = read_payload(path)
    if "run" not in meta:
        raise ValueError(
            f"{os.fspath(path)!r} is a saved model, not a checkpoint; checkpoints come from "
            "fit(..., checkpoint=PATH)"
        )
    vae.__dict__.update(type(vae)._from_payload(meta, payload, path).__dict__)
    data = vae._data(data)
    run = Run.from_meta(meta["run"], payload.get("perm"))
    if fingerprint(data) != run.fingerprint:
        raise ValueError(
            f"the data differ from those the run in {os.fspath(path)!r} was training on; "
            "resume with the same rows, groups and missing pattern"
        )
    model, guide = vae._fitted()
    model.num_data = guide.num_data = len(data)
    args = run.args
    vae.optim_ = ProximalOptim(
        torch.optim.Adam,
        {"lr": args["lr"], "foreach": True},
        lam=vae.config.lam,
        phi_lr=args["phi_lr"],
        phi_optim=args["phi_optim"],
    )
    vae.optim_.set_state(rename_params(payload["optim"], "@", vae._prefix()))
    vae.optim_.set_lr_factor(meta["optim_scalars"][0])
    guide.phi_inference = run.phases[run.phase][0]
    generator = torch.Generator()
    set_rng_state(payload["rng"], generator)
    every = checkpoint_every(every, len(data), args["batch_size"])
    run.execute(vae, data, generator, progress, checkpoint, every)
    return vae


def rename_params(state: dict, old: str, new: str) -> dict:
    """Optimizer state with parameter names' prefix ``old`` replaced by ``new`` (param-store
    names carry a per-instance prefix; a checkpoint stores them instance-free)."""

    def fix(name: str) -> str:
        return new + name[len(old) :] if name.startswith(old) else name

    out = dict(state)
    out["phi"] = {fix(k): v for k, v in state.get("phi", {}).items()}
    if "theta" in state:
        theta = dict(state["theta"])
        theta["names"] = [fix(n) for n in theta["names"]]
        if "groups" in theta:
            theta["groups"] = [[fix(n) for n in g] for g in theta["groups"]]
        out["theta"] = theta
    return out
