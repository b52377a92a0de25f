import math

import numpy as np
import pytest
import torch

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.metrics import (
    conditional_log_likelihood,
    evaluate,
    imputation_error,
    iwae_log_likelihood,
    mean_imputation_error,
    reconstruction_log_likelihood,
)

P = 4  # decoder width


def linear_gaussian(inference, n=40, seed=0):
    """A built FactVAE whose decoder is exactly linear (ReLU never active below 0), with the
    exact marginal x ~ N(c, L^T L + diag(sigma^2)) over the concatenated groups."""
    rng = np.random.default_rng(seed)
    groups = {"a": rng.standard_normal((n, 3)), "b": rng.standard_normal((n, 2))}
    groups["b"][: n // 4] = np.nan
    data = GroupedData(groups)
    vae = FactVAE(latent_dim=2, lam=0.0, decoder_width=P, encoder_width=4, inference=inference)
    vae.fit(data, epochs=1, progress=False)
    vae.fit_state.spread = 1.0  # the model's own draws: the weights below are set by hand
    model, guide = vae.model_, vae.guide_
    loadings, means, scales = [], [], []
    with torch.no_grad():
        guide.baseline.fill_(1.0)  # moderate precisions: a proposal that is not the posterior
        for dec in model.decoders:
            lin = dec.net[1][0]
            dec.shift.fill_(50.0)  # W z + 50 > 0 for any plausible z: ReLU is the identity
            lin.bias -= torch.einsum("gp,gpd->gd", dec.shift, lin.weight)
        for g, d in enumerate(data.dims):  # each group's place in its (maybe padded) block
            b, i = model.layout.locate(g)
            dec, lik, phi = model.decoders[b], model.likelihoods[b], guide.Phi[b]
            lin = dec.net[1][0]
            w = phi[:, :P, :]
            # the likelihood maps network units to the user's: shift + unit * out
            unit = lik.unit[i, :d]
            loadings.append(torch.einsum("gpk,gpd->gkd", w, lin.weight)[i, :, :d] * unit)
            out = (torch.einsum("gp,gpd->gd", dec.shift, lin.weight) + lin.bias)[i, :d]
            means.append(lik.shift[i, :d] + unit * out)
            scales.append(lik.scale[i, :d] * unit)
    exact = {
        "L": torch.cat(loadings, 1).double(),
        "mu": torch.cat(means).double(),
        "sd": torch.cat(scales).double(),
    }
    return vae, data, groups, exact


def exact_log_marginal(exact, x, cols):
    L, mu, sd = exact["L"][:, cols], exact["mu"][cols], exact["sd"][cols]
    cov = L.T @ L + torch.diag(sd**2)
    return torch.distributions.MultivariateNormal(mu, cov).log_prob(x[cols]).item()


@pytest.mark.parametrize("inference", ["poe", "mixture"])
def test_iwae_matches_closed_form_linear_gaussian(inference):
    vae, data, groups, exact = linear_gaussian(inference)
    x = torch.as_tensor(np.concatenate([groups["a"], groups["b"]], 1))
    truth = []
    for i in range(len(data)):
        cols = [0, 1, 2] + ([3, 4] if bool(data.observed[i, 1]) else [])
        truth.append(exact_log_marginal(exact, x[i], cols))
    truth = np.array(truth)
    est = np.stack([iwae_log_likelihood(vae, data, 1000, seed=s) for s in range(3)])
    err = est - truth
    # Monte Carlo error: per-row spread over seeds is < 0.1 nats; the bias of k = 1000 is tiny
    assert abs(err.mean()) < 0.03
    assert np.abs(err).max() < 0.4
    # a single sample is a much looser bound (the estimator really averages over k); its
    # gap, KL(q || p), averaged over five draws (one draw's mean gap ranged -0.03 to -0.32)
    one = np.mean([iwae_log_likelihood(vae, data, 1, seed=s) for s in range(5)], 0)
    assert (one - truth).mean() < -0.05


def test_iwae_chunking_does_not_change_the_estimate():
    vae, data, _, _ = linear_gaussian("poe")
    big = iwae_log_likelihood(vae, data, 256, seed=3)
    small = iwae_log_likelihood(vae, data, 256, seed=3, max_elements=200)
    assert np.isfinite(big).all() and big.shape == (len(data),)
    # different chunking draws different z, so compare as Monte Carlo estimates
    assert abs(big.mean() - small.mean()) < 0.05


def test_conditional_log_likelihood_matches_closed_form():
    vae, data, groups, exact = linear_gaussian("poe")
    x = torch.as_tensor(np.concatenate([groups["a"], groups["b"]], 1))
    est = conditional_log_likelihood(vae, data, targets=["b"], num_samples=2000, seed=1)
    both = data.observed.all(-1).numpy()
    assert np.isnan(est[~both]).all()  # b missing: nothing to evaluate
    truth = np.array(
        [
            exact_log_marginal(exact, x[i], [0, 1, 2, 3, 4])
            - exact_log_marginal(exact, x[i], [0, 1, 2])
            for i in np.flatnonzero(both)
        ]
    )
    err = est[both] - truth
    assert abs(err.mean()) < 0.05 and np.abs(err).max() < 0.5


def test_conditional_rejects_overlap_and_unknown_groups():
    vae, data, _, _ = linear_gaussian("poe", n=12)
    with pytest.raises(ValueError, match="both given and a target"):
        conditional_log_likelihood(vae, data, targets=["b"], given=["a", "b"], num_samples=2)
    with pytest.raises(ValueError, match="unknown group 'c'"):
        conditional_log_likelihood(vae, data, targets=["c"], num_samples=2)
    with pytest.raises(ValueError, match="list of group names"):
        conditional_log_likelihood(vae, data, targets="b", num_samples=2)


@pytest.mark.parametrize("max_elements", [2**22, 1])  # every row at once, or one at a time
def test_reconstruction_log_likelihood_is_one_sample_sum_over_targets(max_elements):
    vae, data, _, _ = linear_gaussian("poe", n=12)
    full = reconstruction_log_likelihood(vae, data, seed=0, max_elements=max_elements)
    a = reconstruction_log_likelihood(vae, data, targets=["a"], seed=0, max_elements=max_elements)
    b = reconstruction_log_likelihood(vae, data, targets=["b"], seed=0, max_elements=max_elements)
    both = data.observed.all(-1).numpy()
    np.testing.assert_allclose(full[both], a[both] + b[both], rtol=1e-5)
    np.testing.assert_allclose(full[~both], a[~both], rtol=1e-5)
    assert np.isnan(b[~both]).all()
    # one draw: a different seed gives a different value
    assert not np.allclose(full, reconstruction_log_likelihood(vae, data, seed=1))


def test_imputation_error_matches_reconstruct():
    vae, data, groups, _ = linear_gaussian("poe", n=12)
    sse, sae = imputation_error(vae, data, targets=["b"], num_samples=5, seed=2)
    pred = vae.reconstruct(
        data.with_mask(data.observed & torch.tensor([True, False])),
        given=["a"],
        targets=["b"],
        num_samples=5,
        seed=2,
    )["b"]
    both = data.observed.all(-1).numpy()
    diff = pred[both] - groups["b"][both]
    np.testing.assert_allclose(sse[both], (diff**2).sum(1), rtol=1e-4)
    np.testing.assert_allclose(sae[both], np.abs(diff).sum(1), rtol=1e-4)
    assert np.isnan(sse[~both]).all()


def test_mean_imputation_error_uses_training_means():
    train = GroupedData({"a": np.array([[0.0], [2.0]]), "b": np.array([[1.0], [np.nan]])})
    test = GroupedData({"a": np.array([[3.0]]), "b": np.array([[5.0]])})
    sse, sae = mean_imputation_error(train, test, ["a", "b"])
    assert sse[0] == pytest.approx((3 - 1) ** 2 + (5 - 1) ** 2)
    assert sae[0] == pytest.approx(2 + 4)


def test_mean_imputation_error_refuses_variables_named_in_another_order():
    import pandas as pd

    a = pd.DataFrame([[0.0, 100.0], [2.0, 102.0]], columns=["x", "y"])
    train = {"a": a, "b": np.array([[1.0], [3.0]])}
    same = mean_imputation_error(train, {"a": a, "b": train["b"]}, ["a"])[0]
    assert same == pytest.approx([2.0, 2.0])  # 1 and 101 the means: each row off by 1 twice
    with pytest.raises(ValueError, match=r"group 'a' has the columns \['y', 'x'\] in data"):
        mean_imputation_error(train, {"a": a[["y", "x"]], "b": train["b"]}, ["a"])


def test_metrics_refuse_no_targets_and_the_mean_baseline_leaves_empty_rows_nan(groups):
    from pyro_factvae.metrics import conditional_log_likelihood, imputation_error

    vae = FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=1, progress=False)
    for call in (
        lambda t: conditional_log_likelihood(vae, groups, t, num_samples=4),
        lambda t: imputation_error(vae, groups, t, num_samples=4),
        lambda t: mean_imputation_error(groups, groups, t),
    ):
        for targets in (None, []):
            with pytest.raises(ValueError, match="targets must name the groups to score"):
                call(targets)
        with pytest.raises(ValueError, match="list of group names, not the string 'a'"):
            call("a")
    holed = {k: v.copy() for k, v in groups.items()}
    for v in holed.values():
        v[3] = np.nan  # nothing observed: nothing to score, as every metric says
    sse, _ = mean_imputation_error(groups, holed, ["a"])
    assert np.isnan(sse[3]) and np.isfinite(sse[0])


def test_evaluate_reports_every_metric_and_repeats():
    vae, data, _, _ = linear_gaussian("mixture", n=16)
    a = evaluate(vae, data, num_samples=20, seed=0)
    b = evaluate(vae, data, num_samples=20, seed=0)
    assert a == b
    assert set(a) == {"recon_ll", "iwae_ll", "cond_ll", "rmse", "mae", "crps"} | {
        f"coverage_{level}" for level in (50, 80, 90, 95)
    }
    assert all(math.isfinite(v) for v in a.values())
    assert 0 <= a["coverage_50"] <= a["coverage_80"] <= a["coverage_90"] <= a["coverage_95"] <= 1
    assert set(evaluate(vae, data, num_samples=20, num_draws=0)) == {
        "recon_ll",
        "iwae_ll",
        "cond_ll",
        "rmse",
        "mae",
    }
    assert a["rmse"] >= a["mae"] > 0


def test_evaluate_reports_errors_in_standardized_units_unless_raw():
    """A feature in the hundreds does not drown the others: scaling a group by 100 leaves
    the standardized RMSE and CRPS as they were and multiplies the raw ones."""
    from .conftest import small_groups

    groups = small_groups(n=60, seed=1)
    scaled = {**groups, "a": groups["a"] * 100.0}
    scores = []
    for data in (groups, scaled):
        vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=3, seed=0, progress=False)
        std = evaluate(vae, data, num_samples=10, num_draws=40)
        raw = evaluate(vae, data, num_samples=10, num_draws=40, standardized=False)
        scores.append((std, raw))
    (std1, raw1), (std100, raw100) = scores
    for key in ("rmse", "mae", "crps"):
        assert std100[key] == pytest.approx(std1[key], rel=0.05)
        assert raw100[key] > 10 * raw1[key]
    # standardizing divides by the training sd: raw / standardized is about the data's sd
    assert raw100["rmse"] > 5 * std100["rmse"]


def test_rows_with_nothing_observed_are_left_out_of_the_scores(tmp_path, groups, capsys):
    from pyro_factvae.cli import main

    vae = FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=3, seed=0, progress=False)
    with_empty = {k: np.vstack([np.full((1, v.shape[1]), np.nan), v]) for k, v in groups.items()}
    kw = {"num_samples": 8, "num_draws": 40, "refine_steps": 0}
    assert evaluate(vae, with_empty, **kw) == evaluate(vae, groups, **kw)
    iwae = iwae_log_likelihood(vae, with_empty, num_samples=8)
    assert np.isnan(iwae[0]) and np.isfinite(iwae[1:]).all()
    model, data = tmp_path / "m.factvae", tmp_path / "d.npz"
    vae.save(model)
    np.savez(data, **with_empty)
    assert main(["evaluate", str(model), str(data), "--samples", "8", "--json"]) == 0
    assert "rmse" in capsys.readouterr().out
    nothing = {k: np.full_like(v, np.nan) for k, v in groups.items()}
    with pytest.raises(ValueError, match="there is nothing to score"):
        evaluate(vae, nothing, **kw)


def test_compare_reports_errors_in_the_units_of_its_mean_baseline(groups):
    from pyro_factvae.tools.baselines import compare

    scaled = {k: 100.0 * v for k, v in groups.items()}  # far from standardized units
    (row,) = compare(scaled, scaled, {"latent_dim": 2}, steps=4, methods=["lam0"], num_samples=8)
    raw = evaluate(row["model"], scaled, num_samples=8, standardized=False)
    assert row["rmse"] == raw["rmse"] and row["mean_rmse"] > 10  # both in the data's units
    # lam="auto" where the config gives no lam: its path's epochs are counted too
    (auto,) = compare(
        scaled, scaled, {"latent_dim": 2}, steps=4, methods=["factvae"], num_samples=8
    )
    assert auto["epochs"] == len(auto["model"].history_) > row["epochs"] == 4


def test_compare_checks_every_argument_before_it_fits(groups, monkeypatch):
    from pyro_factvae.tools import baselines

    fitted = []
    monkeypatch.setattr(baselines, "make", lambda *a, **k: fitted.append(a) or None)
    one = {"a": np.nan_to_num(groups["a"])}  # a test set of one group
    bad = [
        (dict(steps=0), "steps must be a positive integer"),
        (dict(batch_size=0), "batch_size must be a positive integer"),
        (dict(num_samples=0), "num_samples must be a positive integer"),
        (dict(methods="lam0"), "methods is a list of names"),
        (dict(methods=["lam0", "bogus"]), r"methods \['lam0', 'bogus'\]: choose"),
        (dict(methods=[]), r"methods \[\]: choose"),
        (dict(config=None), "config must be a dict of settings"),
        (dict(fit_args={"epochs": 3}), r"fit_args sets \['epochs'\], which compare sets"),
        (dict(test=one), r"test's groups \{'a': 3\} \(name: width\) differ"),
    ]
    for kwargs, message in bad:
        args = {"test": groups, "config": {"latent_dim": 2}}
        args.update(kwargs)
        with pytest.raises(ValueError, match=message):
            baselines.compare(groups, **args)
    assert fitted == []  # refused before any model was made
    with pytest.raises(ValueError, match="differ from train's"):
        baselines.mean_imputation_rmse(groups, one)


def test_a_target_cannot_be_given_and_a_column_never_observed_has_no_mean():
    vae, data, _, _ = linear_gaussian("poe", n=12)
    with pytest.raises(ValueError, match="cannot be both given and a target"):
        imputation_error(vae, data, targets=["b"], given=["a", "b"], num_samples=5)
    train = GroupedData({"a": np.array([[0.0], [2.0]]), "b": np.array([[1.0, np.nan]] * 2)})
    test = GroupedData({"a": np.array([[3.0]]), "b": np.array([[5.0, 4.0]])})
    with pytest.raises(ValueError, match=r"group 'b': columns \[1\] are never observed"):
        mean_imputation_error(train, test, ["b"])


def test_evaluate_warns_when_no_group_can_be_held_out():
    vae, data, groups, _ = linear_gaussian("poe", n=12)
    alone = GroupedData({"a": groups["a"], "b": np.full_like(groups["b"], np.nan)})
    with pytest.warns(UserWarning, match="no row observes two groups") as caught:
        out = evaluate(vae, alone, num_samples=10, num_draws=0, refine_steps=0)
    assert caught[0].filename == __file__ and math.isfinite(out["recon_ll"])
    assert math.isnan(out["rmse"])


def test_evaluate_by_group_scores_each_held_out_group_and_pools_them():
    """Each group's RMSE is the imputation error of that group held out from the rows that
    observe it and another group; the pooled scores are their entry-weighted averages."""
    vae, data, _, _ = linear_gaussian("poe", n=24)
    kw = {"num_samples": 20, "seed": 0, "num_draws": 40}
    pooled = evaluate(vae, data, **kw)
    out = evaluate(vae, data, by_group=True, **kw)
    per = out.pop("groups")
    assert out == pooled  # by_group adds, and changes nothing
    assert set(per) == {"a", "b"} and per["a"]["rmse"] != per["b"]["rmse"]
    both = data.observed.all(1).numpy()  # the rows where each group can be held out
    entries = {"a": 3 * both.sum(), "b": 2 * both.sum()}
    for name in ("a", "b"):
        sub = data.subset(np.flatnonzero(both))
        e2, _ = imputation_error(vae, sub, [name], num_samples=20, standardized=True)
        assert per[name]["rmse"] == pytest.approx(math.sqrt(np.nansum(e2) / entries[name]))
    for key in ("rmse", "crps", "coverage_90"):
        weighted = sum(
            (per[g][key] ** 2 if key == "rmse" else per[g][key]) * entries[g] for g in per
        ) / sum(entries.values())
        assert pooled[key] == pytest.approx(math.sqrt(weighted) if key == "rmse" else weighted)


def test_the_likelihood_scores_refuse_a_seed_or_chunk_that_is_not_an_integer():
    from pyro_factvae import metrics

    vae, data, _, _ = linear_gaussian("poe", n=12)
    scores = (
        lambda **k: metrics.iwae_log_likelihood(vae, data, num_samples=5, **k),
        lambda **k: metrics.conditional_log_likelihood(vae, data, ["b"], num_samples=5, **k),
        lambda **k: metrics.held_out_log_likelihood(vae, data, num_samples=5, **k),
    )
    for score in scores:
        a, b = score(seed=3), score(seed=3)
        assert np.array_equal(a, b, equal_nan=True)  # a seed repeats
        for seed in (None, 1.5):
            with pytest.raises(ValueError, match="seed must be an integer"):
                score(seed=seed)
        with pytest.raises(ValueError, match="max_elements must be a positive integer"):
            score(max_elements=0)
    with pytest.raises(ValueError, match="seed must be an integer"):
        metrics.reconstruction_log_likelihood(vae, data, seed=None)
    train = {k: v for k, v in data.to_numpy().items()}
    narrow = {**train, "a": train["a"][:, :2]}
    with pytest.raises(ValueError, match="group 'a' has 3 columns in data and 2 in train"):
        metrics.mean_imputation_error(narrow, data, ["a"])
    want = metrics.mean_imputation_error(train, data, ["a"])  # groups matched by name
    for other in ({"b": train["b"], "a": train["a"]}, {"a": train["a"]}):
        got = metrics.mean_imputation_error(other, data, ["a"])
        assert all(np.array_equal(g, w, equal_nan=True) for g, w in zip(got, want))
