"""The factVAE generative model (the guide is in :mod:`pyro_factvae.module.guide`).

Ainsworth, Foti & Fox, "Disentangled VAE Representations for Multi-Aspect and Missing Data"
(2018). Equation numbers refer to that paper. Site names are documented in
:mod:`pyro_factvae.sites`; they are stable, for ``poutine.condition`` / ``block`` / ``replay``.

Parameters are module-local (``pyro.settings`` ``module_local_params``): they live in the
``PyroModule``, not in Pyro's global parameter store, so two models never share or clobber
parameters, and ``state_dict`` / ``parameters()`` are the whole truth.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from .. import sites
from ..config import ModelConfig
from ..layout import Layout
from ..registry import LIKELIHOODS
from . import held, library
from .likelihoods import HALF_LOG_2PI, with_cells
from .nets import BlockDecoder
from .priors import gamma_sq_prior, phi_prior

__all__ = ["Model", "module_local"]


def module_local(method: Callable) -> Callable:
    """Run a ``PyroModule`` method with module-local parameters (no global param store)."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with pyro.settings.context(module_local_params=True):
            return method(*args, **kwargs)

    return wrapper


def lam_totals(
    layout: Layout, config: ModelConfig, batch_size: int | None = None
) -> list[float | torch.Tensor]:
    """Per block, the group-lasso rate of the full data set: ``N lam v_b`` with ``v_b`` the
    variables of each of its groups (:meth:`~pyro_factvae.layout.Layout.penalty_weights`), so
    ``lam`` is a per-example, per-variable weight (the model's and the guide's)."""
    return layout.penalty_rates(config.lam_total(batch_size))


class Model(PyroModule):
    r"""The factVAE generative model (eqs 4-8).

    For every group ``g`` and latent ``j`` and every row ``i``::

        gamma_sq_g[j] ~ Gamma((m + 1)/2, (N lam v_g)^2 / 2)             # eq 7
        Phi_g[:, j]   ~ Normal(0, gamma_sq_g[j] I_m),  Phi_g = [W_g ; V_g^T]   # eq 8
        theta_f       ~ Normal(0, (N tau)^-1 I)        # generator nets, sec. 2
        z_i           ~ Normal(0, I_K)                 # eq 4
        x_i^(g)       ~ lik_g(f_g(W_g z_i))   for the observed groups of row i   # eq 5
                                               (their observed cells, given ``cells``)

    ``m = p + H`` stacks the decoder's ``p x K`` latent-to-group matrix ``W_g`` over the
    ``H x K`` transpose of the encoder's precision matrix ``V_g``; the guide reads ``V_g`` from
    the same ``Phi_g``, so one group-lasso prior couples encoder and decoder sparsity.
    ``N = config.num_data`` (or the batch size) makes ``lam`` and ``tau`` per-example weights:
    the log joint divided by ``N`` is the paper's eq 9 averaged over rows. ``v_g``, the number
    of variables of group ``g`` (its width; 1 for a categorical label), makes ``lam`` a
    per-variable weight: a group's log-likelihood sums over its variables, so a link must
    explain as much per variable in a wide group as in a narrow one to survive.

    Parameters
    ----------
    layout : Layout
        Group names, widths and likelihoods.
    config : ModelConfig
        ``latent_dim`` (``K``), ``encoder_width`` (``H``), ``decoder_width`` (``p``),
        ``decoder_hidden``, ``lam``, ``num_data`` (``N``), ``theta_prior_weight`` (``tau``),
        ``group_weight`` and ``image_shape``. A spec (which may hold ``"auto"``) is resolved
        against ``layout`` into a frozen copy (:meth:`~pyro_factvae.config.ModelConfig.resolved`);
        a resolved one is kept as it is. The model and its guide read it and never write it.
    """

    def __init__(self, layout: Layout, config: ModelConfig) -> None:
        super().__init__()
        if not config.frozen:  # "auto" latents and widths resolved from the layout, once
            config = config.resolved(layout.dims)
        self.layout = layout
        self.config = config
        self.group_weight = config.weights_for(layout.names)
        conv = config.conv_spec()
        if conv is not None:
            for g, d in zip(layout.names, layout.dims):
                if d != conv.dim:
                    raise ValueError(
                        f"group {g!r} has {d} features but the conv networks expect images "
                        f"of shape {conv.image_shape} ({conv.dim} features)"
                    )
        width, hidden = config.decoder_width, config.decoder_hidden
        self.decoders = nn.ModuleList(
            BlockDecoder(len(b.groups), b.dim, width, hidden, conv, b.widths if b.padded else None)
            for b in layout.blocks
        )
        self.likelihoods = nn.ModuleList(
            LIKELIHOODS.get(b.likelihood)(len(b.groups), b.dim, widths=b.widths)
            if b.padded
            else LIKELIHOODS.get(b.likelihood)(len(b.groups), b.dim)
            for b in layout.blocks
        )
        counts = [getattr(LIKELIHOODS.get(lik), "counts", False) for lik in layout.likelihoods]
        #: where each group's library-size offset comes from (None, "data", a group index)
        self.library = config.libraries_for(layout.names, counts)
        for g, source in enumerate(self.library):
            if isinstance(source, int) and layout.dims[source] != 1:
                raise ValueError(
                    f"library_size of {layout.names[g]!r}: group {layout.names[source]!r} has "
                    f"{layout.dims[source]} columns; the size factors are one column"
                )

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        """Where the parameters live (``FactVAE(device=...)`` puts them there)."""
        return next(self.parameters()).device

    def init_from_data(
        self, xs: Sequence[torch.Tensor], mask: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        """Set the likelihoods' data-dependent buffers (e.g. the Normal's standardization) and
        training ranges from the observed cells (``cells``, ``(N, sum d_g)``) or rows (``mask``)."""
        per_group = self.layout.split_cells(cells)
        for block, lik in zip(self.layout.blocks, self.likelihoods):
            obs = [mask[:, g] if per_group is None else per_group[g] for g in block.groups]
            lik.init_from_data([xs[g] for g in block.groups], obs)
            ranges = [held.column_range(xs[g], o) for g, o in zip(block.groups, obs)]  # once
            held.note_range(lik, ranges)
            if lik.holds:
                held.find_constant(lik, ranges)

    def keep_varying(
        self, xs: Sequence[torch.Tensor], mask: torch.Tensor, cells: torch.Tensor | None = None
    ) -> None:
        """Features held constant (fitted on rows where they were) that vary in these data are
        no longer held constant (``init_from_data``'s arguments)."""
        per_group = self.layout.split_cells(cells)
        for block, lik in zip(self.layout.blocks, self.likelihoods):
            obs = [mask[:, g] if per_group is None else per_group[g] for g in block.groups]
            ranges = [held.column_range(xs[g], o) for g, o in zip(block.groups, obs)]  # once
            lik.keep_varying([xs[g] for g in block.groups], obs, ranges)
            held.note_range(lik, ranges)
            if lik.holds:
                held.keep_varying(lik, ranges)

    def lam_totals(self, batch_size: int | None = None) -> list[float | torch.Tensor]:
        """See :func:`lam_totals`."""
        return lam_totals(self.layout, self.config, batch_size)

    def sample_phi(self, batch_size: int) -> list[torch.Tensor]:
        """Sample the ``gamma_sq_<g>`` and ``Phi_<g>`` sites; return ``Phi`` stacked per block."""
        m, k = self.config.phi_rows, self.config.latent_dim
        device = self.device
        phis = []
        for block, lam_total in zip(self.layout.blocks, self.lam_totals(batch_size)):
            stack = []
            rates = lam_total.flatten().tolist() if torch.is_tensor(lam_total) else [lam_total]
            priors = [gamma_sq_prior(m, k, rate, device) for rate in rates]  # per group, or
            priors *= len(block.groups) // len(priors)  # one for the block, shared
            for g, prior in zip(block.groups, priors):
                name = self.layout.names[g]
                tag = sites.tagged
                gamma_sq = pyro.sample(sites.gamma_sq(name), prior, infer=tag("gamma_sq"))
                phi = pyro.sample(sites.phi(name), phi_prior(gamma_sq, m), infer=tag("Phi"))
                stack.append(phi)
            phis.append(torch.stack(stack, dim=-3))
        return phis

    @property
    def row_floats(self) -> int:
        """Floats one row's decode holds (its outputs with any padding, ``z`` and the decoders'
        first layers): the unit in which the queries bound the memory of a chunk of rows."""
        width = sum(len(b.groups) * b.dim for b in self.layout.blocks) + self.latent_dim
        return width + self.config.decoder_width * self.layout.num_groups

    def theta_log_prior(self) -> torch.Tensor:
        """``sum log N(theta_f; 0, 1)`` over the generator networks' parameters."""
        flat = torch.cat([p.reshape(-1) for dec in self.decoders for p in dec.prior_parameters()])
        # one flat vector: two autograd nodes a step, not three per parameter tensor
        count = flat.numel() - sum(dec.held_zero for dec in self.decoders)  # padding's zeros
        return -0.5 * flat.dot(flat) - count * HALF_LOG_2PI

    def decode(
        self, z: torch.Tensor, phis: Sequence[torch.Tensor], offsets: Sequence | None = None
    ) -> list[torch.Tensor]:
        """Decoder outputs ``(..., G_b, d_b)`` per block, given ``z`` and ``Phi`` per block;
        ``offsets``: per block, the rows' library sizes (:meth:`offsets`), applied."""
        p = self.config.decoder_width
        outs = [dec(z, phi[..., :p, :]) for dec, phi in zip(self.decoders, phis)]
        if offsets is None:
            return outs
        for b, (lik, entry) in enumerate(zip(self.likelihoods, offsets)):
            if entry is None:
                continue
            log_total, seen, from_data, given = entry
            off = torch.where(from_data, lik.depth(outs[b], log_total, seen), 0.0)
            if given is not None:
                off = torch.where(given.isfinite(), given, off)
            outs[b] = outs[b] + off.unsqueeze(-1)
        return outs

    def offsets(
        self,
        blocks: Sequence[torch.Tensor],
        mask: torch.Tensor,
        cell_blocks: Sequence[torch.Tensor] | None = None,
        sources: torch.Tensor | None = None,
    ) -> list[tuple | None] | None:
        """The rows' library sizes for :meth:`decode` (:func:`~.library.offsets`)."""
        return library.offsets(self, blocks, mask, cell_blocks, sources)

    def means(
        self,
        z: torch.Tensor,
        phis: Sequence[torch.Tensor],
        offsets: Sequence | None = None,
        outs: Sequence[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """``E(x_g | z)`` for every group, ``(..., d_g)`` each, in the user's group order
        (``offsets``: see :meth:`decode`; ``outs``: :meth:`decode`'s outputs, when made)."""
        outs = self.decode(z, phis, offsets) if outs is None else outs
        return self.layout.scatter_unbind(
            [lik.hold(lik.mean(out)) for out, lik in zip(outs, self.likelihoods)]
        )

    def units(self) -> list[torch.Tensor]:
        """Each group's ``(d_g,)`` units of standardization (see ``Likelihood.units``), in
        the user's group order."""
        return self.layout.scatter_unbind([lik.units() for lik in self.likelihoods])

    def constant(self) -> list[torch.Tensor]:
        """Each group's ``(d_g,)`` bool on the CPU: features constant in the training data
        (see ``Likelihood.constant``), in the user's group order."""
        return self.layout.scatter_unbind([lik.constant().cpu() for lik in self.likelihoods])

    def dists(
        self, z: torch.Tensor, phis: Sequence[torch.Tensor], offsets: Sequence | None = None
    ) -> list:
        """``p(x_g | z)`` for every group, in the user's group order (``offsets``: see
        :meth:`decode`)."""
        outs = self.decode(z, phis, offsets)
        return self.layout.scatter([lik.dists(out) for out, lik in zip(outs, self.likelihoods)])

    def draw(
        self, z: torch.Tensor, phis: Sequence[torch.Tensor], offsets: Sequence | None = None
    ) -> list[torch.Tensor]:
        """A draw of every group from ``p(x_g | z)``, in the user's group order, the features
        constant in the training data at their value
        (:meth:`~pyro_factvae.module.likelihoods.Likelihood.draw`)."""
        outs = self.decode(z, phis, offsets)
        return self.layout.scatter([lik.draw(out) for out, lik in zip(outs, self.likelihoods)])

    def log_likelihoods(
        self,
        xs: Sequence[torch.Tensor],
        observed: torch.Tensor,
        z: torch.Tensor,
        phis: Sequence[torch.Tensor],
        cells: torch.Tensor | None = None,
        given: torch.Tensor | None = None,
        sources: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``log p(x_g | z)`` for every group, ``(..., B, G)`` for ``z`` of shape
        ``(..., B, K)``, over each group's observed cells (``cells``: the ``(B, sum d_g)``
        cell mask; ``None``: all of them). Missing groups are scored at an in-support
        placeholder: mask them. ``given``: the ``(B, G)`` groups ``z`` was inferred from,
        which the count groups' own totals are read from too (default: ``observed``; a
        held-out group must not lend its own depth to its score); ``sources``: groups whose
        observed values may set the depth as size factors besides ``given``'s (covariates,
        as in training; :func:`~.library.offsets_from`)."""
        per_group = self.layout.split_cells(cells)
        cell_blocks = self.layout.gather_cells(cells)
        reads = observed if given is None else given & observed
        outs = self.decode(z, phis, library.offsets_from(self, xs, reads, cells, sources))
        per_block = []
        for b, (block, out, lik) in enumerate(zip(self.layout.blocks, outs, self.likelihoods)):
            fns = with_cells(lik.dists, out, cells=None if cell_blocks is None else cell_blocks[b])
            items = []
            for g, fn in zip(block.groups, fns):
                x = xs[g] if per_group is None else xs[g].where(per_group[g], 0.0)
                items.append(fn.log_prob(lik.in_support(x, observed[:, g : g + 1])))
            per_block.append(items)
        return torch.stack(self.layout.scatter(per_block), dim=-1)

    def block_log_likelihoods(
        self,
        blocks: Sequence[torch.Tensor],
        z: torch.Tensor,
        phis: Sequence[torch.Tensor],
        cells: Sequence[torch.Tensor] | None = None,
        offsets: Sequence | None = None,
    ) -> torch.Tensor:
        """``log p(x_g | z)`` of every group, ``(..., B, G)`` in the user's order, from
        per-block values ``(B, G_b, d_b)`` holding in-support values under missing groups
        and cells (one batched call per block: the fast path of the training objective);
        ``cells``: per-block ``(B, G_b, d_b)`` cell masks, or ``None``; ``offsets``: the
        rows' library-size offsets (:meth:`offsets`)."""
        outs = self.decode(z, phis, offsets)
        cells = [None] * len(outs) if cells is None else cells
        per_block = [
            with_cells(lik.log_prob, out, x, cells=c)
            for x, out, lik, c in zip(blocks, outs, self.likelihoods, cells)
        ]
        return self.layout.scatter_axis(per_block, dim=-1)

    @module_local
    def forward(
        self,
        xs: Sequence[torch.Tensor] | None,
        mask: torch.Tensor | None = None,
        enc_mask: torch.Tensor | None = None,
        weight: torch.Tensor | None = None,
        batch_size: int | None = None,
        cells: torch.Tensor | None = None,
        enc_cells: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the model on a minibatch (or simulate one).

        Parameters
        ----------
        xs : sequence of torch.Tensor or None
            One ``(B, d_g)`` tensor per group; values under missing groups and cells are
            ignored.
            ``None`` simulates: every ``x_<g>`` site is sampled (prior predictive with
            :class:`pyro.infer.Predictive`).
        mask : torch.Tensor, optional
            ``(B, G)`` bool, ``True`` where a group is observed (likelihood on those).
            Required with data; when simulating, defaults to all ``True``.
        enc_mask : torch.Tensor, optional
            The groups fed to the encoder: the guide reads them, and so do the library
            sizes of count groups (``library_size``); otherwise not used here.
        weight : torch.Tensor, optional
            ``(B,)`` per-row weights of the row terms (``poutine.scale`` inside the data
            plate), e.g. the JMVAE+ expansion of
            :func:`~pyro_factvae.module.experts.expand_experts`.
        batch_size : int, optional
            Rows to simulate when ``xs`` and ``mask`` are ``None``.
        cells : torch.Tensor, optional
            ``(B, sum d_g)`` bool cell mask (the groups' columns side by side), ``True`` where
            a cell is observed: each ``x_<g>`` site scores its observed cells only (a masked
            distribution inside ``poutine.mask(mask[:, g])``). ``None``: every cell of an
            observed group is observed.
        enc_cells : torch.Tensor, optional
            Which cells the encoder reads (the guide's; the library sizes read them too).

        Returns
        -------
        torch.Tensor
            The sampled ``z``, shape ``(B, K)``.
        """
        layout = self.layout
        if xs is None:
            if mask is None:
                if batch_size is None:
                    raise ValueError("to simulate, give mask or batch_size")
                shape = (batch_size, layout.num_groups)
                mask = torch.ones(shape, dtype=torch.bool, device=self.device)
            layout.check_mask(mask)
            blocks: list[torch.Tensor | None] = [None] * len(layout.blocks)
        else:
            if mask is None:
                raise ValueError("mask is required with data: (B, G) bool, True = observed")
            blocks = layout.gather(xs, mask, cells)
            blocks = [
                lik.in_support(x, mask[:, list(block.groups)].unsqueeze(-1))
                for block, x, lik in zip(layout.blocks, blocks, self.likelihoods)
            ]
        cell_blocks = layout.gather_cells(cells)
        batch = mask.shape[0]
        phis = self.sample_phi(batch)
        num_data = self.config.num_data or batch
        tau = self.config.theta_prior_weight
        if tau > 0:
            pyro.factor(sites.THETA_PRIOR, tau * num_data * self.theta_log_prior())
        with (
            pyro.plate(
                sites.DATA_PLATE, num_data, subsample=torch.arange(batch, device=mask.device)
            ),
            poutine.scale(scale=1.0 if weight is None else weight),
        ):
            zeros = torch.zeros(batch, self.config.latent_dim, device=mask.device)
            prior = dist.Normal(zeros, 1.0).to_event(1)
            z = pyro.sample(sites.Z, prior)
            offsets = None
            if xs is not None:  # the depth is read where the encoder reads (as CollapsedELBO)
                reads = mask if enc_mask is None else mask & enc_mask
                enc_blocks = cell_blocks
                if enc_cells is not None:
                    reads = reads & layout.groups_seen(enc_cells)
                    enc_blocks = layout.gather_cells(enc_cells)
                offsets = self.offsets(blocks, reads, enc_blocks, sources=mask)
            outs = self.decode(z, phis, offsets)
            for b, (block, x, out, lik) in enumerate(
                zip(layout.blocks, blocks, outs, self.likelihoods)
            ):
                fns = with_cells(
                    lik.dists, out, cells=None if cell_blocks is None else cell_blocks[b]
                )
                for i, (g, fn) in enumerate(zip(block.groups, fns)):
                    weight_g = 1.0 if self.group_weight is None else self.group_weight[g]
                    with poutine.mask(mask=mask[:, g]), poutine.scale(scale=weight_g):
                        obs = None if x is None else x[:, i, : block.widths[i]]
                        pyro.sample(sites.x(layout.names[g]), fn, obs=obs)
        return z
