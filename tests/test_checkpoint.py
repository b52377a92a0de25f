"""Checkpoints that resume bit for bit, survive SIGKILL, refuse unsafe files; no silent NaNs."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pyro
import pytest
import torch

import pyro_factvae.infer.loop as train_module
from pyro_factvae import FactVAE
from pyro_factvae.infer.loop import NonFiniteError
from pyro_factvae.io import atomic_save, read_payload

from .conftest import small_groups

STEPS = 4 * 3  # 4 epochs of 40 rows in batches of 16


def _state(vae):
    out = {f"m.{k}": v.clone() for k, v in vae.model_.state_dict().items()}
    out.update({f"g.{k}": v.clone() for k, v in vae.guide_.state_dict().items()})
    return out


def _interrupt_at(monkeypatch, step, sig=signal.SIGINT):
    """Deliver ``sig`` to this process during training step ``step``."""
    original = train_module.guarded_step
    count = {"n": 0}

    def step_then_signal(*args, **kwargs):
        out = original(*args, **kwargs)
        count["n"] += 1
        if count["n"] == step:
            signal.raise_signal(sig)
        return out

    monkeypatch.setattr(train_module, "guarded_step", step_then_signal)


# a random step for each mode (fixed seed): the MAP and the variational phase both get hit
_RNG = np.random.default_rng(5)
CASES = [
    ({}, int(_RNG.integers(1, STEPS))),
    ({"phi_inference": "variational"}, int(_RNG.integers(1, 6))),
    ({"phi_inference": "variational"}, int(_RNG.integers(7, STEPS))),
    ({"inference": "mixture"}, int(_RNG.integers(1, STEPS))),
    ({}, STEPS),  # the very last step
]


@pytest.mark.parametrize("config, stop", CASES)
def test_interrupt_then_resume_equals_the_uninterrupted_run(config, stop, tmp_path, monkeypatch):
    data = small_groups()
    fit = dict(epochs=4, batch_size=16, progress=False, seed=3)
    whole = FactVAE(latent_dim=3, lam=0.3, **config).fit(data, **fit)
    expected, history = _state(whole), list(whole.history_)

    pyro.clear_param_store()
    path = tmp_path / "run.ckpt"
    _interrupt_at(monkeypatch, stop)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the shell started us in the background
    cut = FactVAE(latent_dim=3, lam=0.3, **config).fit(data, checkpoint=path, **fit)
    assert cut.interrupted_ == "SIGINT"
    assert signal.getsignal(signal.SIGINT) is before  # the caller's handler restored
    monkeypatch.undo()

    pyro.set_rng_seed(999)  # resuming must not depend on the RNGs as they are now
    next_draw = torch.rand(4)
    pyro.set_rng_seed(999)
    resumed = FactVAE().fit(data, resume=path, progress=False)
    assert resumed.interrupted_ is None and resumed.config.latent_dim == 3
    got = _state(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)  # bit for bit
    assert resumed.history_ == history
    assert torch.equal(torch.rand(4), next_draw)  # the caller's RNG is left as it was


def test_sigterm_stops_after_the_step_and_writes_a_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    _interrupt_at(monkeypatch, 2, signal.SIGTERM)
    vae = FactVAE(latent_dim=2, lam=1.0).fit(
        small_groups(), epochs=3, batch_size=16, checkpoint=path, progress=False
    )
    assert vae.interrupted_ == "SIGTERM" and len(vae.history_) == 0
    meta, _ = read_payload(path)
    assert meta["run"]["global_step"] == 2 and meta["run"]["position"]["batch"] == 2
    monkeypatch.undo()
    with pytest.warns(UserWarning, match="no checkpoint path was given"):
        _interrupt_at(monkeypatch, 1)
        FactVAE(latent_dim=2, lam=1.0).fit(small_groups(), epochs=1, progress=False)


def test_sigkill_during_a_checkpoint_write_leaves_the_previous_one(tmp_path):
    path = tmp_path / "run.ckpt"
    np.savez(tmp_path / "data.npz", **small_groups())
    script = textwrap.dedent(
        f"""
        import time, numpy as np, torch
        import pyro_factvae.io as persist
        from pyro_factvae import FactVAE
        real_save, calls = torch.save, [0]
        def slow_save(obj, f, *args, **kwargs):
            calls[0] += 1
            if calls[0] == 3:  # the third checkpoint: half written, then stuck
                f.write(b"half a checkpoint"); f.flush()
                print("WRITING", flush=True)
                time.sleep(120)
            return real_save(obj, f, *args, **kwargs)
        persist.torch.save = slow_save
        data = dict(np.load({str(tmp_path / "data.npz")!r}))
        FactVAE(latent_dim=2, lam=1.0).fit(data, epochs=5, batch_size=16, checkpoint={str(path)!r},
                                  checkpoint_every=1, progress=False)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "WRITING"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
    meta, _ = read_payload(path)  # the second checkpoint, complete
    assert meta["run"]["global_step"] == 2
    resumed = FactVAE().fit(dict(np.load(tmp_path / "data.npz")), resume=path, progress=False)
    assert len(resumed.history_) == 5


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_non_finite_loss_names_step_term_and_checkpoint(tmp_path):
    data = small_groups()
    vae = FactVAE(latent_dim=2, lam=1.0).fit(
        data, epochs=1, progress=False, checkpoint=tmp_path / "c"
    )
    with torch.no_grad():
        b, i = vae.layout_.locate(1)
        vae.model_.likelihoods[b].raw_scale[i] = float("nan")  # break group b's likelihood
    before = _state(vae)
    with pytest.raises(NonFiniteError) as info:
        vae.fit(data, epochs=1, progress=False, checkpoint=tmp_path / "c", checkpoint_every=1)
    message = str(info.value)
    assert "step 1 (epoch 1, batch 1)" in message
    assert "likelihood of group 'b'" in message and "from before this fit call" in message
    after = _state(vae)
    for k in before:  # last finite values kept (the NaN we planted stays NaN)
        assert torch.allclose(before[k], after[k], rtol=0, atol=0, equal_nan=True), k


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_non_finite_error_names_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = train_module.guarded_step
    count = {"n": 0}

    def break_at_third(objective, optim, args, pos, **kwargs):
        count["n"] += 1
        if count["n"] == 3:
            args = ([x * float("nan") for x in args[0]], *args[1:])
        return original(objective, optim, args, pos, **kwargs)

    monkeypatch.setattr(train_module, "guarded_step", break_at_third)
    path = tmp_path / "c"
    with pytest.raises(NonFiniteError, match=r"step 3 .*last good checkpoint is .*\(step 2\)"):
        FactVAE(latent_dim=2, lam=1.0).fit(
            small_groups(),
            epochs=2,
            batch_size=16,
            checkpoint=path,
            checkpoint_every=1,
            progress=False,
        )


@pytest.mark.parametrize("scale, shift", [(1e6, 1e3), (1e-6, -5e-6), (1e12, 0.0)])
def test_normal_groups_are_standardized_inside_the_model(scale, shift):
    small = small_groups()
    big = {k: v * scale + shift for k, v in small.items()}
    a = FactVAE(latent_dim=2, lam=1.0).fit(small, epochs=3, progress=False)
    b = FactVAE(latent_dim=2, lam=1.0).fit(big, epochs=3, progress=False)
    assert np.isfinite(b.history_).all()
    exact = dict(num_samples=0, refine_steps=0)  # q's mean decoded: no Monte Carlo draw
    for k in small:  # the same fit, in the user's units
        np.testing.assert_allclose(
            (b.impute(big, **exact)[k] - shift) / scale, a.impute(small, **exact)[k], atol=1e-3
        )
        # at the defaults each row's draws are keyed by its values, which the units change:
        # the same up to the means' Monte Carlo error
        np.testing.assert_allclose(
            (b.impute(big)[k] - shift) / scale, a.impute(small)[k], atol=0.03
        )
    np.testing.assert_allclose(b.sparsity().values, a.sparsity().values, atol=1e-3)


def test_model_files_keep_the_standardization(tmp_path):
    big = {k: v * 1e4 + 7.0 for k, v in small_groups().items()}
    vae = FactVAE(latent_dim=2, lam=1.0).fit(big, epochs=1, progress=False)
    vae.save(tmp_path / "m.pt")
    back = FactVAE.load(tmp_path / "m.pt")
    lik = back.model_.likelihoods[0]
    assert float(lik.unit.mean()) > 1e3 and float(lik.shift.abs().mean()) > 1.0
    for k in big:
        np.testing.assert_array_equal(back.impute(big)[k], vae.impute(big)[k])


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.ckpt"
    torch.save({"meta": "{}", "model": Evil()}, path)
    for load in (FactVAE.load, lambda p: FactVAE().fit(small_groups(), resume=p)):
        with pytest.raises(ValueError, match="could run code; refused"):
            load(path)
    assert not marker.exists()


def _tampered(tmp_path, edit):
    vae = FactVAE(latent_dim=2, lam=1.0).fit(small_groups(), epochs=1, progress=False)
    path = tmp_path / "m.pt"
    vae.save(path)
    meta, payload = read_payload(path)
    edit(meta)
    payload["meta"] = json.dumps(meta)
    atomic_save(payload, path)
    return path


def test_other_version_or_config_fails_with_a_message(tmp_path):
    newer = _tampered(tmp_path, lambda m: m.update(version="9.0.0"))
    with pytest.raises(ValueError, match="written by pyro_factvae 9.0.0"):
        FactVAE.load(newer)
    later = _tampered(tmp_path, lambda m: m.update(format_version=4))
    with pytest.raises(ValueError, match="file format 4.*reads formats 2, 3"):
        FactVAE.load(later)
    wider = _tampered(tmp_path, lambda m: m["config"].update(latent_dim=5))
    with pytest.raises(ValueError, match="do not match its config"):
        FactVAE.load(wider)
    bad = _tampered(tmp_path, lambda m: m["config"].update(keep_prob=3.0))
    with pytest.raises(ValueError, match="invalid config"):
        FactVAE.load(bad)
    own = _tampered(tmp_path, lambda m: m["layout"]["likelihoods"].__setitem__(0, "laplace-own"))
    says = r"uses the likelihood 'laplace-own', which is not registered in this session: run"
    with pytest.raises(ValueError, match=says):
        FactVAE.load(own)


def test_resume_needs_a_checkpoint_and_the_same_data(tmp_path):
    data = small_groups()
    vae = FactVAE(latent_dim=2, lam=1.0).fit(
        data, epochs=1, progress=False, checkpoint=tmp_path / "c"
    )
    vae.save(tmp_path / "model.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        FactVAE().fit(data, resume=tmp_path / "model.pt")
    other = {k: v + 1.0 for k, v in data.items()}
    with pytest.raises(ValueError, match="data differ"):
        FactVAE().fit(other, resume=tmp_path / "c")
    assert FactVAE.load(tmp_path / "c").sparsity().shape == (3, 2)  # a checkpoint loads too


def test_resuming_a_finished_run_returns_the_fitted_model(tmp_path):
    path = tmp_path / "done.ckpt"
    whole = FactVAE(latent_dim=2, lam=1.0).fit(
        small_groups(), epochs=2, checkpoint=path, progress=False
    )
    again = FactVAE().fit(small_groups(), resume=path, progress=False)
    assert again.history_ == whole.history_ and again.interrupted_ is None
    assert again.sparsity().equals(whole.sparsity())


def test_resume_refuses_settings_it_would_ignore_and_takes_the_same_script(tmp_path):
    path = tmp_path / "run.ckpt"
    first = FactVAE(latent_dim=2, lam=1.0)  # encoder and decoder widths "auto"
    first.fit(small_groups(), epochs=3, checkpoint=path, progress=False)
    with pytest.raises(ValueError, match=r"epochs=99 \(file: 3\)"):
        FactVAE().fit(small_groups(), resume=path, epochs=99)
    with pytest.raises(ValueError, match=r"latent_dim=7 \(file: 2\)"):
        FactVAE(latent_dim=7, lam=1.0).fit(small_groups(), resume=path)
    # the same script run again with resume= agrees with the file once resolved
    same = FactVAE(latent_dim=2, lam=1.0)
    same.fit(small_groups(), epochs=3, checkpoint=path, resume=path, progress=False)
    assert same.history_ == first.history_
    widths = {k: first.config.user_dict()[k] for k in ("encoder_width", "decoder_width")}
    explicit = FactVAE(latent_dim=2, lam=1.0, **widths)
    explicit.fit(small_groups(), resume=path, progress=False)
    assert explicit.sparsity().equals(first.sparsity())


def test_a_resumed_run_keeps_writing_its_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    _interrupt_at(monkeypatch, 2)
    FactVAE(latent_dim=2, lam=1.0).fit(small_groups(), epochs=3, batch_size=16, checkpoint=path)
    monkeypatch.undo()
    assert read_payload(path)[0]["run"]["global_step"] == 2
    FactVAE().fit(small_groups(), resume=path, progress=False)
    meta, _ = read_payload(path)
    assert meta["run"]["phase"] == 1 and meta["run"]["global_step"] == 9  # the end


def test_early_stopping_runs_resume_bit_for_bit(tmp_path, monkeypatch):
    data = small_groups(n=60)
    fit = dict(epochs=6, batch_size=16, progress=False, seed=2, patience=1, warmup_epochs=1)
    whole = FactVAE(latent_dim=2, lam=1.0).fit(data, **fit)
    path = tmp_path / "run.ckpt"
    _interrupt_at(monkeypatch, 7)
    FactVAE(latent_dim=2, lam=1.0).fit(data, checkpoint=path, **fit)
    monkeypatch.undo()
    resumed = FactVAE().fit(data, resume=path, progress=False)
    assert resumed.history_ == whole.history_
    expected, got = _state(whole), _state(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_model_files_and_checkpoints_follow_the_umask(tmp_path, groups):
    import stat

    old = os.umask(0o022)
    try:
        vae = FactVAE(latent_dim=2, lam=0.1)
        vae.fit(groups, epochs=2, checkpoint=tmp_path / "run.ckpt", progress=False)
        vae.save(tmp_path / "m.factvae")
        for name in ("run.ckpt", "m.factvae"):
            assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o644
        os.umask(0o077)
        vae.save(tmp_path / "private.factvae")
        assert stat.S_IMODE(os.stat(tmp_path / "private.factvae").st_mode) == 0o600
    finally:
        os.umask(old)


def test_checkpoint_every_without_a_checkpoint_is_refused():
    data = {"a": np.random.default_rng(0).normal(size=(30, 2)), "b": np.ones((30, 1))}
    with pytest.raises(ValueError, match="checkpoint_every sets how often .* give checkpoint"):
        FactVAE(lam=0.1).fit(data, epochs=1, checkpoint_every=5, progress=False)


def test_a_loaded_model_goes_on_training_as_the_process_that_saved_it(tmp_path):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(80, 2))
    data = {"a": z @ rng.normal(size=(2, 3)), "b": z @ rng.normal(size=(2, 2))}
    more = dict(epochs=4, progress=False, relax_epochs=0, patience=None)
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=4, progress=False)
    vae.save(tmp_path / "m.factvae")
    loaded = FactVAE.load(tmp_path / "m.factvae")
    loaded.save(tmp_path / "again.factvae")  # not trained since: the moments kept
    again = FactVAE.load(tmp_path / "again.factvae")
    vae.fit(data, **more)
    for other in (loaded, again):
        other.fit(data, **more)
        assert other.history_ == vae.history_  # the same moments, the same steps
    fresh = FactVAE.load(tmp_path / "m.factvae").reset_optimizers().fit(data, **more)
    assert fresh.history_[-4:] != vae.history_[-4:]


def test_a_model_saved_without_its_optimizers_is_smaller_and_starts_them_afresh(tmp_path):
    rng = np.random.default_rng(0)
    data = {"a": rng.normal(size=(60, 3)), "b": rng.normal(size=(60, 2))}
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=3, progress=False)
    vae.save(tmp_path / "full.factvae")
    vae.save(tmp_path / "lean.factvae", optimizers=False)
    full, lean = (
        (tmp_path / "full.factvae").stat().st_size,
        (tmp_path / "lean.factvae").stat().st_size,
    )
    assert lean < 0.6 * full
    more = dict(epochs=2, progress=False, relax_epochs=0, patience=None)
    fresh = FactVAE.load(tmp_path / "full.factvae").reset_optimizers().fit(data, **more)
    assert FactVAE.load(tmp_path / "lean.factvae").fit(data, **more).history_ == fresh.history_


def test_a_loaded_checkpoint_trains_on_with_the_runs_moments(tmp_path):
    data, path = small_groups(), tmp_path / "k.ckpt"
    fitted = FactVAE(latent_dim=2, lam=0.1)
    fitted.fit(data, epochs=4, patience=None, checkpoint=path, progress=False)
    loaded = FactVAE.load(path)
    fitted.fit(data, epochs=2, progress=False)
    loaded.fit(data, epochs=2, progress=False)
    assert loaded.history_ == fitted.history_


def test_model_files_refuse_bad_metadata_folders_and_a_paths_side_file(tmp_path):
    data = small_groups()
    vae = FactVAE(latent_dim=2, lam=0.1).fit(data, epochs=1, progress=False)
    with pytest.raises(ValueError, match="extra must be JSON-ready"):
        vae.save(tmp_path / "m.pt", extra={"arr": np.arange(3)})
    vae.save(tmp_path / "m.pt")  # the bad extra was not kept
    assert FactVAE.load(tmp_path / "m.pt").metadata_ == {}
    vae.save(tmp_path / "x.pt", extra={1: "one", "pair": (1, 2)})  # as JSON keeps it, at once
    assert (
        vae.metadata_ == FactVAE.load(tmp_path / "x.pt").metadata_ == {"1": "one", "pair": [1, 2]}
    )
    np.savez(tmp_path / "d.npz", a=np.zeros(3))  # a whole zip of another kind
    with pytest.raises(ValueError, match="a zip archive of another kind"):
        FactVAE.load(tmp_path / "d.npz")
    broken = bytearray((tmp_path / "x.pt").read_bytes())
    second = broken.index(b"PK\x03\x04", 4)  # a member's header: torch cannot read it
    broken[second : second + 4] = bytes(4)  # torch's own archive, its index intact
    (tmp_path / "broken.pt").write_bytes(bytes(broken))
    with pytest.raises(ValueError, match="is not a loadable FactVAE file: it is truncated or"):
        FactVAE.load(tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="is a folder; give a file name"):
        vae.save(str(tmp_path / "new") + "/")
    with pytest.raises(ValueError, match="is a folder, not a FactVAE file"):
        FactVAE.load(tmp_path)
    auto = tmp_path / "auto.ckpt"
    FactVAE(latent_dim=2).fit(data, epochs=4, checkpoint=auto, progress=False)
    for bad in (
        lambda: FactVAE().fit(data, resume=str(auto) + ".path"),
        lambda: FactVAE.load(str(auto) + ".path"),
    ):
        with pytest.raises(ValueError, match="scored lams of a lam='auto' fit"):
            bad()
    with pytest.raises(ValueError, match="written by a lam='auto' fit: resume it with lam left"):
        FactVAE(lam=0.3).fit(data, resume=auto)


def test_set_columns_checks_the_fitted_widths_and_columns_used_once():
    vae = FactVAE(latent_dim=2, lam=0.1).fit(small_groups(), epochs=1, progress=False)
    widths = dict(zip(vae.layout_.names, vae.layout_.dims))
    assert widths == {"a": 3, "b": 3, "c": 2}
    good = {"a": ["p", "q", "r"], "b": ["s", "t", "u"], "c": ["v", "w"]}
    assert vae.set_columns(good).columns_ == good
    for bad, message in [
        ({**good, "a": ["p", "q"]}, r"group 'a' has 2 columns, the model was fitted on 3"),
        ({**good, "c": ["v", "p"]}, r"column 'p' is in groups 'a' and 'c'"),
        ({**good, "a": []}, "group 'a' has no columns"),
    ]:
        with pytest.raises(ValueError, match=message):
            vae.set_columns(bad)
    assert vae.columns_ == good


def test_a_resumed_frame_fit_checks_groups_and_a_frames_mapping_is_kept(tmp_path):
    import pandas as pd

    from pyro_factvae import GroupedData

    groups = small_groups()
    frame = pd.DataFrame(np.hstack(list(groups.values())), columns=[f"c{j}" for j in range(8)])
    spec = {"a": ["c0", "c1", "c2"], "b": ["c3", "c4", "c5"], "c": ["c6", "c7"]}
    path = tmp_path / "f.ckpt"
    FactVAE(latent_dim=2, lam=0.1).fit(frame, groups=spec, epochs=2, checkpoint=path)
    other = {"a": ["c1", "c0", "c2"], "b": spec["b"], "c": spec["c"]}
    with pytest.raises(ValueError, match="groups= differ from the column mapping saved"):
        FactVAE().fit(frame, groups=other, resume=path)
    assert FactVAE().fit(frame, groups=spec, resume=path, progress=False).columns_ == spec
    auto = tmp_path / "auto.ckpt"  # a lam="auto" run on arrays, resumed with a frame
    FactVAE(latent_dim=2).fit(groups, epochs=4, checkpoint=auto, progress=False)
    assert FactVAE().fit(frame, groups=spec, resume=auto, progress=False).columns_ == spec
    built = GroupedData.from_dataframe(frame, spec)  # its mapping travels with the model
    vae = FactVAE(latent_dim=2, lam=0.1).fit(built, epochs=1, progress=False)
    assert vae.columns_ == spec and vae.impute(frame).shape == frame.shape


def test_a_gradient_too_large_to_square_stops_before_the_update_with_weights_finite(tmp_path):
    vae = FactVAE(latent_dim=2, lam=0.1)
    with pytest.raises(NonFiniteError, match="too large to square in float32") as info:
        vae.fit(small_groups(n=120), epochs=5, batch_size=32, lr=1e3, phi_lr=1e3, progress=False)
    assert "keep their last finite values" in str(info.value)
    params = [*vae.model_.parameters(), *vae.guide_.parameters()]
    assert all(torch.isfinite(p).all() for p in params)


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_a_checkpoint_file_of_another_run_is_not_named_as_this_fits_state(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    FactVAE(latent_dim=2, lam=1.0).fit(small_groups(seed=3), epochs=1, checkpoint=path)
    original = train_module.guarded_step

    def broken(objective, optim, args, pos, **kwargs):
        args = ([x * float("nan") for x in args[0]], *args[1:])
        return original(objective, optim, args, pos, **kwargs)

    monkeypatch.setattr(train_module, "guarded_step", broken)
    with pytest.raises(NonFiniteError, match="no checkpoint was written"):
        FactVAE(latent_dim=2, lam=1.0).fit(
            small_groups(), epochs=1, checkpoint=path, checkpoint_every=10, progress=False
        )


@pytest.mark.filterwarnings("ignore:Encountered NaN")
def test_a_resumed_fit_names_the_checkpoint_it_resumed_from_as_its_state(tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    stop = lambda e: e.epoch == 1  # noqa: E731
    FactVAE(latent_dim=2, lam=1.0).fit(
        small_groups(), epochs=3, checkpoint=path, callbacks=[stop], progress=False
    )
    original = train_module.guarded_step

    def broken(objective, optim, args, pos, **kwargs):
        args = ([x * float("nan") for x in args[0]], *args[1:])
        return original(objective, optim, args, pos, **kwargs)

    monkeypatch.setattr(train_module, "guarded_step", broken)
    with pytest.raises(NonFiniteError, match="holds the state from before this fit call"):
        FactVAE().fit(small_groups(), resume=path, progress=False)


def test_the_step_check_stops_a_gradient_too_large_to_square_not_many_large_ones():
    from types import SimpleNamespace

    from pyro_factvae.infer.loop import Position, guarded_step

    w = torch.nn.Parameter(torch.ones(1000, 1000))

    def objective(scale):
        total = (w * scale).sum()
        return SimpleNamespace(loss=total, data=total, named=lambda: {"likelihood": total})

    stepped = []
    opt = SimpleNamespace(params=[w], step=lambda: stepped.append(1), zero_grad=lambda: None)
    # each |g| = 2e16 squares finitely, though the float32 sum of the squares overflows
    guarded_step(objective, opt, (2e16,), Position())
    assert stepped == [1]
    w.grad = None
    with pytest.raises(NonFiniteError, match="too large to square in float32"):
        guarded_step(objective, opt, (1e20,), Position())
    assert stepped == [1]


def test_the_step_check_stops_a_large_negative_or_nan_gradient_under_a_finite_loss():
    from types import SimpleNamespace

    from pyro_factvae.infer.loop import Position, guarded_step

    w, v = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))

    def objective(grad):
        # a finite loss whose gradient in w is ``grad`` in every entry
        hooked = w.clone()
        hooked.register_hook(lambda g: torch.full_like(g, grad))
        total = hooked.sum() + v.sum()
        return SimpleNamespace(loss=total, data=total, named=lambda: {"likelihood": total})

    stepped = []
    opt = SimpleNamespace(params=[w, v], step=lambda: stepped.append(1), zero_grad=lambda: None)
    guarded_step(objective, opt, (-1e16,), Position())
    assert stepped == [1]
    for grad in (-1e20, float("nan")):
        w.grad = v.grad = None
        with pytest.raises(NonFiniteError, match="gradient became non-finite or too large"):
            guarded_step(objective, opt, (grad,), Position())
    assert stepped == [1]
