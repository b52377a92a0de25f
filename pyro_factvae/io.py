"""Files: atomic writes, model files and their format checks.

A model file is ``torch.save`` of ``{"meta": <JSON string>, <name>: <state dict or tensor>,
...}``. Reading uses ``torch.load(weights_only=True)``: only tensors and plain containers,
strings and numbers are accepted, so a crafted file cannot run code; the archive's checksums
are verified, so a file damaged after it was written is refused. Writing goes to a
temporary file in the same folder, is flushed and fsynced, then renamed over the target: a
crash leaves the old file intact. Checkpoints are model files with the training state added
(:mod:`pyro_factvae.infer.run`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from typing import Any

import torch

from ._version import __version__

__all__ = [
    "atomic_path",
    "FORMAT",
    "FORMAT_VERSION",
    "atomic_save",
    "check_writable",
    "new_file_mode",
    "read_payload",
]

FORMAT = "pyro_factvae.FactVAE"
#: bumped when the layout of the weights changes (3: files record their blocks); files of a
#: format version outside :data:`READS` are refused
FORMAT_VERSION = 3
#: the format versions this version reads (2: blocks recomputed from the file's pad limit)
READS = (2, 3)


def check_writable(path: str | os.PathLike, what: str = "output") -> str:
    """Make sure ``path`` can be written (creating its folder); return it as a string.

    Called *before* long work (training), so a bad path fails at once with a message that
    names it, not after the fit.
    """
    name = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(name))
    if os.path.isdir(name) or name.endswith((os.sep, "/")):
        raise ValueError(f"{what} path {name!r} is a folder; give a file name")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the folder of {what} path {name!r}: {exc}") from None
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {what} path {name!r}: its folder is not writable")
    return name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary path beside ``path`` (folder created) for a block to write to: when the
    block ends, the file is fsynced and renamed onto ``path``, its mode following the umask
    like any other output; when it raises, the file is removed and ``path`` left as it was."""
    path = os.path.realpath(check_writable(path))  # a symbolic link: written through
    folder = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".factvae-", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, new_file_mode())  # as open() would make it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_save(payload: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save(payload, path)`` through :func:`atomic_path`: a complete file or none."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)


def _starts_with(path: str, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def _failed_checksum(path: str) -> str | None:
    """The first part of the zip archive ``torch.save`` wrote whose CRC-32 does not match its
    bytes (``torch.load`` does not check them), or ``None``."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"(the archive: {exc})"


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the process's umask (``mkstemp``'s files
    are ``0600`` instead)."""
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_payload(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file written with :func:`atomic_save`; return ``(meta, payload)``.

    Raises ``ValueError`` (naming the file) for anything that is not such a file, including
    files whose pickle would need to run code, and files of another major or format version.
    """
    name = os.fspath(path)
    if os.path.isdir(name):
        raise ValueError(f"{name!r} is a folder, not a FactVAE file: give the file's path")
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
        elif _starts_with(name, b"PK\x03\x04"):  # another program's zip, or torch's broken
            reason = (
                "a zip archive of another kind (an .npz, say), not a torch file"
                if _other_zip(name)
                else "it is truncated or corrupt (an incomplete copy?); write it again"
            )
        else:
            reason = "not a torch file"
        raise ValueError(f"{name!r} is not a loadable FactVAE file: {reason}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("meta"), str):
        raise ValueError(f"{name!r} is not a FactVAE file")
    damaged = _failed_checksum(name)
    if damaged is not None:
        raise ValueError(
            f"{name!r} is damaged: its part {damaged!r} fails its checksum (the file changed "
            "after it was written, e.g. a bad copy or disk); load an intact copy, or refit"
        )
    try:
        meta = json.loads(payload["meta"])
    except json.JSONDecodeError:
        raise ValueError(f"{name!r} is not a FactVAE file (its metadata is not JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"{name!r} is not a FactVAE file")
    major = str(meta.get("version", "?")).split(".")[0]
    if major != __version__.split(".")[0] or meta.get("format_version") not in READS:
        raise ValueError(
            f"{name!r} was written by pyro_factvae {meta.get('version')} (file format "
            f"{meta.get('format_version', 1)}); this is {__version__}, which reads formats "
            f"{', '.join(map(str, READS))}: refit the model with this version"
        )
    return meta, payload


def write_payload(meta: dict[str, Any], tensors: dict[str, Any], path: str | os.PathLike) -> None:
    """Write ``meta`` (JSON-ready) and ``tensors`` (state dicts, tensors) as a model file."""
    head = {"format": FORMAT, "format_version": FORMAT_VERSION, "version": __version__}
    atomic_save({"meta": json.dumps({**head, **meta}), **tensors}, path)


def _other_zip(name: str) -> bool:
    """Whether ``name`` is a readable zip archive that is not one ``torch.save`` wrote (which
    holds a ``data.pkl``): an ``.npz``, say."""
    try:
        with zipfile.ZipFile(name) as archive:
            return not any(n.endswith("data.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
