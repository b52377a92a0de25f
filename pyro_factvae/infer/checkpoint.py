"""The one file format of models and checkpoints, written and read here.

A file (``pyro_factvae.io.write_payload``: JSON metadata plus tensors, read back with
``torch.load(weights_only=True)``) holds a :class:`~pyro_factvae.infer.state.FitState`: the
config, the layout, the posterior over ``Phi`` in use, the histories, the user's metadata,
the column mapping, the ``lam`` path, the model and guide weights, and the optimizers' state
(so that a loaded model goes on training as it would have in the process that saved it). A
checkpoint adds the run (``Run.meta()``: settings, phases, position, early-stopping state)
and the trainer's tensors (optimizers, schedules, data order, RNG states):
:class:`Checkpoint` reads all of it in one call.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ModelConfig
from ..fit_config import FitConfig
from ..io import read_payload, write_payload
from ..layout import Layout
from ..registry import LIKELIHOODS
from .state import FitState

__all__ = ["Checkpoint", "check_checkpoint", "differs_from", "restore", "write"]


def write(
    state: FitState,
    path: str,
    meta: dict[str, Any] | None = None,
    tensors: dict | None = None,
    optimizers: bool = True,
) -> None:
    """Write ``state`` to ``path`` atomically, with a run's ``meta`` and ``tensors`` (a
    checkpoint) or without (a model file; with the optimizers' moments unless
    ``optimizers=False``)."""
    model, guide = state.fitted()
    head = {
        "config": state.config.to_dict(),
        "layout": {
            "names": list(model.layout.names),
            "dims": list(model.layout.dims),
            "likelihoods": list(model.layout.likelihoods),
            "pad": [list(groups) for groups in model.layout.partition],  # its own blocks
        },
        "phi_mode": guide.phi_mode,
        "history": state.history,
        "prior_history": state.prior_history,
        "extra": state.metadata,
        "columns": state.columns,
        "variables": state.variables,
        "lam_path": state.lam_path,
        "spread": state.spread,
    }
    cpu = lambda sd: {k: v.cpu() for k, v in sd.items()}  # noqa: E731
    weights = {"model": cpu(model.state_dict()), "guide": cpu(guide.state_dict())}
    if tensors is None and optimizers:  # a model file: the moments too, to go on training
        saved = state.saved_optimizers
        if state.optimizers is not None:
            saved = (state.optimizers.phi_optim, state.optimizers.state_dict())
        if saved is not None:
            head["optimizers"] = saved[0]
            tensors = {"optim": saved[1]}
    write_payload({**head, **(meta or {})}, {**weights, **(tensors or {})}, path)
    if meta is not None:  # a checkpoint: what it holds is this state's
        state.written = os.path.realpath(path)


def restore(state: FitState, meta: dict, tensors: dict, path: str | os.PathLike) -> None:
    """Rebuild ``state`` from a file's ``meta`` and ``tensors`` (read from ``path``); a
    ``ValueError`` that names the file when they do not fit together."""
    name = os.fspath(path)
    refuse_path_file(meta, path)
    lay = meta.get("layout")
    used = lay.get("likelihoods", []) if isinstance(lay, dict) else []
    unknown = sorted({str(lik) for lik in used} - set(LIKELIHOODS.names))
    if unknown:  # a family of the user's own, not registered in this session
        raise ValueError(
            f"{name!r} uses the likelihood {unknown[0]!r}, which is not registered in this "
            f"session: run the code that registers it (@LIKELIHOODS.register({unknown[0]!r}) "
            "on its class) before loading the file"
        )
    try:
        state.config = ModelConfig(**meta["config"])
        lay = meta["layout"]
        # "pad": the file's blocks, or a padding limit; without it, written before padding
        layout = Layout(lay["names"], lay["dims"], lay["likelihoods"], lay.get("pad", False))
        with torch.random.fork_rng(devices=[]):  # weights come from the file
            state.build(layout, meta["config"]["num_data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name!r} has an invalid config: {exc}") from None
    model, guide = state.fitted()
    try:
        model_state = dict(tensors["model"])
        # a file from before: every feature varies (and none is held)
        fill = {
            ".varies": torch.ones_like,
            ".held": torch.zeros_like,
            ".held_value": torch.zeros_like,
            ".low": lambda v: torch.full_like(v, math.inf),  # no training range known
            ".high": lambda v: torch.full_like(v, -math.inf),
        }
        for key, value in model.state_dict().items():
            for end, make in fill.items():
                if key.endswith(end) and key not in model_state:
                    model_state[key] = make(value)
        model.load_state_dict(model_state)
        guide_state = dict(tensors["guide"])
        for key, value in guide.state_dict().items():
            if key.endswith("missing_weight") and key not in guide_state:
                guide_state[key] = torch.zeros_like(value)  # a file from before cell masks
        guide.load_state_dict(guide_state)
        guide.use_phi_posterior(meta["phi_mode"], start=False)
        state.to_device()
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ValueError(
            f"weights in {name!r} do not match its config (written by version "
            f"{meta.get('version')}): {str(exc).splitlines()[0]}"
        ) from None
    state.history = list(meta.get("history", []))
    state.prior_history = list(meta.get("prior_history", []))
    state.metadata = dict(meta.get("extra") or {})
    state.columns = meta.get("columns")
    state.variables = meta.get("variables")
    state.lam_path = meta.get("lam_path")
    state.spread = float(meta.get("spread", 1.0))  # a file from before: the model's draws
    if "optim" in tensors:  # a model file's moments, or a checkpoint's run's
        kind = meta["run"]["fit"].get("phi_optim", "adam") if "run" in meta else meta["optimizers"]
        state.saved_optimizers = (kind, tensors["optim"])


def refuse_path_file(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """A ``ValueError`` for the side file of a ``lam="auto"`` checkpoint (its scored lams),
    given where a checkpoint or a model file goes."""
    if "config" not in meta and "scores" in meta:
        raise ValueError(
            f"{os.fspath(path)!r} holds the scored lams of a lam='auto' fit, kept beside its "
            "checkpoint: give the checkpoint (the same name without '.path')"
        )


def check_checkpoint(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """A ``ValueError`` unless ``meta`` (of the file at ``path``) holds a training run."""
    refuse_path_file(meta, path)
    if "run" not in meta:
        raise ValueError(
            f"{os.fspath(path)!r} is a saved model, not a checkpoint; checkpoints come from "
            "fit(..., checkpoint=PATH) (factvae fit --checkpoint PATH); a saved model goes on "
            "training in Python with FactVAE.load(path).fit(data)"
        )


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


@dataclass
class Checkpoint:
    """A checkpoint file, read in one call (:meth:`read`)."""

    path: str
    meta: dict[str, Any]
    tensors: dict[str, Any]

    @classmethod
    def read(cls, path: str | os.PathLike) -> Checkpoint:
        """The checkpoint at ``path``; a ``ValueError`` for a model file or a bad file."""
        meta, tensors = read_payload(path)
        check_checkpoint(meta, path)
        return cls(os.fspath(path), meta, tensors)

    @property
    def stage(self) -> str | None:
        """The ``lam`` path stage it was written in (``None``: not a path's)."""
        path = self.meta.get("lam_path")
        return path.get("stage") if isinstance(path, dict) else None

    def run_state(self) -> tuple[dict[str, Any], torch.Tensor, torch.Generator]:
        """The run's training state for :meth:`~pyro_factvae.infer.run.Trainer.execute`
        (``saved``: optimizers, schedulers, best weights, CUDA RNG), its torch RNG state and
        its generator."""
        t = self.tensors
        saved = {"optim": t["optim"], "sched": t["sched"], "best": t.get("best")}
        saved["cuda_rng"] = t["rng"].get("cuda")
        generator = torch.Generator()
        generator.set_state(t["rng"]["generator"])
        return saved, t["rng"]["torch"], generator

    @property
    def fit_settings(self) -> dict[str, Any]:
        """The training settings of its run (:class:`~pyro_factvae.fit_config.FitConfig` fields)."""
        return self.meta["run"]["fit"]

    @property
    def config(self) -> ModelConfig:
        """The model settings it was written with."""
        return ModelConfig(**self.meta["config"])

    def check_resumable(self, state: FitState, given: dict[str, Any], path_stage: bool) -> None:
        """A ``ValueError`` unless ``state`` (new) with the fit settings ``given`` can resume
        it. The same script run again with ``resume=`` agrees with the file: only a setting
        that was given (not left at its default) and differs from the file's resolved one
        conflicts, and each is named. ``path_stage``: it continues the ``lam="auto"`` path
        (whose own settings are checked by the path; ``lam`` is the stage's)."""
        if not path_stage:
            FitConfig.check_resumed(dict(given), self.fit_settings)
        diff = differs_from(state.config, self.config, skip=("lam",) if path_stage else ())
        if state.model is not None or diff:
            what = "continues the lam='auto' fit" if path_stage else "restores the model"
            raise ValueError(
                f"resume {what} saved in {self.path!r} with the file's settings: give none "
                "that differ (in Python, on a new FactVAE(); these differ from the file: "
                f"{', '.join(diff) or 'fitted'})"
            )

    def restore_into(self, state: FitState) -> None:
        """Rebuild ``state`` from it (see :func:`restore`): the state it holds is this
        file's, as if ``state`` had written it."""
        restore(state, self.meta, self.tensors, self.path)
        state.written = os.path.realpath(self.path)
