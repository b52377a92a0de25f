"""What the queries give back: each group in the shape and floating dtype it was given in,
and a column constant in the training data at its value in every draw."""

import numpy as np
import pytest

from pyro_factvae import FactVAE, GroupedData

from .conftest import small_groups


def _with_a_vector_group():
    """``a`` (40, 3) and ``c`` (40, 2) as usual; ``v`` a 1-D group with holes."""
    groups = small_groups()
    vector = groups.pop("b")[:, 0].copy()
    vector[[6, 9]] = np.nan
    return {"a": groups["a"], "v": vector, "c": groups["c"]}


@pytest.fixture(scope="module")
def fitted():
    data = _with_a_vector_group()
    return FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=3, seed=0, progress=False), data


def test_a_group_given_one_dimensional_comes_back_one_dimensional(fitted):
    vae, data = fitted
    filled = vae.impute(data)
    (draw,) = vae.impute(data, num_draws=1, num_samples=8, refine_steps=0)
    lower, upper = vae.predict_interval(data, num_draws=20, num_samples=8, refine_steps=0)
    means = vae.reconstruct(data, num_samples=8, refine_steps=0)
    for out in (filled, draw, lower, upper, means):
        assert {k: v.shape for k, v in out.items()} == {"a": (40, 3), "v": (40,), "c": (40, 2)}
    grouped = vae.reconstruct(GroupedData(data), num_samples=8, refine_steps=0)  # as impute's
    assert {k: (v.dtype, v.shape) for k, v in grouped.items()} == {
        "a": (np.float64, (40, 3)),
        "v": (np.float64, (40, 1)),
        "c": (np.float64, (40, 2)),
    }
    seen = ~np.isnan(data["v"])
    assert np.array_equal(filled["v"][seen], data["v"][seen])
    assert np.isfinite(filled["v"]).all() and np.all(lower["v"] <= upper["v"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_each_group_comes_back_in_its_floating_dtype(fitted, dtype):
    vae, data = fitted
    given = {k: v.copy() for k, v in data.items()}
    if dtype is np.int64:  # no holes in an integer array: only the other groups miss cells
        given["c"] = np.round(np.nan_to_num(given["c"]) * 10).astype(np.int64)
    else:
        given["c"] = given["c"].astype(dtype)
    want = np.float64 if dtype is np.int64 else dtype
    query = {"num_samples": 8, "refine_steps": 0}
    assert vae.impute(given, **query)["c"].dtype == want
    assert vae.impute(given, num_draws=1, **query)[0]["c"].dtype == want
    assert vae.reconstruct(given, **query)["c"].dtype == want
    assert vae.predict_interval(given, num_draws=20, **query)[0]["c"].dtype == want
    assert vae.impute(given, **query)["a"].dtype == np.float64  # the others as they were


def test_a_constant_column_is_filled_and_drawn_at_its_value():
    data = small_groups(n=60)
    data["c"][:, 1] = 2.5  # constant wherever observed
    data["c"][10:14] = np.nan
    with pytest.warns(UserWarning, match=r"columns \[1\] are constant"):
        vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=3, seed=0, progress=False)
    draws = vae.impute(data, num_draws=3, num_samples=8, refine_steps=0)
    lower, upper = vae.predict_interval(data, num_draws=20, num_samples=8, refine_steps=0)
    means = vae.impute(data, num_samples=8, refine_steps=0)  # importance-weighted
    for out in (means, *draws, lower, upper, vae.sample(5, seed=0)):
        assert np.all(out["c"][:, 1] == 2.5)
    assert np.ptp(draws[0]["c"][10:14, 0]) > 0  # the varying column keeps its noise


@pytest.mark.parametrize("family, value", [("bernoulli", 1.0), ("poisson", 0.0)])
def test_a_constant_0_1_or_count_column_is_filled_and_drawn_at_its_value(family, value, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((80, 3))
    if family == "bernoulli":
        y = (rng.random((80, 2)) > 0.5) * 1.0
    else:
        y = rng.poisson(3.0, (80, 2)) * 1.0
    y[:, 1] = value  # constant wherever observed
    y[:10] = np.nan
    data = {"x": x, "y": y}
    with pytest.warns(UserWarning, match=r"group 'y': columns \[1\] are constant"):
        vae = FactVAE(latent_dim=2, lam=0.1, likelihood={"y": family})
        vae.fit(data, epochs=5, seed=0, progress=False)
    vae.save(tmp_path / "m.factvae")
    loaded = FactVAE.load(tmp_path / "m.factvae")
    query = dict(num_samples=8, refine_steps=0)
    for model in (vae, loaded):
        draws = model.impute(data, num_draws=20, **query)
        lower, upper = model.predict_interval(data, num_draws=20, **query)
        plugged = model.impute(data, num_samples=0)  # the posterior mean of z plugged in
        for out in (model.impute(data, **query), plugged, *draws, lower, upper):
            assert np.all(out["y"][:, 1] == value)
        assert np.ptp(np.stack([d["y"][:10, 0] for d in draws])) > 0  # the other one varies
    y[20:40, 1] = 1.0 - value if family == "bernoulli" else 4.0  # it varies in these data:
    vae.fit(data, epochs=1, progress=False)  # a continued fit frees it
    assert not vae.model_.constant()[1][1]
    assert np.ptp(vae.impute(data, **query)["y"][10:, 1]) > 0


@pytest.mark.parametrize("family", ["normal", "bernoulli"])
def test_a_continued_fit_frees_a_column_held_at_one_value_that_it_sees_at_another(family):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 1))
    x = z @ rng.standard_normal((1, 3)) + 0.2 * rng.standard_normal((120, 3))
    y = (z @ rng.standard_normal((1, 2)) > 0) * 1.0
    y[:, 1] = 1.0  # constant: held at 1
    kwargs = {} if family == "normal" else {"likelihood": {"y": family}}
    vae = FactVAE(latent_dim=2, lam=0.1, **kwargs)
    with pytest.warns(UserWarning, match="constant"):
        vae.fit({"x": x, "y": y}, epochs=3, seed=0, progress=False)
    assert vae.model_.constant()[1][1]
    y[:, 1] = 0.0  # constant in these data too, at another value
    vae.fit({"x": x, "y": y}, epochs=1, progress=False)
    assert not vae.model_.constant()[1][1]  # no longer held at 1


def test_a_normal_column_freed_by_a_continued_fit_is_standardized_with_the_new_data():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 1))
    x = z @ rng.standard_normal((1, 3)) + 0.2 * rng.standard_normal((120, 3))
    y = z @ rng.standard_normal((1, 2)) + 0.2 * rng.standard_normal((120, 2))
    y[:, 1] = 5.0
    vae = FactVAE(latent_dim=2, lam=0.1)
    with pytest.warns(UserWarning, match="constant"):
        vae.fit({"x": x, "y": y}, epochs=3, seed=0, progress=False)
    y[:, 1] = 5000 + 1000 * z[:, 0]  # it varies now, in other units
    vae.fit({"x": x, "y": y}, epochs=1, progress=False)
    model = vae.model_
    shift = model.layout.scatter_unbind([lik.shift for lik in model.likelihoods])[1][1]
    unit = model.layout.scatter_unbind([lik.unit for lik in model.likelihoods])[1][1]
    assert float(shift) == pytest.approx(y[:, 1].mean(), rel=1e-6)
    assert float(unit) == pytest.approx(y[:, 1].std(ddof=1), rel=1e-5)


def test_a_normal_column_seen_in_one_row_is_standardized_when_a_continued_fit_sees_more():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((120, 1))
    x = z @ rng.standard_normal((1, 3)) + 0.2 * rng.standard_normal((120, 3))
    y = z @ rng.standard_normal((1, 2)) + 0.2 * rng.standard_normal((120, 2))
    few = y.copy()
    few[1:, 1] = np.nan  # one observation: no spread to learn
    few[0, 1] = 5000.0
    vae = FactVAE(latent_dim=2, lam=0.1)
    with pytest.warns(UserWarning, match="observed in one training row only"):
        vae.fit({"x": x, "y": few}, epochs=2, seed=0, progress=False)
    y[:, 1] = 5000 + 1000 * z[:, 0]
    vae.fit({"x": x, "y": y}, epochs=1, progress=False)
    model = vae.model_
    unit = model.layout.scatter_unbind([lik.unit for lik in model.likelihoods])[1][1]
    assert float(unit) == pytest.approx(y[:, 1].std(ddof=1), rel=1e-5)  # not 1: raw units


def test_a_columns_range_is_read_in_chunks_of_rows(monkeypatch):
    import torch

    from pyro_factvae.module import held

    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.standard_normal((50, 3)))
    obs = torch.as_tensor(rng.random((50, 3)) < 0.7)
    whole = held.column_range(x, obs)
    monkeypatch.setattr(held, "CHUNK", 7)
    for got, want in zip(held.column_range(x, obs), whole):
        assert torch.equal(got, want)
    seen = x.where(obs, float("nan"))
    assert torch.equal(whole[0], torch.as_tensor(np.nanmin(seen.numpy(), 0)))
    assert torch.equal(whole[2], obs.sum(0))


def test_queries_refuse_a_seed_that_is_not_an_integer(fitted):
    vae, data = fitted
    for call in (
        lambda: vae.impute(data, seed=None),
        lambda: vae.impute(data, seed=None, num_draws=2),
        lambda: vae.predict_interval(data, seed=None),
        lambda: vae.reconstruct(data, seed=1.5),
    ):
        with pytest.raises(ValueError, match="seed must be an integer"):
            call()


def test_masked_arrays_and_pandas_nullable_groups_keep_their_float_precision(fitted):
    import pandas as pd

    vae, data = fitted
    a = np.ma.masked_invalid(data["a"].astype(np.float32))
    v = pd.Series(data["v"]).astype("Float32")  # NaN read as pandas' NA
    c = pd.Series(np.round(data["c"][:, 0] * 10)).astype("Int64")
    assert v.isna().sum() == np.isnan(data["v"]).sum() > 0
    filled = vae.impute({"a": a, "v": v, "c": np.column_stack([c, data["c"][:, 1]])})
    assert {k: x.dtype for k, x in filled.items()} == {
        "a": np.float32,
        "v": np.float32,
        "c": np.float64,
    }
    assert not np.isnan(filled["v"]).any() and not np.isnan(filled["a"]).any()
    assert np.array_equal(filled["a"][~a.mask], a.compressed())  # observed cells as given
