"""AnnData and MuData (scanpy, muon) in and out.

A MuData's modalities are the groups: an observation that a modality lacks is that group
missing in the row (rows are aligned by ``obs_names``, in the order of ``mdata.obs_names``).
An AnnData's variables are split into groups by a column of ``adata.var`` or a mapping.
Sparse matrices are read a chunk of rows at a time into the dense float32 arrays of the
grouped variables factVAE trains on (their zeros are observed zeros): a chunk, not the
whole matrix, is densified at once. Results go back into the
objects: the latent means in ``obsm["X_<key>"]``, the imputations in the layer
``<key>_imputed``, the sparsity map in ``uns["<key>_sparsity"]``.

``anndata`` and ``mudata`` are optional (``pip install pyro_factvae[omics]``); nothing here
imports them: the objects are read through their attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .checks import positive_int

__all__ = ["anndata_groups", "matrix_dtype", "mudata_groups", "var_groups", "write_results"]


def _values(adata: Any, layer: str | None, what: str) -> Any:
    if layer is None and adata.X is None:
        layers = sorted(adata.layers)
        how = f"; read one of its layers {layers} with layer=" if layers else ", and no layer"
        raise ValueError(f"{what} has no X (its X is None){how}")
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise ValueError(f"{what} has no layer {layer!r}; it has {sorted(adata.layers)}")
    return adata.layers[layer]


def matrix_dtype(matrix: Any) -> np.dtype:
    """The dtype a matrix is read in: float64 for a float64 matrix, and for an integer one in
    memory holding a value beyond float32's whole numbers (``2**24``; its values kept
    exactly), float32 for anything else (counts as float32 take half the memory; a backed
    matrix's extremes are not read ahead of its rows)."""
    dtype = np.dtype(getattr(matrix, "dtype", np.float32))
    sized = np.prod(getattr(matrix, "shape", (0,))) > 0
    if dtype.kind in "iu" and sized and hasattr(matrix, "max") and hasattr(matrix, "min"):
        # in memory, dense or sparse (a backed matrix is not read ahead: float32)
        extreme = max(abs(int(matrix.max())), abs(int(matrix.min())))
        return np.dtype(np.float64 if extreme > 2**24 else np.float32)
    return np.dtype(np.float64 if dtype == np.float64 else np.float32)


def _rows(matrix: Any, start: int, stop: int, dtype: np.dtype) -> np.ndarray:
    """Rows ``start:stop`` of a dense or sparse matrix, dense, in ``dtype``."""
    part = matrix[start:stop]
    part = part.toarray() if hasattr(part, "toarray") else np.asarray(part)
    return part.astype(dtype, copy=False)


def _unique(names: list[str], what: str, how: str) -> None:
    """A ``ValueError`` when ``names`` repeat: they match rows or variables by name."""
    if len(set(names)) < len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})[:5]
        raise ValueError(
            f"{what} repeat ({repeated}): they are matched by name; make them unique ({how})"
        )


def mudata_groups(
    mdata: Any,
    modalities: Sequence[str] | None = None,
    layer: str | None = None,
    chunk: int = 4096,
) -> tuple[dict[str, np.ndarray], list[str]]:
    """``({modality: (n_obs, n_vars) array, NaN where it lacks the observation},
    obs_names)`` for the modalities of ``mdata`` (default: all, in order), each in its
    :func:`matrix_dtype`; ``chunk``: rows read at a time (a positive integer)."""
    positive_int("chunk", chunk)
    if isinstance(modalities, str):
        raise ValueError(f"modalities is a list of names, e.g. [{modalities!r}], not a string")
    names = list(mdata.mod) if modalities is None else list(modalities)
    unknown = [m for m in names if m not in mdata.mod]
    if unknown or not names:
        raise ValueError(
            f"modalities {unknown or names} are not in the MuData; it has {list(mdata.mod)}"
        )
    obs = [str(o) for o in mdata.obs_names]
    # rows are matched across modalities by name: a repeated one would merge rows
    _unique(obs, "the MuData's obs_names", "mdata.obs_names_make_unique()")
    where = {o: i for i, o in enumerate(obs)}
    out = {}
    for m in names:
        ad = mdata.mod[m]
        values = _values(ad, layer, f"modality {m!r}")
        own = [str(o) for o in ad.obs_names]
        _unique(own, f"modality {m!r}'s obs_names", f"mdata.mod[{m!r}].obs_names_make_unique()")
        unknown = [o for o in own if o not in where][:5]
        if unknown:
            raise ValueError(
                f"modality {m!r} has observations {unknown} that are not in the MuData's "
                "obs_names; call mdata.update() after changing a modality"
            )
        rows = np.array([where[o] for o in own], dtype=np.int64)
        dtype = matrix_dtype(values)
        arr = np.full((len(obs), ad.n_vars), np.nan, dtype=dtype)
        for start in range(0, ad.n_obs, chunk):
            arr[rows[start : start + chunk]] = _rows(values, start, start + chunk, dtype)
        out[m] = arr
    return out, obs


def var_groups(adata: Any, groups: str | Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """``{group: [var_names]}`` from a column of ``adata.var`` (a group per value, in order
    of appearance) or a mapping."""
    var_names = [str(v) for v in adata.var_names]
    _unique(var_names, "the AnnData's var_names", "adata.var_names_make_unique()")  # by name
    if isinstance(groups, str):
        if groups not in adata.var.columns:
            raise ValueError(
                f"adata.var has no column {groups!r}; it has {list(adata.var.columns)} (or give "
                "groups as a mapping {group: [var_names]})"
            )
        column = adata.var[groups]
        if bool(column.isna().any()):
            left = [n for n, lost in zip(var_names, column.isna()) if lost][:5]
            raise ValueError(
                f"adata.var[{groups!r}] is empty for variables {left}: give every variable a "
                "group (or give groups as a mapping {group: [var_names]} that leaves them out)"
            )
        labels = [str(v) for v in column]
        spec = {
            g: [n for n, lab in zip(var_names, labels) if lab == g] for g in dict.fromkeys(labels)
        }
    elif isinstance(groups, Mapping) and groups:
        single = [g for g, cols in groups.items() if isinstance(cols, (str, bytes))]
        if single:  # a string is one name, not a list of its characters
            raise ValueError(
                f"groups {single} map to a single string; give each group a list of "
                f"var_names, e.g. {{{str(single[0])!r}: [{str(groups[single[0]])!r}]}}"
            )
        spec = {str(g): [str(v) for v in cols] for g, cols in groups.items()}
    else:
        raise ValueError("groups must name a column of adata.var or map groups to var_names")
    return spec


def anndata_groups(
    adata: Any,
    groups: str | Mapping[str, Sequence[str]],
    layer: str | None = None,
    chunk: int = 4096,
) -> dict[str, np.ndarray]:
    """``{group: (n_obs, d_g) array}`` in the matrix's :func:`matrix_dtype`: the variables of
    ``adata`` split by the column ``groups`` of ``adata.var`` (a group per value, in order of
    appearance) or by a mapping ``{group: [var_names]}``; ``chunk``: rows read at a time (a
    positive integer)."""
    positive_int("chunk", chunk)
    spec = var_groups(adata, groups)
    where = {str(v): j for j, v in enumerate(adata.var_names)}
    seen: dict[str, str] = {}
    for g, cols in spec.items():
        for v in cols:
            if v not in where:
                raise ValueError(f"var_name {v!r} of group {g!r} is not in the AnnData")
            if v in seen:
                raise ValueError(f"variable {v!r} is in groups {seen[v]!r} and {g!r}")
            seen[v] = g
    values = _values(adata, layer, "the AnnData")
    dtype = matrix_dtype(values)
    out = {g: np.empty((adata.n_obs, len(cols)), dtype=dtype) for g, cols in spec.items()}
    for start in range(0, adata.n_obs, chunk):
        rows = _rows(values, start, start + chunk, dtype)  # one chunk of rows, dense
        for g, cols in spec.items():
            out[g][start : start + chunk] = rows[:, [where[v] for v in cols]]
    return out


def write_results(
    target: Any,
    key: str,
    latent: np.ndarray,
    imputed: np.ndarray | None,
    sparsity: Any,
) -> None:
    """Put ``latent`` (``(n_obs, K)``) in ``target.obsm["X_<key>"]``, ``imputed`` (``(n_obs,
    n_vars)``, when given) in the layer ``<key>_imputed`` and the sparsity map (a ``G x K``
    DataFrame) in ``uns["<key>_sparsity"]``."""
    target.obsm[f"X_{key}"] = np.asarray(latent)
    if imputed is not None:
        target.layers[f"{key}_imputed"] = np.asarray(imputed)
    target.uns[f"{key}_sparsity"] = {
        "groups": [str(g) for g in sparsity.index],
        "latents": [str(c) for c in sparsity.columns],
        "column_norms": np.asarray(sparsity.values),
    }
