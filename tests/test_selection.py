import dataclasses
import signal

import numpy as np
import pytest

import pyro_factvae.infer.loop as train_module
import pyro_factvae.infer.path as lam_path
from pyro_factvae import FactVAE
from pyro_factvae.datasets import bars_data, bars_structure
from pyro_factvae.tools.selection import lambda_path

from .conftest import small_groups


def test_lambda_path_chooses_a_lambda_that_gives_the_bars_pattern(tmp_path):
    path = lambda_path(
        bars_data(3000, missing=0.25, seed=0),
        [0.2, 0.0, 0.6, 0.06],  # per variable: 3.2, 0, 9.6, 1 per example (16 pixels)
        epochs=15,
        warm_epochs=8,
        latent_dim=12,
        fit_kwargs={"batch_size": 64, "patience": None},  # the settings this path was made with
    )
    assert path.lams == [0.0, 0.06, 0.2, 0.6]  # walked in increasing order
    assert path.active_links[0] == 48 and path.active_links[-1] < path.active_links[0]
    top = int(np.argmax(path.held_out_ll))  # one-standard-error rule: never below the top
    assert path.best >= top
    structure = bars_structure(path.sparsity[path.best].values)
    assert structure["cross"] == 0 and structure["every_quadrant"]  # top/bottom never linked
    assert bars_structure(path.sparsity[0].values)["cross"] > 0  # lam = 0 links everything
    # the returned model holds the weights it had at the chosen lam
    np.testing.assert_array_equal(path.model.sparsity().values, path.sparsity[path.best].values)
    assert path.model.config.lam == path.best_lam
    fig = path.plot(tmp_path / "path.png")
    assert (tmp_path / "path.png").stat().st_size > 1000
    assert fig.axes[0].get_xscale() == "log" and "chosen lam" in fig.axes[0].get_title()
    assert path.to_dict()["best_lam"] == path.best_lam


def test_lambda_path_rejects_bad_grids():
    data = bars_data(40, seed=0)
    with pytest.raises(ValueError, match="lams"):
        lambda_path(data, [])
    with pytest.raises(ValueError, match="lams"):
        lambda_path(data, [0.1, -1.0])
    with pytest.raises(ValueError, match="through lams"):
        lambda_path(data, [0.1], lam=1.0)
    with pytest.raises(ValueError, match="validation fraction"):
        lambda_path(data, [0.1], validation=1.5)


def test_set_lam_gives_model_guide_and_the_next_fit_one_new_frozen_config(groups):
    vae = FactVAE(latent_dim=2, lam=0.5).fit(groups, epochs=1, progress=False)
    fitted = vae.config
    vae.set_lam(3.0)
    assert vae.config is vae.model_.config is vae.guide_.config
    assert vae.config is not fitted and fitted.lam == 0.5  # a new config, the old one as it was
    assert vae.config.lam == vae.lam == 3.0 and vae.config.frozen
    with pytest.raises(ValueError, match=r"frozen .*FactVAE.set_lam"):
        vae.config.lam = 1.0  # a fitted model's config is read, never written
    vae.fit(groups, epochs=1, progress=False)
    assert vae.fit_state.optimizers.phi.param_groups[0]["lam"] == 3.0  # the prox used it
    with pytest.raises(ValueError, match="lam must be"):
        vae.set_lam(-1.0)
    assert vae.lam == 3.0


def test_a_model_resolves_a_spec_into_its_own_frozen_config_and_leaves_the_spec_alone():
    from pyro_factvae import Layout, Model, ModelConfig

    spec = ModelConfig(lam=0.1)
    model = Model(Layout(("a", "b"), (4, 40), ("normal", "normal")), spec)
    assert spec.latent_dim == spec.encoder_width == "auto" and not spec.frozen
    assert model.config.frozen and model.config.lam == 0.1
    assert (model.config.latent_dim, model.config.encoder_width) == (16, 20)
    assert Model(model.layout, model.config).config is model.config  # resolved: kept as is


def test_lambda_path_checks_its_data_before_training():
    from .conftest import small_groups

    single = small_groups(missing=False)
    rows = np.arange(len(single["a"]))
    for g, name in enumerate(single):  # every row observes exactly one group
        single[name][rows % 3 != g] = np.nan
    with pytest.raises(ValueError, match="two observed groups"):
        lambda_path(single, [0.0, 1.0], epochs=1000, latent_dim=2)


def test_lambda_path_repr_is_short(groups):
    path = lambda_path(groups, [0.0, 0.5], epochs=1, warm_epochs=1, latent_dim=2, num_samples=4)
    assert "DataFrame" not in repr(path) and len(repr(path)) < 300
    from pyro_factvae.plotting import plot_lambda_path

    with pytest.raises(ValueError, match="give the LambdaPath itself"):
        plot_lambda_path(path.to_dict())


def test_lambda_path_refuses_validation_groups_in_another_order(groups):
    from pyro_factvae import GroupedData

    swapped = GroupedData({k: groups[k] for k in reversed(list(groups))})  # scored by position
    with pytest.raises(ValueError, match="give the same groups, in the same order"):
        lambda_path(groups, [0.0, 1.0], validation=swapped, epochs=1, latent_dim=2)


def test_the_default_path_trains_each_later_stage_for_an_eighth_of_the_epochs():
    vae = FactVAE(latent_dim=2).fit(small_groups(), epochs=16, seed=1, progress=False)
    warm = 16 // lam_path.WARM_DIVISOR
    walked = sum(1 for lam in vae.lam_path_["lams"] if lam > 0)  # each: a fit and a refit
    final = warm if vae.lam_ > 0 else 16  # a relaxed refit on every row, or a fresh dense fit
    assert lam_path.WARM_DIVISOR == 8 and walked > 0
    assert len(vae.history_) == 16 + 2 * warm * walked + final


@pytest.mark.parametrize(
    "scores, links, chosen",
    [
        # every lam within 1% keeps the same 10 links: the smallest shrinks least
        ([-1.0, -0.995, -1.0, -1.5], [10, 10, 10, 3], 0),
        # within 1%: 10, 8 and 8 links; of the two that keep 8, the smaller lam
        ([-1.0, -1.005, -0.999, -1.2], [10, 8, 8, 2], 1),
        # a sparser map outside the tolerance is not taken
        ([-1.0, -0.999, -1.05, float("nan")], [10, 10, 4, 0], 0),
    ],
)
def test_the_choice_is_the_sparsest_map_within_tolerance_at_its_smallest_lam(scores, links, chosen):
    from pyro_factvae.infer.path_choice import choose
    from pyro_factvae.infer.path_state import PathRecords

    records = PathRecords(
        scores=scores, pairs=[np.full(5, s) for s in scores], links=links, maps=[None] * 4
    )
    path = choose([0.0, 0.1, 0.3, 1.0], records, "min", 0.01)
    assert path.best == chosen and path.lams == [0.0, 0.1, 0.3, 1.0]


def test_a_path_with_no_finite_score_says_what_to_do():
    from pyro_factvae.infer.path_choice import choose
    from pyro_factvae.infer.path_state import PathRecords

    nan = float("nan")
    records = PathRecords(scores=[nan, -np.inf], pairs=[np.full(2, nan)] * 2, links=[4, 2])
    with pytest.raises(ValueError, match="give lam a number"):
        choose([0.0, 0.1], records, "min", 0.01)


def test_lambda_path_arguments_are_checked_and_a_validation_dict_is_matched_by_name():
    data, other = small_groups(n=60), small_groups(n=30, seed=1)
    shuffled = {name: other[name] for name in ("c", "b", "a")}
    path = lambda_path(data, [0.0, 0.1], epochs=2, validation=shuffled)
    assert path.lams == [0.0, 0.1] and len(path.held_out_ll) == 2
    assert lambda_path(data, [0.0], epochs=2, validation=np.float32(0.2)).best_lam == 0.0
    for kwargs, message in [
        ({"validation": 0}, r"validation fraction must be in \(0, 1\)"),
        ({"validation": True}, "validation must be a fraction of the rows or data"),
        ({"validation": {"a": other["a"]}}, "give the same groups"),
        ({"fit_kwargs": {"epochs": 3}}, "lambda_path's own arguments"),
        ({"fit_kwargs": {"relax_epochs": 3}}, "it fits no relaxed refits"),
        ({"fit_kwargs": {"checkpoint_every": 5}}, "writes no checkpoint"),
        ({"num_samples": 0}, "num_samples must be a positive integer"),
        ({"warm_epochs": 0}, "warm_epochs must be a positive integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            lambda_path(data, [0.0, 0.1], epochs=2, **kwargs)


def test_bars_structure_reads_a_frame_by_its_quadrant_names_and_checks_the_shape():
    import pandas as pd

    pure = pd.DataFrame(
        [[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]],
        index=["top_left", "bottom_left", "top_right", "bottom_right"],
    )  # z0 the top quadrants, z1 the bottom ones: no top-bottom link
    assert bars_structure(pure)["cross"] == 0
    assert bars_structure(pure.to_numpy())["cross"] == 2  # an array is in QUADRANTS order
    for bad in (np.ones((3, 2)), np.ones(4), pure.rename(index={"top_left": "tl"})):
        with pytest.raises(ValueError, match="norms must"):
            bars_structure(bad)


def test_lambda_path_refuses_a_grid_or_seed_it_cannot_walk():
    data = small_groups()
    bad = [
        ({"lams": 0.1}, r"lams must be a list of numbers >= 0, e.g. \[0, 0.1, 1\]; got 0.1"),
        ({"lams": "0.1"}, "lams must be a list of numbers"),
        ({"lams": [0.1, 0.1]}, r"lams \[0.1\] appear more than once"),
        ({"lams": [0, float("inf")]}, "lams must be a finite number >= 0"),
        ({"lams": [0.1], "seed": None}, "seed must be an integer"),
        ({"lams": [0.1], "seed": 1.5}, "seed must be an integer"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            lambda_path(data, epochs=1, num_samples=2, progress=False, **kwargs)
    import pandas as pd

    path = lambda_path(data, pd.Series([0.1, 0.0]), epochs=1, num_samples=2, progress=False)
    assert path.lams == [0.0, 0.1]  # any iterable of numbers, walked in increasing order


def test_lambda_path_stopped_by_a_signal_raises_keyboard_interrupt(monkeypatch):
    original, count = train_module.guarded_step, {"n": 0}

    def step_then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        count["n"] += 1
        if count["n"] == 3:  # during the first lam's fit
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(train_module, "guarded_step", step_then_signal)
    with pytest.raises(KeyboardInterrupt, match="stopped by SIGINT before every lam"):
        lambda_path(small_groups(), [0.0, 0.1], epochs=4, latent_dim=2, num_samples=5)


def test_the_final_fit_of_lam_auto_standardizes_by_every_row(monkeypatch):
    from pyro_factvae.infer import path_choice

    def second_lam(lams, *args):  # a lam > 0: the path's model is refit on every row
        return dataclasses.replace(path_choice.choose(lams, *args), best=1)

    monkeypatch.setattr(lam_path, "choose", second_lam)
    groups = small_groups(n=40, seed=2)
    groups["a"] = groups["a"] + 3.0 * (np.arange(40) % 4 == 0)[:, None]  # means the split moves
    vae = FactVAE(latent_dim=2).fit(groups, epochs=8, seed=0, progress=False)
    assert vae.lam_ > 0
    model = vae.model_
    shifts = model.layout.scatter_unbind([lik.shift for lik in model.likelihoods])
    units = model.layout.scatter_unbind([lik.unit for lik in model.likelihoods])
    for name, shift, unit in zip(groups, shifts, units):
        np.testing.assert_allclose(shift.numpy(), np.nanmean(groups[name], 0), rtol=1e-5)
        np.testing.assert_allclose(unit.numpy(), np.nanstd(groups[name], 0, ddof=1), rtol=1e-5)
