"""Every code block of the README runs (at tiny sizes), so the README cannot drift from the code."""

import pathlib
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import torch

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
#: big numbers of the README made small: (pattern, replacement)
SMALL = [
    (r"epochs=\d+", "epochs=2"),
    (r"num_draws=\d+", "num_draws=20"),
    (r"num_rows=\d+", "num_rows=200"),
    (r"steps=\d+", "steps=20"),
    (r"--epochs \d+", "--epochs 1"),
    (r"range\(500, 2\)", "range(60, 2)"),
    (r"\(500, 2\)", "(60, 2)"),
]


def _blocks(language: str) -> list[str]:
    text = README.read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


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
    blocks = _blocks("python")
    assert len(blocks) >= 7
    for code in blocks:
        code = _small(code)
        try:
            exec(compile(code, "README.md", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"README block failed: {exc!r}\n{code}") from exc


def test_readme_shell_block_runs(tmp_path):
    (block,) = [b for b in _blocks("bash") if "factvae fit" in b]
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
