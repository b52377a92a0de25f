import os
import runpy
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def test_bars_example_runs_and_writes_figures(tmp_path, capsys):
    sys.path.insert(0, EXAMPLES)
    try:
        bars = runpy.run_path(os.path.join(EXAMPLES, "bars.py"))
    finally:
        sys.path.remove(EXAMPLES)
    results = bars["main"](["--n", "300", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    assert set(results) == {0.0, 1.0}
    assert all(np.isfinite(r["rmse"]) for r in results.values())
    for name in ("sparsity_lam0.png", "sparsity_lam1.png", "right_from_left.png"):
        assert (tmp_path / name).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "top_left" in out and "RMSE ratio" in out
