"""Per-row refinement of the encoder's q(z | x_O) before it proposes (semi-amortized
inference)."""

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.module.refine import REFINE_STEPS, refined_posterior
from pyro_factvae.module.weights import ImportanceWeights


@pytest.fixture
def fitted(groups):
    # a few epochs: an encoder that has not caught up with its decoder
    return FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=5, progress=False, patience=None)


def _weights(vae):
    return {
        k: v.clone()
        for k, v in [*vae.model_.state_dict().items(), *vae.guide_.state_dict().items()]
    }


def test_refinement_raises_each_rows_elbo_and_leaves_the_model_and_the_rng_alone(fitted, groups):
    model, guide = fitted.model_, fitted.guide_
    data = fitted.prepare(groups)
    args = (data.values, data.observed, data.cells)
    before, rng = _weights(fitted), torch.get_rng_state()
    with torch.no_grad():  # as the queries call it
        start = guide.posterior_dist(*args)
        refined = refined_posterior(model, guide, *args, steps=200)
        again = refined_posterior(model, guide, *args, steps=200)
    assert torch.equal(torch.get_rng_state(), rng)
    after = _weights(fitted)
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert torch.equal(refined.mean, again.mean)  # seeded: the same refinement each time

    def elbo(q):  # of each row's observed cells, over many draws
        weigh = ImportanceWeights(model, *args)
        torch.manual_seed(1)
        with torch.no_grad():
            z = q.sample((4000,))
            return weigh(q, z, model.decode(z, list(guide.Phi), weigh.offsets)).mean(0)

    gain = elbo(refined) - elbo(start)
    assert gain.mean() > 0.1 and (gain > 0).float().mean() > 0.8


def test_the_queries_refine_by_default_and_can_keep_the_encoders_posterior(fitted, groups):
    holes = {g: v.copy() for g, v in groups.items()}
    holes["a"][10:20] = np.nan
    default = fitted.impute(holes)["a"][10:20]
    assert np.array_equal(default, fitted.impute(holes, refine_steps=REFINE_STEPS)["a"][10:20])
    assert not np.allclose(default, fitted.impute(holes, refine_steps=0)["a"][10:20])
    lower, _ = fitted.predict_interval(holes, num_draws=50)
    plain, _ = fitted.predict_interval(holes, num_draws=50, refine_steps=0)
    assert not np.allclose(lower["a"][10:20], plain["a"][10:20])
    with pytest.raises(ValueError, match="refine_steps"):
        fitted.impute(holes, refine_steps=-1)


def test_draws_refine_every_row_once_however_many_chunks_they_are_drawn_in(
    fitted, groups, monkeypatch
):
    import pyro_factvae.module.draws as draws

    data = fitted.prepare(groups)
    calls = []

    def counted(model, guide, xs, mask, *args, **kwargs):
        calls.append(mask.shape[0])
        return refined_posterior(model, guide, xs, mask, *args, **kwargs)

    proposals = []

    class Recorded(ImportanceWeights):  # the proposal each chunk of draws weighs
        def __call__(self, q, *args, **kwargs):
            proposals.append(q.mean.clone())
            return super().__call__(q, *args, **kwargs)

    monkeypatch.setattr(draws, "refined_posterior", counted)
    monkeypatch.setattr(draws, "ImportanceWeights", Recorded)
    args = (fitted.model_, fitted.guide_, data.values, data.observed, data.cells)
    # a chunk of draws small enough to take a few rows at a time
    chunks = list(draws.posterior_draws(*args, 20, 20, 0, max_elements=4000, refine_steps=5))
    assert len(chunks) > 3
    assert calls == [len(data)]  # one refinement, of every row
    refined = refined_posterior(*args, steps=5, seed=0).mean
    assert torch.equal(torch.cat(proposals), refined)  # each chunk proposes from its rows' q
    assert sum(len(range(*sl.indices(len(data)))) for sl, _, _ in chunks) == len(data)
