"""Seeded blocks: the same draws as a seeded global RNG, which is left as it was."""

import numpy as np
import torch

from pyro_factvae import FactVAE
from pyro_factvae.rng import seeded


def test_a_seeded_block_draws_as_a_seeded_global_rng_and_restores_it():
    torch.manual_seed(5)
    expected = torch.randn(4)
    before = torch.get_rng_state()
    with seeded("cpu", 5):
        got = torch.randn(4)
    assert torch.equal(got, expected)
    assert torch.equal(torch.get_rng_state(), before)


def test_an_unseeded_block_draws_from_and_advances_the_global_rng():
    torch.manual_seed(3)
    expected = torch.randn(2)
    torch.manual_seed(3)
    with seeded("cpu", None):
        got = torch.randn(2)
    assert torch.equal(got, expected)
    assert not torch.equal(torch.randn(2), expected)  # the stream went on from the block


def test_validation_scores_and_seeded_queries_do_not_reseed_every_device(monkeypatch):
    # torch.manual_seed seeds every accelerator backend too, devices the fork does not
    # restore among them; a fit scores its validation rows hundreds of times
    calls = []
    real = torch.manual_seed
    monkeypatch.setattr(torch, "manual_seed", lambda s: calls.append(s) or real(s))
    rng = np.random.default_rng(0)
    data = {"a": rng.standard_normal((60, 2)), "b": rng.standard_normal((60, 3))}
    vae = FactVAE(lam=0.1, latent_dim=2).fit(data, epochs=30, progress=False)
    vae.impute(data, num_draws=2, seed=1)
    vae.predict_interval(data, num_draws=20, seed=1)
    assert calls == []


def test_numpy_integer_seeds_seed_queries_as_python_ints_do():
    rng = np.random.default_rng(0)
    data = {"a": rng.standard_normal((40, 2)), "b": rng.standard_normal((40, 2))}
    data["b"][::3] = np.nan
    vae = FactVAE(lam=0.1, latent_dim=2).fit(data, epochs=2, progress=False)
    for query in (
        lambda s: vae.impute(data, num_draws=2, seed=s)[1]["b"],
        lambda s: vae.sample(3, seed=s)["a"],
    ):
        assert np.array_equal(query(np.int64(7)), query(7))


def test_stream_seeds_repeat_and_differ_from_the_seed_and_each_other():
    from pyro_factvae.rng import stream_seed

    for seed in (0, 1, -5, 2**64 - 1, -(2**63)):
        one = stream_seed(seed, 1)
        assert one == stream_seed(seed, 1) and 0 <= one < 2**64
        assert one != stream_seed(seed, 2) and one != seed
        torch.Generator().manual_seed(one)  # a seed torch takes
    assert stream_seed(0, 1) != stream_seed(1, 1)
