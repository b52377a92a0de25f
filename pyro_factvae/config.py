"""The hyperparameters of a :class:`~pyro_factvae.FactVAE`, validated once."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from . import likelihoods

__all__ = ["FactVAEConfig"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


@dataclass
class FactVAEConfig:
    """Architecture and prior of a factVAE; see :class:`~pyro_factvae.FactVAE` for meanings.

    Invalid values raise ``ValueError`` at construction. :meth:`to_dict` gives plain JSON data.
    """

    latent_dim: int = 8
    lam: float = 1.0
    likelihood: str | list[str] | dict[str, str] = "normal"
    encoder_hidden: list[int] = field(default_factory=list)
    encoder_width: int = 16
    decoder_width: int = 16
    decoder_hidden: list[int] = field(default_factory=list)
    keep_prob: float = 0.75
    theta_prior_weight: float = 1.0
    baseline: float = 100.0
    inference: str = "poe"
    phi_inference: str = "prox"
    image_shape: list[int] | None = None
    conv_width: int = 32
    group_weight: dict[str, float] | None = None

    def __post_init__(self) -> None:
        for name in ("latent_dim", "encoder_width", "decoder_width"):
            _positive_int(name, getattr(self, name))
        self.encoder_hidden = [_positive_int("hidden width", h) for h in self.encoder_hidden]
        self.decoder_hidden = [_positive_int("hidden width", h) for h in self.decoder_hidden]
        for name in ("lam", "theta_prior_weight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
            setattr(self, name, float(value))
        if not 0.0 < self.keep_prob <= 1.0:
            raise ValueError(f"keep_prob must be in (0, 1], got {self.keep_prob}")
        if not (self.baseline >= 0 and math.isfinite(self.baseline)):
            raise ValueError(f"baseline must be a finite number >= 0, got {self.baseline}")
        _positive_int("conv_width", self.conv_width)
        if self.phi_inference not in ("prox", "variational"):
            raise ValueError(
                f"unknown phi_inference {self.phi_inference!r}; choose 'prox' (MAP with exact "
                "zeros) or 'variational' (a posterior over every link)"
            )
        if self.image_shape is not None:
            self.image_shape = [_positive_int("image_shape entry", v) for v in self.image_shape]
            self.conv_spec()  # validates the shape
        if self.inference not in ("poe", "mixture"):
            raise ValueError(
                f"unknown inference {self.inference!r}; choose 'poe' (factVAE) or "
                "'mixture' (the JMVAE+ baseline)"
            )
        if self.group_weight is not None:
            if not isinstance(self.group_weight, Mapping):
                raise ValueError("group_weight must be a {group: weight} mapping")
            self.group_weight = {str(k): v for k, v in self.group_weight.items()}
            for g, w in self.group_weight.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
                    raise ValueError(f"group_weight of {g!r} must be a number > 0, got {w!r}")
        spec = self.likelihood
        if isinstance(spec, str):
            likelihoods.get(spec)
        elif isinstance(spec, Mapping):
            self.likelihood = {str(k): v for k, v in spec.items()}
            for name in self.likelihood.values():
                likelihoods.get(name)
        else:
            self.likelihood = list(spec)
            for name in self.likelihood:
                likelihoods.get(name)

    def likelihoods_for(self, names: Sequence[str]) -> list[str]:
        """The likelihood name of each group ``names`` (unlisted groups: ``"normal"``)."""
        spec = self.likelihood
        if isinstance(spec, str):
            return [spec] * len(names)
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(names))
            if unknown:
                raise ValueError(f"likelihood given for unknown groups {unknown}; groups: {names}")
            return [spec.get(n, "normal") for n in names]
        if len(spec) != len(names):
            raise ValueError(f"{len(spec)} likelihoods given for {len(names)} groups")
        return list(spec)

    def weights_for(self, names: Sequence[str]) -> list[float] | None:
        """Likelihood weight of each group ``names`` (``None``: all 1)."""
        if not self.group_weight:
            return None
        unknown = sorted(set(self.group_weight) - set(names))
        if unknown:
            raise ValueError(f"group_weight given for unknown groups {unknown}; groups: {names}")
        return [float(self.group_weight.get(n, 1.0)) for n in names]

    def conv_spec(self):
        """The :class:`~pyro_factvae.nets.ConvSpec` for image groups, or ``None`` (MLPs)."""
        from .nets import ConvSpec

        if self.image_shape is None:
            return None
        if len(self.image_shape) != 3:
            raise ValueError(
                f"image_shape must be (channels, height, width), got {self.image_shape}"
            )
        return ConvSpec(tuple(self.image_shape), self.conv_width)

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON-ready) dict of the fields."""
        return asdict(self)
