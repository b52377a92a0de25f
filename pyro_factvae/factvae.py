r"""``FactVAE``: the user-facing estimator.

This follows :class:`pyro.contrib.cevae.CEVAE`: one class that builds a
:class:`~pyro_factvae.model.Model` and :class:`~pyro_factvae.model.Guide`, trains them with
:class:`~pyro_factvae.optim.ProximalOptim` (Algorithm 1), and answers questions with them.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyro
import torch

from . import likelihoods
from .config import FactVAEConfig, _positive_int
from .data import GroupedData, as_grouped
from .fitting import Run, fingerprint
from .fitting import checkpoint_every as checkpoint_every_
from .fitting import resume as resume_run
from .guide import Guide
from .model import Layout, Model
from .optim import ProximalOptim
from .persist import model_from_payload, read_payload, write_model
from .predict import predictive_means
from .priors import column_norms
from .train import seed_everything

__all__ = ["FactVAE"]

_names = itertools.count()


class FactVAE:
    r"""factVAE: a VAE factorised over groups, with a product-of-experts encoder and a
    group-lasso prior coupling encoder and decoder sparsity (Ainsworth, Foti & Fox 2018).

    **Objective.** With ``N`` rows, ``O_i`` the observed groups of row ``i``, and
    ``ELBO_i = E_q[log p(x_{i,O_i} | z)] - KL(q(z | x_{i,I_i}) || N(0, I))``, ``fit`` maximises
    the paper's eq 9 averaged over rows::

        (1/N) sum_i ELBO_i  +  tau log N(theta_f; 0, I)  -  lam sum_{g,j} ||Phi_g[:, j]||_2

    i.e. ``lam`` (and ``tau = theta_prior_weight``) are *per-example* weights, as in the
    paper's experiments (``lam = 1`` there). In the Pyro model this is the log joint over the
    full data set divided by ``N``: the Gamma rate of eq 7 is ``(N lam)^2 / 2``. A minibatch of
    ``B`` rows estimates the first term by its mean (``pyro.plate`` scaling ``N / B`` times
    ``1 / N``); the penalty is applied exactly by the prox step (Algorithm 1), not by
    gradients. ``history_`` records the negative of the first two terms per epoch.

    Parameters
    ----------
    latent_dim : int
        ``K``, the number of latent dimensions.
    lam : float
        Per-example group-lasso weight (``>= 0``; 0 turns sparsity off).
    likelihood : str, sequence of str or mapping
        ``"normal"``, ``"bernoulli"`` or ``"categorical"``: one for all groups, a list in
        group order, or a ``{group: name}`` mapping (unlisted groups use ``"normal"``).
    encoder_hidden : sequence of int
        Hidden widths of each group's encoder network before its output layer.
    encoder_width : int
        ``H``: width of the encoder features ``h_g``; ``V_g`` is ``K x H``.
    decoder_width : int
        ``p``: rows of ``W_g``; ``Phi_g`` has ``m = p + H`` rows.
    decoder_hidden : sequence of int
        Hidden widths of each group's generator ``f_g`` after ``ReLU(W_g z + c_g)``.
    keep_prob : float
        Probability that an observed group is fed to the encoder at a training step
        (encoder group dropout, sec. 2.1). The likelihood always uses all observed groups.
    theta_prior_weight : float
        ``tau``, per-example weight of the ``N(0, 1)`` prior on the generator networks.
    baseline : float
        Initial baseline precision ``b`` of the experts (100, as the authors' code: a
        confident encoder at the start keeps the decoder from learning to ignore ``z``).
    inference : {"poe", "mixture"}
        ``"poe"``: factVAE's product of experts. ``"mixture"``: the paper's JMVAE+ baseline,
        a uniform mixture of the single-group experts trained on the average of their ELBOs
        (same networks; see :mod:`pyro_factvae.poe`). Used with ``lam=0`` in the benchmarks.
    phi_inference : {"prox", "variational"}
        ``"prox"``: MAP ``Phi`` with exact zeros (Algorithm 1). ``"variational"``: a mean-field
        posterior over ``Phi`` and ``gamma_sq`` (see :mod:`pyro_factvae.guide`).
    image_shape, conv_width
        Image groups ``(C, H, W)``: DCGAN-style convolutional networks (sec. 4.3).
    group_weight : mapping, optional
        ``{group: weight}`` on that group's log-likelihood (others 1), e.g. a weight ``> 1``
        on a sparsely observed label group (semi-supervised). Default: the paper's model.

    Attributes
    ----------
    model_, guide_ : Model, Guide
        The fitted Pyro modules (after :meth:`fit`).
    history_ : list of float
        Mean loss per epoch.
    """

    def __init__(
        self,
        latent_dim: int = 8,
        lam: float = 1.0,
        likelihood: str | Sequence[str] | Mapping[str, str] = "normal",
        encoder_hidden: Sequence[int] = (),
        encoder_width: int = 16,
        decoder_width: int = 16,
        decoder_hidden: Sequence[int] = (),
        keep_prob: float = 0.75,
        theta_prior_weight: float = 1.0,
        baseline: float = 100.0,
        inference: str = "poe",
        phi_inference: str = "prox",
        image_shape: Sequence[int] | None = None,
        conv_width: int = 32,
        group_weight: Mapping[str, float] | None = None,
    ) -> None:
        self.config = FactVAEConfig(
            latent_dim=latent_dim,
            lam=lam,
            likelihood=likelihood if isinstance(likelihood, (str, Mapping)) else list(likelihood),
            encoder_hidden=list(encoder_hidden),
            encoder_width=encoder_width,
            decoder_width=decoder_width,
            decoder_hidden=list(decoder_hidden),
            keep_prob=keep_prob,
            theta_prior_weight=theta_prior_weight,
            baseline=baseline,
            inference=inference,
            phi_inference=phi_inference,
            image_shape=None if image_shape is None else list(image_shape),
            conv_width=conv_width,
            group_weight=None if group_weight is None else dict(group_weight),
        )
        self.model_: Model | None = None
        self.guide_: Guide | None = None
        self.history_: list[float] = []
        self.layout_: Layout | None = None
        self.optim_: ProximalOptim | None = None
        self.metadata_: dict[str, Any] = {}
        self.interrupted_: str | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        state = f"fitted on {self.num_data_} rows" if self.model_ is not None else "not fitted"
        return f"FactVAE({args}) [{state}]"

    # ------------------------------------------------------------------ building
    def _build(self, layout: Layout, num_data: int) -> None:
        c = self.config
        tag = next(_names)
        self.layout_ = layout
        self.num_data_ = num_data
        self.model_ = Model(
            layout,
            latent_dim=c.latent_dim,
            encoder_width=c.encoder_width,
            decoder_width=c.decoder_width,
            decoder_hidden=c.decoder_hidden,
            lam=c.lam,
            num_data=num_data,
            theta_prior_weight=c.theta_prior_weight,
            name=f"factvae{tag}_model",
            conv=c.conv_spec(),
            group_weight=c.weights_for(layout.names),
        )
        self.guide_ = Guide(
            self.model_,
            hidden=c.encoder_hidden,
            baseline=c.baseline,
            name=f"factvae{tag}_guide",
            inference=c.inference,
            phi_inference=c.phi_inference,
        )

    def _data(self, data: Any) -> GroupedData:
        if not isinstance(data, (GroupedData, Mapping)) and self.layout_ is not None:
            data = GroupedData(data, names=self.layout_.names)  # a list: fitted names
        data = as_grouped(data)
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
                likelihoods.get(lik).check(name, data.values[g], data.observed[:, g])
        return data

    def _fitted(self) -> tuple[Model, Guide]:
        if self.model_ is None or self.guide_ is None:
            raise ValueError("this FactVAE is not fitted yet; call fit(data) first")
        return self.model_, self.guide_

    # ------------------------------------------------------------------ training
    def fit(
        self,
        data: Any,
        epochs: int = 100,
        batch_size: int = 64,
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
    ) -> FactVAE:
        """Train with collapsed SVI and the prox step (Algorithm 1).

        Parameters
        ----------
        data : GroupedData or anything :class:`GroupedData` accepts
            Training rows; NaN rows mark missing groups.
        epochs, batch_size : int
            Passes over the data and rows per step.
        lr : float
            Adam step size for all parameters but ``Phi``.
        phi_lr : float
            Step size ``eta`` of the ``Phi`` update; the prox threshold is ``eta * lam``.
        phi_optim : {"adam", "sgd"}
            See :class:`~pyro_factvae.optim.ProximalOptim`.
        warmup_epochs : float, optional
            Ramp the prox's ``lam`` linearly from 0 over this many epochs (a continuation
            start: networks first learn what the data say, then the penalty prunes; the
            objective at the end is unchanged). Default: 40% of ``epochs`` on the first
            call, none when continuing.
        lr_decay : float
            Final step sizes as a fraction of ``lr`` and ``phi_lr`` (cosine schedule over
            this call's epochs; 1 keeps them constant). Small final steps let noisy
            links settle at exact zero.
        seed : int or None
            Seeds initialisation, data order, group dropout and ``z`` draws: a CPU run with
            a seed repeats bit for bit. ``None`` leaves the RNGs as they are.
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
            and at the end.
        checkpoint_every : int, optional
            Steps between checkpoints (default: once per epoch).
        resume : path-like, optional
            Continue the run saved in this checkpoint. Config and training arguments come
            from the file (the ones given here are ignored); ``data`` must be the same. On
            CPU the resumed run ends bit for bit as the uninterrupted one.

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
        self.interrupted_: str | None = None
        if resume is not None:
            return resume_run(self, data, resume, progress, _path(checkpoint), checkpoint_every)
        _positive_int("epochs", epochs)
        _positive_int("batch_size", batch_size)
        if warmup_epochs is None:
            warmup_epochs = 0.0 if self.history_ else 0.4 * epochs
        if not (lr > 0 and phi_lr > 0 and warmup_epochs >= 0 and 0 < lr_decay <= 1):
            raise ValueError("lr and phi_lr must be > 0, warmup_epochs >= 0 and lr_decay in (0, 1]")
        data = self._data(data)
        layout = Layout(data.names, data.dims, self.config.likelihoods_for(data.names))
        for g, (name, lik) in enumerate(zip(layout.names, layout.likelihoods)):
            likelihoods.get(lik).check(name, data.values[g], data.observed[:, g])
            likelihoods.warn_scale(name, lik, data.values[g][data.observed[:, g]])
        generator = seed_everything(seed) if seed is not None else torch.Generator()
        if seed is None:
            generator.manual_seed(int(torch.randint(2**62, ()).item()))
        if self.model_ is None:
            self._build(layout, len(data))
            self.model_.init_from_data(data.values, data.observed)
        model, guide = self._fitted()
        model.num_data = guide.num_data = len(data)
        variational = self.config.phi_inference == "variational"
        if map_epochs is None:
            map_epochs = epochs // 2 if variational and not self.history_ else 0
        if map_epochs and not variational:
            raise ValueError("map_epochs applies to phi_inference='variational' only")
        if not 0 <= map_epochs < epochs:
            raise ValueError(f"map_epochs must be in [0, epochs={epochs}), got {map_epochs}")
        if self.optim_ is None or self.optim_.phi_optim != phi_optim:
            self.optim_ = ProximalOptim(
                torch.optim.Adam,
                {"lr": lr, "foreach": True},
                lam=self.config.lam,
                phi_lr=phi_lr,
                phi_optim=phi_optim,
            )
        else:  # continue training: keep the optimizers' moments
            self.optim_.set_base_lr(lr, phi_lr)
        phases = [("prox", map_epochs, warmup_epochs)] if map_epochs else []
        rest = epochs - map_epochs
        phases.append((self.config.phi_inference, rest, 0.0 if map_epochs else warmup_epochs))
        args = {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "phi_lr": phi_lr,
            "phi_optim": phi_optim,
            "lr_decay": lr_decay,
        }
        run = Run(args, phases, fingerprint(data))
        every = checkpoint_every_(checkpoint_every, len(data), batch_size)
        run.execute(self, data, generator, progress, _path(checkpoint), every)
        return self

    def set_lam(self, lam: float) -> FactVAE:
        """Change ``lam``; a later :meth:`fit` continues training (a warm start) under it.

        Used by :func:`~pyro_factvae.selection.lambda_path`. Returns ``self``.
        """
        if not (isinstance(lam, (int, float)) and lam >= 0):
            raise ValueError(f"lam must be a number >= 0, got {lam!r}")
        self.config.lam = float(lam)
        if self.model_ is not None:
            self.model_.lam = self.guide_.lam = float(lam)
        if self.optim_ is not None:
            self.optim_.lam = float(lam)
        return self

    # ------------------------------------------------------------------ inference
    def latent(
        self, data: Any, given: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Posterior ``q(z | x_given)``: mean and standard deviation, each ``(N, K)``.

        ``given`` names the groups to encode (default: every observed group). For
        ``inference="mixture"`` these are the mixture's moments.
        """
        data = self._data(data)
        _, guide = self._fitted()
        with torch.no_grad():
            q = guide.posterior_dist(data.values, data.group_mask(given))
            return q.mean.numpy(), q.variance.sqrt().numpy()

    def reconstruct(
        self,
        data: Any,
        given: Sequence[str] | None = None,
        targets: Sequence[str] | None = None,
        num_samples: int = 100,
        seed: int = 0,
    ) -> dict[str, np.ndarray]:
        """Posterior-predictive means of ``targets`` given the groups ``given``.

        ``E_{q(z | x_given)}[E(x_g | z)]``, estimated with ``num_samples`` draws of ``z``
        (``0``: plug in the posterior mean of ``z`` instead). Rows where none of ``given``
        is observed get prior-predictive means.

        Returns
        -------
        dict
            ``{group: (N, d_g) array}`` for each target (default: all groups).
        """
        data = self._data(data)
        model, guide = self._fitted()
        targets = list(model.layout.names) if targets is None else list(targets)
        idx = [data.index(t) for t in targets]
        if num_samples != 0:
            _positive_int("num_samples", num_samples)
        means = predictive_means(
            model,
            guide,
            data.values,
            data.group_mask(given),
            idx,
            num_samples,
            seed,
        )
        return {t: m.numpy() for t, m in zip(targets, means)}

    def impute(self, data: Any, num_samples: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
        """Fill every missing group with its posterior-predictive mean given the observed ones.

        Returns ``{group: (N, d_g) array}``; observed values are returned unchanged.
        """
        data = self._data(data)
        recon = self.reconstruct(data, num_samples=num_samples, seed=seed)
        out = {}
        for g, name in enumerate(data.names):
            obs = data.observed[:, g].numpy()[:, None]
            out[name] = np.where(obs, data.values[g].numpy(), recon[name])
        return out

    @torch.no_grad()
    def sample(self, n: int, mean: bool = False, seed: int | None = None) -> dict[str, np.ndarray]:
        """Draw ``n`` rows from the fitted generative model (``z ~ N(0, I)``, then each group).

        With ``mean=True`` returns ``E(x_g | z)`` instead of a draw of ``x_g``.
        """
        _positive_int("n", n)
        model, guide = self._fitted()
        if seed is not None:
            pyro.set_rng_seed(seed)
        z = torch.randn(n, model.latent_dim)
        outs = model.decode(z, list(guide.Phi))
        result: dict[str, np.ndarray] = {}
        for block, out, lik in zip(model.layout.blocks, outs, model.likelihoods):
            values = lik.mean(out).unbind(-2) if mean else [d.sample() for d in lik.dists(out)]
            for g, value in zip(block.groups, values):
                result[model.layout.names[g]] = value.numpy()
        return {name: result[name] for name in model.layout.names}

    def sparsity(self):
        """Column norms ``||Phi_g[:, j]||_2`` as a ``G x K`` pandas DataFrame.

        Rows are groups (in the user's order), columns ``z0 .. z{K-1}``. A link pruned by the
        prox is exactly ``0.0``.
        """
        import pandas as pd

        model, guide = self._fitted()
        norms = np.zeros((model.layout.num_groups, model.latent_dim))
        for block, phi in zip(model.layout.blocks, guide.Phi):
            norms[list(block.groups)] = column_norms(phi.detach()).double().numpy()
        return pd.DataFrame(
            norms,
            index=pd.Index(model.layout.names, name="group"),
            columns=[f"z{j}" for j in range(model.latent_dim)],
        )

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, extra: Mapping[str, Any] | None = None) -> None:
        """Write config (as JSON text) and weights to ``path``, atomically.

        The file holds only tensors, strings and numbers: :meth:`load` reads it with
        ``torch.load(weights_only=True)``, which never runs code from the file. ``extra``:
        JSON-ready user metadata, returned by :meth:`load` as ``metadata_`` (the ``factvae``
        command keeps the CSV column spec there).
        """
        self._save(path, extra)

    def _save(self, path, extra=None, extra_meta=None, extra_payload=None) -> None:
        write_model(self, path, extra, extra_meta, extra_payload)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FactVAE:
        """Read a model written by :meth:`save`, or the model in a checkpoint.

        Nothing from the file is executed (``torch.load(weights_only=True)``): a file whose
        pickle holds other objects is refused. A file from another format version, or whose
        weights do not fit its config, raises a ``ValueError`` that says so.
        """
        return cls._from_payload(*read_payload(path), path)

    @classmethod
    def _from_payload(cls, meta: dict, payload: dict, path) -> FactVAE:
        return model_from_payload(cls, meta, payload, path)

    def _prefix(self) -> str:
        """Start of this instance's param-store names (``factvae<n>_``)."""
        return self.model_._pyro_name[: -len("model")]


def _path(path: str | os.PathLike | None) -> str | None:
    return None if path is None else os.fspath(path)
