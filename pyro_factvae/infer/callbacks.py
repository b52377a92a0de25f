"""Watching a fit: callbacks called after every epoch, and two that write logs.

``FactVAE.fit(data, callbacks=[...])`` calls each callback after every training epoch with
an :class:`Epoch` (the epoch's loss terms, ``lam``, the active links, and which fit of a
``lam="auto"`` path it belongs to). A callback that returns ``True`` stops the fit there, as
a signal would: a checkpoint (when one is written) holds the run, and
``fit(..., resume=PATH)`` continues it; ``vae.interrupted_`` is ``"callback"``. A callback
that raises stops the fit in the same way (the checkpoint written) before its exception
propagates, with a note saying where the run stands. :class:`CSVLogger` writes one row per
epoch; :class:`TensorBoardLogger` writes TensorBoard scalars (``torch.utils.tensorboard``:
``pip install tensorboard``). Under ``torchrun`` both write on rank 0 alone, as the
checkpoints are.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from .distributed import is_writer

__all__ = ["CSVLogger", "Epoch", "TensorBoardLogger"]


@dataclass(frozen=True)
class Epoch:
    """What a callback sees after an epoch."""

    #: epochs completed in this model's history (1 after the first; the fresh dense fit of a
    #: ``lam="auto"`` path that chose 0 counts its own, from 1)
    epoch: int
    #: the phase trained (``prox``, ``variational`` or ``relaxed refit``; a variational fit
    #: starts with a ``prox`` phase, its MAP warm start)
    phase: str
    #: the negative ELBO of the data per row over the epoch (likelihood and KL of ``z``)
    loss: float
    #: the prior terms per row, apart (theta prior; KL of ``Phi`` in a variational phase)
    prior: float
    #: the group-lasso weight in effect at the epoch's last step (it ramps up in a warm-up;
    #: 0 in a relaxed refit, which shrinks nothing)
    lam: float
    #: the (group, latent) links the prox keeps
    active_links: int
    #: the ``lam`` of the fit this epoch belongs to (whatever its warm-up or relaxed refit
    #: applies at the epoch): the model's, or on a ``lam="auto"`` path the one being fitted
    target_lam: float
    #: the fit this epoch belongs to, ``"fit"`` (a fit at a number ``lam``), or of
    #: ``lam="auto"``, ``"path"`` (the walk over the grid, on 80% of the rows) and ``"final"``
    #: (the chosen ``lam`` on every row)
    stage: str = "fit"


def staged(callbacks: Sequence[Callable[[Epoch], Any]], stage: str) -> list[Callable]:
    """``callbacks`` that see every :class:`Epoch` with ``stage=stage``."""
    return [lambda event, c=c: c(replace(event, stage=stage)) for c in callbacks]


def after_raise(epoch: int, checkpoint: str | None) -> str:
    """Where a run that a callback's exception stopped stands (a note on the exception)."""
    where = f"a callback raised at epoch {epoch}: the fit stopped there"
    if checkpoint is None:
        return f"{where} (interrupted_ == 'callback'); the model holds its weights then"
    return f"{where}, saved in {checkpoint!r}: fit(data, resume={checkpoint!r}) continues it"


class CSVLogger:
    """Append one row per epoch to the CSV file ``path`` (a header first, when it is new)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = os.fspath(path)

    def __call__(self, event: Epoch) -> None:
        if not is_writer():  # another rank of a distributed run: rank 0 writes the log
            return
        row = asdict(event)
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)


class TensorBoardLogger:
    """TensorBoard scalars ``loss``, ``prior``, ``lam``, ``target_lam`` and ``active_links``
    per epoch, in ``log_dir`` (``tensorboard --logdir LOG_DIR`` shows them)."""

    def __init__(self, log_dir: str | os.PathLike) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(
                f"TensorBoardLogger needs the tensorboard package ({exc}); pip install "
                "tensorboard, or log to CSV with CSVLogger"
            ) from None
        # on rank 0 alone: a writer makes its events file as it starts
        self.writer: Any = SummaryWriter(os.fspath(log_dir)) if is_writer() else None

    def __call__(self, event: Epoch) -> None:
        if self.writer is None:
            return
        for key in ("loss", "prior", "lam", "target_lam", "active_links"):
            self.writer.add_scalar(key, getattr(event, key), event.epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
