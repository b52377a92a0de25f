"""``fit(data, resume=PATH)``: continue the run a checkpoint holds, a fit at a number ``lam``
(:meth:`~pyro_factvae.infer.run.Trainer.resume`) or a stage of the ``lam="auto"`` path
(:func:`~pyro_factvae.infer.path.fit_auto`), after checking that the call agrees with the
file."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..io import check_writable
from .checkpoint import Checkpoint
from .path import fit_auto
from .run import Trainer
from .state import FitState

__all__ = ["resume_fit"]


def resume_fit(
    state: FitState,
    data: Any,
    path: str | os.PathLike,
    given: dict[str, Any],
    checkpoint: str | os.PathLike | None,
    progress: bool,
    callbacks: Sequence[Callable[..., Any]],
    groups: Mapping[str, Sequence[Any]] | None = None,
) -> None:
    """Resume the run saved at ``path`` into ``state`` (new) on ``data`` (the same rows),
    checkpointing to ``checkpoint`` (default: ``path``). ``given``: the fit settings of the
    call; ``groups``: a DataFrame's column mapping, which must agree with the file's."""
    ckpt = Checkpoint.read(path)
    saved = ckpt.meta.get("columns")
    if groups is not None and saved is not None and _as_text(groups) != _as_text(saved):
        raise ValueError(
            f"groups= differ from the column mapping saved in {os.fspath(path)!r} "
            f"({saved}): leave groups out to resume with the file's"
        )
    if ckpt.stage is not None and state.config.lam != "auto":
        raise ValueError(
            f"{os.fspath(path)!r} was written by a lam='auto' fit: resume it with lam left "
            "at 'auto' (a new FactVAE(); factvae fit: leave --lam out)"
        )
    # a checkpoint of the lam="auto" path goes on with the path (which resumes the stage with
    # that stage's lam, as a plain resume)
    auto = ckpt.stage is not None
    ckpt.check_resumable(state, given, auto)
    target = checkpoint if checkpoint is not None else path
    if auto:
        target = check_writable(target, "checkpoint")
        state.config = ckpt.config
        if saved:
            state.set_columns(saved)
        elif groups is not None:  # a frame for a run fitted on arrays
            state.set_columns(groups)
        fit_auto(state, state.prepare(data), given, progress, target, ckpt, callbacks)
        if groups is not None and state.columns is None:  # the stage restored had none
            state.set_columns(groups)
    else:
        ckpt.restore_into(state)
        if groups is not None and saved is None:  # a frame for a run fitted on arrays
            state.set_columns(groups)
        Trainer(state).resume(state.prepare(data), ckpt, target, progress, callbacks, restored=True)


def _as_text(spec: Mapping[str, Sequence[Any]]) -> dict[str, list[str]]:
    """A column mapping with its names and labels as text (a CSV's header is text)."""
    return {str(g): [str(c) for c in cols] for g, cols in spec.items()}
