import re

import numpy as np
import pytest

from pyro_factvae.datasets.mocap import (
    JOINT_GROUPS,
    MOCAP6_CHANNELS,
    MinMax,
    Motion,
    group_channels,
    load_cmu,
    load_mocap6,
    read_amc,
    read_asf,
    to_grouped,
)

ASF = """# tiny CMU-style skeleton
:version 1.10
:name VICON
:units
  angle deg
:root
   order TX TY TZ RX RY RZ
   axis XYZ
:bonedata
  begin
     id 1
     name lhipjoint
     axis 0 0 0 XYZ
  end
  begin
     id 2
     name lowerback
     dof rx ry rz
  end
  begin
     id 3
     name rhumerus
     dof rx ry
  end
  begin
     id 4
     name lfemur
     dof rx
  end
:hierarchy
  begin
    root lhipjoint lowerback
  end
"""


def amc_text(frames):
    lines = ["#!OML:ASF 07.asf", ":FULLY-SPECIFIED", ":DEGREES"]
    for t, (root, back, arm, leg) in enumerate(frames, 1):
        lines += [
            str(t),
            "root " + " ".join(map(str, root)),
            "lowerback " + " ".join(map(str, back)),
            "rhumerus " + " ".join(map(str, arm)),
            "lfemur " + " ".join(map(str, leg)),
        ]
    return "\n".join(lines) + "\n"


def frames(n, seed):
    rng = np.random.default_rng(seed)
    return [
        (
            rng.normal(size=6).round(3),
            rng.normal(size=3).round(3),
            rng.normal(size=2).round(3),
            rng.normal(size=1).round(3),
        )
        for _ in range(n)
    ]


@pytest.fixture
def cmu_dir(tmp_path):
    (tmp_path / "07.asf").write_text(ASF)
    for trial in (1, 2):
        (tmp_path / f"07_{trial:02d}.amc").write_text(amc_text(frames(3 + trial, trial)))
    return tmp_path


def test_asf_channels_come_from_root_order_and_dof(cmu_dir):
    skel = read_asf(cmu_dir / "07.asf")
    assert skel == {
        "root": ["tx", "ty", "tz", "rx", "ry", "rz"],
        "lowerback": ["rx", "ry", "rz"],
        "rhumerus": ["rx", "ry"],
        "lfemur": ["rx"],
    }  # lhipjoint has no dof: no channels


def test_amc_values_land_in_their_channels(cmu_dir):
    skel = read_asf(cmu_dir / "07.asf")
    fr = frames(4, 1)
    motion = read_amc(cmu_dir / "07_01.amc", skel)
    assert motion.frames.shape == (4, 12)
    want = np.stack([np.concatenate(f) for f in fr])
    np.testing.assert_allclose(motion.frames, want)
    assert motion.channels[3] == "root.rx" and motion.channels[-1] == "lfemur.rx"


def test_load_cmu_groups_drop_root_translation_and_scale(cmu_dir):
    motion = load_cmu(cmu_dir, subject=7, trials=[1, 2])
    assert motion.frames.shape == (4 + 5, 12)
    assert motion.sequences.tolist() == [1] * 4 + [2] * 5
    cols = group_channels(motion.channels)
    assert [motion.channels[i] for i in cols["core"]] == [
        "root.rx",
        "root.ry",
        "root.rz",
        "lowerback.rx",
        "lowerback.ry",
        "lowerback.rz",
    ]
    assert set(cols) == {"core", "right_arm", "left_leg"}  # groups without channels left out
    train = motion.select([1])
    scaler = MinMax.fit(train.frames)
    data = to_grouped(train, scaler)
    core = data.to_numpy()["core"]
    assert core.min() == pytest.approx(0.0) and core.max() <= 1.0
    test = to_grouped(motion.select([2]), scaler)  # train statistics: may leave [0, 1]
    assert len(test) == 5 and test.names == ["core", "right_arm", "left_leg"]
    np.testing.assert_allclose(scaler.inverse(scaler.transform(motion.frames)), motion.frames)


def test_minmax_floors_tiny_ranges():
    scaler = MinMax.fit(np.array([[0.0, 1.0], [0.01, 3.0]]))
    np.testing.assert_allclose(scaler.span, [0.1, 2.0])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.rsplit("\n", 2)[0] + "\n", r"07_01\.amc, line \d+: frame starting at line"),
        (lambda t: t.replace("rhumerus", "rhumerrus", 1), r"line 7: unknown joint 'rhumerrus'"),
        (lambda t: t.replace("\nlfemur ", "\nlfemur 1.0 ", 1), r"line 8: joint 'lfemur' has 2"),
        (lambda t: t.replace("\nlfemur ", "\nlfemur x", 1), r"line 8: .*not numbers"),
        (lambda t: re.sub(r"\nlfemur \S+", "\nlfemur nan", t, count=1), r"line 8: .*not finite"),
        (lambda t: re.sub(r"(\nlfemur \S+)", r"\1\1", t, count=1), r"line 9: .*appears twice"),
        (lambda t: t.replace("\n2\n", "\n1\n", 1), r"line 9: frame 1 after frame 1: frames must"),
    ],
)
def test_amc_rejects_malformed_files_naming_file_and_line(cmu_dir, edit, message):
    path = cmu_dir / "07_01.amc"
    path.write_text(edit(path.read_text()))
    with pytest.raises(ValueError, match=message):
        read_amc(path, read_asf(cmu_dir / "07.asf"))


def test_asf_and_missing_files_are_clear_errors(cmu_dir, tmp_path):
    bad = tmp_path / "bad.asf"
    bad.write_text(":bonedata\n begin\n dof rx\n end\n")
    with pytest.raises(ValueError, match=r"bad\.asf, line 4: a bone ends without"):
        read_asf(bad)
    cut = ASF.replace("dof rx\n  end\n:hierarchy", "dof rx\n:hierarchy")  # lfemur never ends
    bad.write_text(cut)
    with pytest.raises(ValueError, match=r"bad\.asf, line \d+: the bone that begins here has no"):
        read_asf(bad)
    twice = ASF.replace("name lowerback", "name lfemur")
    bad.write_text(twice)
    with pytest.raises(ValueError, match=r"bone 'lfemur' is named twice"):
        read_asf(bad)
    with pytest.raises(ValueError, match="no skeleton file"):
        load_cmu(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="no motion file .*07_03.amc"):
        load_cmu(cmu_dir, trials=[1, 3])
    with pytest.raises(ValueError, match="is in no group"):
        group_channels(["tail.rx"])


def test_mocap6_reader_groups_the_twelve_channels(tmp_path):
    names = np.array([c.encode() for c in MOCAP6_CHANNELS])
    x = np.arange(7 * 12, dtype=float).reshape(7, 12)
    path = tmp_path / "dataset.npz"
    np.savez(path, X=x, column_names=names, doc_range=np.array([0, 3, 7]))
    motion = load_mocap6(path)
    assert motion.sequences.tolist() == [0, 0, 0, 1, 1, 1, 1]
    cols = group_channels(motion.channels, drop=())
    assert {g: len(c) for g, c in cols.items()} == {
        "core": 4,
        "right_arm": 2,
        "left_arm": 2,
        "right_leg": 2,
        "left_leg": 2,
    }
    assert set(JOINT_GROUPS) == set(cols)
    assert to_grouped(motion).dims[0] == 3  # the root's height left out, as by default
    assert to_grouped(motion, drop=()).dims == [4, 2, 2, 2, 2]
    np.savez(tmp_path / "other.npz", Y=x)
    with pytest.raises(ValueError, match="not a mocap6 dataset"):
        load_mocap6(tmp_path / "other.npz")
    np.savez(tmp_path / "down.npz", X=x, column_names=names, doc_range=np.array([0, 5, 3, 7]))
    with pytest.raises(ValueError, match="down.npz: doc_range must be increasing"):
        load_mocap6(tmp_path / "down.npz")
    np.savez(tmp_path / "few.npz", X=x, column_names=names[:3], doc_range=np.array([0, 7]))
    with pytest.raises(ValueError, match="few.npz: 3 column_names for frames of shape"):
        load_mocap6(tmp_path / "few.npz")
    for bounds, says in (([2, 4, 7], "must start at frame 0"), ([0, 2.5, 7], "whole frame")):
        np.savez(tmp_path / "off.npz", X=x, column_names=names, doc_range=np.array(bounds))
        with pytest.raises(ValueError, match=says):
            load_mocap6(tmp_path / "off.npz")
    (tmp_path / "cut.npz").write_bytes(path.read_bytes()[:200])
    np.save(tmp_path / "one.npy", x)
    for broken in ("cut.npz", "one.npy"):
        with pytest.raises(ValueError, match=f"{broken}: not a mocap6 dataset"):
            load_mocap6(tmp_path / broken)


def test_load_cmu_refuses_no_trials(tmp_path):
    from pyro_factvae.datasets.mocap import load_cmu

    with pytest.raises(ValueError, match="trials is empty"):
        load_cmu(tmp_path, trials=[])
    with pytest.raises(ValueError, match="subject must be a positive integer, got '07'"):
        load_cmu(tmp_path, "07")
    with pytest.raises(ValueError, match=r"trials must be a list of integers, e.g. \[1\]"):
        load_cmu(tmp_path, 7, 1)


def test_select_takes_a_list_of_the_sequences_the_data_hold():
    motion = Motion(np.zeros((4, 1)), ["root.rx"], np.array([0, 0, 1, 2]))
    assert motion.select([2, 0]).sequences.tolist() == [0, 0, 2]
    with pytest.raises(ValueError, match=r"sequences must be a list of integers, e.g. \[1\]"):
        motion.select(1)
    with pytest.raises(
        ValueError, match=r"sequences \[5\] are not in the data; it has \[0, 1, 2\]"
    ):
        motion.select([0, 5])


def test_fetching_mocap6_fails_cleanly_on_a_cut_off_download_or_an_unwritable_cache(
    monkeypatch, tmp_path
):
    import http.client
    import urllib.request

    from pyro_factvae.datasets.mocap import fetch_mocap6

    def cut_off(url, timeout=None):
        raise http.client.IncompleteRead(b"x" * 100, 1000)

    monkeypatch.setattr(urllib.request, "urlopen", cut_off)
    with pytest.raises(RuntimeError, match=r"could not download bnpy.*IncompleteRead"):
        fetch_mocap6(tmp_path / "cache")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="cannot create the folder of mocap6 cache file"):
        fetch_mocap6(blocker / "sub")
    monkeypatch.setenv("PYRO_FACTVAE_DATA", "")  # empty: the default cache, not the cwd
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match=re.escape(str(tmp_path / "home" / ".cache"))):
        fetch_mocap6()
    assert not (tmp_path / "mocap6.npz").exists()
