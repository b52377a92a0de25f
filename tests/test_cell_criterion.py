"""The held-out criterion of lam="auto" on data that miss single cells: a share of the
validation rows' cells is hidden and scored beside whole held-out groups."""

import copy

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.infer.path_state import PathRecords
from pyro_factvae.module.scoring import (
    held_out_cell_error,
    held_out_error,
    held_out_errors,
    held_out_mean_cell_error,
    held_out_mean_errors,
    missing_cell_fraction,
)

from .conftest import small_groups


def _with_holes(n=200, share=0.3, seed=0):
    groups = small_groups(n=n, seed=seed)
    rng = np.random.default_rng(seed)
    for v in groups.values():
        v[rng.random(v.shape) < share] = np.nan
    return groups


@pytest.fixture(scope="module")
def fitted():
    groups = _with_holes()
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=60, progress=False, patience=None)
    return vae, vae.prepare(groups)


def test_the_missing_cell_fraction_is_the_share_of_cells_of_observed_groups():
    data = GroupedData(_with_holes(share=0.3))
    assert 0.25 < missing_cell_fraction(data) < 0.35
    assert missing_cell_fraction(GroupedData(small_groups())) == 0.0  # whole groups only


def test_hidden_cells_are_scored_and_the_model_beats_the_mean_on_them(fitted):
    vae, data = fitted
    model, guide = vae.model_, vae.guide_
    fraction = missing_cell_fraction(data)
    errors = held_out_cell_error(model, guide, data, fraction, 20, seed=3)
    again = held_out_cell_error(model, guide, data, fraction, 20, seed=3)
    assert np.array_equal(errors, again)  # seeded: the same cells each time
    mean = held_out_mean_cell_error(model, data, data, fraction, seed=3)
    assert errors.shape == mean.shape and len(errors) > 0.3 * len(data)
    # the groups share two latents: the model predicts hidden cells far better than the mean
    assert errors.mean() < 0.6 * mean.mean()
    # the criterion is both kinds of pairs; without missing cells the group pairs alone
    groups = held_out_error(model, guide, data, 20, 3)
    both = held_out_errors(model, guide, data, fraction, 20, 3)
    assert len(both) == len(groups) + len(errors)
    assert np.array_equal(held_out_errors(model, guide, data, 0.0, 20, 3), groups)
    assert len(held_out_mean_errors(model, data, data, seed=3)) == len(both)


def test_a_default_fit_on_data_with_missing_cells_compares_with_the_mean_on_cells_too():
    groups = _with_holes(n=120)
    vae = FactVAE(latent_dim=2).fit(groups, epochs=8, seed=1, progress=False)
    data = vae.prepare(groups)
    train, valid = data.split(0.8, seed=1)
    path_units = copy.deepcopy(vae.model_)  # the path's scores: standardized by its rows
    path_units.init_from_data(train.values, train.observed, train.cells)
    expected = held_out_mean_errors(path_units, train, valid, seed=1)
    assert vae.lam_path_["mean_imputation_mse"] == pytest.approx(float(np.mean(expected)))
    assert torch.isfinite(torch.tensor(vae.lam_path_["held_out_mse"])).all()


def test_a_path_scores_imputations_with_the_draws_it_is_given(fitted):
    vae, data = fitted
    state = vae.fit_state
    fraction = missing_cell_fraction(data)
    for draws in (1, 40):
        records = PathRecords()
        records.score(state, data, "mse", draws, 3, fraction)
        expected = -held_out_errors(vae.model_, vae.guide_, data, fraction, draws, 3)
        assert np.array_equal(records.pairs[0], expected)


def test_a_one_hot_label_is_hidden_whole_or_not_at_all_when_cells_are_held_out():
    from pyro_factvae.module.scoring import _hidden_cells

    groups = _with_holes(n=120, share=0.2)
    rng = np.random.default_rng(1)
    groups["label"] = np.eye(3)[rng.integers(0, 3, 120)]
    vae = FactVAE(latent_dim=2, lam=0.1, likelihood={"label": "categorical"})
    vae.fit(groups, epochs=2, progress=False)
    data = vae.prepare(groups)
    given, hidden = _hidden_cells(data, 0.5, 0, vae.model_)
    label = hidden[:, -3:]
    assert bool(label.any()) and bool((label.all(-1) | ~label.any(-1)).all())
    other = hidden[:, :-3]  # the normal groups' cells are drawn one by one
    assert bool((other.any(-1) & ~other.all(-1)).any())
    assert not bool((given & hidden).any()) and bool((given | hidden).any(-1).all())
    # and every row keeps a cell
    assert bool(given.any(-1)[data.cell_mask().any(-1)].all())
    for name in ("a", "b", "c"):
        groups[name][:5] = np.nan  # rows 0-4 observe the label alone
    given, hidden = _hidden_cells(vae.prepare(groups), 0.999, 0, vae.model_)
    assert bool(given[:5, -3:].all()) and not bool(hidden[:5].any())  # kept whole
