"""Each feature's training range kept with the weights, and the warning when an imputed mean
lies far outside it."""

import warnings

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.extrapolation import ExtrapolationWarning, outside_widths
from pyro_factvae.io import read_payload, write_payload
from pyro_factvae.module.held import training_range


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    a = z @ rng.standard_normal((2, 4)) + 0.1 * rng.standard_normal((n, 4))
    b = z @ rng.standard_normal((2, 2)) + 0.1 * rng.standard_normal((n, 2))
    a[rng.random(a.shape) < 0.1] = np.nan
    b[::6] = np.nan
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def fitted():
    data = _data()
    vae = FactVAE(latent_dim=3, lam=0.1).fit(data, epochs=2, progress=False)
    return vae, data


def test_outside_widths_counts_widths_beyond_the_range():
    low, high = np.array([0.0, 0.0, 1.0, 2.0]), np.array([2.0, 2.0, 1.0, 1.0])
    values = np.array([[1.0, 5.0, 9.0, 9.0], [-4.0, 2.0, 1.0, -9.0]])
    got = outside_widths(values, low, high)
    # inside: 0; 3 above a width of 2: 1.5; a constant column or an unknown range: 0
    np.testing.assert_allclose(got, [[0.0, 1.5, 0.0, 0.0], [2.0, 0.0, 0.0, 0.0]])


def test_training_range_is_each_columns_observed_min_and_max(fitted):
    vae, data = fitted
    ranges = training_range(vae.model_)
    for (low, high), name in zip(ranges, ["a", "b"]):
        np.testing.assert_allclose(low, np.nanmin(data[name], 0), rtol=1e-6)
        np.testing.assert_allclose(high, np.nanmax(data[name], 0), rtol=1e-6)


def test_a_later_fit_widens_the_training_range():
    data = _data()
    vae = FactVAE(latent_dim=3, lam=0.1).fit(data, epochs=1, progress=False)
    wider = {k: 3.0 * v for k, v in data.items()}
    vae.fit(wider, epochs=1, progress=False)
    low, high = training_range(vae.model_)[0]
    np.testing.assert_allclose(low, np.nanmin(wider["a"], 0), rtol=1e-6)
    np.testing.assert_allclose(high, np.nanmax(wider["a"], 0), rtol=1e-6)


def test_padded_groups_keep_their_own_ranges():
    rng = np.random.default_rng(1)
    data = {"wide": rng.standard_normal((60, 5)), "narrow": 10 + rng.standard_normal((60, 3))}
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=1, progress=False)
    assert len(vae.model_.layout.blocks) == 1  # one zero-padded block
    (wlow, _), (nlow, nhigh) = training_range(vae.model_)
    assert wlow.shape == (5,) and nlow.shape == (3,)
    np.testing.assert_allclose(nlow, data["narrow"].min(0), rtol=1e-6)
    np.testing.assert_allclose(nhigh, data["narrow"].max(0), rtol=1e-6)


def test_impute_is_silent_when_fills_stay_near_the_training_range(fitted):
    vae, data = fitted
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        vae.impute(data, num_samples=20, refine_steps=0)


def test_impute_warns_of_fills_far_outside_the_training_range_and_returns_them(fitted):
    vae, data = fitted
    b, i = vae.model_.layout.locate(1)
    lik = vae.model_.likelihoods[b]
    saved = lik.low.clone(), lik.high.clone()
    try:
        with torch.no_grad():  # as if group b's training values all lay near 100
            lik.low[i, :2], lik.high[i, :2] = 100.0, 100.5
        says = r"group 'b': 40 cells \(rows \[0, 6, 12, 18, 24, ... \(20 in all\)\], columns"
        with pytest.warns(ExtrapolationWarning, match=says):
            filled = vae.impute(data, num_samples=20, refine_steps=0)
    finally:
        with torch.no_grad():
            lik.low.copy_(saved[0])
            lik.high.copy_(saved[1])
    observed = ~np.isnan(data["b"])
    np.testing.assert_array_equal(filled["b"][observed], data["b"][observed])
    assert np.isfinite(filled["b"]).all()


def test_a_model_file_without_training_ranges_loads_and_imputes_silently(fitted, tmp_path):
    vae, data = fitted
    path = tmp_path / "old.factvae"
    vae.save(path)
    meta, tensors = read_payload(path)
    del tensors["meta"]
    tensors["model"] = {
        k: v for k, v in tensors["model"].items() if not k.endswith((".low", ".high"))
    }
    write_payload(meta, tensors, path)
    old = FactVAE.load(path)
    for low, high in training_range(old.model_):
        assert (low > high).all()  # nothing known
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExtrapolationWarning)
        old.impute(data, num_samples=20, refine_steps=0)


def test_the_warning_names_a_frames_rows_and_columns_by_their_labels():
    import pandas as pd

    data = _data(n=60)
    frame = pd.DataFrame(
        np.hstack([data["a"], data["b"]]),
        columns=["a0", "a1", "a2", "a3", "age", "bmi"],
        index=[f"p{i}" for i in range(60)],
    )
    groups = {"a": ["a0", "a1", "a2", "a3"], "b": ["age", "bmi"]}
    vae = FactVAE(latent_dim=3, lam=0.1).fit(frame, groups=groups, epochs=2, progress=False)
    b, i = vae.model_.layout.locate(1)
    with torch.no_grad():  # as if group b's training values all lay near 100
        vae.model_.likelihoods[b].low[i, :2] = 100.0
        vae.model_.likelihoods[b].high[i, :2] = 100.5
    says = r"group 'b': 20 cells \(rows \['p0', 'p6', 'p12', 'p18', 'p24', \.\.\. \(10 in all\)\], "
    with pytest.warns(ExtrapolationWarning, match=says + r"columns \['age', 'bmi'\]\)"):
        vae.impute(frame, num_samples=20, refine_steps=0)
    frame.index = range(1000, 1060)  # whole numbers, written as such
    with pytest.warns(ExtrapolationWarning, match=r"rows \[1000, 1006, 1012,"):
        vae.impute(frame, num_samples=20, refine_steps=0)
    frame.index = [7] * 60  # labels that repeat name no row: positions
    with pytest.warns(ExtrapolationWarning, match=r"rows \[0, 6, 12,"):
        vae.impute(frame, num_samples=20, refine_steps=0)
