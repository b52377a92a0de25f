"""What every benchmark script does last: write its results as JSON and say where."""

from __future__ import annotations

import argparse
import os
from typing import Any

from pyro_factvae.tools.script_args import write_json as script_json


def write_json(path: str, payload: Any, indent: int = 2) -> None:
    """Write ``payload`` to ``path`` (its folder created; whole or not at all: a temporary
    file renamed onto it) and print where."""
    script_json(payload, path, indent=indent)
    print(f"wrote {path}")


#: where every script writes its JSON by default: beside the scripts, whatever the folder
#: it is run from
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")


def out_path(stem: str, data: list[str], seeds: list[int], methods=None, every=None) -> str:
    """``out/<stem>_<data>_s<seeds>[_<methods>].json``: a run's own file (the methods named
    when not ``every`` one), so that a run of other data or seeds keeps the earlier ones."""
    parts = [stem, "-".join(data) or "timing", "s" + "-".join(str(s) for s in seeds)]
    if methods is not None and list(methods) != list(every or []):
        parts.append("-".join(m.replace("+", "p") for m in methods))
    return os.path.join(OUT, "_".join(parts) + ".json")


def positive(text: str) -> int:
    """An argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def seed_type(text: str) -> int:
    """An argparse type: a seed numpy takes (an integer >= 0)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a seed is an integer >= 0, got {text}")
    return value
