"""The forms real data come in: pandas frames with repeated index labels, tuple or repeated
column labels, nullable, sparse and date columns; masked, object and sparse arrays; values
too large, too small or too close together for float32; and queries and fits run under a
caller's ``no_grad`` or ``inference_mode``."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData


@pytest.fixture(scope="module")
def ab():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((60, 1))
    a = z @ rng.standard_normal((1, 2)) + 0.3 * rng.standard_normal((60, 2))
    b = z @ rng.standard_normal((1, 2)) + 0.3 * rng.standard_normal((60, 2))
    return a, b


def _fit(data, **kwargs):
    return FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=3, progress=False, **kwargs)


def test_a_frame_with_repeated_index_labels_keeps_its_observed_cells(ab):
    frame = pd.DataFrame(np.hstack(ab), columns=list("wxyz"), index=["r"] * 60)
    frame.iloc[0, 0] = np.nan
    groups = {"A": ["w", "x"], "B": ["y", "z"]}
    vae = _fit(frame, groups=groups)
    filled = vae.impute(frame)
    assert np.array_equal(filled["w"].to_numpy()[1:], frame["w"].to_numpy()[1:])
    assert np.isfinite(filled["w"].iloc[0])
    lower, upper = vae.predict_interval(frame, num_draws=20)
    assert np.array_equal(lower["w"].to_numpy()[1:], frame["w"].to_numpy()[1:])
    assert lower["w"].iloc[0] < upper["w"].iloc[0]


def test_tuple_labels_and_float_column_dtypes_are_kept_in_the_filled_frame(ab):
    labels = pd.Index([("a", 0), ("a", 1), ("b", 0), ("b", 1)], tupleize_cols=False)
    frame = pd.DataFrame(np.hstack(ab), columns=labels)
    frame.iloc[0, 0] = np.nan
    groups = {"A": [("a", 0), ("a", 1)], "B": [("b", 0), ("b", 1)]}
    filled = _fit(frame, groups=groups).impute(frame)
    assert np.isfinite(filled.iloc[0, 0])
    assert np.array_equal(filled.iloc[1:].to_numpy(), frame.iloc[1:].to_numpy())
    plain = pd.DataFrame(np.hstack(ab), columns=list("wxyz"))
    plain.iloc[0, :3] = np.nan
    plain = plain.astype({"w": np.float32, "x": "Float64"})
    plain["y"] = pd.arrays.SparseArray(plain["y"])
    filled = _fit(plain, groups={"A": ["w", "x"], "B": ["y", "z"]}).impute(plain)
    assert filled.dtypes["w"] == np.float32 and str(filled.dtypes["x"]) == "Float64"
    assert not filled.isna().any().any()
    assert filled["w"].iloc[1:].equals(plain["w"].iloc[1:])


def test_repeated_column_labels_and_date_columns_are_refused_by_name(ab):
    frame = pd.DataFrame(np.hstack(ab), columns=["x", "x", "y", "z"])
    with pytest.raises(ValueError, match="more than one column labelled 'x'"):
        _fit(frame, groups={"A": ["x"], "B": ["y", "z"]})
    dated = pd.DataFrame({"t": pd.date_range("2020", periods=60), "y": ab[1][:, 0]})
    dated.loc[2, "t"] = pd.NaT
    with pytest.raises(ValueError, match="column 't' holds dates"):
        GroupedData.from_dataframe(dated, {"A": ["t"], "B": ["y"]})
    dates = np.arange(60).astype("datetime64[s]")
    for given in (dates, np.ma.masked_array(dates, mask=dates == dates[3])):
        with pytest.raises(ValueError, match="group 'a': dates or durations"):
            GroupedData({"a": given, "b": ab[1]})


@pytest.mark.parametrize(
    "cell",
    [np.datetime64("2020-01-01"), np.timedelta64(3, "h"), pd.Timestamp("2020"), "1.5", 1 + 2j],
)
def test_an_object_array_cell_that_is_not_a_number_is_refused_by_row_and_column(ab, cell):
    objects = ab[1].astype(object)
    objects[7, 1] = cell  # a date would otherwise read as its days since 1970
    with pytest.raises(ValueError, match=r"group 'b': row 7, column 1 holds .*not a number"):
        GroupedData({"a": ab[0], "b": objects})


def test_object_array_cells_of_numpy_bools_fractions_and_nat_read_as_numbers_or_missing(ab):
    import fractions

    objects = ab[1].astype(object)
    objects[0, 0], objects[1, 0], objects[2, 0] = np.True_, fractions.Fraction(1, 4), pd.NaT
    objects[3, 0] = np.datetime64("NaT")
    read = GroupedData({"a": ab[0], "b": objects}).to_numpy()["b"][:4, 0]
    np.testing.assert_array_equal(read, [1.0, 0.25, np.nan, np.nan])


def test_masked_object_and_nullable_groups_read_their_holes_as_missing(ab):
    a, b = ab
    masked = np.ma.masked_array(a.copy(), mask=False)
    masked[0, 0] = np.ma.masked
    masked.data[0, 0] = 1e6  # hidden under the mask: never seen, never returned
    objects = a.astype(object)
    objects[0, 0] = None
    nullable = pd.DataFrame(a, dtype="Float64")
    nullable.iloc[0, 0] = pd.NA
    nas = nullable.to_numpy()  # an object array holding pandas' NA
    vae = _fit({"a": masked, "b": b})
    for given in (masked, objects, nullable, nas):
        data = GroupedData({"a": given, "b": b})
        assert data.cells is not None and not bool(data.cells[0, 0])
        assert int(data.cells.sum()) == 239  # that one cell only
        filled = vae.impute({"a": given, "b": b})["a"]
        assert abs(filled[0, 0]) < 100 and np.array_equal(filled[1:], a[1:])


def test_one_series_and_sparse_matrices_are_refused_and_keys_are_named_by_their_text(ab):
    import scipy.sparse

    with pytest.raises(ValueError, match=r"pandas Series \(one column, or one row.*iloc\[\[3\]\]"):
        _fit(pd.Series(ab[0][:, 0]))
    with pytest.raises(ValueError, match=r"group 'a': a scipy.sparse matrix; densify it"):
        GroupedData({"a": scipy.sparse.csr_matrix(ab[0]), "b": ab[1]})
    b = ab[1].copy()
    b[0] = np.nan
    vae = _fit({0: ab[0], 1: b})
    assert vae.layout_.names == ("0", "1")
    filled = vae.impute({1: b, 0: ab[0]})  # the caller's keys, in any order, by their text
    assert list(filled) == [0, 1]  # given back as the caller's keys, in the fitted order
    assert np.isfinite(filled[1]).all() and np.array_equal(filled[1][1:], b[1:])
    assert list(vae.reconstruct({1: b, 0: ab[0]}, num_samples=10, refine_steps=1)) == [0, 1]
    one = vae.reconstruct({1: b, 0: ab[0]}, targets=[1], given=[0], num_samples=10)
    assert list(one) == [1] and one[1].shape == b.shape
    with pytest.raises(ValueError, match="group names must be unique"):
        GroupedData({1: ab[0], "1": ab[1]})


def test_pandas_groups_in_other_row_orders_are_refused_not_paired_by_position(ab):
    rows = [f"s{i}" for i in range(60)]
    a, b = pd.DataFrame(ab[0], index=rows), pd.DataFrame(ab[1], index=rows)
    shuffled = b.sample(frac=1, random_state=0)
    with pytest.raises(
        ValueError,
        match="'a' and 'b' are pandas objects with different row.*"
        r"same rows in the same order.*reset_index\(drop=True\).*reindex",
    ):
        _fit({"a": a, "b": shuffled})
    vae = _fit({"a": a, "b": shuffled.reindex(a.index)})  # aligned as the message says
    with pytest.raises(ValueError, match="different row indexes"):
        vae.impute({"a": a, "b": b[0].sample(frac=1, random_state=1)})  # a Series too
    assert vae.impute({"a": a, "b": b}) is not None  # equal indexes: as before
    with pytest.raises(ValueError, match=r"groups \['b'\] are None: .*np.full"):
        vae.impute({"a": ab[0], "b": None})
    with pytest.raises(ValueError, match=r"1-D groups \['a'\] are read as one column"):
        vae.impute({"a": ab[0][0], "b": ab[1][:1]})
    with pytest.raises(ValueError, match=r"single array of shape \(60, 4\); give the fitted"):
        vae.impute(np.hstack(ab))
    with pytest.raises(ValueError, match=r"'a': X\[:, 0:2\], 'b': X\[:, 2:4\]"):
        vae.impute(torch.as_tensor(np.hstack(ab)))
    with pytest.raises(ValueError, match=r"a group missing in every row as an all-NaN array"):
        vae.impute({"a": ab[0]})
    with pytest.raises(ValueError, match=r"fit on it trains it further\): for other groups"):
        vae.fit({"x": ab[0], "y": ab[1]}, epochs=1, progress=False)


def test_a_frames_empty_rows_are_named_by_label_with_a_way_out_for_frames(ab):
    frame = pd.DataFrame(np.hstack(ab), columns=list("wxyz"), index=[f"r{i}" for i in range(60)])
    frame.iloc[[4, 9]] = np.nan
    spec = {"a": ["w", "x"], "b": ["y", "z"]}
    with pytest.raises(ValueError, match=r"2 rows have no observed group: index \['r4', 'r9'\]"):
        _fit(frame, groups=spec)
    with pytest.raises(ValueError, match=r"GroupedData.from_dataframe\(frame, groups, drop_emp"):
        GroupedData.from_dataframe(frame, spec)
    data = GroupedData.from_dataframe(frame, spec, drop_empty_rows=True)  # as it says
    assert len(data) == 58 and len(_fit(data).impute(frame)) == 60


@pytest.mark.parametrize("scale, what", [(1e20, "span"), (1e-20, "are at most"), (1e39, "reach")])
def test_values_beyond_float32s_reach_are_refused_with_the_group_and_column(ab, scale, what):
    coarse = 1e8 + ab[0]  # warned of, and no reason to pass over the later group
    with pytest.raises(ValueError, match=rf"group 'b', column 0: observed values {what}"):
        data = GroupedData({"a": coarse, "b": ab[1] * scale})  # inf in float32: refused here
        FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=1, progress=False)  # else at the fit


def test_columns_float32_cannot_tell_apart_are_named_in_a_warning_of_the_fit(ab):
    a, b = ab
    data = GroupedData({"a": a, "b": 1e8 + b})
    with pytest.warns(UserWarning, match=r"'b' column 0 \(near 1e\+08.*'b' column 1") as caught:
        FactVAE(latent_dim=2).fit(data, epochs=2, progress=False)  # the lam path's fits too
    coarse = [w for w in caught if "vary little" in str(w.message)]
    assert len(coarse) == 1 and coarse[0].filename == __file__  # once, at the caller's line
    nanoseconds = 1.7e18 + np.linspace(0, 3e16, 60)[:, None]  # datetimes as int64 ns
    hours = 1.7e9 + 3600.0 * np.arange(60)[:, None]  # Unix seconds, hourly
    with warnings.catch_warnings():  # large values that float32 resolves are no problem
        warnings.simplefilter("error")
        GroupedData({"a": a, "b": 1e3 + b, "t": nanoseconds, "h": hours}).require_trainable()


def test_the_ranges_of_a_few_query_rows_are_not_judged_as_training_data(ab):
    vae = _fit({"a": ab[0], "b": ab[1]})
    rows = {"a": ab[0][:2].copy(), "b": np.array([[0.5, np.nan], [0.50001, np.nan]])}
    rows["a"][0, 0] = 1e-20
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn of: the model was trained already
        filled = vae.impute(rows, num_samples=20, refine_steps=2)
    assert np.isfinite(filled["b"]).all() and filled["a"][0, 0] == 1e-20


def test_queries_and_fits_work_under_no_grad_and_inference_mode(ab):
    a, b = ab
    b = b.copy()
    b[::4] = np.nan
    data = {"a": a, "b": b}
    vae = _fit(data)
    expected = vae.impute(data)["b"]
    with torch.inference_mode():
        assert np.array_equal(vae.impute(data)["b"], expected)  # refined by autograd
        lower, upper = vae.predict_interval(data, num_draws=20)
        assert (lower["b"] <= upper["b"]).all()
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            again = _fit(data)
        assert np.array_equal(again.impute(data)["b"], expected)


def test_the_warnings_of_a_fit_point_at_the_callers_line(ab):
    data = {"a": ab[0], "b": np.ones((60, 2))}  # a constant group
    for lam in (0.1, "auto"):
        with pytest.warns(UserWarning, match="are constant in the training data") as caught:
            FactVAE(latent_dim=2, lam=lam).fit(data, epochs=4, progress=False)
        assert {w.filename for w in caught} == {__file__}


def test_a_column_observed_in_one_training_row_is_named_once_by_the_fit(ab):
    b = ab[1].copy()
    b[:, 1] = np.nan
    b[3, 1] = 0.5  # one observation: no spread to learn
    b[:, 0] = np.where(np.arange(60) % 2, b[:, 0], np.nan)  # half observed: no warning
    for lam in (0.1, "auto"):
        with pytest.warns(UserWarning, match="observed in one training row only") as caught:
            FactVAE(latent_dim=2, lam=lam).fit({"a": ab[0], "b": b}, epochs=4, progress=False)
        said = [w for w in caught if "in one training row" in str(w.message)]
        assert len(said) == 1 and "columns [1]" in str(said[0].message)  # once, after the path


def test_fits_and_queries_run_in_float32_whatever_torchs_default_dtype(ab, tmp_path):
    path = tmp_path / "m.factvae"
    holed = ab[1].copy()
    holed[::3] = np.nan  # whole groups and single cells to fill: the queries accumulate
    holed[1::3, 0] = np.nan
    data = {"a": ab[0], "b": holed}
    vae = _fit(data)
    expected = vae.impute(data, num_samples=20, refine_steps=2)
    bounds = vae.predict_interval(data, num_draws=20, num_samples=20, refine_steps=2)
    drawn = vae.sample(3, seed=0)
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        again = vae.impute(data, num_samples=20, refine_steps=2)
        assert np.array_equal(again["b"], expected["b"])
        again_bounds = vae.predict_interval(data, num_draws=20, num_samples=20, refine_steps=2)
        assert all(np.array_equal(x["b"], y["b"]) for x, y in zip(again_bounds, bounds))
        assert np.array_equal(vae.sample(3, seed=0)["a"], drawn["a"])
        assert GroupedData({"a": ab[0]}).matrix.dtype == torch.float32
        refit = _fit(data)  # built in float32 as the data are: the same fit
        assert np.array_equal(refit.impute(data, num_samples=20, refine_steps=2)["b"], again["b"])
        vae.save(path)
        loaded = FactVAE.load(path)
        assert all(p.dtype == torch.float32 for p in loaded.model_.parameters())
        assert np.array_equal(loaded.impute(data, num_samples=20, refine_steps=2)["b"], again["b"])
    finally:
        torch.set_default_dtype(before)


def test_an_iterator_of_groups_and_bfloat16_tensors_are_read_as_lists_and_float32(ab):
    a, b = ab
    holed = b.copy()
    holed[::5] = np.nan
    vae = _fit(iter([a, holed]))  # a fit reads an iterator once
    query = dict(num_samples=5, refine_steps=0)
    want = vae.impute([a, holed], **query)
    for got in (
        vae.impute(iter([a, holed]), **query),
        vae.predict_interval(iter([a, holed]), num_draws=19, **query)[0],
        vae.impute(iter([a, holed]), num_draws=2, **query)[0],
        vae.reconstruct(iter([a, holed]), **query),
    ):
        assert set(got) == {"g0", "g1"} and got["g1"].shape == holed.shape
    np.testing.assert_array_equal(vae.impute(iter([a, holed]), **query)["g1"], want["g1"])
    half = [torch.tensor(a, dtype=torch.bfloat16), torch.tensor(holed, dtype=torch.bfloat16)]
    filled = vae.impute(half, **query)
    assert filled["g1"].dtype == np.float32 and not np.isnan(filled["g1"]).any()
    kept = ~np.isnan(holed)
    assert np.array_equal(filled["g1"][kept], half[1].float().numpy()[kept])


def test_indexing_grouped_data_by_a_group_name_says_how_to_get_the_group(ab):
    data = GroupedData({"left": ab[0], "right": ab[1]})
    with pytest.raises(ValueError, match=r"data.to_numpy\(\)\['right'\]"):
        data["right"]
    values, observed = data[np.arange(3)]  # rows, as a minibatch
    assert values[1].shape == (3, 2) and observed.shape == (3, 2)
