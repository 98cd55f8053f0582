"""Encoder inputs: per-batch transforms of the raw counts (MODEL.md section 1).

Two kinds, both fitted once in :func:`~mmaavi.data.setup_mosaic`, per batch, over the cells that
observed the modality:

- ``log1p_norm`` (:class:`Log1pNorm`, default): ``(log1p(x) - mean[b, f]) / std[b, f]`` with the mean
  and standard deviation of ``log1p`` counts of feature ``f`` over the cells of batch ``b`` that
  measured it. Only the ``(n_batches, F)`` statistics are stored; the input is computed on the fly
  from each minibatch's dense counts. Unmeasured features and unobserved cells give 0. For a
  modality with the ``"normal"`` likelihood (values that need not be counts, possibly negative)
  ``log1p`` is skipped and the values themselves are z-scored.
- ``lsi`` / ``pca`` (:class:`Embedding`): a low-dimensional embedding fitted on all cells having the
  modality and stored as a dense ``(n_cells, k)`` array, then standardised per batch. ``lsi`` (peak
  data): TF-IDF -> ``log1p(1e4 * x)`` -> truncated SVD -> per-cell standardisation. ``pca`` (RNA/ADT):
  normalise each cell to the median library size -> ``log1p`` -> per-feature z-score -> PCA.
  Features that some block did not measure are left out of the fit. For the ``"normal"``
  likelihood ``pca`` skips the normalisation and ``log1p`` (values used as given) and ``lsi`` is
  refused.

``transform="lsi_pca"`` picks ``lsi`` or ``pca`` per modality with :func:`resolve_transform`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, svds

logger = logging.getLogger(__name__)

TRANSFORMS: tuple[str, ...] = ("log1p_norm", "lsi_pca", "lsi", "pca")
#: a standard deviation below this is treated as 0 (constant feature) and replaced by 1
_STD_FLOOR = 1e-6
#: matrices with at most this many entries are decomposed densely (exact, deterministic)
DENSE_SVD_MAX_ENTRIES = 20_000_000
_PEAK = re.compile(r"^[0-9A-Za-z_.]+[:\-_]\d+[\-_]\d+$")


def resolve_transform(
    transform: str | Mapping[str, str], modality: str, likelihood: str, var_names: pd.Index
) -> str:
    """Return the concrete transform (``"log1p_norm"``, ``"lsi"`` or ``"pca"``) of a modality.

    Parameters
    ----------
    transform
        One name for every modality, or a mapping modality -> name (modalities it omits get
        ``"log1p_norm"``). Names: ``"log1p_norm"``, ``"lsi"``, ``"pca"`` or ``"lsi_pca"``.
    modality, likelihood, var_names
        The modality's name, decoder likelihood and feature names.

    Notes
    -----
    ``"lsi_pca"`` means LSI for peak data and PCA otherwise. A modality counts as peak data when its
    name starts with ``"atac"`` (case-insensitive), its likelihood is ``"bernoulli"``, or at least
    half of its feature names look like genomic intervals (``chr1-100-200``, ``chr1:100-200``,
    ``1_100_200``).
    """
    name = transform.get(modality, "log1p_norm") if isinstance(transform, Mapping) else transform
    if name not in TRANSFORMS:
        raise ValueError(
            f"transform for modality {modality!r}: expected one of {', '.join(TRANSFORMS)}, found "
            f"{name!r}."
        )
    if name != "lsi_pca":
        return name
    peaks = np.mean([bool(_PEAK.match(str(v))) for v in var_names[:1000]]) >= 0.5
    is_peak = modality.lower().startswith("atac") or likelihood == "bernoulli" or peaks
    return "lsi" if is_peak else "pca"


class Log1pNorm:
    """Per-batch z-score of ``log1p`` counts, computed on the fly from dense minibatch counts.

    Parameters
    ----------
    mean, std
        Float32 arrays (n_batches, n_features): per batch and feature statistics of ``log1p``
        counts; ``std`` is 1 where the feature is constant or unmeasured in the batch.
    log1p
        Whether to take ``log1p`` of the values first (``False`` for the ``"normal"`` likelihood).
    """

    name = "log1p_norm"

    def __init__(self, mean: np.ndarray, std: np.ndarray, log1p: bool = True) -> None:
        self.log1p = bool(log1p)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.std = np.ascontiguousarray(std, dtype=np.float32)
        self._mean_t = torch.from_numpy(self.mean)
        self._std_t = torch.from_numpy(self.std)

    @property
    def n_input(self) -> int:
        """Encoder input width (= number of features)."""
        return self.mean.shape[1]

    @classmethod
    def fit(
        cls,
        counts: sp.csr_matrix,
        observed: np.ndarray,
        batch: np.ndarray,
        n_batches: int,
        block: np.ndarray,
        measured: np.ndarray | None,
        log1p: bool = True,
    ) -> Log1pNorm:
        """Fit the statistics of one modality.

        Parameters
        ----------
        counts
            CSR (n_cells, n_features) raw counts.
        observed
            Bool (n_cells,): cells that have the modality.
        batch
            Int (n_cells,) batch codes in ``[0, n_batches)``.
        n_batches
            Number of batches.
        block
            Int (n_cells,) block of each cell (-1 where not observed).
        measured
            Bool (n_blocks, n_features) or ``None`` when every block measured every feature.
        log1p
            Whether to take ``log1p`` of the values first.
        """
        n_features = counts.shape[1]
        mean = np.zeros((n_batches, n_features))
        std = np.ones((n_batches, n_features))
        for b in range(n_batches):
            rows = np.flatnonzero(observed & (batch == b))
            if rows.size == 0:
                continue
            logged = counts[rows].astype(np.float64)
            if log1p:
                logged.data = np.log1p(logged.data)
            s1 = np.asarray(logged.sum(axis=0)).ravel()
            s2 = np.asarray(logged.multiply(logged).sum(axis=0)).ravel()
            if measured is None:
                n = np.full(n_features, float(rows.size))
            else:
                per_block = np.bincount(block[rows], minlength=measured.shape[0])
                n = per_block @ measured.astype(np.float64)
            has = n > 0
            mean[b, has] = s1[has] / n[has]
            sd = np.sqrt(np.clip(s2[has] / n[has] - mean[b, has] ** 2, 0.0, None))
            std[b, has] = np.where(sd < _STD_FLOOR, 1.0, sd)
        return cls(mean, std, log1p)

    def encode(
        self,
        x: torch.Tensor,
        idx: np.ndarray,
        batch: np.ndarray,
        observed: np.ndarray,
        fmask: np.ndarray | None,
    ) -> torch.Tensor:
        """Encoder input (len(idx), n_features) float32 from dense raw counts ``x``."""
        b = torch.from_numpy(batch)
        values = torch.log1p(x) if self.log1p else x
        enc = (values - self._mean_t[b]) / self._std_t[b]
        keep = torch.from_numpy(fmask if fmask is not None else observed[:, None])
        return torch.where(keep, enc, torch.zeros((), dtype=enc.dtype))


class Embedding:
    """Precomputed low-dimensional encoder input (``lsi`` or ``pca``).

    Parameters
    ----------
    name
        ``"lsi"`` or ``"pca"``.
    values
        Float32 (n_cells, k); zero rows for cells without the modality.
    """

    def __init__(self, name: str, values: np.ndarray) -> None:
        self.name = name
        self.values = np.ascontiguousarray(values, dtype=np.float32)

    @property
    def n_input(self) -> int:
        """Encoder input width (= number of components)."""
        return self.values.shape[1]

    @classmethod
    def fit(
        cls,
        name: str,
        counts: sp.csr_matrix,
        observed: np.ndarray,
        batch: np.ndarray,
        n_batches: int,
        measured: np.ndarray | None,
        n_components: int,
        modality: str,
        counts_like: bool = True,
    ) -> Embedding:
        """Fit LSI or PCA on the cells having the modality, then standardise per batch.

        ``n_components`` is clipped to ``min(n_cells_m - 1, n_features_used - 1)``.
        ``counts_like=False`` (the ``"normal"`` likelihood) skips the count normalisation of PCA.
        """
        if name == "lsi" and not counts_like:
            raise ValueError(
                f"transform 'lsi' for modality {modality!r} needs counts, but its likelihood is "
                "'normal'. Use transform 'pca' or 'log1p_norm' for this modality."
            )
        rows = np.flatnonzero(observed)
        x = counts[rows]
        if measured is not None:
            x = x[:, np.flatnonzero(measured.all(axis=0))]
        k = min(n_components, x.shape[0] - 1, x.shape[1] - 1)
        if k < 1:
            raise ValueError(
                f"transform {name!r} for modality {modality!r} needs at least 2 cells and 2 "
                f"features measured by every block, found {x.shape[0]} cells x {x.shape[1]} "
                "features. Use transform='log1p_norm' for this modality."
            )
        if k < n_components:
            logger.info("modality %r: %s with %d components (clipped)", modality, name, k)
        if name == "lsi":
            emb = _lsi(x, k)
        else:
            emb = _pca(x, k, normalise=counts_like)
        emb = _standardise_per_batch(emb, batch[rows], n_batches)
        values = np.zeros((counts.shape[0], k), dtype=np.float32)
        values[rows] = emb
        return cls(name, values)

    def encode(
        self,
        x: torch.Tensor,
        idx: np.ndarray,
        batch: np.ndarray,
        observed: np.ndarray,
        fmask: np.ndarray | None,
    ) -> torch.Tensor:
        """Encoder input (len(idx), k) float32: rows of the stored embedding."""
        return torch.from_numpy(self.values[idx])


def _lsi(x: sp.csr_matrix, k: int) -> np.ndarray:
    """TF-IDF -> log1p(1e4 * tf-idf) -> truncated SVD -> per-cell standardisation."""
    x = x.astype(np.float64)
    depth = np.asarray(x.sum(axis=1)).ravel()
    idf = x.shape[0] / (1.0 + np.asarray(x.sum(axis=0)).ravel())
    inv_depth = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0)
    tfidf = sp.csr_matrix(sp.diags(inv_depth) @ x @ sp.diags(idf))
    tfidf.data = np.log1p(1e4 * tfidf.data)
    emb = _svd(tfidf, np.zeros(x.shape[1]), np.ones(x.shape[1]), k)
    return _zscore(emb, axis=1)


def _pca(x: sp.csr_matrix, k: int, normalise: bool = True) -> np.ndarray:
    """Normalise to the median library size -> log1p -> per-feature z-score -> PCA.

    ``normalise=False`` skips the first two steps.
    """
    logged = x.astype(np.float64)
    if normalise:
        depth = np.asarray(logged.sum(axis=1)).ravel()
        target = np.median(depth[depth > 0]) if (depth > 0).any() else 1.0
        scale = np.divide(target, depth, out=np.zeros_like(depth), where=depth > 0)
        logged = sp.csr_matrix(sp.diags(scale) @ logged)
        logged.data = np.log1p(logged.data)
    mean = np.asarray(logged.mean(axis=0)).ravel()
    sq = np.asarray(logged.multiply(logged).mean(axis=0)).ravel()
    sd = np.sqrt(np.clip(sq - mean**2, 0.0, None))
    sd = np.where(sd < _STD_FLOOR, 1.0, sd)
    return _svd(logged, mean, sd, k)


def _svd(x: sp.csr_matrix, center: np.ndarray, scale: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` left singular vectors times singular values of ``(x - center) / scale``.

    Exact dense SVD for small matrices; otherwise ARPACK on an implicit (never densified) operator
    with a fixed start vector. Signs are fixed so that each component's largest-magnitude entry is
    positive, which makes the result deterministic.
    """
    n, f = x.shape
    if n * f <= DENSE_SVD_MAX_ENTRIES:
        dense = (x.toarray() - center) / scale
        u, s, _ = np.linalg.svd(dense, full_matrices=False)
        u, s = u[:, :k], s[:k]
    else:
        shift = center / scale

        def matvec(v: np.ndarray) -> np.ndarray:
            v = np.asarray(v).reshape(f, -1) / scale[:, None]
            return x @ v - shift @ (v * scale[:, None])

        def rmatvec(u_: np.ndarray) -> np.ndarray:
            u_ = np.asarray(u_).reshape(n, -1)
            return (x.T @ u_) / scale[:, None] - np.outer(shift, u_.sum(axis=0))

        op = LinearOperator(
            (n, f),
            matvec=matvec,
            rmatvec=rmatvec,
            matmat=matvec,
            rmatmat=rmatvec,
            dtype=np.float64,
        )
        v0 = np.random.default_rng(0).standard_normal(min(n, f))
        u, s, _ = svds(op, k=k, v0=v0, solver="arpack")
        order = np.argsort(s)[::-1]
        u, s = u[:, order], s[order]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    return u * (s * signs)


def _zscore(values: np.ndarray, axis: int) -> np.ndarray:
    """Centre and scale along ``axis`` (standard deviation below the floor -> 1)."""
    mean = values.mean(axis=axis, keepdims=True)
    sd = values.std(axis=axis, keepdims=True)
    return (values - mean) / np.where(sd < _STD_FLOOR, 1.0, sd)


def _standardise_per_batch(values: np.ndarray, batch: np.ndarray, n_batches: int) -> np.ndarray:
    """Z-score every column within each batch."""
    out = np.empty_like(values)
    for b in range(n_batches):
        rows = batch == b
        if rows.any():
            out[rows] = _zscore(values[rows], axis=0)
    return out
