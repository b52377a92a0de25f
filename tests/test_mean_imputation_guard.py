"""lam='auto' against the mean imputation: the walk goes on towards the model whose every link
is pruned while no lam imputes the validation rows better than the mean does."""

import warnings

import numpy as np
import pytest

import pyro_factvae.infer.path as lam_path
from pyro_factvae import FactVAE
from pyro_factvae.infer.path_choice import beats_mean
from pyro_factvae.infer.path_state import PathRecords
from pyro_factvae.module.scoring import held_out_mean_error

from .conftest import small_groups

FIT = dict(epochs=6, batch_size=16, seed=1, progress=False)


def test_the_mean_imputations_error_is_each_groups_distance_to_its_training_mean():
    groups = small_groups(n=50)
    vae = FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=2, progress=False, patience=None)
    train = {g: v[:40] for g, v in groups.items()}
    mean = {g: np.nanmean(v, axis=0) for g, v in train.items()}

    def valid(shift_a):
        rows = np.ones((10, 1))
        return {
            "a": rows * (mean["a"] + shift_a),
            "b": rows * (mean["b"] + 2),
            "c": rows * mean["c"],
        }

    once = held_out_mean_error(vae.model_, vae.prepare(train), vae.prepare(valid(1.0)))
    twice = held_out_mean_error(vae.model_, vae.prepare(train), vae.prepare(valid(2.0)))
    # one (row, group) pair per row and group, group by group
    assert once.shape == (30,)
    assert np.allclose(once[20:], 0.0, atol=1e-10)  # at the training mean: no error
    assert once[0] > 0 and np.allclose(once[:10], once[0])
    assert np.allclose(twice[:10], 4 * once[:10])  # squared, in the model's units
    assert np.allclose(twice[10:], once[10:])


def test_a_lam_beats_the_mean_only_with_a_better_score():
    records = PathRecords(scores=[-1.2, -0.9])  # minus the imputation MSE
    assert beats_mean(records, -1.0) and not beats_mean(records, -0.8)
    assert beats_mean(records, None)  # the mean's score not known
    assert not beats_mean(PathRecords(), -1.0)


@pytest.mark.parametrize("mean_error, walked", [(0.0, [0.0, 0.1, 100.0]), (1e9, [0.0, 0.1])])
def test_the_walk_takes_its_tail_only_while_no_lam_beats_the_mean(mean_error, walked, monkeypatch):
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0, 0.1))
    monkeypatch.setattr(lam_path, "AUTO_TAIL", (100.0,))  # 100 prunes every link
    monkeypatch.setattr(
        lam_path,
        "held_out_mean_errors",
        lambda model, train, valid, seed: np.full(3, mean_error),  # a perfect or hopeless mean
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vae = FactVAE(latent_dim=2).fit(small_groups(), **FIT)
    said = [str(w.message) for w in caught if "no lam imputed" in str(w.message)]
    assert len(said) == (mean_error == 0.0)  # told when the mean imputes better
    path = vae.lam_path_
    assert path["lams"] == walked
    assert path["mean_imputation_mse"] == mean_error


def test_a_lam_that_pruned_every_link_ends_the_walk_even_before_the_mean_is_beaten(monkeypatch):
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0, 1000.0, 2000.0))  # 1000 prunes every link
    monkeypatch.setattr(lam_path, "AUTO_TAIL", ())
    monkeypatch.setattr(
        lam_path, "held_out_mean_errors", lambda model, train, valid, seed: np.zeros(3)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the mean was never beaten: said, not tested here
        vae = FactVAE(latent_dim=2).fit(small_groups(), **{**FIT, "epochs": 30})
    path = vae.lam_path_
    assert path["lams"] == [0.0, 1000.0] and path["active_links"][-1] == 0  # 2000 not fitted
