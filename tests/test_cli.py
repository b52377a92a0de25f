import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.cli import main, parse_groups


@pytest.fixture
def csv_with_holes(tmp_path, groups):
    """The conftest groups as a CSV; a missing group is a row of empty cells."""
    cols = {}
    for g, x in groups.items():
        for j in range(x.shape[1]):
            cols[f"{g}{j}"] = x[:, j]
    path = tmp_path / "data.csv"
    pd.DataFrame(cols).to_csv(path, index=False)
    spec = "a=a0,a1,a2;b=b0,b1,b2;c=c0,c1"
    return path, spec


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_round_trip_fit_impute_evaluate_sparsity_on_a_csv(tmp_path, csv_with_holes, capsys):
    data, spec = csv_with_holes
    model = tmp_path / "m.factvae"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "3"]
    assert main([*fit, "--latent-dim", "3", "--lam", "0.1", "--no-progress", "--json"]) == 0
    out = _json(capsys)
    assert out["groups"] == ["a", "b", "c"] and out["rows"] == 40 and model.exists()
    assert out["spread"] == FactVAE.load(model).spread_ >= 1.0  # measured on validation rows
    # the spec is stored with the model: no --groups needed from here on
    filled = tmp_path / "filled.csv"
    assert main(["impute", str(model), str(data), "-o", str(filled), "--json"]) == 0
    assert _json(capsys)["filled_groups"] == {"a": 1, "b": 3, "c": 1}
    before, after = pd.read_csv(data), pd.read_csv(filled)
    assert list(after.columns) == list(before.columns) and not after.isna().any().any()
    observed = before.notna()
    np.testing.assert_allclose(after[observed].fillna(0), before[observed].fillna(0), atol=1e-6)
    assert main(["evaluate", str(model), str(data), "--samples", "8", "--json"]) == 0
    metrics = _json(capsys)
    assert metrics.pop("units") == "standardized"
    assert set(metrics) == {"recon_ll", "iwae_ll", "cond_ll", "rmse", "mae", "crps"} | {
        f"coverage_{a}" for a in (50, 80, 90, 95)
    }
    assert all(np.isfinite(v) for v in metrics.values())
    # --refine-steps 0: the encoder's posterior behind the imputations, other errors
    cmd = ["evaluate", str(model), str(data), "--samples", "8", "--json", "--refine-steps"]
    assert main([*cmd, "0"]) == 0
    assert _json(capsys)["rmse"] != metrics["rmse"]
    assert main([*cmd, "-2"]) == 1
    assert "--refine-steps must be 0 or a positive integer" in capsys.readouterr().err
    assert main(["evaluate", str(model), str(data), "--samples", "8", "--raw"]) == 0
    assert "rmse" in (text := capsys.readouterr().out) and "in the data's units" in text
    png = tmp_path / "map.png"
    assert main(["sparsity", str(model), "--plot", str(png)]) == 0
    assert "z2" in capsys.readouterr().out and png.stat().st_size > 1000
    assert main(["sparsity", str(model), "--json"]) == 0
    assert np.asarray(_json(capsys)["column_norms"]).shape == (3, 3)


def test_npz_data_and_lambda_path(tmp_path, groups, capsys):
    path = tmp_path / "data.npz"
    np.savez(path, **groups)
    plot, model = tmp_path / "path.png", tmp_path / "best.factvae"
    argv = ["lambda-path", str(path), "--lams", "0,0.5", "--epochs", "2", "--latent-dim", "2"]
    assert main([*argv, "--plot", str(plot), "-o", str(model), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "<- chosen" in text and plot.stat().st_size > 1000 and model.exists()
    out = tmp_path / "filled.npz"
    assert main(["impute", str(model), str(path), "-o", str(out)]) == 0
    with np.load(out) as f:
        assert sorted(f.files) == ["a", "b", "c"] and np.isfinite(f["b"]).all()


def test_options_are_not_abbreviated(csv_with_holes, capsys):
    data, spec = csv_with_holes
    # a usage error (status 2): --lam is not taken for --lams
    assert main(["lambda-path", str(data), "--groups", spec, "--lam", "0.1"]) == 2
    assert "unrecognized arguments: --lam 0.1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["fit", "nope.csv"], "no such data file"),
        (["fit", "{data}"], "give --groups"),
        (["fit", "{data}", "--groups", "a=a0;b"], "malformed group spec 'b'"),
        (["fit", "{data}", "--groups", "a=a0,zz"], "no columns ['zz']"),
        (["fit", "{data}", "--groups", "{spec}", "--likelihood", "a=gamma"], "gamma"),
        (["fit", "{data}", "--groups", "{spec}", "--lam", "-1"], "lam must be"),
        (["sparsity", "missing.factvae"], "no such model file"),
        (["lambda-path", "{data}", "--groups", "{spec}", "--lams", "0,x"], "give numbers"),
        (["lambda-path", "{data}", "--groups", "{spec}", "--lams=-1,0"], "--lams must be"),
        (
            ["lambda-path", "{data}", "--groups", "{spec}", "--device", "gpu"],
            "device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
        ),
        (["fit", "{data}", "--groups", "{spec}", "--batch-size", "0"], "--batch-size must be"),
        (["fit", "{data}", "--groups", "{spec}", "--latent-dim", "0"], "--latent-dim must be"),
        (["fit", "{data}", "--groups", "{spec}", "--checkpoint-every", "5"], "needs --checkpoint"),
        (  # refused before anything is written or read
            ["impute", "m.factvae", "{data}", "-o", "x.csv", "--samples", "0", "--draws", "2"],
            "--samples must be a positive integer with --draws or --interval",
        ),
        (["impute", "m.factvae", "{data}", "-o", "x.csv", "--samples", "-1"], "0 or a positive"),
    ],
)
def test_user_errors_are_one_line(argv, message, csv_with_holes, capsys):
    data, spec = csv_with_holes
    argv = [a.format(data=data, spec=spec) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("factvae: error:") and message in err and len(err.splitlines()) == 1


def test_group_spec_from_json_file_and_mismatch_with_model(tmp_path, csv_with_holes, capsys):
    data, spec = csv_with_holes
    spec_file = tmp_path / "groups.json"
    spec_file.write_text(json.dumps(parse_groups(spec)))
    model = tmp_path / "m.factvae"
    fit = ["fit", str(data), "--groups", str(spec_file), "-o", str(model), "--epochs", "1"]
    assert main([*fit, "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["impute", str(model), str(data), "--groups", "a=a0", "-o", "x.csv"]) == 1
    assert "fitted on groups ['a', 'b', 'c']" in capsys.readouterr().err
    spec_file.write_text("{not json")
    assert main(["fit", str(data), "--groups", str(spec_file)]) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_console_script_runs_as_a_subprocess(tmp_path, csv_with_holes):
    data, spec = csv_with_holes
    model = tmp_path / "m.factvae"
    exe = shutil.which("factvae")  # the console script of an installed package
    cmd = [exe] if exe else [sys.executable, "-m", "pyro_factvae.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run(
        [*cmd, "fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["model"] == str(model)
    bad = subprocess.run(
        [*cmd, "evaluate", str(model), str(tmp_path / "none.csv")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"factvae: error: no such data file: {tmp_path / 'none.csv'}"
    module = subprocess.run(  # as torchrun starts it
        [sys.executable, "-m", "pyro_factvae.cli", "evaluate", str(model), "none.csv"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert module.returncode == 1 and module.stderr.startswith("factvae: error: no such data")


def _sigint_after_the_second_step(monkeypatch):
    """A SIGINT, as Ctrl-C sends, once the second training step is done."""
    import signal

    import pyro_factvae.infer.loop as train_module

    original = train_module.guarded_step

    def stop_at_second(*args, **kwargs):
        out = original(*args, **kwargs)
        if args[-1].step == 1:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(train_module, "guarded_step", stop_at_second)


def test_fit_interrupted_exits_non_zero_with_how_to_resume(
    tmp_path, csv_with_holes, capsys, monkeypatch
):
    data, spec = csv_with_holes
    _sigint_after_the_second_step(monkeypatch)
    ckpt, model = tmp_path / "run.ckpt", tmp_path / "m.factvae"
    argv = [
        "fit",
        str(data),
        "--groups",
        spec,
        "-o",
        str(model),
        "--epochs",
        "2",
        "--lam",
        "1",
        "--checkpoint",
        str(ckpt),
        "--no-progress",
    ]
    assert main(argv) == 130
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"--resume {ckpt}" in err and not model.exists()
    monkeypatch.undo()
    hint = err.split("resume with: ")[1].split()  # run the hint exactly as printed
    assert hint[:2] == ["factvae", "fit"] and "--groups" not in hint
    # settings that differ from the checkpoint's are refused, not silently dropped
    assert main([*hint[1:], "--epochs", "5", "--lam", "0.5", "--no-progress"]) == 1
    assert "differ from it: --epochs 5 (file: 2)" in capsys.readouterr().err
    assert main([*hint[1:], "--lam", "0.5", "--no-progress"]) == 1
    assert "(these differ from the file: --lam 0.5 (file: 1" in capsys.readouterr().err
    assert not model.exists()
    assert main([*hint[1:], "--no-progress"]) == 0
    assert model.exists()
    assert main(["fit", str(data), "--groups", spec, "--resume", str(tmp_path / "none")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    _sigint_after_the_second_step(monkeypatch)  # no checkpoint: one line, that nothing was kept
    assert main([a for a in argv if a not in ("--checkpoint", str(ckpt))]) == 130
    err = capsys.readouterr().err.strip()
    assert err.endswith("nothing was saved; give --checkpoint PATH to be able to resume")
    assert len(err.splitlines()) == 1


def test_a_fit_whose_log_cannot_be_written_stops_resumable(tmp_path, csv_with_holes, capsys):
    import shlex

    data, spec = csv_with_holes
    logs, ckpt, model = tmp_path / "my logs", tmp_path / "my run.ckpt", tmp_path / "m.factvae"
    (logs / "history.csv").mkdir(parents=True)  # the CSV log cannot be opened as a file
    argv = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "3", "--lam", "1"]
    argv += ["--checkpoint", str(ckpt), "--no-progress", "--log-dir", str(logs)]
    assert main([*argv, "--drop-empty-rows"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("factvae: error: writing the logs failed") and len(err.splitlines()) == 1
    assert ckpt.exists() and not model.exists()
    (logs / "history.csv").rmdir()
    hint = shlex.split(err.split("resume with: ")[1])  # run as printed, paths with spaces
    assert hint[0] == "factvae" and "--drop-empty-rows" in hint and str(logs) in hint
    assert main(hint[1:]) == 0 and model.exists() and (logs / "history.csv").is_file()


def test_under_torchrun_the_resume_hint_names_torchrun(
    tmp_path, csv_with_holes, capsys, monkeypatch
):
    import pyro_factvae.infer.distributed as distributed

    monkeypatch.setenv("WORLD_SIZE", "2")  # the process group itself is not started here
    monkeypatch.setattr(distributed, "init_from_env", lambda *a, **k: True)
    data, spec = csv_with_holes
    logs = tmp_path / "logs"
    (logs / "history.csv").mkdir(parents=True)
    argv = ["fit", str(data), "--groups", spec, "-o", str(tmp_path / "m"), "--epochs", "2"]
    argv += ["--lam", "1", "--checkpoint", str(tmp_path / "c"), "--log-dir", str(logs)]
    assert main([*argv, "--no-progress"]) == 1
    hint = "resume with: torchrun --standalone --nproc_per_node 2 -m pyro_factvae.cli fit"
    assert hint in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "4")  # two nodes of two processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert main([*argv, "--no-progress"]) == 1
    hint = "torchrun --nnodes 2 --nproc_per_node 2 (and the run's rendezvous options) -m"
    assert hint in capsys.readouterr().err


def test_group_names_with_spaces_in_the_csv_spec_and_empty_rows(tmp_path, groups, capsys):
    frame = pd.DataFrame(
        {
            "left arm x": groups["a"][:, 0],
            "left arm y": groups["a"][:, 1],
            "IgG.1": groups["b"][:, 0],
        }
    )
    frame.iloc[7] = np.nan  # a row with nothing observed
    data = tmp_path / "d.csv"
    frame.to_csv(data, index=False)
    spec = "left arm=left arm x,left arm y;IgG.1=IgG.1"
    model = tmp_path / "m.factvae"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1", "--no-progress"]
    assert main(fit) == 1
    err = capsys.readouterr().err  # a fix that works from the shell, not a Python one
    assert "a row of" in err and "(data rows [7], counted from 0)" in err
    assert "--drop-empty-rows" in err and "GroupedData" not in err and "dropna" not in err
    # a bad option's value is named before the data's problems, not after they are fixed
    for option, value in [("--lam", "-1"), ("--latent-dim", "0"), ("--batch-size", "0")]:
        assert main([*fit, option, value]) == 1
        assert f"{option} must be" in capsys.readouterr().err
    assert main([*fit[:-3], "--epochs", "0"]) == 1
    assert "--epochs must be a positive integer" in capsys.readouterr().err
    every = ["--checkpoint", str(tmp_path / "c.ckpt"), "--checkpoint-every", "0"]
    assert main([*fit, *every]) == 1
    assert "--checkpoint-every must be a positive integer" in capsys.readouterr().err
    assert main([*fit, "--drop-empty-rows", "--json"]) == 0
    assert _json(capsys)["groups"] == ["left arm", "IgG.1"]
    out = tmp_path / "filled.csv"
    nowhere = ["impute", str(model), str(tmp_path / "nope.csv"), "-o", str(out)]
    assert main([*nowhere, "--draws", "0"]) == 1  # the option is named before the data
    assert "--draws must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["impute", str(model), str(data), "-o", str(out)]) == 0
    filled = pd.read_csv(out)
    assert not filled.isna().any().any()  # the empty row gets prior-predictive means


def test_json_output_is_strict_json_with_null_for_missing_numbers(tmp_path, capsys):
    path = tmp_path / "one.npz"
    np.savez(path, only=np.random.default_rng(0).standard_normal((30, 3)))
    model = tmp_path / "m.factvae"
    assert main(["fit", str(path), "-o", str(model), "--epochs", "1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(path), "--samples", "4", "--json"]) == 0
    text = capsys.readouterr().out
    metrics = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert metrics["cond_ll"] is None and metrics["rmse"] is None  # nothing to hold out


def test_impute_writes_observed_csv_cells_back_unchanged(tmp_path, csv_with_holes, capsys):
    data, spec = csv_with_holes
    model, out = tmp_path / "m.factvae", tmp_path / "sub" / "dir" / "filled.csv"
    assert main(["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1"]) == 0
    assert main(["impute", str(model), str(data), "-o", str(out)]) == 0  # folders created
    before = (data).read_text().splitlines()
    after = out.read_text().splitlines()
    for a, b in zip(before[1:], after[1:]):
        for x, y in zip(a.split(","), b.split(",")):
            assert x == "" or x == y  # observed cells: the same text
    assert main(["impute", str(model), str(data), "-o", str(tmp_path / "x.parquet")]) == 1
    assert "unknown format '.parquet'" in capsys.readouterr().err
    # a numeric column in no group keeps its text where it is empty or NA
    extra = pd.read_csv(data, dtype=str, keep_default_na=False)
    extra["score"] = ["NA", "", "null", "1.5"] * (len(extra) // 4) + ["2"] * (len(extra) % 4)
    scored = tmp_path / "scored.csv"
    extra.to_csv(scored, index=False)
    assert main(["impute", str(model), str(scored), "-o", str(out)]) == 0
    assert (
        pd.read_csv(out, dtype=str, keep_default_na=False)["score"].tolist()
        == extra["score"].tolist()
    )
    # --refine-steps 0: the encoder's posterior, other fills than the refined default
    plain = tmp_path / "plain.csv"
    assert main(["impute", str(model), str(data), "-o", str(plain), "--refine-steps", "0"]) == 0
    assert plain.read_text() != out.read_text()
    assert main(["impute", str(model), str(data), "-o", str(plain), "--refine-steps", "-1"]) == 1
    assert "--refine-steps must be 0 or a positive integer" in capsys.readouterr().err


def test_sparsity_json_reports_the_plot_path(tmp_path, csv_with_holes, capsys):
    data, spec = csv_with_holes
    model, png = tmp_path / "m.factvae", tmp_path / "plots" / "map.png"
    assert main(["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["sparsity", str(model), "--json", "--plot", str(png)]) == 0
    assert _json(capsys)["plot"] == str(png) and png.exists()


def test_a_mistyped_group_spec_file_is_named_as_missing():
    from pyro_factvae.cli_io import UserError

    with pytest.raises(UserError, match="no such group spec file: nosuch.json"):
        parse_groups("nosuch.json")


def test_cli_messages_name_the_columns_and_npz_output_keeps_ids_and_names(
    tmp_path, csv_with_holes, capsys
):
    data, spec = csv_with_holes
    frame = pd.read_csv(data)
    frame.insert(0, "id", [f"s{i}" for i in range(len(frame))])
    frame.insert(1, "file", np.arange(len(frame)))  # a name np.savez keeps for itself
    frame.to_csv(data, index=False)
    model = tmp_path / "m.factvae"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "2", "--lam", "0.1"]
    assert main([*fit, "--no-progress"]) == 0
    capsys.readouterr()
    # a CSV without a column the model needs: no "DataFrame", and the columns it expects
    short = tmp_path / "short.csv"
    frame.drop(columns=["c1"]).to_csv(short, index=False)
    assert main(["impute", str(model), str(short), "-o", str(tmp_path / "x.csv")]) != 0
    err = capsys.readouterr().err
    assert "DataFrame" not in err.replace("a DataFrame's columns", "")
    assert "no columns ['c1']" in err and "c = [c0, c1]" in err and "a = [a0, a1, a2]" in err
    # .npz output of a CSV: the id column and each group's column names come along
    out = tmp_path / "filled.npz"
    assert main(["impute", str(model), str(data), "-o", str(out)]) == 0
    with np.load(out, allow_pickle=False) as z:
        assert list(z["id"]) == list(frame["id"]) and list(z["c_columns"]) == ["c0", "c1"]
        assert list(z["file"]) == list(frame["file"])  # under its own name
        assert z["a"].shape == (len(frame), 3) and not np.isnan(z["a"]).any()
    draws = tmp_path / "draws.npz"
    assert main(["impute", str(model), str(data), "-o", str(draws), "--draws", "3"]) == 0
    with np.load(draws, allow_pickle=False) as z:
        assert z["a"].shape == (3, len(frame), 3) and list(z["a_columns"]) == ["a0", "a1", "a2"]
    # a model file cut short says so
    cut = tmp_path / "cut.factvae"
    cut.write_bytes(model.read_bytes()[:300])
    assert main(["impute", str(cut), str(data), "-o", str(tmp_path / "y.csv")]) != 0
    assert "truncated or corrupt" in capsys.readouterr().err


def test_fit_without_out_keeps_an_earlier_model(tmp_path, csv_with_holes, capsys, monkeypatch):
    data, spec = csv_with_holes
    monkeypatch.chdir(tmp_path)
    fit = ["fit", str(data), "--groups", spec, "--epochs", "2", "--no-progress"]
    assert main(fit) == 0 and (tmp_path / "model.factvae").exists()
    before = (tmp_path / "model.factvae").read_bytes()
    capsys.readouterr()
    assert main([*fit, "--lam", "0.5"]) == 1  # not replaced unasked
    err = capsys.readouterr().err
    assert "model.factvae exists" in err and "-o model.factvae to replace it" in err
    assert (tmp_path / "model.factvae").read_bytes() == before
    assert main([*fit, "--lam", "0.5", "-o", "model.factvae"]) == 0  # named: replaced
    assert (tmp_path / "model.factvae").read_bytes() != before


def test_npz_groups_in_any_order_come_back_in_their_dtypes(tmp_path, groups, capsys):
    path, model = tmp_path / "data.npz", tmp_path / "m.factvae"
    np.savez(path, **groups)
    fit = ["fit", str(path), "-o", str(model), "--epochs", "2", "--latent-dim", "2"]
    assert main([*fit, "--lam", "0.1", "--no-progress"]) == 0
    capsys.readouterr()
    shuffled = tmp_path / "shuffled.npz"  # other key order, one float32 group
    given = {"c": groups["c"].astype(np.float32), "b": groups["b"], "a": groups["a"]}
    np.savez(shuffled, **given)
    out = tmp_path / "filled.npz"
    assert main(["impute", str(model), str(shuffled), "-o", str(out), "--json"]) == 0
    assert _json(capsys)["filled_groups"] == {"a": 1, "b": 3, "c": 1}
    with np.load(out) as f:
        assert f["c"].dtype == np.float32 and f["a"].dtype == np.float64
        seen = ~np.isnan(given["c"])
        assert np.array_equal(f["c"][seen], given["c"][seen]) and np.isfinite(f["c"]).all()
    assert main(["evaluate", str(model), str(shuffled), "--samples", "8", "--json"]) == 0
    assert np.isfinite(_json(capsys)["rmse"])
    # a model fitted on some of a file's arrays reads those again, and says what it lacks
    picked = tmp_path / "ba.factvae"
    fit = ["fit", str(path), "--groups", "b=x;a=y", "-o", str(picked), "--epochs", "2"]
    assert main([*fit, "--lam", "0.1", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["impute", str(picked), str(shuffled), "-o", str(out), "--json"]) == 0
    assert _json(capsys)["filled_groups"] == {"b": 3, "a": 1}
    np.savez(shuffled, a=groups["a"])
    assert main(["impute", str(picked), str(shuffled), "-o", str(out)]) == 1
    assert "lacks the arrays ['b'] of the groups the model was fitted on" in capsys.readouterr().err


def test_npz_impute_builds_the_data_once_and_gives_every_output_back_as_read(
    tmp_path, groups, capsys, monkeypatch
):
    from pyro_factvae import GroupedData

    path, model = tmp_path / "data.npz", tmp_path / "m.factvae"
    given = {"a": groups["a"], "b": groups["b"], "c": groups["c"][:, 0]}  # a 1-D group
    np.savez(path, **given)
    fit = ["fit", str(path), "-o", str(model), "--epochs", "2", "--latent-dim", "2"]
    assert main([*fit, "--lam", "0.1", "--no-progress"]) == 0
    capsys.readouterr()
    given["b"] = given["b"].astype(np.float32)
    np.savez(path, **given)
    built = []
    real = GroupedData.__init__
    monkeypatch.setattr(
        GroupedData, "__init__", lambda self, *a, **k: built.append(1) or real(self, *a, **k)
    )
    out = tmp_path / "filled.npz"
    cmd = ["impute", str(model), str(path), "-o", str(out), "--draws", "2", "--interval", "0.9"]
    assert main(cmd) == 0
    assert len(built) == 1  # read and checked once, not again for each query
    for name in (out, tmp_path / "filled_lower.npz", tmp_path / "filled_upper.npz"):
        with np.load(name) as f:
            lead = (2,) if name == out else ()  # the draws' leading axis
            for g, a in given.items():
                assert f[g].dtype == a.dtype and f[g].shape == lead + a.shape, (name, g)
                seen = ~np.isnan(a)
                assert all(np.array_equal(v[seen], a[seen]) for v in f[g].reshape(-1, *a.shape))
    wide = ["impute", str(model), str(path), "-o", str(out), "--interval", "0.999"]
    assert main([*wide, "--samples", "20", "--refine-steps", "1"]) == 0  # 2,000 draws, not 1,000
    assert main([*wide[:-1], "1.5"]) == 1
    assert "--interval: level must be in (0, 1), got 1.5" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_fit_refuses_a_device_it_lacks_before_setting_up_torchrun(tmp_path, capsys, monkeypatch):
    import pyro_factvae.infer.distributed as distributed

    started = []
    monkeypatch.setattr(distributed, "init_from_env", lambda *a, **k: started.append(a))
    path = tmp_path / "d.npz"
    np.savez(path, a=np.ones((10, 2)), b=np.zeros((10, 2)))
    assert main(["fit", str(path), "--lam", "0.1", "--device", "cuda", "-o", "m.factvae"]) == 1
    assert "needs CUDA" in capsys.readouterr().err and started == []


def test_an_interrupted_torchrun_fit_is_reported_by_rank_0_alone(
    tmp_path, csv_with_holes, capsys, monkeypatch
):
    import pyro_factvae.infer.distributed as distributed

    _sigint_after_the_second_step(monkeypatch)
    monkeypatch.setattr(distributed, "is_writer", lambda: False)  # as rank 1 of a run
    data, spec = csv_with_holes
    argv = ["fit", str(data), "--groups", spec, "-o", str(tmp_path / "m"), "--epochs", "2"]
    assert main([*argv, "--lam", "1", "--checkpoint", str(tmp_path / "c")]) == 130
    assert capsys.readouterr().err == ""
    import pyro_factvae.cli_commands as commands
    from pyro_factvae.cli_io import Interrupted

    def stopped_elsewhere(*args, **kwargs):  # rank 0's log failed: this rank stops too
        raise Interrupted("interrupted by callback", "callback")

    monkeypatch.setattr(commands, "read_data", stopped_elsewhere)
    assert main(argv) == 1 and capsys.readouterr().err == ""


def test_draws_of_a_csv_with_a_draw_column_and_interval_paths_checked_first(
    tmp_path, csv_with_holes, capsys
):
    data, spec = csv_with_holes
    model = tmp_path / "m.factvae"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "2", "--lam", "1"]
    assert main([*fit, "--no-progress"]) == 0
    frame = pd.read_csv(data).assign(draw=7)  # the data's own column named draw
    frame.to_csv(data, index=False)
    out = tmp_path / "f.csv"
    query = ["--samples", "10", "--refine-steps", "1"]
    assert main(["impute", str(model), str(data), "-o", str(out), "--draws", "2", *query]) == 0
    written = pd.read_csv(out)
    assert list(written.columns[:1]) == ["draw_"] and (written["draw"] == 7).all()
    assert sorted(written["draw_"].unique()) == [1, 2]
    capsys.readouterr()
    (tmp_path / "g_lower.csv").mkdir()  # where the lower bounds would go
    cmd = ["impute", str(model), str(data), "-o", str(tmp_path / "g.csv"), "--interval", "0.9"]
    assert main([*cmd, *query]) == 1
    assert "g_lower.csv' is a folder" in capsys.readouterr().err
    assert not (tmp_path / "g.csv").exists()  # refused before anything was written


def test_cli_messages_speak_in_options_and_ctrl_c_outside_training_is_one_line(
    tmp_path, csv_with_holes, capsys, monkeypatch
):
    import pyro_factvae.cli_commands as commands

    data, spec = csv_with_holes
    base = ["fit", str(data), "--groups", spec, "-o", str(tmp_path / "m"), "--epochs", "1"]
    assert main([*base, "--seed", str(2**70)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("factvae: error: --seed must be an integer")
    empty = pd.read_csv(data)
    empty.iloc[3] = np.nan
    empty.to_csv(data, index=False)
    path = ["lambda-path", str(data), "--groups", spec, "--lams", "0,1", "--epochs", "2"]
    assert main(path) == 1 and "--drop-empty-rows" in capsys.readouterr().err
    assert main([*path, "--drop-empty-rows", "--json"]) == 0
    capsys.readouterr()
    one = ["fit", str(data), "--groups", spec.split(";")[0], "-o", str(tmp_path / "one")]
    assert main([*one, "--epochs", "1", "--drop-empty-rows", "--no-progress"]) == 0
    said = capsys.readouterr()
    assert "fell back to lam=0" in said.err and "factvae fit --lam 0.1" in said.err
    assert "lam 0 (lam auto's fallback: no lam could be scored" in said.out

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands, "read_data", interrupted)
    assert main(base) == 130
    assert capsys.readouterr().err == "factvae: interrupted\n"


def test_a_csv_with_another_separator_is_named_with_its_file_and_header(tmp_path, capsys):
    fit = ["fit", "", "--groups", "a=x0,x1;b=x2,x3", "-o", str(tmp_path / "m")]
    semi = tmp_path / "semi.csv"
    semi.write_text("x0;x1;x2;x3\n1;2;3;4\n5;6;7;8\n")
    fit[1] = str(semi)
    assert main(fit) == 1
    err = capsys.readouterr().err
    assert "semi.csv: its header is one field, 'x0;x1;x2;x3': are its fields separated" in err


def test_no_output_path_may_be_a_file_the_command_reads(tmp_path, csv_with_holes, capsys):
    data, spec = csv_with_holes
    before = data.read_bytes()
    fit = ["fit", str(data), "--groups", spec, "--epochs", "2", "--lam", "0.1", "--no-progress"]
    model = str(tmp_path / "m.factvae")
    same = str(tmp_path / "." / "data.csv")  # the same file, spelt otherwise
    for argv in (
        [*fit, "-o", same],
        [*fit, "-o", model, "--checkpoint", same],
        ["impute", model, str(data), "-o", same],
        ["impute", model, str(data), "-o", str(tmp_path / "out.csv"), "--interval", "0.9"],
    ):
        if argv[0] == "impute" and not os.path.exists(model):
            assert main([*fit, "-o", model]) == 0
        code = main(argv)
        err = capsys.readouterr().err
        if "--interval" in argv:  # its bounds' files are new ones: written
            assert code == 0
            continue
        assert code == 1 and "is a file this command reads; give another path" in err
    assert data.read_bytes() == before
    spec_file = tmp_path / "spec.json"  # a --groups file is read too
    spec_file.write_text(json.dumps({"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}))
    assert main([*fit[:2], "--groups", str(spec_file), *fit[4:], "-o", str(spec_file)]) == 1
    assert "is a file this command reads" in capsys.readouterr().err
    linked = tmp_path / "linked.csv"  # a hard link: the same file under another name
    os.link(data, linked)
    assert main(["impute", model, str(data), "-o", str(linked)]) == 1
    assert "is a file this command reads" in capsys.readouterr().err
    assert main([*fit, "-o", model, "--checkpoint", model]) == 1  # two outputs, one path
    assert "--out " + model + " is also --checkpoint's path" in capsys.readouterr().err
    ckpt = str(tmp_path / "run.ckpt")  # a resumed run may go on checkpointing where it was
    assert main([*fit, "-o", model, "--checkpoint", ckpt]) == 0
    assert main([*fit[:2], "-o", model, "--resume", ckpt, "--checkpoint", ckpt]) == 0
    assert data.read_bytes() == before


def test_npz_output_keeps_groups_named_as_numpy_savez_arguments(tmp_path, groups, capsys):
    from pyro_factvae.cli_io import save_npz

    data = tmp_path / "d.npz"  # numpy.savez cannot write these names: its own arguments'
    save_npz(str(data), {"file": groups["a"], "allow_pickle": groups["b"]})
    model, out = str(tmp_path / "m.factvae"), str(tmp_path / "out.npz")
    fit = ["fit", str(data), "--epochs", "2", "--lam", "0.1", "--no-progress", "-o", model]
    assert main(fit) == 0
    assert main(["impute", model, str(data), "-o", out, "--samples", "8"]) == 0
    filled = np.load(out)
    assert sorted(filled.files) == ["allow_pickle", "file"]
    observed = ~np.isnan(groups["a"])
    np.testing.assert_array_equal(filled["file"][observed], groups["a"][observed])
    assert not np.isnan(filled["allow_pickle"]).any()


def test_resuming_from_a_folder_that_cannot_be_written_names_checkpoint(
    tmp_path, csv_with_holes, capsys, monkeypatch
):
    data, spec = csv_with_holes
    folder = tmp_path / "shared"
    ckpt, model = str(folder / "run.ckpt"), str(tmp_path / "m.factvae")
    fit = ["fit", str(data), "--epochs", "2", "--lam", "0.1", "--no-progress", "-o", model]
    assert main([*fit, "--groups", spec, "--checkpoint", ckpt]) == 0
    capsys.readouterr()
    writable = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(folder) and writable(p, mode))
    assert main([*fit, "--resume", ckpt]) == 1
    err = capsys.readouterr().err
    assert "its folder is not writable; give --checkpoint PATH to checkpoint elsewhere" in err
    assert main([*fit, "--resume", ckpt, "--checkpoint", str(tmp_path / "mine.ckpt")]) == 0
