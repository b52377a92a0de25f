"""The scikit-learn imputer: estimator checks, pipelines, grid search, DataFrames, draws."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from pyro_factvae.sklearn import FactVAEImputer

FAST = dict(epochs=3, lam=0.1, latent_dim=2, num_samples=10)


def _table(n=120, seed=0, holes=0.15):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    x = z @ rng.standard_normal((2, 6)) + 0.2 * rng.standard_normal((n, 6))
    y = z[:, 0] - z[:, 1] + 0.1 * rng.standard_normal(n)
    holed = np.where(rng.random(x.shape) < holes, np.nan, x)
    holed[: n // 6, 3:] = np.nan  # whole groups missing too
    return x, holed, y


def test_it_passes_scikit_learns_estimator_checks():
    results = check_estimator(FactVAEImputer(**FAST), on_fail=None)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == [] and sum(r["status"] == "passed" for r in results) >= 40


def test_it_fills_every_hole_and_keeps_observed_cells():
    x, holed, _ = _table()
    imp = FactVAEImputer(groups={"a": [0, 1, 2], "b": [3, 4, 5]}, **{**FAST, "epochs": 200})
    out = imp.fit_transform(holed)
    seen = ~np.isnan(holed)
    assert out.shape == x.shape and not np.isnan(out).any()
    assert np.array_equal(out[seen], holed[seen])
    assert imp.vae_.layout_.names == ("a", "b") and imp.groups_ == {"a": [0, 1, 2], "b": [3, 4, 5]}
    # a fill is closer to the truth than the column mean would be
    mean_fill = np.where(seen, holed, np.nanmean(holed, 0))
    assert np.abs(out - x)[~seen].mean() < np.abs(mean_fill - x)[~seen].mean()
    draws = imp.multiple_imputations(holed, num_draws=4)
    assert draws.shape == (4, *x.shape) and np.array_equal(draws[2][seen], holed[seen])
    assert not np.allclose(draws[0][~seen], draws[1][~seen])
    one = clone(imp).set_params(sample_posterior=True).fit(holed).transform(holed)
    assert np.array_equal(one[seen], holed[seen]) and not np.allclose(one[~seen], out[~seen])
    # refine_steps reaches the fitted model's queries: 0 is the encoder's posterior
    plain = imp.set_params(refine_steps=0).transform(holed)
    groups = {"a": holed[:, :3], "b": holed[:, 3:]}
    ref = imp.vae_.impute(groups, refine_steps=0, seed=0, num_samples=imp.num_samples)
    assert np.allclose(plain, np.hstack([ref["a"], ref["b"]]))
    assert not np.allclose(plain[~seen], out[~seen])
    with pytest.raises(ValueError, match="refine_steps must be 0 or a positive integer"):
        clone(imp).set_params(refine_steps=-1).fit(holed)  # refused before the fit


def test_dataframes_group_names_and_pandas_output():
    _, holed, _ = _table()
    frame = pd.DataFrame(holed, columns=[f"c{j}" for j in range(6)])
    imp = FactVAEImputer(groups={"left": ["c0", "c1", "c2"], "right": ["c3", "c4", "c5"]}, **FAST)
    out = imp.set_output(transform="pandas").fit_transform(frame)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(frame.columns)
    assert list(imp.get_feature_names_out()) == list(frame.columns)
    with pytest.raises(ValueError, match="in no group"):
        FactVAEImputer(groups={"left": ["c0", "c1"]}, **FAST).fit(frame)
    with pytest.raises(ValueError, match="'c9' is not in the data"):
        FactVAEImputer(groups={"left": ["c9"]}, **FAST).fit(frame)
    with pytest.raises(ValueError, match="in groups 'a' and 'b'"):
        FactVAEImputer(groups={"a": [0, 1, 2], "b": [2, 3, 4, 5]}, **FAST).fit(frame)
    default = FactVAEImputer(**FAST).fit(frame)  # every column its own group
    assert default.vae_.layout_.names == tuple(frame.columns)


def test_pipelines_grid_search_and_cross_validation():
    _, holed, y = _table(n=150)
    pipe = Pipeline(
        [
            ("impute", FactVAEImputer(groups={"a": [0, 1, 2], "b": [3, 4, 5]}, **FAST)),
            ("fit", Ridge()),
        ]
    )
    scores = cross_val_score(pipe, holed, y, cv=3, scoring="r2")
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and scores.mean() > 0.5
    search = GridSearchCV(pipe, {"impute__lam": [0.0, 0.1], "fit__alpha": [1.0]}, cv=2)
    search.fit(holed, y)
    assert search.best_params_["impute__lam"] in (0.0, 0.1)
    assert clone(pipe).get_params()["impute__latent_dim"] == 2
    columns = ColumnTransformer([("fa", FactVAEImputer(**FAST), [0, 1, 2, 3])], remainder="drop")
    assert columns.fit_transform(holed).shape == (150, 4)


def test_integer_column_labels_are_labels_not_positions():
    _, holed, _ = _table()
    frame = pd.DataFrame(holed, columns=[20, 10, 30, 40, 50, 60])
    imp = FactVAEImputer(groups={"a": [10, 20, 30], "b": [40, 50, 60]}, **FAST).fit(frame)
    assert imp.groups_ == {"a": [1, 0, 2], "b": [3, 4, 5]}
    with pytest.raises(ValueError, match="column 2 is not a label of the DataFrame's columns"):
        FactVAEImputer(groups={"a": [2, 10, 20, 30], "b": [40, 50, 60]}, **FAST).fit(frame)
    assert imp.column_labels_ == [20, 10, 30, 40, 50, 60]
    np.testing.assert_array_equal(imp.transform(frame), imp.transform(holed))  # in order
    with pytest.raises(ValueError, match=r"X's columns \[40, 50, 60, 20, 10, 30\] are not those"):
        imp.transform(frame[[40, 50, 60, 20, 10, 30]])  # by position: other groups' values


def test_transform_changes_no_fitted_state_and_checks_its_seed():
    _, holed, _ = _table()
    imp = FactVAEImputer(**FAST).fit(holed)
    imp.transform(holed)
    ess = imp.vae_.ess_
    imp.set_params(sample_posterior=True).transform(holed[:5])
    assert imp.vae_.ess_ is ess
    with pytest.raises(ValueError, match="seed must be an integer, got 1.7"):
        imp.set_params(seed=1.7).transform(holed)


def test_group_specs_that_would_be_misread_are_refused_before_the_fit():
    x = np.random.default_rng(0).normal(size=(30, 6))
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match="both named '1' as text"):
        FactVAEImputer(groups={1: [0, 1, 2], "1": [3, 4, 5]}, epochs=1).fit(x)
    with pytest.raises(ValueError, match=r"num_samples \(with sample_posterior=True\)"):
        FactVAEImputer(sample_posterior=True, num_samples=0, epochs=1).fit(x)


def test_frames_with_text_or_inf_cells_are_refused_by_name():
    x = np.random.default_rng(0).normal(size=(30, 6))
    x[1, 1] = np.nan
    groups = {"a": ["p", "q", "r"], "b": ["s", "t", "u"]}
    text = pd.DataFrame(x, columns=list("pqrstu")).astype(object)
    text.iloc[3, 2] = "abc"
    with pytest.raises(ValueError, match="group 'a': column 'r' is not numeric: row 3"):
        FactVAEImputer(groups=groups, epochs=1).fit(text)
    imp = FactVAEImputer(groups=groups, epochs=1, latent_dim=2).fit(
        pd.DataFrame(x, columns=list("pqrstu"))
    )
    with pytest.raises(ValueError, match="column 'r' is not numeric: row 3"):
        imp.transform(text)
    infinite = pd.DataFrame(x, columns=list("pqrstu"), index=[f"r{i}" for i in range(30)])
    infinite.iloc[[4, 9], 4] = [np.inf, -np.inf]
    says = r"group 'b': column 't', rows \[4, 9\] \(index \['r4', 'r9'\]\) hold inf"
    with pytest.raises(ValueError, match=says):
        FactVAEImputer(groups=groups, epochs=1).fit(infinite)
    with pytest.raises(ValueError, match=says):
        imp.transform(infinite)
    dated = pd.DataFrame(x, columns=list("pqrstu")).assign(r=pd.date_range("2020", periods=30))
    with pytest.raises(ValueError, match="group 'a': column 'r' holds dates"):
        FactVAEImputer(groups=groups, epochs=1).fit(dated)


def test_a_sentinel_marks_missing_cells_and_feature_names_are_checked():
    x, holed, _ = _table()
    sentinel = np.where(np.isnan(holed), -999.0, holed)
    imp = FactVAEImputer(missing_values=-999.0, **FAST).fit(sentinel)
    filled = imp.transform(sentinel)
    assert not (filled == -999.0).any()
    seen = ~np.isnan(holed)
    assert np.array_equal(filled[seen], holed[seen])
    np.testing.assert_allclose(filled, FactVAEImputer(**FAST).fit(holed).transform(holed))
    with pytest.raises(ValueError, match="missing_values must be a number"):
        FactVAEImputer(missing_values="?", **FAST).fit(sentinel)
    frame = pd.DataFrame(holed, columns=[f"f{j}" for j in range(6)])
    fitted = FactVAEImputer(**FAST).fit(frame)
    assert list(fitted.get_feature_names_out(list(frame.columns))) == list(frame.columns)
    with pytest.raises(ValueError, match="differ from the names fitted on"):
        fitted.get_feature_names_out(list("abcdef"))


def test_never_observed_columns_are_left_out_or_kept_as_scikit_learns_imputers_do():
    from sklearn.impute import SimpleImputer

    _, holed, _ = _table()
    holed[:, 4] = np.nan  # column 4 never observed; group "c" has no other column
    holed = np.hstack([holed, np.full((len(holed), 1), np.nan)])
    frame = pd.DataFrame(holed, columns=[f"f{j}" for j in range(7)])
    groups = {"a": ["f0", "f1", "f2"], "b": ["f3", "f4", "f5"], "c": ["f6"]}
    with pytest.warns(UserWarning, match=r"columns \['f4', 'f6'\] are never observed"):
        imp = FactVAEImputer(groups=groups, **FAST).fit(frame)
    assert imp.groups_ == {"a": [0, 1, 2], "b": [3, 5]}
    assert imp.vae_.layout_.names == ("a", "b")
    out = imp.transform(frame)
    seen = ~np.isnan(np.delete(holed, [4, 6], axis=1))
    assert out.shape == (len(holed), 5) and not np.isnan(out).any()
    assert np.array_equal(out[seen], np.delete(holed, [4, 6], axis=1)[seen])
    for keep in (False, True):  # the same columns and names as scikit-learn's imputer
        ours = clone(imp).set_params(keep_empty_features=keep, add_indicator=True).fit(frame)
        theirs = SimpleImputer(keep_empty_features=keep, add_indicator=True).fit(frame)
        names = ours.get_feature_names_out()
        assert list(names) == list(theirs.get_feature_names_out())
        filled, reference = ours.transform(frame), theirs.transform(frame)
        assert filled.shape == reference.shape
        # the empty columns (0 when kept) and the indicator's columns agree exactly
        same = [j for j, n in enumerate(names) if n.startswith("missingindicator_")]
        same += [j for j, n in enumerate(names) if n in ("f4", "f6")]
        assert len(same) == 7 + 2 * keep
        np.testing.assert_array_equal(filled[:, same], reference[:, same])
        draws = ours.multiple_imputations(frame, num_draws=2)
        assert draws.shape == (2, *reference.shape)
    with pytest.raises(ValueError, match="every column is missing in every row"):
        FactVAEImputer(**FAST).fit(np.full((10, 3), np.nan))


def test_per_group_settings_lose_the_groups_left_out_as_never_observed():
    rng = np.random.default_rng(0)
    table = np.hstack([rng.standard_normal((60, 3)), rng.poisson(3.0, (60, 2))])
    table[:, 1] = np.nan  # its group (by default each column is one) is left out
    likelihood = ["normal"] * 3 + ["poisson"] * 2
    with pytest.warns(UserWarning, match=r"columns \[1\] are never observed"):
        imp = FactVAEImputer(likelihood=likelihood, group_weight={"x1": 3, "x3": 2}, **FAST)
        imp.fit(table)
    assert imp.vae_.layout_.likelihoods == ("normal", "normal", "poisson", "poisson")
    assert dict(imp.vae_.config.group_weight) == {"x3": 2}
    with pytest.raises(ValueError, match="library_size"):  # a list is FactVAE's to refuse
        FactVAEImputer(likelihood=likelihood, library_size=["data"] * 5, **FAST).fit(table)
    sizes = np.hstack([table, rng.uniform(0.5, 2.0, (60, 1))])
    groups = {"x": [0, 1, 2], "counts": [3, 4], "size": [5]}
    settings = dict(groups=groups, likelihood={"counts": "poisson"}, **FAST)
    with pytest.warns(UserWarning, match="never observed"):  # column 1; sizes observed
        FactVAEImputer(library_size={"counts": "size"}, **settings).fit(sizes)
    sizes[:, 5] = np.nan
    with pytest.warns(UserWarning, match="never observed"):
        with pytest.raises(ValueError, match=r"library_size of 'counts': its size-factor group"):
            FactVAEImputer(library_size={"counts": "size"}, **settings).fit(sizes)


def test_cross_validation_runs_when_a_fold_never_observes_a_column():
    x, holed, y = _table()
    holed[40:, 2] = np.nan  # column 2 observed in the first 40 rows only
    pipe = Pipeline([("impute", FactVAEImputer(add_indicator=True, **FAST)), ("fit", Ridge())])
    scores = cross_val_score(pipe, holed, y, cv=3)  # the first split trains on rows 40-119
    assert np.isfinite(scores).all()


def test_a_column_empty_at_fit_keeps_its_observed_cells_or_warns_that_they_are_left_out():
    _, holed, _ = _table()
    fit_on = holed.copy()
    fit_on[:, 1] = np.nan
    later = holed[:10].copy()
    later[3, 1] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # kept as asked: nothing to warn of
        kept = FactVAEImputer(keep_empty_features=True, **FAST).fit(fit_on)
    out = kept.transform(later)  # its observed cells as given, its missing ones 0
    np.testing.assert_array_equal(out[:, 1], np.where(np.isnan(later[:, 1]), 0.0, later[:, 1]))
    assert np.array_equal(kept.multiple_imputations(later, num_draws=2)[:, :, 1], [out[:, 1]] * 2)
    with pytest.warns(UserWarning, match=r"columns \[1\] were never observed in the data fitted"):
        dropped = FactVAEImputer(**FAST).fit(fit_on).transform(later)
    assert dropped.shape == (10, 5)


def test_settings_of_a_group_left_out_are_dropped_with_it_and_the_warning_names_it():
    _, holed, _ = _table()
    frame = pd.DataFrame(holed, columns=[10, 11, 12, 13, 14, 15]).assign(**{"16": np.nan})
    frame.columns = [10, 11, 12, 13, 14, 15, 16]
    groups = {"a": [10, 11, 12], "b": [13, 14, 15], "c": [16]}
    likelihood = {"a": "normal", "b": "normal", "c": "normal"}
    message = r"columns \[16\] are never observed .* left out of the model \(groups \['c'\] with"
    with pytest.warns(UserWarning, match=message):
        imp = FactVAEImputer(groups=groups, likelihood=likelihood, group_weight={"c": 2}, **FAST)
        imp.fit(frame)
    assert imp.vae_.layout_.names == ("a", "b") and imp.transform(frame).shape == (120, 6)
    imp.set_params(groups={"a": [10, 11, 12]}, likelihood={"a": "normal", "zz": "normal"})
    with pytest.raises(ValueError, match="unknown groups"):
        imp.fit(frame.iloc[:, :3])
    assert imp.groups_ == {"a": [0, 1, 2], "b": [3, 4, 5]}  # as the last fit that succeeded
    assert imp.vae_.layout_.names == ("a", "b") and imp.n_features_in_ == 7
    assert imp.transform(frame).shape == (120, 6)


def test_transform_names_a_frames_wrong_columns_before_its_cells():
    x, holed, _ = _table()
    frame = pd.DataFrame(holed, columns=list("pqrstu"))
    imp = FactVAEImputer(groups={"g": ["p", "q", "r"], "h": ["s", "t", "u"]}, **FAST).fit(frame)
    text = frame.astype(object)
    text.iloc[5, 4] = "x"
    with pytest.raises(ValueError, match="group 'h': column 't' is not numeric: row 5"):
        imp.transform(text)
    with pytest.raises(ValueError, match="feature names should match"):
        imp.transform(text[list("upqrst")])  # the columns' order first, not a cell's text


def test_groups_without_columns_or_with_unknown_labels_are_refused_with_the_columns():
    frame = pd.DataFrame(_table()[1], columns=list("pqrstu"))
    with pytest.raises(ValueError, match="group 'h' has no column: give it some"):
        FactVAEImputer(groups={"g": list("pqrstu"), "h": []}, **FAST).fit(frame)
    with pytest.raises(ValueError, match=r"column 'z' is not in the data .*\['p', 'q', 'r'"):
        FactVAEImputer(groups={"g": list("pqrst"), "h": ["z"]}, **FAST).fit(frame)
