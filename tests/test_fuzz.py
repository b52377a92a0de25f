"""Property-based input tests (hypothesis): valid inputs train and predict with finite
outputs of the right shapes; invalid inputs raise ValueError, never an error from torch/Pyro."""

import numpy as np
import pyro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.metrics import evaluate

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples on every run: the suite's time stays bounded
    suppress_health_check=[HealthCheck.too_slow],
)
LIKELIHOODS = ("normal", "bernoulli", "categorical")


@st.composite
def grouped_inputs(draw):
    """Groups of random widths and likelihoods with a random (valid) missingness pattern."""
    n = draw(st.integers(1, 12))
    num_groups = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    liks = [draw(st.sampled_from(LIKELIHOODS)) for _ in range(num_groups)]
    dims = [draw(st.integers(2 if lik == "categorical" else 1, 5)) for lik in liks]
    pattern = draw(st.sampled_from(["random", "single", "one_row", "all"]))
    if pattern == "all":
        mask = np.ones((n, num_groups), dtype=bool)
    elif pattern == "single":  # every row has exactly one observed group
        mask = np.eye(num_groups, dtype=bool)[rng.integers(0, num_groups, n)]
    else:
        mask = rng.random((n, num_groups)) < 0.6
        mask[np.arange(n), rng.integers(0, num_groups, n)] = True  # no empty row
        if pattern == "one_row":  # group 0 observed in one row only
            mask[:, 0] = False
            mask[0, 0] = True
            empty = ~mask.any(1)
            mask[empty, -1] = True
            if num_groups == 1:
                mask[:, 0] = True
    # every group observed somewhere (a never-observed group is refused by fit), keeping each
    # row's pattern otherwise: row g % n also observes group g
    mask[np.arange(num_groups) % n, np.arange(num_groups)] = True
    groups = {}
    for g, (lik, d) in enumerate(zip(liks, dims)):
        if lik == "normal":
            x = rng.standard_normal((n, d)) * draw(st.sampled_from([1e-2, 1.0, 100.0]))
        elif lik == "bernoulli":
            x = (rng.random((n, d)) < 0.5).astype(float)
        else:
            x = np.eye(d)[rng.integers(0, d, n)]
        x[~mask[:, g]] = np.nan
        groups[f"g{g}"] = x
    batch_size = draw(st.sampled_from([1, 3, 64]))  # 64 > N always
    return groups, dict(zip(groups, liks)), batch_size


@FUZZ
@given(grouped_inputs(), st.sampled_from(["poe", "mixture"]))
def test_valid_inputs_train_and_predict(inputs, inference):
    groups, liks, batch_size = inputs
    pyro.clear_param_store()
    vae = FactVAE(latent_dim=2, likelihood=liks, inference=inference, lam=0.1)
    vae.fit(groups, epochs=2, batch_size=batch_size, progress=False)
    n = len(next(iter(groups.values())))
    assert len(vae.history_) == 2 and np.isfinite(vae.history_).all()
    filled = vae.impute(groups, num_samples=3)
    for name, x in groups.items():
        assert filled[name].shape == x.shape and np.isfinite(filled[name]).all()
    loc, scale = vae.latent(groups)
    assert loc.shape == scale.shape == (n, 2) and np.isfinite(loc).all() and (scale > 0).all()
    assert vae.sparsity().shape == (len(groups), 2)
    scores = evaluate(vae, groups, num_samples=4)
    assert np.isfinite(scores["recon_ll"]) and np.isfinite(scores["iwae_ll"])
    if len(groups) > 1 and any(r.sum() > 1 for r in GroupedData(groups).observed.numpy()):
        assert np.isfinite(scores["cond_ll"]) and scores["rmse"] >= 0


def _base(n=6):
    rng = np.random.default_rng(0)
    return {"a": rng.standard_normal((n, 3)), "b": rng.standard_normal((n, 2))}


def _column_never_observed(g):
    g["a"][:, 0] = np.nan


def _inf(g):
    g["b"][2, 1] = np.inf


def _empty_row(g):
    g["a"][3] = np.nan
    g["b"][3] = np.nan


def _short(g):
    g["b"] = g["b"][:-1]


def _strings(g):
    g["a"] = np.array([["x"] * 3] * 6)


def _three_d(g):
    g["a"] = g["a"][:, :, None]


def _no_columns(g):
    g["a"] = np.zeros((6, 0))


BROKEN_DATA = [_column_never_observed, _inf, _empty_row, _short, _strings, _three_d, _no_columns]
BROKEN_CONFIG = [
    {"likelihood": "gamma"},
    {"likelihood": {"zz": "normal"}},
    {"likelihood": {"b": "bernoulli"}},  # b holds non-binary values
    {"likelihood": {"b": "categorical"}},  # b is not one-hot
    {"lam": -1.0},
    {"lam": float("nan")},
    {"latent_dim": 0},
    {"keep_prob": 0.0},
    {"group_weight": {"a": -2.0}},
    {"encoder_hidden": [0]},
]
BROKEN_FIT = [{"epochs": 0}, {"batch_size": 0}, {"lr": -1.0}, {"map_epochs": 1}]


@FUZZ
@given(
    st.sampled_from(BROKEN_DATA + BROKEN_CONFIG + BROKEN_FIT),
    st.integers(1, 8),
)
def test_invalid_inputs_raise_value_error_with_a_message(broken, n):
    groups = _base(max(n, 6))
    config, fit = {}, {}
    if callable(broken):
        broken(groups)
    elif set(broken) & {"epochs", "batch_size", "lr", "map_epochs"}:
        fit = dict(broken)
    else:
        config = dict(broken)
    pyro.clear_param_store()
    with pytest.raises(ValueError) as info:
        FactVAE(latent_dim=config.pop("latent_dim", 2), **config).fit(
            groups, epochs=fit.pop("epochs", 1), progress=False, **fit
        )
    assert len(str(info.value)) > 15  # a message, not a bare error


@FUZZ
@given(grouped_inputs())
def test_prediction_inputs_are_checked_against_the_fitted_model(inputs):
    groups, liks, _ = inputs
    pyro.clear_param_store()
    vae = FactVAE(latent_dim=2, likelihood=liks).fit(groups, epochs=1, progress=False)
    wrong_width = {k: np.c_[v, v[:, :1]] for k, v in groups.items()}
    with pytest.raises(ValueError, match="columns, the model was fitted on"):
        vae.impute(wrong_width)
    renamed = {f"x{k}": v for k, v in groups.items()}
    with pytest.raises(ValueError, match="groups"):
        vae.impute(renamed)
    with pytest.raises(ValueError, match="unknown|not"):
        vae.reconstruct(groups, given=["nope"])
    data = GroupedData(groups)
    assert vae.impute(data)[data.names[0]].shape == groups[data.names[0]].shape
