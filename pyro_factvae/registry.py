"""Named registries of the pluggable parts: likelihoods, expert combinations, posteriors
over ``Phi``.

A new part is one module that defines a class and registers it with a decorator::

    from pyro_factvae.registry import LIKELIHOODS

    @LIKELIHOODS.register("poisson")
    class PoissonLikelihood(Likelihood): ...

The configuration validates names against these registries, so nothing else needs editing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EXPERTS", "LIKELIHOODS", "OBJECTIVES", "PHI_POSTERIORS", "Registry"]

T = TypeVar("T")


class Registry:
    """A name -> class mapping whose lookups fail with a ``ValueError`` listing the names."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, Any] = {}

    def register(self, name: str, replace: bool = False) -> Callable[[T], T]:
        """Class decorator: register the class under ``name`` (sets its ``name`` attribute).

        A name already taken is refused, unless ``replace`` or the class is the same
        definition run again (same module and qualified name: a notebook cell re-run),
        which then takes its place."""

        def add(cls: T) -> T:
            old = self._entries.get(name)
            same = old is not None and (old.__module__, old.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if old is not None and not (replace or same):
                raise ValueError(
                    f"{self.what} {name!r} is registered twice (as {old.__qualname__} and "
                    f"{cls.__qualname__}): give it another name, or register({name!r}, "
                    "replace=True) to replace the first"
                )
            self._entries[name] = cls
            cls.name = name  # type: ignore[attr-defined]
            return cls

        return add

    def unregister(self, name: str) -> None:
        """Forget the class registered as ``name`` (a ``ValueError`` if there is none)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: Any) -> Any:
        """The class registered as ``name``."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ValueError(f"unknown {self.what} {name!r}; choose one of {self.names}") from None

    @property
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries


#: observation families (``pyro_factvae.module.likelihoods``)
LIKELIHOODS = Registry("likelihood")
#: how the experts of the encoder combine (``pyro_factvae.module.experts``)
EXPERTS = Registry("inference")
#: posteriors over the global sites ``Phi`` and ``gamma_sq`` (``pyro_factvae.module.posteriors``)
PHI_POSTERIORS = Registry("phi_inference")
#: training objectives (``pyro_factvae.infer.objective``); each posterior names its own
OBJECTIVES = Registry("objective")
