"""Every code block of the README and of the docs pages runs (at tiny sizes), so neither can
drift from the code."""

import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: the README, then the docs pages in the order of the site's table of contents: the python
#: blocks run in that order in one namespace, as a reader would run them
PAGES = [README] + [
    ROOT / "docs" / f"{name.strip()}.md"
    for name in re.search(
        r"```{toctree}\n:maxdepth: \d+\n\n(.*?)```", (ROOT / "docs" / "index.md").read_text(), re.S
    )
    .group(1)
    .split()
]
#: big numbers of the README made small: (pattern, replacement)
SMALL = [
    (r"epochs=\d+", "epochs=2"),
    (r"num_draws=\d+", "num_draws=40"),  # enough for a 95% interval
    (r"num_rows=\d+", "num_rows=200"),
    (r"steps=\d+", "steps=20"),
    (r"--epochs \d+", "--epochs 1"),
    (r"range\(500, 2\)", "range(60, 2)"),
    (r"\(500, 2\)", "(60, 2)"),
    (r"rng, n = (.*), 500", r"rng, n = \1, 60"),
]


def _blocks(language: str, pages=(README,)) -> list[tuple[str, str]]:
    """``(page name, code)`` of every ``language`` block of ``pages``."""
    return [
        (page.name, code)
        for page in pages
        for code in re.findall(rf"```{language}\n(.*?)```", page.read_text(), flags=re.S)
    ]


def test_every_docs_page_is_in_the_table_of_contents():
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages == {p.name for p in PAGES[1:]}


def _small(code: str) -> str:
    for pattern, repl in SMALL:
        code = re.sub(pattern, repl, code)
    return code


@pytest.fixture
def namespace(groups):
    """The names the README's snippets assume: three arrays with holes, a batch, a support."""
    from pyro_factvae import FactVAE, GroupedData

    rng = np.random.default_rng(0)
    z = rng.standard_normal((40, 2))
    four = [torch.as_tensor(z @ rng.standard_normal((2, 4)), dtype=torch.float32) for _ in "ab"]
    train, test = GroupedData(groups).split(0.75)
    return {
        "core": groups["a"],
        "left": groups["b"],
        "right": groups["c"],
        "N": 40,
        "xs": four,
        "mask": torch.ones(40, 2, dtype=torch.bool),
        "support": np.array([[1, 0], [1, 1], [0, 1]], dtype=bool),
        "train": train,
        "test": test,
        "vae": FactVAE(latent_dim=2, lam=0.1),
    }


def test_readme_python_blocks_run(namespace, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the snippets write model.pt, run.ckpt, path.png
    blocks = _blocks("python", PAGES)
    assert len(blocks) >= 7
    for page, code in blocks:
        code = _small(code)
        try:
            exec(compile(code, page, "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page} block failed: {exc!r}\n{code}") from exc


@pytest.mark.parametrize("page", ["README.md", "cli.md"])
def test_shell_blocks_with_factvae_commands_run(tmp_path, page):
    (path,) = [p for p in PAGES if p.name == page]
    (block,) = [b for _, b in _blocks("bash", [path]) if "factvae fit" in b]
    commands = re.split(r"\n(?=factvae |python3 )", _small(block).strip())
    assert len(commands) == 6
    for command in commands:
        args = shlex.split(command, comments=command.startswith("factvae"))
        if args[0] == "python3":
            args[0] = sys.executable
        else:
            assert args[0] == "factvae"
            args = [sys.executable, "-m", "pyro_factvae.cli", *args[1:]]
        result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stderr}"
