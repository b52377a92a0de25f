"""The one file format of models and checkpoints, written and read here.

A file (``pyro_factvae.io.write_payload``: JSON metadata plus tensors, read back with
``torch.load(weights_only=True)``) holds a :class:`~pyro_factvae.infer.state.FitState`: the
config, the layout, the posterior over ``Phi`` in use, the histories, the user's metadata,
the column mapping, the ``lam`` path, and the model and guide weights. A checkpoint adds the
run (``Run.meta()``: settings, phases, position, early-stopping
state) and the trainer's tensors (optimizers, schedules, data order, RNG states):
:class:`Checkpoint` reads all of it in one call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ModelConfig
from ..io import read_payload, write_payload
from ..layout import Layout
from .state import FitState

__all__ = ["Checkpoint", "check_checkpoint", "restore", "write"]


def write(
    state: FitState, path: str, meta: dict[str, Any] | None = None, tensors: dict | None = None
) -> None:
    """Write ``state`` to ``path`` atomically, with a run's ``meta`` and ``tensors`` (a
    checkpoint) or without (a model file)."""
    model, guide = state.fitted()
    head = {
        "config": state.config.to_dict(),
        "layout": {
            "names": list(model.layout.names),
            "dims": list(model.layout.dims),
            "likelihoods": list(model.layout.likelihoods),
        },
        "phi_mode": guide.phi_mode,
        "history": state.history,
        "prior_history": state.prior_history,
        "extra": state.metadata,
        "columns": state.columns,
        "lam_path": state.lam_path,
    }
    cpu = lambda sd: {k: v.cpu() for k, v in sd.items()}  # noqa: E731
    weights = {"model": cpu(model.state_dict()), "guide": cpu(guide.state_dict())}
    write_payload({**head, **(meta or {})}, {**weights, **(tensors or {})}, path)


def restore(state: FitState, meta: dict, tensors: dict, path: str | os.PathLike) -> None:
    """Rebuild ``state`` from a file's ``meta`` and ``tensors`` (read from ``path``); a
    ``ValueError`` that names the file when they do not fit together."""
    name = os.fspath(path)
    try:
        state.config = ModelConfig(**meta["config"])
        lay = meta["layout"]
        layout = Layout(lay["names"], lay["dims"], lay["likelihoods"])
        with torch.random.fork_rng(devices=[]):  # weights come from the file
            state.build(layout, meta["config"]["num_data"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name!r} has an invalid config: {exc}") from None
    model, guide = state.fitted()
    try:
        model_state = dict(tensors["model"])
        for key, value in model.state_dict().items():
            if key.endswith(".varies") and key not in model_state:
                model_state[key] = torch.ones_like(value)  # a file from before: all vary
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
    state.lam_path = meta.get("lam_path")


def check_checkpoint(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """A ``ValueError`` unless ``meta`` (of the file at ``path``) holds a training run."""
    if "run" not in meta:
        raise ValueError(
            f"{os.fspath(path)!r} is a saved model, not a checkpoint; checkpoints come from "
            "fit(..., checkpoint=PATH)"
        )


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

    @property
    def fit_settings(self) -> dict[str, Any]:
        """The training settings of its run (:class:`~pyro_factvae.config.FitConfig` fields)."""
        return self.meta["run"]["fit"]

    @property
    def config(self) -> ModelConfig:
        """The model settings it was written with."""
        return ModelConfig(**self.meta["config"])

    def restore_into(self, state: FitState) -> None:
        """Rebuild ``state`` from it (see :func:`restore`)."""
        restore(state, self.meta, self.tensors, self.path)
