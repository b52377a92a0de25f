"""What a fit is made of, in one object the inference layer works on.

:class:`FitState` holds the settings (:class:`~pyro_factvae.config.ModelConfig`), the fitted
:class:`~pyro_factvae.module.model.Model` and :class:`~pyro_factvae.module.guide.Guide`, the
optimizers of Algorithm 1 (kept across fits) and the record of training (histories, the
``lam`` path, the signal that stopped the last run). The estimator
:class:`~pyro_factvae.FactVAE` keeps one and answers queries from it; the trainer
(:class:`~pyro_factvae.infer.run.Trainer`), the ``lam`` path (:mod:`~pyro_factvae.infer.path`)
and the checkpoint format (:mod:`~pyro_factvae.infer.checkpoint`) take it, so nothing below
the estimator calls the estimator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..checks import number
from ..config import ModelConfig
from ..data import GroupedData, is_dataframe
from ..layout import Layout
from ..module.guide import Guide
from ..module.likelihoods import with_cells
from ..module.model import Model
from ..module.priors import column_norms
from ..registry import LIKELIHOODS
from ..stream import is_dataset
from ..validation import check_column_spec, fmt_rows
from ..variables import FRAME_HOW, PARTS_HOW, check_variables
from .optim import Optimizers

__all__ = ["FitState", "as_device", "check_support", "phi_norms"]


def as_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``, or a ``ValueError`` saying what is possible here."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} needs CUDA, which this torch build or machine does not have "
            "(torch.cuda.is_available() is False); use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only 'cpu' and 'cuda' devices are supported")
    return dev


def check_support(data: GroupedData, layout: Layout, config: ModelConfig | None = None) -> None:
    """A ``ValueError`` naming the group and rows where ``data``'s observed values lie
    outside the support of the group's likelihood in ``layout``, or (with ``config``) where
    a group of size factors (``library_size``) holds a negative one."""
    for g, (name, lik) in enumerate(zip(layout.names, layout.likelihoods)):
        cells = None if data.cells is None else data.group_cells(g)
        with_cells(
            LIKELIHOODS.get(lik).check, name, data.values[g], data.observed[:, g], cells=cells
        )
    if config is None or not isinstance(config.library_size, Mapping):
        return
    counts = [getattr(LIKELIHOODS.get(lik), "counts", False) for lik in layout.likelihoods]
    for g, source in enumerate(config.libraries_for(layout.names, counts)):
        if not isinstance(source, int) or data.dims[source] != 1:  # the model names a width
            continue
        values = data.values[source][:, 0]
        bad = (data.observed[:, source] & (values < 0)).nonzero().flatten().numpy()
        if len(bad):
            raise ValueError(
                f"group {layout.names[source]!r} holds the size factors of "
                f"{layout.names[g]!r} (library_size): rows {fmt_rows(bad)} are negative; a "
                "size factor is > 0 (0 or NaN: the depth comes from the row's own counts)"
            )


@dataclass(eq=False)
class FitState:
    """The settings, modules, optimizers and training record of one factVAE.

    Attributes
    ----------
    config : ModelConfig
        The settings (``lam`` may be ``"auto"`` before a fit).
    device : torch.device
        Where the modules train and predict.
    model, guide, layout
        Built by :meth:`build` (``None`` before).
    optimizers : Optimizers or None
        Algorithm 1's optimizers, kept across fits (a later fit continues with their
        moments); ``None`` before a fit and after :meth:`reset_optimizers`.
    saved_optimizers : tuple or None
        Read from a model file: ``(phi_optim, state dict)`` of the optimizers that wrote it,
        taken by the optimizers the next fit builds (a loaded model goes on training as it
        would have in the process that saved it).
    history, prior_history : list of float
        Per epoch, the negative ELBO per row and the prior terms per row.
    metadata : dict
        JSON-ready user metadata kept in files.
    columns : dict or None
        The DataFrame column-to-group mapping.
    lam_path : dict or None
        The ``lam="auto"`` path (or, during it, the stage a checkpoint was written in).
    spread : float
        The draws' spread about the imputed means, measured on the last finished fit's
        validation rows (:mod:`~pyro_factvae.infer.spread`); 1.0: the model's own draws.
    interrupted : str or None
        The signal (or ``"callback"``) that stopped the last run.
    pad : bool, float or tuple
        How the layouts it builds pad blocks: a limit, or (read from a model file) the file's
        blocks (see :class:`~pyro_factvae.layout.Layout`).
    """

    config: ModelConfig
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    model: Model | None = None
    guide: Guide | None = None
    optimizers: Optimizers | None = None
    saved_optimizers: tuple[str, dict[str, Any]] | None = None
    layout: Layout | None = None
    history: list[float] = field(default_factory=list)
    prior_history: list[float] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, list[str]] | None = None
    #: the names of each group's variables in the first fit's data, where they had names
    #: (:mod:`~pyro_factvae.variables`): later data that name them must name the same
    variables: dict[str, list[str]] | None = None
    lam_path: dict[str, Any] | None = None
    spread: float = 1.0
    interrupted: str | None = None
    #: the real path of the last checkpoint this state wrote (``None``: none yet)
    written: str | None = None
    # the model file's own where the state was read from one
    pad: bool | float | tuple[tuple[int, ...], ...] = True

    def build(self, layout: Layout, num_data: int) -> None:
        """Build the model and guide for ``layout`` (on the CPU; see :meth:`to_device`)."""
        self.config = self.config.replace(num_data=num_data).resolved(layout.dims)
        self.layout, self.pad = layout, layout.pad
        self.model = Model(layout, self.config)
        self.guide = Guide(self.model)
        self.optimizers = self.saved_optimizers = None

    def to_device(self) -> None:
        """Move the built model and guide to :attr:`device` (built and initialised on the CPU,
        so a seed gives the same starting weights on every device)."""
        self.model.to(self.device)
        self.guide.to(self.device)

    def fresh(self, **settings: Any) -> FitState:
        """A new, unfitted state with these settings changed (same device, metadata, column
        mapping and variable names)."""
        config = ModelConfig(**{**self.config.user_dict(), **settings})
        columns = None if self.columns is None else dict(self.columns)
        return FitState(
            config,
            self.device,
            metadata=dict(self.metadata),
            columns=columns,
            variables=None if self.variables is None else dict(self.variables),
            pad=self.pad,
        )

    def fitted(self) -> tuple[Model, Guide]:
        """``(model, guide)``; a ``ValueError`` if they are not fitted yet."""
        if self.model is None or self.guide is None:
            raise ValueError("this FactVAE is not fitted yet; call fit(data) first")
        return self.model, self.guide

    def set_columns(self, groups: Mapping[str, Sequence[str]]) -> None:
        """Set the DataFrame column-to-group mapping :attr:`columns`, checked."""
        if not isinstance(groups, Mapping) or not groups:
            raise ValueError("groups must be a non-empty mapping {group: [columns]}")
        for name, cols in groups.items():
            if isinstance(cols, str):
                raise ValueError(
                    f"group {name!r}: give a list of column names, not the string {cols!r}"
                )
        # a label as the DataFrame has it: an integer (a frame built from an array) or text
        columns = {str(g): [_label(c) for c in cols] for g, cols in groups.items()}
        if self.layout is not None and tuple(columns) != self.layout.names:
            raise ValueError(
                f"groups {list(columns)} differ from the fitted groups {list(self.layout.names)}"
            )
        check_column_spec(columns)
        if self.layout is not None:
            wrong = [
                f"group {g!r} has {len(cols)} columns, the model was fitted on {d}"
                for (g, cols), d in zip(columns.items(), self.layout.dims)
                if len(cols) != d
            ]
            if wrong:
                raise ValueError(f"{'; '.join(wrong)}: give each group its fitted columns")
        self.columns = columns

    def weights(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Copies of the model's and the guide's ``state_dict`` (detached), to restore later."""
        model, guide = self.fitted()
        clone = lambda sd: {k: v.detach().clone() for k, v in sd.items()}  # noqa: E731
        return clone(model.state_dict()), clone(guide.state_dict())

    def set_lam(self, lam: float) -> None:
        """Change ``lam`` for the model, guide and the next run (a number: ``"auto"``
        chooses lam on a first fit only)."""
        if self.model is not None and isinstance(lam, str):
            raise ValueError(
                f"a fitted model takes a number for lam, got {lam!r} (lam='auto' chooses lam "
                "on a first fit: build a new FactVAE(lam='auto'))"
            )
        if self.model is not None:  # its own message: 'auto' is no way out here
            number("lam", lam)
        self.set_config(lam=lam)

    def set_config(self, **changes: Any) -> None:
        """Replace the config with a copy holding ``changes`` (validated), and give it to the
        model and guide: a resolved config is frozen, never written in place."""
        self.config = self.config.replace(**changes)
        if self.model is not None:
            self.model.config = self.guide.config = self.config

    def reset_optimizers(self) -> None:
        """Forget the optimizers' moments (the next run starts them afresh)."""
        self.optimizers = self.saved_optimizers = None

    def layout_of(self, data: GroupedData) -> Layout:
        """The layout of ``data`` under the configured likelihoods, its observed values
        checked against their support."""
        layout = Layout(data.names, data.dims, self.config.likelihoods_for(data.names), self.pad)
        check_support(data, layout, self.config)
        return layout

    def prepare(self, data: Any, allow_empty_rows: bool = False) -> GroupedData:
        """``data`` as :class:`~pyro_factvae.data.GroupedData`, checked against the fitted
        groups, widths and likelihoods (a list of arrays takes the fitted group names; a
        DataFrame is split into groups by :attr:`columns`; a MuData's modalities are the
        groups; a torch Dataset is streamed into a memmap)."""
        empty = allow_empty_rows
        names = None if self.layout is None else list(self.layout.names)
        if isinstance(data, (np.ndarray, torch.Tensor)) and self.layout is not None:
            edges = np.cumsum([0, *self.layout.dims]).tolist()
            split = ", ".join(
                f"{name!r}: X[:, {a}:{b}]"
                for name, a, b in zip(self.layout.names, edges, edges[1:])
            )
            raise ValueError(
                f"got a single array of shape {tuple(data.shape)}; give the fitted groups, "
                f"e.g. {{{split}}} ({edges[-1]} columns in all)"
            )
        if is_dataframe(data):
            if self.columns is None:
                raise ValueError(
                    "got a DataFrame but no column-to-group mapping: give fit(frame, "
                    "groups={group: [columns]}) (the model keeps it for later calls), or to a "
                    "fitted model, set_columns({group: [columns]})"
                )
            data = GroupedData.from_dataframe(data, self.columns, allow_empty_rows=empty)
        elif type(data).__name__ == "MuData":  # modalities by name, in any order
            same = names is not None and sorted(map(str, data.mod)) == sorted(names)
            data = GroupedData.from_mudata(data, modalities=names if same else None)
        elif is_dataset(data):  # one DataLoader batch at a time
            data = GroupedData.from_dataset(data, allow_empty_rows=empty)
            if names is not None and data.names != names:  # its items name the groups
                raise ValueError(
                    f"the Dataset's items give the groups {data.names} (a sequence item's are "
                    f"g0, g1, ...), the model was fitted on {names}: make each item a dict "
                    "{group: values} of the fitted groups, in that order"
                )
        elif (
            isinstance(data, Mapping)
            and self.layout is not None
            and {str(k) for k in data} == set(self.layout.names)
            and len(data) == len(self.layout.names)
        ):  # the fitted groups by name (a key's text: 0 is "0"), in any order
            by_name = {str(k): v for k, v in data.items()}
            data = GroupedData({name: by_name[name] for name in names}, allow_empty_rows=empty)
        elif not isinstance(data, (GroupedData, Mapping)) and self.layout is not None:
            if isinstance(data, (list, tuple)) and len(data) != len(names):
                raise ValueError(
                    f"got {len(data)} array{'s' * (len(data) != 1)}; the model was fitted on "
                    f"{len(names)} groups "
                    f"{names}: give one array per group, in that order (or a dict by name)"
                )
            data = GroupedData(data, names=names, allow_empty_rows=empty)
        elif not isinstance(data, GroupedData):
            data = GroupedData(data, allow_empty_rows=empty)
        if len(data) == 0:
            raise ValueError("the data have no rows (an empty selection?): give at least one")
        if self.layout is not None:
            if tuple(data.names) != self.layout.names:
                raise ValueError(
                    f"data has groups {data.names}, the model was fitted on "
                    f"{list(self.layout.names)}: give those groups (in that order, for "
                    "anything but a dict of groups; a group missing in every row as an all-NaN "
                    f"array of its width){OWN_GROUPS}"
                )
            if tuple(data.dims) != self.layout.dims:
                wrong = [
                    f"{name!r} has {got} columns, the model was fitted on {want}"
                    for name, got, want in zip(data.names, data.dims, self.layout.dims)
                    if got != want
                ]
                raise ValueError(
                    f"group {'; group '.join(wrong)}: give each group the columns it was "
                    f"fitted on, in the same order{OWN_GROUPS}"
                )
            how = FRAME_HOW if data.columns is not None else PARTS_HOW  # a frame split, or parts
            check_variables(data.names, data.variables, self.variables, how)
            check_support(data, self.layout, self.config)
        return data

    def record_variables(self, data: GroupedData) -> None:
        """Keep the names of ``data``'s variables (where it has them) as :attr:`variables`,
        before a first fit (a fitted model keeps those of its first fit)."""
        if self.model is None:
            named = data.variables
            self.variables = None if named is None else {g: list(v) for g, v in named.items()}

    def sparsity(self):
        """:func:`phi_norms` of the fitted model."""
        return phi_norms(*self.fitted())


#: the end of a message that refuses other groups than the fitted ones
OWN_GROUPS = (
    "; a fitted model takes its own groups only (fit on it trains it further): for other "
    "groups, make a new FactVAE(...)"
)


def _label(column: Any) -> int | str:
    """A DataFrame column label as the model keeps it (and writes in its file): an integer
    stays one, anything else is its text."""
    if isinstance(column, (int, np.integer)) and not isinstance(column, (bool, np.bool_)):
        return int(column)
    return str(column)


def phi_norms(model: Model, guide: Guide):
    """Column norms ``||Phi_g[:, j]||_2`` as a ``G x K`` pandas DataFrame (groups in the
    user's order, columns ``z0 .. z{K-1}``; a pruned link is exactly ``0.0``)."""
    import pandas as pd

    norms = [column_norms(phi.detach()).double() for phi in guide.Phi]
    table = model.layout.scatter_axis(norms, dim=0).cpu().numpy()
    return pd.DataFrame(
        table,
        index=pd.Index(model.layout.names, name="group"),
        columns=[f"z{j}" for j in range(model.latent_dim)],
    )
