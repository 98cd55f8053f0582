"""Raw count matrices in the global cell order: in memory, or read from disk on demand.

The container and the transforms use a count matrix through three things only: ``shape``
(n_cells, n_features), ``nnz`` and ``counts[rows]`` with an int array of global cell positions,
which returns a float32 CSR with one row per position (empty rows for cells without the
modality), indices sorted and duplicates summed. A :class:`scipy.sparse.csr_matrix` is the
in-memory implementation; :class:`BackedCounts` is the on-disk one, reading the CSR group of a
``.h5ad`` / ``.h5mu`` file with h5py. Both return the same values for the same rows, so every
minibatch and every transform statistic is the same whichever holds the counts.

Disk reads are bulk slices: the rows asked for are grouped by storage chunk
(:data:`CHUNK_ROWS` consecutive rows of the file). A chunk is read whole, with one slice of
``data`` / ``indices``, and kept in a small LRU cache when many of its rows are wanted or when
it was asked for recently: the chunked epoch order (:mod:`mmaavi.data._sampling`) comes back to
the chunks of a window minibatch after minibatch, so from the second minibatch on each chunk
is read once for the whole window. A chunk touched once, for a few rows (a globally shuffled
order on large data), is read run by run instead: one slice per run of consecutive rows.
"""

from __future__ import annotations

import logging
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp

logger = logging.getLogger(__name__)

#: rows of a storage chunk, the unit of whole-chunk reads and of the cache
CHUNK_ROWS = 1024
#: a chunk is read whole when at least this share of its rows is wanted, else run by run
WHOLE_CHUNK_SHARE = 1 / 16
#: storage chunks the cache of one modality holds: a shuffle window of the chunked epoch order
#: (64 chunks, see :mod:`mmaavi.data._sampling`) and a margin, so a window is read once
CACHE_CHUNKS = 80
#: chunks remembered as recently touched (a second touch reads the chunk whole)
TOUCHED_CHUNKS = 4 * CACHE_CHUNKS
#: rows per chunk of a streaming pass (transform fits, scans)
SCAN_ROWS = 4096


class CountMatrix(Protocol):
    """What the data layer needs of a count matrix (scipy CSR or :class:`BackedCounts`)."""

    @property
    def shape(self) -> tuple[int, int]: ...

    @property
    def nnz(self) -> int: ...

    def __getitem__(self, rows: np.ndarray) -> sp.csr_matrix: ...


def is_backed_csr(x: object) -> bool:
    """Whether ``x`` is the on-disk CSR matrix of a backed AnnData (an HDF5 group)."""
    return getattr(x, "format", None) == "csr" and hasattr(x, "group") and hasattr(x, "shape")


def row_chunks(
    counts: CountMatrix, rows: np.ndarray, size: int = SCAN_ROWS
) -> Iterator[tuple[np.ndarray, sp.csr_matrix]]:
    """``(rows[i:i + size], counts[rows[i:i + size]])`` for consecutive slices of ``rows``.

    Streaming passes use this, so a statistic accumulated over the chunks is the same, to the
    bit, for an in-memory and an on-disk matrix.
    """
    rows = np.asarray(rows, dtype=np.int64)
    for start in range(0, rows.size, size):
        part = rows[start : start + size]
        yield part, counts[part]


def canonical_float32(x: sp.csr_matrix) -> sp.csr_matrix:
    """``x`` as float32 CSR with sorted indices and summed duplicates (a new matrix)."""
    out = sp.csr_matrix(x, dtype=np.float32, copy=True)
    out.sum_duplicates()
    out.sort_indices()
    return out


class BackedCounts:
    """One modality's raw counts in an HDF5 CSR group, in the global cell order.

    Parameters
    ----------
    filename
        The ``.h5ad`` / ``.h5mu`` file (opened read-only here; the file must not change while
        the model uses it).
    group
        Path of the CSR group in the file, e.g. ``"/X"`` or ``"/mod/rna/X"``.
    positions
        Int (n_local,) global position of each of the file's rows.
    n_cells
        Number of cells in the global order.
    cache_chunks
        Storage chunks the LRU cache holds.

    Notes
    -----
    Memory: the row pointers (8 bytes per stored row), the global -> file row map (8 bytes per
    cell) and the cache (``cache_chunks`` x ``CHUNK_ROWS`` rows of CSR); the counts themselves
    stay on disk.
    """

    def __init__(
        self,
        filename: str | Path,
        group: str,
        positions: np.ndarray,
        n_cells: int,
        cache_chunks: int = CACHE_CHUNKS,
    ) -> None:
        import h5py

        self.filename = str(filename)
        self.group = group
        self._file = h5py.File(self.filename, "r")
        weakref.finalize(self, self._file.close)
        node = self._file[group]
        self._data = node["data"]
        self._indices = node["indices"]
        self._indptr = np.asarray(node["indptr"][:], dtype=np.int64)
        n_local = self._indptr.size - 1
        positions = np.asarray(positions, dtype=np.int64)
        if positions.shape != (n_local,):
            raise ValueError(
                f"{self.filename}:{group} stores {n_local} rows but {positions.size} cell "
                "positions were given."
            )
        self._local = np.full(int(n_cells), -1, dtype=np.int64)
        self._local[positions] = np.arange(n_local, dtype=np.int64)
        self._shape = (int(n_cells), int(self._shape_of(node)[1]))
        self._cache: OrderedDict[int, sp.csr_matrix] = OrderedDict()
        self.cache_chunks = max(1, int(cache_chunks))
        self._touched: OrderedDict[int, None] = OrderedDict()
        #: slices read from the file so far (whole chunks and runs), for diagnostics
        self.reads = 0

    @staticmethod
    def _shape_of(node) -> tuple[int, int]:
        shape = node.attrs.get("shape", node.attrs.get("h5sparse_shape"))
        if shape is None:
            raise ValueError(f"{node.file.filename}:{node.name} has no 'shape' attribute.")
        return int(shape[0]), int(shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """(n_cells in the global order, n_features)."""
        return self._shape

    @property
    def nnz(self) -> int:
        """Number of stored entries in the file."""
        return int(self._indptr[-1])

    @property
    def n_stored(self) -> int:
        """Number of rows stored in the file (cells that measured the modality)."""
        return self._indptr.size - 1

    def close(self) -> None:
        """Close the file; reading afterwards raises."""
        self._file.close()

    def __repr__(self) -> str:
        return (
            f"BackedCounts({self.filename}:{self.group}, {self.n_stored} stored rows, "
            f"shape={self.shape})"
        )

    def __getitem__(self, rows: np.ndarray) -> sp.csr_matrix:
        """Float32 CSR (len(rows), n_features) of the global cell positions ``rows``."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or not (np.issubdtype(rows.dtype, np.integer) or rows.size == 0):
            raise TypeError(
                "BackedCounts: expected a 1-D integer array of cell positions, found "
                f"dtype {rows.dtype} with shape {rows.shape}."
            )
        local = self._local[rows.astype(np.int64, copy=False)]
        present = np.flatnonzero(local >= 0)
        stored = self._read(local[present])
        nnz_row = np.zeros(rows.size, dtype=np.int64)
        nnz_row[present] = np.diff(stored.indptr)
        indptr = np.concatenate([[0], np.cumsum(nnz_row)])
        return sp.csr_matrix(
            (stored.data, stored.indices, indptr), shape=(rows.size, self._shape[1])
        )

    # ------------------------------------------------------------------ reading
    def _read(self, local: np.ndarray) -> sp.csr_matrix:
        """CSR of the file rows ``local`` (any order, repeats allowed), in that order."""
        n_features = self._shape[1]
        if local.size == 0:
            return sp.csr_matrix((0, n_features), dtype=np.float32)
        wanted, inverse = np.unique(local, return_inverse=True)
        chunk_of = wanted // CHUNK_ROWS
        bounds = np.flatnonzero(np.diff(chunk_of)) + 1
        parts = []
        for members in np.split(wanted, bounds):
            chunk = int(members[0] // CHUNK_ROWS)
            start = chunk * CHUNK_ROWS
            stop = min(start + CHUNK_ROWS, self.n_stored)
            if members.size == stop - start:  # every row of the chunk: read it, keep nothing
                block = self._cached(chunk)
                parts.append(self._slice(start, stop) if block is None else block)
            elif (
                chunk in self._cache
                or chunk in self._touched
                or members.size >= WHOLE_CHUNK_SHARE * (stop - start)
            ):
                parts.append(self._chunk(chunk)[members - start])
            else:
                parts.append(self._runs(members))
                self._touched[chunk] = None
                if len(self._touched) > TOUCHED_CHUNKS:
                    self._touched.popitem(last=False)
        block = parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")
        return block[inverse] if wanted.size != local.size or (np.diff(local) <= 0).any() else block

    def _slice(self, start: int, stop: int) -> sp.csr_matrix:
        """Canonical float32 CSR of the file rows ``[start, stop)``, one read per array."""
        lo, hi = int(self._indptr[start]), int(self._indptr[stop])
        self.reads += 1
        out = sp.csr_matrix(
            (self._data[lo:hi], self._indices[lo:hi], self._indptr[start : stop + 1] - lo),
            shape=(stop - start, self._shape[1]),
        )
        return canonical_float32(out)

    def _runs(self, members: np.ndarray) -> sp.csr_matrix:
        """Rows ``members`` (sorted, unique), one read per run of consecutive rows."""
        breaks = np.flatnonzero(np.diff(members) != 1) + 1
        runs = np.split(members, breaks)
        parts = [self._slice(int(r[0]), int(r[-1]) + 1) for r in runs]
        return parts[0] if len(parts) == 1 else sp.vstack(parts, format="csr")

    def _cached(self, chunk: int) -> sp.csr_matrix | None:
        block = self._cache.get(chunk)
        if block is not None:
            self._cache.move_to_end(chunk)
        return block

    def _chunk(self, chunk: int) -> sp.csr_matrix:
        """Storage chunk ``chunk``, from the cache or read whole and cached."""
        block = self._cached(chunk)
        if block is not None:
            return block
        start = chunk * CHUNK_ROWS
        block = self._slice(start, min(start + CHUNK_ROWS, self.n_stored))
        self._cache[chunk] = block
        while len(self._cache) > self.cache_chunks:
            self._cache.popitem(last=False)
        return block
