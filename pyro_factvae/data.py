"""Grouped data with holes.

factVAE sees a data set as ``G`` groups (views, modalities, aspects) of columns. A row may lack
whole groups. :class:`GroupedData` stores the groups side by side in one zero-filled
``float32`` matrix (each group a column view of it, each block of adjacent equal-width groups a
``(N, G_b, d)`` view) plus one boolean ``observed`` mask of shape ``(N, G)``, and validates
everything once, at construction, so that the model never meets a NaN.

A group is *missing* for a row when every value of that group is NaN (or when an explicit mask
says so). A row where only some values of a group are NaN is an error: factVAE models whole
groups, not single entries.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .stream import dataset_to_memmap, is_dataset
from .validation import (
    INF_PROBLEM,
    check_matrix,
    fmt_rows,
    frame_arrays,
    is_dataframe,
    observed_from_nan,
    reject_observed,
    to_numpy,
)

__all__ = ["GroupedData", "as_grouped", "is_dataframe"]


class GroupedData:
    """Multi-group data with whole groups missing.

    Parameters
    ----------
    groups : sequence or mapping of array-like
        One ``(N, d_g)`` array per group (a 1-D array is one feature). With a mapping, its keys
        are the group names. Without ``mask``, a row whose values in a group are all NaN marks
        that group as missing for that row.
    names : sequence of str, optional
        Group names when ``groups`` is a sequence. Defaults to ``g0, g1, ...``.
    mask : array-like of bool, optional
        Explicit ``(N, G)`` observed mask. Values under ``False`` are ignored (they may be NaN);
        values under ``True`` must be finite.
    drop_empty_rows : bool
        Rows with no observed group carry no information for training. By default they raise
        a ``ValueError``; with ``True`` they are dropped (see :attr:`row_index`).
    allow_empty_rows : bool
        Keep rows with no observed group (for prediction: :meth:`FactVAE.impute` gives them
        prior-predictive means). Training refuses them.

    Attributes
    ----------
    values : list of torch.Tensor
        Per-group ``(N, d_g)`` float32 tensors; entries of missing groups are zero.
    observed : torch.Tensor
        ``(N, G)`` bool mask, ``True`` where a group is observed.
    names : list of str
        Group names, in the order given.
    row_index : numpy.ndarray
        For each row kept, its index in the input (differs from ``arange(N)`` only when
        ``drop_empty_rows=True`` dropped rows).
    """

    def __init__(
        self,
        groups: Sequence[Any] | Mapping[str, Any],
        names: Sequence[str] | None = None,
        mask: Any = None,
        drop_empty_rows: bool = False,
        allow_empty_rows: bool = False,
    ) -> None:
        if isinstance(groups, GroupedData):
            raise ValueError("already a GroupedData; use it directly")
        if is_dataframe(groups):
            raise ValueError(
                "got a pandas DataFrame: say which columns form each group, with "
                "GroupedData.from_dataframe(frame, {group: [columns]}) or "
                "FactVAE().fit(frame, groups={group: [columns]})"
            )
        if is_dataset(groups):
            raise ValueError(
                "got a torch Dataset: stream it with GroupedData.from_dataset(dataset), or "
                "give it to FactVAE().fit(dataset) directly"
            )
        if isinstance(groups, Mapping):
            if names is not None:
                raise ValueError("give names either as mapping keys or as `names`, not both")
            names = [str(k) for k in groups.keys()]
            arrays = list(groups.values())
        elif isinstance(groups, (np.ndarray, torch.Tensor)):
            raise ValueError(
                "expected one array per group (a list or dict of arrays), got a single array; "
                "split its columns into groups, e.g. GroupedData([X[:, :4], X[:, 4:]])"
            )
        else:
            arrays = list(groups)
            names = [f"g{i}" for i in range(len(arrays))] if names is None else list(names)
        if len(arrays) == 0:
            raise ValueError("no groups given: factVAE needs at least one group")
        if len(names) != len(arrays):
            raise ValueError(f"got {len(names)} names for {len(arrays)} groups")
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique, got {names}")
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(
                    f"group name {name!r} must be a non-empty string (it names the Pyro sites "
                    "x_<name>, Phi_<name> and the output columns)"
                )

        mats = [to_numpy(n, a) for n, a in zip(names, arrays)]
        counts = {n: m.shape[0] for n, m in zip(names, mats)}
        if len(set(counts.values())) != 1:
            raise ValueError(
                f"groups have different numbers of rows: {counts}; every group needs one row "
                "per example (use a NaN row where a group is missing)"
            )
        for n, m in zip(names, mats):
            if m.shape[1] == 0:
                raise ValueError(f"group {n!r} has no columns")
            if m.shape[0] == 0:
                raise ValueError(f"group {n!r} has no rows")

        num_rows = mats[0].shape[0]
        if mask is None:
            obs = observed_from_nan(names, mats)
        else:
            obs = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask
            obs = np.asarray(obs)
            if obs.shape != (num_rows, len(mats)):
                raise ValueError(
                    f"mask has shape {obs.shape}, expected (rows, groups) = {(num_rows, len(mats))}"
                )
            if obs.dtype != bool:
                if not np.isin(obs, (0, 1)).all():
                    raise ValueError("mask must be boolean (True = observed)")
                obs = obs.astype(bool)
            reject_observed(
                names,
                mats,
                obs,
                np.isnan,
                "are marked observed but hold NaN; set mask False there or fill the values",
            )
        reject_observed(names, mats, obs, np.isinf, INF_PROBLEM)

        row_index = np.arange(num_rows)
        empty = np.flatnonzero(~obs.any(axis=1))
        if len(empty):
            if allow_empty_rows and not drop_empty_rows:
                pass
            elif not drop_empty_rows:
                raise ValueError(
                    f"{len(empty)} rows have no observed group: {fmt_rows(empty)}; "
                    "drop them, or pass drop_empty_rows=True (factvae: --drop-empty-rows)"
                )
        if len(empty) and drop_empty_rows:
            keep = obs.any(axis=1)
            mats = [m[keep] for m in mats]
            obs = obs[keep]
            row_index = row_index[keep]
            if len(row_index) == 0:
                raise ValueError("no row has an observed group")

        # one (N, sum d_g) float32 matrix, each group a column view of it
        matrix = torch.empty(len(row_index), sum(m.shape[1] for m in mats))
        start = 0
        for j, m in enumerate(mats):
            cols = matrix[:, start : start + m.shape[1]]
            cols.numpy()[:] = np.where(obs[:, [j]], m, 0.0)  # into the matrix, as float32
            start += m.shape[1]
        dims = tuple(m.shape[1] for m in mats)
        self._assemble(list(names), matrix, dims, torch.as_tensor(obs, dtype=torch.bool), row_index)

    def _assemble(
        self,
        names: list[str],
        matrix: torch.Tensor,
        dims: tuple[int, ...],
        observed: torch.Tensor,
        row_index: np.ndarray,
    ) -> None:
        self._dims: tuple[int, ...] = dims
        self.names: list[str] = names
        #: ``(N, sum d_g)`` float32: every group's columns side by side, zero where missing
        self.matrix: torch.Tensor = matrix
        self.values: list[torch.Tensor] = list(torch.split(matrix, list(dims), 1))
        self.observed: torch.Tensor = observed
        self.row_index: np.ndarray = row_index

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_dataframe(
        cls,
        frame: Any,
        groups: Mapping[str, Sequence[str]],
        drop_empty_rows: bool = False,
        allow_empty_rows: bool = False,
    ) -> GroupedData:
        """Build from a pandas DataFrame and a mapping ``group name -> list of columns``.

        Cells that are empty (NaN) mark missing values; a group is missing in a row where all
        its cells are. A non-numeric cell raises a ``ValueError`` naming its row and value.
        """
        arrays = frame_arrays(frame, groups)
        return cls(arrays, drop_empty_rows=drop_empty_rows, allow_empty_rows=allow_empty_rows)

    @classmethod
    def from_masked(
        cls,
        values: Sequence[Any] | Mapping[str, Any],
        mask: Any,
        names: Sequence[str] | None = None,
    ) -> GroupedData:
        """Build from per-group values plus an explicit ``(N, G)`` bool observed mask."""
        return cls(values, names=names, mask=mask)

    @classmethod
    def from_matrix(
        cls,
        matrix: Any,
        dims: Sequence[int],
        observed: Any,
        names: Sequence[str] | None = None,
        chunk: int = 65536,
    ) -> GroupedData:
        """Wrap an ``(N, sum d_g)`` float32 matrix, the groups' columns side by side, without
        copying it: a ``numpy.memmap`` of a file larger than memory is read page by page as
        minibatches need its rows (training holds a minibatch, not the data).

        Values under missing groups must be 0; observed ones finite. Both are checked
        ``chunk`` rows at a time. Give ``lam`` a number and ``patience=None`` to stream: the
        validation split and the ``lam="auto"`` path copy the rows they hold out.
        """
        tensor = matrix
        if not isinstance(matrix, torch.Tensor):
            with warnings.catch_warnings():  # a read-only memmap: never written to here
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(np.asarray(matrix))
        names = [f"g{i}" for i in range(len(dims))] if names is None else list(names)
        dims = [int(d) for d in dims]
        obs = torch.as_tensor(np.asarray(observed), dtype=torch.bool)
        check_matrix(names, tensor, obs, dims, chunk)
        out = object.__new__(cls)
        out._assemble(names, tensor, tuple(dims), obs, np.arange(tensor.shape[0]))
        return out

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        path: Any = None,
        batch_size: int = 1024,
        num_workers: int = 0,
        drop_empty_rows: bool = False,
        allow_empty_rows: bool = False,
    ) -> GroupedData:
        """Stream a map-style ``torch.utils.data.Dataset`` into a float32 ``numpy.memmap``.

        Each item is one row: a sequence (groups ``g0, g1, ...``) or a mapping
        ``{group: values}`` of per-group 1-D arrays or tensors, a group all NaN where it is
        missing. A ``DataLoader`` (``batch_size`` items at a time, ``num_workers`` worker
        processes) reads the items once; each batch is validated (with the messages of
        :class:`GroupedData`, rows numbered over the whole data set) and written into the
        memmap, so memory holds one batch, never the data. The result is
        :meth:`from_matrix` on that file: training reads its minibatches page by page.

        ``path``: where the memmap file goes (kept; read it back with :meth:`from_matrix`);
        default a temporary file that disappears with the data. ``drop_empty_rows`` and
        ``allow_empty_rows`` as for :class:`GroupedData`.
        """
        matrix, observed, names, dims, row_index = dataset_to_memmap(
            dataset, path, batch_size, num_workers, drop_empty_rows, allow_empty_rows
        )
        out = object.__new__(cls)
        out._assemble(
            names, torch.from_numpy(matrix), tuple(dims), torch.from_numpy(observed), row_index
        )
        return out

    # ------------------------------------------------------------------ properties
    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def dims(self) -> list[int]:
        """Number of features of each group."""
        return list(self._dims)

    def block(self, groups: Sequence[int]) -> torch.Tensor:
        """``(N, G_b, d)`` values of equal-width ``groups``: a view of :attr:`matrix` when they
        are adjacent and in order (no copy), else a stacked copy."""
        groups = list(groups)
        d = self._dims[groups[0]]
        if any(self._dims[g] != d for g in groups):
            raise ValueError(f"groups {groups} differ in width; a block needs equal widths")
        if groups == list(range(groups[0], groups[0] + len(groups))):
            start = sum(self._dims[: groups[0]])
            return self.matrix[:, start : start + d * len(groups)].unflatten(1, (len(groups), d))
        return torch.stack([self.values[g] for g in groups], dim=1)

    def __len__(self) -> int:
        return self.observed.shape[0]

    def __repr__(self) -> str:
        frac = self.observed.float().mean(0).tolist()
        parts = ", ".join(f"{n}[{d}] {f:.0%}" for n, d, f in zip(self.names, self.dims, frac))
        return f"GroupedData({len(self)} rows; {parts} observed)"

    def index(self, name: str) -> int:
        """Position of group ``name``; a clear ``ValueError`` for unknown names."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ValueError(f"unknown group {name!r}; groups are {self.names}") from None

    def group_mask(self, names: Sequence[str] | None, default: Any = None) -> torch.Tensor:
        """``(N, G)`` bool: the observed entries of the groups ``names``.

        ``names=None`` returns ``default`` (the observed mask when that is ``None`` too).
        Unknown names raise a ``ValueError``; so does a bare string (give a list).
        """
        if names is None:
            return self.observed if default is None else default
        if isinstance(names, str):
            raise ValueError(f"give a list of group names, not the string {names!r}")
        sel = torch.zeros(self.num_groups, dtype=torch.bool)
        for name in names:
            sel[self.index(name)] = True
        return self.observed & sel

    # ------------------------------------------------------------------ slicing
    def subset(self, rows: Any) -> GroupedData:
        """The rows ``rows`` (indices or bool mask) as a new :class:`GroupedData`."""
        rows = torch.as_tensor(rows)
        if rows.dtype == torch.bool:
            rows = rows.nonzero().squeeze(-1)
        out = object.__new__(GroupedData)
        index = self.row_index[rows.numpy()]
        out._assemble(list(self.names), self.matrix[rows], self._dims, self.observed[rows], index)
        return out

    def with_mask(self, observed: Any) -> GroupedData:
        """Same values with fewer observed groups (e.g. to hold groups out for evaluation).

        ``observed`` must be a subset of the current mask: a group cannot be revealed.
        """
        observed = torch.as_tensor(observed, dtype=torch.bool)
        if observed.shape != self.observed.shape:
            raise ValueError(
                f"mask has shape {tuple(observed.shape)}, expected {tuple(self.observed.shape)}"
            )
        if bool((observed & ~self.observed).any()):
            raise ValueError("the new mask marks observed a group that is missing in the data")
        empty = (~observed.any(1)).nonzero().squeeze(-1).numpy()
        if len(empty):
            raise ValueError(f"{len(empty)} rows would have no observed group: {fmt_rows(empty)}")
        out = object.__new__(GroupedData)
        cols = observed.repeat_interleave(torch.tensor(self._dims), dim=1)
        matrix = self.matrix.where(cols, 0.0)
        out._assemble(list(self.names), matrix, self._dims, observed, self.row_index)
        return out

    def require_trainable(self) -> None:
        """Raise a ``ValueError`` naming any group that no row observes, or rows with no
        observed group (nothing can be learned from either)."""
        never = [n for n, seen in zip(self.names, self.observed.any(0).tolist()) if not seen]
        if never:
            raise ValueError(
                f"groups {never} are never observed (all NaN) in the training data: nothing "
                "can be learned about them; drop them from the data or add rows that observe them"
            )
        empty = (~self.observed.any(1)).nonzero().squeeze(-1).numpy()
        if len(empty):
            raise ValueError(
                f"{len(empty)} training rows have no observed group: {fmt_rows(empty)}; "
                "pass drop_empty_rows=True to GroupedData (factvae fit: --drop-empty-rows)"
            )

    def split(self, fraction: float = 0.8, seed: int = 0) -> tuple[GroupedData, GroupedData]:
        """Random split into ``(first, second)`` with ``fraction`` of rows in the first."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        perm = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(fraction * len(self)))
        return self.subset(perm[:cut]), self.subset(perm[cut:])

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Per-group float arrays with NaN rows where a group is missing."""
        out = {}
        for j, (n, v) in enumerate(zip(self.names, self.values)):
            arr = v.numpy().astype(np.float64)
            arr[~self.observed[:, j].numpy()] = np.nan
            out[n] = arr
        return out

    # ------------------------------------------------------------------ minibatches
    def __getitem__(self, rows: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(values, observed)`` for the given rows: the minibatch format of the model."""
        return [v[rows] for v in self.values], self.observed[rows]


def as_grouped(data: Any, names: Sequence[str] | None = None) -> GroupedData:
    """Return ``data`` as :class:`GroupedData` (unchanged if it already is one)."""
    if isinstance(data, GroupedData):
        return data
    return GroupedData(data, names=names)
