"""Settings, validated and held in one place.

:class:`ModelConfig` is what a model *is* (architecture, prior, ``lam``, and ``num_data`` once
fitted). The user's spec may hold ``"auto"``; it is resolved once against the data's groups
(:meth:`ModelConfig.resolved`) into a frozen config that the
:class:`~pyro_factvae.module.model.Model` and its guide read and never write (a change of
``lam`` is a new config, :meth:`ModelConfig.replace`; the trainer takes ``lam`` from its plan).
Every value is validated like the constructor's arguments and turns into plain JSON data
with :meth:`ModelConfig.to_dict`. How one ``fit`` call trains is
:class:`~pyro_factvae.fit_config.FitConfig`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import get_close_matches
from typing import Any

from .checks import auto_or, number, positive_int
from .registry import EXPERTS, LIKELIHOODS, PHI_POSTERIORS

__all__ = ["ConvSpec", "ModelConfig"]


def _widths(name: str) -> Callable[[Any], list[int]]:
    def check(value: Any) -> list[int]:
        if value is None or isinstance(value, (str, int)):
            raise ValueError(f"{name} must be a list of widths (or [] for none), got {value!r}")
        return [positive_int(f"{name} entry", h) for h in value]

    return check


def _likelihood(spec: Any) -> str | list[str] | dict[str, str]:
    if isinstance(spec, str):
        LIKELIHOODS.get(spec)
        return spec
    if isinstance(spec, Mapping):
        out = {str(k): v for k, v in spec.items()}
        for name in out.values():
            LIKELIHOODS.get(name)
        return out
    out = list(spec)
    for name in out:
        LIKELIHOODS.get(name)
    return out


def _group_weight(value: Any) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError("group_weight must be a {group: weight} mapping")
    return {str(g): number(f"group_weight of {g!r}", w, strict=True) for g, w in value.items()}


def _library_size(value: Any) -> str | dict[str, str] | None:
    if value is None or (isinstance(value, str) and value == "data"):
        return value
    if not isinstance(value, Mapping):
        raise ValueError(
            f"library_size must be None, 'data' or a {{count group: 'data' or the name of a "
            f"group of size factors}} mapping, got {value!r}"
        )
    return {str(k): str(v) for k, v in value.items()}


def _image_shape(value: Any) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, (str, int)) or len(value) != 3:
        raise ValueError(f"image_shape must be (channels, height, width), got {value!r}")
    return [positive_int("image_shape entry", v) for v in value]


def _choice(registry) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        registry.get(value)
        return value

    return check


def _probability(name: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        value = number(name, value, strict=True)
        if value > 1:
            raise ValueError(f"{name} must be in (0, 1], got {value}")
        return value

    return check


def _num_data(value: Any) -> int | None:
    return None if value is None else positive_int("num_data", value)


_MODEL_CHECKS: dict[str, Callable[[Any], Any]] = {
    "latent_dim": auto_or(lambda v: positive_int("latent_dim", v)),
    "lam": auto_or(lambda v: number("lam", v)),
    "likelihood": _likelihood,
    "encoder_hidden": _widths("encoder_hidden"),
    "encoder_width": auto_or(lambda v: positive_int("encoder_width", v)),
    "decoder_width": auto_or(lambda v: positive_int("decoder_width", v)),
    "decoder_hidden": _widths("decoder_hidden"),
    "keep_prob": _probability("keep_prob"),
    "cell_keep_prob": _probability("cell_keep_prob"),
    "theta_prior_weight": lambda v: number("theta_prior_weight", v),
    "baseline": lambda v: number("baseline", v),
    "inference": _choice(EXPERTS),
    "phi_inference": _choice(PHI_POSTERIORS),
    "image_shape": _image_shape,
    "conv_width": lambda v: positive_int("conv_width", v),
    "group_weight": _group_weight,
    "library_size": _library_size,
    "num_data": _num_data,
}


@dataclass
class ModelConfig:
    """Architecture, prior and sparsity of a factVAE; see :class:`~pyro_factvae.FactVAE` for
    the meaning of each field. ``num_data`` (``N``, rows of the training data) is set by
    ``fit``; it scales the full-data prior so that ``lam`` is a per-example weight.

    Invalid values raise ``ValueError`` at construction *and on assignment*.
    """

    latent_dim: int | str = "auto"
    lam: float | str = "auto"
    likelihood: str | list[str] | dict[str, str] = "normal"
    encoder_hidden: list[int] = field(default_factory=list)
    encoder_width: int | str = "auto"
    decoder_width: int | str = "auto"
    decoder_hidden: list[int] = field(default_factory=list)
    keep_prob: float = 0.75
    cell_keep_prob: float = 1.0
    theta_prior_weight: float = 0.01
    baseline: float = 100.0
    inference: str = "poe"
    phi_inference: str = "prox"
    image_shape: list[int] | None = None
    conv_width: int = 32
    group_weight: dict[str, float] | None = None
    library_size: str | dict[str, str] | None = None
    num_data: int | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_frozen", False):
            raise ValueError(
                f"this config is resolved for a model and frozen (cannot set {name}); change "
                "lam with FactVAE.set_lam(...), or give a new ModelConfig to a new model"
            )
        if name not in self.__dataclass_fields__:  # a misspelt setting, silently ignored
            close = get_close_matches(name, list(self.__dataclass_fields__), 1)
            hint = "".join(f"; did you mean {c!r}?" for c in close)
            raise AttributeError(f"ModelConfig has no setting {name!r}{hint}")
        check = _MODEL_CHECKS.get(name)
        super().__setattr__(name, value if check is None else check(value))

    def __post_init__(self) -> None:
        self.conv_spec()  # validates the image shape

    @property
    def phi_rows(self) -> int:
        """``m = p + H``, the rows of every ``Phi_g``."""
        return self.decoder_width + self.encoder_width

    @property
    def frozen(self) -> bool:
        """Whether this is a model's resolved config (:meth:`resolved`), read and never
        written: a change is a new config (:meth:`replace`)."""
        return getattr(self, "_frozen", False)

    def resolved(self, dims: Sequence[int]) -> ModelConfig:
        """A frozen copy with ``latent_dim``, ``encoder_width`` and ``decoder_width`` left at
        ``"auto"`` filled in from the group widths ``dims``: ``K = min(64, max(16, 2 G))``
        latents (more than the data need, so that the group lasso prunes the surplus; never
        more than the total width), and ``H = p = min(64, max(16, ceil(max d_g / 2)))``."""
        width = min(64, max(16, math.ceil(max(dims) / 2)))
        auto = {
            "latent_dim": min(sum(dims), min(64, max(16, 2 * len(dims)))),
            "encoder_width": width,
            "decoder_width": width,
        }
        fill = {k: v for k, v in auto.items() if getattr(self, k) == "auto"}
        return self.replace(frozen=True, **fill)

    def replace(self, frozen: bool | None = None, **changes: Any) -> ModelConfig:
        """A copy with ``changes`` (validated), frozen like this one unless ``frozen`` says."""
        copy = ModelConfig(**{**self.to_dict(), **changes})
        if self.frozen if frozen is None else frozen:
            object.__setattr__(copy, "_frozen", True)
        return copy

    def lam_total(self, batch_size: int | None = None) -> float:
        """``N * lam``, the rate of the full-data group-lasso prior (``N``: ``num_data``, or
        ``batch_size`` before a fit)."""
        if self.lam == "auto":
            raise ValueError(
                "lam='auto' is resolved by FactVAE.fit; there is no lam before that (give "
                "ModelConfig(lam=...) a number to use Model and Guide on their own)"
            )
        return self.lam * (self.num_data or batch_size or 1)

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

    def libraries_for(self, names: Sequence[str], counts: Sequence[bool]) -> list[Any]:
        """Per group, where its library-size offset comes from: ``None`` (no offset),
        ``"data"`` (its own observed counts) or the index of the one-column group that holds
        its size factors; ``counts``: which groups have a count likelihood."""
        spec = self.library_size
        if spec is None:
            return [None] * len(names)
        if spec == "data":
            if not any(counts):  # a warning: a model file that says so still loads
                warnings.warn(
                    "library_size='data' sets the depth of count groups, and no group has a "
                    "count likelihood ('poisson', 'negative_binomial'): it does nothing here",
                    stacklevel=2,
                )
            return ["data" if c else None for c in counts]
        out: list[Any] = [None] * len(names)
        for group, source in spec.items():
            if group not in names:
                raise ValueError(f"library_size given for unknown group {group!r}; groups: {names}")
            g = list(names).index(group)
            if not counts[g]:
                raise ValueError(
                    f"library_size given for group {group!r}, whose likelihood is not a count "
                    "one ('poisson' or 'negative_binomial'); only count groups take one"
                )
            if source != "data" and (source not in names or source == group):
                raise ValueError(
                    f"library_size of {group!r}: {source!r} is neither 'data' nor another "
                    f"group (the one-column group of its size factors); groups: {names}"
                )
            out[g] = source if source == "data" else list(names).index(source)
        return out

    def weights_for(self, names: Sequence[str]) -> list[float] | None:
        """Likelihood weight of each group ``names`` (``None``: all 1)."""
        if not self.group_weight:
            return None
        unknown = sorted(set(self.group_weight) - set(names))
        if unknown:
            raise ValueError(f"group_weight given for unknown groups {unknown}; groups: {names}")
        return [float(self.group_weight.get(n, 1.0)) for n in names]

    def conv_spec(self) -> ConvSpec | None:
        """The :class:`~pyro_factvae.config.ConvSpec` for image groups, or ``None`` (MLPs)."""
        if self.image_shape is None:
            return None
        return ConvSpec(tuple(self.image_shape), self.conv_width)

    def to_dict(self) -> dict[str, Any]:
        """Plain (JSON-ready) dict of the fields."""
        return asdict(self)

    def user_dict(self) -> dict[str, Any]:
        """The fields a user sets (all but ``num_data``)."""
        out = self.to_dict()
        out.pop("num_data")
        return out


@dataclass(frozen=True)
class ConvSpec:
    """Image groups for the DCGAN-style networks (paper sec. 4.3).

    Every group of a block holds ``channels * size * size`` features (row-major ``C, H, W``);
    ``size`` must be ``8 * 2**n`` (``n >= 0``): ``n + 1`` stride-2 convolutions take it down to
    ``4 x 4``. ``width`` is the number of feature maps of the first encoder layer (doubling per
    layer; the generator mirrors it).
    """

    image_shape: tuple[int, int, int]
    width: int = 32

    def __post_init__(self) -> None:
        c, h, w = self.image_shape
        n = math.log2(h / 4) if h >= 4 else -1
        if h != w or n < 1 or n != int(n) or c < 1:
            raise ValueError(
                f"conv networks need square images of side 8 * 2**n (8, 16, 32, 64, ...), "
                f"got image_shape {tuple(self.image_shape)}; pad the images"
            )

    @property
    def layers(self) -> int:
        return int(math.log2(self.image_shape[1] / 4))

    @property
    def dim(self) -> int:
        return math.prod(self.image_shape)
