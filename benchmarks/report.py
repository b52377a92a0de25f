"""What every benchmark script does last: write its results as JSON and say where."""

from __future__ import annotations

import json
import os
from typing import Any


def write_json(path: str, payload: Any, indent: int = 2) -> None:
    """Write ``payload`` to ``path`` (its folder created) and print where."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=indent)
    print(f"wrote {path}")
