"""The results tables of the docs, printed from a run's rows: one row per data set, one
column per method (``peers.py``, ``cells.py``), the best score of each cell in bold."""

from __future__ import annotations

import numpy as np

#: the docs' labels of the methods and data sets, in the docs' column and row order
METHODS = {
    "mean": "mean",
    "knn": "KNN(10)",
    "iterative": "Iterative",
    "missforest": "missForest",
    "mofa+": "MOFA+",
    "factvae": "**factVAE**",
    "lam0": "λ = 0",
    "jmvae+": "JMVAE+",
    "bayes": "Bayes-optimal",
}
DRAWN = {"knn": "KNN plug-in", "iterative": "Iterative", "mofa+": "MOFA+", "factvae": "**factVAE**"}
DATA = {
    "sim": "simulation",
    "breast": "breast cancer",
    "nutrimouse": "nutrimouse",
    "digits": "digits quadrants",
    "mfeat": "UCI multiple features",
    "wine": "wine",
    "diabetes": "diabetes",
    "fashion": "Fashion-MNIST quadrants",
    "miwae": "breast cancer, MIWAE protocol",
}


def _mean(rows: list[dict], key: str, **match) -> float | None:
    vals = [r[key] for r in rows if key in r and all(r.get(k) == v for k, v in match.items())]
    return float(np.mean(vals)) if vals else None


def _cells(values: dict[str, list[float | None]], best: str) -> dict[str, str]:
    """Each method's parts joined by `` / ``, the best of each part (``best``: "min" or
    "max") among the methods but the Bayes-optimal one in bold."""
    parts = max((len(v) for v in values.values()), default=0)
    out = {m: [] for m in values}
    for i in range(parts):
        scores = {
            m: v[i] for m, v in values.items() if i < len(v) and v[i] is not None and v[i] == v[i]
        }
        peers = [v for m, v in scores.items() if m != "bayes"]
        top = (min if best == "min" else max)(peers) if peers else None
        for m in values:
            v = scores.get(m)
            text = "" if v is None else f"{v:.3f}"
            bold = v is not None and m != "bayes" and top is not None and text == f"{top:.3f}"
            out[m].append(f"**{text}**" if bold else text)
    return {m: " / ".join(p for p in parts if p) for m, parts in out.items()}


def rmse_grid(rows: list[dict], parts: list[tuple[str, dict]], spread: bool = False) -> str:
    """The error table: a cell per data set and method, its ``parts`` (``(score, the rows'
    fields it is of)``, e.g. ``("rmse", {"setting": "one"})``) joined by `` / ``: means over
    seeds (``spread``: ``mean ± sd``, the sample sd over seeds); parts no row has are left
    out."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    lines = [
        "| data | " + " | ".join(METHODS[m] for m in methods) + " |",
        "| --- |" + " --- |" * len(methods),
    ]
    for data in dict.fromkeys(r["data"] for r in rows):
        sub = [r for r in rows if r["data"] == data]
        shown = [(key, match) for key, match in parts if _has(sub, key, match)]
        values = {m: [_mean(sub, key, method=m, **match) for key, match in shown] for m in methods}
        cells = _cells(values, "min")
        if spread:  # one part: its sd beside each mean
            for m in methods:
                vals = [r[shown[0][0]] for r in sub if r["method"] == m]
                cells[m] += f" ± {np.std(vals, ddof=1):.3f}" if len(vals) > 1 else ""
        lines.append(f"| {DATA.get(data, data)} | " + " | ".join(cells[m] for m in methods) + " |")
    return "\n".join(lines)


def _has(rows: list[dict], key: str, match: dict) -> bool:
    return any(key in r and all(r.get(k) == v for k, v in match.items()) for r in rows)


def draw_grid(rows: list[dict], **match) -> str:
    """The coverage of central 90% intervals / CRPS per data set and method that draws (the
    best CRPS in bold), and factVAE's mean ESS."""
    methods = [m for m in DRAWN if any(r["method"] == m and "crps" in r for r in rows)]
    lines = [
        "| data | " + " | ".join(DRAWN[m] for m in methods) + " | factVAE's ESS |",
        "| --- |" + " --- |" * (len(methods) + 1),
    ]
    for data in dict.fromkeys(r["data"] for r in rows):
        sub = [
            r for r in rows if r["data"] == data and all(r.get(k) == v for k, v in match.items())
        ]
        crps = _cells({m: [_mean(sub, "crps", method=m)] for m in methods}, "min")
        cells = []
        for m in methods:
            cover = _mean(sub, "coverage_90", method=m)
            cells.append("" if cover is None else f"{cover:.3f} / {crps[m]}")
        ess = _mean(sub, "ess", method="factvae")
        ess_text = "" if ess is None else f"{ess:.0f}"
        lines.append(f"| {DATA.get(data, data)} | " + " | ".join(cells) + f" | {ess_text} |")
    return "\n".join(lines)


def method_grid(rows: list[dict], **match) -> str:
    """The README's table: a row per method, a column per data set, each cell ``RMSE / 90%
    coverage / CRPS`` (the last two where the method draws; the best RMSE and CRPS of each
    data set in bold)."""
    rows = [r for r in rows if all(r.get(k) == v for k, v in match.items())]
    datas = list(dict.fromkeys(r["data"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    cells: dict[str, list[str]] = {m: [] for m in methods}
    for data in datas:
        sub = [r for r in rows if r["data"] == data]
        err = _cells({m: [_mean(sub, "rmse", method=m)] for m in methods}, "min")
        crps = _cells({m: [_mean(sub, "crps", method=m)] for m in methods}, "min")
        for m in methods:
            cover = _mean(sub, "coverage_90", method=m)
            cells[m].append(err[m] if cover is None else f"{err[m]} / {cover:.2f} / {crps[m]}")
    lines = [
        "| method | " + " | ".join(DATA.get(d, d) for d in datas) + " |",
        "| --- |" + " --- |" * len(datas),
    ]
    lines += [f"| {METHODS[m]} | " + " | ".join(cells[m]) + " |" for m in methods]
    return "\n".join(lines)
