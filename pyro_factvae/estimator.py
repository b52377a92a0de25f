r"""``FactVAE``: the user-facing estimator.

This follows :class:`pyro.contrib.cevae.CEVAE`: one class that builds a
:class:`~pyro_factvae.module.model.Model` and :class:`~pyro_factvae.module.guide.Guide` from a
:class:`~pyro_factvae.config.ModelConfig`, hands them to the
:class:`~pyro_factvae.infer.run.Trainer` (Algorithm 1), and answers questions with them. It
holds no training logic of its own.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .config import REFIT_LR, FewRowsWarning, FitConfig, ModelConfig
from .data import GroupedData, is_dataframe
from .infer.callbacks import Epoch
from .infer.distributed import world
from .infer.loop import Phase
from .infer.path_state import stage_of
from .infer.run import Run, Trainer, check_checkpoint, fingerprint
from .io import check_writable, read_payload, write_payload
from .lampath import fit_auto
from .layout import Layout
from .module.guide import MAP, Guide
from .module.likelihoods import with_cells
from .module.model import Model
from .queries import Queries
from .registry import LIKELIHOODS, PHI_POSTERIORS
from .stream import is_dataset
from .validation import warn_constant

__all__ = ["FactVAE"]

#: early stopping's default (``patience="auto"``) needs at least this many rows
MIN_ROWS_TO_STOP = 20
#: below this many rows the defaults (a 16-dimensional z, widths for hundreds of rows, lam
#: chosen on held-out rows) are more than the data can support: fit warns
FEW_ROWS = 50


def cells_of(data: GroupedData, g: int) -> torch.Tensor | None:
    """Group ``g``'s ``(N, d_g)`` cell mask, or ``None`` when no observed group misses a cell."""
    return None if data.cells is None else data.group_cells(g)


def as_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` saying what is possible here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} needs CUDA, which this torch build or machine does not have "
            "(torch.cuda.is_available() is False); use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only 'cpu' and 'cuda' devices are supported")
    return dev


def _warn_if_few_rows(rows: int, lam: Any) -> None:
    """A ``UserWarning`` when there are fewer than :data:`FEW_ROWS` rows."""
    if rows < FEW_ROWS:
        held = rows - int(round(0.8 * rows))
        held = f"lam='auto' chooses lam on {held} held-out rows, and " if lam == "auto" else ""
        warnings.warn(
            f"only {rows} rows: {held}the defaults are sized for hundreds of rows or more; on "
            "fewer the fit can overfit (on a 32-row table it imputed worse than the column "
            "means, with intervals far too narrow, and a smaller latent_dim or widths did not "
            "help): check it on held-out cells (pyro_factvae.metrics.evaluate; factvae "
            "evaluate) against a simple imputer before trusting it",
            FewRowsWarning,
            stacklevel=3,
        )


class FactVAE(Queries):
    r"""factVAE: a VAE factorised over groups, with a product-of-experts encoder and a
    group-lasso prior coupling encoder and decoder sparsity (Ainsworth, Foti & Fox 2018).

    **Objective.** With ``N`` rows, ``O_i`` the observed groups of row ``i``, and
    ``ELBO_i = E_q[log p(x_{i,O_i} | z)] - KL(q(z | x_{i,I_i}) || N(0, I))``, ``fit`` maximises
    the paper's eq 9 averaged over rows::

        (1/N) sum_i ELBO_i  +  tau log N(theta_f; 0, I)  -  lam sum_{g,j} v_g ||Phi_g[:, j]||_2

    i.e. ``lam`` (and ``tau = theta_prior_weight``) are *per-example* weights, as in the
    paper's experiments, and ``lam`` is also per variable (``v_g``: the width of group ``g``,
    1 for a categorical label). In the Pyro model this is the log joint over the full data set
    divided by ``N``: the Gamma rate of eq 7 is ``(N lam v_g)^2 / 2``. A minibatch of
    ``B`` rows estimates the first term by its mean (``pyro.plate`` scaling ``N / B`` times
    ``1 / N``); the penalty is applied exactly by the prox step (Algorithm 1), not by
    gradients. ``history_`` records the negative of the first two terms per epoch.

    Parameters
    ----------
    latent_dim : int or "auto"
        ``K``, the number of latent dimensions; ``"auto"``: ``min(64, max(16, 2 G))`` for
        ``G`` groups (the group lasso prunes the surplus).
    lam : float or "auto"
        Per-example, per-variable group-lasso weight (``>= 0``; 0 turns sparsity off): the
        links of a group of ``v`` variables are penalised by ``lam * v``. ``"auto"`` (default)
        chooses it from the data: ``fit`` walks the grid ``0, 0.01, 0.03, 0.1, 0.3, 1`` with
        warm starts and relaxed refits on 80% of the rows, scores the held-out imputation
        error of each group given the others on the other 20%, keeps the largest ``lam``
        within 1% of the best, and refits that support on every row (``lam_`` and
        ``lam_path_`` report the choice; ``config.lam`` holds it afterwards).
    likelihood : str, sequence of str or mapping
        ``"normal"``, ``"bernoulli"`` or ``"categorical"``: one for all groups, a list in
        group order, or a ``{group: name}`` mapping (unlisted groups use ``"normal"``).
    encoder_hidden : sequence of int
        Hidden widths of each group's encoder network before its output layer.
    encoder_width : int or "auto"
        ``H``: width of the encoder features ``h_g``; ``V_g`` is ``K x H``. ``"auto"``:
        ``min(64, max(16, ceil(max d_g / 2)))``.
    decoder_width : int or "auto"
        ``p``: rows of ``W_g``; ``Phi_g`` has ``m = p + H`` rows. ``"auto"`` as above.
    decoder_hidden : sequence of int
        Hidden widths of each group's generator ``f_g`` after ``ReLU(W_g z + c_g)``.
    keep_prob : float
        Probability that an observed group is fed to the encoder at a training step
        (encoder group dropout, sec. 2.1). The likelihood always uses all observed groups.
    cell_keep_prob : float
        Where the training data miss single cells: probability that an observed cell of a
        group fed to the encoder is kept for it at a training step (encoder cell dropout; the
        likelihood still scores the cell, so the model learns to fill cells it did not see).
        Not used on data without missing cells.
    theta_prior_weight : float
        ``tau``, per-example weight of the ``N(0, 1)`` prior on the generator networks.
    baseline : float
        Initial baseline precision ``b`` of the experts (100, as the authors' code: a
        confident encoder at the start keeps the decoder from learning to ignore ``z``).
    inference : {"poe", "mixture"}
        ``"poe"``: factVAE's product of experts. ``"mixture"``: the paper's JMVAE+ baseline,
        a uniform mixture of the single-group experts trained on the average of their ELBOs
        (same networks; see :mod:`pyro_factvae.module.experts`). Used with ``lam=0`` in the
        benchmarks.
    phi_inference : {"prox", "variational"}
        ``"prox"``: MAP ``Phi`` with exact zeros (Algorithm 1). ``"variational"``: a mean-field
        posterior over ``Phi`` and ``gamma_sq`` (see :mod:`~pyro_factvae.module.guide`).
    image_shape, conv_width
        Image groups ``(C, H, W)``: DCGAN-style convolutional networks (sec. 4.3).
    group_weight : mapping, optional
        ``{group: weight}`` on that group's log-likelihood (others 1), e.g. a weight ``> 1``
        on a sparsely observed label group (semi-supervised). Default: the paper's model.
    device : str or torch.device
        Where the model trains and predicts: ``"cpu"`` (default) or ``"cuda"`` / ``"cuda:N"``.
        The data stay on the CPU and minibatches move to the device; outputs come back as
        numpy arrays. Weights start from the same seeded CPU initialisation on every device;
        CPU runs repeat bit for bit, CUDA runs are seeded but not bit-identical to CPU ones.
        Not saved in model files: :meth:`load` takes a ``device``.

    Attributes
    ----------
    model_, guide_ : Model, Guide
        The fitted Pyro modules (after :meth:`fit`).
    history_ : list of float
        Per epoch, the negative ELBO of the data per row: ``-(1/N) sum_i ELBO_i``
        (likelihood and KL of ``z``), the number to watch.
    prior_history_ : list of float
        Per epoch, the prior terms per row, apart: ``-tau log N(theta_f; 0, I)`` (a constant
        of about 0.92 nats per generator weight plus weight decay), and in a variational
        phase the KL of ``Phi`` and ``gamma_sq`` over ``N``.
    config : ModelConfig
        The settings; ``config.lam = ...`` changes ``lam`` for the model, guide and a later
        ``fit`` at once (validated like the constructor's argument).
    interrupted_ : str or None
        The signal that stopped the last ``fit``, if any.
    """

    def __init__(
        self,
        latent_dim: int | str = "auto",
        lam: float | str = "auto",
        likelihood: str | Sequence[str] | Mapping[str, str] = "normal",
        encoder_hidden: Sequence[int] = (),
        encoder_width: int | str = "auto",
        decoder_width: int | str = "auto",
        decoder_hidden: Sequence[int] = (),
        keep_prob: float = 0.75,
        cell_keep_prob: float = 1.0,
        theta_prior_weight: float = 0.01,
        baseline: float = 100.0,
        inference: str = "poe",
        phi_inference: str = "prox",
        image_shape: Sequence[int] | None = None,
        conv_width: int = 32,
        group_weight: Mapping[str, float] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.config = ModelConfig(
            latent_dim=latent_dim,
            lam=lam,
            likelihood=likelihood,
            encoder_hidden=encoder_hidden,
            encoder_width=encoder_width,
            decoder_width=decoder_width,
            decoder_hidden=decoder_hidden,
            keep_prob=keep_prob,
            cell_keep_prob=cell_keep_prob,
            theta_prior_weight=theta_prior_weight,
            baseline=baseline,
            inference=inference,
            phi_inference=phi_inference,
            image_shape=image_shape,
            conv_width=conv_width,
            group_weight=group_weight,
        )
        #: where the model trains and predicts (its parameters, optimizer state, minibatches)
        self.device: torch.device = as_device(device)
        self.model_: Model | None = None
        self.guide_: Guide | None = None
        self.layout_: Layout | None = None
        self.trainer_: Trainer | None = None
        self.history_: list[float] = []
        self.prior_history_: list[float] = []
        self.metadata_: dict[str, Any] = {}
        self.columns_: dict[str, list[str]] | None = None
        #: with ``lam="auto"``: the grid, held-out log-likelihoods and active links of the path
        self.lam_path_: dict[str, list] | None = None
        self.interrupted_: str | None = None
        self._callbacks: list[Callable[[Epoch], Any]] = []

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.user_dict().items())
        state = f"fitted on {self.num_data_} rows" if self.model_ is not None else "not fitted"
        return f"FactVAE({args}) [{state}]"

    @property
    def num_data_(self) -> int | None:
        """Rows of the training data (``N``)."""
        return self.config.num_data

    @property
    def lam(self) -> float | str:
        """The group-lasso weight ``lam`` (owned by :attr:`config`; after a fit with
        ``lam="auto"``, the chosen value)."""
        return self.config.lam

    @property
    def lam_(self) -> float:
        """The ``lam`` the fitted model uses (chosen by the data with ``lam="auto"``)."""
        self.fitted_modules()
        return float(self.config.lam)

    # ------------------------------------------------------------------ building
    def _build(self, layout: Layout, num_data: int) -> None:
        self.config.num_data = num_data
        self.layout_ = layout
        self.model_ = Model(layout, self.config)
        self.guide_ = Guide(self.model_)
        self.trainer_ = Trainer(self.model_, self.guide_)

    def _to_device(self) -> None:
        """Move the built model and guide to :attr:`device` (built and initialised on the CPU,
        so a seed gives the same starting weights on every device)."""
        self.model_.to(self.device)
        self.guide_.to(self.device)

    def prepare(self, data: Any, allow_empty_rows: bool = False) -> GroupedData:
        """``data`` as :class:`GroupedData`, checked against the fitted groups, widths and
        likelihoods (a list of arrays takes the fitted group names; a DataFrame is split into
        groups by ``columns_``)."""
        if is_dataframe(data):
            if self.columns_ is None:
                raise ValueError(
                    "got a DataFrame but no column-to-group mapping: give fit(frame, "
                    "groups={group: [columns]}) (the model keeps it for later calls)"
                )
            data = GroupedData.from_dataframe(
                data, self.columns_, allow_empty_rows=allow_empty_rows
            )
        elif type(data).__name__ == "MuData":  # its modalities are the groups
            data = GroupedData.from_mudata(data)
        elif is_dataset(data):  # streamed into a memmap, one DataLoader batch at a time
            data = GroupedData.from_dataset(data, allow_empty_rows=allow_empty_rows)
        elif not isinstance(data, (GroupedData, Mapping)) and self.layout_ is not None:
            data = GroupedData(data, names=self.layout_.names, allow_empty_rows=allow_empty_rows)
        elif not isinstance(data, GroupedData):
            data = GroupedData(data, allow_empty_rows=allow_empty_rows)
        if self.layout_ is not None:
            if tuple(data.names) != self.layout_.names:
                raise ValueError(
                    f"data has groups {data.names}, "
                    f"the model was fitted on {list(self.layout_.names)}"
                )
            if tuple(data.dims) != self.layout_.dims:
                raise ValueError(
                    f"data has group widths {data.dims}, "
                    f"the model expects {list(self.layout_.dims)}"
                )
            for g, (name, lik) in enumerate(zip(self.layout_.names, self.layout_.likelihoods)):
                check = LIKELIHOODS.get(lik).check
                with_cells(
                    check, name, data.values[g], data.observed[:, g], cells=cells_of(data, g)
                )
        return data

    def _check_support(self, data: GroupedData) -> Layout:
        """The layout of ``data`` under the configured likelihoods, each group's observed
        values checked against its likelihood's support."""
        layout = Layout(data.names, data.dims, self.config.likelihoods_for(data.names))
        for g, (name, lik) in enumerate(zip(layout.names, layout.likelihoods)):
            check = LIKELIHOODS.get(lik).check
            with_cells(check, name, data.values[g], data.observed[:, g], cells=cells_of(data, g))
        return layout

    def fitted_modules(self) -> tuple[Model, Guide]:
        """``(model_, guide_)``; a ``ValueError`` if the model is not fitted yet."""
        if self.model_ is None or self.guide_ is None:
            raise ValueError("this FactVAE is not fitted yet; call fit(data) first")
        return self.model_, self.guide_

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: Any,
        epochs: int | None = None,
        batch_size: int = 128,
        lr: float = 1e-2,
        phi_lr: float = 1e-2,
        phi_optim: str = "adam",
        warmup_epochs: float | None = None,
        lr_decay: float = 0.05,
        seed: int | None = 0,
        progress: bool = True,
        map_epochs: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        checkpoint_every: int | None = None,
        resume: str | os.PathLike | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        patience: int | str | None = "auto",
        validation: float = 0.1,
        relax_epochs: int | None = None,
        callbacks: Sequence[Callable[[Epoch], Any]] = (),
    ) -> FactVAE:
        """Train with collapsed SVI and the prox step (Algorithm 1).

        Parameters
        ----------
        data : GroupedData or anything :class:`GroupedData` accepts
            Training rows; NaN rows mark missing groups. Every group must be observed in some
            row, and every row must observe some group.
        epochs, batch_size : int
            Passes over the data and rows per step.
        lr : float
            Adam step size for all parameters but ``Phi``.
        phi_lr : float
            Step size ``eta`` of the ``Phi`` update; the prox threshold is ``eta * lam``.
        phi_optim : {"adam", "sgd"}
            See :class:`~pyro_factvae.infer.optim.ProximalOptim`.
        warmup_epochs : float, optional
            Ramp the prox's ``lam`` linearly from 0 over this many epochs (a continuation
            start: networks first learn what the data say, then the penalty prunes; the
            objective at the end is unchanged). Default: 40% of ``epochs`` on the first
            call, none when continuing.
        lr_decay : float
            Final step sizes as a fraction of ``lr`` and ``phi_lr`` (cosine schedule over
            each phase of this call; 1 keeps them constant). Small final steps let noisy
            links settle at exact zero.
        seed : int or None
            Seeds initialisation, data order, group dropout and ``z`` draws, in a fork of the
            global RNG (which is left as it was): a CPU run with a seed repeats bit for bit.
            ``None`` draws from, and advances, the global RNG.
        progress : bool
            Show a tqdm progress bar.
        map_epochs : int, optional
            ``phi_inference="variational"`` only: run this many of the ``epochs`` as prox-MAP
            first, then start ``q(Phi)`` at the MAP point (``q(gamma_sq)`` at its conditional
            mode) and spend the rest on the full ELBO. Starting from the MAP keeps every latent
            the data support; started cold, the noise of ``q(Phi)`` lets whole latents
            collapse. Default: half of ``epochs`` on the first call, none when continuing.
        checkpoint : path-like, optional
            Write the complete training state there (atomically: the file is always the
            last complete checkpoint) every ``checkpoint_every`` steps, on SIGINT / SIGTERM,
            and at the end. Its folder is created; an unwritable path fails before training.
        checkpoint_every : int, optional
            Steps between checkpoints (default: once per epoch).
        patience : int, "auto" or None
            Early stopping: hold out ``validation`` of the rows (split with ``seed``), score
            their negative ELBO after every epoch past the ``lam`` warm-up, end the phase after
            ``patience`` epochs without a better score and restore the weights of the best
            epoch; ``epochs`` is then a cap. ``"auto"`` (default): about 300 steps' worth of
            epochs (at least 10), and no early stopping below 20 rows. ``None`` trains every
            epoch on every row.
        validation : float
            Fraction of rows held out for early stopping.
        groups : mapping, optional
            With a pandas DataFrame ``data``: ``{group: [columns]}``. The model keeps it
            (``columns_``, also in its file), so later calls take DataFrames as they are and
            :meth:`impute` returns a filled DataFrame.
        resume : path-like, optional
            Continue the run saved in this checkpoint. The model's config and the training
            settings come from the file: give none here (a conflicting one raises a
            ``ValueError``); ``data`` must be the same. Checkpoints keep going to the same file
            unless ``checkpoint`` names another. On CPU the resumed run ends bit for bit as
            the uninterrupted one; resuming a finished run returns the fitted model.
        callbacks : sequence of callables
            Each called after every epoch (of every fit of the ``lam="auto"`` path too) with
            an :class:`~pyro_factvae.infer.callbacks.Epoch`; one that returns ``True`` stops
            the fit there, as a signal does (``interrupted_ == "callback"``; resumable from
            the checkpoint). Built-ins: :class:`~pyro_factvae.infer.callbacks.CSVLogger`,
            :class:`~pyro_factvae.infer.callbacks.TensorBoardLogger`.

        Returns
        -------
        FactVAE
            ``self``, fitted. Calling ``fit`` again continues training. If a SIGINT or
            SIGTERM stopped it, ``interrupted_`` names the signal (else ``None``) and the
            checkpoint, when one was asked for, holds the state after the last step.

        Raises
        ------
        NonFiniteError
            A non-finite loss or gradient; it names the step and the model term, and the
            parameters keep their last finite values.
        """
        self.interrupted_ = None
        self._callbacks = list(callbacks)  # for this call's runs (not a setting: not saved)
        given = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "phi_lr": phi_lr,
            "phi_optim": phi_optim,
            "warmup_epochs": warmup_epochs,
            "lr_decay": lr_decay,
            "map_epochs": map_epochs,
            "seed": seed,
            "checkpoint_every": checkpoint_every,
            "patience": patience,
            "validation": validation,
            "relax_epochs": relax_epochs,
        }
        if resume is not None:
            return self._resume(data, resume, given, checkpoint, progress)
        if self.config.lam == "auto":
            if self.model_ is not None:
                raise ValueError(
                    "lam='auto' chooses lam on a first fit; give lam a number (e.g. the "
                    "chosen vae.lam_) to continue training"
                )
            if groups is not None:
                self.set_columns(groups)
            ckpt = None if checkpoint is None else check_writable(checkpoint, "checkpoint")
            data = self.prepare(data)
            data.require_trainable()
            _warn_if_few_rows(len(data), "auto")
            self._check_support(data)  # on every row, before the path splits them
            return self._auto(data, given, progress, ckpt)
        if groups is not None:
            self.set_columns(groups)
        ckpt = None if checkpoint is None else check_writable(checkpoint, "checkpoint")
        data = self.prepare(data)
        data.require_trainable()
        if self.model_ is None:
            _warn_if_few_rows(len(data), self.config.lam)
        collapsed_only = PHI_POSTERIORS.get(self.config.phi_inference).collapsed
        if given["patience"] == "auto" and len(data) < MIN_ROWS_TO_STOP:
            given["patience"] = None  # too few rows to hold some out
        fit = FitConfig(**given).resolved(
            bool(self.history_), collapsed_only, len(data), sparse=self.config.lam > 0
        )
        layout = self._check_support(data)
        seeded = fit.seed is not None
        if not seeded and world()[1] > 1:
            raise ValueError(
                "seed=None in a distributed run: every rank must draw the same data order, so "
                "give every rank the same seed (the default, seed=0, does)"
            )
        generator = torch.Generator()
        if seeded:
            generator.manual_seed(fit.seed)
            rng_state = torch.Generator().manual_seed(fit.seed).get_state()
        else:
            generator.manual_seed(int(torch.randint(2**62, ()).item()))
            rng_state = None
        if self.model_ is None:
            with torch.random.fork_rng(devices=[], enabled=seeded):
                if seeded:
                    torch.set_rng_state(rng_state)
                self._build(layout, len(data))
                self.model_.init_from_data(data.values, data.observed, data.cells)
                warn_constant(data.names, self.model_.constant(), data.columns)
                self._to_device()
                if seeded:
                    rng_state = torch.get_rng_state()
        self.config.num_data = len(data)
        phases = [Phase(MAP, fit.map_epochs, fit.warmup_epochs)] if fit.map_epochs else []
        rest_warmup = 0.0 if fit.map_epochs else fit.warmup_epochs
        main = fit.epochs - fit.map_epochs - fit.relax_epochs
        if main:
            phases.append(Phase(self.config.phi_inference, main, rest_warmup))
        if fit.relax_epochs:  # the relaxed group lasso: the selected support, refit unshrunk
            phases.append(Phase(MAP, fit.relax_epochs, 0.0, relaxed=True, lr_scale=REFIT_LR))
        run = Run(fit, phases, fingerprint(data))
        return self._execute(run, data, generator, rng_state, progress, ckpt)

    def _execute(self, run, data, generator, rng_state, progress, checkpoint) -> FactVAE:
        assert self.trainer_ is not None
        valid = None
        if run.fit.patience is not None:  # the same split on every call, resume included
            data, valid = data.split(1 - run.fit.validation, seed=run.fit.seed or 0)
        self.interrupted_ = self.trainer_.execute(
            run,
            data,
            generator,
            rng_state,
            self.history_,
            self.prior_history_,
            progress,
            checkpoint,
            self._write,
            valid,
            self._callbacks,
        )
        if not self.interrupted_ and PHI_POSTERIORS.get(self.guide_.phi_mode).collapsed:
            norms = self.sparsity()
            for name in norms.index[(norms.values == 0).all(axis=1)]:
                warnings.warn(
                    f"every link of group {name!r} was pruned at lam = {self.lam:g}: the "
                    "model ignores that group (it is imputed by its mean); lower lam",
                    stacklevel=3,
                )
        if self.interrupted_ and checkpoint is None:
            warnings.warn(
                f"fit interrupted by {self.interrupted_} after step {run.global_step}; no "
                "checkpoint path was given, so the model holds the weights after that step",
                stacklevel=3,
            )
        return self

    def _auto(self, data, given, progress, checkpoint, resume=None, stage=None) -> FactVAE:
        """The ``lam="auto"`` path (:func:`~pyro_factvae.lampath.fit_auto`), from its start or
        from the checkpoint ``resume`` written in ``stage``."""
        with warnings.catch_warnings():  # said once, by fit, not per fit of the path
            warnings.simplefilter("ignore", FewRowsWarning)
            # the path's fits see 80% of the rows: constants are told of at its end
            warnings.filterwarnings("ignore", message=".*are constant in the training data")
            path = fit_auto(self, data, given, progress, checkpoint, resume, stage, self._callbacks)
        if path is not None:  # else a signal stopped it: lam_path_ names the stage to resume
            self.lam_path_ = path
            warn_constant(data.names, self.model_.constant(), data.columns)
        return self

    def _differs_from(self, meta: dict, skip: Sequence[str] = ()) -> list[str]:
        """``k=mine (file: saved)`` for each setting given here (not left at its default)
        that differs from the file's resolved one."""
        saved = ModelConfig(**meta["config"]).user_dict()
        mine, default = self.config.user_dict(), ModelConfig().user_dict()
        return [
            f"{k}={mine[k]!r} (file: {saved[k]!r})"
            for k in sorted(saved)
            if k not in skip and mine[k] != default[k] and mine[k] != saved[k]
        ]

    def _resume(self, data, path, given, checkpoint, progress) -> FactVAE:
        meta, tensors = read_payload(path)
        check_checkpoint(meta, path)
        stage = stage_of(meta)
        if stage is not None and self.config.lam == "auto":  # the lam="auto" path goes on
            # (the path itself resumes the stage with that stage's lam: a plain resume)
            diff = self._differs_from(meta, skip=("lam",))
            if self.model_ is not None or diff:
                raise ValueError(
                    f"resume continues the lam='auto' fit saved in {os.fspath(path)!r}; call "
                    f"it on a new FactVAE() with the file's settings or none (these differ: "
                    f"{', '.join(diff) or 'fitted'})"
                )
            self.config = ModelConfig(**meta["config"])
            if meta.get("columns"):
                self.set_columns(meta["columns"])
            data = self.prepare(data)
            target = check_writable(checkpoint if checkpoint is not None else path, "checkpoint")
            return self._auto(data, given, progress, target, os.fspath(path), stage)
        # the same script run again with resume= agrees with the file: only a setting that
        # was given (not left at its default) and differs from the file's resolved one conflicts
        FitConfig.check_resumed(given, meta["run"]["fit"])
        diff = self._differs_from(meta)
        if self.model_ is not None or diff:
            raise ValueError(
                f"resume restores the model saved in {os.fspath(path)!r}; call it on a new "
                f"FactVAE() with the file's settings or none (these differ from the file: "
                f"{', '.join(diff) or 'fitted'})"
            )
        self._restore(meta, tensors, path)
        data = self.prepare(data)
        run = Run.restore(meta["run"], tensors.get("perm"), data, path)
        if run.finished:  # a later fit continues with the optimizers' moments, as it would have
            self.trainer_.continue_from(tensors, run.fit)
            return self
        rng_state, generator = self.trainer_.restore(tensors)
        target = check_writable(checkpoint if checkpoint is not None else path, "checkpoint")
        return self._execute(run, data, generator, rng_state, progress, target)

    def set_columns(self, groups: Mapping[str, Sequence[str]]) -> FactVAE:
        """Set the DataFrame column-to-group mapping ``columns_``; returns ``self``."""
        if not isinstance(groups, Mapping) or not groups:
            raise ValueError("groups must be a non-empty mapping {group: [columns]}")
        for name, cols in groups.items():
            if isinstance(cols, str):
                raise ValueError(
                    f"group {name!r}: give a list of column names, not the string {cols!r}"
                )
        columns = {str(g): [str(c) for c in cols] for g, cols in groups.items()}
        if self.layout_ is not None and tuple(columns) != self.layout_.names:
            raise ValueError(
                f"groups {list(columns)} differ from the fitted groups {list(self.layout_.names)}"
            )
        self.columns_ = columns
        return self

    def set_lam(self, lam: float) -> FactVAE:
        """Change ``lam`` (``config.lam = lam``); a later :meth:`fit` continues training (a
        warm start) under it. Returns ``self``."""
        self.config.lam = lam
        return self

    def reset_optimizers(self) -> FactVAE:
        """Forget the optimizers' moments: the next :meth:`fit` starts them afresh (e.g.
        after loading other weights into ``model_`` and ``guide_``). Returns ``self``."""
        if self.trainer_ is not None:
            self.trainer_.reset()
        return self

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        """Write config (as JSON text) and weights to ``path``, atomically (its folder is
        created).

        The file holds only tensors, strings and numbers: :meth:`load` reads it with
        ``torch.load(weights_only=True)``, which never runs code from the file. ``extra``:
        JSON-ready user metadata, returned by :meth:`load` as ``metadata_`` (the ``factvae``
        command keeps the CSV column spec there).
        """
        if extra is not None:
            self.metadata_ = dict(extra)
        self._write(os.fspath(path), {}, {})

    def _write(self, path: str, meta: dict[str, Any], tensors: dict[str, Any]) -> None:
        model, guide = self.fitted_modules()
        head = {
            "config": self.config.to_dict(),
            "layout": {
                "names": list(model.layout.names),
                "dims": list(model.layout.dims),
                "likelihoods": list(model.layout.likelihoods),
            },
            "phi_mode": guide.phi_mode,
            "history": self.history_,
            "prior_history": self.prior_history_,
            "extra": self.metadata_,
            "columns": self.columns_,
            "lam_path": self.lam_path_,
        }
        cpu = lambda sd: {k: v.cpu() for k, v in sd.items()}  # noqa: E731
        weights = {"model": cpu(model.state_dict()), "guide": cpu(guide.state_dict())}
        write_payload({**head, **meta}, {**weights, **tensors}, path)

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> FactVAE:
        """Read a model written by :meth:`save`, or the model in a checkpoint, onto
        ``device`` (files hold CPU tensors, whatever device wrote them).

        Nothing from the file is executed (``torch.load(weights_only=True)``): a file whose
        pickle holds other objects is refused. A file from another format version, or whose
        weights do not fit its config, raises a ``ValueError`` that says so.
        """
        meta, tensors = read_payload(path)
        vae = cls(device=device)
        vae._restore(meta, tensors, path)
        return vae

    def _restore(self, meta: dict, tensors: dict, path) -> None:
        name = os.fspath(path)
        try:
            self.config = ModelConfig(**meta["config"])
            lay = meta["layout"]
            layout = Layout(lay["names"], lay["dims"], lay["likelihoods"])
            with torch.random.fork_rng(devices=[]):  # weights come from the file
                self._build(layout, meta["config"]["num_data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{name!r} has an invalid config: {exc}") from None
        try:
            model_state = dict(tensors["model"])
            for key, value in self.model_.state_dict().items():
                if key.endswith(".varies") and key not in model_state:
                    model_state[key] = torch.ones_like(value)  # a file from before: all vary
            self.model_.load_state_dict(model_state)
            guide_state = dict(tensors["guide"])
            for key, value in self.guide_.state_dict().items():
                if key.endswith("missing_weight") and key not in guide_state:
                    guide_state[key] = torch.zeros_like(value)  # a file from before cell masks
            self.guide_.load_state_dict(guide_state)
            self.guide_.use_phi_posterior(meta["phi_mode"], start=False)
            self._to_device()
        except (RuntimeError, KeyError, ValueError) as exc:
            raise ValueError(
                f"weights in {name!r} do not match its config (written by version "
                f"{meta.get('version')}): {str(exc).splitlines()[0]}"
            ) from None
        self.history_ = list(meta.get("history", []))
        self.prior_history_ = list(meta.get("prior_history", []))
        self.metadata_ = dict(meta.get("extra") or {})
        self.columns_ = meta.get("columns")
        self.lam_path_ = meta.get("lam_path")
