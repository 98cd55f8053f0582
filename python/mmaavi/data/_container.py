"""The model's view of a mosaic: :class:`MosaicData`, built and validated by :func:`setup_mosaic`.

``MosaicData`` keeps one count matrix per modality in the global cell order (empty rows for
cells without the modality), the cell x modality observation mask, block / measured-feature masks,
integer codes for batch, adversarial target and labels, and the fitted encoder-input transforms.
:meth:`MosaicData.minibatch` slices all of it in bulk into the ``dict[str, Tensor]`` of
:mod:`mmaavi._constants`.

A count matrix is either a CSR in memory or, for a backed AnnData / MuData whose counts are
stored as CSR on disk, a :class:`~mmaavi.data._counts.BackedCounts` that reads the rows a
minibatch needs from the file (out-of-core). Both answer ``counts[rows]`` with the same float32
CSR, and everything else (transforms, minibatches) is one code path, so the same cells give the
same tensors to the bit either way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from mmaavi import _constants as K
from mmaavi.data._counts import BackedCounts, CountMatrix, is_backed_csr
from mmaavi.data._mosaic import BLOCK_KEY, MEASURED_KEY
from mmaavi.data._transforms import Embedding, Log1pNorm, resolve_transform
from mmaavi.data._validate import (
    LIKELIHOODS,
    check_layout,
    check_no_missing,
    check_not_empty,
    check_unique,
    check_values,
    examples,
    log_empty_features,
    missing_column_error,
    scan_counts,
    to_csr_float32,
    warn_empty_cells,
)
from mmaavi.nn.wide import is_wide

logger = logging.getLogger(__name__)

Transform = Log1pNorm | Embedding


@dataclass(frozen=True, eq=False)
class MosaicData:
    """Arrays the model trains on, in the order of ``obs_names`` (never reordered).

    Attributes
    ----------
    obs_names
        Cell names, ``mdata.obs_names``.
    modalities
        Modality names, in the order of ``mdata.mod`` (and of the ``obs_mask`` columns).
    var_names
        Modality -> feature names.
    counts
        Modality -> (n_cells, n_features_m) raw counts, empty rows for cells without m: a float32
        CSR in memory, or a :class:`~mmaavi.data._counts.BackedCounts` reading them from disk.
    obs_mask
        Bool (n_cells, n_modalities): which cell observed which modality.
    block
        Modality -> int64 (n_cells,) block index of each cell, -1 where not observed.
    block_measured
        Modality -> bool (n_blocks_m, n_features_m) measured features per block, or ``None`` when
        every block measured every feature.
    batch, batch_categories
        Int64 (n_cells,) batch codes and their names.
    adv, adv_categories
        Int64 (n_cells,) discriminator targets and their names.
    labels, label_categories
        Int64 (n_cells,) class codes (-1 = unlabelled) and their names (``None`` without labels).
    likelihoods
        Modality -> decoder likelihood, one of :data:`~mmaavi.data.LIKELIHOODS`.
    transforms
        Modality -> fitted encoder-input transform (``.name``, ``.n_input``, ``.encode``).
    batch_key, adversarial_key, label_key
        The ``mdata.obs`` columns the codes came from.
    """

    obs_names: pd.Index
    modalities: tuple[str, ...]
    var_names: dict[str, pd.Index]
    counts: dict[str, CountMatrix]
    obs_mask: np.ndarray
    block: dict[str, np.ndarray]
    block_measured: dict[str, np.ndarray | None]
    batch: np.ndarray
    batch_categories: pd.Index
    adv: np.ndarray
    adv_categories: pd.Index
    labels: np.ndarray
    label_categories: pd.Index | None
    likelihoods: dict[str, str]
    transforms: dict[str, Transform]
    batch_key: str
    adversarial_key: str
    label_key: str | None

    @property
    def n_cells(self) -> int:
        """Number of cells."""
        return len(self.obs_names)

    @property
    def n_batches(self) -> int:
        """Number of batches."""
        return len(self.batch_categories)

    @property
    def backed_modalities(self) -> tuple[str, ...]:
        """Modalities whose counts are read from disk on demand (out-of-core)."""
        return tuple(m for m in self.modalities if isinstance(self.counts[m], BackedCounts))

    def close(self) -> None:
        """Close the files of backed modalities (the data can no longer be read)."""
        for m in self.backed_modalities:
            self.counts[m].close()

    def n_features(self, modality: str) -> int:
        """Number of features of ``modality`` (decoder output width)."""
        return len(self.var_names[self._check_modality(modality)])

    def sparse_targets(self, modality: str) -> bool:
        """Whether minibatches carry the counts of ``modality`` as their non-zero entries
        (``_constants.X_SPARSE``) rather than dense: wide inputs (``mmaavi.nn.wide.is_wide``)
        with the NB likelihood, whose loss reads only the non-zero counts."""
        return self.likelihoods[modality] == "nb" and is_wide(self.n_features(modality))

    def n_input(self, modality: str) -> int:
        """Encoder input width of ``modality``."""
        return self.transforms[self._check_modality(modality)].n_input

    def measuring_batches(self, modality: str) -> np.ndarray:
        """Sorted codes of the batches in which at least one cell measured ``modality``.

        The decoders' per-batch parameters of a modality are trained only in these batches.
        """
        j = self.modalities.index(self._check_modality(modality))
        return np.unique(self.batch[self.obs_mask[:, j]])

    def minibatch(self, idx: np.ndarray, *, targets: bool = True) -> dict[str, torch.Tensor]:
        """Tensors of the cells ``idx`` (positions in ``obs_names``), keyed as in ``_constants``.

        Parameters
        ----------
        idx
            Int array (batch_size,) of cell positions.
        targets
            Include the raw counts ``x/<m>`` (the reconstruction targets). Encoding needs
            only the encoder inputs; leaving the counts out saves one dense
            (batch_size, n_features_m) array per modality.

        Returns
        -------
        dict
            ``x/<m>`` dense float32 raw counts (zero rows for cells lacking m; with
            ``targets``; for a modality with :meth:`sparse_targets` its non-zero entries
            ``x_rows/<m>``, ``x_cols/<m>``, ``x_values/<m>`` instead), ``enc/<m>`` float32
            encoder input (for a wide input its :class:`~mmaavi.nn.wide.SparseRows` fields
            ``enc_base/<m>`` ... instead), ``fmask/<m>`` bool measured-feature mask (only for
            modalities with unmeasured features; all False for cells lacking m), ``obs_mask``,
            ``batch``, ``adv``, ``label``, ``index``.
        """
        idx = np.asarray(idx)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer) or idx.size == 0):
            raise TypeError(
                f"idx: expected a 1-D integer array of cell positions, found dtype {idx.dtype} "
                f"with shape {idx.shape}."
            )
        idx = idx.astype(np.int64, copy=False)
        batch = self.batch[idx]
        obs_mask = self.obs_mask[idx]
        out: dict[str, torch.Tensor] = {}
        for j, m in enumerate(self.modalities):
            rows = self.counts[m][idx]
            fmask = None
            measured = self.block_measured[m]
            if measured is not None:
                padded = np.vstack([measured, np.zeros((1, measured.shape[1]), dtype=bool)])
                fmask = padded[self.block[m][idx]]  # block -1 picks the all-False padding row
                out[K.mod_key(K.FMASK, m)] = torch.from_numpy(fmask)
            if targets and self.sparse_targets(m):
                out.update(zip((K.mod_key(key, m) for key in K.X_SPARSE), _nonzero_entries(rows)))
            elif targets:
                out[K.mod_key(K.X, m)] = torch.from_numpy(rows.toarray())
            transform = self.transforms[m]
            if transform.wide:
                parts = transform.encode_sparse(
                    rows, batch, obs_mask[:, j], fmask, self.block[m][idx]
                )
                out.update((K.mod_key(key, m), part) for key, part in zip(K.ENC_SPARSE, parts))
            else:
                out[K.mod_key(K.ENC, m)] = transform.encode(rows, idx, batch, obs_mask[:, j], fmask)
        out[K.OBS_MASK] = torch.from_numpy(obs_mask)
        out[K.BATCH] = torch.from_numpy(batch)
        out[K.ADV] = torch.from_numpy(self.adv[idx])
        out[K.LABEL] = torch.from_numpy(self.labels[idx])
        out[K.INDEX] = torch.from_numpy(idx.copy())
        return out

    def _check_modality(self, modality: str) -> str:
        if modality not in self.modalities:
            raise KeyError(
                f"unknown modality {modality!r}; the data hold {', '.join(self.modalities)}."
            )
        return modality


def setup_mosaic(
    mdata: mudata.MuData,
    batch_key: str = "batch",
    *,
    adversarial_key: str | None = None,
    label_key: str | None = None,
    unlabeled_category: object = None,
    likelihoods: Mapping[str, str] | None = None,
    transform: str | Mapping[str, str] = "log1p_norm",
    n_components_lsi: int = 100,
    backed: bool | None = None,
) -> MosaicData:
    """Validate a mosaic MuData and build the arrays the model trains on.

    Parameters
    ----------
    mdata
        A MuData from :func:`~mmaavi.data.mosaic`, or one built directly (then each modality is
        one block that measured all its features, and its cells are ``mdata.mod[m].obs_names``,
        all of which must be in ``mdata.obs_names``). Raw counts in ``mdata.mod[m].X``.
    batch_key
        Column of ``mdata.obs`` with each cell's batch.
    adversarial_key
        Column of ``mdata.obs`` the discriminator predicts; defaults to ``batch_key``.
    label_key
        Optional column of ``mdata.obs`` with cell labels for semi-supervised training; NaN or
        ``unlabeled_category`` marks an unlabelled cell.
    unlabeled_category
        Label value meaning "unlabelled".
    likelihoods
        Modality -> one of ``"nb"``, ``"zinb"``, ``"bernoulli"``, ``"normal"``; modalities left out
        get ``"nb"``.
    transform
        Encoder input, one name for all modalities or a mapping modality -> name (left out:
        ``"log1p_norm"``): ``"log1p_norm"``, ``"lsi"``, ``"pca"`` or ``"lsi_pca"`` (LSI for peak
        data, PCA otherwise; see :func:`~mmaavi.data._transforms.resolve_transform`).
    n_components_lsi
        Components of ``lsi`` / ``pca`` [100], clipped to ``min(n_cells_m - 1, n_features_m - 1)``.
    backed
        Where the counts live. ``None`` (default): a modality whose AnnData is backed
        (``mudata.read_h5mu(path, backed=True)``, ``anndata.read_h5ad(path, backed="r")``) with
        counts stored as CSR stays on disk and minibatches read its rows from the file; any other
        modality is loaded. ``True``: every modality must be so (an error says which is not).
        ``False``: everything is loaded into memory. Counts on disk and in memory give the same
        minibatches for the same cells.

    Returns
    -------
    MosaicData
        Cells in the order of ``mdata.obs_names``. ``mdata`` is not modified.

    Notes
    -----
    Category order of batch, adversarial target and labels: the column's categories if it is
    categorical (unused ones dropped), else its sorted unique values.

    This is the one validation pass before any tensor is built (the bad inputs tried and the
    messages given are listed in ``tests/python/BAD_INPUTS.md``). Besides the errors, it
    accepts and reports:

    - counts as dense or sparse matrices of any numeric or bool dtype, and backed AnnData
      (converted to float32 CSR in row chunks, or left on disk, see ``backed``; the input is
      never modified);
    - cells with zero total counts in a modality they measured: kept, with a ``UserWarning``
      giving their number;
    - features with zero counts in every cell: kept (feature order, guidance graph and saved
      models stay aligned), their number logged at INFO level;
    - a batch, or a modality, with a single cell: kept, with a ``UserWarning``.
    """
    if not isinstance(mdata, mudata.MuData):
        raise TypeError(
            f"mdata: expected a mudata.MuData, found {type(mdata).__name__}. Build one with "
            "mmaavi.data.mosaic({'rna': adata_rna, ...})."
        )
    modalities = tuple(mdata.mod.keys())
    if not modalities:
        raise ValueError("mdata has no modalities; expected at least one in mdata.mod.")
    obs_names = pd.Index(mdata.obs_names)
    check_unique(obs_names, "cell", "mdata.obs")
    n_cells = len(obs_names)
    obs = mdata.obs
    likelihoods = _check_likelihoods(likelihoods, modalities)
    if isinstance(transform, Mapping):
        unknown = [m for m in transform if m not in modalities]
        if unknown:
            raise KeyError(
                f"transform names unknown modalities {examples(unknown)}; mdata has "
                f"{', '.join(modalities)}."
            )
    elif not isinstance(transform, str):
        raise TypeError(
            f"transform: expected a str or a dict modality -> str, found {type(transform).__name__}."
        )
    if backed not in (None, True, False):
        raise TypeError(f"backed: expected None, True or False, found {backed!r}.")
    if not isinstance(n_components_lsi, (int, np.integer)) or n_components_lsi < 1:
        raise ValueError(
            f"n_components_lsi must be a positive integer, found {n_components_lsi!r}."
        )

    obs_mask = np.zeros((n_cells, len(modalities)), dtype=bool)
    counts: dict[str, CountMatrix] = {}
    block: dict[str, np.ndarray] = {}
    block_measured: dict[str, np.ndarray | None] = {}
    for j, m in enumerate(modalities):
        adata = mdata.mod[m]
        where = f"mdata.mod[{m!r}]"
        check_not_empty(adata, where)
        check_unique(adata.obs_names, "cell", where)
        pos = obs_names.get_indexer(adata.obs_names)
        if (pos < 0).any():
            absent = adata.obs_names[pos < 0]
            raise ValueError(
                f"{where}: {len(absent)} cells are not in mdata.obs_names, e.g. "
                f"{examples(absent)}. Call mdata.update() after editing a modality, or build the "
                "MuData with mmaavi.data.mosaic()."
            )
        check_unique(adata.var_names, "feature", where)
        obs_mask[pos, j] = True
        if _on_disk(adata, backed, where):
            counts[m] = BackedCounts(adata.filename, adata.X.group.name, pos, n_cells)
            scan_counts(counts[m], pos, adata, likelihoods[m], m)
        else:
            x = to_csr_float32(adata.X, where)
            check_values(x, likelihoods[m], m)
            warn_empty_cells(x, adata.obs_names, m)
            log_empty_features(x, adata.var_names, m)
            counts[m] = _scatter_rows(x, pos, n_cells)
        block[m], block_measured[m] = _blocks(adata, pos, n_cells, m)

    empty = ~obs_mask.any(axis=1)
    if empty.any():
        raise ValueError(
            f"{int(empty.sum())} cells of mdata.obs have no observed modality (a cell with no "
            f"observed modality cannot be encoded), e.g. {examples(obs_names[empty])}. Drop them, "
            "e.g. mdata = mdata[mdata.obs_names.isin(<cells with data>)].copy()."
        )

    batch, batch_categories = _codes(obs, batch_key, "batch_key", modalities)
    adversarial_key = batch_key if adversarial_key is None else adversarial_key
    if adversarial_key == batch_key:
        adv, adv_categories = batch, batch_categories
    else:
        adv, adv_categories = _codes(obs, adversarial_key, "adversarial_key", modalities)
    check_layout(obs_mask, batch, batch_categories, modalities)
    if label_key is None:
        labels = np.full(n_cells, K.UNLABELED, dtype=np.int64)
        label_categories = None
    else:
        labels, label_categories = _labels(obs, label_key, unlabeled_category, modalities)

    transforms: dict[str, Transform] = {}
    for j, m in enumerate(modalities):
        kind = resolve_transform(transform, m, likelihoods[m], mdata.mod[m].var_names)
        if kind == "log1p_norm":
            transforms[m] = Log1pNorm.fit(
                counts[m],
                obs_mask[:, j],
                batch,
                len(batch_categories),
                block[m],
                block_measured[m],
                log1p=likelihoods[m] != "normal",
            )
        else:
            transforms[m] = Embedding.fit(
                kind,
                counts[m],
                obs_mask[:, j],
                batch,
                len(batch_categories),
                block_measured[m],
                int(n_components_lsi),
                m,
                counts_like=likelihoods[m] != "normal",
            )
    data = MosaicData(
        obs_names=obs_names,
        modalities=modalities,
        var_names={m: pd.Index(mdata.mod[m].var_names) for m in modalities},
        counts=counts,
        obs_mask=obs_mask,
        block=block,
        block_measured=block_measured,
        batch=batch,
        batch_categories=batch_categories,
        adv=adv,
        adv_categories=adv_categories,
        labels=labels,
        label_categories=label_categories,
        likelihoods=likelihoods,
        transforms=transforms,
        batch_key=batch_key,
        adversarial_key=adversarial_key,
        label_key=label_key,
    )
    if data.backed_modalities:
        logger.info(
            "setup_mosaic: counts of %s stay on disk (read per minibatch)",
            ", ".join(data.backed_modalities),
        )
    logger.info(
        "setup_mosaic: %d cells, %d batches; %s",
        n_cells,
        len(batch_categories),
        "; ".join(
            f"{m}: {int(obs_mask[:, j].sum())} cells x {data.n_features(m)} features, "
            f"{likelihoods[m]}, {transforms[m].name} ({transforms[m].n_input} inputs)"
            for j, m in enumerate(modalities)
        ),
    )
    return data


def _check_likelihoods(
    likelihoods: Mapping[str, str] | None, modalities: tuple[str, ...]
) -> dict[str, str]:
    """Complete ``likelihoods`` with ``"nb"`` and check every name."""
    if likelihoods is None:
        likelihoods = {}
    if not isinstance(likelihoods, Mapping):
        raise TypeError(
            f"likelihoods: expected a dict modality -> likelihood, found "
            f"{type(likelihoods).__name__}, e.g. {{'atac': 'bernoulli'}}."
        )
    unknown = [m for m in likelihoods if m not in modalities]
    if unknown:
        raise KeyError(
            f"likelihoods names unknown modalities {examples(unknown)}; mdata has "
            f"{', '.join(modalities)}."
        )
    out = {m: likelihoods.get(m, "nb") for m in modalities}
    for m, lik in out.items():
        if lik not in LIKELIHOODS:
            raise ValueError(
                f"likelihood for modality {m!r}: expected one of {', '.join(LIKELIHOODS)}, found "
                f"{lik!r}."
            )
    return out


def _on_disk(adata: object, backed: bool | None, where: str) -> bool:
    """Whether a modality's counts stay on disk (``backed`` as in :func:`setup_mosaic`)."""
    if backed is False:
        return False
    x = getattr(adata, "X", None)
    if getattr(adata, "isbacked", False) and is_backed_csr(x):
        return True
    if backed is None:
        return False
    if not getattr(adata, "isbacked", False):
        found = "an AnnData in memory"
        fix = (
            "write it to disk and read it back backed, e.g. mdata.write('data.h5mu'); "
            "mdata = mudata.read_h5mu('data.h5mu', backed=True)"
        )
    else:
        kind = getattr(x, "format", None) or type(x).__name__
        found = f"a backed AnnData whose counts are stored as {kind}, not CSR"
        fix = (
            "rewrite the file with CSR counts: adata = adata.to_memory(); adata.X = "
            "scipy.sparse.csr_matrix(adata.X); adata.write_h5ad(path)"
        )
    raise ValueError(
        f"{where}: backed=True needs counts stored on disk as CSR (a backed AnnData read with "
        f"anndata.read_h5ad(path, backed='r') or mudata.read_h5mu(path, backed=True)); found "
        f"{found}. Either {fix}, or pass backed=None to load such modalities into memory."
    )


def _nonzero_entries(rows: sp.csr_matrix) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row, column (int64) and value (float32) of the non-zero entries of ``rows``, row-major
    with columns ascending (the order ``torch.nonzero`` gives the dense matrix)."""
    rows = rows.copy() if rows.has_sorted_indices else rows.sorted_indices()
    rows.eliminate_zeros()  # stored zeros are not entries of a count matrix
    counts = np.diff(rows.indptr)
    row = np.repeat(np.arange(rows.shape[0], dtype=np.int64), counts)
    return (
        torch.from_numpy(row),
        torch.from_numpy(rows.indices.astype(np.int64)),
        torch.from_numpy(np.asarray(rows.data, dtype=np.float32)),
    )


def _scatter_rows(x: sp.csr_matrix, pos: np.ndarray, n_rows: int) -> sp.csr_matrix:
    """Place row ``i`` of ``x`` at row ``pos[i]`` of an ``n_rows``-row CSR (other rows empty)."""
    order = np.argsort(pos, kind="stable")
    x = x[order]
    nnz = np.zeros(n_rows, dtype=np.int64)
    nnz[pos[order]] = np.diff(x.indptr)
    indptr = np.concatenate([[0], np.cumsum(nnz)])
    return sp.csr_matrix((x.data, x.indices, indptr), shape=(n_rows, x.shape[1]))


def _blocks(
    adata: object, pos: np.ndarray, n_cells: int, modality: str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Block code per global cell (-1 = unobserved) and the blocks x features measured mask."""
    code = np.full(n_cells, -1, dtype=np.int64)
    if BLOCK_KEY not in adata.obs.columns:
        code[pos] = 0
        return code, None
    blocks = pd.Categorical(adata.obs[BLOCK_KEY])
    if (blocks.codes < 0).any():
        raise ValueError(
            f"mdata.mod[{modality!r}].obs[{BLOCK_KEY!r}] has missing values; every cell needs a "
            "block. Rebuild the MuData with mmaavi.data.mosaic()."
        )
    code[pos] = blocks.codes
    table = adata.varm[MEASURED_KEY] if MEASURED_KEY in adata.varm else None
    if table is None:
        return code, None
    table = pd.DataFrame(table, index=adata.var_names)
    names = [str(c) for c in blocks.categories]
    table.columns = [str(c) for c in table.columns]
    if not set(names) <= set(table.columns):
        raise ValueError(
            f"mdata.mod[{modality!r}].varm[{MEASURED_KEY!r}] has columns "
            f"{examples(table.columns)} but the cells' blocks are {examples(names)}; expected one "
            "column per block. Rebuild the MuData with mmaavi.data.mosaic()."
        )
    measured = table[names].to_numpy(dtype=bool).T.copy()
    if measured.all():
        return code, None
    return code, measured


def _column(obs: pd.DataFrame, key: str, arg: str, modalities: tuple[str, ...]) -> pd.Series:
    """``obs[key]``, or a ``KeyError`` listing the columns (and hinting at pulled columns)."""
    if not isinstance(key, str):
        raise TypeError(f"{arg}: expected a column name (str), found {type(key).__name__}.")
    if key in obs.columns:
        return obs[key]
    prefixed = [f"{m}:{key}" for m in modalities if f"{m}:{key}" in obs.columns]
    hint = ""
    if prefixed:
        hint = (
            f"Found {examples(prefixed)}: copy it to the global table with "
            f"mdata.pull_obs(columns=[{key!r}]) or build the MuData with mmaavi.data.mosaic()."
        )
    raise missing_column_error(key, obs.columns, f"{arg}={key!r}: mdata.obs", hint)


def _categories(values: pd.Series) -> pd.Index:
    """Deterministic category order: categorical order (used only), else sorted unique values."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        return pd.Index(values.cat.remove_unused_categories().cat.categories)
    return pd.Index(np.sort(values.dropna().unique()))


def _codes(
    obs: pd.DataFrame, key: str, arg: str, modalities: tuple[str, ...]
) -> tuple[np.ndarray, pd.Index]:
    """Integer codes of a required column (no missing values allowed)."""
    values = _column(obs, key, arg, modalities)
    check_no_missing(values, key, "mdata.obs")
    categories = _categories(values)
    return categories.get_indexer(values).astype(np.int64), categories


def _labels(
    obs: pd.DataFrame, key: str, unlabeled: object, modalities: tuple[str, ...]
) -> tuple[np.ndarray, pd.Index]:
    """Label codes, -1 for NaN or ``unlabeled``."""
    values = _column(obs, key, "label_key", modalities)
    if unlabeled is not None:
        values = values.mask(values == unlabeled)
    categories = _categories(values)
    codes = categories.get_indexer(values).astype(np.int64)
    codes[values.isna().to_numpy()] = K.UNLABELED
    if not len(categories):
        raise ValueError(
            f"label_key={key!r}: every cell is unlabelled (NaN or {unlabeled!r}); expected at "
            "least one labelled cell. Check the column or leave label_key=None."
        )
    if len(categories) < 2:
        raise ValueError(
            f"label_key={key!r}: the labelled cells hold one class only ({categories[0]!r}); "
            "label transfer needs at least two classes. Label cells of two or more types, or "
            "train without label_key (with n_components)."
        )
    return codes, categories
