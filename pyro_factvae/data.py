"""Grouped data with holes.

factVAE sees a data set as ``G`` groups (views, modalities, aspects) of columns. A row may lack
whole groups. :class:`GroupedData` stores the groups side by side in one zero-filled
``float32`` matrix (each group a column view of it, each block of adjacent equal-width groups a
``(N, G_b, d)`` view) plus one boolean ``observed`` mask of shape ``(N, G)``, and validates
everything once, at construction, so that the model never meets a NaN.

A cell is *missing* where it is NaN (or where an explicit mask says so). A group is observed
in a row when at least one of its cells is; a row may thus lack whole groups and single cells
of the groups it has. Beside the group mask, :attr:`GroupedData.cells` holds the ``(N, sum
d_g)`` bool cell mask (one byte a cell, never a second float copy of the data), or ``None``
when no observed group misses a cell: the whole-group case pays nothing for cells.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .checks import number, positive_int, seed_int
from .masks import (
    bool_mask,
    complete_or_cells,
    groups_of,
    masks_from_explicit,
    narrowed,
    observed_from_nan,
    require_trainable,
)
from .omics import anndata_groups, mudata_groups, var_groups
from .ranges import Range, check_ranges, column_ranges, refuse_overflow
from .stream import dataset_to_memmap, is_dataset
from .validation import (
    check_matrix,
    check_names,
    fmt_rows,
    frame_arrays,
    group_arrays,
    is_dataframe,
    reject_inf,
)
from .variables import frame_variables, mudata_variables, named

__all__ = ["GroupedData", "as_grouped", "is_dataframe"]


class GroupedData:
    """Multi-group data with missing groups and missing cells.

    Parameters
    ----------
    groups : sequence or mapping of array-like
        One ``(N, d_g)`` array per group (a 1-D array is one feature). With a mapping, its keys
        are the group names. Without ``mask``, NaN marks a missing cell; a row whose values in
        a group are all NaN lacks that group.
    names : sequence of str, optional
        Group names when ``groups`` is a sequence. Defaults to ``g0, g1, ...``.
    mask : array-like of bool, optional
        Explicit observed mask: ``(N, G)`` per group or ``(N, sum d_g)`` per cell (the groups'
        columns side by side). Values under ``False`` are ignored (they may be NaN); values
        under ``True`` must be finite.
    drop_empty_rows : bool
        Rows with no observed group carry no information for training. By default they raise
        a ``ValueError``; with ``True`` they are dropped (see :attr:`row_index`).
    allow_empty_rows : bool
        Keep rows with no observed group (for prediction: :meth:`~pyro_factvae.FactVAE.impute`
        gives them
        prior-predictive means). Training refuses them.

    Attributes
    ----------
    values : list of torch.Tensor
        Per-group ``(N, d_g)`` float32 tensors; missing cells are zero.
    observed : torch.Tensor
        ``(N, G)`` bool mask, ``True`` where a group is observed (at least one of its cells).
    cells : torch.Tensor or None
        ``(N, sum d_g)`` bool cell mask, ``True`` where a cell is observed; ``None`` when every
        observed group is complete in its rows (see :meth:`cell_mask`).
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
        # the groups as given (a DataFrame's column labels name its variables; an iterator is
        # spent by the time they are read)
        given = list(groups.values()) if isinstance(groups, Mapping) else groups
        given = given if isinstance(given, (list, tuple)) else []
        variables = None
        if type(groups).__name__ == "MuData":  # its modalities are the groups
            variables = mudata_variables(groups, list(groups.mod))
            groups = mudata_groups(groups)[0]
        names, mats = group_arrays(groups, names)
        variables = variables or frame_variables(names, given)
        num_rows = mats[0].shape[0]
        if mask is None:
            obs, cells = observed_from_nan(names, mats)
        else:
            obs, cells = masks_from_explicit(names, mats, mask)
        reject_inf(names, mats, obs, cells)
        ranges = column_ranges(mats, obs, cells, nan_missing=mask is None)
        refuse_overflow(names, ranges)

        row_index = np.arange(num_rows)
        keep = obs.any(axis=1)
        if not keep.all() and not (drop_empty_rows or allow_empty_rows):
            empty = np.flatnonzero(~keep)
            raise ValueError(
                f"{len(empty)} rows have no observed group: {fmt_rows(empty)}; "
                "drop them, or build the data with GroupedData(..., drop_empty_rows=True) "
                "(factvae fit: --drop-empty-rows); to query such rows (prior-predictive "
                "means), GroupedData(..., allow_empty_rows=True)"
            )
        if not keep.all() and drop_empty_rows:
            if not keep.any():
                raise ValueError("no row has an observed group")
            mats, obs, row_index = [m[keep] for m in mats], obs[keep], row_index[keep]
            cells = None if cells is None else cells[keep]

        # one (N, sum d_g) float32 matrix, each group a column view of it
        matrix = torch.empty(len(row_index), sum(m.shape[1] for m in mats), dtype=torch.float32)
        start = 0
        for j, m in enumerate(mats):
            cols = matrix[:, start : start + m.shape[1]]
            seen = obs[:, [j]] if cells is None else cells[:, start : start + m.shape[1]]
            cols.numpy()[:] = np.where(seen, m, 0.0)  # into the matrix, as float32
            start += m.shape[1]
        dims = tuple(m.shape[1] for m in mats)
        cell_mask = None if cells is None else torch.as_tensor(cells, dtype=torch.bool)
        observed = torch.as_tensor(obs, dtype=torch.bool)
        self._assemble(list(names), matrix, dims, observed, row_index, cell_mask)
        self.variables = variables
        self.ranges = ranges
        # a float64 group that float32 would round is kept, to give its values back exactly
        self.exact = [
            m if np.any(np.isfinite(m) & (m != m.astype(np.float32))) else None for m in mats
        ]

    def _assemble(
        self,
        names: list[str],
        matrix: torch.Tensor,
        dims: tuple[int, ...],
        observed: torch.Tensor,
        row_index: np.ndarray,
        cells: torch.Tensor | None = None,
        columns: dict[str, list[Any]] | None = None,
    ) -> None:
        self._dims: tuple[int, ...] = dims
        self.names: list[str] = names
        #: ``(N, sum d_g)`` float32: every group's columns side by side, zero where missing
        self.matrix: torch.Tensor = matrix
        self.values: list[torch.Tensor] = list(torch.split(matrix, list(dims), 1))
        self.observed: torch.Tensor = observed
        self.cells: torch.Tensor | None = cells
        self.row_index: np.ndarray = row_index
        #: the DataFrame columns of each group, when built from one (names them in messages)
        self.columns: dict[str, list[Any]] | None = columns
        #: the names of the groups' variables, where the data carry them
        #: (:mod:`~pyro_factvae.variables`)
        self.variables: dict[str, list[str]] | None = None
        #: whether queries give it back in float32 (a matrix or a stream's memmap; else float64)
        self.single = False
        #: per group, its float64 input where float32 rounds it (else ``None``): read by
        #: :meth:`to_numpy`, so observed values come back bit for bit
        self.exact: list[np.ndarray | None] = [None] * len(dims)
        #: per group, the largest and smallest observed value of each column as given (before
        #: float32), judged by :meth:`require_trainable` (``None``: not known)
        self.ranges: list[Range] | None = None
        self._ranges_judged = False

    def _derive(
        self,
        matrix: torch.Tensor,
        observed: torch.Tensor,
        row_index: np.ndarray,
        cells: torch.Tensor | None,
    ) -> GroupedData:
        """A GroupedData with these groups and new rows or masks."""
        out = object.__new__(GroupedData)
        out._assemble(
            list(self.names), matrix, self._dims, observed, row_index, cells, self.columns
        )
        out.variables, out.single = self.variables, self.single
        out.ranges = self.ranges  # its rows' lie within them
        out._ranges_judged = self._ranges_judged
        return out

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

        Cells that are empty (NaN) are missing; a group is missing in a row where all its
        cells are. A non-numeric cell raises a ``ValueError`` naming its row and value.
        """
        strict = not (drop_empty_rows or allow_empty_rows)  # empty rows refused, by label
        arrays = frame_arrays(frame, groups)
        out = cls(arrays, drop_empty_rows=drop_empty_rows, allow_empty_rows=not drop_empty_rows)
        empty = np.flatnonzero(~out.observed.any(-1).numpy()) if strict else []
        if len(empty):
            labels = list(frame.index[empty[:5]])
            more = f", ... ({len(empty)} rows in all)" if len(empty) > 5 else ""
            raise ValueError(
                f"{len(empty)} rows have no observed group: index {labels}{more}; drop them "
                "(frame.dropna(how='all', subset=<the groups' columns>)), or build the data "
                "with GroupedData.from_dataframe(frame, groups, drop_empty_rows=True) (factvae "
                "fit: --drop-empty-rows); to query such rows (prior-predictive means), "
                "allow_empty_rows=True"
            )
        out.columns = {name: list(cols) for name, cols in groups.items()}
        out.variables = named(groups)
        return out

    @classmethod
    def from_mudata(
        cls, mdata: Any, modalities: Sequence[str] | None = None, layer: str | None = None
    ) -> GroupedData:
        """A MuData's modalities as groups (see :mod:`pyro_factvae.omics`): an observation a
        modality lacks is that group missing; ``layer`` reads a layer instead of ``X``."""
        groups, _ = mudata_groups(mdata, modalities, layer)
        out = cls(groups, allow_empty_rows=True)
        out.variables = mudata_variables(mdata, list(groups))
        return out

    @classmethod
    def from_anndata(
        cls,
        adata: Any,
        groups: Any,
        layer: str | None = None,
        drop_empty_rows: bool = False,
        allow_empty_rows: bool = False,
    ) -> GroupedData:
        """An AnnData's variables in groups: ``groups`` names a column of ``adata.var`` or
        maps group names to ``var_names`` (see :mod:`pyro_factvae.omics`); rows with no
        observed group as in the constructor."""
        arrays = anndata_groups(adata, groups, layer)
        out = cls(arrays, drop_empty_rows=drop_empty_rows, allow_empty_rows=allow_empty_rows)
        out.variables = named(var_groups(adata, groups))
        return out

    @classmethod
    def from_masked(
        cls,
        values: Sequence[Any] | Mapping[str, Any],
        mask: Any,
        names: Sequence[str] | None = None,
    ) -> GroupedData:
        """Build from per-group values plus an explicit bool observed mask: ``(N, G)`` per
        group, or ``(N, sum d_g)`` per cell (the groups' columns side by side)."""
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

        ``observed``: the ``(N, G)`` group mask or the ``(N, sum d_g)`` cell mask. Values under
        missing cells must be 0; observed ones finite. Both are checked ``chunk`` rows at a
        time. Give ``lam`` a number and ``patience=None`` to stream: the
        validation split and the ``lam="auto"`` path copy the rows they hold out.
        """
        tensor = matrix
        if not isinstance(matrix, torch.Tensor):
            with warnings.catch_warnings():  # a read-only memmap: never written to here
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(np.asarray(matrix))
        names = [f"g{i}" for i in range(len(dims))] if names is None else list(names)
        if len(names) != len(dims):
            raise ValueError(f"got {len(names)} names for {len(dims)} groups (dims)")
        check_names(names)
        dims = [positive_int("dims entry", d) for d in dims]
        chunk = positive_int("chunk", chunk)
        obs = torch.from_numpy(bool_mask(observed, "observed"))
        cells = None
        if obs.dim() == 2 and obs.shape[1] == sum(dims) != len(dims):
            cells = obs
            obs = groups_of(cells, dims)
            cells = complete_or_cells(cells, obs, dims)
        ranges = check_matrix(names, tensor, obs, dims, chunk, cells)
        out = object.__new__(cls)
        out._assemble(names, tensor, tuple(dims), obs, np.arange(tensor.shape[0]), cells)
        out.ranges = ranges  # judged as a fit's data, as the arrays' are
        out.single = True  # the file's float32 is what it holds and gives back
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
        ``{group: values}`` of per-group 1-D arrays or tensors, NaN where a cell is missing.
        A ``DataLoader`` (``batch_size`` items at a time, ``num_workers`` worker
        processes) reads the items once; each batch is validated (with the messages of
        :class:`GroupedData`, rows numbered over the whole data set) and written into the
        memmap (zero under missing cells), so memory holds one batch, never the data. The result is
        :meth:`from_matrix` on that file: training reads its minibatches page by page.

        ``path``: where the memmap file goes (kept, with the rows kept: read it back with
        :meth:`from_matrix`, with ``observed``'s group mask or the cell mask of
        ``path + ".cells"``, a bool memmap of the same shape, when the data miss cells);
        default a temporary file that disappears with the data.
        ``drop_empty_rows`` and ``allow_empty_rows`` as for :class:`GroupedData`.
        """
        matrix, observed, names, dims, row_index, cells, ranges = dataset_to_memmap(
            dataset, path, batch_size, num_workers, drop_empty_rows, allow_empty_rows
        )
        out = object.__new__(cls)
        cell_mask = None if cells is None else torch.from_numpy(cells)
        matrix, observed = torch.from_numpy(matrix), torch.from_numpy(observed)
        out._assemble(names, matrix, tuple(dims), observed, row_index, cell_mask)
        out.ranges, out.single = ranges, True
        return out

    # ------------------------------------------------------------------ properties
    @property
    def num_groups(self) -> int:
        return len(self.names)

    @property
    def dims(self) -> list[int]:
        """Number of features of each group."""
        return list(self._dims)

    def cell_mask(self) -> torch.Tensor:
        """``(N, sum d_g)`` bool: ``True`` where a cell is observed (derived from the group
        mask when :attr:`cells` is ``None``)."""
        if self.cells is not None:
            return self.cells
        return self.observed.repeat_interleave(torch.tensor(self._dims), dim=1)

    def cell_counts(self) -> list[np.ndarray]:
        """Per group, the rows that observe each of its columns."""
        return [self.group_cells(g).sum(0).numpy() for g in range(len(self._dims))]

    def group_cells(self, g: int) -> torch.Tensor:
        """``(N, d_g)`` bool: the observed cells of group ``g``."""
        if self.cells is None:
            return self.observed[:, g : g + 1].expand(-1, self._dims[g])
        start = sum(self._dims[:g])
        return self.cells[:, start : start + self._dims[g]]

    def block(self, groups: Sequence[int]) -> torch.Tensor:
        """``(N, G_b, d)`` values of equal-width ``groups``: a view of ``matrix`` when they
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
        dims = torch.tensor(self._dims, dtype=torch.float32)
        parts = ", ".join(f"{n}[{d}] {f:.0%}" for n, d, f in zip(self.names, self.dims, frac))
        cells = ""
        if self.cells is not None and len(self):
            lost = 1 - float(self.cells.sum()) / float((self.observed.float() @ dims).sum())
            cells = f"; {lost:.1%} of the cells of observed groups missing"
        return f"GroupedData({len(self)} rows; {parts} observed{cells})"

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
        arr = np.asarray(rows.cpu() if isinstance(rows, torch.Tensor) else rows)
        if arr.ndim != 1 or arr.dtype.kind not in "biu":
            raise ValueError(
                f"rows must be a 1-D array of row indices or a bool mask, got {arr.ndim}-D "
                f"{arr.dtype}"
            )
        if arr.dtype.kind == "b":
            if len(arr) != len(self):
                raise ValueError(f"a bool mask of rows needs {len(self)} entries, got {len(arr)}")
            arr = np.flatnonzero(arr)
        bad = (arr < -len(self)) | (arr >= len(self))  # one int64 index for every part
        if bad.any():
            raise ValueError(f"row index {arr[bad][0]} is out of range for {len(self)} rows")
        rows = torch.as_tensor(arr.astype(np.int64) % max(1, len(self)))
        index = self.row_index[rows.numpy()]
        cells = None if self.cells is None else self.cells[rows]
        out = self._derive(self.matrix[rows], self.observed[rows], index, cells)
        out.exact = [None if e is None else e[rows.numpy()] for e in self.exact]
        return out

    def with_mask(self, observed: Any) -> GroupedData:
        """Same values with fewer observed groups or cells (e.g. to hold them out for
        evaluation): ``observed`` is an ``(N, G)`` group mask or an ``(N, sum d_g)`` cell mask.

        It must be a subset of the current mask: nothing missing can be revealed.
        """
        observed = torch.from_numpy(bool_mask(observed, "observed"))
        groups, cells = narrowed(observed, self.observed, self.cell_mask(), self._dims)
        empty = (~groups.any(1)).nonzero().squeeze(-1).numpy()
        if len(empty):
            raise ValueError(f"{len(empty)} rows would have no observed group: {fmt_rows(empty)}")
        matrix = self.matrix.where(cells, 0.0)
        out = self._derive(
            matrix, groups, self.row_index, complete_or_cells(cells, groups, self._dims)
        )
        out.exact = list(self.exact)
        return out

    def require_trainable(self) -> None:
        """Raise a ``ValueError`` naming any group or column that no row observes, or rows
        with no observed group (nothing can be learned from either), or a column whose values
        float32 training cannot hold; warn (once) of columns whose spread float32 rounds
        away (``pyro_factvae.ranges.check_ranges``)."""
        require_trainable(self.names, self.observed, self.cells, self._dims, self.columns)
        if self.ranges is not None and not self._ranges_judged:
            check_ranges(self.names, self.ranges)
            self._ranges_judged = True

    def split(self, fraction: float = 0.8, seed: int = 0) -> tuple[GroupedData, GroupedData]:
        """Random split into ``(first, second)`` with ``fraction`` of rows in the first."""
        if not 0.0 < number("fraction", fraction) < 1.0:
            raise ValueError(f"fraction must be in (0, 1), got {fraction}")
        generator = torch.Generator().manual_seed(seed_int(seed))
        perm = torch.randperm(len(self), generator=generator)
        cut = int(round(fraction * len(self)))
        if not 0 < cut < len(self):
            raise ValueError(
                f"fraction {fraction} of {len(self)} rows leaves a part with no rows; give a "
                "fraction that puts at least one row in each"
            )
        return self.subset(perm[:cut]), self.subset(perm[cut:])

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Per-group float64 arrays with NaN in the missing cells (and missing groups); the
        observed values of float64 input exactly as given."""
        out = {}
        for g, (n, v, e) in enumerate(zip(self.names, self.values, self.exact)):
            arr = v.numpy().astype(np.float64) if e is None else e.copy()
            arr[~self.group_cells(g).numpy()] = np.nan
            out[n] = arr
        return out

    # ------------------------------------------------------------------ minibatches
    def __getitem__(self, rows: Any) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(values, observed)`` for the given rows: the minibatch format of the model (the
        cells of the rows: ``cells[rows]``, when :attr:`cells` is not ``None``). A group's
        name is refused (its values: ``to_numpy()[name]``)."""
        if isinstance(rows, str):
            raise ValueError(
                f"data[rows] takes rows; for the values of group {rows!r}: "
                f"data.to_numpy()[{rows!r}]"
            )
        return [v[rows] for v in self.values], self.observed[rows]


def as_grouped(
    data: Any, names: Sequence[str] | None = None, allow_empty_rows: bool = False
) -> GroupedData:
    """Return ``data`` as :class:`GroupedData` (unchanged if it already is one)."""
    if isinstance(data, GroupedData):
        return data
    return GroupedData(data, names=names, allow_empty_rows=allow_empty_rows)
