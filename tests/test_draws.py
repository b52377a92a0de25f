"""Multiple imputation: draws of the missing values and central intervals."""

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData
from tests.test_evaluate import linear_gaussian


def _exact_conditional(exact, xa):
    """Mean and covariance of x_b given x_a under the linear-Gaussian decoder."""
    L, mu, sd = exact["L"], exact["mu"], exact["sd"]
    cov = L.T @ L + torch.diag(sd**2)
    gain = cov[3:, :3] @ torch.linalg.inv(cov[:3, :3])
    mean = mu[3:] + (gain @ (xa - mu[:3]).T).T
    return mean, cov[3:, 3:] - gain @ cov[:3, 3:]


def test_draws_and_intervals_match_the_linear_gaussian_conditional():
    vae, data, groups, exact = linear_gaussian("poe", n=400)
    given = {"a": groups["a"], "b": np.full_like(np.nan_to_num(groups["b"]), np.nan)}
    xa = torch.as_tensor(groups["a"]).double()
    mean, cov = _exact_conditional(exact, xa)
    draws = vae.impute(given, num_draws=300, num_samples=1000, seed=0)
    b = np.stack([d["b"] for d in draws])  # (M, N, 2)
    sd = cov.diagonal().sqrt().numpy()
    # the draws' mean and covariance, row by row, within Monte Carlo error
    assert np.abs(b.mean(0) - mean.numpy()).mean() < 0.1 * sd.mean()
    centred = b - b.mean(0)
    emp = np.einsum("mni,mnj->ij", centred, centred) / (b.shape[0] * b.shape[1])
    np.testing.assert_allclose(emp, cov.numpy(), rtol=0.15, atol=0.05 * sd.mean() ** 2)
    assert float(vae.ess_.min()) > 5  # the proposals are not the posterior, but they carry it
    assert vae.ess_.shape == (len(groups["a"]),)
    vae.impute({k: v[:3] for k, v in given.items()}, num_samples=10)
    assert vae.ess_ is None  # means: no draws' ESS left from the call before
    # observed cells are the same in every draw
    assert all(np.array_equal(d["a"], groups["a"]) for d in draws)
    # central 90% intervals cover 90% of values drawn from the exact conditional
    lower, upper = vae.predict_interval(given, level=0.9, num_draws=400, num_samples=1000)
    truth = _mvn_draws(mean.numpy(), cov.numpy(), 5)
    inside = (truth >= lower["b"]) & (truth <= upper["b"])
    assert 0.87 <= inside.mean() <= 0.93, inside.mean()
    assert np.array_equal(lower["a"], groups["a"]) and np.array_equal(upper["a"], groups["a"])


def _mvn_draws(mean, cov, k):
    rng = np.random.default_rng(0)
    chol = np.linalg.cholesky(cov)
    return mean + rng.standard_normal((k, *mean.shape)) @ chol.T


def test_draws_repeat_with_a_seed_and_leave_the_global_rng_alone():
    vae, data, groups, _ = linear_gaussian("poe", n=40)
    state = torch.get_rng_state()
    one = vae.impute(data, num_draws=3, seed=7)
    assert torch.equal(state, torch.get_rng_state())
    two = vae.impute(data, num_draws=3, seed=7)
    other = vae.impute(data, num_draws=3, seed=8)
    assert all(np.array_equal(x["b"], y["b"]) for x, y in zip(one, two))
    assert not np.array_equal(one[0]["b"], other[0]["b"])
    assert not np.array_equal(one[0]["b"], one[1]["b"])  # three different data sets


def test_categorical_and_bernoulli_draws_are_classes_and_bits():
    rng = np.random.default_rng(0)
    n = 60
    groups = {
        "x": rng.standard_normal((n, 3)),
        "bits": rng.integers(0, 2, (n, 4)).astype(float),
        "lab": np.eye(3)[rng.integers(0, 3, n)],
    }
    groups["lab"][:20] = np.nan
    groups["bits"][20:30, 1] = np.nan
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood={"bits": "bernoulli", "lab": "categorical"})
    vae.fit(groups, epochs=2, progress=False)
    for draw in vae.impute(groups, num_draws=4, seed=0):
        assert np.array_equal(draw["lab"].sum(1), np.ones(n))
        assert set(np.unique(draw["lab"])) <= {0.0, 1.0}
        assert set(np.unique(draw["bits"])) <= {0.0, 1.0}
        np.testing.assert_array_equal(draw["lab"][20:], groups["lab"][20:])


def test_draws_of_a_dataframe_are_dataframes_and_bad_arguments_are_refused():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((50, 4)), columns=list("pqrs"))
    frame.iloc[::5, 1] = np.nan
    spec = {"a": ["p", "q"], "b": ["r", "s"]}
    vae = FactVAE(latent_dim=2, lam=0.0).fit(frame, groups=spec, epochs=2, progress=False)
    draws = vae.impute(frame, num_draws=2)
    assert len(draws) == 2 and all(isinstance(d, pd.DataFrame) for d in draws)
    assert all(d.index.equals(frame.index) and not d.isna().any().any() for d in draws)
    lower, upper = vae.predict_interval(frame, level=0.5, num_draws=50)
    assert (lower["q"] <= upper["q"]).all() and (lower["p"] == frame["p"]).all()
    with pytest.raises(ValueError, match="level"):
        vae.predict_interval(frame, level=1.5)
    with pytest.raises(ValueError, match="num_draws"):
        vae.impute(frame, num_draws=0)
    assert isinstance(GroupedData.from_dataframe(frame, spec), GroupedData)


def test_the_cli_writes_draws_and_interval_files_a_csv_user_can_read(tmp_path, capsys):
    import json

    from pyro_factvae.cli import main

    rng = np.random.default_rng(0)
    z = rng.standard_normal((80, 2))
    frame = pd.DataFrame(z @ rng.standard_normal((2, 4)), columns=["id0", "x1", "x2", "x3"])
    frame = frame.mask(rng.random(frame.shape) < 0.15)
    frame.loc[frame.isna().all(axis=1), "id0"] = 0.0
    data = tmp_path / "t.csv"
    frame.to_csv(data, index=False)
    model = tmp_path / "m.factvae"
    spec = "a=id0,x1;b=x2,x3"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "2", "--lam", "0"]
    assert main([*fit, "--latent-dim", "2", "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "f.csv"
    args = ["impute", str(model), str(data), "-o", str(out), "--draws", "3", "--interval", "0.8"]
    assert main([*args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["draws"] == 3 and len(report["written"]) == 3
    stacked = pd.read_csv(out)
    assert list(stacked.columns) == ["draw", *frame.columns] and len(stacked) == 3 * len(frame)
    assert sorted(stacked["draw"].unique()) == [1, 2, 3] and not stacked.isna().any().any()
    seen = frame.notna().to_numpy()
    for m in (1, 2, 3):
        one = stacked[stacked["draw"] == m].drop(columns="draw").to_numpy()
        np.testing.assert_allclose(one[seen], frame.to_numpy()[seen], rtol=1e-12)
    lower, upper = pd.read_csv(tmp_path / "f_lower.csv"), pd.read_csv(tmp_path / "f_upper.csv")
    assert lower.shape == frame.shape and (lower.to_numpy() <= upper.to_numpy()).all()
    np.testing.assert_allclose(lower.to_numpy()[seen], frame.to_numpy()[seen], rtol=1e-12)
    npz = tmp_path / "f.npz"
    assert main(["impute", str(model), str(data), "-o", str(npz), "--draws", "2"]) == 0
    with np.load(npz) as arrays:
        assert arrays["a"].shape == (2, 80, 2)


def test_draw_scores_report_coverage_crps_and_energy_that_can_fail():
    from pyro_factvae.calibration import _crps, draw_scores
    from pyro_factvae.metrics import evaluate

    # CRPS of draws from N(0, 1) at y = 0 is 1/sqrt(pi) - 1/sqrt(2 pi)... of a point: |x - y|
    draws = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0)).double()
    exact = 2 * 0.3989422804 - 1 / np.sqrt(np.pi)  # CRPS(N(0, 1), 0) = 2 phi(0) - 1/sqrt(pi)
    assert abs(float(_crps(draws, torch.zeros(1, dtype=torch.float64))[0]) - exact) < 0.01
    point = torch.full((5, 1), 2.0, dtype=torch.float64)
    assert float(_crps(point, torch.zeros(1, dtype=torch.float64))[0]) == 2.0
    # the exact-decoder model scored on values drawn from its own conditional: calibrated
    vae, data, groups, exact_lg = linear_gaussian("poe", n=400)
    xa = torch.as_tensor(groups["a"]).double()
    mean, cov = _exact_conditional(exact_lg, xa)
    truth = {"a": groups["a"], "b": _mvn_draws(mean.numpy(), cov.numpy(), 1)[0]}
    hide = np.zeros((400, 2), bool)
    hide[:, 1] = True
    scores = draw_scores(vae, truth, hide, num_draws=400, num_samples=1000)
    assert scores["entries"] == {"a": 0, "b": 800}
    assert 0.86 <= scores["coverage"][0.9]["pooled"] <= 0.94
    assert 0.45 <= scores["coverage"][0.5]["b"] <= 0.55
    # a model told the wrong noise scale is over-confident: its coverage drops
    with torch.no_grad():
        for lik in vae.model_.likelihoods:
            lik.raw_scale.sub_(3.0)
    narrow = draw_scores(vae, truth, hide, num_draws=400, num_samples=1000)
    assert narrow["coverage"][0.9]["pooled"] < scores["coverage"][0.9]["pooled"] - 0.1
    assert narrow["crps"]["b"] > scores["crps"]["b"] and np.isfinite(narrow["energy"]["b"])
    out = evaluate(vae, data, num_samples=20, num_draws=40)
    assert 0 <= out["coverage_90"] <= 1 and out["crps"] > 0


def test_coverage_and_crps_score_any_imputers_draws():
    from pyro_factvae.calibration import coverage, crps

    rng = np.random.default_rng(0)
    truth = rng.standard_normal((400, 3))
    calibrated = rng.standard_normal((500, 400, 3))  # draws from the truth's own law
    narrow = 0.3 * calibrated
    where = np.ones_like(truth, dtype=bool)
    where[:, 0] = False
    good, bad = coverage(calibrated, truth, where), coverage(narrow, truth, where)
    assert abs(good[0.9] - 0.9) < 0.03 and abs(good[0.5] - 0.5) < 0.04
    assert bad[0.9] < 0.5
    assert crps(narrow, truth).mean() > crps(calibrated, truth).mean()
    with pytest.raises(ValueError, match="draws have shape"):
        crps(calibrated[:, :10], truth)


def test_coverage_refuses_non_finite_scored_entries_and_masks_that_are_not_boolean():
    from pyro_factvae.calibration import coverage

    rng = np.random.default_rng(0)
    draws, truth = rng.standard_normal((40, 50)), rng.standard_normal(50)
    holes = truth.copy()
    holes[:10] = np.nan
    with pytest.raises(ValueError, match=r"truth is not finite at 10 entries where scored"):
        coverage(draws, holes, np.ones(50, bool))
    scored = ~np.isnan(holes)  # a NaN truth left out of the scored entries is no miss
    assert coverage(draws, holes, scored) == coverage(draws[:, 10:], truth[10:], scored[10:])
    broken = draws.copy()
    broken[:, 3] = np.nan
    with pytest.raises(ValueError, match=r"draws are not finite at 1 entry where scored"):
        coverage(broken, truth, np.ones(50, bool))
    with pytest.raises(ValueError, match="where must hold booleans"):
        coverage(draws, truth, np.full(50, 0.5))


@pytest.mark.parametrize("num_draws", [20, 40, 200])
def test_intervals_of_few_exact_draws_still_cover_their_level(num_draws):
    from pyro_factvae.calibration import coverage
    from pyro_factvae.module.draws import central_ranks

    rng = np.random.default_rng(1)
    truth = rng.standard_normal(20000)  # each with its own draws of the same law
    draws = rng.standard_normal((num_draws, 20000))
    got = coverage(draws, truth, np.ones(20000, bool), levels=(0.5, 0.9))
    for level in (0.5, 0.9):
        lo, hi = central_ranks(num_draws, level)
        exact = (hi - lo) / (num_draws + 1)  # P(the new value between the two order statistics)
        assert level <= exact <= level + 2 / (num_draws + 1)
        assert abs(got[level] - exact) < 0.012  # 3 binomial sd at 20,000 values
    assert central_ranks(40, 0.9) == (1, 38) and central_ranks(20, 0.9) == (0, 19)
    assert central_ranks(19, 0.8) == (1, 17)  # (M + 1)(1 - level) / 2 = 2, not 1.999...
    with pytest.raises(ValueError, match="too few"):
        coverage(draws[:18], truth, np.ones(20000, bool), levels=0.9)
    # the fewest allowed: the smallest and largest of 19 exact draws cover 18 / 20 = 0.9
    assert central_ranks(19, 0.9) == (0, 18)
    assert abs(coverage(draws[:19], truth, np.ones(20000, bool), levels=0.9)[0.9] - 0.9) < 0.012


def test_crps_of_few_exact_draws_is_the_distributions_crps():
    from pyro_factvae.calibration import crps

    rng = np.random.default_rng(2)
    truth = rng.standard_normal(40000)
    # E CRPS(N(0, 1), y) over y ~ N(0, 1): E|X - y| - E|X - X'| / 2 = 2 / sqrt(pi) - 1 / sqrt(pi)
    exact = 1 / np.sqrt(np.pi)
    for m in (2, 5, 50):
        got = crps(rng.standard_normal((m, 40000)), truth).mean()
        assert abs(got - exact) < 0.01, m  # the empirical CRPS is E|X - X'| / 2M higher


def test_intervals_and_scores_refuse_too_few_draws_and_zero_samples(tmp_path, capsys):
    from pyro_factvae.calibration import draw_scores
    from pyro_factvae.cli import main
    from pyro_factvae.metrics import evaluate, iwae_log_likelihood

    rng = np.random.default_rng(0)
    groups = {"a": rng.standard_normal((60, 2)), "b": rng.standard_normal((60, 2))}
    groups["b"][::4] = np.nan
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=2, progress=False)
    # the range of M draws covers (M - 1) / (M + 1): 19 draws at least for 90%
    with pytest.raises(ValueError, match="num_draws >= 19"):
        vae.predict_interval(groups, level=0.9, num_draws=18)
    lower, upper = vae.predict_interval(groups, level=0.9, num_draws=19)
    assert (upper["b"][::4] > lower["b"][::4]).all()
    hide = np.zeros((60, 2), bool)
    hide[1::4, 1] = True
    with pytest.raises(ValueError, match="num_draws >= 39"):
        draw_scores(vae, groups, hide, num_draws=38)
    with pytest.raises(ValueError, match="num_samples"):
        draw_scores(vae, groups, hide, num_draws=39, num_samples=0)
    with pytest.raises(ValueError, match="num_draws >= 39"):
        evaluate(vae, groups, num_draws=1)
    for bad in (
        lambda: evaluate(vae, groups, num_samples=0),
        lambda: iwae_log_likelihood(vae, groups, num_samples=0),
    ):
        with pytest.raises(ValueError, match="num_samples must be a positive integer"):
            bad()
    # the command line: one line, and nothing written before the level is checked
    model, data, out = tmp_path / "m.factvae", tmp_path / "d.npz", tmp_path / "f.npz"
    vae.save(model)
    np.savez(data, **groups)
    capsys.readouterr()
    assert main(["evaluate", str(model), str(data), "--samples", "0"]) == 1
    assert capsys.readouterr().err.startswith("factvae: error: --samples must be")
    assert main(["impute", str(model), str(data), "-o", str(out), "--interval", "1.5"]) == 1
    assert "level must be in (0, 1)" in capsys.readouterr().err and not out.exists()


def test_a_dict_of_the_fitted_groups_in_another_order_is_matched_by_name():
    rng = np.random.default_rng(1)
    groups = {"a": rng.standard_normal((50, 2)), "b": rng.standard_normal((50, 3))}
    groups["b"][::5] = np.nan
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=2, progress=False)
    swapped = {"b": groups["b"], "a": groups["a"]}
    same, other = vae.impute(groups, seed=3), vae.impute(swapped, seed=3)
    assert set(other) == {"a", "b"}
    for name in groups:
        np.testing.assert_array_equal(same[name], other[name])
    with pytest.raises(ValueError, match="the model was fitted on"):
        vae.impute({"a": groups["a"], "c": groups["b"]})


def test_intervals_of_discrete_groups_are_values_of_their_support():
    from pyro_factvae.calibration import coverage, draw_scores

    rng = np.random.default_rng(0)
    n = 80
    groups = {
        "x": rng.standard_normal((n, 3)),
        "cnt": rng.poisson(4.0, (n, 2)).astype(float),
        "lab": np.eye(3)[rng.integers(0, 3, n)],
    }
    groups["cnt"][:10] = np.nan
    groups["x"][20:30] = np.nan
    liks = {"cnt": "poisson", "lab": "categorical"}
    vae = FactVAE(latent_dim=2, lam=0.1, likelihood=liks).fit(groups, epochs=3, progress=False)
    lower, upper = vae.predict_interval(groups, num_draws=40, num_samples=8, refine_steps=0)
    for bound in (lower, upper):  # counts are whole, a normal group's bounds continuous draws
        assert np.array_equal(bound["cnt"], np.round(bound["cnt"]))
        assert not np.array_equal(bound["x"][20:30], np.round(bound["x"][20:30]))
    assert np.all(lower["cnt"][:10] <= upper["cnt"][:10])
    groups["lab"][:5] = np.nan  # a missing label: each cell's bounds are 0 or 1
    lower, upper = vae.predict_interval(groups, num_draws=40, num_samples=8, refine_steps=0)
    assert set(np.unique(lower["lab"][:5])) | set(np.unique(upper["lab"][:5])) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="level must be a number in"):
        vae.predict_interval(groups, level="0.9")
    hidden = np.zeros((n, 8), bool)
    hidden[:10, 5] = True  # one column of the one-hot label
    groups["x"][7] = groups["cnt"][7] = groups["lab"][7] = np.nan  # row 7 observes nothing
    # rows 0-4 miss the label; row numbers are the data's, rows observing nothing included
    with pytest.raises(ValueError, match=r"only some columns of group 'lab' in rows \[5, 6, 8"):
        draw_scores(vae, groups, hidden, num_draws=40, num_samples=8, refine_steps=0)
    draws, truth = np.zeros((20, 4, 3)), np.zeros((4, 3))
    with pytest.raises(ValueError, match="expected"):
        coverage(draws, np.zeros((4, 2)), np.ones((4, 2), bool))
    with pytest.raises(ValueError, match="levels must be in"):
        coverage(draws, truth, np.ones((4, 3), bool), levels=(1.2,))
    assert coverage(draws, truth, np.ones((4, 3), bool), levels=0.9) == {0.9: 1.0}


def test_draw_scores_leave_out_rows_that_observe_nothing():
    from pyro_factvae.calibration import draw_scores

    vae, data, groups, _ = linear_gaussian("poe", n=40)
    hide = np.zeros((40, 2), bool)
    hide[:20, 1] = True
    base = draw_scores(vae, groups, hide, num_draws=40, num_samples=50)
    holed = {g: np.vstack([v, np.full((1, v.shape[1]), np.nan)]) for g, v in groups.items()}
    scores = draw_scores(vae, holed, np.vstack([hide, [[False, True]]]), 40, num_samples=50)
    assert scores["entries"] == base["entries"] and base["entries"]["b"] > 0
    assert scores["crps"]["b"] == base["crps"]["b"]  # the same rows scored, the same draws


def test_draw_scores_take_a_mask_per_group_as_a_dict():
    from pyro_factvae.calibration import draw_scores

    vae, data, groups, _ = linear_gaussian("poe", n=40)
    hide = np.zeros((40, 2), bool)
    hide[:20, 1] = True
    kw = {"num_draws": 40, "num_samples": 50}
    base = draw_scores(vae, groups, hide, **kw)
    rows = draw_scores(vae, groups, {"b": hide[:, 1]}, **kw)  # rows of group b
    cells = draw_scores(
        vae, groups, {"b": np.repeat(hide[:, 1:], 2, 1), "a": np.zeros((40, 3), bool)}, **kw
    )
    for scores in (rows, cells):
        assert scores["entries"] == base["entries"] and scores["crps"]["b"] == base["crps"]["b"]
    with pytest.raises(ValueError, match=r"hidden names groups \['z'\]; give"):
        draw_scores(vae, groups, {"z": hide[:, 1]}, **kw)
    with pytest.raises(ValueError, match=r"hidden\['b'\] has shape \(40, 3\); expected"):
        draw_scores(vae, groups, {"b": np.zeros((40, 3), bool)}, **kw)
    # a dict in another order than fitted: an array mask is read in the dict's own order
    turned = {"b": groups["b"], "a": groups["a"]}
    assert draw_scores(vae, turned, hide[:, ::-1], **kw)["entries"] == base["entries"]
    by_cell = np.repeat(hide[:, ::-1], [2, 3], axis=1)  # b's 2 cells, then a's 3
    assert draw_scores(vae, turned, by_cell, **kw)["entries"] == base["entries"]
    with pytest.raises(ValueError, match="hidden must hold booleans"):
        draw_scores(vae, groups, hide * 0.01, **kw)
    for seed in (None, 1.5):  # as every query says it
        with pytest.raises(ValueError, match="seed must be an integer"):
            draw_scores(vae, groups, hide, seed=seed, **kw)
    with pytest.raises(ValueError, match="got None: .*give another integer for other draws"):
        vae.impute(groups, seed=None)  # sample(seed=None) draws unseeded; impute repeats


def test_draw_scores_read_a_frames_mask_by_its_columns_and_name_rows_left_bare():
    import pandas as pd

    from pyro_factvae.calibration import draw_scores

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.standard_normal((40, 5)), columns=[f"c{j}" for j in range(5)])
    groups = {"a": ["c3", "c4"], "b": ["c0", "c1", "c2"]}  # not the frame's column order
    vae = FactVAE(latent_dim=2, lam=0.1).fit(frame, groups=groups, epochs=2, progress=False)
    hide = np.zeros((40, 5), bool)
    hide[:, 0] = True  # column c0, of group b
    kw = dict(num_draws=40, num_samples=10, refine_steps=0)
    assert draw_scores(vae, frame, hide, **kw)["entries"] == {"a": 0, "b": 40}
    labelled = pd.DataFrame(hide, columns=frame.columns)[["c4", "c0", "c1", "c2", "c3"]]
    assert draw_scores(vae, frame, labelled, **kw)["entries"] == {"a": 0, "b": 40}
    some = labelled.copy()
    some.iloc[20:] = False  # rows 0-19 hidden: read by the frame's index, in any row order
    assert draw_scores(vae, frame, some.iloc[::-1], **kw)["entries"] == {"a": 0, "b": 20}
    with pytest.raises(ValueError, match="hidden's row index differs from the data's"):
        draw_scores(vae, frame, some.iloc[:30], **kw)
    gappy = labelled.astype("boolean")
    gappy.iloc[3, 1] = pd.NA  # no answer is no mask
    with pytest.raises(ValueError, match="hidden must hold booleans .*no missing values"):
        draw_scores(vae, frame, gappy, **kw)
    with pytest.raises(ValueError, match=r"hidden lacks the columns \['c3'\]"):
        draw_scores(vae, frame, labelled.drop(columns="c3"), **kw)
    holed = frame.copy()
    holed.iloc[2] = np.nan  # a row that observes nothing: left out, not counted
    holed.iloc[5, :3] = np.nan  # row 5 observes group a alone
    bare = np.zeros((40, 5), bool)
    bare[5, 3:] = True
    with pytest.raises(ValueError, match=r"leaves rows \[5\] with no observed cell"):
        draw_scores(vae, holed, bare, **kw)
    with pytest.raises(ValueError, match="hidden selects no observed cell of data"):
        draw_scores(vae, holed, holed.isna().to_numpy(), **kw)  # the missing cells
    with pytest.raises(ValueError, match="hidden selects no observed cell of data"):
        draw_scores(vae, frame, np.zeros((40, 2), bool), **kw)


def test_draw_scores_cover_with_the_bounds_predict_interval_gives_a_count_group():
    from pyro_factvae.calibration import draw_scores

    rng = np.random.default_rng(1)
    z = rng.standard_normal((80, 1))
    groups = {"x": z + 0.3 * rng.standard_normal((80, 2)), "n": rng.poisson(np.exp(1 + z))}
    vae = FactVAE(latent_dim=2, lam=0.1, likelihood={"n": "poisson"})
    vae.fit(groups, epochs=5, progress=False)
    hide = np.zeros((80, 2), bool)
    hide[::2, 1] = True  # the counts of every other row
    kw = dict(num_draws=40, num_samples=30, refine_steps=2, seed=3)
    scores = draw_scores(vae, groups, hide, levels=[0.5, 0.9], **kw)
    held = {"x": groups["x"], "n": np.where(hide[:, [1]], np.nan, groups["n"])}
    for level in (0.5, 0.9):
        lower, upper = vae.predict_interval(held, level=level, **kw)
        truth, rows = groups["n"][::2], slice(None, None, 2)
        inside = (lower["n"][rows] <= truth) & (truth <= upper["n"][rows])
        assert scores["coverage"][level]["n"] == pytest.approx(inside.mean())
        assert np.array_equal(lower["n"][rows], np.round(lower["n"][rows]))  # draws: counts
