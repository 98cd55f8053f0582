"""Train/validation split and minibatch schedules (MODEL.md section 7).

All randomness comes from :class:`numpy.random.Generator` objects, so a seed makes every split and
epoch reproducible.

Two orders for a balanced epoch's draws (the draws themselves are the same):

- ``"global"``: one random permutation of all draws. Each minibatch then holds cells from
  anywhere in the data: right for counts in memory, but counts on disk would be read row by row.
- ``"chunked"``: the cells are cut into chunks of :data:`SHUFFLE_CHUNK` consecutive positions, the
  chunks are put in a random order and grouped into windows of :data:`SHUFFLE_WINDOW` chunks, and
  the draws are shuffled within each window. A minibatch then holds cells of at most a window's
  chunks (64 random places of the data), which a reader on disk fetches as a few whole chunks.
  On data of at most one window (65,536 cells) every minibatch still mixes all cells.

For data-parallel training every process takes its share of each minibatch
(:func:`shard_minibatches`), so the processes together train on the minibatches a single
process would.
"""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def _as_codes(batch_codes: np.ndarray, name: str) -> np.ndarray:
    codes = np.asarray(batch_codes)
    if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(
            f"{name}: expected a 1-D integer array of batch codes, found dtype {codes.dtype} with "
            f"shape {codes.shape}."
        )
    return codes


def train_val_split(
    batch_codes: np.ndarray, validation_size: float = 0.1, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of cell positions into training and validation, stratified by batch.

    Each batch contributes ``round(validation_size * n_b)`` cells to validation, but a batch with
    at least 2 cells always keeps at least one training cell and a batch of 1 cell stays in
    training.

    Parameters
    ----------
    batch_codes
        Int (n_cells,) batch code of every cell.
    validation_size
        Fraction of each batch held out, in ``[0, 1)``; 0 gives an empty validation set.
    seed
        Seed of the :class:`numpy.random.Generator`.

    Returns
    -------
    train_idx, val_idx
        Sorted int64 arrays of cell positions.
    """
    codes = _as_codes(batch_codes, "batch_codes")
    if not 0.0 <= float(validation_size) < 1.0:
        raise ValueError(
            f"validation_size must be in [0, 1), found {validation_size!r}; use e.g. 0.1 to hold "
            "out 10% of the cells, or 0 for no validation."
        )
    rng = np.random.default_rng(seed)
    val = []
    for b in np.unique(codes):
        members = np.flatnonzero(codes == b)
        n_val = min(int(round(validation_size * members.size)), members.size - 1)
        if n_val > 0:
            val.append(rng.choice(members, size=n_val, replace=False))
    val_idx = np.sort(np.concatenate(val)) if val else np.empty(0, dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(codes.size), val_idx)
    return train_idx.astype(np.int64), val_idx.astype(np.int64)


#: orders of a balanced epoch (see the module docstring)
SHUFFLES: tuple[str, ...] = ("global", "chunked")
#: consecutive cell positions per chunk of the chunked order
SHUFFLE_CHUNK = 1024
#: chunks per shuffle window of the chunked order
SHUFFLE_WINDOW = 64


#: most cells x features (all modalities) a default minibatch holds: ~1 GB of training
#: activations at the ~110 bytes per cell and feature measured on the BMMC mosaic (benchmarks/
#: scale.py: ~300 KB per cell over its 2,700 features)
MAX_CELL_FEATURES = 2**23


def default_batch_size(n_train: int, n_features: int | None = None) -> int:
    """Default minibatch size: ``max(n_train // 65, 32)``, at most ``MAX_CELL_FEATURES //
    n_features`` cells (but never below 32).

    The published rule (about 65 steps per epoch) makes minibatches grow with the data: 13,846
    cells at a million cells, whose training activations alone took ~4 GB. The cap keeps the
    memory of a step bounded whatever the number of cells (it applies from ~200,000 cells for
    a BMMC-like mosaic of 2,700 features, ~20,000 for SNARE-seq's 27,000); smaller data sets get
    the published rule unchanged.

    Parameters
    ----------
    n_train
        Number of training cells.
    n_features
        Total number of features over all modalities (decoder outputs); ``None``: no cap.
    """
    size = max(int(n_train) // 65, 32)
    if n_features:
        size = min(size, max(MAX_CELL_FEATURES // int(n_features), 32))
    return size


def _split(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut ``order`` into chunks of ``batch_size``; a size-1 tail joins the previous chunk."""
    chunks = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
    if len(chunks) > 1 and chunks[-1].size == 1:
        tail = chunks.pop()
        chunks[-1] = np.concatenate([chunks[-1], tail])
    return chunks


def balanced_epoch(
    batch_codes: np.ndarray,
    train_idx: np.ndarray,
    batch_size: int,
    rng: np.random.Generator,
    shuffle: str = "global",
) -> list[np.ndarray]:
    """Minibatches of one balanced training epoch.

    Every batch's training cells are drawn with replacement up to the size of the largest batch,
    the draws are shuffled together (``shuffle``) and cut into minibatches of ``batch_size``. A
    final minibatch of one cell is merged into the previous one (so one minibatch may hold
    ``batch_size + 1`` cells); batch-norm layers never see a single cell.

    Parameters
    ----------
    batch_codes
        Int (n_train,) batch code of each training cell, aligned with ``train_idx``.
    train_idx
        Int (n_train,) positions of the training cells in the full data.
    batch_size
        Minibatch size (>= 2).
    rng
        Random generator; pass the same seeded generator to reproduce a run.
    shuffle
        ``"global"`` or ``"chunked"`` (see the module docstring).

    Returns
    -------
    list of numpy.ndarray
        Int64 arrays of cell positions (values from ``train_idx``).
    """
    if shuffle not in SHUFFLES:
        raise ValueError(f"shuffle must be one of {', '.join(SHUFFLES)}; found {shuffle!r}.")
    codes = _as_codes(batch_codes, "batch_codes")
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if codes.shape != train_idx.shape:
        raise ValueError(
            f"batch_codes has {codes.size} entries but train_idx has {train_idx.size}; pass the "
            "batch codes of the training cells, e.g. batch[train_idx]."
        )
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng: expected a numpy.random.Generator, found {type(rng).__name__}; use "
            "numpy.random.default_rng(seed)."
        )
    _check_batch_size(batch_size)
    if train_idx.size == 0:
        raise ValueError("train_idx is empty: expected at least 2 training cells.")
    batches = np.unique(codes)
    per_batch = np.bincount(np.searchsorted(batches, codes))
    n_max = int(per_batch.max())
    draws = [rng.choice(train_idx[codes == b], size=n_max, replace=True) for b in batches]
    if shuffle == "global":
        order = rng.permutation(np.concatenate(draws))
    else:
        order = _chunk_shuffle(np.concatenate(draws), rng)
    if order.size < 2:
        raise ValueError(
            "an epoch would be a single minibatch of 1 cell, which batch normalisation cannot "
            "train on; expected at least 2 training cells."
        )
    return _split(order, int(batch_size))


def _chunk_shuffle(draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``draws`` in the chunked order: chunks in random order, windows of chunks, shuffled inside."""
    chunk = draws // SHUFFLE_CHUNK
    ids, chunk = np.unique(chunk, return_inverse=True)
    window = rng.permutation(ids.size)[chunk] // SHUFFLE_WINDOW
    return draws[np.lexsort((rng.random(draws.size), window))]


def shard_minibatches(
    minibatches: list[np.ndarray], rank: int, world_size: int
) -> list[np.ndarray]:
    """Process ``rank``'s share of every minibatch, for data-parallel training.

    Each minibatch is cut into ``world_size`` near-equal consecutive parts and part ``rank`` is
    kept, so every process takes the same number of steps and the processes together see the
    whole minibatch. A final minibatch too small to give every process 2 cells is merged into the
    previous one.

    Raises
    ------
    ValueError
        A minibatch (after that merge) has fewer than ``2 * world_size`` cells.
    """
    if world_size == 1:
        return minibatches
    need = 2 * world_size
    batches = list(minibatches)
    if len(batches) > 1 and batches[-1].size < need:
        tail = batches.pop()
        batches[-1] = np.concatenate([batches[-1], tail])
    small = [b.size for b in batches if b.size < need]
    if small:
        raise ValueError(
            f"Data-parallel training on {world_size} processes needs minibatches of at least "
            f"{need} cells (each process trains on its share of every minibatch, and batch "
            f"normalisation needs 2 cells), found one of {min(small)}. Use a batch_size of at "
            f"least {need}, or fewer processes (torchrun --nproc_per_node)."
        )
    return [np.array_split(b, world_size)[rank] for b in batches]


def sequential_batches(n: int, batch_size: int) -> list[np.ndarray]:
    """Consecutive minibatches ``[0, bs), [bs, 2 bs), ...`` over ``n`` cells, for inference.

    The last minibatch may hold a single cell (inference runs in eval mode).
    """
    _check_batch_size(batch_size, minimum=1)
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, found {n}.")
    return [
        np.arange(i, min(i + int(batch_size), int(n)), dtype=np.int64)
        for i in range(0, int(n), int(batch_size))
    ]


def _check_batch_size(batch_size: int, minimum: int = 2) -> None:
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool):
        raise TypeError(f"batch_size: expected an int, found {type(batch_size).__name__}.")
    if batch_size < minimum:
        raise ValueError(f"batch_size must be >= {minimum}, found {batch_size}.")


class LabelledPool:
    """Endless, reshuffled supply of labelled training cells for semi-supervised minibatches.

    MODEL.md §8: each minibatch holds a fraction of labelled cells, recycled when the (usually
    few) labelled cells run out.

    Parameters
    ----------
    labelled_idx
        Int positions of the labelled training cells (at least one).
    fraction
        Share of labelled cells in each minibatch after :meth:`add_to`, in (0, 1).
    rng
        Random generator (the training run's, so a seed fixes the draws).
    """

    def __init__(self, labelled_idx: np.ndarray, fraction: float, rng: np.random.Generator) -> None:
        self.cells = np.asarray(labelled_idx, dtype=np.int64)
        if self.cells.size == 0:
            raise ValueError("LabelledPool needs at least one labelled training cell.")
        if not 0.0 < float(fraction) < 1.0:
            raise ValueError(f"labelled_fraction must be in (0, 1); found {fraction!r}.")
        self.fraction = float(fraction)
        self.rng = rng
        self._queue = np.empty(0, dtype=np.int64)

    @property
    def queue(self) -> np.ndarray:
        """The labelled cells still to hand out before the next reshuffle (a checkpoint keeps
        it, so that a resumed run draws the same cells)."""
        return self._queue.copy()

    @queue.setter
    def queue(self, cells: np.ndarray) -> None:
        cells = np.asarray(cells, dtype=np.int64)
        if cells.ndim != 1 or not np.isin(cells, self.cells).all():
            raise ValueError("queue: expected a 1-D array of cells of the labelled pool.")
        self._queue = cells.copy()

    def take(self, n: int) -> np.ndarray:
        """The next ``n`` labelled cells, reshuffling the pool whenever it is used up."""
        out = []
        while n > 0:
            if self._queue.size == 0:
                self._queue = self.rng.permutation(self.cells)
            part, self._queue = self._queue[:n], self._queue[n:]
            out.append(part)
            n -= part.size
        return np.concatenate(out) if out else np.empty(0, dtype=np.int64)

    def add_to(self, minibatch: np.ndarray) -> np.ndarray:
        """``minibatch`` plus labelled cells making up ``fraction`` of the result."""
        n = max(1, int(round(minibatch.size * self.fraction / (1.0 - self.fraction))))
        return np.concatenate([minibatch, self.take(n)])
