"""What a ``lam`` path has done so far, kept beside its checkpoint so that the default fit
(``lam="auto"``) resumes where it was stopped.

A path is a fixed sequence of *stages* (a fit at each ``lam``, its relaxed refit, then the
final fit of the chosen support); each stage is one run of the trainer, which checkpoints to
the path's checkpoint file and names its stage there (``lam_path["stage"]``, read back by
:attr:`~pyro_factvae.infer.checkpoint.Checkpoint.stage`). After every ``lam`` is scored,
:class:`PathStore` writes the scored ``lam`` s (score, per-pair scores, active links,
sparsity map and weights) atomically to ``checkpoint + ".path"``. A resumed path finishes
the stage its checkpoint was written in and goes on from the next one, with the scores of
the earlier ``lam`` s read back: on the CPU it ends bit for bit where the uninterrupted
path would.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import GroupedData
from ..io import read_payload, write_payload
from ..module.scoring import held_out_errors, held_out_score
from .state import FitState

__all__ = ["PathRecords", "PathStore", "at_stage", "stages"]


def stages(grid: list[float], relaxed: bool) -> list[str]:
    """The path's stages in order: ``fit:i`` at each ``lam`` of ``grid``, and ``refit:i``
    after it at each ``lam > 0`` when ``relaxed``."""
    out = []
    for i, lam in enumerate(grid):
        out.append(f"fit:{i}")
        if relaxed and lam > 0:
            out.append(f"refit:{i}")
    return out


@dataclass
class PathRecords:
    """One entry per scored ``lam``, in path order."""

    scores: list[float] = field(default_factory=list)
    pairs: list[np.ndarray] = field(default_factory=list)
    links: list[int] = field(default_factory=list)
    maps: list[Any] = field(default_factory=list)
    states: list[tuple[dict, dict]] = field(default_factory=list)
    #: minus the mean imputation's held-out MSE on the same pairs (once the walk took it)
    mean_score: float | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def score(
        self,
        state: FitState,
        valid: GroupedData,
        criterion: str,
        num_samples: int,
        seed: int,
        fraction: float = 0.0,
    ) -> None:
        """Score the fit at the current ``lam`` on ``valid`` and append it: ``criterion``
        ``"ll"``, the held-out log-likelihood; ``"mse"``, minus the held-out imputation error
        (``fraction``: the training data's share of missing cells, as many hidden too), each
        from ``num_samples`` draws of ``z`` per row."""
        model, guide = state.fitted()
        if criterion == "ll":
            per_pair = held_out_score(model, guide, valid, num_samples, seed)
        else:
            per_pair = -held_out_errors(model, guide, valid, fraction, num_samples, seed)
        self.pairs.append(per_pair)
        self.scores.append(float(np.mean(per_pair)))
        norms = state.sparsity()
        self.maps.append(norms)
        self.links.append(int((norms.values > 0).sum()))
        self.states.append(state.weights())


class PathStore:
    """The records of a path whose stages checkpoint to ``checkpoint``, in
    ``checkpoint + ".path"``, with the settings the path was started with and, once the
    walk is over, the training history it left."""

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        self.path = os.fspath(checkpoint) + ".path"

    def save(
        self,
        records: PathRecords,
        settings: dict[str, Any],
        history: tuple[list[float], list[float]] | None = None,
    ) -> None:
        maps = [{"values": m.values.tolist(), "index": list(m.index)} for m in records.maps]
        meta = {
            "settings": settings,
            "scores": records.scores,
            "links": records.links,
            "maps": maps,
            "columns": [list(m.columns) for m in records.maps],
            "history": None if history is None else [list(history[0]), list(history[1])],
        }
        tensors = {
            "pairs": [torch.as_tensor(p, dtype=torch.float64) for p in records.pairs],
            "states": [list(s) for s in records.states],
        }
        write_payload(meta, tensors, self.path)

    def load(self) -> tuple[PathRecords, dict[str, Any], tuple[list[float], list[float]] | None]:
        """``(records, settings, history)``; a ``ValueError`` when the file is missing."""
        import pandas as pd

        if not os.path.exists(self.path):
            raise ValueError(
                f"{self.path!r} is missing: it holds the scored lams of the lam='auto' path "
                "beside its checkpoint; keep the two files together (or fit again)"
            )
        meta, tensors = read_payload(self.path)
        maps = [
            pd.DataFrame(m["values"], index=pd.Index(m["index"], name="group"), columns=cols)
            for m, cols in zip(meta["maps"], meta["columns"])
        ]
        records = PathRecords(
            scores=[float(v) for v in meta["scores"]],
            pairs=[p.numpy() for p in tensors["pairs"]],
            links=[int(v) for v in meta["links"]],
            maps=maps,
            states=[(s[0], s[1]) for s in tensors["states"]],
        )
        history = None if meta["history"] is None else (meta["history"][0], meta["history"][1])
        return records, dict(meta["settings"]), history


def at_stage(state: FitState, stage: str) -> dict[str, Any]:
    """Name ``stage`` in ``state.lam_path`` (what a checkpoint written now records), keeping
    the id of the path's run, which ties its checkpoints to its ``.path`` file."""
    old = state.lam_path if isinstance(state.lam_path, dict) else {}
    kept = {k: old[k] for k in ("run", "mean_mse") if old.get(k) is not None}
    state.lam_path = {"stage": stage, **kept}
    return state.lam_path
