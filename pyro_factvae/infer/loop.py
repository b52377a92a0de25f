"""One training phase of Algorithm 1: collapsed SVI with encoder group dropout, a guarded
step, and a position that makes any step resumable.

Each step takes a minibatch of rows with their observed groups ``O``, keeps every observed group
for the encoder with probability ``keep_prob`` (the random subset ``I subset O``), evaluates the
likelihood on all of ``O``, and updates ``theta`` (Adam) and ``Phi`` (gradient step + group
soft-threshold, :class:`~pyro_factvae.infer.optim.ProximalOptim`).

The data order of an epoch is one ``torch.randperm`` drawn from the run's generator and stored
in the :class:`Position`, so a checkpoint taken after any step resumes bit for bit
(:mod:`pyro_factvae.infer.run`). A non-finite loss or gradient stops the loop *before* the
update, naming the step and the model term that broke (:class:`NonFiniteError`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import pyro
import torch
from tqdm.auto import tqdm

from ..data import GroupedData
from ..fit_config import FitConfig
from ..module.guide import Guide
from ..module.model import Model
from ..rng import seeded
from .distributed import ONE_PROCESS, World
from .objective import objective_for
from .optim import Optimizers

__all__ = [
    "VALIDATION_SCORE",
    "VALIDATION_SEED",
    "NonFiniteError",
    "Phase",
    "Position",
    "encoder_subset",
    "fresh_stopper",
    "train_phase",
    "train_step",
    "validation_loss",
]

#: seeds the encoder subsets of :func:`validation_loss` (the same subsets at every score)
VALIDATION_SEED = 0
#: what early stopping scores (:func:`validation_loss`, plus the prox's group-lasso term in a
#: penalised phase), kept with its best score in checkpoints (a checkpoint whose best was
#: scored otherwise starts its stopping afresh on resume)
VALIDATION_SCORE = "training objective with the group-lasso term"


#: the largest gradient float32 squares to a finite number (Adam's second moments)
SQUARABLE = math.sqrt(torch.finfo(torch.float32).max)


def fresh_stopper() -> dict:
    """Early stopping's state at the start of a phase: no best score yet."""
    return {"best": None, "epoch": 0, "wait": 0, "score": VALIDATION_SCORE}


class NonFiniteError(FloatingPointError):
    """A non-finite loss or gradient; the parameters keep their last finite values."""


@dataclass(frozen=True)
class Phase:
    """A stretch of training under one posterior over ``Phi``."""

    posterior: str  #: name in :data:`~pyro_factvae.registry.PHI_POSTERIORS`
    epochs: int
    warmup_epochs: float  #: ``lam`` ramps from 0 over these (prox phases)
    #: the relaxed group lasso's refit, the support kept and nothing shrunk (prox phases)
    relaxed: bool = False
    #: step sizes relative to the fit's ``lr`` and ``phi_lr`` (a refit starts from a fitted
    #: point: full steps there knocked a digits model back to the mean imputation)
    lr_scale: float = 1.0
    #: the group-lasso weight the prox applies in this phase, ramped from 0 over the warm-up
    #: (the plan sets it: the trainer never reads it from the model's config)
    lam: float = 0.0

    def lam_at(self, step: int, batches: int) -> float:
        """``lam`` at this phase's ``step`` (``batches`` steps per epoch): the warm-up ramp."""
        return self.lam * lam_factor(step, self.warmup_epochs * batches)

    @property
    def label(self) -> str:
        """What the progress bar calls the phase."""
        return "relaxed refit" if self.relaxed else self.posterior


@dataclass
class Position:
    """Where a training phase is: enough to resume it exactly."""

    epoch: int = 0  #: epochs completed in this phase
    batch: int = 0  #: batches done in the current epoch
    step: int = 0  #: steps done in this phase
    perm: torch.Tensor | None = field(default=None, repr=False)  #: this epoch's data order
    total: float = 0.0  #: summed data terms (likelihood, KL of z) of this epoch so far
    prior: float = 0.0  #: summed prior terms (theta prior, group-lasso prior) so far

    def meta(self) -> dict:
        """Everything but the permutation, as JSON data."""
        return {
            "epoch": self.epoch,
            "batch": self.batch,
            "step": self.step,
            "total": self.total,
            "prior": self.prior,
        }


def lam_factor(step: int, warmup_steps: float) -> float:
    """Linear warm-up of ``lam`` over ``warmup_steps`` steps."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0


def cosine(total: int, final: float) -> Callable[[int], float]:
    """Step-size factor from 1 at step 0 to ``final`` at the last of ``total`` steps."""

    def factor(step: int) -> float:
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * step / max(total - 1, 1)))

    return factor


def train_phase(
    model: Model,
    guide: Guide,
    data: GroupedData,
    optimizers: Optimizers,
    schedulers: list[torch.optim.lr_scheduler.LRScheduler],
    phase: Phase,
    fit: FitConfig,
    generator: torch.Generator,
    history: list[float],
    prior_history: list[float],
    position: Position,
    after_step: Callable[[Position], bool],
    progress: bool = True,
    active_links: Callable[[], int] | None = None,
    after_epoch: Callable[[Position], bool] | None = None,
    world: World = ONE_PROCESS,
) -> None:
    """Run ``phase`` from ``position`` to its end (or until ``after_step`` returns ``True``).

    The loss is scaled by ``1 / N``. Each value appended to ``history`` (one per completed
    epoch) is the negative ELBO of the data per row, ``-(1/N) sum_i ELBO_i`` (likelihood and KL
    of ``z``); ``prior_history`` gets the prior terms apart (the theta prior, and in a
    variational phase the KL of ``Phi`` and ``gamma_sq``, over ``N``). The progress bar shows
    the current epoch's running data loss, ``lam`` and the active links. ``lam`` is the
    phase's (``phase.lam``), ramped linearly from 0 over the phase's warm-up;
    ``schedulers`` step once per step. ``generator`` drives the data order and the encoder
    dropout; ``z`` draws use torch's global RNG. ``after_epoch(position)`` runs after every
    epoch and returns ``True`` to end the phase there (early stopping).
    Raises :class:`NonFiniteError`.
    """
    strategy = guide.phi_posteriors[phase.posterior]
    num_data = len(data)
    objective = objective_for(model, guide, phase.posterior, data, 1.0 / num_data)
    pos = position
    batch = min(fit.batch_size, num_data)
    num_batches = math.ceil(num_data / batch)
    desc = f"factVAE {phase.label} lam={phase.lam:g}"
    # a bar redraws: on a terminal or in a notebook; a log file or pipe gets a line per phase
    interactive = progress and (sys.stderr.isatty() or "ipykernel" in sys.modules)
    bar = tqdm(
        total=phase.epochs, initial=pos.epoch, disable=not interactive, desc=desc, unit="epoch"
    )
    start, postfix = pos.epoch, {}
    try:
        # inputs were validated once (GroupedData); Pyro's per-site checks only cost time here
        with pyro.validation_enabled(False):
            while pos.epoch < phase.epochs:
                if pos.perm is None:
                    pos.perm = torch.randperm(num_data, generator=generator)
                    pos.batch, pos.total, pos.prior = 0, 0.0, 0.0
                while pos.batch < num_batches:
                    rows = pos.perm[pos.batch * batch : (pos.batch + 1) * batch]
                    lam = phase.lam_at(pos.step, num_batches)
                    optimizers.set_lam(lam if strategy.collapsed else 0.0, phase.relaxed)
                    data_loss, prior_loss = train_step(
                        objective, optimizers, rows, generator, pos, world
                    )
                    for scheduler in schedulers:
                        scheduler.step()
                    pos.batch += 1
                    pos.step += 1
                    pos.total += data_loss * len(rows)
                    pos.prior += prior_loss * len(rows)
                    if progress:  # the bar's text, or the line a log file gets
                        rows_done = min(pos.batch * batch, num_data)
                        postfix = {"loss": f"{pos.total / rows_done:.4g}", "lam": f"{lam:.3g}"}
                    if pos.batch == num_batches:
                        history.append(pos.total / num_data)
                        prior_history.append(pos.prior / num_data)
                        pos.epoch += 1
                        pos.perm = None
                        if progress and active_links is not None:  # a host sync: shown only
                            postfix["links"] = str(active_links())
                        bar.update(1)
                        if after_epoch is not None and after_epoch(pos):
                            bar.update(phase.epochs - pos.epoch)
                            pos.epoch = phase.epochs  # the phase is complete
                    if interactive:
                        bar.set_postfix(postfix, refresh=False)
                    if after_step(pos):
                        return
    finally:
        bar.close()
        if progress and not interactive and pos.epoch > start:
            done = ", ".join(f"{k} {v}" for k, v in postfix.items())
            print(f"{desc}: epoch {pos.epoch}/{phase.epochs}, {done}", file=sys.stderr, flush=True)


@torch.no_grad()
def validation_loss(
    model: Model, guide: Guide, data: GroupedData, posterior: str, chunk: int = 1024
) -> float:
    """The training objective per row on held-out rows: the negative ELBO with the encoder
    reading a random subset of each row's observed groups (and cells), drawn as a training
    step draws it (:func:`encoder_subset`), so that early stopping scores the objective being
    trained, predicting groups from the others included, and not the reconstruction of rows
    from all their groups alone.

    The subsets and the ``z`` noise are drawn under fixed seeds in a forked RNG: every score
    of a fit sees the same subsets, and the training RNG stream is not touched."""
    objective = objective_for(model, guide, posterior, data, 1.0 / model.config.num_data)
    subsets = torch.Generator().manual_seed(VALIDATION_SEED)
    total = 0.0
    with seeded(model.device, 0), pyro.validation_enabled(False):
        for start in range(0, len(data), chunk):
            xs, mask, cells = objective.batch(torch.arange(start, min(start + chunk, len(data))))
            keep, enc_cells = encoder_subset(guide, mask, cells, subsets)
            args, kwargs = guide.experts.training_args(xs, mask, keep, cells, enc_cells)
            # the plate scales a chunk to N rows: back to this chunk's own sum (a mixture's
            # expanded rows are weighted so that each source row counts once)
            total += float(objective(*args, **kwargs).data) * mask.shape[0]
    return total / len(data)


def encoder_subset(
    guide: Guide,
    mask: torch.Tensor,
    cells: torch.Tensor | None,
    generator: torch.Generator,
    world: World = ONE_PROCESS,
    rows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Algorithm 1's random subset ``I subset O`` for the encoder: each group kept with
    probability ``keep_prob`` and, where the data miss cells and ``cell_keep_prob < 1``, each
    observed cell with probability ``cell_keep_prob`` (a group left with no cell is left
    out). Returns the ``(B, G)`` keep mask and the encoder's cell mask (``None``: every
    observed cell). ``mask`` and ``cells`` are this process's rows; under ``world`` the draws
    are made for the whole minibatch of ``rows`` rows and shared out."""
    rows = mask.shape[0] if rows is None else rows
    keep = torch.rand((rows, mask.shape[1]), generator=generator) < guide.config.keep_prob
    keep, enc_cells = world.shard(keep).to(mask.device), None
    if cells is not None and guide.config.cell_keep_prob < 1:  # cell dropout
        draw = torch.rand((rows, cells.shape[1]), generator=generator)
        enc_cells = cells & (world.shard(draw) < guide.config.cell_keep_prob).to(cells.device)
        keep = keep & guide.layout.groups_seen(enc_cells)
    return keep, enc_cells


def train_step(
    objective,
    optimizers: Optimizers,
    rows: torch.Tensor,
    generator: torch.Generator,
    pos: Position,
    world: World = ONE_PROCESS,
) -> tuple[float, float]:
    """One step of Algorithm 1 on the minibatch ``rows``: the encoder's random subset
    ``I subset O`` (each observed group kept with probability ``keep_prob``, drawn from
    ``generator``; where the data miss cells, each observed cell is also kept for the encoder
    with probability ``cell_keep_prob``, and the likelihood still scores it), the loss, and
    the guarded update. Returns the data and prior parts of the
    loss (per row).

    Under ``torch.distributed`` (``world``, :class:`~pyro_factvae.infer.distributed.World`)
    ``rows`` is the global minibatch: this rank computes the loss of its share, and the
    dropout and (for the collapsed objective with the product of experts) the ``z`` noise
    are drawn for the whole minibatch and shared out, so the ranks together take the
    single-process step.
    """
    guide = objective.guide
    local = world.shard(rows)
    xs, mask, cells = objective.batch(local)
    keep, enc_cells = encoder_subset(guide, mask, cells, generator, world, len(rows))
    args, kwargs = guide.experts.training_args(xs, mask, keep, cells, enc_cells)
    if world.size > 1 and objective.takes_noise and not guide.experts.expands_rows:
        noise = torch.randn(len(rows), guide.config.latent_dim)
        kwargs["noise"] = world.shard(noise).to(mask.device)
    share = len(local) / len(rows)
    return guarded_step(objective, optimizers, args, pos, share=share, world=world, **kwargs)


def guarded_step(
    objective,
    optimizers: Optimizers,
    args,
    pos: Position,
    share: float = 1.0,
    world: World = ONE_PROCESS,
    **kwargs,
) -> tuple[float, float]:
    """One step with a check between the gradients and the update: a non-finite loss or
    gradient raises :class:`NonFiniteError` and leaves every parameter as it was. Returns the
    data and prior parts of the loss. ``share``: this rank's fraction of the minibatch's rows
    (its gradients and losses count that much in the sum over ranks); ``kwargs`` go to the
    objective (``noise``, ``cells``)."""
    terms = objective(*args, **kwargs)
    loss = terms.loss
    loss.backward()
    checks = [loss.detach(), terms.data.detach()]
    grads = []
    for p in optimizers.params:
        if p.grad is None and world.size > 1:  # every rank sums the same tensors
            p.grad = torch.zeros_like(p)
        if p.grad is not None and p.grad.numel():
            grads.append(p.grad)
    # the gradients in one flat vector: its extremes in one kernel (a per-tensor abs / amax
    # was two dispatches a tensor, a tenth of a small model's step)
    flats = [g.reshape(-1) for g in grads]
    if world.size > 1:  # sum the ranks' shares: the global minibatch's gradient and loss
        summed = world.all_reduce_(torch.cat([*flats, torch.stack(checks)]) * share)
        start = 0
        for g in grads:
            g.copy_(summed[start : start + g.numel()].view_as(g))
            start += g.numel()
        flat, checks = summed[:start], list(summed[start:].unbind())
    elif grads:
        flat = torch.cat(flats)
    if grads:  # the largest |g|: finite, and small enough for Adam to square in float32
        checks.extend(torch.aminmax(flat))
    # one host sync for the loss, its data part and the gradients' extremes
    values = torch.stack(checks).tolist()
    top = max(-values[2], values[3]) if grads else 0.0
    if not all(math.isfinite(v) for v in values) or top > SQUARABLE:
        what = "the loss became non-finite"
        if math.isfinite(values[0]):
            what = "the gradient became non-finite or too large to square in float32"
        optimizers.zero_grad()
        raise NonFiniteError(
            f"{what} at step {pos.step + 1} (epoch {pos.epoch + 1}, "
            f"batch {pos.batch + 1}); term: "
            f"{diagnose(objective, args, optimizers.params, **kwargs)}. "
            "The parameters keep their last finite values"
        )
    optimizers.step()
    optimizers.zero_grad()
    return values[1], values[0] - values[1]


def diagnose(objective, args, params, **kwargs) -> str:
    """Name the first model term whose value or gradient is not finite on ``args``.

    Terms (:func:`pyro_factvae.sites.term`): ``likelihood of group 'g'`` (site ``x_<g>``),
    ``KL of z``, ``theta prior`` and ``group-lasso prior`` (``Phi_<g>``, ``gamma_sq_<g>``).
    """
    terms = objective(*args, **kwargs).named()
    for label, value in terms.items():
        if not bool(torch.isfinite(value.detach()).all()):
            return f"{label} is {float(value.detach())}"
    trainable = [p for p in params if p.requires_grad]
    for label, value in terms.items():
        if not value.requires_grad:
            continue
        grads = torch.autograd.grad(value, trainable, allow_unused=True, retain_graph=True)
        if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
            return f"gradient of the {label}"
        if any(g is not None and g.numel() and float(g.abs().amax()) > SQUARABLE for g in grads):
            big = _largest(grads)
            return f"gradient of the {label}, too large to square in float32 ({big:.3g})"
    return "none found on a re-evaluation (a non-finite value from sampling)"


def _largest(grads) -> float:
    """The largest absolute value in ``grads`` (``None`` entries skipped)."""
    return max(float(g.abs().max()) for g in grads if g is not None and g.numel())
