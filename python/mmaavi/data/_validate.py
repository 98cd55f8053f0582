"""Input checks shared by :func:`~mmaavi.data.mosaic` and :func:`~mmaavi.data.setup_mosaic`.

Every function here either returns a cleaned copy of its input or raises a ``ValueError`` /
``TypeError`` / ``KeyError`` whose message says what was expected, what was found and how to fix it.
Nothing here modifies its arguments.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

logger = logging.getLogger(__name__)

#: likelihoods of the decoders; the first three model counts
LIKELIHOODS: tuple[str, ...] = ("nb", "zinb", "bernoulli", "normal")
COUNT_LIKELIHOODS: frozenset[str] = frozenset({"nb", "zinb", "bernoulli"})

_N_EXAMPLES = 5


def examples(values: Sequence | np.ndarray | pd.Index, n: int = _N_EXAMPLES) -> str:
    """Format the first ``n`` values for an error message, e.g. ``"'a', 'b', ... (12 in all)"``."""
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:n])
    if len(values) > n:
        shown += f", ... ({len(values)} in all)"
    return shown


def check_anndata(adata: object, where: str) -> AnnData:
    """Raise ``TypeError`` unless ``adata`` is an :class:`~anndata.AnnData`."""
    if not isinstance(adata, AnnData):
        raise TypeError(
            f"{where}: expected an AnnData (cells x features), found {type(adata).__name__}. "
            "Build one with anndata.AnnData(X=counts, obs=..., var=...) or read it with "
            "anndata.read_h5ad()."
        )
    return adata


def check_not_empty(adata: AnnData, where: str) -> None:
    """Raise ``ValueError`` when ``adata`` has no cells or no features."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise ValueError(
            f"{where} is empty: found {adata.n_obs} cells x {adata.n_vars} features, expected at "
            "least one of each. Drop the modality (or block) from the input instead of passing an "
            "empty AnnData."
        )


def check_unique(index: pd.Index, what: str, where: str) -> None:
    """Raise ``ValueError`` when ``index`` holds duplicated names."""
    if index.is_unique:
        return
    dup = index[index.duplicated()].unique()
    fix = "adata.obs_names_make_unique()" if what == "cell" else "adata.var_names_make_unique()"
    raise ValueError(
        f"{where}: {what} names must be unique, found {len(dup)} duplicated: {examples(dup)}. "
        f"Remove the duplicates or run {fix}."
    )


#: dense input is converted to sparse in row chunks of about this many entries, so that a large
#: dense (or backed) matrix never needs a second dense copy
_CHUNK_ENTRIES = 1 << 21


def to_csr_float32(x: object, where: str) -> sp.csr_matrix:
    """Return ``x`` as a new float32 CSR matrix; ``x`` itself is never modified.

    Accepts any scipy sparse format, a dense array (numeric or bool; int64 / float64 / float16 /
    bool are converted) and the matrices of a backed AnnData (``anndata.read_h5ad(...,
    backed="r")``: an h5py dataset or a backed sparse dataset). Dense and backed inputs are read
    and converted in row chunks of about 2 million entries, so a large dense matrix costs one
    sparse copy, not a second dense one.
    """
    if sp.issparse(x):
        _check_dtype(x.dtype, where)
        out = sp.csr_matrix(x, dtype=np.float32, copy=True)
    else:
        if not isinstance(x, np.ndarray) and not _is_backed_matrix(x):
            x = np.asarray(x)
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 2:
            raise ValueError(
                f"{where}: expected a 2-D count matrix (cells x features), found an array with "
                f"{len(shape)} dimension(s)."
            )
        _check_dtype(np.dtype(x.dtype), where)
        step = max(1, _CHUNK_ENTRIES // max(shape[1], 1))
        chunks = [_chunk_to_csr(x[i : i + step]) for i in range(0, shape[0], step)]
        if not chunks:
            out = sp.csr_matrix(shape, dtype=np.float32)
        elif len(chunks) == 1:
            out = chunks[0]
        else:
            out = sp.vstack(chunks, format="csr", dtype=np.float32)
    out.sum_duplicates()
    out.sort_indices()
    return out


def _is_backed_matrix(x: object) -> bool:
    """An on-disk matrix of a backed AnnData (h5py / zarr dataset, backed sparse dataset)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and hasattr(x, "__getitem__")


def _check_dtype(dtype: np.dtype, where: str) -> None:
    if np.issubdtype(dtype, np.bool_) or (
        np.issubdtype(dtype, np.number) and not np.issubdtype(dtype, np.complexfloating)
    ):
        return
    raise TypeError(
        f"{where}: expected numeric counts (integer, float or bool), found dtype {dtype}. Pass "
        "a real-valued matrix, e.g. adata.X = adata.X.astype('float32') after checking the values."
    )


def _chunk_to_csr(chunk: object) -> sp.csr_matrix:
    """One row chunk (dense array or sparse matrix) as float32 CSR."""
    if sp.issparse(chunk):
        return sp.csr_matrix(chunk, dtype=np.float32)
    chunk = np.asarray(chunk)
    rows, cols = np.nonzero(chunk)
    values = chunk[rows, cols].astype(np.float32)
    return sp.csr_matrix((values, (rows, cols)), shape=chunk.shape, dtype=np.float32)


def check_values(x: sp.csr_matrix, likelihood: str, modality: str) -> None:
    """Check the stored values of a count matrix against its likelihood.

    NaN / Inf are always rejected; count likelihoods (``"nb"``, ``"zinb"``, ``"bernoulli"``) also
    reject negative and non-integer values.
    """
    data = x.data
    bad = ~np.isfinite(data)
    if bad.any():
        raise ValueError(
            f"Modality {modality!r}: {int(bad.sum())} entries are NaN/Inf (e.g. {data[bad][0]!r}); "
            "expected finite values. Remove or impute them before setup."
        )
    if likelihood not in COUNT_LIKELIHOODS:
        return
    fix = "pass raw counts, not normalised data, or use likelihood='normal'"
    neg = data < 0
    if neg.any():
        raise ValueError(
            f"Modality {modality!r} has likelihood {likelihood!r}, which needs non-negative integer "
            f"counts, but {int(neg.sum())} entries are negative (e.g. {float(data[neg][0])!r}); "
            f"{fix}."
        )
    frac = data != np.round(data)
    if frac.any():
        raise ValueError(
            f"Modality {modality!r} has likelihood {likelihood!r}, which needs integer counts, but "
            f"{int(frac.sum())} entries are not integers (e.g. {float(data[frac][0])!r}); {fix}."
        )


def check_no_missing(values: pd.Series, column: str, where: str) -> None:
    """Raise ``ValueError`` when the column ``values`` (indexed by cell) holds NaN."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise ValueError(
            f"{where}: column {column!r} has {int(missing.sum())} missing (NaN) values, e.g. for "
            f"cells {examples(values.index[missing])}. Every cell needs a {column!r} value: fill "
            "them in or drop those cells."
        )


def missing_column_error(column: str, columns: pd.Index, where: str, hint: str = "") -> KeyError:
    """Build the ``KeyError`` for a column absent from an ``obs`` table."""
    msg = (
        f"{where}: column {column!r} not found in obs; available columns: "
        f"{examples(columns, n=20) or '(none)'}."
    )
    return KeyError(msg + (f" {hint}" if hint else ""))


def warn_empty_cells(x: sp.csr_matrix, obs_names: pd.Index, modality: str) -> int:
    """Warn about cells whose counts in ``modality`` are all zero; return their number.

    ``x`` holds only the cells that claim to have measured ``modality`` (rows aligned with
    ``obs_names``). Such cells are kept: the observation mask, not the counts, says what was
    measured, and their likelihood term is that of an empty library.
    """
    return _warn_empty_cells(_empty_rows(x), obs_names, modality)


def _empty_rows(x: sp.csr_matrix) -> np.ndarray:
    empty = np.diff(x.indptr) == 0
    if x.nnz:
        empty |= np.asarray(np.abs(x).sum(axis=1)).ravel() == 0
    return empty


def _warn_empty_cells(empty: np.ndarray, obs_names: pd.Index, modality: str) -> int:
    n = int(empty.sum())
    if n:
        warnings.warn(
            f"Modality {modality!r}: {n} of {empty.size} cells that measured it have zero total "
            f"counts, e.g. {examples(obs_names[empty])}. They are kept and encoded from an empty "
            f"profile. If they did not really measure {modality!r}, remove them from "
            f"mdata.mod[{modality!r}] (they keep their other modalities); if they are empty "
            "droplets, filter them out before setup.",
            UserWarning,
            stacklevel=4,
        )
    return n


def log_empty_features(x: sp.csr_matrix, var_names: pd.Index, modality: str) -> int:
    """Log (INFO) the features of ``modality`` with zero counts in every cell; return their number.

    They are kept, so that the features, the guidance graph and a saved model keep their order;
    the decoders learn a near-zero mean for them.
    """
    seen = np.zeros(x.shape[1], dtype=bool)
    seen[x.indices[x.data != 0]] = True
    return _log_empty_features(seen, var_names, modality)


def _log_empty_features(seen: np.ndarray, var_names: pd.Index, modality: str) -> int:
    n = int((~seen).sum())
    if n:
        logger.info(
            "Modality %r: %d of %d features have zero counts in every cell (kept), e.g. %s",
            modality,
            n,
            seen.size,
            examples(var_names[~seen]),
        )
    return n


def scan_counts(
    counts, positions: np.ndarray, adata: AnnData, likelihood: str, modality: str
) -> None:
    """The checks of :func:`check_values`, :func:`warn_empty_cells` and
    :func:`log_empty_features` in one streaming pass over counts kept on disk.

    ``positions`` are the global positions of the cells of ``adata`` (in its order); the pass
    reads them in chunks, so a value error names the values of the first chunk holding one.
    """
    from mmaavi.data._counts import row_chunks

    order = np.argsort(positions, kind="stable")
    rows = positions[order]
    empty = np.zeros(rows.size, dtype=bool)
    seen = np.zeros(counts.shape[1], dtype=bool)
    offset = 0
    for part, x in row_chunks(counts, rows):
        check_values(x, likelihood, modality)
        empty[offset : offset + part.size] = _empty_rows(x)
        seen[x.indices[x.data != 0]] = True
        offset += part.size
    _warn_empty_cells(empty, pd.Index(adata.obs_names)[order], modality)
    _log_empty_features(seen, pd.Index(adata.var_names), modality)


def check_layout(
    obs_mask: np.ndarray,
    batch: np.ndarray,
    batch_categories: pd.Index,
    modalities: Sequence[str],
) -> None:
    """Refuse a mosaic with fewer than 2 cells; warn about 1-cell batches and 1-cell modalities.

    A single cell cannot train batch normalisation; a batch or a modality seen in one cell trains
    (its BatchNorm layers then use running statistics) but what is learned of it rests on that
    one cell.
    """
    n_cells = obs_mask.shape[0]
    if n_cells < 2:
        raise ValueError(
            f"The mosaic holds {n_cells} cell(s); expected at least 2 (batch normalisation "
            "cannot train on a single cell). Add cells or combine this sample with others."
        )
    sizes = np.bincount(batch, minlength=len(batch_categories))
    single = batch_categories[sizes == 1]
    if len(single):
        warnings.warn(
            f"{len(single)} batch(es) hold a single cell: {examples(single)}. Their decoder "
            "parameters and discriminator class are learned from that one cell, and it is never "
            "held out for validation. Merge such a batch with a similar one, or drop the cell.",
            UserWarning,
            stacklevel=3,
        )
    per_modality = obs_mask.sum(axis=0)
    lonely = [m for m, n in zip(modalities, per_modality) if n == 1]
    if lonely:
        warnings.warn(
            f"Modalities measured in one cell only: {examples(lonely)}. Their encoder and "
            "decoder are trained on that single cell; consider dropping the modality.",
            UserWarning,
            stacklevel=3,
        )
