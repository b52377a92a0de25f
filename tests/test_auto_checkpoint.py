"""The default fit (``lam="auto"``: a path of fits, then the final one) checkpoints and
resumes bit for bit, whether a signal or SIGKILL stops it in the path or in the final fit."""

import dataclasses
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

import pyro_factvae.infer.loop as train_module
import pyro_factvae.infer.path as lam_path
from pyro_factvae import FactVAE

from .conftest import small_groups

FIT = dict(epochs=8, seed=1, progress=False)
#: the later stages' length in these tests: 8 // 4 = 2 steps each, so that a stage can be
#: stopped in its middle (the step counts below are written for it)
WARM_DIVISOR = 4


@pytest.fixture(autouse=True)
def two_step_stages(monkeypatch):
    monkeypatch.setattr(lam_path, "WARM_DIVISOR", WARM_DIVISOR)


def _same(a: FactVAE, b: FactVAE) -> bool:
    """The same fitted model, bit for bit: weights, history, path, lam and config."""
    sa = {**a.model_.state_dict(), **{f"g.{k}": v for k, v in a.guide_.state_dict().items()}}
    sb = {**b.model_.state_dict(), **{f"g.{k}": v for k, v in b.guide_.state_dict().items()}}
    return (
        sa.keys() == sb.keys()
        and all(torch.equal(sa[k], sb[k]) for k in sa)
        and a.history_ == b.history_
        and a.prior_history_ == b.prior_history_
        and a.lam_path_ == b.lam_path_
        and a.lam_ == b.lam_
        and a.config.to_dict() == b.config.to_dict()
    )


def _stop_at(monkeypatch, step: int) -> None:
    """SIGINT during training step ``step`` (counted over every fit of the path)."""
    original, count = train_module.guarded_step, {"n": 0}

    def step_then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        count["n"] += 1
        if count["n"] == step:
            signal.raise_signal(signal.SIGINT)
        return out

    monkeypatch.setattr(train_module, "guarded_step", step_then_signal)


@pytest.fixture
def whole():
    return FactVAE(latent_dim=2).fit(small_groups(), **FIT)


def test_checkpointing_the_default_fit_leaves_it_as_it_is(whole, tmp_path):
    checkpointed = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=tmp_path / "c", **FIT)
    assert _same(whole, checkpointed) and whole.lam_ == 1.0
    assert (tmp_path / "c").exists() and (tmp_path / "c.path").exists()


# 38 steps: fit:0 is 1-8, then lam = 0.01 .. 1 two fit and two refit steps each, final 37-38
@pytest.mark.parametrize(
    "step, stage", [(3, "fit:0"), (10, "fit:1"), (15, "refit:2"), (36, "refit:7"), (37, "final")]
)
def test_a_stopped_default_fit_resumes_bit_for_bit(whole, step, stage, tmp_path, monkeypatch):
    path, original = tmp_path / "run.ckpt", train_module.guarded_step
    _stop_at(monkeypatch, step)
    cut = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    monkeypatch.setattr(train_module, "guarded_step", original)
    assert cut.interrupted_ == "SIGINT" and cut.lam_path_["stage"] == stage
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert resumed.interrupted_ is None and _same(whole, resumed)
    # the same script run again with resume= agrees too
    again = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, resume=path, **FIT)
    assert _same(whole, again)


@pytest.mark.parametrize("scored, stage", [(2, "refit:1"), (8, "refit:7")])
def test_a_signal_between_two_stages_stops_the_path_resumably(
    whole, scored, stage, tmp_path, monkeypatch
):
    """A signal while a lam is scored (no fit running) stops the path before its next
    stage, as one during a fit does: ``interrupted_`` says so, and the checkpoint resumes."""
    from pyro_factvae.infer.path_state import PathRecords

    path, original, count = tmp_path / "run.ckpt", PathRecords.score, {"n": 0}

    def score_then_signal(self, *args, **kwargs):
        count["n"] += 1
        if count["n"] == scored:
            signal.raise_signal(signal.SIGINT)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PathRecords, "score", score_then_signal)
    cut = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    assert cut.interrupted_ == "SIGINT" and cut.lam_path_["stage"] == stage
    monkeypatch.setattr(PathRecords, "score", original)
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert resumed.interrupted_ is None and _same(whole, resumed)


def test_a_signal_after_the_final_fit_is_not_swallowed(monkeypatch):
    def signal_then_check(*args, **kwargs):  # the path's last words, after its final fit
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(lam_path, "warn_if_the_mean_wins", signal_then_check)
    with pytest.raises(KeyboardInterrupt):  # delivered again once the path's handler is gone
        FactVAE(latent_dim=2).fit(small_groups(), **FIT)


def test_a_final_fit_resumes_with_the_lam_its_walk_chose(whole, tmp_path, monkeypatch):
    """A rule that would choose otherwise now (an earlier version's) does not move a walk
    that has ended: the final fit in the checkpoint trains that walk's choice."""
    from pyro_factvae.infer.path_choice import choose

    path, original = tmp_path / "run.ckpt", train_module.guarded_step
    _stop_at(monkeypatch, 37)  # in the final fit
    FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    monkeypatch.setattr(train_module, "guarded_step", original)

    def first(*args, **kwargs):  # another rule: always the first lam
        return dataclasses.replace(choose(*args, **kwargs), best=0)

    monkeypatch.setattr(lam_path, "choose", first)
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert whole.lam_ == 1.0 and _same(whole, resumed)


def test_a_default_fit_that_chose_lam_0_resumes_its_fresh_dense_fit(tmp_path, monkeypatch):
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0,))  # lam = 0 chosen: a fresh dense fit
    monkeypatch.setattr(lam_path, "AUTO_TAIL", ())  # (not walked on where 0 loses to the mean)
    uncut = FactVAE(latent_dim=2).fit(small_groups(), **FIT)
    assert uncut.lam_ == 0.0
    path, original = tmp_path / "run.ckpt", train_module.guarded_step
    _stop_at(monkeypatch, 12)  # the path is steps 1-8, the fresh fit 9-16
    cut = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    assert cut.interrupted_ == "SIGINT" and cut.lam_path_["stage"] == "fresh"
    monkeypatch.setattr(train_module, "guarded_step", original)
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert _same(uncut, resumed)


@pytest.mark.parametrize("step", [40, 50])  # in refit:1, the walk's last stage; in the fresh fit
def test_a_default_fit_whose_walk_ended_early_resumes_bit_for_bit(step, tmp_path, monkeypatch):
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0, 100.0, 200.0, 300.0))  # 100 prunes all
    fit = {**FIT, "epochs": 30}  # long enough for lam = 0 to beat the all-pruned map
    uncut = FactVAE(latent_dim=2).fit(small_groups(), **fit)
    assert uncut.lam_ == 0.0 and uncut.lam_path_["lams"] == [0.0, 100.0]
    path, original = tmp_path / "run.ckpt", train_module.guarded_step
    _stop_at(monkeypatch, step)  # fit:0 is steps 1-30, lam 100 7 + 7, then the fresh fit
    cut = FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **fit)
    assert cut.interrupted_ == "SIGINT"
    assert cut.lam_path_["stage"] == ("refit:1" if step == 40 else "fresh")
    monkeypatch.setattr(train_module, "guarded_step", original)
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0, 0.5, 1.0))  # the file keeps its own grid
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert _same(uncut, resumed)


def test_a_path_file_that_names_no_grid_resumes_on_the_grid_of_its_version(tmp_path, monkeypatch):
    from pyro_factvae.infer.path_state import PathStore

    monkeypatch.setattr(lam_path, "AUTO_GRID", lam_path.UNNAMED_GRID)
    monkeypatch.setattr(lam_path, "AUTO_TAIL", ())  # the earlier version had no tail
    uncut = FactVAE(latent_dim=2).fit(small_groups(), **FIT)
    path, original = tmp_path / "run.ckpt", train_module.guarded_step
    _stop_at(monkeypatch, 12)  # in lam = 0.01's refit
    FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    store = PathStore(path)
    records, settings, history = store.load()
    settings.pop("grid"), settings.pop("tail")
    store.save(records, settings, history)  # as the earlier version wrote it
    monkeypatch.setattr(train_module, "guarded_step", original)
    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0, 0.5, 1.0))
    assert _same(uncut, FactVAE().fit(small_groups(), resume=path, progress=False))


def test_resuming_the_default_fit_refuses_other_settings_and_a_lost_path_file(tmp_path):
    path = tmp_path / "run.ckpt"
    FactVAE(latent_dim=2).fit(small_groups(), checkpoint=path, **FIT)
    with pytest.raises(ValueError, match=r"epochs=9 \(file: 8\)"):
        FactVAE().fit(small_groups(), resume=path, epochs=9)
    with pytest.raises(ValueError, match="latent_dim"):
        FactVAE(latent_dim=5).fit(small_groups(), resume=path)
    os.remove(str(path) + ".path")
    with pytest.raises(ValueError, match=r"run.ckpt.path' is missing"):
        FactVAE().fit(small_groups(), resume=path)


@pytest.mark.parametrize("step", [9, 12, 37])  # between fits, in fit:1, in the final fit
def test_sigkill_during_the_default_fit_resumes_bit_for_bit(whole, step, tmp_path):
    np.savez(tmp_path / "data.npz", **small_groups())
    path = tmp_path / "run.ckpt"
    script = textwrap.dedent(
        f"""
        import os, signal, warnings, numpy as np, torch
        import pyro_factvae.infer.loop as train_module
        import pyro_factvae.infer.path as lam_path
        from pyro_factvae import FactVAE
        warnings.simplefilter("ignore")
        lam_path.WARM_DIVISOR = {WARM_DIVISOR}
        torch.set_num_threads({torch.get_num_threads()})
        original, count = train_module.guarded_step, [0]
        def step_then_kill(*args, **kwargs):
            out = original(*args, **kwargs)
            count[0] += 1
            if count[0] == {step}:
                os.kill(os.getpid(), signal.SIGKILL)
            return out
        train_module.guarded_step = step_then_kill
        data = dict(np.load({str(tmp_path / "data.npz")!r}))
        FactVAE(latent_dim=2).fit(data, checkpoint={str(path)!r}, checkpoint_every=1,
                                  epochs=8, seed=1, progress=False)
        """
    )
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr
    data = dict(np.load(tmp_path / "data.npz"))
    resumed = FactVAE().fit(data, resume=path, progress=False)
    assert _same(whole, resumed)


def test_a_column_that_varies_only_in_the_held_out_rows_is_not_held_constant():
    from pyro_factvae import GroupedData

    data = small_groups(n=60, seed=4, missing=False)
    data["a"][:, 0] = 0.0
    _, held = GroupedData(data).split(0.8, seed=1)  # the rows lam="auto" scores on
    data["a"][held.row_index[:3], 0] = [1.0, 2.0, 3.0]
    vae = FactVAE(latent_dim=2).fit(data, **FIT)
    assert vae.lam_ > 0 and not vae.model_.constant()[0][0]


def test_the_fresh_dense_fit_checkpoint_keeps_the_column_mapping(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setattr(lam_path, "AUTO_GRID", (0.0,))
    monkeypatch.setattr(lam_path, "AUTO_TAIL", ())  # lam = 0 chosen: a fresh dense fit
    groups = small_groups()
    frame = pd.DataFrame(np.hstack(list(groups.values())), columns=[f"c{j}" for j in range(8)])
    spec = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"], "c": ["c6", "c7"]}
    path = tmp_path / "run.ckpt"
    _stop_at(monkeypatch, 12)  # in the fresh dense fit
    cut = FactVAE(latent_dim=2).fit(frame, groups=spec, checkpoint=path, **FIT)
    assert cut.lam_path_["stage"] == "fresh" and FactVAE.load(path).columns_ == spec


def test_a_checkpoint_refuses_the_path_file_of_another_run(tmp_path):
    import shutil

    data = small_groups()
    first, second = tmp_path / "a.ckpt", tmp_path / "b.ckpt"
    FactVAE(latent_dim=2).fit(data, epochs=4, checkpoint=first, progress=False)
    FactVAE(latent_dim=2).fit(data, epochs=6, checkpoint=second, progress=False)
    again = FactVAE().fit(data, resume=first, progress=False)  # its own: accepted
    assert again.lam_path_["lams"]
    shutil.copy(str(second) + ".path", str(first) + ".path")
    with pytest.raises(ValueError, match=r"is not the \.path file of .*a\.ckpt"):
        FactVAE().fit(data, resume=first, progress=False)
