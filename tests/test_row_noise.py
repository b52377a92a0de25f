"""A row's imputed mean depends on the row and the seed, not on the rows queried with it
(standard draws keyed by a hash of the row), while different rows' draws stay nearly
independent."""

import numpy as np
import pytest
import torch
from pyro import distributions as dist

from pyro_factvae import FactVAE
from pyro_factvae.module.noise import RowNoise, row_keys
from pyro_factvae.module.predict import predictive_means
from pyro_factvae.module.refine import REFINE_PARTICLES, refined_posterior

from .conftest import small_groups


def _rows(groups, index):
    return {k: v[index] for k, v in groups.items()}


@pytest.fixture(scope="module", params=["poe", "mixture"])
def fitted(request):
    groups = small_groups(n=60)
    vae = FactVAE(latent_dim=3, lam=0.1, inference=request.param)
    vae.fit(groups, epochs=5, progress=False, patience=None)
    return vae, groups


def test_a_rows_imputation_does_not_depend_on_the_rows_imputed_with_it(fitted):
    vae, groups = fitted
    query = {k: v.copy() for k, v in groups.items()}
    query["b"][:, 1] = np.nan  # a missing cell in every row, and whole groups missing
    query["c"][::3] = np.nan
    order = np.random.default_rng(0).permutation(60)[:17]
    # importance-weighted means of the encoder's q: equal to float rounding
    every = vae.impute(query, refine_steps=0)
    some = vae.impute(_rows(query, order), refine_steps=0)
    alone = vae.impute(_rows(query, [order[0]]), refine_steps=0)
    for name in every:
        np.testing.assert_allclose(some[name], every[name][order], rtol=0, atol=1e-5)
        np.testing.assert_allclose(alone[name][0], every[name][order[0]], rtol=0, atol=1e-5)
    # the defaults, whose refinement's Adam steps can amplify that rounding in a few rows
    # (other draws move a mean by about 0.05)
    every, some = vae.impute(query), vae.impute(_rows(query, order))
    for name in every:
        gap = np.abs(some[name] - every[name][order])
        assert np.median(gap) < 1e-5 and gap.max() < 0.01


def test_a_rows_mean_is_the_same_whatever_the_chunks_of_draws(fitted):
    vae, groups = fitted
    data = vae.prepare(_rows(groups, slice(0, 20)))
    args = (vae.model_, vae.guide_, data.values, data.observed, [0, 2], 200, 3, data.cells)
    whole = predictive_means(*args, importance=True)
    chunked = predictive_means(*args, importance=True, max_elements=1)  # one draw a chunk
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    other_seed = predictive_means(*args[:-2], 4, data.cells, importance=True)
    assert not torch.allclose(whole[0], other_seed[0])  # the draws do change with the seed


def test_a_rows_refinement_is_the_same_whatever_the_chunks_of_rows(fitted):
    vae, groups = fitted
    data = vae.prepare(groups)
    args = (vae.model_, vae.guide_, data.values, data.observed, data.cells, 30)
    whole = refined_posterior(*args, seed=5)
    row = vae.model_.row_floats * REFINE_PARTICLES
    chunked = refined_posterior(*args, seed=5, max_elements=7 * row)  # chunks of 7 rows
    # chunks round the decoder's products differently; Adam's normalised steps amplify that
    # in a row whose gradient crosses zero (0.004 seen in one of 180 coordinates), where
    # other draws move a row's refined mean by 0.08 (median) to 0.18
    for got, want in ((chunked.mean, whole.mean), (chunked.stddev, whole.stddev)):
        gap = (got - want).abs()
        assert float(gap.median()) < 1e-5 and float(gap.max()) < 0.02


def test_row_draws_refuse_a_q_they_cannot_draw():
    q = dist.Gamma(torch.ones(2, 3), 1.0).to_event(1)
    with pytest.raises(TypeError, match="diagonal Normal"):
        RowNoise(4, 3, "cpu").sample(q, torch.zeros(2, dtype=torch.long), 0, 4)


def test_row_draws_follow_each_rows_own_normal():
    torch.manual_seed(0)
    loc, scale = torch.tensor([[0.0, 5.0], [-3.0, 1.0]]), torch.tensor([[1.0, 2.0], [0.5, 3.0]])
    q = dist.Normal(loc, scale).to_event(1)
    keys = torch.tensor([0, 0])
    z = RowNoise(20000, 2, "cpu", pool=1).sample(q, keys, 0, 20000)  # (S, B, K)
    assert z.shape == (20000, 2, 2)
    torch.testing.assert_close(z.mean(0), loc, atol=0.05, rtol=0)
    torch.testing.assert_close(z.std(0), scale, atol=0.05, rtol=0)
    # rows of one key take the same standard draws
    torch.testing.assert_close((z - loc) / scale, ((z - loc) / scale)[:, :1].expand_as(z))
    # keys far apart in the pool: windows that share no draw, and draws uncorrelated
    other = RowNoise(20000, 2, "cpu")
    a, b = other.standard(torch.tensor([0, 300_000]), 0, 20000).unbind(1)
    assert not bool((a == b).all(-1).any())
    assert abs(float(torch.corrcoef(torch.stack([a[:, 0], b[:, 0]]))[0, 1])) < 0.03


def test_row_keys_depend_on_what_the_encoder_reads_and_nothing_else():
    x = [torch.tensor([[1.0, 2.0], [1.0, 2.0], [1.0, 2.5], [-0.0, 2.0]]), torch.ones(4, 1)]
    mask = torch.tensor([[True, True], [True, True], [True, True], [True, True]])
    keys = row_keys(x, mask, None)
    assert keys[0] == keys[1] and keys[0] != keys[2]  # equal rows, equal keys
    assert bool(x[0][3, 0].signbit())
    assert keys[3] == row_keys([x[0].abs(), x[1]], mask, None)[3]  # -0.0 reads as 0.0
    assert torch.equal(row_keys([v[[2, 0]] for v in x], mask[[2, 0]], None), keys[[2, 0]])
    unread = [x[0], torch.full((4, 1), 9.0)]  # a group not read: its values do not count
    half = mask.clone()
    half[:, 1] = False
    assert torch.equal(row_keys(unread, half, None), row_keys(x, half, None))
    assert not torch.equal(row_keys(x, half, None), keys)  # which groups are read does count
    cells = torch.ones(4, 3, dtype=torch.bool)
    cells[0, 0] = False
    moved = [x[0].clone(), x[1]]
    moved[0][0, 0] = 123.0  # a cell not observed: its placeholder does not count
    assert row_keys(moved, mask, cells)[0] == row_keys(x, mask, cells)[0]
    assert row_keys(x, mask, cells)[0] != keys[0]


def test_row_draws_pick_a_mixtures_components_by_their_weights():
    torch.manual_seed(0)
    weights = torch.tensor([[0.2, 0.0, 0.8], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    loc = torch.tensor([0.0, 100.0, 200.0]).expand(3, 3).unsqueeze(-1)  # (B, C, K = 1)
    q = dist.MixtureSameFamily(
        dist.Categorical(probs=weights), dist.Normal(loc, torch.ones_like(loc)).to_event(1)
    )
    z = RowNoise(20000, 1, "cpu").sample(q, torch.tensor([0, 5, 9]), 0, 20000)[..., 0]
    picked = torch.round(z / 100).long().clamp(0, 2)  # the component each draw came from
    freq = torch.stack([(picked == c).float().mean(0) for c in range(3)], -1)
    torch.testing.assert_close(freq, weights, atol=0.02, rtol=0)
    assert not bool(((picked == 1) & (weights[:, 1] == 0)).any())  # weight 0: never drawn


def test_the_pool_of_draws_is_bounded_in_memory():
    assert len(RowNoise(1000, 64, "cpu").uniform) == 1000 * 32  # 2 M floats: the full pool
    pool = RowNoise(3000, 64, "cpu")
    assert len(pool.uniform) == 3000 * 21  # 21 multiples: 4 M floats at most
    assert pool.eps.numel() + pool.uniform.numel() <= 2**22
    huge = RowNoise(100_000, 64, "cpu")
    assert huge.eps.shape == (100_000, 64)  # one multiple: a row's own error is tiny
    assert RowNoise(10, 4, "cpu").eps.shape == (10 * 32, 4)
