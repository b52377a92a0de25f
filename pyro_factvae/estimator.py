r"""``FactVAE``: the user-facing estimator.

This follows :class:`pyro.contrib.cevae.CEVAE`: one class that builds a
:class:`~pyro_factvae.module.model.Model` and :class:`~pyro_factvae.module.guide.Guide` from a
:class:`~pyro_factvae.config.ModelConfig`, hands them to
the inference layer once per call (the ``lam`` path, :func:`~pyro_factvae.infer.path.fit_auto`,
or one fit, :class:`~pyro_factvae.infer.run.Trainer`, which owns the plan, seeds, split,
signals, checkpoints and resume), and answers questions with them. It holds no
training logic of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from .config import ModelConfig
from .data import GroupedData, is_dataframe
from .fit_config import FitConfig
from .infer.callbacks import Epoch
from .infer.checkpoint import restore, write
from .infer.path import fit_auto
from .infer.plan import check_posterior, warn_if_few_rows
from .infer.resume import resume_fit
from .infer.run import Trainer
from .infer.state import FitState, as_device
from .io import check_writable, read_payload
from .module.guide import Guide
from .module.model import Model
from .queries import Queries
from .rng import float32_default

__all__ = ["FactVAE"]


class FactVAE(Queries):
    r"""factVAE: a VAE factorised over groups, with a product-of-experts encoder and a
    group-lasso prior coupling encoder and decoder sparsity (Ainsworth, Foti & Fox 2018).

    **Objective.** With ``N`` rows, ``O_i`` the observed groups of row ``i``, and
    ``ELBO_i = E_q[log p(x_{i,O_i} | z)] - KL(q(z | x_{i,I_i}) || N(0, I))``, ``fit`` maximises
    the paper's eq 9 averaged over rows::

        (1/N) sum_i ELBO_i  +  tau log N(theta_f; 0, I)  -  lam sum_{g,j} v_g ||Phi_g[:, j]||_2

    i.e. ``lam`` (and ``tau = theta_prior_weight``) are *per-example* weights, and ``lam`` is
    also per variable (``v_g``: the width of group ``g``, 1 for a categorical label); the
    penalty is applied exactly by the prox step (Algorithm 1). ``history_`` records the
    negative of the first term per epoch, ``prior_history_`` that of the second (more in
    the docs' objective page).

    Parameters
    ----------
    latent_dim : int or "auto"
        ``K``, the number of latent dimensions; ``"auto"``: ``min(64, max(16, 2 G))`` for
        ``G`` groups (the group lasso prunes the surplus), and no more than the total number
        of columns.
    lam : float or "auto"
        Per-example, per-variable group-lasso weight (``>= 0``; 0 turns sparsity off): the
        links of a group of ``v`` variables are penalised by ``lam * v``. ``"auto"`` (default)
        chooses it from the data: ``fit`` walks the grid ``0, 0.01, 0.03, 0.1, 0.17, 0.3,
        0.55, 1`` (on to 1.8, 3.2, 5.6, 10 while no ``lam`` beats the mean imputation) with
        warm starts and relaxed refits on 80% of the rows (ending at a ``lam`` whose error
        is 25% above the best), scores the held-out imputation error of each group given
        the others on the other 20%, keeps the sparsest map within 1% of the best (at the
        smallest ``lam`` that keeps it), and refits that support on every row, standardized
        by every row (``lam_``,
        ``lam_path_``: the choice; then in ``config.lam``).
    likelihood : str, sequence of str or mapping
        ``"normal"``, ``"bernoulli"``, ``"categorical"`` (a one-hot group), ``"poisson"`` or
        ``"negative_binomial"`` (counts; see ``library_size``), or a name registered in
        ``pyro_factvae.registry.LIKELIHOODS``: one for all groups, a list in group order, or a
        ``{group: name}`` mapping (unlisted groups use ``"normal"``).
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
        posterior over ``Phi`` and ``gamma_sq`` (see :mod:`~pyro_factvae.module.guide`); it
        needs ``lam`` a number > 0 (at 0 the prior of ``gamma_sq`` is flat).
    image_shape, conv_width
        Image groups ``(C, H, W)``: DCGAN-style convolutional networks (sec. 4.3).
    group_weight : mapping, optional
        ``{group: weight}`` on that group's log-likelihood (others 1), e.g. a weight ``> 1``
        on a sparsely observed label group (semi-supervised). Default: the paper's model.
    library_size : None, "data" or mapping
        Per-row library-size offsets of the count groups (``"poisson"``,
        ``"negative_binomial"``; see :mod:`~pyro_factvae.module.counts`): ``"data"``, each
        row's own observed counts of the group over the typical ones; a mapping
        ``{count group: "data" or the name of a one-column group of size factors}``, given
        (1 = a typical row; where it is missing or 0, the counts say; a negative one is
        refused). ``None``
        (default): no offset, every row at the features' mean depth.
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
        Per epoch, the prior terms per row, apart: ``-tau log N(theta_f; 0, I)`` (``tau``
        times a constant of about 0.92 nats per generator weight, plus weight decay), and
        in a variational phase the KL of ``Phi`` and ``gamma_sq`` over ``N``.
    config : ModelConfig
        The settings. Before a fit, the spec (assignments are validated like the
        constructor's arguments); after it, the model's resolved, frozen config (change
        ``lam`` with :meth:`set_lam`).
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
        library_size: str | Mapping[str, str] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        settings = dict(locals())  # the arguments, all of them ModelConfig fields but device
        del settings["self"], settings["device"]
        config = ModelConfig(**settings)
        self._state = FitState(config, as_device(device))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ModelConfig.__dataclass_fields__:  # a setting: its one owner is the config
            raise AttributeError(
                f"{name} is a setting of the model: give it to FactVAE({name}=...), or before "
                f"a fit set vae.config.{name} = ...; after a fit, lam changes with set_lam"
            )
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.user_dict().items())
        state = f"fitted on {self.num_data_} rows" if self.model_ is not None else "not fitted"
        return f"FactVAE({args}) [{state}]"

    # the fitted state (:class:`~pyro_factvae.infer.state.FitState`), read through attributes
    config = property(lambda self: self._state.config)
    device = property(lambda self: self._state.device, doc="Where the model trains and predicts.")
    model_ = property(lambda self: self._state.model, doc="The fitted Model.")
    guide_ = property(lambda self: self._state.guide, doc="The fitted Guide.")
    layout_ = property(lambda self: self._state.layout, doc="The fitted groups' Layout.")
    history_ = property(lambda self: self._state.history)
    prior_history_ = property(lambda self: self._state.prior_history)
    metadata_ = property(lambda self: self._state.metadata, doc="User metadata kept in files.")
    columns_ = property(lambda self: self._state.columns, doc="DataFrame columns per group.")
    variables_ = property(
        lambda self: self._state.variables,
        doc="The names of each group's variables, where the first fit's data named them.",
    )
    lam_path_ = property(lambda self: self._state.lam_path, doc="The lam='auto' path.")
    interrupted_ = property(lambda self: self._state.interrupted)

    @property
    def fit_state(self) -> FitState:
        """The :class:`~pyro_factvae.infer.state.FitState` the inference layer trains (the
        modules, optimizers and training record behind the attributes above)."""
        return self._state

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

    @property
    def spread_(self) -> float:
        """The factor by which the draws of continuous groups (``impute(num_draws=...)``,
        ``predict_interval``) are spread about their imputed means, at least 1: the factor
        that gave draws of hidden groups the smallest CRPS on the rows early stopping (or the
        ``lam`` path) held out, measured at the end of each fit
        (:mod:`~pyro_factvae.infer.spread`); 1.0 (the model's own draws) after a fit without
        validation rows (``patience=None``, or fewer than 20 rows)."""
        self.fitted_modules()
        return float(self._state.spread)

    def prepare(self, data: Any, allow_empty_rows: bool = False) -> GroupedData:
        """``data`` as :class:`GroupedData`, checked against the fitted groups, widths and
        likelihoods (see :meth:`~pyro_factvae.infer.state.FitState.prepare`)."""
        return self._state.prepare(data, allow_empty_rows)

    def fitted_modules(self) -> tuple[Model, Guide]:
        """``(model_, guide_)``; a ``ValueError`` if the model is not fitted yet."""
        return self._state.fitted()

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
        epochs : int or None
            Passes over the data. ``None`` (default): about 3,000 steps, at least 20 and at
            most 1,000 epochs (``min(1000, max(20, ceil(3000 / minibatches per epoch)))``);
            with early stopping, a cap.
        batch_size : int
            Rows per step.
        lr : float
            Adam step size for all parameters but ``Phi``.
        phi_lr : float
            Step size ``eta`` of the ``Phi`` update; the prox threshold is ``eta * lam``.
        phi_optim : {"adam", "sgd"}
            See :class:`~pyro_factvae.infer.optim.ProximalOptim`.
        warmup_epochs : float, optional
            Ramp the prox's ``lam`` linearly from 0 over this many epochs (a continuation
            start: networks first learn what the data say, then the penalty prunes; the
            objective at the end is unchanged). Default: 40% of the epochs before the
            relaxed refit (30% of ``epochs`` when ``relax_epochs`` takes its default quarter)
            on the first call, none when continuing.
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
            the objective (negative ELBO, plus the prox's group-lasso term) after every epoch
            past the ``lam`` warm-up (every ``ceil(8 / minibatches per epoch)`` epochs where an
            epoch has fewer than 8 minibatches), end the phase after ``patience`` epochs
            without a better score and restore the weights of the best epoch; ``epochs`` is
            then a cap.
            ``"auto"`` (default): about 300 steps' worth of epochs (at least 10), and no early
            stopping below 20 rows. ``None`` trains every epoch on every row.
        validation : float
            Fraction of rows held out for early stopping.
        relax_epochs : int or None
            ``phi_inference="prox"`` only: the last this many of ``epochs`` refit the support
            the prox selected without shrinkage (the relaxed group lasso), at a tenth of the
            step sizes. ``None`` (default): a quarter of ``epochs`` with ``lam > 0``, else 0.
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
            an :class:`~pyro_factvae.infer.callbacks.Epoch`; one that returns ``True`` (a
            bool; other values, such as a count ``file.write`` returns, are ignored) stops the
            fit there, as a signal does, on every rank of a distributed run (``interrupted_ ==
            "callback"``; resumable from the checkpoint). One that raises stops it the same
            way, the checkpoint written, and its exception then propagates. Built-ins:
            :class:`~pyro_factvae.infer.callbacks.CSVLogger`,
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
        # the training settings among the arguments (FitConfig's fields)
        given = {k: v for k, v in locals().items() if k in FitConfig.__dataclass_fields__}
        # a fit under a caller's no_grad, inference_mode or float64 default trains the same
        with torch.inference_mode(False), torch.enable_grad(), float32_default():
            callbacks = _callback_list(callbacks)
            if checkpoint_every is not None and checkpoint is None and resume is None:
                raise ValueError(
                    "checkpoint_every sets how often the checkpoint is written: give checkpoint "
                    "a path too"
                )
            if groups is not None and not is_dataframe(data):  # a resumed fit's too
                raise ValueError(
                    "groups= maps a DataFrame's columns to groups; these data are a "
                    f"{type(data).__name__}, whose groups are their own: leave groups out"
                )
            if resume is not None:
                resume_fit(
                    self._state, data, resume, given, checkpoint, progress, callbacks, groups
                )
                return self
            auto = self.config.lam == "auto"
            check_posterior(self.config.phi_inference, self.config.lam)  # before any work
            if auto and self.model_ is not None:
                raise ValueError(
                    "lam='auto' chooses lam on a first fit; give lam a number (e.g. the "
                    "chosen vae.lam_) to continue training"
                )
            before = self.columns_
            first = self.model_ is None  # refused before any step, it leaves no model behind
            unfitted = self._state.fresh() if first else None
            try:  # a call refused before training leaves the mapping as it was
                if groups is not None:
                    self.set_columns(groups)
                target = None if checkpoint is None else check_writable(checkpoint, "checkpoint")
                data = self.prepare(data)
                data.require_trainable()
            except (ValueError, OSError):
                self._state.columns = before
                raise
            if self.columns_ is None and data.columns is not None:  # from_dataframe's mapping
                self.set_columns(data.columns)
            self._state.record_variables(data)
            if first:
                warn_if_few_rows(len(data), self.config.lam)
            try:
                if auto:
                    self._state.layout_of(data)  # checks every row, before the path splits
                    fit_auto(self._state, data, given, progress, target, callbacks=callbacks)
                else:
                    Trainer(self._state).train(data, given, progress, target, callbacks)
            except ValueError:
                if first and not self._state.history and self._state.interrupted is None:
                    self._state = unfitted  # a first fit refused before its first epoch
                raise
            return self

    def set_columns(self, groups: Mapping[str, Sequence[str]]) -> FactVAE:
        """Set the DataFrame column-to-group mapping ``columns_``; returns ``self``."""
        self._state.set_columns(groups)
        return self

    def set_lam(self, lam: float) -> FactVAE:
        """Change ``lam`` (a new frozen config for the model and guide); a later :meth:`fit`
        continues training (a warm start) under it. Returns ``self``."""
        self._state.set_lam(lam)
        return self

    def reset_optimizers(self) -> FactVAE:
        """Forget the optimizers' moments: the next :meth:`fit` starts them afresh (e.g.
        after loading other weights into ``model_`` and ``guide_``). Returns ``self``."""
        self._state.reset_optimizers()
        return self

    def save(
        self,
        path: str | os.PathLike,
        extra: Mapping[str, Any] | None = None,
        optimizers: bool = True,
    ) -> None:
        """Write config (as JSON text), weights and the optimizers' moments to ``path``,
        atomically (its folder is created): ``FactVAE.load(path).fit(data)`` goes on training
        as this object's ``fit`` would. ``optimizers=False`` leaves the moments out (a file
        about a third the size, for a model that only answers queries; a later ``fit``
        starts them afresh).

        The file holds only tensors, strings and numbers: :meth:`load` reads it with
        ``torch.load(weights_only=True)``, which never runs code from the file. ``extra``:
        JSON-ready user metadata, returned by :meth:`load` as ``metadata_``, and kept in
        ``metadata_`` at once, as JSON gives it back (keys as text, tuples as lists).
        """
        if extra is not None:
            try:  # checked before it is kept: a later save would fail on it too
                text = json.dumps(dict(extra))
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"extra must be JSON-ready (numbers, strings, lists, dicts): {exc}"
                ) from None
            self._state.metadata = json.loads(text)  # as load gives it back, here too
        write(self._state, os.fspath(path), optimizers=optimizers)

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
        with float32_default():  # the weights as saved, whatever torch's default dtype
            restore(vae.fit_state, meta, tensors, path)
        return vae


def _callback_list(callbacks: Any) -> list[Callable[[Epoch], Any]]:
    """``fit``'s ``callbacks`` as a list (``None``: none; a generator read once), else a
    ``ValueError``."""
    if callbacks is None:
        return []
    items = None
    if not callable(callbacks) and not isinstance(callbacks, (str, bytes)):
        try:
            items = list(callbacks)
        except TypeError:
            pass
    if items is None or not all(callable(c) for c in items):
        raise ValueError(
            f"callbacks must be a list of callables, got {callbacks!r} (one callback: "
            "callbacks=[fn])"
        )
    return items
