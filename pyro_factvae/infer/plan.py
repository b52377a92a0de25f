"""The plan of one fit: its phases, its seeds, and where a run of it stands.

:func:`plan` turns the resolved fit settings and the posterior over ``Phi`` into phases
(prox-MAP; for a variational posterior, a MAP start then the full ELBO; with ``lam > 0``, a
relaxed refit of the selected support at :data:`~pyro_factvae.fit_config.REFIT_LR` of the step
sizes), each carrying its ``lam`` and warm-up: the trainer takes ``lam`` from the plan.
:class:`Run` is a plan being trained (settings, phases, position, early-stopping state),
written into checkpoints; :func:`seeding` gives a run its generators; :class:`Signals` turns
SIGINT / SIGTERM into a flag for its duration.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch

from ..data import GroupedData
from ..fit_config import REFIT_LR, FewRowsWarning, FitConfig
from ..module.guide import MAP
from ..registry import PHI_POSTERIORS
from .loop import VALIDATION_SCORE, Phase, Position, fresh_stopper

__all__ = [
    "stopping_split",
    "check_posterior",
    "FEW_ROWS",
    "MIN_ROWS_TO_STOP",
    "VALIDATE_STEPS",
    "Run",
    "Signals",
    "check_validation_rows",
    "fingerprint",
    "plan",
    "seeding",
    "warn_if_few_rows",
]

#: early stopping's default (``patience="auto"``) needs at least this many rows
MIN_ROWS_TO_STOP = 20
#: early stopping scores its validation rows about every this many steps (every epoch where
#: an epoch has this many minibatches, every few epochs on a table of one or two minibatches;
#: scoring every one-step epoch took a third of such a fit's time)
VALIDATE_STEPS = 8
#: below this many rows the defaults (a 16-dimensional z, widths for hundreds of rows, lam
#: chosen on held-out rows) are more than the data can support: fit warns
FEW_ROWS = 50


def warn_if_few_rows(rows: int, lam: Any) -> None:
    """A :class:`~pyro_factvae.fit_config.FewRowsWarning` below :data:`FEW_ROWS` rows."""
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
            stacklevel=3,
        )


def check_validation_rows(rows: int, fit: FitConfig) -> None:
    """A ``ValueError`` unless early stopping's split of ``rows`` (``fit.validation`` held
    out, ``fit.patience`` not ``None``) leaves rows both to train and to validate on."""
    if fit.patience is None:
        return
    kept = int(round((1 - fit.validation) * rows))
    if not 0 < kept < rows:
        left = "to train on" if kept == 0 else "to validate on"
        raise ValueError(
            f"early stopping (patience={fit.patience}) holds out validation={fit.validation:g} "
            f"of the {rows} rows this fit trains on, which leaves no row {left}: give "
            "patience=None (no early stopping), or a validation fraction that holds out at "
            "least one row and keeps one"
        )


def check_posterior(posterior: str, lam: Any) -> None:
    """A ``ValueError`` for a posterior over ``Phi`` that is not collapsed (the variational
    one) with ``lam`` 0, or with ``"auto"``, whose path starts at 0: at lam 0 the Gamma prior
    of ``gamma_sq`` is flat, and the posterior of each link improper."""
    if PHI_POSTERIORS.get(posterior).collapsed or (lam != "auto" and float(lam) > 0):
        return
    raise ValueError(
        f"phi_inference={posterior!r} needs lam a number > 0, got {lam!r}: at lam 0 (where "
        "lam='auto' starts its path) the Gamma prior of gamma_sq is flat, and the posterior "
        "of each link improper; give lam > 0 (e.g. the lam_ a default fit chose), or "
        "phi_inference='prox' (the default)"
    )


def stopping_split(data: GroupedData, fit: FitConfig) -> tuple[GroupedData, GroupedData]:
    """``(training rows, validation rows)`` for early stopping, the same split on every call
    (resume included); a ``ValueError`` naming the groups only the validation rows observe
    (nothing would train their links, which kept their random start)."""
    train, valid = data.split(1 - fit.validation, seed=fit.seed or 0)
    unseen = [n for g, n in enumerate(train.names) if not bool(train.observed[:, g].any())]
    if unseen:
        raise ValueError(
            f"groups {unseen} are observed only in the rows held out for early stopping "
            f"(validation={fit.validation:g} of the rows): nothing would train their links; "
            "give them more rows, or fit with patience=None (every row trained on)"
        )
    return train, valid


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


def seeding(seed: int | None, ranks: int = 1) -> tuple[torch.Generator, torch.Tensor | None]:
    """The run's data-order generator and the torch RNG state it trains under (``None``:
    the global RNG, for ``seed=None``, which ``ranks > 1`` processes cannot share)."""
    if seed is None and ranks > 1:
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


def fingerprint(data: GroupedData) -> str:
    """SHA-256 of the values and masks: a resumed run must see the same data."""
    h = hashlib.sha256()
    for v in data.values:
        h.update(v.contiguous().numpy().tobytes())
    h.update(data.observed.numpy().tobytes())
    if data.cells is not None:
        h.update(data.cells.numpy().tobytes())
    return h.hexdigest()


class Signals:
    """Turn SIGINT / SIGTERM into a flag for the duration of a run (main thread only).

    ``redeliver``: a signal that no :meth:`stopped` acted on is sent again on leaving (to the
    handlers before), so that one received after the last check is not lost."""

    def __init__(self, redeliver: bool = False) -> None:
        self.received: int | None = None
        self.redeliver, self._acted = redeliver, False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, kind: Any, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        if self.redeliver and self.received is not None and not self._acted and kind is None:
            signal.raise_signal(self.received)

    def stopped(self, state: Any) -> bool:
        """Whether a signal was received (then ``state.interrupted`` names it)."""
        if self.received is not None:
            state.interrupted = signal.Signals(self.received).name
            self._acted = True
        return self.received is not None


@dataclass
class Run:
    """The state of one ``fit`` call: its settings, phases and position."""

    fit: FitConfig
    phases: list[Phase]
    #: the data's :func:`fingerprint` (``None``: a run that writes no checkpoint)
    fingerprint: str | None
    phase: int = 0
    global_step: int = 0
    position: Position = field(default_factory=Position)
    saved_step: int = 0  #: global step of the last checkpoint written in this session
    #: early stopping in the current phase (best validation loss, its epoch, epochs since)
    stopper: dict[str, Any] = field(default_factory=fresh_stopper)

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
            # a best scored by another validation loss (an earlier version's) is not comparable
            stopper=(
                dict(meta["stopper"])
                if meta["stopper"].get("score") == VALIDATION_SCORE
                else fresh_stopper()
            ),
        )
