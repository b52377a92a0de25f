"""Data-parallel training with ``torch.distributed`` (launched by ``torchrun``).

Every rank holds the whole model and the same data, and runs the same training loop with the
same seed, so all ranks draw the same epoch order, encoder dropout and ``z`` noise for the
global minibatch. Each rank then takes its share of the minibatch's rows, ``rows[rank::world]``
(what :class:`torch.utils.data.DistributedSampler` does to an epoch's permutation), and the
gradients are summed over ranks, each weighted by its share of the rows, in one all-reduce:
the sum is the gradient of the global minibatch's loss. Every rank then applies the same Adam
step and the same prox (Algorithm 1) to the same parameters and gradients, so ``Phi`` and its
exact zeros are identical on every rank, and a run matches a single-process run with the same
global batch up to the order of floating-point sums.

Rank 0 writes checkpoints; every rank can resume from them. A signal on any rank stops every
rank at the same step. Without an initialised process group every function here is a no-op
(one process: rank 0 of 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["ONE_PROCESS", "World", "init_from_env", "is_writer", "leave", "world"]


def world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` without an initialised process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_writer() -> bool:
    """Whether this process writes files (checkpoints, model files, output): rank 0."""
    return world()[0] == 0


def _device() -> torch.device:
    """Where this backend's collectives run: CUDA for ``nccl``, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@dataclass(frozen=True)
class World:
    """The processes of a run: this one's ``rank`` of ``size``. The trainer reads it once, at
    the start of a run (:meth:`current`), and passes it down to the step; with ``size == 1``
    every collective is a no-op."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        """The initialised process group's (rank 0 of 1 without one)."""
        return cls(*world())

    @property
    def writer(self) -> bool:
        """Whether this process writes files (rank 0)."""
        return self.rank == 0

    def shard(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's share of a global minibatch (its rows, or anything with one entry per
        row)."""
        return rows if self.size == 1 else rows[self.rank :: self.size]

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over ranks, in place (CPU tensors move through the backend's
        device)."""
        if self.size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite ``tensors`` with rank 0's values on every rank."""
        if self.size > 1:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def max_over_ranks(self, value: int) -> int:
        """The largest ``value`` over ranks (a collective: every rank must call it)."""
        if self.size == 1:
            return value
        out = torch.tensor([float(value)], device=_device())
        dist.all_reduce(out, op=dist.ReduceOp.MAX)
        return int(out.item())

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.size > 1:
            dist.barrier()


#: a run of one process (no collectives)
ONE_PROCESS = World()
#: whether :func:`init_from_env` joined the process group (so :func:`leave` leaves it)
_JOINED = False


def init_from_env(device: str | torch.device | None = None) -> bool:
    """Join the process group ``torchrun`` describes in the environment (``WORLD_SIZE``,
    ``RANK``, ``MASTER_ADDR``...), with ``gloo`` on CPU and ``nccl`` on CUDA. Returns whether
    this is a multi-process run. Does nothing when already initialised or when ``WORLD_SIZE``
    is unset or 1. On CUDA, a ``device`` without an index (``"cuda"``) becomes each process's
    own GPU: ``torch.cuda.set_device(LOCAL_RANK)``, so that ``"cuda"`` names it from then on
    (nccl needs one GPU per process)."""
    if dist.is_initialized():
        return world()[1] > 1
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    cuda = device is not None and torch.device(device).type == "cuda"
    if cuda and torch.device(device).index is None and "LOCAL_RANK" in os.environ:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if cuda else "gloo")
    global _JOINED
    _JOINED = True
    return True


def leave() -> None:
    """Leave the process group :func:`init_from_env` joined, every rank once its work is done
    (a gloo group left for the interpreter's exit to tear down aborted a rank now and then:
    ``terminate called without an active exception``). Nothing where it joined none (a
    group the caller set up is the caller's to leave)."""
    global _JOINED
    if _JOINED and dist.is_initialized():
        dist.destroy_process_group()
    _JOINED = False
