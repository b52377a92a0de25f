"""Callbacks after every epoch: what they see, stopping a fit, CSV and TensorBoard logs."""

import csv

import pytest
import torch

from pyro_factvae import FactVAE
from pyro_factvae.infer.callbacks import CSVLogger, Epoch, TensorBoardLogger

from .conftest import small_groups

FIT = dict(epochs=6, batch_size=16, seed=2, progress=False)


def _state(vae):
    return {**vae.model_.state_dict(), **{f"g.{k}": v for k, v in vae.guide_.state_dict().items()}}


def test_callbacks_see_every_epoch_and_can_stop_a_fit_that_then_resumes(tmp_path):
    seen = []
    whole = FactVAE(latent_dim=2, lam=0.5).fit(small_groups(), callbacks=[seen.append], **FIT)
    assert [e.epoch for e in seen] == list(range(1, 7)) and all(isinstance(e, Epoch) for e in seen)
    assert [e.loss for e in seen] == whole.history_  # the history terms, as they are kept
    assert [e.prior for e in seen] == whole.prior_history_
    lams = [e.lam for e in seen]  # the warm-up ramps lam up to its value, then the refit
    assert lams[0] < lams[2] <= 0.5 and seen[-1].phase == "relaxed refit" and lams[-1] == 0.0
    assert all(e.active_links <= 2 * 3 for e in seen)

    path = tmp_path / "run.ckpt"
    stopper = lambda e: e.epoch == 3  # noqa: E731
    cut = FactVAE(latent_dim=2, lam=0.5).fit(
        small_groups(), callbacks=[stopper], checkpoint=path, **FIT
    )
    assert cut.interrupted_ == "callback" and len(cut.history_) == 3
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert resumed.history_ == whole.history_
    a, b = _state(whole), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_callback_that_raises_stops_the_fit_with_its_epoch_saved_and_resumable(tmp_path):
    whole = FactVAE(latent_dim=2, lam=0.5).fit(small_groups(), **FIT)

    def failing(event):
        if event.epoch == 3:
            raise OSError("disk full")

    path = tmp_path / "run.ckpt"
    cut = FactVAE(latent_dim=2, lam=0.5)
    with pytest.raises(OSError, match="disk full") as info:
        cut.fit(small_groups(), callbacks=[failing], checkpoint=path, **FIT)
    assert info.value.__notes__ == [
        f"a callback raised at epoch 3: the fit stopped there, saved in {str(path)!r}: "
        f"fit(data, resume={str(path)!r}) continues it"
    ]
    assert cut.interrupted_ == "callback" and len(cut.history_) == 3
    resumed = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert resumed.history_ == whole.history_
    a, b = _state(whole), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    bare = FactVAE(latent_dim=2, lam=0.5)
    with pytest.raises(OSError) as info:
        bare.fit(small_groups(), callbacks=[failing], **FIT)
    assert "the model holds its weights then" in info.value.__notes__[0]
    assert bare.interrupted_ == "callback" and len(bare.history_) == 3

    def refusing(event):  # a ValueError too: the model keeps its epochs, as it says
        if event.epoch == 3:
            raise ValueError("not this one")

    kept = FactVAE(latent_dim=2, lam=0.5)
    with pytest.raises(ValueError, match="not this one"):
        kept.fit(small_groups(), callbacks=[refusing], **FIT)
    assert kept.model_ is not None and len(kept.history_) == 3

    def interrupting(event):  # as a Ctrl-C inside a notebook's callback
        if event.epoch == 3:
            raise KeyboardInterrupt

    rare = tmp_path / "rare.ckpt"  # written only at the stop
    stopped = FactVAE(latent_dim=2, lam=0.5)
    with pytest.raises(KeyboardInterrupt) as info:
        stopped.fit(
            small_groups(), callbacks=[interrupting], checkpoint=rare, checkpoint_every=10**6, **FIT
        )
    assert info.value.__notes__[0].startswith("a callback raised at epoch 3")
    assert stopped.interrupted_ == "callback" and rare.exists()
    resumed = FactVAE().fit(small_groups(), resume=rare, progress=False)
    assert resumed.history_ == whole.history_


def test_callbacks_follow_the_default_fit_through_its_lam_path():
    seen = []
    vae = FactVAE(latent_dim=2).fit(
        small_groups(), epochs=8, seed=1, progress=False, callbacks=[seen.append]
    )
    assert len(seen) == len(vae.history_) and {e.lam for e in seen} >= {0.0, 1.0}
    stages = [e.stage for e in seen]  # the walk, then the chosen lam's fit on every row
    assert stages == sorted(stages, key=["path", "final"].index) and stages[-1] == "final"
    walked = [e.target_lam for e in seen if e.stage == "path"]
    assert walked == sorted(walked) and walked[-1] == vae.lam_path_["lams"][-1]
    assert {e.target_lam for e in seen if e.stage == "final"} == {vae.lam_}
    assert {e.stage for e in seen if e.phase == "relaxed refit"} == {"path", "final"}
    fixed = []
    FactVAE(latent_dim=2, lam=0.5).fit(small_groups(), callbacks=[fixed.append], **FIT)
    assert {(e.stage, e.target_lam) for e in fixed} == {("fit", 0.5)}


def test_csv_and_tensorboard_logs_are_written(tmp_path):
    pytest.importorskip("tensorboard")
    log = tmp_path / "history.csv"
    board = TensorBoardLogger(tmp_path / "tb")
    vae = FactVAE(latent_dim=2, lam=0.5).fit(
        small_groups(), callbacks=[CSVLogger(log), board], **FIT
    )
    board.close()
    rows = list(csv.DictReader(open(log)))
    assert [float(r["loss"]) for r in rows] == vae.history_
    assert set(rows[0]) == {
        *("epoch", "phase", "loss", "prior", "lam", "active_links", "target_lam", "stage")
    }
    events = list((tmp_path / "tb").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 100


def test_the_cli_logs_every_epoch_to_a_folder(tmp_path, capsys):
    import numpy as np

    from pyro_factvae.cli import main

    path = tmp_path / "data.npz"
    np.savez(path, **small_groups())
    logs = tmp_path / "logs"
    args = ["fit", str(path), "-o", str(tmp_path / "m.factvae"), "--epochs", "4", "--lam", "0.1"]
    assert main([*args, "--no-progress", "--log-dir", str(logs)]) == 0
    rows = list(csv.DictReader(open(logs / "history.csv")))
    assert len(rows) == 4 and rows[-1]["epoch"] == "4"


def test_only_a_true_answer_stops_and_a_stop_on_any_rank_stops_every_rank():
    import numpy as np

    from pyro_factvae.infer.distributed import World
    from pyro_factvae.infer.run import Trainer

    counted = FactVAE(latent_dim=2, lam=0.5).fit(
        small_groups(),
        callbacks=[lambda e: 17],
        **FIT,  # a count, as file.write returns
    )
    assert counted.interrupted_ is None and len(counted.history_) == 6
    numpy_true = FactVAE(latent_dim=2, lam=0.5).fit(
        small_groups(), callbacks=[lambda e: np.float64(e.epoch) >= 2], **FIT
    )
    assert numpy_true.interrupted_ == "callback" and len(numpy_true.history_) == 2

    class OtherRankStops(World):  # this rank's callbacks say nothing; another rank's stop
        def max_over_ranks(self, value):
            self.calls = getattr(self, "calls", 0) + 1
            return max(value, 1) if self.calls == 5 else value

    vae = FactVAE(latent_dim=2, lam=0.5)
    data = vae.prepare(small_groups())
    given = dict(epochs=6, batch_size=16, seed=2, patience=None)
    Trainer(vae.fit_state, OtherRankStops()).train(data, given)
    assert vae.interrupted_ == "callback" and len(vae.history_) < 6


def test_logs_are_written_by_rank_0_alone(tmp_path, monkeypatch):
    import pyro_factvae.infer.callbacks as callbacks

    monkeypatch.setattr(callbacks, "is_writer", lambda: False)  # as on rank 1 of torchrun
    loggers = [CSVLogger(tmp_path / "history.csv")]
    if _has_tensorboard():
        loggers.append(TensorBoardLogger(tmp_path / "tb"))
    FactVAE(latent_dim=2, lam=0.5).fit(small_groups(), callbacks=loggers, **FIT)
    for logger in loggers[1:]:
        logger.close()
    assert list(tmp_path.rglob("*")) == []  # no file, no events folder


def _has_tensorboard():
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def test_a_raising_callback_leaves_the_epoch_to_the_others_and_to_early_stopping(tmp_path):
    fit = dict(FIT, patience=1, relax_epochs=0, warmup_epochs=0)
    whole = FactVAE(latent_dim=2, lam=0.5).fit(small_groups(n=120), **fit)

    def failing(event):
        if event.epoch == 2:
            raise OSError("alert hook failed")

    seen, path = [], tmp_path / "run.ckpt"
    with pytest.raises(OSError, match="alert hook failed"):
        FactVAE(latent_dim=2, lam=0.5).fit(
            small_groups(n=120), callbacks=[failing, seen.append], checkpoint=path, **fit
        )
    assert [e.epoch for e in seen] == [1, 2]  # the callback after the raising one saw epoch 2
    resumed = FactVAE().fit(small_groups(n=120), resume=path, progress=False)
    assert resumed.history_ == whole.history_  # epoch 2 was scored for early stopping
    a, b = _state(whole), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_ctrl_c_in_a_callback_stops_at_once_without_the_others():
    seen = []

    def interrupting(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        FactVAE(latent_dim=2, lam=0.5).fit(
            small_groups(), callbacks=[interrupting, seen.append], **FIT
        )
    assert seen == []  # a Ctrl-C is "stop now": the callbacks after it do not run
