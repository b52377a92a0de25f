"""Count likelihoods: exact log-probabilities, imputation of counts, dispersion, whole draws."""

import numpy as np
import pytest
import torch
from scipy import stats

from pyro_factvae import FactVAE
from pyro_factvae.metrics import imputation_error
from pyro_factvae.module.counts import NegativeBinomialLikelihood, PoissonLikelihood


def _counts(n=400, seed=0, r=5.0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    mu = np.exp(1.5 + z @ (0.8 * rng.standard_normal((2, 12))))
    counts = rng.negative_binomial(r, r / (r + mu)).astype(float)
    other = z @ rng.standard_normal((2, 6)) + 0.1 * rng.standard_normal((n, 6))
    return counts, other


def test_count_log_probs_are_the_known_ones():
    x = torch.tensor([[[0.0, 3.0, 12.0]]])
    out = torch.tensor([[[0.2, -0.5, 1.0]]])
    for lik in (PoissonLikelihood(1, 3), NegativeBinomialLikelihood(1, 3)):
        lik.requires_grad_(False)
        lik.log_mean.fill_(0.7)
        mu = np.exp(0.7 + out.numpy()[0, 0])
        if isinstance(lik, PoissonLikelihood):
            want = stats.poisson.logpmf(x.numpy()[0, 0], mu).sum()
        else:
            r = lik.dispersion.detach().numpy()[0]
            want = stats.nbinom.logpmf(x.numpy()[0, 0], r, r / (r + mu)).sum()
        got = lik.log_prob(out, x)
        assert got.shape == (1, 1) and float(got) == pytest.approx(want, rel=1e-5)
        (fn,) = lik.dists(out)
        assert float(fn.log_prob(x[:, 0])) == pytest.approx(want, rel=1e-5)
        cells = torch.tensor([[[True, False, True]]])  # a missing cell is not scored
        keep = [0, 2]
        part = float(lik.log_prob(out, x, cells))
        if isinstance(lik, PoissonLikelihood):
            assert part == pytest.approx(
                stats.poisson.logpmf(x.numpy()[0, 0, keep], mu[keep]).sum(), rel=1e-5
            )
        assert part > want  # one log-probability (negative) fewer


@pytest.mark.parametrize("family", ["poisson", "negative_binomial"])
def test_counts_are_imputed_better_than_by_the_mean_and_drawn_whole(family):
    counts, other = _counts()
    holed = counts.copy()
    holed[:80] = np.nan  # the count group missing in 80 rows
    holed[100:200, 3] = np.nan  # and single cells
    data = {"counts": holed, "other": other}
    vae = FactVAE(latent_dim=3, lam=0.0, likelihood={"counts": family})
    vae.fit(data, epochs=250, progress=False)
    filled = vae.impute(data)["counts"]
    hide = np.isnan(holed)
    rmse = np.sqrt(np.mean((filled[hide] - counts[hide]) ** 2))
    baseline = np.sqrt(
        np.mean((np.broadcast_to(np.nanmean(holed, 0), holed.shape)[hide] - counts[hide]) ** 2)
    )
    assert rmse < 0.8 * baseline  # measured: 0.66x (poisson) and 0.63x (negative binomial)
    assert np.array_equal(filled[~hide], counts[~hide])
    (draw,) = vae.impute(data, num_draws=1)
    assert np.array_equal(draw["counts"], np.round(draw["counts"])) and (draw["counts"] >= 0).all()
    if family == "negative_binomial":  # the dispersion of the simulation (r = 5) is recovered
        (lik,) = [m for m in vae.model_.likelihoods if isinstance(m, NegativeBinomialLikelihood)]
        assert 2.5 < float(lik.dispersion.detach().median()) < 12.0


def test_count_groups_refuse_values_that_are_not_counts():
    counts, other = _counts(n=60)
    bad = counts.copy()
    bad[4, 2] = 1.5
    with pytest.raises(ValueError, match=r"'poisson' likelihood but rows \[4\].*whole counts"):
        FactVAE(likelihood={"c": "poisson"}, lam=0.0).fit({"c": bad, "o": other}, epochs=1)
    bad[4, 2] = -1.0
    with pytest.raises(ValueError, match="'negative_binomial' likelihood but rows"):
        FactVAE(likelihood={"c": "negative_binomial"}, lam=0.0).fit(
            {"c": bad, "o": other}, epochs=1
        )


def test_a_rows_depth_makes_the_rates_of_its_seen_cells_sum_to_their_total():
    lik = PoissonLikelihood(2, 3)
    lik.log_mean.copy_(torch.tensor([[0.0, 1.0, 2.0], [0.5, 0.5, 0.5]]))
    x = torch.tensor([[[2.0, 4.0, 0.0], [1.0, 1.0, 1.0]], [[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]])
    out = torch.randn(2, 2, 3)
    seen = torch.ones_like(x, dtype=torch.bool)
    seen[1, 1, 1:] = False  # row 1 of group 1 is seen in its first cell only
    seen[1, 0] = False  # and row 1 of group 0 not at all
    log_total = lik.log_total(x, seen)
    assert torch.allclose(log_total.exp(), torch.tensor([[6.0, 3.0], [0.5, 9.0]]))
    depth = lik.depth(out, log_total, seen)
    rate = lik.mean(out + depth.unsqueeze(-1))
    sums = rate.where(seen, 0.0).sum(-1)
    assert torch.allclose(sums[0], torch.tensor([6.0, 3.0])) and float(sums[1, 1]) == 9.0
    assert float(depth[1, 0]) == 0.0  # nothing seen: the typical depth


def _deep_and_shallow(n=500, seed=0):
    """Poisson counts whose rows differ in depth (size factors 0.25 to 4) beside a normal
    group that shares the latent: the depth is seen in a row's counts, not in the other
    group."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    size = np.exp(rng.uniform(np.log(0.25), np.log(4.0), n))
    mu = size[:, None] * np.exp(1.0 + z @ (0.6 * rng.standard_normal((2, 20))))
    counts = rng.poisson(mu).astype(float)
    other = z @ rng.standard_normal((2, 5)) + 0.1 * rng.standard_normal((n, 5))
    return counts, other, size, mu


def test_library_size_offsets_from_the_data_or_given_impute_counts_at_the_row_depth():
    counts, other, size, mu = _deep_and_shallow()
    holed = counts.copy()
    cells = np.random.default_rng(1).random(holed.shape) < 0.2  # single hidden cells
    holed[cells] = np.nan
    holed[:60] = np.nan  # and the whole count group of 60 rows (their depth is given only)
    hide = np.isnan(holed)
    sizes = size[:, None].copy()
    data = {"counts": holed, "other": other, "size": sizes}
    lik = {"counts": "poisson"}
    errors = {}
    for name, library in [("none", None), ("data", "data"), ("given", {"counts": "size"})]:
        vae = FactVAE(latent_dim=3, lam=0.0, likelihood=lik, library_size=library)
        # the plain schedule: where early stopping restores an epoch is not what is tested
        vae.fit(data, epochs=150, patience=None, progress=False)
        # the encoder's posterior: the offsets are what is tested (a refined one reads a
        # row's depth from its own counts too, and narrows the gap on single cells)
        filled = vae.impute(data, refine_steps=0)["counts"]
        # errors on the log scale (log1p): relative, so that the deepest rows do not decide
        log_err = np.log1p(filled) - np.log1p(mu)
        errors[name] = {
            "cells": float(np.sqrt(np.mean(log_err[cells & ~hide[:, :1].repeat(20, 1)] ** 2))),
            "rows": float(np.sqrt(np.mean(log_err[:60] ** 2))),
        }
        assert np.array_equal(filled[~hide], counts[~hide])
    # hidden cells: a given size factor tells the row's depth (measured over fit seeds 0-2:
    # 0.101-0.110, against 0.150-0.153 without an offset); a row's observed counts tell it no
    # better than the encoder's latents do (0.147-0.153 with "data"), but no worse
    assert errors["given"]["cells"] < 0.85 * errors["none"]["cells"]
    assert errors["data"]["cells"] < 1.1 * errors["none"]["cells"]
    # a row whose counts are all hidden: only a given size factor tells its depth (measured
    # over fit seeds 0-2: 0.093-0.112, against 0.20-0.28 with "data", at the typical depth,
    # and 0.153-0.216 without an offset)
    assert errors["given"]["rows"] < 0.6 * errors["data"]["rows"]
    assert errors["given"]["rows"] < 0.8 * errors["none"]["rows"]


def test_a_given_size_factor_sets_the_depth_of_predictions_whether_or_not_it_is_given():
    counts, other, size, mu = _deep_and_shallow(n=300)
    data = {"counts": counts, "other": other, "size": size[:, None].copy()}
    vae = FactVAE(
        latent_dim=3, lam=0.0, likelihood={"counts": "poisson"}, library_size={"counts": "size"}
    )
    vae.fit(data, epochs=60, patience=None, progress=False, seed=0)

    def log_error(filled):
        return float(np.sqrt(np.mean((np.log1p(filled) - np.log1p(mu)) ** 2)))

    # the size factors are a covariate: reconstructing the counts from "other" alone still
    # reads each row's depth from them (measured at these settings: 0.110 either way, against
    # 0.581 when "size" lent no depth unless given; the depths span a factor of 16)
    alone = vae.reconstruct(data, given=["other"], targets=["counts"], refine_steps=0)["counts"]
    both = vae.reconstruct(data, given=["other", "size"], targets=["counts"], refine_steps=0)
    assert log_error(alone) < 1.5 * log_error(both["counts"])
    assert log_error(alone) < 0.3
    refined = vae.reconstruct(data, given=["other"], targets=["counts"], refine_steps=5)
    assert log_error(refined["counts"]) < 0.3  # the refined posterior's weights read them too
    # as the scores do: the counts' error from "other" alone is that of "other" and "size"
    sse_alone, _ = imputation_error(vae, data, ["counts"], given=["other"], refine_steps=0)
    sse_both, _ = imputation_error(vae, data, ["counts"], given=["other", "size"], refine_steps=0)
    assert np.nanmean(sse_alone) < 1.5 * np.nanmean(sse_both)
    # the scores: z from "other" alone; the counts' depth from the size factors where they
    # lend it (sources), exactly as when "size" is given, and the typical depth where not
    model, guide = vae.fitted_modules()
    g = vae.prepare(data)
    counts_at, size_at = g.index("counts"), g.index("size")
    only = g.observed.clone()
    only[:, [counts_at, size_at]] = False  # "other" alone
    with_size = only.clone()
    with_size[:, size_at] = True
    z = guide.posterior_dist(g.values, only, None).sample((2,))
    phis = list(guide.Phi)
    lend = g.observed.clone()
    lend[:, counts_at] = False  # the scored counts lend nothing
    with torch.no_grad():
        typical = model.log_likelihoods(g.values, g.observed, z, phis, given=only)
        read = model.log_likelihoods(g.values, g.observed, z, phis, given=only, sources=lend)
        given = model.log_likelihoods(g.values, g.observed, z, phis, given=with_size)
    assert torch.allclose(read[..., counts_at], given[..., counts_at])
    assert not torch.allclose(typical[..., counts_at], read[..., counts_at])


def test_library_size_is_checked_against_the_groups():
    counts, other = _counts(n=60)
    data = {"c": counts, "o": other}
    with pytest.raises(ValueError, match="not a count one"):
        FactVAE(lam=0.0, likelihood={"c": "poisson"}, library_size={"o": "data"}).fit(data)
    with pytest.raises(ValueError, match="'nope' is neither 'data' nor another group"):
        FactVAE(lam=0.0, likelihood={"c": "poisson"}, library_size={"c": "nope"}).fit(data)
    with pytest.raises(ValueError, match="library_size must be None, 'data' or"):
        FactVAE(library_size=3)
    with pytest.warns(UserWarning, match="no group has a count likelihood.*it does nothing here"):
        FactVAE(lam=0.0, library_size="data").fit(data, epochs=1, progress=False)  # all normal
    size = np.exp(np.random.default_rng(0).normal(size=(60, 1)))
    size[[4, 9]] *= -1
    model = FactVAE(lam=0.0, likelihood={"c": "poisson"}, library_size={"c": "s"})
    with pytest.raises(
        ValueError, match=r"'s' holds the size factors of 'c'.*rows \[4, 9\] are neg"
    ):
        model.fit({**data, "s": size}, epochs=1, progress=False)
    size[[4, 9]] = [[0.0], [np.nan]]  # 0 or missing: the row's own counts tell its depth
    vae = model.fit({**data, "s": size}, epochs=1, progress=False)
    size[7] = -1.0
    with pytest.raises(ValueError, match=r"rows \[7\] are negative"):
        vae.impute({**data, "s": size})


def test_a_held_out_count_group_does_not_lend_its_own_depth_to_its_score():
    counts, other = _counts(n=80)
    data = {"c": counts, "o": other}
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood={"c": "poisson"}, library_size="data")
    vae.fit(data, epochs=3, progress=False)
    model, guide = vae.fitted_modules()
    g = vae.prepare(data)
    given = g.observed.clone()
    given[:, 0] = False  # c held out: z and the depth come from o alone
    z = guide.posterior_dist(g.values, given, None).sample((2,))
    phis = list(guide.Phi)
    with torch.no_grad():
        scored = model.log_likelihoods(g.values, g.observed, z, phis, given=given)[..., 0]
        leaked = model.log_likelihoods(g.values, g.observed, z, phis)[..., 0]
        plain = model.likelihoods[0].log_prob(model.decode(z, phis)[0], g.values[0][:, None])
    assert torch.allclose(scored, plain[..., 0])  # the typical depth: nothing read from c
    assert not torch.allclose(scored, leaked)  # its own total would change its score


def test_library_size_groups_and_lams_are_checked():
    counts, other = _counts(n=60)
    data = {"c": counts, "o": other}
    with pytest.raises(ValueError, match="group 'o' has 6 columns; the size factors are one"):
        FactVAE(lam=0.0, likelihood={"c": "poisson"}, library_size={"c": "o"}).fit(data, epochs=1)
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=1, progress=False)
    with pytest.raises(ValueError, match="a fitted model takes a number for lam"):
        vae.set_lam("auto")
    for bad in (-1, float("nan")):  # said without 'auto', which a fitted model refuses
        with pytest.raises(ValueError, match=r"lam must be a finite number >= 0.0, got") as err:
            vae.set_lam(bad)
        assert "auto" not in str(err.value)
    from pyro_factvae.infer.run import Trainer

    fresh = FactVAE().fit_state
    with pytest.raises(ValueError, match="Trainer.train fits at a number lam"):
        Trainer(fresh).train(vae.prepare(data), {})


def test_a_count_feature_constant_in_a_first_fit_is_scaled_by_the_data_it_varies_in():
    counts, other = _counts(n=120)
    first = counts.copy()
    first[:, 3] = 0.0  # all zero: no log mean or log1p unit to learn from
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood={"c": "poisson"})
    with pytest.warns(UserWarning, match=r"columns \[3\] are constant in the training data"):
        vae.fit({"c": first, "o": other}, epochs=2, progress=False)
    model, _ = vae.fitted_modules()
    lik = model.likelihoods[model.layout.locate(0)[0]]
    before = {k: getattr(lik, k).clone() for k in ("log_mean", "log1p_shift", "log1p_unit")}
    assert float(before["log1p_unit"][0, 3]) == 1.0  # the constant column's placeholder unit
    vae.fit({"c": counts, "o": other}, epochs=1, progress=False)  # continued: column 3 varies
    logs = np.log1p(counts[:, 3])
    assert np.isclose(float(lik.log1p_unit[0, 3]), logs.std(ddof=1), rtol=1e-5)
    assert np.isclose(float(lik.log1p_shift[0, 3]), logs.mean(), rtol=1e-5)
    assert np.isclose(float(lik.log_mean[0, 3]), np.log(counts[:, 3].mean()), rtol=1e-5)
    for key, old in before.items():  # the columns the first fit could scale keep their scale
        keep = torch.ones(counts.shape[1], dtype=torch.bool)
        keep[3] = False
        assert torch.equal(getattr(lik, key)[0, keep], old[0, keep])


def test_a_continued_fit_of_a_model_without_training_ranges_keeps_its_count_scales():
    counts, other = _counts(n=120)
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood={"c": "poisson"})
    vae.fit({"c": counts, "o": other}, epochs=2, progress=False)
    model, _ = vae.fitted_modules()
    lik = model.likelihoods[model.layout.locate(0)[0]]
    with torch.no_grad():  # as a file written before the ranges were kept reads
        lik.low.fill_(float("inf"))
        lik.high.fill_(float("-inf"))
    before = {k: getattr(lik, k).clone() for k in ("log_mean", "log1p_shift", "log1p_unit")}
    vae.fit({"c": counts[:50], "o": other[:50]}, epochs=1, progress=False)
    for key, old in before.items():  # the trained scales stay under the trained weights
        assert torch.equal(getattr(lik, key), old)
