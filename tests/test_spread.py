"""The draws' spread measured on held-out rows, and draws scaled by it."""

import math

import numpy as np
import torch

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.infer import run as run_module
from pyro_factvae.infer.spread import held_out_spread, min_crps_spread
from pyro_factvae.module.draws import half_pair_distance
from tests.test_evaluate import linear_gaussian


def _exact_rows(exact, n, seed):
    """``n`` rows of the exact marginal of :func:`linear_gaussian`'s model."""
    cov = exact["L"].T @ exact["L"] + torch.diag(exact["sd"] ** 2)
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov.numpy())
    x = exact["mu"].numpy() + rng.standard_normal((n, len(chol))) @ chol.T
    return {"a": x[:, :3], "b": x[:, 3:]}


def test_the_spread_of_the_true_model_is_one_and_of_a_too_sure_model_above_one():
    vae, _, _, exact = linear_gaussian("poe", n=400)
    model, guide = vae.fitted_modules()
    valid = GroupedData(_exact_rows(exact, 300, seed=1))
    exact_spread = held_out_spread(model, guide, valid, seed=0)
    assert 1.0 <= exact_spread < 1.15, exact_spread  # never below 1
    with torch.no_grad():  # noise scales a quarter of the truth's: draws far too narrow
        for lik in model.likelihoods:
            lik.raw_scale.copy_(torch.log(torch.expm1(lik.scale * 0.25)))
    too_sure = held_out_spread(model, guide, valid, seed=0)
    assert too_sure > 1.5 * exact_spread, (too_sure, exact_spread)


def test_the_spread_scales_continuous_draws_about_the_rows_mean_and_leaves_bits_alone():
    rng = np.random.default_rng(0)
    n = 40
    groups = {
        "x": rng.standard_normal((n, 3)),
        "bits": rng.integers(0, 2, (n, 4)).astype(float),
        "y": rng.standard_normal((n, 2)),
    }
    groups["x"][:10] = np.nan
    groups["y"][30:] = np.nan
    groups["bits"][10:20, 1] = np.nan
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood={"bits": "bernoulli"})
    vae.fit(groups, epochs=2, patience=None, progress=False)
    assert vae.spread_ == 1.0  # no validation rows: the model's own draws
    one = vae.impute(groups, num_draws=6, seed=3)
    vae.fit_state.spread = 2.5
    two = vae.impute(groups, num_draws=6, seed=3)
    means = vae.impute(groups)
    for name, hid in (("x", slice(0, 10)), ("y", slice(30, None))):
        x1, x2 = (np.stack([d[name] for d in draws]) for draws in (one, two))
        centre = (2.5 * x1 - x2) / 1.5  # x2 = c + 2.5 (x1 - c): the same c in every draw ...
        np.testing.assert_allclose(centre, np.broadcast_to(centre[:1], centre.shape), atol=1e-4)
        # ... the row's imputed mean (up to the Monte Carlo error of two sets of proposals)
        np.testing.assert_allclose(centre[0, hid], means[name][hid], atol=0.05)
        assert float(np.abs(x2 - x1)[:, hid].max()) > 0.1  # the hidden rows moved
        rest = np.ones(n, bool)
        rest[hid] = False
        np.testing.assert_array_equal(x1[:, rest], x2[:, rest])  # observed cells as they were
    assert all(np.array_equal(a["bits"], b["bits"]) for a, b in zip(one, two))
    lower1, upper1 = vae.predict_interval(groups, num_draws=200)
    vae.fit_state.spread = 1.0
    lower2, upper2 = vae.predict_interval(groups, num_draws=200)
    ratio = (upper1["x"] - lower1["x"])[:10] / (upper2["x"] - lower2["x"])[:10]
    np.testing.assert_allclose(ratio, 2.5, rtol=1e-3)


def _overfit_groups(n, seed):
    """Two groups of 20 columns from two factors, with few rows to learn them from."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    w = rng.standard_normal((2, 40))
    x = z @ w + rng.standard_normal((n, 40))
    return {"a": x[:, :20], "b": x[:, 20:]}


def test_a_fit_measures_the_spread_on_held_out_rows_once_and_keeps_it_in_files(
    tmp_path, monkeypatch
):
    from pyro_factvae.infer import path as path_module

    calls = []

    def counted(*args, **kwargs):
        calls.append((len(args[2]), held_out_spread(*args, **kwargs)))
        return calls[-1][1]

    monkeypatch.setattr(run_module, "held_out_spread", counted)
    monkeypatch.setattr(path_module, "held_out_spread", counted)
    groups = _overfit_groups(40, seed=0)
    vae = FactVAE(latent_dim=4).fit(groups, epochs=30, seed=0, progress=False)
    # once: the lam path's fits measure nothing; a lam > 0 is measured on the 8 rows the path
    # held out (the final refit starts from weights trained on its own validation rows), a
    # fresh dense fit (lam 0) on its own validation tenth
    assert [rows for rows, _ in calls] == [8 if vae.lam_ > 0 else 4]
    assert math.isfinite(vae.spread_) and vae.spread_ >= 1.0 and vae.spread_ == calls[0][1]
    vae.fit_state.spread = 1.7
    vae.save(tmp_path / "m.factvae")
    assert FactVAE.load(tmp_path / "m.factvae").spread_ == 1.7
    plain = FactVAE(latent_dim=4, lam=0.0).fit(groups, epochs=30, patience=None, progress=False)
    assert plain.spread_ == 1.0 and len(calls) == 1
    # a fixed lam's fit measures on its validation rows before its last checkpoint: a resume
    # of the finished checkpoint has it
    ckpt = tmp_path / "fit.ckpt"
    fixed = FactVAE(latent_dim=4, lam=0.1).fit(groups, epochs=30, checkpoint=ckpt, progress=False)
    assert [rows for rows, _ in calls[1:]] == [4] and fixed.spread_ == calls[1][1]
    assert FactVAE().fit(groups, resume=ckpt, progress=False).spread_ == fixed.spread_
    assert len(calls) == 2  # read from the checkpoint, not measured again


def test_a_model_that_overfits_few_rows_measures_wider_draws_that_cover_more():
    groups = _overfit_groups(240, seed=1)
    train = {g: v[:60] for g, v in groups.items()}
    test = {g: v[60:] for g, v in groups.items()}
    vae = FactVAE(latent_dim=8, lam=0.0, decoder_width=64)
    vae.fit(train, epochs=400, seed=0, patience=None, progress=False)
    assert vae.spread_ == 1.0
    # the same weights' spread, measured on rows they were not trained on
    spread = held_out_spread(*vae.fitted_modules(), GroupedData(test), seed=0)
    hidden = {"a": np.full_like(test["a"], np.nan), "b": test["b"]}
    covered = []
    for s in (1.0, spread):
        vae.fit_state.spread = s
        lower, upper = vae.predict_interval(hidden, level=0.9, num_draws=100)
        covered.append(float(((test["a"] >= lower["a"]) & (test["a"] <= upper["a"])).mean()))
    assert spread > 1.2, spread
    assert covered[0] < 0.85 and covered[1] > covered[0] + 0.07, covered


def test_the_spread_minimizes_the_crps_of_scaled_draws_exactly():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((30, 400)) * 0.5)  # draws too narrow for ...
    y = torch.as_tensor(rng.standard_normal(400) * 1.5)  # ... the truth they are scored on
    centre = x.mean(0)
    dev = x - centre

    def crps(s):  # the fair CRPS of the draws spread by s about their mean
        scaled = centre + s * dev
        return float(((scaled - y).abs().mean(0) - half_pair_distance(scaled)).sum())

    best = min_crps_spread(
        ((y - centre) / dev).flatten(),
        (dev.abs() / 30).flatten(),
        float(half_pair_distance(x).sum()),
    )
    grid = np.linspace(0.5, 6, 2001)
    brute = grid[np.argmin([crps(s) for s in grid])]
    assert abs(best - brute) < 0.01 and best > 2, (best, brute)
    assert crps(best) <= min(crps(best - 0.01), crps(best + 0.01))
    assert min_crps_spread(torch.zeros(0), torch.zeros(0), 0.0) == 1.0  # no weight: no change
