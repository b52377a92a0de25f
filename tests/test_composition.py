"""factVAE as a component of Pyro programs: site names under poutine, Predictive, label groups."""

import os

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from pyro_factvae import FactVAE, GroupedData


@pytest.fixture
def fitted(groups):
    return FactVAE(latent_dim=3, lam=0.1).fit(groups, epochs=2, progress=False)


def _batch(vae, groups):
    data = vae.prepare(groups)
    return data.values, data.observed


def test_condition_fixes_documented_sites(fitted, groups):
    xs, mask = _batch(fitted, groups)
    model = fitted.model_
    z = torch.randn(len(mask), 3)
    phi_a = torch.zeros(model.config.phi_rows, 3)  # group a cut off from every latent
    cond = poutine.condition(model, {"z": z, "Phi_a": phi_a, "gamma_sq_b": torch.ones(3)})
    tr = poutine.trace(cond).get_trace(xs, mask)
    assert torch.equal(tr.nodes["z"]["value"], z) and tr.nodes["z"]["is_observed"]
    assert torch.equal(tr.nodes["Phi_a"]["value"], phi_a)
    assert torch.equal(tr.nodes["gamma_sq_b"]["value"], torch.ones(3))
    # with Phi_a = 0 the mean of x_a no longer depends on z
    other = poutine.trace(poutine.condition(model, {"z": -z, "Phi_a": phi_a})).get_trace(xs, mask)
    assert torch.allclose(tr.nodes["x_a"]["fn"].mean, other.nodes["x_a"]["fn"].mean)
    assert not torch.allclose(tr.nodes["x_b"]["fn"].mean, other.nodes["x_b"]["fn"].mean)


def test_block_hides_and_exposes_sites(fitted, groups):
    xs, mask = _batch(fitted, groups)
    model = fitted.model_
    hidden = poutine.trace(poutine.block(model, hide=["z", "Phi_a"])).get_trace(xs, mask)
    assert "z" not in hidden.nodes and "Phi_a" not in hidden.nodes and "x_a" in hidden.nodes
    only_x = poutine.block(model, expose_fn=lambda msg: msg["name"].startswith("x_"))
    names = {n for n, s in poutine.trace(only_x).get_trace(xs, mask).nodes.items()}
    assert {n for n in names if n not in ("_INPUT", "_RETURN")} == {"x_a", "x_b", "x_c"}


def test_trace_of_a_user_model_that_calls_factvae(fitted, groups):
    """A larger Pyro model: factVAE's z feeds a user's regression site."""
    xs, mask = _batch(fitted, groups)
    y = torch.randn(len(mask))

    def outer(xs, mask, y):
        z = fitted.model_(xs, mask)
        slope = pyro.sample("slope", dist.Normal(torch.zeros(3), 1.0).to_event(1))
        with pyro.plate("rows", len(y)):
            pyro.sample("y", dist.Normal(z @ slope, 0.1), obs=y)

    tr = poutine.trace(outer).get_trace(xs, mask, y)
    assert {"z", "slope", "y", "x_a", "Phi_c", "gamma_sq_a"} <= set(tr.nodes)
    assert torch.isfinite(tr.log_prob_sum())
    # the observed x sites carry the masks of missing groups
    assert not bool(tr.nodes["x_a"]["mask"][1]) and bool(tr.nodes["x_a"]["mask"][0])


def test_predictive_with_the_fitted_guide_handles_batched_phi(fitted, groups):
    xs, mask = _batch(fitted, groups)

    def simulate_from_z(xs, mask):
        return fitted.model_(None, mask=mask)

    out = Predictive(simulate_from_z, guide=fitted.guide_, num_samples=7, return_sites=["x_c"])
    with torch.no_grad():
        draws = out(xs, mask)["x_c"]
    assert draws.shape[0] == 7 and draws.shape[-2:] == (len(mask), 2)
    assert torch.isfinite(draws).all()


def test_predictive_draws_take_the_cell_mask_as_the_docs_show_it(groups):
    holed = {g: v.copy() for g, v in groups.items()}
    holed["a"][::2, 0] = np.nan  # a cell missing in every other row: its placeholder is 0
    vae = FactVAE(latent_dim=3, lam=0.1).fit(holed, epochs=2, progress=False)
    data = vae.prepare(holed)
    program = Predictive(
        lambda xs, mask, cells=None: vae.model_(None, mask=mask),
        guide=vae.guide_,
        num_samples=3,
        return_sites=["z"],
    )

    def z(**kwargs):
        pyro.set_rng_seed(0)
        with torch.no_grad():
            return program(data.values, data.observed, **kwargs)["z"]

    # the guide reads the mask: without it the encoder takes the zeros for data
    assert z(cells=data.cells).shape == (3, len(data), 3)
    assert not torch.allclose(z(cells=data.cells), z())


def test_categorical_label_group_and_group_weight():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 120)
    x = np.eye(3)[labels] @ rng.standard_normal((3, 4)) + 0.1 * rng.standard_normal((120, 4))
    onehot = np.eye(3)[labels]
    onehot[::2] = np.nan  # half the labels missing
    data = GroupedData({"x": x, "label": onehot})
    vae = FactVAE(
        latent_dim=2,
        lam=0.0,
        likelihood={"label": "categorical"},
        group_weight={"label": 5.0},
        theta_prior_weight=0.01,
    )
    vae.fit(data, epochs=100, batch_size=32, progress=False)
    probs = vae.reconstruct(data, given=["x"], targets=["label"])["label"]
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == labels).mean() > 0.8  # three well-separated clusters
    xs, mask = data.values, data.observed
    tr = poutine.trace(vae.model_).get_trace(xs, mask)
    assert tr.nodes["x_label"]["scale"] == 5.0 and tr.nodes["x_x"]["scale"] == 1.0
    assert type(tr.nodes["x_label"]["fn"]).__name__ == "OneHotCategorical"
    with pyro.validation_enabled(True):  # missing labels hold an in-support placeholder
        assert torch.isfinite(tr.log_prob_sum())
    bad = GroupedData({"x": x, "label": np.eye(3)[labels] * 2})
    with pytest.raises(ValueError, match="'label'.*not one-hot") as refused:
        FactVAE(likelihood={"label": "categorical"}).fit(bad, epochs=1, progress=False)
    assert "get_dummies" not in str(refused.value)  # 2s, not a row of 0s
    dummies = np.eye(3)[labels]
    dummies[5] = 0.0  # what pandas.get_dummies gives a missing label
    with pytest.raises(ValueError, match=r"rows \[5\] are not one-hot.*mark a missing label"):
        FactVAE(likelihood={"label": "categorical"}).fit(
            GroupedData({"x": x, "label": dummies}), epochs=1, progress=False
        )
    for kw in ({"lam": "Auto"}, {"latent_dim": "Auto"}):  # the other choice is named too
        with pytest.raises(ValueError, match=r" or 'auto' \(chosen from the data\), got 'Auto'$"):
            FactVAE(**kw)
    with pytest.raises(
        ValueError, match=r"integer or 'auto' .* or None \(no early stopping\), got"
    ):
        FactVAE().fit(data, patience="x")
    with pytest.raises(ValueError, match="group_weight given for unknown groups"):
        FactVAE(group_weight={"lable": 2.0}).fit(data, epochs=1, progress=False)
    with pytest.raises(ValueError, match="must be a finite number > 0"):
        FactVAE(group_weight={"label": -1.0})


def test_map_epochs_of_the_variational_mode(groups):
    vae = FactVAE(latent_dim=2, lam=1.0, phi_inference="variational")
    vae.fit(groups, epochs=4, map_epochs=2, progress=False)
    assert len(vae.history_) == 4 and vae.guide_.phi_mode == "variational"
    with pytest.raises(ValueError, match="map_epochs must be in"):
        vae.fit(groups, epochs=2, map_epochs=2, progress=False)
    with pytest.raises(ValueError, match="variational' only"):
        FactVAE(latent_dim=2, lam=1.0).fit(groups, epochs=2, map_epochs=1, progress=False)
    for name in ("map_epochs", "relax_epochs"):  # as epochs: refused, never truncated
        with pytest.raises(ValueError, match=f"{name} must be 0 or a positive integer, got 2.7"):
            vae.fit(groups, epochs=4, progress=False, **{name: 2.7})


def test_composition_example_runs(tmp_path, capsys):
    import runpy

    examples = os.path.join(os.path.dirname(__file__), "..", "examples")
    main = runpy.run_path(os.path.join(examples, "composition.py"))["main"]
    result = main(["--epochs", "2", "--out", str(tmp_path)])
    acc = result["accuracy"]
    assert set(acc) == {
        "top_left",
        "top_right",
        "bottom_left",
        "bottom_right",
        "all views",
        "all views (Predictive)",
    }
    assert all(0 <= a <= 1 for a in acc.values())
    assert (tmp_path / "composition_sparsity.png").stat().st_size > 1000
    assert "accuracy" in capsys.readouterr().out


def test_collapse_acts_on_the_librarys_sites_whatever_their_names(fitted, groups):
    from pyro.contrib.autoname import scope

    from pyro_factvae import collapse

    xs, mask = _batch(fitted, groups)

    def outer(xs, mask):
        z = fitted.model_(xs, mask)
        w = pyro.sample("Phi_head", dist.Normal(torch.zeros(3), 1.0).to_event(1))  # the user's
        return z @ w

    tr = poutine.trace(collapse(outer)).get_trace(xs, mask)
    tr.compute_log_prob()
    assert float(tr.nodes["Phi_head"]["log_prob_sum"]) != 0.0  # the user's prior is kept
    assert "gamma_sq_a" not in tr.nodes and float(tr.nodes["Phi_a"]["log_prob_sum"]) == 0.0

    def scoped(xs, mask):
        return scope(fitted.model_, prefix="v1")(xs, mask)

    tr = poutine.trace(collapse(scoped)).get_trace(xs, mask)
    tr.compute_log_prob()
    assert "v1/gamma_sq_a" not in tr.nodes  # renamed, and still integrated out
    assert float(tr.nodes["v1/Phi_a"]["log_prob_sum"]) == 0.0


@pytest.mark.parametrize("lam", [0.0, "auto"])
def test_the_variational_posterior_is_refused_where_its_prior_is_flat(groups, lam):
    vae = FactVAE(latent_dim=2, lam=lam, phi_inference="variational")
    with pytest.raises(ValueError, match="phi_inference='variational' needs lam a number > 0"):
        vae.fit(groups, epochs=2, progress=False)
    assert vae.model_ is None  # refused before any work
