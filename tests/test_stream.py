"""Streaming a torch Dataset: one pass through a DataLoader into a float32 memmap, the same
data (and the same fit) as the arrays, and clear errors with rows numbered over the data set."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset

from pyro_factvae import FactVAE, GroupedData


class Rows(Dataset):
    """Rows of per-group arrays, as a dict (or a tuple) per item; counts its reads."""

    def __init__(self, groups, as_tuple=False):
        self.groups, self.as_tuple, self.reads = groups, as_tuple, 0

    def __len__(self):
        return len(next(iter(self.groups.values())))

    def __getitem__(self, i):
        self.reads += 1
        if self.as_tuple:
            return tuple(torch.as_tensor(v[i]) for v in self.groups.values())
        return {k: v[i] for k, v in self.groups.items()}


def groups(n=300):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(n, 2))
    out = {
        "a": z @ rng.normal(size=(2, 3)) + 0.1 * rng.normal(size=(n, 3)),
        "b": z @ rng.normal(size=(2, 2)) + 0.1 * rng.normal(size=(n, 2)),
        "c": rng.normal(size=n),
    }
    out["b"][:40] = np.nan
    out["c"][250:] = np.nan
    return out


def test_a_dataset_streams_into_the_same_data_as_the_arrays_reading_each_item_once():
    rows = Rows(groups())
    data = GroupedData.from_dataset(rows, batch_size=64)
    ref = GroupedData(groups())
    assert rows.reads == 300
    assert data.names == ["a", "b", "c"] and data.dims == [3, 2, 1]
    assert torch.equal(data.matrix, ref.matrix) and torch.equal(data.observed, ref.observed)
    tup = GroupedData.from_dataset(Rows(groups(), as_tuple=True), batch_size=7)
    assert tup.names == ["g0", "g1", "g2"] and torch.equal(tup.matrix, ref.matrix)


def test_the_memmap_file_holds_the_rows_and_reads_back_with_from_matrix(tmp_path):
    path = tmp_path / "rows.f32"
    data = GroupedData.from_dataset(Rows(groups()), path=path, batch_size=50)
    assert path.stat().st_size == 300 * 6 * 4
    back = np.memmap(path, dtype=np.float32, mode="r", shape=(300, 6))
    again = GroupedData.from_matrix(back, data.dims, data.observed.numpy(), names=data.names)
    assert torch.equal(again.matrix, data.matrix)


def test_fitting_a_dataset_equals_fitting_its_arrays():
    a = FactVAE(latent_dim=2, lam=0.1).fit(Rows(groups()), epochs=2, progress=False)
    b = FactVAE(latent_dim=2, lam=0.1).fit(groups(), epochs=2, progress=False)
    assert a.history_ == b.history_
    for (k, va), vb in zip(a.model_.state_dict().items(), b.model_.state_dict().values()):
        assert torch.equal(va, vb), k
    filled, ref = a.impute(Rows(groups()))["b"], b.impute(groups())["b"]
    assert filled.dtype == np.float32  # the stored values, as for a GroupedData
    with pytest.raises(ValueError, match=r"give the groups \['g0', 'g1', 'g2'\] \(a sequence"):
        a.impute(Rows(groups(), as_tuple=True))  # the names of a tuple item are not the fitted
    np.testing.assert_array_equal(filled[:40], ref[:40].astype(np.float32))
    np.testing.assert_allclose(filled[40:], ref[40:], rtol=1e-6)
    streamed = GroupedData.from_dataset(Rows(groups()))  # held, and given back, in float32
    mapped = GroupedData.from_matrix(
        streamed.matrix.numpy(), streamed.dims, streamed.observed, names=streamed.names
    )
    query = dict(num_samples=8, refine_steps=0)
    for data in (streamed, mapped.subset(np.arange(300))):
        filled = a.impute(data, **query)
        assert {v.dtype for v in filled.values()} == {np.dtype(np.float32)}
        np.testing.assert_array_equal(filled["b"], a.impute(Rows(groups()), **query)["b"])
        assert a.impute(data, num_draws=2, **query)[0]["a"].dtype == np.float32
        assert a.predict_interval(data, num_draws=19, **query)[1]["c"].dtype == np.float32


def test_rows_without_an_observed_group_are_refused_or_dropped_with_their_item_index():
    g = groups()
    for v in g.values():
        v[[5, 20, 130]] = np.nan
    with pytest.raises(ValueError, match=r"dataset items \[5, 20\] have no observed group"):
        GroupedData.from_dataset(Rows(g), batch_size=64)  # the first batch that holds one
    late = groups()
    for v in late.values():
        v[130] = np.nan
    with pytest.raises(ValueError, match=r"dataset items \[130\] have no observed group"):
        GroupedData.from_dataset(Rows(late), batch_size=64)  # numbered over the data set
    data = GroupedData.from_dataset(Rows(g), batch_size=64, drop_empty_rows=True)
    assert len(data) == 297 and not {5, 20, 130} & set(data.row_index.tolist())
    assert torch.equal(data.matrix, GroupedData(g, drop_empty_rows=True).matrix)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g["b"].__setitem__((99, 0), np.inf), r"group 'b': rows \[99\] hold inf"),
    ],
)
def test_bad_values_name_the_group_and_the_item_over_the_whole_dataset(change, message):
    g = groups()
    change(g)
    with pytest.raises(ValueError, match=message):
        GroupedData.from_dataset(Rows(g), batch_size=64)


def test_items_that_change_shape_or_type_and_iterable_datasets_are_refused():
    class Ragged(Rows):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            if i >= 64:
                item["a"] = item["a"][:2]
            return item

    with pytest.raises(ValueError, match=r"dataset items 64..127 have groups"):
        GroupedData.from_dataset(Ragged(groups()), batch_size=64)

    class Flat(Rows):
        def __getitem__(self, i):
            return torch.zeros(3)

    with pytest.raises(ValueError, match="sequence or a mapping of per-group"):
        GroupedData.from_dataset(Flat(groups()))

    class Stream(IterableDataset):
        def __iter__(self):
            yield {"a": np.zeros(2)}

    with pytest.raises(ValueError, match="map-style Dataset"):
        GroupedData.from_dataset(Stream())
    with pytest.raises(ValueError, match=r"GroupedData.from_dataset\(dataset\)"):
        GroupedData(Rows(groups()))


def test_items_of_other_widths_within_one_batch_are_refused_clearly():
    class Ragged(Dataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"a": np.ones(2 if i == 4 else 3, np.float32), "b": np.zeros(2, np.float32)}

    with pytest.raises(ValueError, match="every item needs the same groups and widths"):
        GroupedData.from_dataset(Ragged(), batch_size=8)


def test_a_kept_memmap_file_holds_only_the_rows_kept(tmp_path):
    g = groups()
    for v in g.values():
        v[[7, 250]] = np.nan  # two rows with nothing observed, dropped
    g["a"][3, 1] = np.nan  # and a missing cell: a cell mask file too
    path = tmp_path / "rows.f32"
    data = GroupedData.from_dataset(Rows(g), path=path, batch_size=50, drop_empty_rows=True)
    assert len(data) == 298 and path.stat().st_size == 298 * 6 * 4
    back = np.memmap(path, dtype=np.float32, mode="r", shape=(298, 6))
    cells = np.memmap(f"{path}.cells", dtype=bool, mode="r", shape=(298, 6))
    again = GroupedData.from_matrix(back, data.dims, cells, names=data.names)
    assert torch.equal(again.matrix, data.matrix) and torch.equal(again.cells, data.cells)


class Lists(Rows):
    """Items whose groups are Python lists (``None`` for a missing value)."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return {
            k: [None if np.isnan(x) else float(x) for x in np.atleast_1d(v)]
            for k, v in item.items()
        }


def test_items_of_lists_are_rows_and_items_that_differ_are_named():
    g = groups()
    data = GroupedData.from_dataset(Lists(g), batch_size=64)
    assert data.dims == [3, 2, 1] and len(data) == 300
    assert torch.equal(data.matrix, GroupedData.from_dataset(Rows(g), batch_size=64).matrix)

    class Missing(Rows):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            if i == 77:
                del item["b"]
            return item

    with pytest.raises(ValueError, match=r"dataset item 77 has groups \{'a': 3, 'c': 1\}"):
        GroupedData.from_dataset(Missing(g), batch_size=64)


def test_streamed_values_beyond_float32s_reach_are_refused():
    g = groups()
    g["a"][5, 0] = 1e39
    with pytest.raises(ValueError, match=r"group 'a', column 0: observed values reach 1e\+39"):
        GroupedData.from_dataset(Rows(g), batch_size=64)


def test_a_kept_file_written_again_leaves_earlier_data_intact_and_no_stale_mask(tmp_path):
    g = groups()
    g["a"][3, 1] = np.nan  # a cell mask beside the first file
    path = tmp_path / "new" / "rows.f32"  # its folder is made
    first = GroupedData.from_dataset(Rows(g), path=path, batch_size=50)
    before = first.matrix.clone()
    assert (tmp_path / "new" / "rows.f32.cells").exists()
    small = {k: np.nan_to_num(v[:10]) for k, v in groups().items()}  # no missing cell
    second = GroupedData.from_dataset(Rows(small), path=path)
    assert torch.equal(first.matrix, before)  # still its own rows, not the second's
    assert len(second) == 10 and path.stat().st_size == 10 * 6 * 4
    assert not (tmp_path / "new" / "rows.f32.cells").exists()
    bad = {k: v.copy() for k, v in small.items()}
    bad["a"][8, 0] = np.inf
    with pytest.raises(ValueError, match="hold inf"):
        GroupedData.from_dataset(Rows(bad), path=tmp_path / "bad.f32")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new"]  # nothing left of it
    with pytest.raises(ValueError, match="is a folder"):
        GroupedData.from_dataset(Rows(small), path=tmp_path)


def test_a_stream_judges_each_columns_range_over_all_its_batches_as_in_memory():
    import warnings

    hours = {"t": 1.7e9 + 3600.0 * np.arange(200), "x": np.arange(200.0)}
    with warnings.catch_warnings():  # no batch of 16 hours is judged alone
        warnings.simplefilter("error")
        GroupedData.from_dataset(Rows(hours), batch_size=16).require_trainable()
    seconds = {"t": 1.7e9 + np.arange(200.0), "x": np.arange(200.0)}
    data = GroupedData.from_dataset(Rows(seconds), batch_size=16)  # judged when trained on
    with pytest.warns(UserWarning, match=r"'t' column 0") as caught:
        data.require_trainable()
    assert len(caught) == 1  # once, not per batch


def test_a_kept_file_follows_the_umask_and_batched_fetches_and_bad_lists_are_named(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        GroupedData.from_dataset(Rows(groups(20)), path=tmp_path / "rows.f32")
    finally:
        os.umask(old)
    assert (tmp_path / "rows.f32").stat().st_mode & 0o777 == 0o644

    class Batched(Rows):
        def __getitems__(self, indices):
            self.batches = getattr(self, "batches", 0) + 1
            return [self[i] for i in indices]

    rows = Batched(groups(100))
    data = GroupedData.from_dataset(rows, batch_size=32)
    assert rows.batches == 4 and torch.equal(
        data.matrix, GroupedData.from_dataset(Rows(groups(100))).matrix
    )

    class Text(Lists):
        def __getitem__(self, i):
            item = super().__getitem__(i)
            if i == 41:
                item["a"][1] = "x"
            return item

    with pytest.raises(ValueError, match=r"dataset item 41: a group's list is not a row"):
        GroupedData.from_dataset(Text(groups()), batch_size=32)


@pytest.mark.parametrize("text", [np.array(["x", "y", "z"]), np.array(["x", 1.0, 2.0], object)])
def test_a_dataset_item_holding_text_is_refused_with_the_advice_to_encode_it(text):
    g = groups(n=20)
    g["a"] = np.broadcast_to(text, (20, 3)).copy()
    with pytest.raises(ValueError, match=r"item 0: group 'a' holds text .*one-hot"):
        GroupedData.from_dataset(Rows(g))


def test_a_dataset_with_an_empty_group_name_is_refused():
    g = groups(n=20)
    g[""] = g.pop("c")
    with pytest.raises(ValueError, match="group name '' must be a non-empty string"):
        GroupedData.from_dataset(Rows(g))
