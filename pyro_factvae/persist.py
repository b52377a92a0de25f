"""Model files: config as JSON text plus tensors, written atomically, read without unpickling.

A file is ``torch.save`` of ``{"meta": <JSON string>, <name>: <state dict>, ...}``. Reading uses
``torch.load(weights_only=True)``: only tensors and plain containers/strings/numbers are
accepted, so a crafted file cannot run code. Writing goes to a temporary file in the same folder,
is flushed and fsynced, then renamed over the target: a crash leaves the old file intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import torch

__all__ = ["FORMAT", "atomic_save", "read_payload"]

FORMAT = "pyro_factvae.FactVAE"


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save(payload, path)`` via a temporary file, fsync and rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".factvae-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_payload(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written with :func:`atomic_save`; return ``(meta, payload)``.

    Raises ``ValueError`` (naming the file) for anything that is not such a file, including
    files whose pickle would need to run code.
    """
    name = os.fspath(path)
    try:
        payload = torch.load(name, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:
        text = str(exc)
        if "Weights only load failed" in text and "global" in text.lower():
            reason = (
                "it holds Python objects other than tensors and plain data, and loading them "
                "could run code; refused"
            )
        else:
            reason = "not a torch file"
        raise ValueError(f"{name!r} is not a loadable FactVAE file: {reason}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), str):
        raise ValueError(f"{name!r} is not a FactVAE file")
    try:
        meta = json.loads(payload["meta"])
    except json.JSONDecodeError:
        raise ValueError(f"{name!r} is not a FactVAE file (its metadata is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{name!r} is not a FactVAE file")
    return meta, payload
