"""The package's structure: imports run one way through the layers, with no cycle (imports
inside functions included), and no module grows past ~400 lines without a reason."""

import ast
import pathlib
import re

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "pyro_factvae"

#: bottom to top; a module may import from its own layer or a lower one, never a higher one
LAYERS = [
    {"_version", "sites", "registry", "protocols", "io", "rng", "checks"},
    {
        "layout",
        "data",
        "masks",
        "validation",
        "arrays",
        "ranges",
        "config",
        "fit_config",
        "stream",
        "omics",
        "variables",
    },
    {"module"},
    {"infer"},
    {"queries", "outputs", "extrapolation", "estimator"},
    {
        "metrics",
        "calibration",
        "analysis",
        "plotting",
        "tools",
        "datasets",
        "sklearn",
        "sklearn_columns",
    },
    {"cli_csv", "cli_io", "cli_commands", "cli"},
]
#: longer modules and why
LONG = {
    "estimator": "FactVAE, the one user-facing class: a third of it is numpy docstrings",
    "data": "GroupedData, the one data class: seven constructors, each with its docstring",
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: pathlib.Path, known: set[str]) -> set[str]:
    """Every pyro_factvae module ``name`` imports, anywhere in the file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] == "pyro_factvae")
    return found


def _layer(name: str) -> int:
    top = name.split(".")[1]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_module_has_a_layer():
    for name in _modules():
        if name != "pyro_factvae":
            _layer(name)  # StopIteration: a module no layer names


def test_imports_run_one_way_through_the_layers():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        if name == "pyro_factvae":  # the facade re-exports the public names
            continue
        for target in _imports(name, path, set(modules)):
            if target == "pyro_factvae":
                wrong.append(f"{name} imports the package facade (import the module instead)")
            elif _layer(target) > _layer(name):
                wrong.append(f"{name} (layer {_layer(name)}) imports {target} ({_layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    modules = _modules()
    graph = {n: _imports(n, p, set(modules)) & set(modules) for n, p in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt) :] if nxt in trail else trail
                raise AssertionError("import cycle: " + " -> ".join([*cycle, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


#: what the estimator offers that a lower layer could call on an object it was handed
ESTIMATOR_CALLS = {"fit", "fitted_modules", "impute", "latent", "predict_interval"}


def _calls_up(path: pathlib.Path) -> list[str]:
    """Calls of estimator methods in ``path``, and names of the estimator class."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ESTIMATOR_CALLS:
                found.append(f"line {node.lineno}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Name) and node.id == "FactVAE":
            found.append(f"line {node.lineno}: FactVAE")
    return found


def test_nothing_below_the_estimator_calls_it():
    # an import test cannot see a call on an object handed down (typed Any): the lam path,
    # the plan and the trainer work on a FitState, never on the estimator
    below = _layer("pyro_factvae.estimator")
    wrong = [
        f"{name}: {call}"
        for name, path in _modules().items()
        if name != "pyro_factvae" and _layer(name) < below
        for call in _calls_up(path)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_call_check_sees_a_fit_on_a_handed_down_object(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def walk(vae):\n    vae.fit(data)\n")
    assert _calls_up(path) == ["line 2: .fit(...)"]


def test_layer_check_sees_imports_inside_functions(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("def f():\n    from ..cli import main\n")
    assert _imports("pyro_factvae.module.m", path, {"pyro_factvae.cli"}) == {"pyro_factvae.cli"}


def test_modules_stay_small():
    for name, path in _modules().items():
        lines = len(path.read_text().splitlines())
        assert lines <= 420 or name.split(".")[-1] in LONG, f"{name}: {lines} lines"


def test_the_layout_page_names_every_module():
    table = (PACKAGE.parent / "docs" / "layout.md").read_text()
    named = set(re.findall(r"`([a-z_/]+\.py)`", table))
    folders = ("tools", "datasets")  # named as folders, each module's job in a word
    unnamed = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name not in ("__init__.py", "_version.py")
        and path.parent.name not in folders
        and str(path.relative_to(PACKAGE)) not in named
    ]
    assert not unnamed, f"docs/layout.md does not name {sorted(unnamed)}"


def _module_runs(names: list[str]) -> list[str]:
    """Consecutive duplicates collapsed: the modules a call chain passes through, in order."""
    return [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n]


def test_a_default_fit_goes_down_to_the_training_step_through_each_module_once(monkeypatch):
    # the call chain at every training step of the default fit (the lam path with its
    # refits and final fit): estimator -> path -> trainer -> loop, none of them entered twice
    import inspect

    import numpy as np

    import pyro_factvae.infer.loop as loop
    from pyro_factvae import FactVAE

    chains, original = set(), loop.guarded_step

    def spy(*args, **kwargs):
        frames = reversed(inspect.stack()[1:])
        names = [f.frame.f_globals.get("__name__", "") for f in frames]
        chains.add(tuple(_module_runs([n for n in names if n.startswith("pyro_factvae.")])))
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "guarded_step", spy)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(60, 1))
    data = {"a": z + 0.1 * rng.normal(size=(60, 3)), "b": -z + 0.1 * rng.normal(size=(60, 2))}
    FactVAE().fit(data, epochs=4, progress=False)
    FactVAE(lam=0.1).fit(data, epochs=4, progress=False)
    down = ("pyro_factvae.infer.run", "pyro_factvae.infer.loop")
    assert chains == {
        ("pyro_factvae.estimator", "pyro_factvae.infer.path", *down),
        ("pyro_factvae.estimator", *down),
    }
