import os
import runpy

import numpy as np
import pytest

from pyro_factvae.datasets.mocap import MOCAP6_CHANNELS

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def _example(name):
    """The example script's namespace (examples import only the package, not each other)."""
    return runpy.run_path(os.path.join(EXAMPLES, name))


def test_bars_example_runs_and_writes_figures(tmp_path, capsys):
    bars = _example("bars.py")
    results = bars["main"](["--n", "300", "--epochs", "1", "--out", str(tmp_path), "--no-progress"])
    assert set(results) == {0.0, 0.2}  # lam = 0 and the example's lam
    assert all(np.isfinite(r["rmse"]) for r in results.values())
    for name in ("sparsity_lam0.png", "sparsity_lam0.2.png", "right_from_left.png"):
        assert (tmp_path / name).stat().st_size > 1000
    out = capsys.readouterr().out
    assert "top_left" in out and "RMSE ratio" in out


def test_mocap_example_runs_table1_protocol_on_a_mocap6_file(tmp_path, capsys):
    names = np.array([c.encode() for c in MOCAP6_CHANNELS])
    t = np.arange(6 * 40)
    x = np.sin(np.outer(t / 7.0, np.arange(1, 13))) * 10
    path = tmp_path / "dataset.npz"
    np.savez(path, X=x, column_names=np.array(names), doc_range=np.arange(0, 241, 40))
    rows = _example("mocap.py")["main"](
        [
            "--data",
            str(path),
            "--steps",
            "10",
            "--samples",
            "4",
            "--sizes",
            "2",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    # the sizes in order, so that the maps shown are of the largest training set
    assert [(r["train_sequences"], r["method"]) for r in rows] == [
        (s, m) for s in (1, 2) for m in ("factvae", "lam0", "jmvae+")
    ]
    assert all(np.isfinite(r["recon_ll"]) and r["rmse"] > 0 for r in rows)
    for name in ("mocap_table1.json", "mocap_sparsity.png", "mocap_from_core.png"):
        assert (tmp_path / name).stat().st_size > 500
    assert "right_arm" in capsys.readouterr().out


def test_digits_example_compares_three_methods(tmp_path, capsys):
    rows = _example("digits.py")["main"](
        ["--steps", "10", "--samples", "4", "--out", str(tmp_path)]
    )
    assert [r["method"] for r in rows] == ["factvae", "lam0", "jmvae+"]
    assert all(r["mean_rmse"] > 0 and np.isfinite(r["cond_ll"]) for r in rows)
    assert (tmp_path / "digits_bottom_from_top.png").stat().st_size > 1000
    for bad, says in (
        (["--missing", "2"], "--missing is a probability"),
        (["--steps", "0"], "--steps"),
    ):
        with pytest.raises(SystemExit):
            _example("digits.py")["main"](bad + ["--out", str(tmp_path)])
        assert says in capsys.readouterr().err


def test_views_example_runs_on_small_idx_files(tmp_path):
    from .test_images import write_idx

    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 12)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    metrics = _example("views.py")["main"](
        [
            "--fashion-dir",
            str(tmp_path),
            "--train",
            "40",
            "--test",
            "12",
            "--epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert np.isfinite(metrics["rmse"]) and metrics["mean_rmse"] > 0
    assert (tmp_path / "views_grid.png").stat().st_size > 1000
    complete = tmp_path / "complete"  # no training row misses a view: that panel is left out
    base = ["--fashion-dir", str(tmp_path), "--train", "40", "--test", "12", "--epochs", "1"]
    _example("views.py")["main"]([*base, "--missing", "0", "--out", str(complete)])
    assert (complete / "views.json").exists() and (complete / "views_grid.png").exists()


def test_mocap_example_runs_the_paper_protocol_on_cmu_files(tmp_path):
    from .test_mocap import ASF, amc_text, frames

    (tmp_path / "07.asf").write_text(ASF)
    for trial in range(1, 12):
        (tmp_path / f"07_{trial:02d}.amc").write_text(amc_text(frames(6, trial)))
    rows = _example("mocap.py")["main"](
        [
            "--cmu",
            str(tmp_path),
            "--steps",
            "3",
            "--samples",
            "2",
            "--sizes",
            "1",
            "10",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert [r["train_sequences"] for r in rows] == [1] * 3 + [10] * 3
    assert [r["frames"] for r in rows] == [6] * 3 + [60] * 3
    assert (tmp_path / "out" / "mocap_from_core.png").exists()


def test_example_options_that_would_train_nothing_are_refused(capsys):
    import pytest

    from pyro_factvae.tools.experiments import bars_run

    with pytest.raises(SystemExit):
        _example("mocap.py")["main"](["--steps", "0"])
    assert "--steps must be positive, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        bars_run(0.1, 0, n=50, progress=False, epochs=0)


def test_example_options_out_of_range_are_refused_before_any_work(tmp_path, capsys):
    import pytest

    refused = [
        ("bars.py", ["--lam", "-1"], "--lam must be a finite number > 0"),
        ("bars.py", ["--lam", "inf"], "--lam must be a finite number > 0"),
        ("bars.py", ["--n", "0"], "--n must be positive, got 0"),
        ("composition.py", ["--labelled", "1.5"], "--labelled is a fraction in (0, 1]"),
        ("views.py", ["--train", "-5"], "--train must be positive, got -5"),
        ("views.py", ["--test", "0"], "--test must be positive, got 0"),
        ("views.py", ["--missing", "1.5"], "--missing must be a fraction in [0, 1], got 1.5"),
    ]
    for script, argv, message in refused:
        with pytest.raises(SystemExit):
            _example(script)["main"]([*argv, "--out", str(tmp_path / "out")])
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written
    names = np.array([c.encode() for c in MOCAP6_CHANNELS])
    x = np.sin(np.outer(np.arange(240) / 7.0, np.arange(1, 13)))
    path = tmp_path / "dataset.npz"
    np.savez(path, X=x, column_names=names, doc_range=np.arange(0, 241, 40))
    with pytest.raises(SystemExit):
        _example("mocap.py")["main"](["--data", str(path), "--sizes", "9"])
    assert "--sizes: the data have 5 training sequences" in capsys.readouterr().err


def test_the_experiments_rmse_is_over_every_entry_of_groups_of_any_width():
    from pyro_factvae import GroupedData
    from pyro_factvae.tools.experiments import rmse

    test = GroupedData({"a": np.zeros((3, 2)), "b": np.zeros((3, 1))})
    pred = {"a": np.ones((3, 2)), "b": np.full((3, 1), 2.0)}
    assert rmse(pred, test) == pytest.approx(np.sqrt((6 * 1.0 + 3 * 4.0) / 9))


@pytest.mark.parametrize(
    "script", ["bars.py", "digits.py", "composition.py", "mocap.py", "views.py"]
)
def test_example_arguments_that_cannot_run_are_usage_errors(script, tmp_path, capsys):
    main = _example(script)["main"]
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for args, says in (
        (["--lam", "nan"], "--lam must be a finite number"),
        (["--out", str(blocker / "out")], "cannot make the folder"),
    ):
        with pytest.raises(SystemExit) as stop:
            main([*args, "--out", str(tmp_path / "o")] if "--out" not in args else args)
        assert stop.value.code == 2 and says in capsys.readouterr().err


def test_example_data_that_cannot_be_read_are_usage_errors(tmp_path, capsys):
    cases = (
        ("mocap.py", ["--data", str(tmp_path / "nope.npz")], "--data PATH"),
        ("views.py", ["--fashion-dir", str(tmp_path / "none")], "--fashion-dir"),
        ("views.py", ["--cvl", str(tmp_path), "--train", "10"], "--cvl takes none"),
        ("views.py", ["--cvl", str(tmp_path / "none")], "no folder"),
        ("views.py", ["--test-subjects", "0"], "--test-subjects must be positive"),
        ("composition.py", ["--labelled", "1e-9"], "keeps no labelled training row"),
    )
    for script, args, says in cases:
        with pytest.raises(SystemExit) as stop:
            _example(script)["main"]([*args, "--out", str(tmp_path / "o")])
        assert stop.value.code == 2 and says in capsys.readouterr().err, (script, args)


def test_a_negative_seed_splits_the_digits_reproducibly():
    split = _example("digits.py")["split"]
    a, _ = split(0.25, -1)
    b, _ = split(0.25, -1)
    assert np.array_equal(a.to_numpy()["top_left"], b.to_numpy()["top_left"], equal_nan=True)
