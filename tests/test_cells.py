"""Single missing cells inside observed groups: data, likelihoods, encoder, queries, inputs."""

import numpy as np
import pandas as pd
import pyro
import pytest
import torch
from torch.utils.data import Dataset

from pyro_factvae import FactVAE, GroupedData
from pyro_factvae.infer.objective import CollapsedELBO
from pyro_factvae.metrics import conditional_log_likelihood, evaluate, imputation_error
from pyro_factvae.module.likelihoods import BernoulliLikelihood, NormalLikelihood


def holed(n=120, seed=0, frac=0.15):
    """Three normal groups driven by two latents, with scattered missing cells and a few
    missing groups."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    x = z @ rng.standard_normal((2, 9)) + 0.3 * rng.standard_normal((n, 9))
    x[rng.random(x.shape) < frac] = np.nan
    x[: n // 10, 6:] = np.nan  # whole group missing in some rows
    return {"a": x[:, :3].copy(), "b": x[:, 3:6].copy(), "c": x[:, 6:].copy()}


@pytest.mark.parametrize("cls", [NormalLikelihood, BernoulliLikelihood])
def test_every_cellwise_likelihood_scores_only_observed_cells(cls):
    torch.manual_seed(0)
    lik = cls(2, 4)
    out = torch.randn(5, 2, 4)
    x = torch.randint(0, 2, (5, 2, 4)).float()
    cells = torch.rand(5, 2, 4) < 0.6
    fast = lik.log_prob(out, x, cells)
    per_cell = torch.stack(
        [fn.base_dist.base_dist.log_prob(x[:, i]) for i, fn in enumerate(lik.dists(out, cells))],
        1,
    )
    torch.testing.assert_close(fast, per_cell.where(cells, 0.0).sum(-1))
    # the distributions the Pyro sites use give the same numbers
    slow = torch.stack([fn.log_prob(x[:, i]) for i, fn in enumerate(lik.dists(out, cells))], 1)
    torch.testing.assert_close(fast, slow)
    # no cell observed: nothing scored
    none = torch.zeros_like(cells)
    assert torch.equal(lik.log_prob(out, x, none), torch.zeros(5, 2))


def test_a_partial_one_hot_label_is_refused_with_a_message():
    rng = np.random.default_rng(0)
    groups = {"x": rng.standard_normal((30, 3)), "lab": np.eye(3)[rng.integers(0, 3, 30)]}
    groups["lab"][4, 1] = np.nan
    with pytest.raises(ValueError, match=r"group 'lab'.*one cell.*rows \[4\]"):
        FactVAE(latent_dim=2, likelihood={"lab": "categorical"}).fit(
            groups, epochs=1, progress=False
        )


def test_standardization_uses_the_observed_cells_only():
    groups = holed()
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=1, progress=False)
    x = np.hstack([groups[k] for k in "abc"])
    shift = torch.cat([lik.shift.reshape(-1) for lik in vae.model_.likelihoods]).numpy()
    unit = torch.cat([lik.unit.reshape(-1) for lik in vae.model_.likelihoods]).numpy()
    np.testing.assert_allclose(shift, np.nanmean(x, 0), rtol=1e-5)
    np.testing.assert_allclose(unit, np.nanstd(x, 0, ddof=1), rtol=1e-5)


def _filled(groups, value):
    return [np.where(np.isnan(g), value, g) for g in groups.values()]


def test_values_under_missing_cells_change_no_output_and_no_gradient():
    groups = holed()
    cells = ~np.isnan(np.hstack(list(groups.values())))
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=2, progress=False)
    model, guide = vae.model_, vae.guide_
    results = []
    for value in (0.0, 1e6, -3.0):
        data = GroupedData.from_masked(_filled(groups, value), cells, names=list(groups))
        objective = CollapsedELBO(model, guide, data, 1 / len(data))
        blocks, mask, cell_blocks = objective.batch(torch.arange(len(data)))
        torch.manual_seed(0)
        loss = objective(blocks, mask, cells=cell_blocks).loss
        grads = torch.autograd.grad(loss, list(guide.parameters()) + list(model.parameters()))
        # the Pyro programs, called with raw garbage under the missing cells
        xs = [torch.as_tensor(v, dtype=torch.float32) for v in _filled(groups, value)]
        trace = pyro.poutine.trace(model).get_trace(xs, data.observed, cells=torch.as_tensor(cells))
        site = trace.nodes["x_a"]
        site_lp = site["fn"].log_prob(site["value"])
        loc, scale = guide.posterior(xs, data.observed, cells=torch.as_tensor(cells))
        imputed = vae.impute(data)
        results.append((loss, grads, site_lp, loc, scale, imputed))
    first = results[0]
    for other in results[1:]:
        assert torch.equal(first[0], other[0])
        assert all(torch.equal(a, b) for a, b in zip(first[1], other[1]))
        assert torch.isfinite(other[2]).all()
        assert torch.equal(first[3], other[3]) and torch.equal(first[4], other[4])
        for name in groups:
            np.testing.assert_array_equal(first[5][name], other[5][name])


def test_the_encoder_knows_which_cells_it_did_not_see():
    groups = holed()
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=5, progress=False)
    data = GroupedData(groups)
    cells = data.cell_mask().clone()
    hidden = cells.clone()
    hidden[:, 0] = False  # one more cell of group a missing in every row
    _, guide = vae.fitted_modules()
    xs = [v.clone() for v in data.values]
    with torch.no_grad():
        mu, prec = guide.expert_params(xs, data.observed, list(guide.Phi), cells)
        mu2, prec2 = guide.expert_params(xs, data.observed, list(guide.Phi), hidden)
        # reading the zero-filled cell as a value would leave the expert unchanged
        xs[0][:, 0] = 0.0
        mu3, prec3 = guide.expert_params(xs, data.observed, list(guide.Phi), cells)
    assert not torch.equal(prec2[:, 0], prec3[:, 0]) and not torch.equal(mu2[:, 0], mu3[:, 0])
    # the other groups' experts do not depend on group a's cells
    assert torch.equal(prec[:, 1:], prec2[:, 1:])


def test_impute_fills_every_missing_cell_and_returns_observed_ones_bit_for_bit():
    groups = holed()
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=3, progress=False)
    filled = vae.impute(groups)
    for name, orig in groups.items():
        assert not np.isnan(filled[name]).any()
        seen = ~np.isnan(orig)
        assert np.array_equal(filled[name][seen], orig[seen])
    # a DataFrame with scattered holes, and a nullable integer column
    frame = pd.DataFrame(np.hstack(list(groups.values())), columns=[f"c{j}" for j in range(9)])
    frame["c8"] = pd.array(np.where(frame["c8"].isna(), None, frame["c8"].round()), dtype="Int64")
    spec = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"], "c": ["c6", "c7", "c8"]}
    vae2 = FactVAE(latent_dim=2, lam=0.0).fit(frame, groups=spec, epochs=2, progress=False)
    out = vae2.impute(frame)
    assert list(out.columns) == list(frame.columns) and out.index.equals(frame.index)
    assert not out.isna().any().any()
    seen = frame.notna().to_numpy()
    np.testing.assert_array_equal(
        out.to_numpy(dtype=float)[seen], frame.to_numpy(dtype=float, na_value=np.nan)[seen]
    )


def test_metrics_score_observed_cells_and_accept_partial_groups():
    groups = holed()
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=3, progress=False)
    data = GroupedData(groups)
    sse, _ = imputation_error(vae, data, ["a"])
    # by hand: the errors over the observed cells of a, given b and c
    rec = vae.reconstruct(data, given=["b", "c"], targets=["a"])["a"]
    seen = ~np.isnan(groups["a"])
    by_hand = np.where(seen, (rec - np.nan_to_num(groups["a"])) ** 2, 0).sum(1)
    valid = seen.any(1) & (data.observed[:, 1:].any(1).numpy())
    np.testing.assert_allclose(sse[valid], by_hand[valid], rtol=1e-4, atol=1e-6)
    cond = conditional_log_likelihood(vae, data, ["a"], num_samples=50)
    assert np.isfinite(cond[seen.any(1)]).all()
    scores = evaluate(vae, data, num_samples=20)
    assert all(np.isfinite(v) for v in scores.values())


def test_conditional_mean_of_a_missing_cell_matches_the_linear_gaussian_closed_form():
    rng = np.random.default_rng(1)
    n, d = 3000, 8
    load = rng.standard_normal((2, d))
    noise = 0.4
    x = rng.standard_normal((n, 2)) @ load + noise * rng.standard_normal((n, d))
    holes = rng.random(x.shape) < 0.2
    xm = np.where(holes, np.nan, x)
    groups = {"a": xm[:, :4], "b": xm[:, 4:]}
    vae = FactVAE(latent_dim=2, lam=0.0).fit(groups, epochs=60, patience=None, progress=False)
    test = rng.standard_normal((300, 2)) @ load + noise * rng.standard_normal((300, d))
    hide = rng.random(test.shape) < 0.25
    hide[hide.all(1)] = False
    tm = np.where(hide, np.nan, test)
    filled = vae.impute({"a": tm[:, :4], "b": tm[:, 4:]})
    pred = np.hstack([filled["a"], filled["b"]])
    cov = load.T @ load + noise**2 * np.eye(d)
    exact = np.empty_like(test)
    for i in range(len(test)):
        o, m = ~hide[i], hide[i]
        exact[i, m] = cov[np.ix_(m, o)] @ np.linalg.solve(cov[np.ix_(o, o)], test[i, o])
    gap = np.sqrt(np.mean((pred[hide] - exact[hide]) ** 2))
    spread = np.sqrt(np.mean(exact[hide] ** 2))  # the error of the mean imputation (0)
    best = np.sqrt(np.mean((exact[hide] - test[hide]) ** 2))
    # measured: gap 0.24 of 0.74, RMSE 1.08x the exact conditional's; reading the zeros under
    # missing cells as data, or ignoring the observed cells, gives a gap near the spread
    assert gap < 0.4 * spread, (gap, spread)
    assert np.sqrt(np.mean((pred[hide] - test[hide]) ** 2)) < 1.15 * best


class Rows(Dataset):
    def __init__(self, groups):
        self.groups = groups

    def __len__(self):
        return len(next(iter(self.groups.values())))

    def __getitem__(self, i):
        return {k: v[i] for k, v in self.groups.items()}


def test_scattered_nan_round_trips_through_memmap_and_dataset_streaming(tmp_path):
    groups = holed()
    data = GroupedData(groups)
    assert data.cells is not None
    streamed = GroupedData.from_dataset(Rows(groups), batch_size=32)
    assert torch.equal(streamed.matrix, data.matrix)
    assert torch.equal(streamed.cells, data.cells) and torch.equal(streamed.observed, data.observed)
    mm = np.memmap(tmp_path / "x.f32", dtype=np.float32, mode="w+", shape=data.matrix.shape)
    mm[:] = data.matrix.numpy()
    wrapped = GroupedData.from_matrix(mm, data.dims, data.cells.numpy(), names=data.names)
    assert torch.equal(wrapped.observed, data.observed) and torch.equal(wrapped.cells, data.cells)
    vae = FactVAE(latent_dim=2, lam=0.0).fit(data, epochs=2, progress=False)
    again = FactVAE(latent_dim=2, lam=0.0).fit(wrapped, epochs=2, progress=False)
    # the same fills; observed values as given (float64 here, float32 in the memmap)
    filled = vae.impute(data)["a"]
    np.testing.assert_array_equal(filled.astype(np.float32), again.impute(wrapped)["a"])
    # from_matrix checks the values under missing cells
    bad = data.matrix.numpy().copy()
    bad[~data.cells.numpy()] = 1.0
    with pytest.raises(ValueError, match="missing cell is 1, not 0") as refused:
        GroupedData.from_matrix(bad, data.dims, data.cells.numpy())
    assert "NaN" not in str(refused.value)  # a 1 is not a NaN to fill
    bad[~data.cells.numpy()] = np.nan  # NaN where missing, as a dict of groups has it
    with pytest.raises(ValueError, match=r"missing cell is nan, not 0.*fill NaN with 0"):
        GroupedData.from_matrix(bad, data.dims, data.cells.numpy())


def test_with_mask_hides_cells_and_refuses_to_reveal_them():
    data = GroupedData(holed())
    cells = data.cell_mask().clone()
    cells[:, 3] = False
    held = data.with_mask(cells)
    assert not bool(held.group_cells(1)[:, 0].any())
    assert torch.equal(held.values[1][:, 0], torch.zeros(len(data)))
    with pytest.raises(ValueError, match="cell that is missing"):
        held.with_mask(data.cell_mask())


def test_bad_cell_inputs_get_one_clear_message():
    groups = holed()
    groups["b"][:, 1] = np.nan
    with pytest.raises(ValueError, match=r"group 'b': columns \(by position.*\[1\] are never"):
        FactVAE(latent_dim=2).fit(groups, epochs=1, progress=False)
    frame = pd.DataFrame(np.hstack(list(holed().values())), columns=list("pqrstuvwx"))
    frame["t"] = np.nan
    spec = {"a": ["p", "q", "r"], "b": ["s", "t", "u"], "c": ["v", "w", "x"]}
    with pytest.raises(ValueError, match=r"group 'b': columns \['t'\] are never observed"):
        FactVAE(latent_dim=2).fit(frame, groups=spec, epochs=1, progress=False)
    groups = holed()
    groups["a"][5, 1] = np.inf
    with pytest.raises(ValueError, match=r"group 'a': rows \[5\] hold inf"):
        GroupedData(groups)
    groups = holed()
    for g in groups.values():
        g[7] = np.nan
    with pytest.raises(ValueError, match=r"rows have no observed group: \[7\]"):
        GroupedData(groups)
    assert len(GroupedData(groups, drop_empty_rows=True)) == 119


def test_the_cli_fits_and_fills_a_csv_with_empty_cells(tmp_path, capsys):
    import json

    from pyro_factvae.cli import main

    groups = holed()
    cols = {f"{g}{j}": x[:, j] for g, x in groups.items() for j in range(x.shape[1])}
    data = tmp_path / "holes.csv"
    pd.DataFrame(cols).to_csv(data, index=False)
    spec = "a=a0,a1,a2;b=b0,b1,b2;c=c0,c1,c2"
    model, filled = tmp_path / "m.factvae", tmp_path / "filled.csv"
    fit = ["fit", str(data), "--groups", spec, "-o", str(model), "--epochs", "2"]
    assert main([*fit, "--latent-dim", "2", "--lam", "0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["impute", str(model), str(data), "-o", str(filled), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    before, after = pd.read_csv(data), pd.read_csv(filled)
    assert sum(report["filled_cells"].values()) == int(before.isna().sum().sum())
    assert list(after.columns) == list(before.columns) and not after.isna().any().any()
    seen = before.notna().to_numpy()
    np.testing.assert_allclose(after.to_numpy()[seen], before.to_numpy()[seen], rtol=1e-12)
    assert main(["evaluate", str(model), str(data), "--samples", "8", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics.pop("units") == "standardized"
    assert all(np.isfinite(v) for v in metrics.values())


def test_importance_weighted_means_correct_the_encoder_towards_the_model_posterior():
    """With the encoder's proposal made deliberately poor, the importance-weighted mean of a
    missing group moves towards the exact conditional of a linear-Gaussian decoder."""
    from tests.test_evaluate import linear_gaussian

    vae, data, groups, exact = linear_gaussian("poe", n=60)
    with torch.no_grad():  # every expert's mean moved off: a proposal far from the posterior
        for enc in vae.guide_.encoders:
            enc.mean.bias += 0.5
    rows = data.observed[:, 1].nonzero().squeeze(-1)
    sub = data.subset(rows)
    given = sub.with_mask(torch.stack([sub.observed[:, 0], torch.zeros(len(sub), dtype=bool)], 1))
    L, mu, sd = exact["L"], exact["mu"], exact["sd"]
    cov = L.T @ L + torch.diag(sd**2)
    xa = torch.as_tensor(groups["a"])[rows].double()
    truth = (mu[3:] + (cov[3:, :3] @ torch.linalg.solve(cov[:3, :3], (xa - mu[:3]).T)).T).numpy()
    # the encoder's own posterior as the proposal (refine_steps=0: no per-row refinement)
    kw = {"targets": ["b"], "num_samples": 2000, "refine_steps": 0}
    plain = vae.reconstruct(given, importance=False, **kw)["b"]
    weighted = vae.reconstruct(given, **kw)["b"]
    err_plain = np.abs(plain - truth).mean()
    err_weighted = np.abs(weighted - truth).mean()
    assert err_weighted < 0.5 * err_plain, (err_weighted, err_plain)
    assert err_weighted < 0.05


@pytest.mark.parametrize(
    "config", [{"phi_inference": "variational"}, {"inference": "mixture"}, {"cell_keep_prob": 0.7}]
)
def test_every_inference_mode_trains_and_imputes_with_missing_cells(config):
    groups = holed()
    vae = FactVAE(latent_dim=2, lam=0.1, **config).fit(groups, epochs=4, progress=False)
    assert all(np.isfinite(vae.history_))
    filled = vae.impute(groups)
    assert not any(np.isnan(v).any() for v in filled.values())
    from pyro_factvae.analysis import to_inference_data

    idata = to_inference_data(vae, num_draws=20)
    assert idata.posterior["column_norm"].shape[-2:] == (3, 2)


def test_a_resume_refuses_data_whose_cells_changed(tmp_path):
    groups = holed()
    ckpt = tmp_path / "run.ckpt"
    FactVAE(latent_dim=2, lam=0.1).fit(groups, epochs=2, checkpoint=ckpt, progress=False)
    other = {k: v.copy() for k, v in groups.items()}
    other["a"][np.flatnonzero(~np.isnan(other["a"][:, 0]))[0], 0] = np.nan  # one more hole
    with pytest.raises(ValueError, match="data"):
        FactVAE().fit(other, resume=ckpt, progress=False)


def test_a_streamed_file_keeps_its_cell_mask_beside_it(tmp_path):
    groups = holed()
    complete = {k: np.nan_to_num(v) for k, v in groups.items()}
    path = tmp_path / "rows.f32"
    plain = GroupedData.from_dataset(Rows(complete), path=path, batch_size=32)
    assert plain.cells is None and not (tmp_path / "rows.f32.cells").exists()
    data = GroupedData.from_dataset(Rows(groups), path=path, batch_size=32)
    shape = data.matrix.shape
    cells = np.memmap(str(path) + ".cells", dtype=bool, mode="r", shape=tuple(shape))
    matrix = np.memmap(path, dtype=np.float32, mode="r", shape=tuple(shape))
    again = GroupedData.from_matrix(matrix, data.dims, cells, names=data.names)
    assert torch.equal(again.cells, GroupedData(groups).cells)
    # the first missing cell in a later batch: the rows before it get their group masks
    late = {k: v.copy() for k, v in groups.items()}
    for v in late.values():
        v[:64] = np.nan_to_num(v[:64])
    streamed = GroupedData.from_dataset(Rows(late), batch_size=32)
    assert torch.equal(streamed.cells, GroupedData(late).cells)


def test_a_likelihood_written_without_cell_masks_still_fits_whole_group_data():
    import pyro.distributions as dist

    from pyro_factvae.module.likelihoods import Likelihood
    from pyro_factvae.registry import LIKELIHOODS

    @LIKELIHOODS.register("unit-normal-without-cells")
    class UnitNormal(Likelihood):  # the signatures before cell masks
        def dists(self, out):
            return [dist.Normal(out[..., i, :], 1.0).to_event(1) for i in range(out.shape[-2])]

        def mean(self, out):
            return out

        def log_prob(self, out, x):
            return dist.Normal(out, 1.0).log_prob(x).sum(-1)

        @classmethod
        def check(cls, name, x, observed):
            pass

    groups = {k: np.nan_to_num(v) for k, v in holed().items()}
    groups["c"][:5] = np.nan  # whole groups missing only
    vae = FactVAE(latent_dim=2, lam=0.0, likelihood="unit-normal-without-cells")
    vae.fit(groups, epochs=2, progress=False)
    assert not np.isnan(vae.impute(groups)["c"]).any()
