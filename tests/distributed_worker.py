"""A training run for the data-parallel tests: launched by ``torchrun`` (or alone, as the
single-process reference). Writes each rank's final weights to ``OUT/<tag>_rank<r>.pt``.

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_worker.py OUT TAG [stop]

With ``stop``, rank 0 receives SIGINT at step 5 of the first fit, every rank stops there with
a checkpoint (written by rank 0), and every rank resumes from it.
"""

import signal
import sys

import numpy as np
import torch

import pyro_factvae.infer.loop as loop
from pyro_factvae import FactVAE
from pyro_factvae.infer.distributed import init_from_env, leave, world


def groups() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(240, 2))
    out = {f"g{i}": z @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(240, 4)) for i in range(3)}
    out["g1"][rng.random(240) < 0.2] = np.nan
    return out


def main(out: str, tag: str, stop: bool) -> None:
    init_from_env()
    rank, size = world()
    torch.set_num_threads(1)
    settings = dict(latent_dim=3, lam=0.05)
    fit = dict(epochs=4, batch_size=32, relax_epochs=1, patience=None, progress=False)
    if stop:
        ckpt = f"{out}/{tag}.ckpt"
        original, count = loop.guarded_step, [0]

        def interrupt_at_5(*args, **kwargs):
            count[0] += 1
            if count[0] == 5 and rank == 0:
                signal.raise_signal(signal.SIGINT)
            return original(*args, **kwargs)

        loop.guarded_step = interrupt_at_5
        first = FactVAE(**settings).fit(groups(), checkpoint=ckpt, **fit)
        assert first.interrupted_ == "SIGINT", first.interrupted_
        loop.guarded_step = original
        vae = FactVAE().fit(groups(), resume=ckpt, progress=False)
    else:
        vae = FactVAE(**settings).fit(groups(), **fit)
    guide = {f"guide.{k}": v for k, v in vae.guide_.state_dict().items()}
    state = {**vae.model_.state_dict(), **guide}
    result = {"state": state, "history": vae.history_, "size": size}
    torch.save(result, f"{out}/{tag}_rank{rank}.pt")
    leave()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "stop")
