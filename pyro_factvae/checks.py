"""Checks of single setting values, shared by every layer that takes settings.

Each function takes a value as a user gives it (Python or numpy scalars) and returns it as
the plain type the library stores, or raises one ``ValueError`` that names the setting and
says what it must be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = [
    "also",
    "auto_or",
    "draws_for",
    "interval_draws",
    "non_negative_int",
    "number",
    "numpy_seed",
    "positive_int",
    "seed_int",
]


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int >= 1``, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def interval_draws(num_draws: Any, level: Any, name: str = "num_draws") -> int:
    """``num_draws`` as an ``int``, checked to be enough for a central ``level`` interval
    (``level`` in (0, 1)): at least ``(1 + level) / (1 - level)`` draws (19 for 90%, 39 for
    95%), so that the bounds, the draws of ranks ``j`` and ``M + 1 - j``
    (:func:`~pyro_factvae.module.draws.central_ranks`), cover at least ``level`` of new values
    when the draws are exact; with fewer, even the smallest and the largest of ``M`` draws
    cover only ``(M - 1) / (M + 1)``, less than the level (with one draw, zero width). Else a
    ``ValueError``."""
    need = draws_for(level)
    num_draws = positive_int(name, num_draws)
    if num_draws < need:
        raise ValueError(
            f"{name}={num_draws} is too few for a central {float(level) * 100:g}% interval: "
            f"{_range_covers(num_draws)}; give {name} >= {need}"
        )
    return num_draws


def _range_covers(num_draws: int) -> str:
    """What the range of ``num_draws`` exact draws covers of new values, in words."""
    if num_draws == 1:
        return "one draw bounds an interval of zero width"
    share = Fraction(num_draws - 1, num_draws + 1)
    return (
        f"even the smallest to the largest of {num_draws} draws covers only "
        f"{share.numerator}/{share.denominator} of new values"
    )


def draws_for(level: Any) -> int:
    """The fewest draws that bound a central ``level`` interval (``level`` in (0, 1), else a
    ``ValueError``): ``(1 + level) / (1 - level)``, see :func:`interval_draws`."""
    if isinstance(level, (bool, np.bool_)) or not isinstance(level, (int, float, np.number)):
        raise ValueError(f"level must be a number in (0, 1), got {level!r}")
    level = float(level)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return math.ceil(round((1.0 + level) / (1.0 - level), 6))


def seed_int(value: Any, name: str = "seed") -> int:
    """A seed: an integer (numpy's included) that torch's generators take, in
    ``[-2**63, 2**64)``, else a ``ValueError`` (``1.5`` is not taken as 1, nor ``None`` as
    unseeded where the call must repeat)."""
    if value is None:  # the call repeats from its seed: other draws take another integer
        raise ValueError(
            f"{name} must be an integer, got None: this call repeats what it draws from its "
            "seed; give another integer for other draws"
        )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not -(2**63) <= int(value) < 2**64:
        raise ValueError(f"{name} must be an integer in [-2**63, 2**64), got {value!r}")
    return int(value)


def numpy_seed(value: Any, name: str = "seed") -> int:
    """A seed (:func:`seed_int`'s range) as numpy's generators take it, in ``[0, 2**64)``: a
    negative one wrapped around as torch reads it (``-1`` is ``2**64 - 1``)."""
    return seed_int(value, name) % 2**64


def non_negative_int(name: str, value: Any) -> int:
    """``value`` as an ``int >= 0``, else a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be 0 or a positive integer, got {value!r}")
    return int(value)


def number(name: str, value: Any, low: float = 0.0, strict: bool = False) -> float:
    """A finite real ``>= low`` (``> low`` with ``strict``), numpy scalars included."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    ok = value > low if strict else value >= low
    if not (ok and math.isfinite(value)):
        raise ValueError(
            f"{name} must be a finite number {'>' if strict else '>='} {low}, got {value}"
        )
    return value


def also(message: str, choice: str) -> str:
    """``"<name> must be X, got Y"`` as ``"<name> must be X or <choice>, got Y"``."""
    head, sep, tail = message.rpartition(", got ")
    return f"{head} or {choice}{sep}{tail}" if sep else f"{message} (or {choice})"


def auto_or(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``"auto"`` (chosen from the data by ``fit``) or a value that passes ``check``."""

    def checked(value: Any) -> Any:
        if isinstance(value, str) and value == "auto":
            return "auto"
        try:
            return check(value)
        except ValueError as exc:  # the other choice named too ("Auto" is no "auto")
            raise ValueError(also(str(exc), "'auto' (chosen from the data)")) from None

    return checked
