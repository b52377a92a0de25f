"""Arguments of GroupedData's constructors and methods read one way, or refused by name:
row indices, masks, seeds, complex and oversized cells, matrices, index labels."""

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import GroupedData
from pyro_factvae.datasets.bars import make_bars
from pyro_factvae.datasets.images import quadrant_data


def _data(n=6):
    a = np.arange(2.0 * n).reshape(n, 2)
    return GroupedData({"a": a, "b": -a})


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint32, np.int64])
def test_subset_reads_any_integer_indices_as_row_numbers(dtype):
    data = _data()
    rows = np.array([5, 0, 0, 3], dtype=dtype)
    got = data.subset(rows).to_numpy()["a"]
    np.testing.assert_array_equal(got, data.to_numpy()["a"][[5, 0, 0, 3]])
    assert list(data.subset(torch.as_tensor(rows.astype(np.int64))).row_index) == [5, 0, 0, 3]


def test_subset_refuses_rows_out_of_range_and_reads_a_bool_mask():
    data = _data()
    with pytest.raises(ValueError, match="row index 6 is out of range for 6 rows"):
        data.subset([0, 6])
    mask = np.array([True, False, True, False, False, True])
    assert list(data.subset(mask).row_index) == [0, 2, 5]


def test_split_takes_numpy_seeds_and_refuses_others():
    data = _data(20)
    a, _ = data.split(0.5, seed=np.int64(3))
    b, _ = data.split(0.5, seed=3)
    assert list(a.row_index) == list(b.row_index)
    with pytest.raises(ValueError, match="seed must be an integer"):
        data.split(0.5, seed=None)
    with pytest.raises(ValueError, match="fraction must be a number"):
        data.split("0.5")


@pytest.mark.parametrize("mask", [np.full((6, 2), 0.5), np.full((6, 2), 2.0)])
def test_masks_that_are_not_boolean_are_refused_by_with_mask_and_from_matrix(mask):
    data = _data()
    with pytest.raises(ValueError, match="observed must be boolean"):
        data.with_mask(mask)
    matrix = np.ones((6, 4), dtype=np.float32)
    with pytest.raises(ValueError, match="observed must be boolean"):
        GroupedData.from_matrix(matrix, [2, 2], mask)


def test_from_matrix_checks_dims_chunk_and_shape():
    matrix = np.ones((3, 5), dtype=np.float32)
    cells = np.ones((3, 5), dtype=bool)
    with pytest.raises(ValueError, match="dims entry must be a positive integer, got -1"):
        GroupedData.from_matrix(matrix, [6, -1], cells)
    with pytest.raises(ValueError, match="dims entry must be a positive integer, got 2.7"):
        GroupedData.from_matrix(matrix, [2.7, 3.3], cells)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        GroupedData.from_matrix(matrix, [2, 3], cells, chunk=0)
    with pytest.raises(ValueError, match=r"matrix must be 2-D.*reshape\(-1, 1\)"):
        GroupedData.from_matrix(np.ones(5, dtype=np.float32), [5], np.ones((5, 1), bool))


def test_from_matrix_judges_column_ranges_as_arrays_are():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((80, 4)) * 1e20).astype(np.float32)
    arrays = GroupedData({"g0": x[:, :2], "g1": x[:, 2:]})
    matrix = GroupedData.from_matrix(x, [2, 2], np.ones((80, 2), bool))
    for data in (arrays, matrix):
        with pytest.raises(ValueError, match=r"group 'g0', column 0: observed values span"):
            data.require_trainable()
    expect = [(x[:, :2].max(0), x[:, :2].min(0)), (x[:, 2:].max(0), x[:, 2:].min(0))]
    for (top, bottom), (want_top, want_bottom) in zip(matrix.ranges, expect):
        np.testing.assert_array_equal(top, want_top)
        np.testing.assert_array_equal(bottom, want_bottom)


def test_a_frame_with_complex_or_oversized_cells_is_refused_by_group():
    frame = pd.DataFrame({"x": np.array([1 + 2j, 2, 3]), "y": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="column 'x' holds complex numbers"):
        GroupedData.from_dataframe(frame, {"a": ["x"], "b": ["y"]})
    for cell in (1 + 2j, 10**400):
        frame = pd.DataFrame({"x": pd.Series([cell, 2, 3], dtype=object), "y": [1.0, 2.0, 3.0]})
        with pytest.raises(ValueError, match="group 'a': a cell is not a real number"):
            GroupedData.from_dataframe(frame, {"a": ["x"], "b": ["y"]})
    with pytest.raises(ValueError, match="group 'a': a cell is not a number"):
        GroupedData({"a": np.array([[10**400], [1]], dtype=object), "b": np.ones((2, 1))})


def test_inf_in_a_frame_is_named_by_its_index_label():
    frame = pd.DataFrame({"x": [1.0, 2.0, np.inf, 4.0], "y": 1.0}, index=[10, 20, 30, 40])
    with pytest.raises(ValueError, match=r"group 'a': rows at index \[30\] hold inf"):
        GroupedData.from_dataframe(frame, {"a": ["x"], "b": ["y"]})


def test_image_data_take_negative_seeds_and_check_their_arguments():
    assert not np.array_equal(make_bars(5, seed=-3), make_bars(5, seed=3))
    np.testing.assert_array_equal(make_bars(5, seed=-3), make_bars(5, seed=-3))
    from pyro_factvae.datasets.bars import bars_data

    assert len(bars_data(20, seed=2**64 - 1)) == 20  # the largest seed its check accepts
    images = np.zeros((10, 4, 4))
    with pytest.raises(ValueError, match="seed must be an integer"):
        quadrant_data(images, 0.5, seed=1.5)
    with pytest.raises(ValueError, match="missing must be a number"):
        quadrant_data(images, "0.5")
    with pytest.raises(ValueError, match="pad_to must be 0 or a positive integer"):
        quadrant_data(images, pad_to=3.0)


def test_a_large_integer_anndata_matrix_is_read_exactly():
    anndata = pytest.importorskip("anndata")
    adata = anndata.AnnData(np.array([[16777217, 1], [2, 3]], dtype=np.int64))
    adata.var["kind"] = ["a", "b"]
    data = GroupedData.from_anndata(adata, groups="kind")
    assert data.to_numpy()["a"][0, 0] == 16777217
    small = anndata.AnnData(np.array([[5, 1], [2, 3]], dtype=np.int64))
    small.var["kind"] = ["a", "b"]
    assert GroupedData.from_anndata(small, groups="kind").to_numpy()["a"][0, 0] == 5
