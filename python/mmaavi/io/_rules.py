"""Which cells and features of an R object count as measured: the R package's rules, in Python.

This mirrors ``.mosaic_blocks()`` in the R package's ``R/mosaic.R`` step for step, so that an
object read with :func:`mmaavi.io.read_rds` reaches the model exactly as ``RunMMAAVI()`` hands
it over (``tests/python/io/test_rds_rules.py`` runs both on the same objects and compares). The
rules, per modality, in order:

1. ``observed`` (the user says): a logical cell-table column, cell names, or a boolean vector
   over the cells;
2. an assay that covers only a subset of the object's cells (SeuratObject 5): those cells;
3. otherwise a cell whose column is all zero did not measure the modality (Seurat 4 makes
   every assay span every cell; ``merge()`` fills with zeros). A note says how many.

Each modality is then cut into one block per batch (batches in R's sort order). With
``batch_features="nonzero"`` a block keeps only the features with a count in that batch:
genes a batch's panel lacked are zeros after ``merge()``, and are unmeasured there, not silent.
A note says how many. The blocks have the layout of :func:`mmaavi._rbridge.build_mosaic`:
``{modality: [{"x": features x cells CSC, "features": [...], "cells": [...]}, ...]}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["Counts", "mosaic_blocks"]

BATCH_FEATURES = ("nonzero", "all")


@dataclass
class Counts:
    """One modality's raw counts as R holds them: features x cells, with the names."""

    x: sp.csc_matrix
    features: list[str]
    cells: list[str]


@dataclass
class Blocks:
    """The blocks per modality and the notes the rules produced (R prints them as messages)."""

    blocks: dict[str, list[dict[str, Any]]]
    notes: list[str] = field(default_factory=list)


def _show(values: Sequence[Any], n: int = 5) -> str:
    """Like the R package's ``.show()``: quoted, the first ``n``, then how many in all."""
    values = [str(v) for v in values]
    if not values:
        return "none"
    shown = ", ".join(f"'{v}'" for v in values[:n])
    return shown + (f", ... ({len(values)} in all)" if len(values) > n else "")


def _observed_cells(spec: Any, modality: str, cells: pd.Index, table: pd.DataFrame) -> pd.Index:
    """The cells ``observed[modality]`` names (R: ``.observed_cells``)."""
    arg = f"observed[{modality!r}]"
    if isinstance(spec, str) and spec in table.columns:
        flag = table[spec]
        if not pd.api.types.is_bool_dtype(flag.dtype) or flag.isna().any():
            raise ValueError(
                f"{arg} = {spec!r} names a cell-table column that is not logical without NA "
                f"(found {flag.dtype}); make it TRUE for the cells that measured {modality}, "
                "FALSE elsewhere."
            )
        return cells[flag.to_numpy(dtype=bool)]
    if isinstance(spec, str):
        spec = [spec]
    values = np.asarray(spec)
    if values.dtype == bool and values.shape == (len(cells),):
        return cells[values]
    if values.ndim == 1 and values.dtype.kind in "UO":
        names = pd.Index(values.astype(str))
        unknown = names.difference(cells, sort=False)
        if len(unknown):
            raise ValueError(
                f"{arg}: {len(unknown)} values are neither a logical cell-table column nor cell "
                f"names of the object, e.g. {_show(unknown, 3)}. Give a column name or cell names."
            )
        return names.unique()
    raise TypeError(
        f"{arg} must be a logical cell-table column name, cell names or a boolean vector with "
        f"one value per cell ({len(cells)}); found {type(spec).__name__}."
    )


def mosaic_blocks(
    counts: Mapping[str, Counts],
    cells: Sequence[str],
    batch: Sequence[str],
    batch_levels: Sequence[str],
    table: pd.DataFrame,
    observed: Mapping[str, Any] | None = None,
    batch_features: str = "nonzero",
) -> Blocks:
    """The R package's mosaic rules on ``counts`` (see the module docstring).

    Parameters
    ----------
    counts
        Modality -> its counts (features x the cells the assay holds, a subset of ``cells``).
    cells
        Every cell of the object, in the object's order.
    batch
        Batch of each cell of ``cells`` (str).
    batch_levels
        The distinct batches in R's sort order (``levels(factor(batch))``).
    table
        The cell table, indexed by ``cells``, for ``observed`` column names.
    observed
        Modality -> which cells measured it (see rule 1); other modalities follow rules 2-3.
    batch_features
        ``"nonzero"`` or ``"all"`` (every feature measured in every cell of the modality).
    """
    if batch_features not in BATCH_FEATURES:
        raise ValueError(
            f"batch_features must be one of {_show(BATCH_FEATURES)}; found {batch_features!r}."
        )
    cells = pd.Index([str(c) for c in cells])
    observed = dict(observed or {})
    unknown = [m for m in observed if m not in counts]
    if unknown:
        raise ValueError(
            f"observed names modalities {_show(unknown)} that are not being used; the "
            f"modalities are {_show(list(counts))}."
        )
    batch_of = pd.Series(np.asarray(batch, dtype=object), index=cells)
    rank = {b: i for i, b in enumerate(batch_levels)}
    notes: list[str] = []
    zero_columns: dict[str, int] = {}
    blocks: dict[str, list[dict[str, Any]]] = {}
    for modality, data in counts.items():
        x = sp.csc_matrix(data.x, dtype=np.float64, copy=True)
        x.eliminate_zeros()
        mod_cells = pd.Index(data.cells)
        if modality in observed:
            which = _observed_cells(observed[modality], modality, cells, table)
            missing = which.difference(mod_cells, sort=False)
            if len(missing):
                raise ValueError(
                    f"observed[{modality!r}] names {len(missing)} cells that the {modality} "
                    f"data does not hold, e.g. {_show(missing, 3)}."
                )
            keep = mod_cells.isin(which)
        elif len(mod_cells) < len(cells):
            keep = np.ones(len(mod_cells), dtype=bool)
        else:
            keep = np.diff(x.indptr) > 0
            zero_columns[modality] = int((~keep).sum())
        if not keep.any():
            raise ValueError(
                f"no cell measured modality {modality!r} (all its columns are zero or "
                "excluded); drop it from the modalities."
            )
        kept = np.flatnonzero(keep)
        kept_batch = batch_of.reindex(mod_cells[kept]).to_numpy()
        mod_blocks = []
        unmeasured: dict[str, int] = {}
        for level in sorted(set(kept_batch), key=lambda b: rank[b]):
            columns = kept[kept_batch == level]
            block = x[:, columns]
            features = np.arange(x.shape[0])
            if batch_features == "nonzero":
                features = np.flatnonzero(np.bincount(block.indices, minlength=x.shape[0]))
                if not len(features):
                    raise ValueError(
                        f"modality {modality!r}: the cells of batch '{level}' that measured it "
                        "have no count at all; check observed."
                    )
                block = block[features]
                if len(features) < x.shape[0]:
                    unmeasured[level] = x.shape[0] - len(features)
            mod_blocks.append(
                {
                    "x": sp.csc_matrix(block),
                    "features": [data.features[i] for i in features],
                    "cells": [str(c) for c in mod_cells[columns]],
                }
            )
        blocks[modality] = mod_blocks
        if unmeasured:
            notes.append(
                f"{modality} features without a count in any cell of a batch count as not "
                "measured there: "
                + ", ".join(f"{n} of {x.shape[0]} in '{b}'" for b, n in unmeasured.items())
                + '. Set batch_features="all" if they were measured.'
            )
    zeros = {m: n for m, n in zero_columns.items() if n > 0}
    if zeros:
        notes.append(
            "cells with an all-zero column count as not measured: "
            + ", ".join(f"{m} {n} of {len(cells)} cells" for m, n in zeros.items())
            + ". Pass observed={<modality>: <logical column or cell names>} to say it explicitly."
        )
    measured = pd.Index(
        [c for mod in blocks.values() for b in mod for c in b["cells"]], dtype=object
    ).unique()
    none = cells.difference(measured, sort=False)
    if len(none):
        raise ValueError(
            f"{len(none)} cells measured no modality (all-zero in every assay), e.g. "
            f"{_show(none, 3)}. Remove them from the object first (in R: "
            "subset(object, cells = setdiff(colnames(object), <those>)) or object[, <measured "
            "cells>])."
        )
    return Blocks(blocks, notes)
