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


def write_model(vae, path, extra=None, extra_meta=None, extra_payload=None) -> None:
    """Write a fitted :class:`~pyro_factvae.FactVAE` (config as JSON text, weights, and any
    checkpoint parts in ``extra_meta`` / ``extra_payload``) atomically."""
    from . import __version__

    model, guide = vae._fitted()
    meta = {
        "format": FORMAT,
        "version": __version__,
        "config": vae.config.to_dict(),
        "layout": {
            "names": list(model.layout.names),
            "dims": list(model.layout.dims),
            "likelihoods": list(model.layout.likelihoods),
        },
        "num_data": vae.num_data_,
        "history": vae.history_,
        "extra": dict(extra or vae.metadata_),
        **(extra_meta or {}),
    }
    payload = {
        "meta": json.dumps(meta),
        "model": model.state_dict(),
        "guide": guide.state_dict(),
        **(extra_payload or {}),
    }
    atomic_save(payload, path)


def model_from_payload(cls, meta: dict, payload: dict, path):
    """Build a ``cls`` (FactVAE) from :func:`read_payload` output; a file of another major
    version, an invalid config, or weights that do not fit it raise ``ValueError``."""
    from . import __version__
    from .model import Layout

    name = os.fspath(path)
    major = str(meta.get("version", "?")).split(".")[0]
    if major != __version__.split(".")[0]:
        raise ValueError(
            f"{name!r} was written by pyro_factvae {meta.get('version')}; this is "
            f"{__version__}, which reads files of major version {__version__.split('.')[0]}"
        )
    try:
        vae = cls(**meta["config"])
        lay = meta["layout"]
        layout = Layout(lay["names"], lay["dims"], lay["likelihoods"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{name!r} has an invalid config: {exc}") from None
    vae._build(layout, meta["num_data"])
    try:
        vae.model_.load_state_dict(payload["model"])
        vae.guide_.load_state_dict(payload["guide"])
    except (RuntimeError, KeyError) as exc:
        raise ValueError(
            f"weights in {name!r} do not match its config (written by version "
            f"{meta.get('version')}): {str(exc).splitlines()[0]}"
        ) from None
    vae.history_ = list(meta.get("history", []))
    vae.metadata_ = dict(meta.get("extra") or {})
    return vae
