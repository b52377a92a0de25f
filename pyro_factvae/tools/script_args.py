"""Command-line checks the example scripts share: a ``lam`` that is a finite number, an
output folder that can be made, data that can be read, all answered through the script's own
``argparse`` error (its usage line and exit status 2), never a traceback; and their JSON
written whole or not at all."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from ..io import atomic_path

__all__ = ["check_lam", "out_folder", "read_or_exit", "script_out", "write_json"]

T = TypeVar("T")


def script_out(script: str) -> str:
    """The ``out`` folder beside ``script`` (a script's ``__file__``): its default output
    folder, wherever it is run from."""
    return os.path.join(os.path.dirname(os.path.abspath(script)), "out")


def check_lam(parser: argparse.ArgumentParser, lam: float, positive: bool = False) -> None:
    """``parser.error`` unless ``lam`` is a finite number ``>= 0`` (``> 0`` if ``positive``)."""
    if not (math.isfinite(lam) and (lam > 0 if positive else lam >= 0)):
        parser.error(f"--lam must be a finite number {'>' if positive else '>='} 0, got {lam}")


def out_folder(parser: argparse.ArgumentParser, path: str) -> str:
    """Make the output folder ``path`` (and its parents); ``parser.error`` where it cannot be
    made (a file of that name, no permission). Returns ``path``."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        parser.error(f"--out {path}: cannot make the folder ({exc.strerror or exc})")
    return path


def read_or_exit(parser: argparse.ArgumentParser, read: Callable[[], T], what: str = "") -> T:
    """``read()``, with a ``ValueError`` or ``RuntimeError`` (a missing file, a failed
    download) answered by ``parser.error`` and ``what`` (the options that name the data)."""
    try:
        return read()
    except (ValueError, RuntimeError) as exc:
        hint = f" ({what})" if what else ""
        parser.error(f"{exc}{hint}")


def write_json(payload: Any, path: str, indent: int = 1) -> None:
    """``json.dump(payload)`` to ``path`` whole or not at all (a temporary file renamed onto
    it, :func:`~pyro_factvae.io.atomic_path`; its folder is created).

    Parameters
    ----------
    payload
        Anything ``json.dump`` takes; one it cannot write raises and leaves ``path`` as it was.
    path : str
        The file to write.
    indent : int
        ``json.dump``'s indent.
    """
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(payload, f, indent=indent)
