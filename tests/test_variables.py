"""Groups given with named variables (DataFrames with text column labels): a fitted model
keeps the names and refuses data that name other variables, or the same in another order,
in place of imputing from the wrong cells."""

import numpy as np
import pandas as pd
import pytest

from pyro_factvae import FactVAE, GroupedData

QUERY = dict(refine_steps=2, num_samples=20)


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((80, 2))
    a = pd.DataFrame(z @ rng.standard_normal((2, 3)), columns=["a0", "a1", "a2"])
    b = pd.DataFrame(z @ rng.standard_normal((2, 2)), columns=["b0", "b1"])
    a.iloc[::4] = np.nan
    b.iloc[1::4] = np.nan
    vae = FactVAE(latent_dim=2, lam=0.1).fit({"a": a, "b": b}, epochs=5, progress=False)
    return vae, a, b


def test_a_fit_on_named_frames_keeps_each_groups_variable_names(frames, tmp_path):
    vae, _, _ = frames
    assert vae.variables_ == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}
    vae.save(tmp_path / "m.factvae")
    assert FactVAE.load(tmp_path / "m.factvae").variables_ == vae.variables_


@pytest.mark.parametrize(
    "change, says",
    [
        (lambda b: b[["b1", "b0"]], "from position 0, ['b1', 'b0'] where it was fitted on"),
        (lambda b: b.rename(columns={"b0": "zz"}), "lack ['b0'] and name ['zz']"),
    ],
)
def test_frames_that_name_other_variables_are_refused_by_group(frames, change, says):
    vae, a, b = frames
    for data in ({"a": a, "b": change(b)}, [a, change(b)]):
        with pytest.raises(ValueError, match=r"group 'b'") as err:
            vae.impute(data, **QUERY)
        assert says in str(err.value) and "frame[vae.variables_[group]]" in str(err.value)
    with pytest.raises(ValueError, match=r"group 'b'"):  # nor trained further on them
        vae.fit({"a": a, "b": change(b)}, epochs=1, progress=False)


def test_the_fitted_order_restores_the_imputation_and_arrays_are_read_by_position(frames):
    vae, a, b = frames
    swapped = b[["b1", "b0"]]
    want = vae.impute({"a": a, "b": b}, **QUERY)
    back = vae.impute({"a": a, "b": swapped[vae.variables_["b"]]}, **QUERY)
    plain = vae.impute({"a": a.to_numpy(), "b": b.to_numpy()}, **QUERY)
    for g in ("a", "b"):
        np.testing.assert_array_equal(back[g], want[g])
        np.testing.assert_array_equal(plain[g], want[g])
    # integer labels (a frame made from an array) name nothing: read by position
    unnamed = {"a": pd.DataFrame(a.to_numpy()), "b": pd.DataFrame(b.to_numpy())}
    assert GroupedData(unnamed).variables is None
    np.testing.assert_array_equal(vae.impute(unnamed, **QUERY)["b"], want["b"])


def test_a_model_fitted_on_arrays_reads_named_frames_by_position():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((40, 2)), rng.standard_normal((40, 2))
    vae = FactVAE(latent_dim=2, lam=0.1).fit([x, y], epochs=2, progress=False)
    assert vae.variables_ is None
    named = [pd.DataFrame(x, columns=["p", "q"]), pd.DataFrame(y, columns=["r", "s"])]
    np.testing.assert_array_equal(vae.latent(named)[0], vae.latent([x, y])[0])


def test_a_single_frame_records_the_text_columns_of_its_groups():
    frame = pd.DataFrame(np.random.default_rng(2).standard_normal((30, 4)), columns=list("wxyz"))
    frame[7] = 1.0  # an extra column, in no group
    data = GroupedData.from_dataframe(frame, {"left": ["x", "w"], "right": ["y", "z"]})
    assert data.variables == {"left": ["x", "w"], "right": ["y", "z"]}
    assert data.subset(np.arange(5)).variables == data.variables  # kept by a subset of rows


def test_a_refused_fit_leaves_the_column_mapping_as_it_was(tmp_path):
    rng = np.random.default_rng(4)
    frame = pd.DataFrame(rng.standard_normal((40, 3)), columns=list("abc"))
    vae = FactVAE(latent_dim=2, lam=0.1)
    vae.fit(frame, groups={"g1": ["a", "b"], "g2": ["c"]}, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"group 'g1'.*leave the groups out"):
        vae.fit(frame, groups={"g1": ["b", "a"], "g2": ["c"]}, epochs=1, progress=False)
    assert vae.columns_ == {"g1": ["a", "b"], "g2": ["c"]}
    assert vae.impute(frame).shape == frame.shape  # still answers with its own mapping
    swapped = {"g1": ["b", "a"], "g2": ["c"]}
    with pytest.raises(ValueError, match="leave the groups out"):  # a frame split by a mapping
        vae.impute(GroupedData.from_dataframe(frame, swapped))
    folder = tmp_path / "a folder"
    folder.mkdir()
    with pytest.raises(ValueError, match="is a folder"):  # refused before any training
        vae.fit(frame, groups=swapped, checkpoint=folder, epochs=1, progress=False)
    assert vae.columns_ == {"g1": ["a", "b"], "g2": ["c"]}
    fresh = FactVAE(latent_dim=2, lam=0.1)
    empty = frame.assign(c=np.nan)  # a column never observed: refused by require_trainable
    with pytest.raises(ValueError, match="never observed"):
        fresh.fit(empty, groups={"g1": ["a", "b"], "g2": ["c"]}, epochs=1, progress=False)
    assert fresh.columns_ is None and fresh.variables_ is None


def test_names_that_repeat_or_keys_that_are_not_text_are_handled():
    rng = np.random.default_rng(5)
    frame = pd.DataFrame(rng.standard_normal((40, 3)), columns=list("abc"))
    data = GroupedData.from_dataframe(frame, {0: ["a", "b"], 1: ["c"]})
    assert data.names == ["0", "1"] and data.variables == {"0": ["a", "b"], "1": ["c"]}
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=1, progress=False)
    with pytest.raises(ValueError, match="group '0'"):
        vae.impute({0: frame[["b", "a"]], 1: frame[["c"]]})
    # a group whose labels repeat one names nothing: read by position
    twice = {"x": frame.set_axis(["p", "p", "q"], axis=1), "y": frame[["c"]]}
    assert GroupedData(twice).variables == {"y": ["c"]}
    groups = iter([frame[["a", "b"]], frame[["c"]]])  # an iterator, read once
    assert GroupedData(groups).variables is None


def test_a_resumed_checkpoint_keeps_the_names_and_refuses_others(tmp_path):
    rng = np.random.default_rng(6)
    frames = {
        "a": pd.DataFrame(rng.standard_normal((40, 2)), columns=["a0", "a1"]),
        "b": pd.DataFrame(rng.standard_normal((40, 2)), columns=["b0", "b1"]),
    }
    ckpt = tmp_path / "run.ckpt"
    FactVAE(latent_dim=2, lam=0.1).fit(frames, epochs=2, checkpoint=ckpt, progress=False)
    resumed = FactVAE(latent_dim=2, lam=0.1).fit(frames, resume=ckpt, progress=False)
    assert resumed.variables_ == {"a": ["a0", "a1"], "b": ["b0", "b1"]}
    swapped = {"a": frames["a"], "b": frames["b"][["b1", "b0"]]}
    with pytest.raises(ValueError, match="group 'b'"):
        FactVAE(latent_dim=2, lam=0.1).fit(swapped, resume=ckpt, progress=False)
