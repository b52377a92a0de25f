"""AnnData and MuData in and out, on tiny objects built here."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from pyro_factvae import FactVAE, GroupedData

anndata = pytest.importorskip("anndata")
mudata = pytest.importorskip("mudata")


def _mudata(seed=0):
    """Two modalities over 60 cells: RNA (sparse counts-like) on all, protein on 45 of them."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((60, 2))
    rna = np.round(np.exp(0.5 + z @ (0.5 * rng.standard_normal((2, 8)))))
    prot = z @ rng.standard_normal((2, 3)) + 0.1 * rng.standard_normal((60, 3))
    cells = [f"c{i}" for i in range(60)]
    a = anndata.AnnData(sp.csr_matrix(rna.astype(np.float32)), obs=pd.DataFrame(index=cells))
    a.var_names = [f"g{j}" for j in range(8)]
    keep = sorted(np.random.default_rng(1).choice(60, 45, replace=False))
    b = anndata.AnnData(
        prot[keep].astype(np.float32), obs=pd.DataFrame(index=[cells[i] for i in keep])
    )
    b.var_names = [f"p{j}" for j in range(3)]
    return mudata.MuData({"rna": a, "prot": b}), rna, prot, keep


def test_a_mudata_round_trip_with_a_partly_missing_modality():
    mdata, rna, prot, keep = _mudata()
    data = GroupedData.from_mudata(mdata)
    assert data.names == ["rna", "prot"] and len(data) == 60
    missing = np.setdiff1d(np.arange(60), keep)
    order = [list(mdata.obs_names).index(f"c{i}") for i in missing]
    assert not data.observed[order, 1].any() and data.observed[:, 0].all()
    np.testing.assert_array_equal(
        data.to_numpy()["rna"][[list(mdata.obs_names).index("c0")]], rna[[0]]
    )
    vae = FactVAE(latent_dim=2, lam=0.1).fit(mdata, epochs=3, progress=False)  # fit takes it as is
    assert vae.layout_.names == ("rna", "prot")
    vae.to_mudata(mdata)
    assert mdata.obsm["X_factvae"].shape == (60, 2)
    assert mdata.mod["prot"].layers["factvae_imputed"].shape == (45, 3)
    np.testing.assert_allclose(mdata.mod["prot"].layers["factvae_imputed"], mdata.mod["prot"].X)
    norms = mdata.uns["factvae_sparsity"]
    assert norms["groups"] == ["rna", "prot"] and np.asarray(norms["column_norms"]).shape == (2, 2)
    filled = vae.impute(GroupedData.from_mudata(mdata))  # the cells without protein get it
    assert not np.isnan(filled["prot"]).any()


def test_an_anndata_split_into_groups_by_a_var_column_or_a_mapping():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    x[3, 1] = np.nan
    adata = anndata.AnnData(x)
    adata.var_names = list("abcde")
    adata.var["kind"] = ["left", "left", "right", "right", "right"]
    by_column = GroupedData.from_anndata(adata, groups="kind")
    by_mapping = GroupedData.from_anndata(
        adata, groups={"left": ["a", "b"], "right": ["c", "d", "e"]}
    )
    assert by_column.names == ["left", "right"] and by_column.dims == [2, 3]
    assert np.array_equal(by_column.matrix.numpy(), by_mapping.matrix.numpy())
    assert not bool(by_column.cells[3, 1])
    vae = FactVAE(latent_dim=2, lam=0.1).fit(by_column, epochs=2, progress=False)
    vae.to_anndata(adata, groups="kind")
    filled = adata.layers["factvae_imputed"]
    assert filled.shape == (50, 5) and not np.isnan(filled).any() and filled[0, 0] == x[0, 0]
    assert adata.obsm["X_factvae"].shape == (50, 2)
    before = filled.copy()
    vae.to_anndata(adata, groups={"right": ["c", "d", "e"], "left": ["a", "b"]})  # any order
    np.testing.assert_array_equal(adata.layers["factvae_imputed"], before)
    with pytest.raises(ValueError, match="no column 'nope'"):
        GroupedData.from_anndata(adata, groups="nope")
    with pytest.raises(ValueError, match="no layer 'counts'"):
        GroupedData.from_anndata(adata, groups="kind", layer="counts")
    with pytest.raises(ValueError, match="GroupedData.from_anndata"):
        FactVAE().fit(adata)


def test_a_fitted_model_answers_queries_on_a_mudata():
    mdata, _, _, keep = _mudata()
    vae = FactVAE(latent_dim=2, lam=0.1).fit(mdata, epochs=2, progress=False)
    mean, _ = vae.latent(mdata)
    filled = vae.impute(mdata)
    assert mean.shape == (60, 2) and filled["prot"].shape == (60, 3)
    assert not np.isnan(filled["prot"]).any()
    swapped = mudata.MuData({"prot": mdata.mod["prot"], "rna": mdata.mod["rna"]})
    again = vae.impute(swapped)  # modalities are matched by name, as a dict's groups are
    rows = [list(swapped.obs_names).index(o) for o in mdata.obs_names]  # its rows' own order
    assert all(np.allclose(again[k][rows], filled[k], atol=1e-5) for k in filled)


def test_variables_in_another_order_than_fitted_are_refused_by_name():
    rng = np.random.default_rng(3)
    adata = anndata.AnnData(rng.standard_normal((40, 5)).astype(np.float32))
    adata.var_names = list("abcde")
    adata.var["kind"] = ["left", "left", "right", "right", "right"]
    vae = FactVAE(latent_dim=2, lam=0.1)
    vae.fit(GroupedData.from_anndata(adata, groups="kind"), epochs=2, progress=False)
    assert vae.variables_ == {"left": ["a", "b"], "right": ["c", "d", "e"]}
    moved = adata[:, ["b", "a", "c", "d", "e"]].copy()
    says = r"group 'left'.*another order: from position 0, \['b', 'a'\]"
    with pytest.raises(ValueError, match=says):
        vae.impute(GroupedData.from_anndata(moved, groups="kind"))
    with pytest.raises(ValueError, match=r"group 'left'"):
        vae.to_anndata(moved, groups="kind")
    again = vae.impute(GroupedData.from_anndata(moved, groups=vae.variables_))  # as it says
    want = vae.impute(GroupedData.from_anndata(adata, groups="kind"))
    np.testing.assert_array_equal(again["left"], want["left"])
    mdata, _, _, _ = _mudata()
    vae = FactVAE(latent_dim=2, lam=0.1).fit(mdata, epochs=2, progress=False)
    assert vae.variables_["prot"] == ["p0", "p1", "p2"]
    mdata.mod["prot"] = mdata.mod["prot"][:, ["p2", "p0", "p1"]].copy()
    mdata.update()
    part = GroupedData.from_mudata(mdata, modalities=["prot"])  # a subset names its own
    assert part.variables == {"prot": ["p2", "p0", "p1"]}
    for query in (lambda: vae.impute(mdata), lambda: vae.to_mudata(mdata)):
        with pytest.raises(ValueError, match=r"group 'prot'.*another order"):
            query()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_an_anndata_gets_its_observed_values_back_in_its_own_precision(dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((40, 4)) / 3).astype(dtype)  # float32 would round these
    x[[2, 5], 0] = np.nan
    adata = anndata.AnnData(x)
    adata.var_names = list("abcd")
    spec = {"left": ["a", "b"], "right": ["c", "d"]}
    vae = FactVAE(latent_dim=2, lam=0.1).fit(
        GroupedData.from_anndata(adata, spec), epochs=2, progress=False
    )
    vae.to_anndata(adata, groups=spec)
    filled = adata.layers["factvae_imputed"]
    seen = ~np.isnan(x)
    assert filled.dtype == dtype and np.array_equal(filled[seen], x[seen])
    assert np.isfinite(filled).all()


def test_names_that_repeat_or_are_missing_are_refused():
    mdata, *_ = _mudata()
    mdata.mod["prot"].obs_names = ["c0"] * mdata.mod["prot"].n_obs  # rows matched by name
    with pytest.raises(ValueError, match=r"modality 'prot''s obs_names repeat \(\['c0'\]\)"):
        GroupedData.from_mudata(mdata)
    a = anndata.AnnData(np.ones((10, 3), np.float32))
    b = anndata.AnnData(np.ones((10, 2), np.float32))
    a.obs_names = b.obs_names = ["c"] * 10
    with pytest.raises(ValueError, match=r"obs_names repeat \(\['c'\]\)"):
        GroupedData.from_mudata(mudata.MuData({"rna": a, "prot": b}))
    x = anndata.AnnData(np.ones((10, 3), np.float32))
    x.var["kind"] = ["left", None, "right"]
    with pytest.raises(ValueError, match=r"is empty for variables \['1'\]"):
        GroupedData.from_anndata(x, "kind")
    x.var_names = ["v", "v", "w"]
    with pytest.raises(ValueError, match=r"var_names repeat \(\['v'\]\)"):
        GroupedData.from_anndata(x, {"g": ["v", "w"]})


def test_variables_in_no_group_and_rows_that_observe_nothing_in_an_anndata():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 5)).astype(np.float32)
    x[7, :4] = np.nan  # observes none of the grouped variables
    adata = anndata.AnnData(x)
    adata.var_names = ["a", "b", "c", "d", "extra"]
    spec = {"left": ["a", "b"], "right": ["c", "d"]}
    with pytest.raises(ValueError, match="rows have no observed group"):
        GroupedData.from_anndata(adata, spec)
    data = GroupedData.from_anndata(adata, spec, drop_empty_rows=True)
    assert len(data) == 39 and 7 not in data.row_index
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=2, progress=False)
    vae.to_anndata(adata, groups=spec)
    filled = adata.layers["factvae_imputed"]
    assert np.array_equal(filled[:, 4], x[:, 4])  # kept as it is, not NaN
    assert np.isfinite(filled[7, :4]).all()  # prior-predictive means
    seen = ~np.isnan(x)
    assert np.array_equal(filled[seen], x[seen])


def test_a_chunk_that_is_not_a_positive_integer_and_a_bare_string_are_refused():
    from pyro_factvae.omics import anndata_groups, mudata_groups

    mdata, *_ = _mudata()
    x = anndata.AnnData(np.arange(30, dtype=np.float32).reshape(10, 3))
    x.var_names = ["v0", "v1", "v2"]
    for chunk in (-1, 0, 1.5):
        with pytest.raises(ValueError, match=f"chunk must be a positive integer, got {chunk}"):
            anndata_groups(x, {"g": ["v0"]}, chunk=chunk)
        with pytest.raises(ValueError, match="chunk must be a positive integer"):
            mudata_groups(mdata, chunk=chunk)
    with pytest.raises(ValueError, match=r"groups \['g'\] map to a single string.*\['v0'\]"):
        anndata_groups(x, {"g": "v0"})
    out = anndata_groups(x, {"g": ["v0", "v2"]}, chunk=3)  # chunks that do not divide the rows
    assert np.array_equal(out["g"], np.arange(30, dtype=np.float32).reshape(10, 3)[:, [0, 2]])


def test_a_mudata_in_another_order_is_written_back_and_bad_reads_are_named():
    mdata, _, _, _ = _mudata()
    vae = FactVAE(latent_dim=2, lam=0.1).fit(mdata, epochs=2, progress=False)
    ref = vae.to_mudata(mudata.MuData({k: mdata.mod[k].copy() for k in ("rna", "prot")}))
    swapped = vae.to_mudata(mudata.MuData({k: mdata.mod[k].copy() for k in ("prot", "rna")}))
    for k in ("rna", "prot"):  # each modality's own rows: the same values whatever the order
        np.testing.assert_allclose(
            swapped.mod[k].layers["factvae_imputed"],
            ref.mod[k].layers["factvae_imputed"],
            atol=1e-5,
        )
    with pytest.raises(ValueError, match=r"modalities is a list of names, e.g. \['rna'\]"):
        GroupedData.from_mudata(mdata, modalities="rna")
    bare = anndata.AnnData(obs=mdata.mod["rna"].obs, var=mdata.mod["rna"].var)  # X is None
    bare.layers["counts"] = mdata.mod["rna"].X
    with pytest.raises(ValueError, match=r"has no X \(its X is None\); read one of its layers"):
        GroupedData.from_anndata(bare, {"g": list(bare.var_names)})


def test_a_mask_of_a_mudata_in_another_order_is_read_in_its_modalities_order():
    from pyro_factvae.calibration import draw_scores

    mdata, _, _, _ = _mudata()
    vae = FactVAE(latent_dim=2, lam=0.1).fit(mdata, epochs=2, progress=False)
    swapped = mudata.MuData({k: mdata.mod[k].copy() for k in ("prot", "rna")})
    hide = np.zeros((60, 2), bool)
    hide[:10, 0] = True  # the first modality of this MuData: prot
    query = dict(num_draws=39, num_samples=5, refine_steps=0)
    entries = draw_scores(vae, swapped, hide, **query)["entries"]
    assert entries["prot"] > 0 and entries["rna"] == 0
