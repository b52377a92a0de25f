"""The fit loop: collapsed SVI with encoder group dropout (Algorithm 1), resumable and guarded.

Each step takes a minibatch of rows with their observed groups ``O``, keeps every observed group
for the encoder with probability ``keep_prob`` (the random subset ``I subset O``), evaluates the
likelihood on all of ``O``, and applies :class:`~pyro_factvae.optim.ProximalOptim`.

The loop keeps its position in a :class:`Position` (epoch, batch, this epoch's data order), so
a checkpoint taken after any step resumes bit for bit (:mod:`pyro_factvae.checkpoint`). The data
order and RNG use are those of a ``DataLoader`` over a ``RandomSampler`` (which cannot resume
in the middle of an epoch), reproduced draw for draw. A non-finite loss or gradient stops the
loop *before* the update, naming the step and the model term that broke
(:class:`NonFiniteError`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pyro
import torch
from pyro import poutine
from pyro.infer import TraceMeanField_ELBO
from pyro.infer.util import zero_grads
from tqdm.auto import tqdm

from .data import GroupedData
from .guide import Guide
from .model import Model
from .optim import ProximalOptim, collapse
from .poe import expand_experts

__all__ = ["NonFiniteError", "Position", "train"]


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient; the parameters keep their last finite values."""


@dataclass
class Position:
    """Where a training phase is: enough to resume it exactly."""

    epoch: int = 0  #: epochs completed in this phase
    batch: int = 0  #: batches done in the current epoch
    step: int = 0  #: steps done in this phase
    perm: torch.Tensor | None = None  #: data order of the current epoch
    total: float = 0.0  #: summed row losses of the current epoch so far

    def state_dict(self) -> dict:
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "perm": self.perm,
            "total": self.total,
        }


def train(
    model: Model,
    guide: Guide,
    data: GroupedData,
    optim: ProximalOptim,
    epochs: int,
    batch_size: int,
    keep_prob: float,
    generator: torch.Generator,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
    warmup_epochs: float = 0.0,
    lr_decay: float = 1.0,
    collapsed: bool = True,
    history: list[float] | None = None,
    position: Position | None = None,
    after_step: Callable[[Position], bool] | None = None,
) -> list[float]:
    """Run Algorithm 1 for ``epochs`` passes over ``data``; return the per-epoch mean loss.

    The loss is scaled by ``1 / N``: each reported value is the negative collapsed ELBO
    ``-L~`` per row (likelihood and KL of the rows, plus the theta prior, over ``N``), and
    ``optim.lam`` is the per-example lambda, ramped linearly from 0 over the first
    ``warmup_epochs`` (and restored at the end); all step sizes follow a cosine from their
    initial value to ``lr_decay`` times it. ``generator`` drives the data order and the
    encoder dropout; ``z`` draws use Pyro's global RNG. ``collapsed=False`` keeps the prior
    sites in the loss (the variational mode over ``Phi`` and ``gamma_sq``; use ``lam = 0`` in
    ``optim`` then).

    Resuming: ``history`` (appended to in place, one value per completed epoch) and
    ``position`` (updated in place) carry the state; ``after_step(position)`` runs after every
    step and returns ``True`` to stop there (e.g. on a signal). Raises :class:`NonFiniteError`.
    """
    wrap = collapse if collapsed else (lambda fn: fn)
    num_data = len(data)
    scale = 1.0 / num_data
    loss_model = poutine.scale(wrap(model), scale)
    loss_guide = poutine.scale(wrap(guide), scale)
    elbo = TraceMeanField_ELBO()
    history = [] if history is None else history
    pos = Position() if position is None else position
    batch = min(batch_size, num_data)
    num_batches = math.ceil(num_data / batch)
    lam = optim.lam
    warmup = warmup_epochs * num_batches
    total_steps = epochs * num_batches
    bar = tqdm(total=epochs, initial=pos.epoch, disable=not progress, desc="factVAE", unit="epoch")
    try:
        # inputs were validated once (GroupedData); Pyro's per-site checks only cost time here
        with pyro.validation_enabled(False):
            while pos.epoch < epochs:
                if pos.perm is None:  # a new epoch, as DataLoader(RandomSampler) starts one:
                    torch.empty((), dtype=torch.int64).random_()  # its base-seed draw
                    pos.perm = torch.randperm(num_data, generator=generator)
                    pos.batch, pos.total = 0, 0.0
                while pos.batch < num_batches:
                    last = pos.batch == num_batches - 1
                    if last and num_data % batch:  # the sampler's trailing draw, before a
                        torch.randperm(num_data, generator=generator)  # partial last batch
                    rows = pos.perm[pos.batch * batch : (pos.batch + 1) * batch]
                    xs, mask = data[rows]
                    keep = torch.rand(mask.shape, generator=generator) < keep_prob
                    lam_factor, lr_factor = schedule(pos.step, total_steps, warmup, lr_decay)
                    optim.lam = lam * lam_factor
                    optim.set_lr_factor(lr_factor)
                    if guide.inference == "mixture":  # JMVAE+: one row per given expert
                        rows_x, one_hot, weight = expand_experts(mask, keep)
                        args = ([x[rows_x] for x in xs], mask[rows_x], one_hot, weight)
                    else:
                        args = (xs, mask, keep)
                    loss = _guarded_step(elbo, loss_model, loss_guide, optim, args, pos)
                    if last and not num_data % batch:  # the trailing draw after a full one
                        torch.randperm(num_data, generator=generator)
                    pos.batch += 1
                    pos.step += 1
                    pos.total += loss * mask.shape[0]
                    if pos.batch == num_batches:
                        history.append(pos.total / num_data)
                        pos.epoch += 1
                        pos.perm = None
                        bar.update(1)
                        bar.set_postfix(loss=f"{history[-1]:.4g}", refresh=False)
                        if callback is not None:
                            callback(pos.epoch - 1, history[-1])
                    if after_step is not None and after_step(pos):
                        return history
    finally:
        optim.lam = lam
        bar.close()
    return history


def _guarded_step(elbo, model, guide, optim, args, pos: Position) -> float:
    """``SVI.step`` with a check between the gradients and the update: a non-finite loss or
    gradient raises :class:`NonFiniteError` and leaves every parameter as it was."""
    with poutine.trace(param_only=True) as capture:
        loss = elbo.loss_and_grads(model, guide, *args)
    params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
    grads = [p.grad for p in params if p.grad is not None]
    finite = math.isfinite(loss) and bool(
        torch.isfinite(torch.stack([g.sum() for g in grads])).all() if grads else True
    )
    if not finite:
        bad = [p for p in params if p.grad is not None and not bool(torch.isfinite(p.grad).all())]
        zero_grads(params)
        what = "loss" if not math.isfinite(loss) else "gradient"
        names = sorted(pyro.get_param_store().param_name(p) or "?" for p in bad)[:3]
        raise NonFiniteError(
            f"the {what} became non-finite at step {pos.step + 1} (epoch {pos.epoch + 1}, "
            f"batch {pos.batch + 1}){'; parameters ' + ', '.join(names) if names else ''}; "
            f"term: {diagnose(model, guide, args)}. The parameters keep their last finite "
            "values"
        )
    optim(params)
    zero_grads(params)
    return float(loss)


def diagnose(model, guide, args) -> str:
    """Name the first model term whose value or gradient is not finite on ``args``.

    Terms: ``likelihood of group 'g'`` (site ``x_<g>``), ``KL of z`` (sites ``z``),
    ``theta prior`` and ``group-lasso prior`` (``Phi_<g>``, ``gamma_sq_<g>``).
    """
    guide_trace = poutine.trace(guide).get_trace(*args)
    model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args)
    terms: dict[str, torch.Tensor] = {}
    for trace, sign in ((model_trace, 1.0), (guide_trace, -1.0)):
        trace.compute_log_prob()
        for name, site in trace.nodes.items():
            if site["type"] != "sample" or "log_prob_sum" not in site:
                continue
            if name.startswith("x_"):
                label = f"likelihood of group {name[2:]!r}"
            elif name == "z":
                label = "KL of z"
            elif name == "theta_prior":
                label = "theta prior"
            else:
                label = "group-lasso prior"
            terms[label] = terms.get(label, 0.0) + sign * site["log_prob_sum"]
    for label, value in terms.items():
        if not bool(torch.isfinite(value).all()):
            return f"{label} is {float(torch.as_tensor(value).detach().sum())}"
    params = [p for p in pyro.get_param_store().values() if p.requires_grad]
    for label, value in terms.items():
        if not torch.is_tensor(value) or not value.requires_grad:
            continue
        grads = torch.autograd.grad(value, params, allow_unused=True, retain_graph=True)
        if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
            return f"gradient of the {label}"
    return "none found on a re-evaluation (a non-finite value from sampling)"


def schedule(step: int, total: int, warmup: float, lr_decay: float) -> tuple[float, float]:
    """Factors for ``lam`` (linear warm-up over ``warmup`` steps) and for every step size
    (cosine from 1 at step 0 to ``lr_decay`` at the last of ``total`` steps)."""
    lam_factor = min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0
    cos = 0.5 * (1 + math.cos(math.pi * step / max(total - 1, 1)))
    return lam_factor, lr_decay + (1 - lr_decay) * cos


def seed_everything(seed: int) -> torch.Generator:
    """Seed Pyro/torch globals and return a generator for data order and dropout."""
    pyro.set_rng_seed(seed)
    return torch.Generator().manual_seed(seed)
