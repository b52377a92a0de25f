"""Early stopping's score: the training objective (Algorithm 1's random encoder subsets
included) on held-out rows."""

import math

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.infer.loop import VALIDATION_SEED, encoder_subset, validation_loss
from pyro_factvae.infer.objective import objective_for

FIT = dict(epochs=5, batch_size=16, progress=False, patience=None)


def fitted(**config):
    config.setdefault("lam", 0.1)
    return FactVAE(latent_dim=3, encoder_width=8, decoder_width=8, **config)


def every_group_encoded(vae, data):
    """The negative ELBO per row with every observed group encoded, z noise seeded 0."""
    model, guide = vae.model_, vae.guide_
    objective = objective_for(model, guide, guide.phi_mode, data, 1.0 / model.config.num_data)
    xs, mask, cells = objective.batch(torch.arange(len(data)))
    torch.manual_seed(0)
    return float(objective(xs, mask).data.detach())


def test_validation_with_every_group_kept_is_the_elbo_of_every_observed_group(groups):
    vae = fitted(keep_prob=1.0).fit(groups, **FIT)
    data = vae.prepare(groups)
    loss = validation_loss(vae.model_, vae.guide_, data, vae.guide_.phi_mode)
    assert loss == pytest.approx(every_group_encoded(vae, data), rel=1e-6)


def test_validation_hides_groups_from_the_encoder_as_training_does(groups):
    vae = fitted(keep_prob=0.5).fit(groups, **FIT)
    data = vae.prepare(groups)
    model, guide = vae.model_, vae.guide_
    before = torch.get_rng_state()
    loss = validation_loss(model, guide, data, guide.phi_mode)
    assert torch.equal(torch.get_rng_state(), before)  # the training RNG is not touched
    assert loss == validation_loss(model, guide, data, guide.phi_mode)  # the same subsets
    # the objective of a training step, with the subsets drawn as a step draws them
    objective = objective_for(model, guide, guide.phi_mode, data, 1.0 / model.config.num_data)
    xs, mask, cells = objective.batch(torch.arange(len(data)))
    keep, _ = encoder_subset(guide, mask, cells, torch.Generator().manual_seed(VALIDATION_SEED))
    assert (mask & ~keep).any()  # some observed groups are hidden from the encoder
    torch.manual_seed(0)
    assert loss == pytest.approx(float(objective(xs, mask, keep).data.detach()), rel=1e-6)
    assert loss != pytest.approx(every_group_encoded(vae, data), rel=1e-3)


def test_validation_of_the_mixture_of_experts_averages_its_experts_per_row(groups):
    vae = fitted(lam=0.0, inference="mixture", keep_prob=1.0).fit(groups, **FIT)
    data = vae.prepare(groups)
    loss = validation_loss(vae.model_, vae.guide_, data, vae.guide_.phi_mode)
    model, guide = vae.model_, vae.guide_
    objective = objective_for(model, guide, guide.phi_mode, data, 1.0 / model.config.num_data)
    xs, mask, _ = objective.batch(torch.arange(len(data)))
    per_row = 1.0 / mask.sum(1).float()
    total = 0.0
    for g in range(mask.shape[1]):  # each single-group expert on the rows that observe g
        rows = mask[:, g].nonzero().squeeze(1)
        one = torch.zeros(len(rows), mask.shape[1], dtype=torch.bool)
        one[:, g] = True
        terms = objective([x[rows] for x in xs], mask[rows], one, per_row[rows])
        total += float(terms.data) * len(rows)
    # the same average up to the z noise (drawn in another order)
    assert math.isfinite(loss) and loss == pytest.approx(total / len(data), rel=0.03)


def test_a_checkpointed_best_score_of_another_validation_loss_is_not_resumed():
    from pyro_factvae.fit_config import FitConfig
    from pyro_factvae.infer.loop import Phase
    from pyro_factvae.infer.plan import Run

    run = Run(FitConfig(), [Phase("map", 10, 0.0)], None)
    run.stopper.update(best=1.5, epoch=4, wait=2)
    meta = run.meta()
    assert Run.from_meta(meta, None).stopper == run.stopper  # the same score: resumed as is
    meta["stopper"].pop("score")  # a file whose best was the ELBO of every group encoded
    fresh = Run.from_meta(meta, None).stopper
    assert fresh["best"] is None and fresh["wait"] == 0


def test_early_stopping_in_a_prox_phase_scores_the_group_lasso_term_too(monkeypatch):
    """With the held-out data term flat, the best epoch of a penalised phase is the scored
    epoch whose group-lasso term is least, and its weights are restored: the sparse end of
    the prox's fit, not the dense map of the first scored epoch (which an unpenalised score
    keeps, every later score tying with it)."""
    import numpy as np

    from pyro_factvae.infer import run
    from pyro_factvae.infer.optim import ProximalOptim
    from pyro_factvae.module.priors import column_norms

    monkeypatch.setattr(run, "validation_loss", lambda *args, **kwargs: 1.0)
    scored, penalty = [], ProximalOptim.penalty

    def recorded(self):  # each score's group-lasso term and the links it was read at
        links = sum(
            int((column_norms(p) > 0).sum()) for g in self.param_groups for p in g["params"]
        )
        scored.append((penalty(self), links))
        return scored[-1][0]

    monkeypatch.setattr(ProximalOptim, "penalty", recorded)
    rng = np.random.default_rng(0)
    noise = {g: rng.standard_normal((200, 4)) for g in "abc"}
    vae = FactVAE(latent_dim=4, lam=1.0, encoder_width=8, decoder_width=8).fit(
        noise, epochs=40, relax_epochs=0, warmup_epochs=0.0, patience=100, progress=False
    )
    least = min(range(len(scored)), key=lambda i: scored[i][0])  # the first of the least
    assert scored[least][1] < scored[0][1]  # the prox pruned after the first score
    assert int((vae.sparsity().to_numpy() > 0).sum()) == scored[least][1]


@pytest.mark.parametrize("lam", [0.1, "auto"])
def test_a_validation_split_without_rows_is_refused_and_leaves_the_estimator_unfitted(lam):
    rng = torch.Generator().manual_seed(0)
    data = {"a": torch.randn(4, 3, generator=rng).numpy(), "b": torch.randn(4, 2).numpy()}
    vae = FactVAE(latent_dim=2, lam=lam)
    with pytest.raises(ValueError, match="leaves no row to validate on: give patience=None"):
        vae.fit(data, epochs=2, patience=5, progress=False)
    assert vae.model_ is None and vae.config.lam == lam and vae.history_ == []
    with pytest.raises(ValueError, match="not fitted"):
        vae.impute(data)
    vae.fit(data, epochs=2, patience=None, progress=False)  # the advice works
    assert vae.model_ is not None and (lam != "auto" or vae.lam_path_ is not None)
    import pandas as pd

    frame = pd.DataFrame(np.hstack([data["a"], data["b"]]), columns=list("vwxyz"))
    refused = FactVAE(latent_dim=2, lam=lam)
    with pytest.raises(ValueError, match="leaves no row to validate on"):
        refused.fit(frame, groups={"a": ["v", "w", "x"], "b": ["y", "z"]}, patience=5, epochs=2)
    assert refused.columns_ is None and refused.variables_ is None  # as before the call
