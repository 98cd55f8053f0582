"""Encoder inputs: per-batch transforms of the raw counts (MODEL.md section 1).

Two kinds, both fitted once in :func:`~mmaavi.data.setup_mosaic`, per batch, over the cells that
observed the modality:

- ``log1p_norm`` (:class:`Log1pNorm`, default): ``(log1p(x) - mean[b, f]) / std[b, f]`` with the mean
  and standard deviation of ``log1p`` counts of feature ``f`` over the cells of batch ``b`` that
  measured it. Only the ``(n_batches, F)`` statistics are stored; the input is computed on the fly
  from each minibatch's sparse counts. Unmeasured features and unobserved cells give 0. For a
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

Every fit is a few streaming passes over row chunks of the counts (:func:`~mmaavi.data._counts.
row_chunks`), so it needs no more than a chunk of counts in memory and gives the same statistics,
to the bit, for counts in memory and counts read from disk. The decomposition of ``lsi`` / ``pca``
is exact (eigendecomposition of the ``F x F`` Gram matrix, accumulated chunk by chunk) up to
:data:`GRAM_MAX_FEATURES` features, and above it a seeded randomized block Krylov iteration
(Musco & Musco 2015, arXiv 1504.05477) on the smaller of the cell and feature Gram operators.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from mmaavi.data._counts import CountMatrix, row_chunks
from mmaavi.nn.wide import SparseRows, is_wide

logger = logging.getLogger(__name__)

TRANSFORMS: tuple[str, ...] = ("log1p_norm", "lsi_pca", "lsi", "pca")
#: a standard deviation below this is treated as 0 (constant feature) and replaced by 1
_STD_FLOOR = 1e-6
#: up to this many features the decomposition is exact (the Gram matrix is held: 8 F^2 bytes)
GRAM_MAX_FEATURES = 4096
#: the block Krylov decomposition iterates (one or two passes over the counts each) until its
#: top Ritz values change by less than this (relative to the largest), or this many steps
RITZ_TOLERANCE = 1e-10
MAX_POWER_ITERATIONS = 100
#: block width of the Krylov decomposition: k + this
KRYLOV_OVERSAMPLING = 20
#: the Krylov basis (d x columns float64) is kept under this; a run reaching it restarts
KRYLOV_BASIS_BYTES = 512 * 2**20
#: a new Krylov block is re-orthogonalised until its overlap with the basis is below this
_ORTHOGONALITY_TOLERANCE = 1e-12
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
    """Per-batch z-score of ``log1p`` counts, computed on the fly from sparse minibatch counts.

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
        # the input of a zero count, (0 - mean) / std: most entries of a minibatch
        self._zero_t = torch.from_numpy(np.negative(self.mean) / self.std)

    @property
    def n_input(self) -> int:
        """Encoder input width (= number of features)."""
        return self.mean.shape[1]

    @classmethod
    def fit(
        cls,
        counts: CountMatrix,
        observed: np.ndarray,
        batch: np.ndarray,
        n_batches: int,
        block: np.ndarray,
        measured: np.ndarray | None,
        log1p: bool = True,
    ) -> Log1pNorm:
        """Fit the statistics of one modality in one streaming pass.

        Parameters
        ----------
        counts
            (n_cells, n_features) raw counts (CSR, or counts on disk).
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
        s1 = np.zeros((n_batches, n_features))
        s2 = np.zeros((n_batches, n_features))
        rows = np.flatnonzero(observed)
        for part, x in row_chunks(counts, rows):
            x = x.astype(np.float64)
            if log1p:
                x.data = np.log1p(x.data)
            one_hot = sp.csr_matrix(
                (np.ones(part.size), (batch[part], np.arange(part.size))),
                shape=(n_batches, part.size),
            )
            s1 += (one_hot @ x).toarray()
            x.data = x.data * x.data
            s2 += (one_hot @ x).toarray()
        if measured is None:
            n = np.bincount(batch[rows], minlength=n_batches).astype(np.float64)[:, None]
            n = np.broadcast_to(n, (n_batches, n_features))
        else:
            per_block = np.zeros((n_batches, measured.shape[0]))
            np.add.at(per_block, (batch[rows], block[rows]), 1.0)
            n = per_block @ measured.astype(np.float64)
        mean = np.zeros((n_batches, n_features))
        std = np.ones((n_batches, n_features))
        has = n > 0
        mean[has] = s1[has] / n[has]
        sd = np.sqrt(np.clip(s2[has] / n[has] - mean[has] ** 2, 0.0, None))
        std[has] = np.where(sd < _STD_FLOOR, 1.0, sd)
        return cls(mean, std, log1p)

    def encode(
        self,
        counts: sp.csr_matrix,
        idx: np.ndarray,
        batch: np.ndarray,
        observed: np.ndarray,
        fmask: np.ndarray | None,
    ) -> torch.Tensor:
        """Encoder input (len(idx), n_features) float32 from the cells' sparse raw counts.

        One dense array is built (the zero-count input of each cell's batch); only the stored
        entries are then computed, so no dense copy of the counts is needed.
        """
        b = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.int64))
        enc = self._zero_t.index_select(0, b)
        if counts.nnz:
            r = torch.from_numpy(np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr)))
            c = torch.from_numpy(counts.indices.astype(np.int64))
            values = torch.from_numpy(counts.data)
            values = torch.log1p(values) if self.log1p else values
            br = b[r]
            enc[r, c] = (values - self._mean_t[br, c]) / self._std_t[br, c]
        keep = fmask if fmask is not None else np.asarray(observed)[:, None]
        return enc.masked_fill_(torch.from_numpy(~keep), 0.0)

    @property
    def wide(self) -> bool:
        """Whether minibatches carry this input as :meth:`encode_sparse`'s pieces."""
        return is_wide(self.n_input)

    def encode_sparse(
        self,
        counts: sp.csr_matrix,
        batch: np.ndarray,
        observed: np.ndarray,
        fmask: np.ndarray | None,
        block: np.ndarray,
    ) -> SparseRows:
        """The matrix :meth:`encode` gives, as :class:`~mmaavi.nn.wide.SparseRows`.

        A zero count's input depends only on the cell's batch and measured features, so that row
        is stored once per (batch, block) of the minibatch (``base``, ``group``); a stored count
        adds ``log1p(x) / std`` to it.
        """
        observed = np.asarray(observed, dtype=bool)
        key = np.stack([np.asarray(batch, dtype=np.int64), np.where(observed, block, -1)], axis=1)
        groups, first, group = np.unique(key, axis=0, return_index=True, return_inverse=True)
        base = self._zero_t.index_select(0, torch.from_numpy(groups[:, 0].copy()))
        keep = fmask[first] if fmask is not None else observed[first][:, None]
        base.masked_fill_(torch.from_numpy(~keep), 0.0)
        r = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        c = counts.indices.astype(np.int64)
        stored = observed[r] if fmask is None else fmask[r, c]
        r, c, values = r[stored], c[stored], counts.data[stored].astype(np.float32)
        if self.log1p:
            values = np.log1p(values)
        values /= self.std[batch[r], c]
        return SparseRows(
            base=base,
            group=torch.from_numpy(group.reshape(-1).astype(np.int64)),
            rows=torch.from_numpy(r.astype(np.int64)),
            cols=torch.from_numpy(c),
            values=torch.from_numpy(values),
        )


class Embedding:
    """Precomputed low-dimensional encoder input (``lsi`` or ``pca``).

    Parameters
    ----------
    name
        ``"lsi"`` or ``"pca"``.
    values
        Float32 (n_cells, k); zero rows for cells without the modality.
    """

    #: never passed as sparse pieces (a few dense columns)
    wide = False

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
        counts: CountMatrix,
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
        cols = None if measured is None else np.flatnonzero(measured.all(axis=0))
        n_used = counts.shape[1] if cols is None else cols.size
        k = min(n_components, rows.size - 1, n_used - 1)
        if k < 1:
            raise ValueError(
                f"transform {name!r} for modality {modality!r} needs at least 2 cells and 2 "
                f"features measured by every block, found {rows.size} cells x {n_used} "
                "features. Use transform='log1p_norm' for this modality."
            )
        if k < n_components:
            logger.info("modality %r: %s with %d components (clipped)", modality, name, k)
        operator = _Normalised(counts, rows, cols, name, counts_like)
        emb = _top_components(operator, k)
        if name == "lsi":
            emb = _zscore(emb, axis=1)
        emb = _standardise_per_batch(emb, batch[rows], n_batches)
        values = np.zeros((counts.shape[0], k), dtype=np.float32)
        values[rows] = emb
        return cls(name, values)

    def encode(
        self,
        counts: sp.csr_matrix,
        idx: np.ndarray,
        batch: np.ndarray,
        observed: np.ndarray,
        fmask: np.ndarray | None,
    ) -> torch.Tensor:
        """Encoder input (len(idx), k) float32: rows of the stored embedding."""
        return torch.from_numpy(self.values[idx])


class _Normalised:
    """The normalised matrix ``T = (g(X) - center) / scale`` of LSI or PCA, streamed by chunks.

    ``g`` is row-local (TF-IDF then ``log1p(1e4 x)`` for LSI; median-library normalisation then
    ``log1p`` for PCA), so ``T`` is never formed: :meth:`chunks` yields ``g`` of each row chunk
    as a sparse float64 matrix, and ``center`` / ``scale`` are applied in the products.
    """

    def __init__(
        self,
        counts: CountMatrix,
        rows: np.ndarray,
        cols: np.ndarray | None,
        name: str,
        counts_like: bool,
    ) -> None:
        self.counts, self.rows, self.cols = counts, rows, cols
        self.n_features = counts.shape[1] if cols is None else cols.size
        depth = np.empty(rows.size)
        col_sums = np.zeros(self.n_features)
        offset = 0
        for x in self._raw():
            depth[offset : offset + x.shape[0]] = np.asarray(x.sum(axis=1)).ravel()
            col_sums += np.asarray(x.sum(axis=0)).ravel()
            offset += x.shape[0]
        self._col_factor: np.ndarray | None = None
        self._log_factor = 1.0
        self._log = counts_like
        if name == "lsi":
            self._row_factor = np.divide(1.0, depth, out=np.zeros_like(depth), where=depth > 0)
            self._col_factor = rows.size / (1.0 + col_sums)  # idf
            self._log_factor = 1e4
            self.center = np.zeros(self.n_features)
            self.scale = np.ones(self.n_features)
            self._affine = False
            return
        if counts_like:
            target = np.median(depth[depth > 0]) if (depth > 0).any() else 1.0
            self._row_factor = np.divide(target, depth, out=np.zeros_like(depth), where=depth > 0)
        else:
            self._row_factor = None
        s1 = np.zeros(self.n_features)
        s2 = np.zeros(self.n_features)
        for x in self.chunks():
            s1 += np.asarray(x.sum(axis=0)).ravel()
            s2 += np.asarray(x.multiply(x).sum(axis=0)).ravel()
        mean = s1 / rows.size
        sd = np.sqrt(np.clip(s2 / rows.size - mean**2, 0.0, None))
        self.center = mean
        self.scale = np.where(sd < _STD_FLOOR, 1.0, sd)
        self._affine = True

    @property
    def n_rows(self) -> int:
        return self.rows.size

    def _raw(self):
        for _, x in row_chunks(self.counts, self.rows):
            x = x.astype(np.float64)
            yield x if self.cols is None else x[:, self.cols]

    def chunks(self):
        """``g`` of each row chunk, sparse float64, in the order of ``rows``."""
        offset = 0
        for x in self._raw():
            n = x.shape[0]
            if self._row_factor is not None:
                x = sp.csr_matrix(sp.diags(self._row_factor[offset : offset + n]) @ x)
            if self._col_factor is not None:
                x = sp.csr_matrix(x @ sp.diags(self._col_factor))
            if self._log:
                x.data = np.log1p(self._log_factor * x.data)
            offset += n
            yield x

    def times(self, x: sp.csr_matrix, m: np.ndarray) -> np.ndarray:
        """``T_chunk @ m`` for the chunk ``g(X_chunk) = x`` and a dense (n_features, l) ``m``."""
        # LSI has center 0 and scale 1: skip the dense (F, l) passes, which cost as much as x @ m
        if not self._affine:
            return x @ m
        m_scaled = m / self.scale[:, None]
        return x @ m_scaled - (self.center @ m_scaled)[None, :]

    def transpose_times(self, m: np.ndarray) -> np.ndarray:
        """``T^T m`` for a dense (n_rows, l) ``m``, in one pass: (n_features, l)."""
        out = np.zeros((self.n_features, m.shape[1]))
        offset = 0
        for x in self.chunks():
            part = m[offset : offset + x.shape[0]]
            offset += x.shape[0]
            # x.T as CSR: scipy's CSR product is ~25 % faster than the CSC one x.T (a view) takes
            out += x.T.tocsr() @ part
            if self._affine:
                out -= np.outer(self.center, part.sum(axis=0))
        return out / self.scale[:, None] if self._affine else out

    def gram_times(self, m: np.ndarray) -> np.ndarray:
        """``T^T T m`` in one pass."""
        out = np.zeros_like(m)
        for x in self.chunks():
            y = self.times(x, m)
            # x.T as CSR: scipy's CSR product is ~25 % faster than the CSC one x.T (a view) takes
            xt_y = x.T.tocsr() @ y
            if self._affine:
                out += (xt_y - np.outer(self.center, y.sum(axis=0))) / self.scale[:, None]
            else:
                out += xt_y
        return out

    def gram(self) -> np.ndarray:
        """``T^T T`` (n_features, n_features), exact, in one pass."""
        xtx = np.zeros((self.n_features, self.n_features))
        sums = np.zeros(self.n_features)
        for x in self.chunks():
            xtx += (x.T @ x).toarray()
            sums += np.asarray(x.sum(axis=0)).ravel()
        c = self.center
        g = xtx - np.outer(c, sums) - np.outer(sums, c) + self.n_rows * np.outer(c, c)
        return g / np.outer(self.scale, self.scale)


def _top_components(op: _Normalised, k: int) -> np.ndarray:
    """The top-``k`` principal coordinates ``T V`` (left singular vectors times values) of ``T``.

    ``V`` (right singular vectors) comes from the exact Gram matrix up to
    :data:`GRAM_MAX_FEATURES` features, else from a seeded block Krylov iteration
    (:func:`_krylov_right_vectors`). Each column's sign is fixed so that its largest-magnitude
    loading is positive, which makes the result deterministic.
    """
    f = op.n_features
    if f <= GRAM_MAX_FEATURES:
        _, vectors = np.linalg.eigh(op.gram())
        v = vectors[:, ::-1][:, :k]
    else:
        v = _krylov_right_vectors(op, k)
    top = np.abs(v).argmax(axis=0)
    signs = np.sign(v[top, np.arange(k)])
    signs[signs == 0] = 1.0
    v = v * signs
    return np.vstack([op.times(x, v) for x in op.chunks()])


def _krylov_right_vectors(op: _Normalised, k: int) -> np.ndarray:
    """The top-``k`` right singular vectors of ``T`` (n_features, k) by block Krylov iteration.

    The symmetric operator iterated is the smaller of ``T T^T`` (cells, when there are fewer
    cells than features) and ``T^T T``: the dense work of each step scales with that dimension
    ``d``. From a seeded Gaussian block of ``k + KRYLOV_OVERSAMPLING`` columns, every step
    applies the operator to the newest block, orthogonalises the result against the whole basis
    (twice: full reorthogonalisation) and appends it, and a Rayleigh-Ritz step on the basis
    gives the Ritz values; it stops when the top ``k`` change by less than
    :data:`RITZ_TOLERANCE` (relative to the largest) between steps, or after
    :data:`MAX_POWER_ITERATIONS` steps. Keeping every block (rather than only the newest, as a
    subspace iteration does) reaches that tolerance in far fewer steps: 16 instead of 41 on
    SNARE-seq ATAC (6,878 cells x 25,734 peaks, k = 100). A step is one pass over the counts
    on the feature side, two on the cell side. The basis is capped
    at :data:`KRYLOV_BASIS_BYTES`; a run that reaches the cap restarts from its top Ritz vectors.
    """
    n, f = op.n_rows, op.n_features
    in_cells = n < f
    d = n if in_cells else f
    width = min(d, k + KRYLOV_OVERSAMPLING)
    max_columns = max(2 * width, min(d, KRYLOV_BASIS_BYTES // (8 * d)))

    def apply(m: np.ndarray) -> np.ndarray:
        if not in_cells:
            return op.gram_times(m)  # one pass over the counts
        y = op.transpose_times(m)  # two passes: T (T^T m) needs all of T^T m first
        return np.vstack([op.times(x, y) for x in op.chunks()])

    # the basis lives in one preallocated array: growing it by concatenation copies it each step
    basis = np.empty((d, max_columns))
    basis[:, :width] = np.linalg.qr(np.random.default_rng(0).standard_normal((d, width)))[0]
    used, first = width, 0  # basis[:, :used]; the newest block starts at column `first`
    h = np.zeros((0, 0))
    previous, steps, restarted = None, 0, False
    while True:
        image = apply(basis[:, first:used])
        steps += 1
        h = _extend_projection(h, basis[:, :used].T @ image)
        # values only while iterating: the vectors cost ~3 times as much and are needed once
        values = np.linalg.eigvalsh(h)[::-1]
        settled = (
            previous is not None
            # right after a restart the Ritz values are those of the previous basis: no news
            and not restarted
            and np.all(np.abs(values[:k] - previous) <= RITZ_TOLERANCE * np.abs(values[0]))
        )
        if settled or used == d or steps == MAX_POWER_ITERATIONS:
            break
        previous, restarted = values[:k], False
        if used + width > max_columns:
            w = np.linalg.eigh(h)[1][:, ::-1]
            basis[:, :width] = basis[:, :used] @ w[:, :width]
            used, first, h, restarted = width, 0, np.zeros((0, 0)), True
            continue
        block = image[:, : min(width, d - used)]
        first, used = used, used + block.shape[1]
        basis[:, first:used] = _orthonormal_complement(block, basis[:, :first])
    logger.info(
        "block Krylov decomposition (%s side): %d steps, %d vectors",
        "cell" if in_cells else "feature",
        steps,
        used,
    )
    values, w = np.linalg.eigh(h)
    values, w = values[::-1], w[:, ::-1]
    vectors = basis[:, :used] @ w[:, :k]
    if not in_cells:
        return vectors
    # v = T^T u / sigma; a direction T does not reach (sigma 0) gets a zero loading
    sigma = np.sqrt(np.clip(values[:k], 0.0, None))
    keep = sigma > _STD_FLOOR * sigma[0]
    scale = np.divide(1.0, sigma, out=np.zeros_like(sigma), where=keep)
    return op.transpose_times(vectors) * scale


def _extend_projection(h: np.ndarray, column: np.ndarray) -> np.ndarray:
    """``basis^T A basis`` after the newest block was applied: ``column = basis^T (A newest)``.

    The newest block is the last ``column.shape[1]`` columns of the basis; ``h`` is the
    projection on the basis before that block was added (empty at the start and after a
    restart, when the whole basis is the newest block).
    """
    m, width = column.shape
    old = m - width
    out = np.empty((m, m))
    out[:old, :old] = h
    out[:, old:] = column
    out[old:, :old] = column[:old].T
    out[old:, old:] = _symmetric(column[old:])
    return out


def _orthonormal_complement(z: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """An orthonormal block spanning the part of ``z`` outside ``span(basis)``.

    Two rounds of block Gram-Schmidt, then Householder QR. A direction of ``z`` that lay
    (nearly) inside the span leaves rounding noise, which QR scales up to a vector no longer
    orthogonal to the basis: then more rounds on the result until it is (the noise, unlike the
    original direction, is not inside the span, so one or two rounds do).
    """
    for _ in range(2):
        z = z - basis @ (basis.T @ z)
    q = np.linalg.qr(z)[0]
    for _ in range(3):
        overlap = basis.T @ q
        if np.abs(overlap).max() <= _ORTHOGONALITY_TOLERANCE:
            break
        q = np.linalg.qr(q - basis @ overlap)[0]
    return q


def _symmetric(m: np.ndarray) -> np.ndarray:
    return (m + m.T) / 2


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
