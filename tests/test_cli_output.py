"""What ``factvae`` writes: CSV cells as a person reads them, warnings as one line."""

import numpy as np
import pandas as pd
import pytest

from pyro_factvae import FactVAE
from pyro_factvae.cli import main


def _table(tmp_path):
    """Integer columns with holes, beside a float column, under a blank index header (what
    ``DataFrame.to_csv`` writes with its index)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 9, (40, 4)).astype(float)
    x[:, 3] = rng.normal(size=40) / 7 + 5
    x[rng.random((40, 4)) < 0.2] = np.nan
    x[0] = np.nan  # a row with nothing observed: prior-predictive means
    x[0, 0] = 3.0
    path = tmp_path / "d.csv"
    pd.DataFrame(x, columns=list("abcd")).to_csv(path)
    text = path.read_text().replace(".0,", ",").replace(".0\n", "\n")  # integers as "8"
    path.write_text(text)
    return path, "g=a,b;h=c,d"


def test_impute_csv_keeps_the_header_and_integers_and_writes_float32_digits(tmp_path, capsys):
    data, spec = _table(tmp_path)
    model, out = tmp_path / "m.factvae", tmp_path / "out.csv"
    argv = ["fit", str(data), "--groups", spec, "-o", str(model), "--lam", "0.1"]
    assert main([*argv, "--epochs", "2"]) == 0
    assert main(["impute", str(model), str(data), "-o", str(out), "--seed", "3"]) == 0
    before, after = data.read_text().splitlines(), out.read_text().splitlines()
    assert before[0] == after[0] == ",a,b,c,d"  # not "Unnamed: 0"
    frame = pd.read_csv(data)
    expected = FactVAE.load(model).impute(frame, seed=3)
    for i, (a, b) in enumerate(zip(before[1:], after[1:])):
        for j, (x, y) in enumerate(zip(a.split(","), b.split(","))):
            if x:
                assert y == x  # an observed cell: its text, "8" included
                continue
            column = frame.columns[j]
            assert y and len(y.replace("-", "").replace(".", "")) <= 9  # float32's digits
            assert np.float32(float(y)) == np.float32(expected[column].iloc[i])
    # cells written "8.0", an Excel CSV's byte-order mark: the text as read, the header blank
    text = data.read_text().replace("\n3,", "\n3.0,").replace(",a,", ",a,", 1)
    floats = tmp_path / "floats.csv"
    floats.write_text("\ufeff" + text.replace(",8,", ",8.0,"), encoding="utf-8")
    assert main(["impute", str(model), str(floats), "-o", str(out), "--seed", "3"]) == 0
    before = floats.read_text(encoding="utf-8-sig").splitlines()
    after = out.read_text().splitlines()
    assert after[0] == ",a,b,c,d" and ",8.0," in "\n".join(after)
    for a, b in zip(before[1:], after[1:]):
        assert all(x == y for x, y in zip(a.split(","), b.split(",")) if x)
    # an .npz's float32 group written to a CSV keeps float32's digits
    npz = tmp_path / "d.npz"
    g = np.array([[0.1, 1.0], [np.nan, 2.5], [0.3, 4.0]] * 10, dtype=np.float32)
    np.savez(npz, g=g, h=np.ones((30, 1), np.float32) * np.arange(30)[:, None])
    assert main(["fit", str(npz), "-o", str(model), "--epochs", "1", "--lam", "0.1"]) == 0
    assert main(["impute", str(model), str(npz), "-o", str(out)]) == 0
    assert out.read_text().splitlines()[1].startswith("0.1,1.0,")
    capsys.readouterr()


def test_warnings_are_one_line_in_the_words_of_the_command(tmp_path, capsys):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    x[::2, :2] = np.nan  # each row observes one group: none can be held out
    x[1::2, 2:] = np.nan
    path = tmp_path / "one.csv"
    pd.DataFrame(x, columns=list("abcd")).to_csv(path, index=False)
    model = tmp_path / "m.factvae"
    argv = ["fit", str(path), "--groups", "g=a,b;h=c,d", "-o", str(model), "--epochs", "1"]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", str(model), str(path), "--groups", "g=a,b;h=c,d"]) == 0
    err = capsys.readouterr().err
    assert "factvae: warning: no row observes two groups" in err
    assert ".py:" not in err and "UserWarning" not in err


def test_evaluate_by_group_prints_and_reports_each_held_out_group(tmp_path, capsys):
    import json

    rng = np.random.default_rng(2)
    z = rng.normal(size=(40, 1))
    x = z @ rng.normal(size=(1, 4)) + rng.normal(size=(40, 4)) / 3
    path = tmp_path / "d.csv"
    pd.DataFrame(x, columns=list("abcd")).to_csv(path, index=False)
    model, spec = tmp_path / "m.factvae", "g=a,b;h=c,d"
    assert main(["fit", str(path), "--groups", spec, "-o", str(model), "--epochs", "2"]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(model), str(path), "--samples", "10", "--refine-steps", "0"]
    assert main([*argv, "--by-group", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["groups"]) == {"g", "h"}
    assert result["groups"]["g"]["rmse"] != result["groups"]["h"]["rmse"]
    assert main([*argv, "--by-group"]) == 0
    text = capsys.readouterr().out
    assert "g held out: cond_ll" in text and "h held out: cond_ll" in text
    assert main(argv) == 0 and "held out:" not in capsys.readouterr().out


def test_likelihoods_given_in_one_option_or_several(tmp_path, capsys):
    from pyro_factvae.cli_commands import _likelihoods
    from pyro_factvae.cli_io import UserError

    both = {"c": "poisson", "b": "bernoulli"}
    assert _likelihoods(["c=poisson;b=bernoulli"]) == both
    assert _likelihoods(["c=poisson", "b=bernoulli"]) == both
    with pytest.raises(UserError, match="several: 'a=poisson;b=bernoulli'"):
        _likelihoods(["poisson"])
    with pytest.raises(UserError, match="names group 'c' twice"):
        _likelihoods(["c=poisson;c=normal"])
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"
    np.savez(data, b=(rng.random((30, 2)) < 0.5).astype(float), c=rng.poisson(3, (30, 3)) * 1.0)
    model = tmp_path / "m.factvae"
    argv = ["fit", str(data), "-o", str(model), "--epochs", "1", "--lam", "0.1", "--json"]
    assert main([*argv, "--likelihood", "c=poisson;b=bernoulli"]) == 0
    from pyro_factvae import FactVAE

    assert FactVAE.load(model).layout_.likelihoods == ("bernoulli", "poisson")


def test_a_model_given_other_groups_is_told_to_fit_a_new_model_in_cli_words(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data, wide = tmp_path / "d.npz", tmp_path / "w.npz"
    np.savez(data, a=rng.normal(size=(30, 2)), b=rng.normal(size=(30, 2)))
    np.savez(wide, a=rng.normal(size=(30, 3)), b=rng.normal(size=(30, 2)))
    model = tmp_path / "m.factvae"
    assert main(["fit", str(data), "-o", str(model), "--epochs", "1", "--lam", "0.1"]) == 0
    capsys.readouterr()
    assert main(["impute", str(model), str(wide), "-o", str(tmp_path / "o.npz")]) == 1
    err = capsys.readouterr().err
    assert "group 'a' has 3 columns" in err and "fit a new model (factvae fit)" in err
    assert "FactVAE(" not in err


def test_csv_headers_that_do_not_name_each_column_once_are_refused(tmp_path, capsys):
    data, spec = _table(tmp_path)
    model = tmp_path / "m.factvae"
    assert main(["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1"]) == 0
    lines = data.read_text().splitlines()
    cases = {
        "dup.csv": ([",a,b,c,a"] + lines[1:], "the header names more than one column ['a']"),
        "rstyle.csv": (["a,b,c,d"] + lines[1:], "its rows have more fields than its header"),
        "empty.csv": (lines[:1], "has a header but no data rows"),
        "semi.csv": ([r.replace(",", ";") for r in lines], "separated by ';' or tabs?"),
    }
    for name, (rows, says) in cases.items():
        path = tmp_path / name
        path.write_text("\n".join(rows) + "\n")
        capsys.readouterr()
        assert main(["impute", str(model), str(path), "-o", str(tmp_path / "o.csv")]) == 1
        assert says in capsys.readouterr().err


def test_a_csv_with_spaces_after_its_commas_is_told_where_the_names_differ(tmp_path, capsys):
    data, spec = _table(tmp_path)
    spaced = tmp_path / "spaced.csv"
    head, rest = data.read_text().split("\n", 1)
    spaced.write_text(head.replace(",", ", ") + "\n" + rest)  # "a, b, c": names after spaces
    fit = ["fit", str(spaced), "--groups", spec, "-o", str(tmp_path / "m.factvae")]
    assert main([*fit, "--epochs", "1"]) == 1
    assert "its header's names have spaces around them ([' a', ' b', ' c'])" in (
        capsys.readouterr().err
    )
    frame = pd.read_csv(spaced)  # named as written: a model fitted so reads the file
    groups = {"g": [" a", " b"], "h": [" c"]}
    vae = FactVAE(latent_dim=2, lam=0.1).fit(frame, groups=groups, epochs=1, progress=False)
    vae.save(tmp_path / "spaced.factvae")
    out = tmp_path / "out.csv"
    assert main(["impute", str(tmp_path / "spaced.factvae"), str(spaced), "-o", str(out)]) == 0


def test_impute_leaves_its_outputs_as_they_were_when_it_fails(tmp_path, monkeypatch, capsys):
    data, spec = _table(tmp_path)
    model, out = tmp_path / "m.factvae", tmp_path / "out.csv"
    assert main(["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1"]) == 0
    out.write_text("before\n")
    lower = tmp_path / "out_lower.csv"
    lower.write_text("old bound\n")

    def partly(self, path, **kwargs):  # a disk that fills up in the middle of the file
        with open(path, "w") as f:
            f.write("a,b\n1,")
        raise OSError("disk full")

    argv = ["impute", str(model), str(data), "-o", str(out), "--interval", "0.9"]
    with monkeypatch.context() as patch:
        patch.setattr(pd.DataFrame, "to_csv", partly)
        assert main([*argv, "--samples", "20"]) == 1
    assert "disk full" in capsys.readouterr().err
    assert out.read_text() == "before\n" and lower.read_text() == "old bound\n"

    def no_bounds(*args, **kwargs):  # the intervals fail after the fills were computed
        raise ValueError("no bounds today")

    monkeypatch.setattr(FactVAE, "predict_interval", no_bounds)
    assert main([*argv, "--samples", "20"]) == 1
    assert out.read_text() == "before\n" and lower.read_text() == "old bound\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".factvae-")) == []


def test_an_output_path_that_is_a_symbolic_link_is_written_through(tmp_path):
    data, spec = _table(tmp_path)
    model = tmp_path / "m.factvae"
    assert main(["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "1"]) == 0
    target, link = tmp_path / "target.csv", tmp_path / "link.csv"
    target.write_text("old\n")
    link.symlink_to(target)
    assert main(["impute", str(model), str(data), "-o", str(link), "--samples", "20"]) == 0
    assert link.is_symlink() and target.read_text().startswith(",a,b,c,d")
