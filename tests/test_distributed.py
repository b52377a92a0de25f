"""Data-parallel training under torchrun: 2 CPU processes (gloo) on localhost."""

import os
import pathlib
import subprocess
import sys

import pytest
import torch

WORKER = pathlib.Path(__file__).with_name("distributed_worker.py")
ROOT = WORKER.parents[1]


def _launch(out, tag, *extra, processes=2):
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    if processes > 1:
        launcher = ["-m", "torch.distributed.run", "--standalone"]
        cmd = [sys.executable, *launcher, f"--nproc_per_node={processes}", str(WORKER)]
    else:
        cmd = [sys.executable, str(WORKER)]
    done = subprocess.run(
        [*cmd, str(out), tag, *extra], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return [torch.load(out / f"{tag}_rank{r}.pt") for r in range(processes)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    return {
        "single": _launch(out, "single", processes=1)[0],
        "ddp": _launch(out, "ddp"),
        "stopped": _launch(out, "stopped", "stop"),
    }


def test_two_ranks_end_with_identical_parameters_and_zeros(runs):
    rank0, rank1 = runs["ddp"]
    assert rank0["size"] == rank1["size"] == 2
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    assert rank0["history"] == rank1["history"]


def test_two_ranks_match_one_process_with_the_same_global_batch(runs):
    single, (rank0, _) = runs["single"], runs["ddp"]
    assert single["size"] == 1
    for key, value in single["state"].items():
        torch.testing.assert_close(rank0["state"][key], value, rtol=1e-3, atol=1e-4)
        if "Phi" in key:  # the same exact zeros
            assert torch.equal(value.norm(dim=-2) == 0, rank0["state"][key].norm(dim=-2) == 0)
    # float32 sums over half minibatches then across ranks: the order differs from one
    # process's, and the last epochs' losses drifted by up to 7e-5 (relative) here
    assert rank0["history"] == pytest.approx(single["history"], rel=1e-3)


def test_a_signal_on_one_rank_stops_all_and_the_checkpoint_resumes_exactly(runs):
    uninterrupted = runs["ddp"][0]
    for resumed in runs["stopped"]:
        for key, value in uninterrupted["state"].items():
            assert torch.equal(value, resumed["state"][key]), key
        assert resumed["history"] == uninterrupted["history"]


def test_the_cli_under_torchrun_writes_one_model_and_one_report(tmp_path):
    import json

    import numpy as np

    from pyro_factvae import FactVAE

    rng = np.random.default_rng(0)
    z = rng.normal(size=(201, 2))  # the last minibatch of 8 has 1 row: none for rank 1
    groups = {f"g{i}": z @ rng.normal(size=(2, 3)) for i in range(3)}
    np.savez(tmp_path / "d.npz", **groups)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cli = ["--nproc_per_node=2", "-m", "pyro_factvae.cli", "fit", str(tmp_path / "d.npz")]
    opts = ["-o", str(tmp_path / "m.factvae"), "--lam", "0.1", "--epochs", "2", "--json"]
    opts += ["--batch-size", "8"]
    done = subprocess.run(
        [*launcher, *cli, *opts], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["rows"] == 201  # one report: rank 0's
    assert FactVAE.load(tmp_path / "m.factvae").lam_ == 0.1


def test_the_world_a_run_is_given_shares_rows_and_is_a_no_op_in_one_process():
    from pyro_factvae.config import ModelConfig
    from pyro_factvae.infer.distributed import ONE_PROCESS, World
    from pyro_factvae.infer.run import Trainer
    from pyro_factvae.infer.state import FitState

    rows = torch.arange(7)
    assert World(rank=1, size=3).shard(rows).tolist() == [1, 4]
    assert World(rank=0, size=3).writer and not World(rank=2, size=3).writer
    assert ONE_PROCESS.shard(rows) is rows and ONE_PROCESS.max_over_ranks(5) == 5
    t = torch.ones(3)
    assert ONE_PROCESS.all_reduce_(t) is t and t.tolist() == [1.0, 1.0, 1.0]
    # the trainer reads the process group once and passes that world down
    assert Trainer(FitState(ModelConfig(lam=0.1))).world == World.current() == ONE_PROCESS
    with pytest.raises(ValueError, match="seed=None in a distributed run"):
        from pyro_factvae.infer.plan import seeding

        seeding(None, ranks=2)


@pytest.mark.parametrize(
    "device, expected",
    [
        ("cuda", [("set_device", 3), ("init", "nccl")]),
        ("cuda:1", [("init", "nccl")]),
        ("cpu", [("init", "gloo")]),
    ],
)
def test_each_process_of_a_cuda_run_takes_the_gpu_of_its_local_rank(device, expected, monkeypatch):
    import pyro_factvae.infer.distributed as distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(distributed, "_JOINED", False)  # as it was, after this fake join
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda b: calls.append(("init", b)))
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    assert distributed.init_from_env(device) is True
    assert calls == expected  # the GPU is chosen before nccl starts on it


def test_the_cli_leaves_a_process_group_it_did_not_join(tmp_path, monkeypatch):
    import numpy as np
    import torch.distributed as dist

    from pyro_factvae.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", a=rng.normal(size=(40, 2)), b=rng.normal(size=(40, 2)))
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:  # the caller's group: the command uses it and leaves it to the caller
        argv = ["fit", str(tmp_path / "d.npz"), "-o", str(tmp_path / "m.factvae"), "--lam", "0.1"]
        assert main([*argv, "--epochs", "1", "--no-progress"]) == 0
        assert dist.is_initialized()
    finally:
        dist.destroy_process_group()
