import warnings

import numpy as np
import pytest

from pyro_factvae import FactVAE
from pyro_factvae.analysis import to_inference_data
from pyro_factvae.datasets import QUADRANTS, bars_data


@pytest.fixture(scope="module")
def fitted_bars():
    import pyro

    pyro.clear_param_store()
    return FactVAE(latent_dim=6, lam=1.0).fit(
        bars_data(600, seed=1), epochs=3, progress=False, seed=1
    )


def test_inference_data_dims_and_values(fitted_bars):
    idata = to_inference_data(fitted_bars, num_draws=50, num_chains=2)
    post = idata.posterior
    for var in ("column_norm", "gamma_sq", "active"):
        assert post[var].dims == ("chain", "draw", "group", "latent")
        assert post[var].shape == (2, 50, 4, 6)
    assert list(post["group"].values) == list(QUADRANTS)
    assert list(post["latent"].values) == [f"z{j}" for j in range(6)]
    norms = fitted_bars.sparsity().to_numpy()
    np.testing.assert_allclose(post["column_norm"].values[1, 7], norms)
    np.testing.assert_array_equal(post["active"].values[0, 0], (norms > 0).astype(int))
    gamma = post["gamma_sq"].values
    assert (gamma > 0).all() and gamma.std(axis=(0, 1)).min() > 0  # real draws, not a point


def test_arviz_summarises_and_plots_every_variable(fitted_bars):
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idata = to_inference_data(fitted_bars, num_draws=20, num_chains=2)
    assert np.issubdtype(idata.posterior["active"].dtype, np.integer)
    summary = az.summary(idata, kind="stats")
    assert len(summary) == 3 * 4 * 6  # three variables, G x K each
    axes = az.plot_forest(idata)  # every variable, the 0/1 `active` included
    assert len(axes) >= 1
    plt.close("all")


def test_arviz_summary_forest_and_posterior_run(fitted_bars):
    import arviz as az
    import matplotlib

    matplotlib.use("Agg")
    idata = to_inference_data(fitted_bars, num_draws=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant variables: arviz warns about r_hat / KDE
        summary = az.summary(idata, var_names=["gamma_sq", "column_norm"])
        assert "gamma_sq[top_left, z0]" in summary.index and len(summary) == 2 * 4 * 6
        axes = az.plot_forest(idata, var_names=["gamma_sq"], combined=True)
        assert len(np.ravel(axes)) == 1
        axes = az.plot_posterior(
            idata, var_names=["gamma_sq"], coords={"group": ["top_left"], "latent": ["z0", "z1"]}
        )
        assert len(np.ravel(axes)) == 2


def test_inference_data_needs_a_sparse_model():
    v = FactVAE(latent_dim=2, lam=0.0).fit(bars_data(64, seed=0), epochs=1, progress=False)
    with pytest.raises(ValueError, match="lam > 0"):
        to_inference_data(v, num_draws=5)


@pytest.mark.parametrize("bad", [{"num_draws": -5}, {"num_draws": 0}, {"num_chains": 0}])
def test_inference_data_refuses_no_draws(fitted_bars, bad):
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be a positive integer"):
        to_inference_data(fitted_bars, **bad)


@pytest.mark.parametrize("seed", [1.5, 2**70])
def test_inference_data_refuses_a_seed_torch_cannot_take(fitted_bars, seed):
    with pytest.raises(ValueError, match="seed must be an integer"):
        to_inference_data(fitted_bars, num_draws=5, seed=seed)


@pytest.mark.parametrize("factor", [-1.0, 0.0, float("nan"), "x"])
def test_inference_data_refuses_an_active_factor_that_is_no_positive_number(fitted_bars, factor):
    with pytest.raises(ValueError, match="active_factor must be a"):
        to_inference_data(fitted_bars, num_draws=5, active_factor=factor)


def test_what_is_not_the_sparsity_posterior_is_refused_with_what_to_give(fitted_bars):
    from pyro_factvae.analysis import active_probability
    from pyro_factvae.plotting import plot_link_intervals

    idata = to_inference_data(fitted_bars, num_draws=5)
    for bad in (fitted_bars, None, idata.posterior, idata.sel(group="top_left")):
        with pytest.raises(ValueError, match="give what to_inference_data"):
            active_probability(bad)
        with pytest.raises(ValueError, match="give what to_inference_data"):
            plot_link_intervals(bad)
    some = idata.sel(group=["top_left", "top_right"])  # a list keeps the group axis
    assert list(active_probability(some).index) == ["top_left", "top_right"]
    assert len(plot_link_intervals(some).axes) == 2
    for prob in ("0.9", 0.0, 1.0):
        with pytest.raises(ValueError, match="prob must be"):
            plot_link_intervals(idata, prob=prob)


def test_variational_mode_gives_every_link_a_posterior():
    import pyro
    from pyro import poutine

    vae = FactVAE(latent_dim=4, lam=1.0, phi_inference="variational")
    vae.fit(bars_data(400, seed=2), epochs=3, progress=False)
    assert np.isfinite(vae.history_).all()
    # the guide's global sites are real distributions on the model's explicit sites
    data = bars_data(8, seed=3)
    trace = poutine.trace(vae.guide_).get_trace(data.values, data.observed)
    assert type(trace.nodes["Phi_top_left"]["fn"].base_dist).__name__ == "Normal"
    assert type(trace.nodes["gamma_sq_top_left"]["fn"].base_dist).__name__ == "LogNormal"
    model_trace = poutine.trace(poutine.replay(vae.model_, trace)).get_trace(
        data.values, data.observed
    )
    assert np.isfinite(model_trace.log_prob_sum().item())
    idata = to_inference_data(vae, num_draws=40)
    norms = idata.posterior["column_norm"].values
    assert norms.std(axis=(0, 1)).min() > 0  # Phi varies across draws
    p_active = idata.posterior["active"].values.mean(axis=(0, 1))
    assert ((p_active >= 0) & (p_active <= 1)).all()
    with pytest.raises(ValueError, match="unknown phi_inference"):
        FactVAE(phi_inference="mcmc")
    pyro.clear_param_store()


def test_plot_link_intervals_draws_every_link_and_saves(fitted_bars, tmp_path):
    from pyro_factvae.plotting import plot_link_intervals

    idata = to_inference_data(fitted_bars, num_draws=30)
    fig = plot_link_intervals(idata, var="gamma_sq", path=tmp_path / "links.png")
    assert len(fig.axes) == 4  # one panel per group
    assert [ax.get_title() for ax in fig.axes] == list(QUADRANTS)
    assert len(fig.axes[0].collections[0].get_segments()) == 6  # one interval per latent
    assert (tmp_path / "links.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no variable 'phi'"):
        plot_link_intervals(idata, var="phi")
    assert len(plot_link_intervals(idata, var="active").axes) == 4  # a bool variable too


def test_plot_sparsity_takes_a_plain_table():
    from pyro_factvae.plotting import plot_sparsity

    fig = plot_sparsity([[1.0, 0.0], [0.0, 0.5]])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["z0", "z1"]
    with pytest.raises(ValueError, match="G x K table"):
        plot_sparsity([1.0, 0.0])


def test_plot_sparsity_given_the_model_says_to_give_its_map(fitted_bars):
    from pyro_factvae.plotting import plot_sparsity

    with pytest.raises(ValueError, match=r"plot_sparsity\(vae.sparsity\(\)\)"):
        plot_sparsity(fitted_bars)


def test_plot_sparsity_labels_its_colour_bar_and_leaves_a_callers_layout():
    from matplotlib.figure import Figure

    from pyro_factvae.plotting import plot_sparsity

    fig = plot_sparsity([[0.9, 0.0]], label="P(active)")
    assert fig.axes[1].get_ylabel() == "P(active)"
    assert plot_sparsity([[0.9, 0.0]]).axes[1].get_ylabel() == "||Phi_g[:, j]||"
    mine = Figure()
    left, right = mine.subplots(1, 2)
    before = left.get_position().bounds
    plot_sparsity([[0.9, 0.0]], ax=right)
    assert left.get_position().bounds == before  # no tight_layout on the caller's figure


def test_figures_are_written_whole_or_not_at_all(tmp_path):
    from pyro_factvae.plotting import plot_sparsity, save_figure

    path = tmp_path / "map.png"
    plot_sparsity([[1.0, 0.0]], path=path)
    assert path.read_bytes()[:4] == b"\x89PNG"
    before = path.read_bytes()
    fig = plot_sparsity([[1.0, 0.5]])
    with pytest.raises(ValueError, match="not supported"):
        save_figure(fig, tmp_path / "map.xyz")  # a format matplotlib cannot write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]  # no partial file left
    assert path.read_bytes() == before
    from matplotlib import rc_context

    with rc_context({"savefig.format": "png"}):  # no extension: the default format's, added
        assert save_figure(fig, tmp_path / "plain") == str(tmp_path / "plain.png")
    assert (tmp_path / "plain.png").read_bytes()[:4] == b"\x89PNG"
    save_figure(fig, tmp_path / "map.svg")
    assert b"<svg" in (tmp_path / "map.svg").read_bytes()[:400]


def test_script_json_is_written_whole_or_not_at_all(tmp_path):
    import json

    from pyro_factvae.tools.script_args import write_json

    path = tmp_path / "out" / "table.json"
    write_json({"rmse": 0.5}, str(path))
    assert json.loads(path.read_text()) == {"rmse": 0.5}
    with pytest.raises(TypeError):
        write_json({"rmse": object()}, str(path))  # fails half-way through the dump
    assert json.loads(path.read_text()) == {"rmse": 0.5}
    assert [p.name for p in path.parent.iterdir()] == ["table.json"]
