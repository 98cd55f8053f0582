"""Assemble a mosaic :class:`~mudata.MuData` from one AnnData (or a list of blocks) per modality.

Layout of the result (the contract :func:`~mmaavi.data.setup_mosaic` reads back):

- ``mdata.mod[m]``: every cell that measured ``m`` (blocks concatenated in the given order) x the
  union of the blocks' features (order of first appearance); ``X`` = raw counts, float32 CSR. A
  feature absent from a block has no entries for that block's cells: it is *unmeasured*, not zero.
- ``mdata.mod[m].obs["mmaavi_block"]``: categorical block name (``"0"``, ``"1"``, ... in input order).
- ``mdata.mod[m].varm["mmaavi_measured"]``: bool DataFrame (features x blocks) saying which block
  measured which feature; present only when the blocks' feature sets differ.
- ``mdata.obs``: one row per distinct cell (order of first appearance over the modalities as given)
  with ``batch_key`` and the other ``obs`` columns of the inputs (value from the first modality
  where the cell appears), overridden by the ``obs`` argument when given.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence

import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from mmaavi.data._validate import (
    check_anndata,
    check_no_missing,
    check_not_empty,
    check_unique,
    examples,
    missing_column_error,
    to_csr_float32,
)

logger = logging.getLogger(__name__)

#: ``mod[m].obs`` column holding each cell's block name
BLOCK_KEY = "mmaavi_block"
#: ``mod[m].varm`` key of the features x blocks "measured" table
MEASURED_KEY = "mmaavi_measured"


def mosaic(
    modalities: Mapping[str, AnnData | Sequence[AnnData]],
    batch_key: str = "batch",
    *,
    obs: pd.DataFrame | None = None,
    backed: bool = False,
) -> mudata.MuData:
    """Combine per-modality AnnData objects into one mosaic MuData.

    Parameters
    ----------
    modalities
        Modality name (e.g. ``"rna"``, ``"atac"``, ``"adt"``) -> AnnData holding only the cells that
        measured that modality, raw counts in ``X``. Cell names (``obs_names``) are shared across
        modalities: the same string in two modalities is the same cell. A modality may also be a
        list of AnnData *blocks*, each with its own cells and its own feature set; the modality's
        features are then the union of the blocks' features and a feature absent from a block is
        recorded as unmeasured for that block's cells.
    batch_key
        Column of each AnnData's ``obs`` (or of ``obs``) naming the batch of every cell.
    obs
        Optional table indexed by cell name supplying ``batch_key`` (and any other columns, e.g.
        labels) instead of reading them from each AnnData; it must cover every cell.
    backed
        Keep the counts on disk: every modality must then be one AnnData read with
        ``anndata.read_h5ad(path, backed="r")`` whose counts are stored as CSR, and the result
        holds those backed AnnData objects as they are (nothing is loaded or copied; models
        built on it read minibatches from the files). ``False`` (default): the counts are copied
        into memory as float32 CSR.

    Returns
    -------
    mudata.MuData
        The mosaic, laid out as described in the module docstring. Inputs are not modified.

    Raises
    ------
    TypeError
        ``modalities`` is not a mapping, a value is not an AnnData (or list of them), or ``obs`` is
        not a DataFrame.
    KeyError
        ``batch_key`` is missing from an AnnData's ``obs`` (or from ``obs``), or ``obs`` lacks cells.
    ValueError
        An empty mapping, modality or block; duplicated cell or feature names; a cell in two blocks
        of one modality; missing batch values; a cell given different batches in two modalities; or
        a batch present in two modalities whose cell names share nothing (pairing claimed but the
        names do not match).

    Examples
    --------
    >>> mdata = mosaic({"rna": [cite_rna, multiome_rna], "adt": cite_adt, "atac": multiome_atac})
    """
    blocks = _blocks_by_modality(modalities)
    if obs is not None:
        obs = _check_obs_table(obs, batch_key, blocks)
    mods: dict[str, AnnData] = {}
    cell_tables: dict[str, pd.DataFrame] = {}
    for name, mod_blocks in blocks.items():
        if backed:
            mods[name] = _backed_block(name, mod_blocks)
            cell_tables[name] = _cell_table(name, mod_blocks, batch_key, obs)
        else:
            mods[name], cell_tables[name] = _combine_blocks(name, mod_blocks, batch_key, obs)
    _check_batches(cell_tables, batch_key)
    global_obs = _global_obs(cell_tables, batch_key, obs)
    with mudata.set_options(pull_on_update=False), warnings.catch_warnings():
        # The same name in two modalities (gene CD4, protein CD4) is normal in multi-omics:
        # mmaavi addresses features per modality, so mudata's global-uniqueness warning is noise.
        warnings.filterwarnings("ignore", message="var_names are not unique", category=UserWarning)
        mdata = mudata.MuData(mods)
    if not mdata.obs_names.equals(global_obs.index):
        global_obs = global_obs.reindex(mdata.obs_names)
    for column in global_obs.columns:
        mdata.obs[column] = global_obs[column].to_numpy()
        if isinstance(global_obs[column].dtype, pd.CategoricalDtype):
            mdata.obs[column] = mdata.obs[column].astype(global_obs[column].dtype)
    logger.info(
        "mosaic: %d cells; %s",
        mdata.n_obs,
        ", ".join(f"{m} {a.n_obs} cells x {a.n_vars} features" for m, a in mods.items()),
    )
    return mdata


def _blocks_by_modality(
    modalities: Mapping[str, AnnData | Sequence[AnnData]],
) -> dict[str, list[AnnData]]:
    """Normalise the input to ``{modality: [block, ...]}`` and check each block."""
    if not isinstance(modalities, Mapping):
        raise TypeError(
            f"modalities: expected a mapping modality name -> AnnData (or list of AnnData), found "
            f"{type(modalities).__name__}. Pass e.g. {{'rna': adata_rna, 'atac': adata_atac}}."
        )
    if len(modalities) == 0:
        raise ValueError(
            "modalities is empty: expected at least one modality, e.g. {'rna': adata_rna}."
        )
    out: dict[str, list[AnnData]] = {}
    for name, value in modalities.items():
        if not isinstance(name, str) or not name or "/" in name or ":" in name:
            raise ValueError(
                f"modality names must be non-empty strings without '/' or ':', found {name!r}. "
                "Use names such as 'rna', 'atac', 'adt'."
            )
        if isinstance(value, AnnData):
            value = [value]
        elif not isinstance(value, Sequence) or isinstance(value, str):
            check_anndata(value, f"modality {name!r}")
        if len(value) == 0:
            raise ValueError(
                f"modality {name!r} is empty: expected an AnnData or a non-empty list of AnnData "
                "blocks, found an empty list. Drop the modality from the input."
            )
        several = len(value) > 1
        mod_blocks = []
        for i, block in enumerate(value):
            where = f"modality {name!r}" + (f", block {i}" if several else "")
            check_anndata(block, where)
            check_not_empty(block, where)
            check_unique(block.obs_names, "cell", where)
            check_unique(block.var_names, "feature", where)
            mod_blocks.append(block)
        if several:
            all_cells = pd.Index(np.concatenate([b.obs_names.to_numpy() for b in mod_blocks]))
            if not all_cells.is_unique:
                dup = all_cells[all_cells.duplicated()].unique()
                raise ValueError(
                    f"modality {name!r}: {len(dup)} cells appear in more than one block, e.g. "
                    f"{examples(dup)}. A cell belongs to exactly one block of a modality: merge "
                    "those blocks or rename the cells."
                )
        out[name] = mod_blocks
    return out


def _check_obs_table(
    obs: pd.DataFrame, batch_key: str, blocks: dict[str, list[AnnData]]
) -> pd.DataFrame:
    """Validate the optional ``obs`` argument and return it restricted to the input cells."""
    if not isinstance(obs, pd.DataFrame):
        raise TypeError(
            f"obs: expected a pandas DataFrame indexed by cell name, found {type(obs).__name__}."
        )
    if batch_key not in obs.columns:
        raise missing_column_error(batch_key, obs.columns, "obs argument")
    index = obs.index.astype(str)
    check_unique(index, "cell", "obs argument")
    cells = pd.Index(
        np.concatenate([b.obs_names.to_numpy() for bl in blocks.values() for b in bl])
    ).unique()
    absent = cells.difference(index, sort=False)
    if len(absent):
        raise KeyError(
            f"obs argument: {len(absent)} cells of the modalities are not in its index, e.g. "
            f"{examples(absent)}. Its index must hold every cell name (obs_names) of the inputs."
        )
    out = obs.copy()
    out.index = index
    return out


def _combine_blocks(
    name: str, blocks: list[AnnData], batch_key: str, obs: pd.DataFrame | None
) -> tuple[AnnData, pd.DataFrame]:
    """Stack a modality's blocks into one AnnData over the union of their features.

    Returns the AnnData and the modality's cell table (the blocks' ``obs``, with ``batch_key``
    taken from ``obs`` when given).
    """
    features = pd.Index(np.concatenate([b.var_names.to_numpy() for b in blocks])).unique()
    matrices = []
    measured = np.zeros((len(features), len(blocks)), dtype=bool)
    for i, block in enumerate(blocks):
        where = f"modality {name!r}" + (f", block {i}" if len(blocks) > 1 else "")
        x = to_csr_float32(block.X, where)
        cols = features.get_indexer(block.var_names)
        measured[cols, i] = True
        remapped = sp.csr_matrix(
            (x.data, cols[x.indices].astype(x.indices.dtype, copy=False), x.indptr),
            shape=(x.shape[0], len(features)),
        )
        remapped.sort_indices()
        matrices.append(remapped)
    x_all = sp.vstack(matrices, format="csr", dtype=np.float32)

    block_names = [str(i) for i in range(len(blocks))]
    cells = pd.Index(np.concatenate([b.obs_names.to_numpy() for b in blocks]), dtype=object)
    block_col = pd.Categorical(
        np.repeat(block_names, [b.n_obs for b in blocks]), categories=block_names
    )
    var = _first_wins([b.var for b in blocks]).reindex(features)
    adata = AnnData(X=x_all, obs=pd.DataFrame({BLOCK_KEY: block_col}, index=cells), var=var)
    if not measured.all():
        adata.varm[MEASURED_KEY] = pd.DataFrame(measured, index=features, columns=block_names)
        logger.info(
            "modality %r: %d blocks measure %s of %d union features",
            name,
            len(blocks),
            "/".join(str(int(c)) for c in measured.sum(0)),
            len(features),
        )

    return adata, _cell_table(name, blocks, batch_key, obs)


def _backed_block(name: str, blocks: list[AnnData]) -> AnnData:
    """The one backed, CSR-on-disk AnnData of a modality (``mosaic(..., backed=True)``)."""
    from mmaavi.data._counts import is_backed_csr

    if len(blocks) > 1:
        raise ValueError(
            f"modality {name!r}: backed=True takes one AnnData per modality, found {len(blocks)} "
            "blocks. Combine the blocks in memory once and write them to disk: "
            "mmaavi.data.mosaic({...}).write('mosaic.h5mu'), then read it with "
            "mudata.read_h5mu('mosaic.h5mu', backed=True)."
        )
    block = blocks[0]
    if not block.isbacked or not is_backed_csr(block.X):
        found = (
            "an AnnData in memory"
            if not block.isbacked
            else f"counts stored as {getattr(block.X, 'format', None) or type(block.X).__name__}"
        )
        raise ValueError(
            f"modality {name!r}: backed=True needs an AnnData read with "
            f"anndata.read_h5ad(path, backed='r') whose counts are stored as CSR; found {found}. "
            "Write it with CSR counts (adata.X = scipy.sparse.csr_matrix(adata.X); "
            "adata.write_h5ad(path)) and read it back backed, or leave backed=False."
        )
    return block


def _cell_table(
    name: str, blocks: list[AnnData], batch_key: str, obs: pd.DataFrame | None
) -> pd.DataFrame:
    """A modality's cell table: the blocks' ``obs``, with ``batch_key`` from ``obs`` if given."""
    tables = []
    for i, block in enumerate(blocks):
        where = f"modality {name!r}" + (f", block {i}" if len(blocks) > 1 else "")
        if obs is None and batch_key not in block.obs.columns:
            hint = (
                "Add the column, or pass obs=<DataFrame indexed by cell with a "
                f"{batch_key!r} column>, or set batch_key to one of the available columns."
            )
            raise missing_column_error(batch_key, block.obs.columns, where, hint)
        table = block.obs.copy()
        if obs is not None:
            table[batch_key] = obs.loc[block.obs_names, batch_key].to_numpy()
        check_no_missing(table[batch_key], batch_key, where)
        tables.append(table)
    return _first_wins(tables)


def _first_wins(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate tables row-wise and keep the first row of each name.

    A categorical column keeps its categories when every table holding it agrees on them; other
    string columns become categorical so that the result writes to h5mu.
    """
    dtypes: dict[str, pd.CategoricalDtype | None] = {}
    for frame in frames:
        for column in frame.columns:
            dtype = frame[column].dtype
            if not isinstance(dtype, pd.CategoricalDtype):
                dtypes[column] = None
            elif dtypes.setdefault(column, dtype) != dtype:
                dtypes[column] = None
    table = pd.concat(
        [
            f.astype({c: object for c in f.columns if isinstance(f[c].dtype, pd.CategoricalDtype)})
            for f in frames
        ],
        axis=0,
        join="outer",
        sort=False,
    )
    table = table[~table.index.duplicated(keep="first")]
    table = table.astype({c: d for c, d in dtypes.items() if d is not None})
    return _tidy(table)


def _tidy(table: pd.DataFrame) -> pd.DataFrame:
    """Make object columns writable to h5mu: all-string columns become categorical, others str."""
    table = table.copy()
    for column in table.columns:
        values = table[column]
        if values.dtype != object:
            continue
        kind = pd.api.types.infer_dtype(values, skipna=True)
        if kind == "boolean" and values.notna().all():
            table[column] = values.astype(bool)
        elif kind in ("string", "empty"):
            table[column] = pd.Categorical(values)
        else:
            table[column] = pd.Categorical(values.where(values.isna(), values.astype(str)))
    return table


def _check_batches(cell_tables: dict[str, pd.DataFrame], batch_key: str) -> None:
    """Check that batches agree across modalities and that shared batches share cells."""
    long = pd.concat(
        [
            pd.DataFrame(
                {
                    "cell": t.index.to_numpy(),
                    "batch": t[batch_key].astype(object).to_numpy(),
                    "modality": m,
                }
            )
            for m, t in cell_tables.items()
        ],
        ignore_index=True,
    )
    long["batch_str"] = long["batch"].astype(str)

    per_cell = long.drop_duplicates(["cell", "batch_str"])
    conflict = per_cell["cell"].duplicated(keep=False).to_numpy()
    if conflict.any():
        bad = per_cell[conflict]
        cell = bad["cell"].iloc[0]
        rows = long[long["cell"] == cell]
        detail = "; ".join(f"{r.modality}: {r.batch!r}" for r in rows.itertuples())
        raise ValueError(
            f"{bad['cell'].nunique()} cells are assigned to different {batch_key!r} values in "
            f"different modalities, e.g. cell {cell!r} ({detail}). A cell has one batch: fix the "
            f"{batch_key!r} columns or pass obs=<DataFrame> with one {batch_key!r} per cell."
        )

    for batch, group in long.groupby("batch_str", sort=False):
        mods_in_batch = list(dict.fromkeys(group["modality"]))
        cells_of = {m: group.loc[group["modality"] == m, "cell"] for m in mods_in_batch}
        for i, m1 in enumerate(mods_in_batch):
            for m2 in mods_in_batch[i + 1 :]:
                if not np.intersect1d(cells_of[m1].to_numpy(), cells_of[m2].to_numpy()).size:
                    raise ValueError(
                        f"Batch {batch!r} appears in modalities {m1!r} and {m2!r}, but their cell "
                        f"names share nothing: pairing is claimed but the names do not match, "
                        f"e.g. {m1!r}: {examples(cells_of[m1], 3)} vs {m2!r}: "
                        f"{examples(cells_of[m2], 3)}. Make the obs_names of paired cells "
                        "identical across modalities (e.g. strip a suffix such as '-1'), or give "
                        "the unpaired cells different batch names."
                    )


def _global_obs(
    cell_tables: dict[str, pd.DataFrame],
    batch_key: str,
    obs: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per distinct cell: the inputs' obs columns (first modality wins), then ``obs``."""
    table = _first_wins(list(cell_tables.values()))
    if obs is not None:
        extra = obs.loc[table.index]
        table = table.drop(columns=[c for c in extra.columns if c in table.columns])
        table = _tidy(pd.concat([table, extra], axis=1))
    if not isinstance(table[batch_key].dtype, pd.CategoricalDtype):
        table[batch_key] = pd.Categorical(table[batch_key].to_numpy())
    return table
