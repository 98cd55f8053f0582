"""Input checks shared by :func:`~mmaavi.data.mosaic` and :func:`~mmaavi.data.setup_mosaic`.

Every function here either returns a cleaned copy of its input or raises a ``ValueError`` /
``TypeError`` / ``KeyError`` whose message says what was expected, what was found and how to fix it.
Nothing here modifies its arguments.
"""

from __future__ import annotations

import logging
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


def to_csr_float32(x: object, where: str) -> sp.csr_matrix:
    """Return ``x`` (dense array, any sparse format, any numeric/bool dtype) as float32 CSR.

    The input is never modified: a new matrix is returned whenever a conversion is needed, and a
    copy otherwise.
    """
    if sp.issparse(x):
        out = sp.csr_matrix(x, dtype=np.float32, copy=True)
    else:
        arr = np.asarray(x)
        if arr.ndim != 2:
            raise ValueError(
                f"{where}: expected a 2-D count matrix (cells x features), found an array with "
                f"{arr.ndim} dimension(s)."
            )
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(
                f"{where}: expected numeric counts, found dtype {arr.dtype}. Pass a numeric "
                "(integer or float) matrix."
            )
        out = sp.csr_matrix(arr.astype(np.float32, copy=False))
    out.sum_duplicates()
    out.sort_indices()
    return out


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
