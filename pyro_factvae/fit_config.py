"""How one ``fit`` call trains: :class:`FitConfig`, validated like the model's settings
(:mod:`pyro_factvae.config`), with the defaults that depend on the data and the run filled in
by :meth:`FitConfig.resolved`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from .checks import also, auto_or, non_negative_int, number, positive_int, seed_int

__all__ = [
    "DEFAULT_STEPS",
    "MAX_DEFAULT_EPOCHS",
    "PATIENCE_STEPS",
    "REFIT_LR",
    "FewRowsWarning",
    "FitConfig",
]


def _nonneg_or_none(name: str) -> Callable[[Any], float | None]:
    return lambda v: None if v is None else number(name, v)


_FIT_CHECKS: dict[str, Callable[[Any], Any]] = {
    "epochs": lambda v: None if v is None else positive_int("epochs", v),
    "batch_size": lambda v: positive_int("batch_size", v),
    "lr": lambda v: number("lr", v, strict=True),
    "phi_lr": lambda v: number("phi_lr", v, strict=True),
    "warmup_epochs": _nonneg_or_none("warmup_epochs"),
    "map_epochs": lambda v: None if v is None else non_negative_int("map_epochs", v),
    "seed": lambda v: None if v is None else seed_int(v),
    "checkpoint_every": lambda v: None if v is None else positive_int("checkpoint_every", v),
    "patience": lambda v: None if v is None else _patience(v),
    "relax_epochs": lambda v: None if v is None else non_negative_int("relax_epochs", v),
    "validation": lambda v: _fraction("validation", v),
}


def _patience(value: Any) -> int | str:
    try:
        return auto_or(lambda u: positive_int("patience", u))(value)
    except ValueError as exc:
        raise ValueError(also(str(exc), "None (no early stopping)")) from None


def _fraction(name: str, value: Any) -> float:
    value = number(name, value, strict=True)
    if value >= 1:
        raise ValueError(f"{name} must be a fraction in (0, 1), got {value}")
    return value


#: default training length: about this many steps (``epochs = max(20, ceil(steps / batches))``)
DEFAULT_STEPS = 3000
#: the most epochs of a default schedule, so that a table of a few hundred rows or fewer
#: (one to three minibatches) is not passed over thousands of times
MAX_DEFAULT_EPOCHS = 1000
#: step sizes of a refit (relaxed phase, warm start on a lam path) relative to a first fit's
REFIT_LR = 0.1
#: default early-stopping patience: about this many steps without a better validation score
PATIENCE_STEPS = 300


class FewRowsWarning(UserWarning):
    """The data have fewer rows than the defaults are sized for."""


@dataclass
class FitConfig:
    """How one ``fit`` call trains; see :meth:`~pyro_factvae.FactVAE.fit` for meanings.

    ``epochs``, ``warmup_epochs``, ``map_epochs`` and ``relax_epochs`` may be ``None`` and
    ``patience`` ``"auto"`` (defaults that depend on the data and the run: :meth:`resolved`
    fills them in).
    """

    epochs: int | None = None
    batch_size: int = 128
    lr: float = 1e-2
    phi_lr: float = 1e-2
    phi_optim: str = "adam"
    warmup_epochs: float | None = None
    lr_decay: float = 0.05
    map_epochs: int | None = None
    seed: int | None = 0
    checkpoint_every: int | None = None
    patience: int | str | None = "auto"
    validation: float = 0.1
    relax_epochs: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        check = _FIT_CHECKS.get(name)
        super().__setattr__(name, value if check is None else check(value))

    def __post_init__(self) -> None:
        if self.phi_optim not in ("adam", "sgd"):
            raise ValueError(f"phi_optim must be 'adam' or 'sgd', got {self.phi_optim!r}")
        decay = number("lr_decay", self.lr_decay, strict=True)
        if decay > 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {decay}")

    def resolved(
        self, continuing: bool, collapsed_only: bool, num_rows: int, sparse: bool = True
    ) -> FitConfig:
        """A copy with the data- and run-dependent defaults filled in (``num_rows``: the rows
        trained on; ``sparse``: ``lam > 0``).

        ``epochs``: about :data:`DEFAULT_STEPS` steps, at least 20 epochs and at most
        :data:`MAX_DEFAULT_EPOCHS`.
        ``patience``: ``"auto"`` is about :data:`PATIENCE_STEPS` steps, at least 10 epochs.
        ``relax_epochs``: with the prox (``collapsed_only``) and ``lam > 0``, the last quarter
        of ``epochs`` refits the selected support without shrinkage; else 0 (``epochs``: the
        whole call is a refit of the current support).
        ``warmup_epochs``: 40% of the penalised epochs on a first fit, none when continuing.
        ``map_epochs``: for a posterior over ``Phi`` that is not the prox's point mass
        (``collapsed_only=False``), half the epochs on a first fit; else 0.
        """
        batches = math.ceil(num_rows / min(self.batch_size, num_rows))
        epochs = self.epochs
        if epochs is None:
            epochs = min(MAX_DEFAULT_EPOCHS, max(20, math.ceil(DEFAULT_STEPS / batches)))
        patience = self.patience
        if patience == "auto":
            patience = max(10, math.ceil(PATIENCE_STEPS / batches))
        relax = self.relax_epochs
        if relax is None:
            relax = epochs // 4 if collapsed_only and sparse else 0
        elif relax and not collapsed_only:
            raise ValueError("relax_epochs applies to phi_inference='prox' only")
        if not 0 <= relax <= epochs:
            raise ValueError(f"relax_epochs must be in [0, epochs={epochs}], got {relax}")
        warmup = self.warmup_epochs
        if warmup is None:
            warmup = 0.0 if continuing else 0.4 * (epochs - relax)
        map_epochs = self.map_epochs
        if map_epochs is None:
            map_epochs = 0 if collapsed_only or continuing else epochs // 2
        elif map_epochs and collapsed_only:
            raise ValueError("map_epochs applies to phi_inference='variational' only")
        if not 0 <= map_epochs < epochs:
            raise ValueError(f"map_epochs must be in [0, epochs={epochs}), got {map_epochs}")
        return FitConfig(
            **{
                **self.to_dict(),
                "epochs": epochs,
                "patience": patience,
                "relax_epochs": relax,
                "warmup_epochs": warmup,
                "map_epochs": map_epochs,
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def check_resumed(cls, given: dict[str, Any], saved: dict[str, Any]) -> None:
        """A ``ValueError`` naming each setting in ``given`` that was set (not left at its
        default) and differs from the checkpoint's ``saved`` one: the same script run again
        with ``resume=`` agrees with the file."""
        defaults = cls().to_dict()
        bad = [k for k, v in given.items() if v != defaults[k] and v != saved.get(k)]
        if bad:
            pairs = ", ".join(f"{k}={given[k]!r} (file: {saved.get(k)!r})" for k in bad)
            raise ValueError(
                "resume takes the training settings from the checkpoint; these differ from "
                f"it: {pairs}"
            )
