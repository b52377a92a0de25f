import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import GroupedData


def test_nan_rows_become_mask(groups):
    data = GroupedData(groups)
    assert data.names == ["a", "b", "c"]
    assert data.dims == [3, 3, 2]
    assert data.observed.shape == (40, 3)
    assert not data.observed[1, 0] and not data.observed[0, 2]
    assert data.observed[2:5, 1].sum() == 0
    assert int(data.observed.sum()) == 40 * 3 - 5
    # missing values are zero-filled, observed ones kept
    assert torch.all(data.values[1][2:5] == 0)
    np.testing.assert_allclose(data.values[0][0].numpy(), groups["a"][0], rtol=1e-6)


def test_list_with_default_names_and_roundtrip(groups):
    data = GroupedData(list(groups.values()))
    assert data.names == ["g0", "g1", "g2"]
    back = data.to_numpy()
    assert np.isnan(back["g1"][2:5]).all()
    np.testing.assert_allclose(back["g0"][0], groups["a"][0], rtol=1e-6)


def test_from_dataframe(groups):
    frame = pd.DataFrame(np.concatenate(list(groups.values()), axis=1))
    frame.columns = [f"c{i}" for i in range(frame.shape[1])]
    spec = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"], "c": ["c6", "c7"]}
    data = GroupedData.from_dataframe(frame, spec)
    assert data.names == ["a", "b", "c"]
    assert torch.equal(data.observed, GroupedData(groups).observed)
    with pytest.raises(ValueError, match=r"no columns \['nope'\].*the groups need: a = \[nope\]"):
        GroupedData.from_dataframe(frame, {"a": ["nope"]})
    frame["s"] = "text"
    with pytest.raises(ValueError, match="holds text"):
        GroupedData.from_dataframe(frame, {"a": ["c0", "s"]})


def test_explicit_mask_ignores_values_under_false(groups):
    values = [np.nan_to_num(v, nan=123.0) for v in groups.values()]
    mask = GroupedData(groups).observed
    values[1][2:5] = np.nan  # NaN under a False mask is fine
    data = GroupedData.from_masked(values, mask, names=["a", "b", "c"])
    assert torch.equal(data.observed, mask)
    assert torch.all(data.values[0][1] == 0)


def test_a_partly_nan_row_keeps_its_group_observed_with_a_cell_mask(groups):
    groups["b"][7, 1] = np.nan
    data = GroupedData(groups)
    assert bool(data.observed[7, 1])
    b = data.group_cells(1)
    assert (
        not bool(b[7, 1])
        and bool(b[7, 0])
        and int((~b).sum()) == 1 + 3 * int((~data.observed[:, 1]).sum())
    )
    assert float(data.values[1][7, 1]) == 0.0
    assert np.isnan(data.to_numpy()["b"][7, 1]) and not np.isnan(data.to_numpy()["b"][7, 0])


def test_nan_under_observed_mask(groups):
    values = list(groups.values())
    mask = np.ones((40, 3), dtype=bool)
    with pytest.raises(ValueError, match=r"group 'a': rows \[1\] are marked observed"):
        GroupedData.from_masked(values, mask, names=["a", "b", "c"])


def test_inf_is_rejected(groups):
    groups["c"][9, 0] = np.inf
    with pytest.raises(ValueError, match=r"group 'c': rows \[9\] hold inf"):
        GroupedData(groups)


def test_different_row_counts(groups):
    groups["c"] = groups["c"][:-1]
    with pytest.raises(ValueError, match="different numbers of rows"):
        GroupedData(groups)


def test_empty_group(groups):
    groups["c"] = np.zeros((40, 0))
    with pytest.raises(ValueError, match="group 'c' has no columns"):
        GroupedData(groups)
    with pytest.raises(ValueError, match="has no rows"):
        GroupedData({"a": np.zeros((0, 2))})
    with pytest.raises(ValueError, match="at least one group"):
        GroupedData([])


def test_rows_with_no_observed_group(groups):
    for v in groups.values():
        v[[3, 11]] = np.nan
    with pytest.raises(
        ValueError,
        match=r"2 rows have no observed group: \[3, 11\].*drop_empty_rows.*allow_empty_rows=True",
    ):
        GroupedData(groups)
    data = GroupedData(groups, drop_empty_rows=True)
    assert len(data) == 38
    assert 3 not in data.row_index and 11 not in data.row_index


def test_non_numeric(groups):
    groups["a"] = np.array([["x", "y", "z"]] * 40)
    with pytest.raises(ValueError, match="group 'a': data must be numeric"):
        GroupedData(groups)


def test_mask_of_wrong_shape(groups):
    with pytest.raises(ValueError, match=r"mask has shape \(40, 2\), expected"):
        GroupedData.from_masked(list(groups.values()), np.ones((40, 2), bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        GroupedData.from_masked(list(groups.values()), np.full((40, 3), 0.5))


def test_bad_names_and_single_array(groups):
    with pytest.raises(ValueError, match="single array"):
        GroupedData(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="non-empty string"):
        GroupedData({"": np.zeros((3, 2))})
    with pytest.raises(ValueError, match="unique"):
        GroupedData([np.zeros((3, 1))] * 2, names=["a", "a"])
    with pytest.raises(ValueError, match="2-D"):
        GroupedData([np.zeros((3, 2, 2))])


def test_subset_split_with_mask(groups):
    data = GroupedData(groups)
    a, b = data.split(0.75, seed=1)
    assert len(a) == 30 and len(b) == 10
    assert sorted(np.concatenate([a.row_index, b.row_index]).tolist()) == list(range(40))
    held = data.observed.clone()
    held[:, 2] = False
    fewer = data.with_mask(held)
    assert torch.all(fewer.values[2] == 0)
    with pytest.raises(ValueError, match="missing in the data"):
        fewer.with_mask(data.observed)
    with pytest.raises(ValueError, match="unknown group 'zz'"):
        data.index("zz")


def test_dataframes_need_a_group_mapping_and_lists_of_columns():
    import pandas as pd

    frame = pd.DataFrame({"alcohol": [1.0, 2.0], "ash": [3.0, 4.0]})
    with pytest.raises(ValueError, match="from_dataframe"):
        GroupedData(frame)
    with pytest.raises(ValueError, match="not the string 'alcohol'"):
        GroupedData.from_dataframe(frame, {"chem": "alcohol"})
    bad = pd.DataFrame({"a": ["1.5", "?", "2"]})
    with pytest.raises(ValueError, match=r"column 'a' is not numeric: row 1 .* holds '\?'"):
        GroupedData.from_dataframe(bad, {"g": ["a"]})
    # a text column is a categorical variable: say how to encode it
    colors = pd.DataFrame({"x": [1.0, 2.0, 3.0], "color": ["red", "blue", None]})
    with pytest.raises(ValueError, match="holds text .*'red', 'blue'.*get_dummies.*categorical"):
        GroupedData.from_dataframe(colors, {"g": ["x", "color"]})
    # and the advice works: the one-hot columns, NaN where it was empty, fit as categorical
    onehot = pd.get_dummies(colors, columns=["color"], dtype=float)
    onehot.loc[colors["color"].isna(), ["color_blue", "color_red"]] = np.nan
    GroupedData.from_dataframe(onehot, {"x": ["x"], "color": ["color_blue", "color_red"]})


def test_from_matrix_wraps_a_memmap_without_copying_and_trains(tmp_path):
    from pyro_factvae import FactVAE

    rng = np.random.default_rng(0)
    n, dims = 300, [3, 3, 2]
    values = rng.normal(size=(n, 8)).astype(np.float32)
    observed = rng.random((n, 3)) > 0.2
    observed[~observed.any(1), 0] = True
    values[:, :3][~observed[:, 0]] = 0
    values[:, 3:6][~observed[:, 1]] = 0
    values[:, 6:][~observed[:, 2]] = 0
    path = tmp_path / "x.f32"
    values.tofile(path)
    mm = np.memmap(path, dtype=np.float32, mode="r", shape=(n, 8))
    data = GroupedData.from_matrix(mm, dims, observed, names=["a", "b", "c"], chunk=64)
    assert data.matrix.data_ptr() == mm.ctypes.data  # the file's pages, not a copy
    assert data.block([0, 1]).data_ptr() == mm.ctypes.data
    np.testing.assert_array_equal(data.values[2].numpy(), values[:, 6:])
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=2, patience=None, progress=False)
    assert np.isfinite(vae.history_).all()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda v, o: v.__setitem__((5, 0), np.nan), "group 'g0', row 5: .* not finite"),
        (lambda v, o: (o.__setitem__((7, 1), False), v.__setitem__((7, 4), 1.0)), "'g1', row 7"),
        (lambda v, o: o.__setitem__((9, slice(None)), False), "no observed group"),
    ],
)
def test_from_matrix_names_the_group_and_row_of_bad_values(change, message):
    values = np.ones((20, 6), dtype=np.float32)
    observed = np.ones((20, 2), dtype=bool)
    change(values, observed)
    with pytest.raises(ValueError, match=message):
        GroupedData.from_matrix(values, [3, 3], observed, chunk=4)
    with pytest.raises(ValueError, match="float32"):
        GroupedData.from_matrix(values.astype(np.float64), [3, 3], np.ones((20, 2), bool))
    with pytest.raises(ValueError, match="sum to"):
        GroupedData.from_matrix(values, [3, 2], np.ones((20, 2), bool))


def test_foreign_containers_and_a_column_in_two_groups_get_one_clear_line():
    class AnnData:  # the attributes anndata's AnnData has, without the package
        obs, var = {}, {}

        def __iter__(self):  # iterating it never ends, as a MuData's does
            while True:
                yield np.zeros(3)

    with pytest.raises(ValueError, match=r"got an AnnData.*GroupedData.from_anndata\(adata"):
        GroupedData(AnnData())
    frame = pd.DataFrame(np.zeros((4, 3)), columns=["x", "y", "z"])
    with pytest.raises(ValueError, match=r"column 'y' is in groups 'a' and 'b'"):
        GroupedData.from_dataframe(frame, {"a": ["x", "y"], "b": ["y", "z"]})


def test_subset_and_split_refuse_what_they_would_misread():
    data = GroupedData({"a": np.ones((10, 2)), "b": np.zeros((10, 1))})
    assert len(data.subset([0, 3])) == 2 and len(data.subset(np.arange(10) < 4)) == 4
    with pytest.raises(ValueError, match="a bool mask of rows needs 10 entries, got 5"):
        data.subset(np.ones(5, bool))
    with pytest.raises(ValueError, match="1-D array of row indices"):
        data.subset(3)
    with pytest.raises(ValueError, match="leaves a part with no rows"):
        data.split(0.001)


def test_from_matrix_checks_its_group_names_as_the_constructor_does():
    matrix = torch.zeros(4, 3)
    for names, message in [
        (["x", "x"], "group names must be unique"),
        (["x", ""], "must be a non-empty string"),
        (["x"], "got 1 names for 2 groups"),
    ]:
        with pytest.raises(ValueError, match=message):
            GroupedData.from_matrix(matrix, [2, 1], torch.ones(4, 2, dtype=bool), names=names)
