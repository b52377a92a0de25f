import struct
import warnings
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from pyro_factvae import FactVAE, FitConfig, GroupedData
from pyro_factvae.datasets import bars_data, bars_structure

from .conftest import small_groups

FAST = dict(epochs=3, batch_size=16, progress=False, patience=None)


def tiny(**kw):
    kw.setdefault("lam", 1.0)  # a fixed lam: these tests are not about choosing it
    return FactVAE(latent_dim=3, encoder_width=4, decoder_width=4, **kw)


def params(m):
    return [p.detach().clone() for p in [*m.model_.parameters(), *m.guide_.parameters()]]


def test_fit_and_outputs_have_the_right_shapes(groups):
    m = tiny().fit(groups, **FAST)
    assert len(m.history_) == 3 and np.isfinite(m.history_).all()
    loc, scale = m.latent(groups)
    assert loc.shape == scale.shape == (40, 3) and (scale > 0).all()
    rec = m.reconstruct(groups, given=["a"], targets=["c"], num_samples=5)
    assert list(rec) == ["c"] and rec["c"].shape == (40, 2)
    sample = m.sample(7, seed=0)
    assert [v.shape for v in sample.values()] == [(7, 3), (7, 3), (7, 2)]
    sp = m.sparsity()
    assert list(sp.index) == ["a", "b", "c"] and sp.shape == (3, 3)
    assert list(sp.columns) == ["z0", "z1", "z2"]


def test_impute_keeps_observed_and_fills_missing(groups):
    data = GroupedData(groups)
    m = tiny().fit(data, **FAST)
    out = m.impute(data, num_samples=4)
    np.testing.assert_array_equal(out["a"][0], groups["a"][0])  # the input, not float32
    assert np.isfinite(out["b"][2:5]).all()
    rec = m.reconstruct(data, num_samples=4)
    np.testing.assert_allclose(out["b"][2:5], rec["b"][2:5])
    # the plug-in mean (num_samples=0) is deterministic
    a = m.reconstruct(data, num_samples=0)["c"]
    np.testing.assert_array_equal(a, m.reconstruct(data, num_samples=0)["c"])


def test_given_group_only_matters_where_observed(groups):
    data = GroupedData(groups)
    m = tiny().fit(data, **FAST)
    loc_b, _ = m.latent(data, given=["b"])
    _, scale_none = m.latent(data, given=[])
    np.testing.assert_allclose(scale_none, 1.0)
    # rows 2..4 lack group b: encoding "b" gives the prior there
    np.testing.assert_allclose(loc_b[2:5], 0.0)


def test_seeded_fit_is_bit_for_bit_repeatable(groups):
    a = tiny().fit(groups, seed=3, **FAST)
    b = tiny().fit(groups, seed=3, **FAST)
    c = tiny().fit(groups, seed=4, **FAST)
    assert a.history_ == b.history_
    assert all(torch.equal(x, y) for x, y in zip(params(a), params(b)))
    assert not all(torch.equal(x, y) for x, y in zip(params(a), params(c)))


def test_save_load_round_trip(tmp_path, groups):
    m = tiny(lam=0.5, likelihood={"c": "normal"}).fit(groups, **FAST)
    path = tmp_path / "model.pt"
    m.save(path)
    back = FactVAE.load(path)
    assert back.config == m.config and back.history_ == m.history_
    assert all(torch.equal(x, y) for x, y in zip(params(m), params(back)))
    np.testing.assert_array_equal(m.latent(groups)[0], back.latent(groups)[0])
    np.testing.assert_array_equal(
        m.reconstruct(groups, num_samples=3)["b"], back.reconstruct(groups, num_samples=3)["b"]
    )
    assert m.sparsity().equals(back.sparsity())
    # the loaded model keeps training
    back.fit(groups, epochs=1, progress=False)
    assert len(back.history_) == 4


def test_load_refuses_non_factvae_files(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"meta": "{}"}, bad)
    with pytest.raises(ValueError, match="not a FactVAE file"):
        FactVAE.load(bad)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"meta": Evil()}, evil)
    with pytest.raises(ValueError, match="not a loadable FactVAE file"):
        FactVAE.load(evil)


def test_load_refuses_a_file_damaged_after_it_was_written(tmp_path, groups):
    path = tmp_path / "m.factvae"
    tiny(lam=0.5).fit(groups, **FAST).save(path)
    with zipfile.ZipFile(path) as archive:  # the bytes of the largest tensor
        part = max((i for i in archive.infolist() if "/data/" in i.filename), key=_size)
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack(
        "<HH", raw[part.header_offset + 26 : part.header_offset + 30]
    )
    start = part.header_offset + 30 + name_len + extra_len
    raw[start : start + 16] = bytes(b ^ 0xFF for b in raw[start : start + 16])
    path.write_bytes(raw)  # torch.load reads it: the values are merely wrong
    assert torch.load(path, weights_only=True)["meta"]
    with pytest.raises(ValueError, match=f"damaged: its part '{part.filename}' fails its checksum"):
        FactVAE.load(path)


def _size(info: zipfile.ZipInfo) -> int:
    return info.file_size


def test_bad_arguments_raise_clear_errors(groups):
    with pytest.raises(ValueError, match="lam must be"):
        FactVAE(lam=-1.0)
    with pytest.raises(ValueError, match="unknown likelihood 'gamma'"):
        FactVAE(likelihood="gamma")
    with pytest.raises(ValueError, match="unknown likelihood 'gauss'"):
        tiny(likelihood=["normal", "gauss", "normal"]).fit(groups, **FAST)
    with pytest.raises(ValueError, match="unknown groups"):
        tiny(likelihood={"zz": "normal"}).fit(groups, **FAST)
    with pytest.raises(ValueError, match="keep_prob"):
        FactVAE(keep_prob=0.0)
    with pytest.raises(ValueError, match="latent_dim"):
        FactVAE(latent_dim=0, lam=1.0)
    with pytest.raises(ValueError, match="epochs"):
        tiny().fit(groups, epochs=0)
    with pytest.raises(ValueError, match="not fitted"):
        tiny().sparsity()
    m = tiny().fit(groups, **FAST)
    with pytest.raises(ValueError, match="unknown group 'zz'"):
        m.reconstruct(groups, given=["zz"])
    other = small_groups()
    other["c"] = other["c"][:, :1]
    with pytest.raises(ValueError, match="group .c. has 1 columns, the model was fitted on 2"):
        m.latent(other)
    with pytest.raises(ValueError, match="bernoulli"):
        tiny(likelihood={"a": "bernoulli"}).fit(groups, **FAST)


def test_bernoulli_group_trains(groups):
    groups["c"] = (np.nan_to_num(groups["c"]) > 0).astype(float)
    groups["c"][0] = np.nan
    m = tiny(likelihood={"c": "bernoulli"}).fit(groups, **FAST)
    rec = m.reconstruct(groups, targets=["c"], num_samples=3)["c"]
    assert ((rec >= 0) & (rec <= 1)).all()
    assert set(np.unique(m.sample(20)["c"])) <= {0.0, 1.0}


def test_bars_sparsity_fast():
    """Quadrant bars: exact zeros separate top from bottom; lam = 0 keeps every link."""
    data = bars_data(3000, seed=1)
    m = FactVAE(latent_dim=12, lam=0.2).fit(
        data, epochs=20, seed=1, progress=False, batch_size=64, patience=None, relax_epochs=0
    )
    s = bars_structure(m.sparsity().values)
    assert s["cross"] == 0, m.sparsity()
    assert s["every_quadrant"]
    assert s["zero_columns"] > 0
    dense = FactVAE(latent_dim=12, lam=0.0).fit(data.subset(range(500)), epochs=2, progress=False)
    assert (dense.sparsity().values > 0).all()


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_non_finite_loss_stops_training_with_a_message(groups):
    with pytest.raises(FloatingPointError, match="became non-finite at step .* term: "):
        tiny().fit(groups, epochs=3, batch_size=16, lr=1e10, progress=False)


def test_jmvae_plus_mixture_trains_predicts_and_round_trips(tmp_path):
    data = small_groups(n=60)
    vae = FactVAE(latent_dim=2, lam=0.0, inference="mixture").fit(data, epochs=3, progress=False)
    assert np.isfinite(vae.history_).all()
    loc, scale = vae.latent(data, given=["a"])
    assert loc.shape == scale.shape == (60, 2) and (scale > 0).all()
    # the mixture's variance grows when groups disagree, unlike the product's
    poe = FactVAE(latent_dim=2, lam=0.0).fit(data, epochs=3, progress=False)
    assert not np.allclose(vae.latent(data)[1], poe.latent(data)[1])
    path = tmp_path / "m.pt"
    vae.save(path)
    again = FactVAE.load(path)
    assert again.config.inference == "mixture"
    np.testing.assert_allclose(again.latent(data)[0], vae.latent(data)[0], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown inference"):
        FactVAE(inference="sum")


def test_group_names_are_any_nonempty_strings(tmp_path, groups):
    names = {"S1 Trimer": groups["a"], "left-arm": groups["b"], "IgG.1 ü": groups["c"]}
    vae = FactVAE(latent_dim=2, likelihood={"IgG.1 ü": "normal"}).fit(
        names, epochs=1, progress=False
    )
    assert list(vae.sparsity().index) == list(names)
    vae.save(tmp_path / "m.pt")
    again = FactVAE.load(tmp_path / "m.pt")
    assert set(again.impute(names)) == set(names)
    from pyro import poutine

    data = vae.prepare(names)
    trace = poutine.trace(vae.model_).get_trace(data.values, data.observed)
    assert {"x_S1 Trimer", "Phi_left-arm", "gamma_sq_IgG.1 ü"} <= set(trace.nodes)


def test_a_group_never_observed_is_refused_by_name(groups):
    groups = dict(groups)
    groups["c"] = np.full_like(groups["c"], np.nan)
    with pytest.raises(ValueError, match=r"groups \['c'\] are never observed"):
        FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, progress=False)


def test_data_with_no_rows_are_refused_by_fit_and_every_query(groups):
    vae = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, progress=False)
    empty = GroupedData(groups).subset(np.zeros(len(groups["a"]), bool))
    assert repr(empty).startswith("GroupedData(0 rows")
    calls = (vae.impute, vae.latent, vae.predict_interval, FactVAE(lam=0.1).fit)
    for call in calls:
        with pytest.raises(ValueError, match="the data have no rows"):
            call(empty)


def test_rows_without_any_group_get_prior_predictive_means(groups):
    vae = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, progress=False)
    query = {k: v[:6].copy() for k, v in groups.items()}
    for v in query.values():
        v[5] = np.nan  # row 5 observes nothing
    filled = vae.impute(query)  # the mean of NUM_SAMPLES prior draws there
    prior = vae.sample(4000, mean=True, seed=1)
    for name in groups:
        assert np.isfinite(filled[name]).all()
        np.testing.assert_allclose(filled[name][5], prior[name].mean(0), atol=0.15)
    with pytest.raises(ValueError, match="drop_empty_rows=True"):
        FactVAE(latent_dim=2, lam=1.0).fit(query, epochs=1, progress=False)


def test_fit_sample_and_impute_leave_the_global_rng_alone(groups):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    vae = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, progress=False)
    vae.sample(3, seed=4)
    vae.impute(groups, num_samples=2)
    assert torch.equal(torch.rand(3), expected)


def test_history_is_the_data_loss_with_the_priors_apart(groups):
    vae = FactVAE(latent_dim=2, lam=1.0, theta_prior_weight=1.0)
    vae.fit(groups, epochs=2, progress=False, patience=None)
    model = vae.model_
    tau_prior = -float(model.theta_log_prior())  # tau = 1: the theta prior per row
    assert len(vae.prior_history_) == len(vae.history_) == 2
    assert vae.prior_history_[-1] == pytest.approx(tau_prior, rel=0.05)
    assert abs(vae.history_[-1]) < 0.2 * vae.prior_history_[-1]  # the data term, not the constant


def test_a_group_pruned_entirely_is_warned_about(groups):
    with pytest.warns(UserWarning, match="every link of group"):
        FactVAE(latent_dim=2, lam=500.0).fit(groups, epochs=3, progress=False)


def test_dataframe_round_trip_keeps_index_columns_and_mapping(tmp_path, groups):
    import pandas as pd

    frame = pd.DataFrame(np.hstack(list(groups.values())), columns=[f"c{j}" for j in range(8)])
    frame.index = [f"row{i}" for i in range(len(frame))]
    frame["note"] = "kept"
    mapping = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"], "c": ["c6", "c7"]}
    vae = FactVAE(latent_dim=2, lam=1.0).fit(frame, groups=mapping, epochs=1, progress=False)
    vae.save(tmp_path / "m.pt")
    filled = FactVAE.load(tmp_path / "m.pt").impute(frame)
    assert filled.index.equals(frame.index) and list(filled.columns) == list(frame.columns)
    assert not filled[[c for cols in mapping.values() for c in cols]].isna().any().any()
    observed = frame.notna()
    assert (filled[observed] == frame[observed]).sum().sum() == observed.sum().sum()
    with pytest.raises(ValueError, match="not the string 'mean'"):
        vae.reconstruct(frame, targets="mean")
    for given in ("a", "b"):  # a one-letter group name too: never read letter by letter
        with pytest.raises(
            ValueError, match=rf"given must be .* \(for that group: given=\['{given}'\]\)"
        ):
            vae.reconstruct(frame, given=given)


def test_impute_returns_observed_values_unchanged_in_their_dtype(groups):
    vae = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, progress=False)
    filled = vae.impute(groups)
    for name, x in groups.items():
        obs = ~np.isnan(x).all(1)
        assert filled[name].dtype == np.float64
        assert np.array_equal(filled[name][obs], x[obs])  # bit for bit, not via float32
    as32 = {k: v.astype(np.float32) for k, v in groups.items()}
    assert vae.impute(as32)["a"].dtype == np.float32
    # through a GroupedData (and its subsets and narrowed masks) too
    data = GroupedData(groups)
    for given, rows in ((data, slice(None)), (data.subset(np.arange(10, 30)), slice(10, 30))):
        out = vae.impute(given)
        for name, x in groups.items():
            obs = ~np.isnan(x[rows]).all(1)
            assert out[name].dtype == np.float64
            assert np.array_equal(out[name][obs], x[rows][obs])
    narrowed = data.with_mask(data.observed & ~torch.eye(len(data), 3, dtype=torch.bool))
    assert np.array_equal(narrowed.to_numpy()["b"][5:], groups["b"][5:])


def test_numpy_scalars_are_accepted_as_settings(groups):
    vae = FactVAE(latent_dim=np.int64(2), lam=np.float32(0.5))
    assert vae.lam == 0.5 and isinstance(vae.lam, float)
    with pytest.raises(ValueError, match="lam must be a finite number >= 0"):
        vae.config.lam = -1


def test_early_stopping_restores_the_best_epoch_and_is_reproducible(groups, monkeypatch):
    import pyro_factvae.infer.run as run_module

    scores = iter([5.0, 4.0, 3.0, 3.5, 3.6, 3.7, 9.0, 9.0])  # best after epoch 3
    seen, weights = [], {}

    def fake_validation(model, guide, data, posterior):
        seen.append(len(data))
        weights[len(seen)] = {k: v.clone() for k, v in guide.state_dict().items()}
        return next(scores)

    monkeypatch.setattr(run_module, "validation_loss", fake_validation)
    # lam 0: the score is the validation loss alone (a prox phase adds its group-lasso term)
    vae = FactVAE(latent_dim=2, lam=0.0).fit(
        groups,
        epochs=50,
        patience=3,
        warmup_epochs=0,
        batch_size=4,  # 9 minibatches an epoch: scored every epoch
        progress=False,
        relax_epochs=0,
    )
    assert len(vae.history_) == 6 and set(seen) == {4}  # 3 epochs after the best, 10% held out
    best = weights[3]  # the weights the validation loss saw after epoch 3
    assert all(torch.equal(best[k], v) for k, v in vae.guide_.state_dict().items())
    assert not all(torch.equal(weights[6][k], v) for k, v in vae.guide_.state_dict().items())
    monkeypatch.undo()
    a = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=30, patience=2, progress=False)
    b = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=30, patience=2, progress=False)
    assert a.history_ == b.history_ and a.sparsity().equals(b.sparsity())


def test_early_stopping_scores_one_step_epochs_every_few_epochs_and_the_last(groups, monkeypatch):
    import pyro_factvae.infer.run as run_module
    from pyro_factvae.infer.plan import VALIDATE_STEPS

    scored = []

    def fake_validation(model, guide, data, posterior):
        scored.append(len(vae_history()))
        return 10.0 - len(scored)  # always better: no stop

    monkeypatch.setattr(run_module, "validation_loss", fake_validation)
    vae = FactVAE(latent_dim=2, lam=0.0)
    vae_history = lambda: vae.fit_state.history  # noqa: E731
    fit = dict(epochs=30, warmup_epochs=0, patience=100, progress=False)
    vae.fit(groups, batch_size=64, **fit)  # 36 rows: one step an epoch
    assert scored == [*range(VALIDATE_STEPS, 30, VALIDATE_STEPS), 30]
    scored.clear()
    vae = FactVAE(latent_dim=2, lam=0.0)
    vae.fit(groups, batch_size=16, **fit)  # three steps an epoch
    assert scored == [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]


def test_save_and_checkpoint_create_missing_folders_before_training(tmp_path, groups):
    ckpt = tmp_path / "ckdir" / "deeper" / "run.ckpt"
    vae = FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1, checkpoint=ckpt, progress=False)
    assert ckpt.exists()
    vae.save(tmp_path / "nodir" / "sub" / "m.pt")
    assert FactVAE.load(tmp_path / "nodir" / "sub" / "m.pt").sparsity().equals(vae.sparsity())
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create the folder of checkpoint path"):
        FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=1000, checkpoint=blocker / "c.ckpt")


def test_non_finite_errors_name_terms_not_internal_parameter_names(groups):
    with pytest.raises(FloatingPointError) as info:
        tiny().fit(groups, epochs=3, batch_size=16, lr=1e10, progress=False)
    message = str(info.value)
    assert "$$$" not in message and "Phi" not in message and "term: " in message


def test_the_lambda_path_survives_save_and_load(tmp_path, groups):
    vae = FactVAE(latent_dim=2).fit(groups, epochs=2, progress=False)
    assert vae.lam_path_ is not None
    vae.save(tmp_path / "m.factvae")
    again = FactVAE.load(tmp_path / "m.factvae")
    assert again.lam_path_ == vae.lam_path_ and again.lam_ == vae.lam_
    assert vae.lam_path_["chosen_lam"] == vae.lam_  # and it plots, the choice marked


def test_a_default_fits_lam_path_plots_with_its_choice_marked(groups):
    from pyro_factvae.plotting import plot_lambda_path

    vae = FactVAE(latent_dim=2).fit(groups, epochs=2, progress=False)
    fig = plot_lambda_path(vae.lam_path_)
    ax = fig.axes[0]
    assert ax.get_title() == f"lambda path: chosen lam = {vae.lam_:g}"
    assert ax.get_ylabel() == "held-out imputation MSE"
    np.testing.assert_allclose(ax.lines[0].get_ydata(), vae.lam_path_["held_out_mse"])
    with pytest.raises(ValueError, match="scored no lam"):
        plot_lambda_path({"lams": [0.0], "criterion": "none: nothing can be held out"})
    with pytest.raises(ValueError, match="has no lams: give a fit's lam_path_ as it is"):
        plot_lambda_path({"held_out_mse": [1.0], "chosen_lam": 0.1, "active_links": [3]})
    fixed = FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=1, progress=False)
    with pytest.raises(ValueError, match="a model fitted at a number lam has none"):
        plot_lambda_path(fixed.lam_path_)  # None
    with pytest.raises(ValueError, match=r"plot_lambda_path\(vae.lam_path_\), not the model"):
        plot_lambda_path(vae)


def test_a_constant_column_warns_and_is_imputed_as_its_value(tmp_path):
    from pyro_factvae.io import read_payload, write_payload

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((60, 3)), rng.standard_normal((60, 2))
    a[:, 1] = 2.5
    a[:5], a[7, 1] = np.nan, np.nan
    with pytest.warns(UserWarning, match=r"group 'a': columns \[1\] are constant"):
        vae = FactVAE(latent_dim=2, lam=0.1).fit({"a": a, "b": b}, epochs=2, progress=False)
    holes = np.isnan(a[:, 1])
    means = vae.impute({"a": a, "b": b})["a"][:, 1]
    np.testing.assert_allclose(means[holes], 2.5, rtol=1e-5)
    for draw in vae.impute({"a": a, "b": b}, num_draws=3):
        np.testing.assert_allclose(draw["a"][holes, 1], 2.5, atol=5e-3)  # the noise floor
    assert np.ptp(vae.impute({"a": a, "b": b})["a"][:5, 0]) > 1e-3  # the others vary
    # a model file written before constants were kept loads, its features all varying
    path = tmp_path / "m.factvae"
    vae.save(path)
    meta, tensors = read_payload(path)
    tensors["model"] = {k: v for k, v in tensors["model"].items() if not k.endswith("varies")}
    write_payload(meta, tensors, path)
    old = FactVAE.load(path)
    assert not any(c.any() for c in old.model_.constant())


def test_progress_to_a_log_file_is_a_plain_line_per_phase(groups, capsys):
    """stderr that is not a terminal gets no redrawn bar, just one line per phase."""
    FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=6, relax_epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("factVAE ") for line in lines)
    assert "epoch 4/4" in lines[0] and "loss" in lines[0]


def test_few_rows_warn_once_and_cap_the_default_schedule():
    from pyro_factvae.fit_config import MAX_DEFAULT_EPOCHS, FewRowsWarning, FitConfig

    assert FitConfig().resolved(False, True, 15).epochs == MAX_DEFAULT_EPOCHS
    assert FitConfig().resolved(False, True, 100_000).epochs == 20
    data = small_groups(n=15, seed=2, missing=False)
    with pytest.warns(FewRowsWarning) as seen:
        FactVAE(latent_dim=2).fit(data, epochs=8, progress=False)
    assert len([w for w in seen if w.category is FewRowsWarning]) == 1
    assert "only 15 rows: lam='auto' chooses lam on 3 held-out rows" in str(seen[0].message)
    with pytest.warns(FewRowsWarning, match="only 15 rows: the defaults are sized"):
        FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=2, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewRowsWarning)
        FactVAE(latent_dim=2, lam=0.1).fit(small_groups(n=60), epochs=2, progress=False)


@pytest.mark.parametrize("importance", [True, False])
def test_predictive_means_are_the_same_whatever_the_chunk_of_draws(groups, importance):
    from pyro_factvae.module.predict import predictive_means

    vae = FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=5, progress=False)
    data = GroupedData(groups)
    given = data.observed.clone()
    given[:, 0] = False  # the first group from the others

    def means(max_elements: int) -> list[torch.Tensor]:
        return predictive_means(
            vae.model_, vae.guide_, data.values, given, [0, 1], 60, 0,
            importance=importance, max_elements=max_elements,
        )  # fmt: skip

    one_by_one, seven, all_at_once = means(1), means(7 * 60 * vae.model_.row_floats), means(2**30)
    for a, b, c in zip(one_by_one, seven, all_at_once):
        torch.testing.assert_close(a, c, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(b, c, rtol=1e-4, atol=1e-5)
    spread = float(torch.stack([m[:, 0] for m in all_at_once]).std())
    assert spread > 0.01  # rows differ: the means are not all the prior's


def test_a_frame_with_integer_column_labels_is_fitted_by_label(tmp_path):
    pd = pytest.importorskip("pandas")
    x = small_groups(n=40)
    frame = pd.DataFrame(np.hstack([x["a"], x["b"], x["c"]]))  # columns 0..7
    groups = {"a": [0, 1, 2], "b": [3, 4, 5], "c": [6, 7]}
    vae = tiny(lam=0.1).fit(frame, groups=groups, **FAST)
    assert vae.columns_ == groups
    filled = vae.impute(frame)
    assert list(filled.columns) == list(range(8)) and not filled.isna().any().any()
    vae.save(tmp_path / "m.factvae")
    assert FactVAE.load(tmp_path / "m.factvae").columns_ == groups  # as the frame has them
    text = frame.rename(columns=str)  # a CSV's header: the same labels as text
    assert list(vae.impute(text).columns) == list("01234567")
    assert tiny(lam=0.1).fit(text, groups=groups, **FAST).impute(text).notna().all().all()
    with pytest.raises(ValueError, match="groups= maps a DataFrame's columns"):
        tiny(lam=0.1).fit(x, groups={"a": [0]}, **FAST)
    path = tmp_path / "run.ckpt"
    tiny(lam=0.1).fit(x, checkpoint=path, **FAST)
    resumed = FactVAE()
    with pytest.raises(ValueError, match="groups= maps a DataFrame's columns"):  # resumed too
        resumed.fit(x, groups=groups, resume=path, progress=False)
    assert resumed.columns_ is None


@pytest.mark.parametrize("data", [None, 3, "data.csv", {1, 2}])
def test_data_that_are_no_groups_are_refused_with_what_is_accepted(data):
    with pytest.raises(ValueError, match=r"as the data: give the groups as \{group: array\}"):
        tiny().fit(data, epochs=1, progress=False)


def test_fit_arguments_of_the_wrong_kind_are_refused(groups):
    with pytest.raises(ValueError, match="seed must be an integer, got 1.5"):
        tiny().fit(groups, epochs=1, seed=1.5, progress=False)
    vae = tiny(lam=0.1).fit(groups, epochs=1, progress=False)
    for bad in (1.5, True, 2**64):  # as every query says it
        with pytest.raises(ValueError, match="seed must be an integer"):
            vae.sample(2, seed=bad)
        with pytest.raises(ValueError, match="seed must be an integer"):
            vae.impute(groups, seed=bad, num_samples=5, refine_steps=0)
    with pytest.raises(ValueError, match=r"too few for a central 99.9% interval"):
        vae.predict_interval(groups, level=0.999, num_draws=40)
    # two draws' range covers 1/3 of new values: enough for 10%, and said so for 50%
    lower, upper = vae.predict_interval(groups, level=0.1, num_draws=2, refine_steps=0)
    assert all(np.all(upper[g] >= lower[g]) for g in lower)
    with pytest.raises(ValueError, match=r"covers only 1/3 of new values; give num_draws >= 3"):
        vae.predict_interval(groups, level=0.5, num_draws=2)
    with pytest.raises(ValueError, match=r"draws covers only 2/3 of new values"):  # 4/6
        vae.predict_interval(groups, level=0.8, num_draws=5)
    with pytest.raises(ValueError, match=r"one draw bounds an interval of zero width"):
        vae.predict_interval(groups, level=0.1, num_draws=1)
    with pytest.raises(ValueError, match="importance=False applies to means; draws are always"):
        vae.impute(groups, num_draws=2, importance=False)
    arrays = list(groups.values()) if isinstance(groups, dict) else list(groups)
    with pytest.raises(ValueError, match=r"got 1 array; the model was fitted on \d groups"):
        vae.impute(arrays[:1])
    frame = pd.DataFrame(np.hstack(arrays))
    with pytest.raises(ValueError, match=r"or to a fitted model, set_columns\(\{group"):
        vae.impute(frame)
    with pytest.raises(
        ValueError, match=r"callbacks must be a list of callables.*callbacks=\[fn\]"
    ):
        tiny().fit(groups, epochs=1, callbacks=print, progress=False)
    with pytest.raises(ValueError, match="encoder_hidden must be a list of widths"):
        FactVAE(encoder_hidden=None)


def test_callbacks_may_be_none_or_a_generator(groups):
    seen = []
    tiny().fit(groups, epochs=2, callbacks=None, progress=False)
    tiny().fit(groups, epochs=2, callbacks=(fn for fn in [seen.append]), progress=False)
    assert [event.epoch for event in seen] == [1, 2]


def test_a_setting_assigned_on_the_estimator_is_refused_not_ignored():
    vae = FactVAE(lam=0.1)
    for name, value in (("latent_dim", 3), ("keep_prob", 0.5), ("lam", 0.3)):
        with pytest.raises(AttributeError, match=f"{name} is a setting of the model"):
            setattr(vae, name, value)
    vae.config.latent_dim = 3  # the config owns the settings, before a fit
    assert vae.config.latent_dim == 3 and "latent_dim" not in vars(vae)


def test_a_misspelt_setting_on_the_config_is_refused_with_the_closest_name():
    vae = FactVAE(lam=0.1)
    with pytest.raises(AttributeError, match="no setting 'latnet_dim'; did you mean 'latent_dim'"):
        vae.config.latnet_dim = 2
    assert not hasattr(vae.config, "latnet_dim")


def test_a_group_observed_only_in_the_rows_held_out_for_stopping_is_refused():
    from pyro_factvae.infer.plan import stopping_split

    data = GroupedData(small_groups(n=100))
    fit = FitConfig(patience=5).resolved(False, True, len(data))
    _, valid = stopping_split(data, fit)
    groups = small_groups(n=100)
    groups["c"][:] = np.nan
    groups["c"][valid.row_index[:2]] = 1.0  # c seen in two rows, both held out
    vae = tiny(lam=0.1)
    with pytest.raises(ValueError, match=r"groups \['c'\] are observed only in the rows held"):
        vae.fit(groups, epochs=2, patience=5, progress=False)
    assert vae.model_ is None
    assert tiny(lam=0.1).fit(groups, epochs=2, patience=None, progress=False).model_ is not None
