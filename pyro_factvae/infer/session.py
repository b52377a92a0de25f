"""The two ways into training: :func:`fit` (a first fit or a continued one) and
:func:`resume` (``fit(data, resume=path)``), each on a
:class:`~pyro_factvae.infer.state.FitState`.

:func:`fit` adapts the data, checks it, and runs the ``lam="auto"`` path
(:func:`~pyro_factvae.infer.path.fit_auto`) or one fit at the given ``lam``
(:func:`~pyro_factvae.infer.fitting.train`). In :func:`resume`, a checkpoint written during
the ``lam="auto"`` path (it names its stage) continues the path; any other continues its
run (:func:`~pyro_factvae.infer.fitting.resume_from`). The same script run again with
``resume=`` agrees with the file: only a setting that was given (not left at its default)
and differs from the file's resolved one is a conflict, and each is named.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..config import FitConfig, ModelConfig
from ..io import check_writable
from .checkpoint import Checkpoint
from .fitting import resume_from, train, warn_if_few_rows
from .path import fit_auto
from .state import FitState

__all__ = ["differs_from", "fit", "resume"]


def fit(
    state: FitState,
    data: Any,
    given: Mapping[str, Any],
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    callbacks: Sequence[Callable[..., Any]] = (),
    groups: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Fit ``state`` on ``data`` (anything :meth:`~pyro_factvae.infer.state.FitState.prepare`
    takes) with the fit settings ``given`` (:class:`~pyro_factvae.config.FitConfig` fields);
    ``groups``: a DataFrame's column-to-group mapping."""
    auto = state.config.lam == "auto"
    if auto and state.model is not None:
        raise ValueError(
            "lam='auto' chooses lam on a first fit; give lam a number (e.g. the "
            "chosen vae.lam_) to continue training"
        )
    if groups is not None:
        state.set_columns(groups)
    target = None if checkpoint is None else check_writable(checkpoint, "checkpoint")
    data = state.prepare(data)
    data.require_trainable()
    if state.model is None:
        warn_if_few_rows(len(data), state.config.lam)
    if auto:
        state.layout_of(data)  # checks every row, before the path splits them
        fit_auto(state, data, given, progress, target, callbacks=callbacks)
    else:
        train(state, data, given, progress, target, callbacks)


def differs_from(config: ModelConfig, saved: ModelConfig, skip: Sequence[str] = ()) -> list[str]:
    """``k=mine (file: saved)`` for each setting of ``config`` given (not left at its
    default) that differs from the file's resolved ``saved`` one."""
    theirs = saved.user_dict()
    mine, default = config.user_dict(), ModelConfig().user_dict()
    return [
        f"{k}={mine[k]!r} (file: {theirs[k]!r})"
        for k in sorted(theirs)
        if k not in skip and mine[k] != default[k] and mine[k] != theirs[k]
    ]


def resume(
    state: FitState,
    data: Any,
    path: str | os.PathLike,
    given: Mapping[str, Any],
    checkpoint: str | os.PathLike | None,
    progress: bool,
    callbacks: Sequence[Callable[..., Any]] = (),
) -> None:
    """Continue, in ``state`` (new), the fit saved in the checkpoint at ``path`` on ``data``
    (anything :meth:`~pyro_factvae.infer.state.FitState.prepare` takes), checkpointing to
    ``checkpoint`` (default: ``path``)."""
    ckpt = Checkpoint.read(path)
    # the path resumes its stage itself, with that stage's lam: a plain resume
    auto = ckpt.stage is not None and state.config.lam == "auto"
    if not auto:
        FitConfig.check_resumed(dict(given), ckpt.fit_settings)
    diff = differs_from(state.config, ckpt.config, skip=("lam",) if auto else ())
    if state.model is not None or diff:
        what = "continues the lam='auto' fit" if auto else "restores the model"
        raise ValueError(
            f"resume {what} saved in {ckpt.path!r}; call it on a new FactVAE() with the "
            f"file's settings or none (these differ from the file: "
            f"{', '.join(diff) or 'fitted'})"
        )
    target = checkpoint if checkpoint is not None else path
    if auto:
        target = check_writable(target, "checkpoint")
        state.config = ckpt.config
        if ckpt.meta.get("columns"):
            state.set_columns(ckpt.meta["columns"])
        fit_auto(state, state.prepare(data), dict(given), progress, target, ckpt, callbacks)
        return
    ckpt.restore_into(state)
    resume_from(state, state.prepare(data), ckpt, target, progress, callbacks, restored=True)
