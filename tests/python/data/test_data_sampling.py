"""Train/validation split and minibatch schedules."""

from __future__ import annotations

import numpy as np
import pytest

from mmaavi.data import (
    balanced_epoch,
    default_batch_size,
    sequential_batches,
    shard_minibatches,
    train_val_split,
)


def codes_for(sizes):
    return np.repeat(np.arange(len(sizes)), sizes)


def test_split_is_seeded_sorted_and_stratified():
    codes = codes_for([300, 40, 2, 1])
    train, val = train_val_split(codes, 0.1, seed=3)
    train2, val2 = train_val_split(codes, 0.1, seed=3)
    np.testing.assert_array_equal(train, train2)
    np.testing.assert_array_equal(val, val2)
    assert not np.array_equal(val, train_val_split(codes, 0.1, seed=4)[1])
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    assert train.dtype == np.int64 and val.dtype == np.int64
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(codes.size))
    assert np.bincount(codes[val], minlength=4).tolist() == [30, 4, 0, 0]
    assert set(codes[train]) == {0, 1, 2, 3}


def test_split_keeps_a_training_cell_in_every_batch():
    codes = codes_for([2, 3, 5])
    train, val = train_val_split(codes, 0.9, seed=0)
    assert set(codes[train]) == {0, 1, 2}
    assert np.bincount(codes[val]).tolist() == [1, 2, 4]


def test_split_without_validation():
    train, val = train_val_split(codes_for([5, 5]), 0.0)
    assert val.size == 0 and train.tolist() == list(range(10))


@pytest.mark.parametrize("size", [-0.1, 1.0, 2])
def test_split_bad_size(size):
    with pytest.raises(ValueError, match=r"validation_size must be in \[0, 1\)"):
        train_val_split(codes_for([5]), size)


def test_split_bad_codes():
    with pytest.raises(TypeError, match="1-D integer array of batch codes"):
        train_val_split(np.array(["a", "b"]))


def test_default_batch_size():
    assert default_batch_size(100) == 32
    assert default_batch_size(65 * 100) == 100
    assert default_batch_size(65 * 100 + 64) == 100


def test_default_batch_size_is_capped_by_cells_times_features():
    # the published rule for small data, whatever the features
    assert default_batch_size(65 * 100, n_features=2_700) == 100
    assert default_batch_size(10_000, n_features=27_411) == 10_000 // 65
    # a million BMMC-like cells: 2^23 cell-features per minibatch instead of 13,846 cells
    assert default_batch_size(900_000, n_features=2_700) == 2**23 // 2_700
    assert default_batch_size(900_000) == 900_000 // 65
    # never below 32
    assert default_batch_size(900_000, n_features=10**7) == 32


def test_balanced_epoch_counts_and_reproducibility():
    codes = codes_for([50, 10, 3])
    train_idx = np.arange(codes.size) + 1000
    epoch = balanced_epoch(codes, train_idx, 16, np.random.default_rng(0))
    again = balanced_epoch(codes, train_idx, 16, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(epoch, again))
    drawn = np.concatenate(epoch)
    assert drawn.size == 150
    assert np.bincount(codes[drawn - 1000]).tolist() == [50, 50, 50]
    assert set(drawn) <= set(train_idx)
    assert all(b.dtype == np.int64 for b in epoch)


def test_balanced_epoch_never_yields_a_single_cell():
    rng = np.random.default_rng(0)
    for n_batches in (1, 2, 3):
        for n_max in range(1, 60):
            sizes = [n_max] + [max(1, n_max // (k + 2)) for k in range(n_batches - 1)]
            codes = codes_for(sizes)
            for batch_size in (2, 3, 7, 16, 32):
                if n_max * n_batches < 2:
                    continue
                epoch = balanced_epoch(codes, np.arange(codes.size), batch_size, rng)
                assert min(len(b) for b in epoch) >= 2
                assert max(len(b) for b in epoch) <= batch_size + 1
                assert sum(len(b) for b in epoch) == n_max * n_batches


def test_balanced_epoch_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="single minibatch of 1 cell"):
        balanced_epoch(np.array([0]), np.array([7]), 32, rng)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        balanced_epoch(codes_for([5]), np.arange(5), 1, rng)
    with pytest.raises(ValueError, match="batch_codes has 5 entries but train_idx has 4"):
        balanced_epoch(codes_for([5]), np.arange(4), 2, rng)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        balanced_epoch(codes_for([5]), np.arange(5), 2, 0)
    with pytest.raises(ValueError, match="train_idx is empty"):
        balanced_epoch(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 2, rng)


def test_sequential_batches():
    batches = sequential_batches(10, 3)
    assert [b.tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert sequential_batches(0, 3) == []
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        sequential_batches(10, 0)


def test_labelled_pool_fraction_recycling_and_seed():
    from mmaavi.data import LabelledPool

    labelled = np.array([3, 7, 11])
    pool = LabelledPool(labelled, 0.2, np.random.default_rng(0))
    batch = np.arange(100, 140)
    out = pool.add_to(batch)
    assert out.size == 50 and np.array_equal(out[:40], batch)  # 10 of 50 = 20 % labelled
    assert set(out[40:]) <= set(labelled)
    # recycled: each full pass over the pool uses every labelled cell once, so after 40 draws
    # from 3 cells every cell was drawn 13 or 14 times
    counts = np.bincount(np.concatenate([out[40:], pool.take(30)]))[labelled]
    assert counts.sum() == 40 and counts.min() >= 13 and counts.max() <= 14
    again = LabelledPool(labelled, 0.2, np.random.default_rng(0)).add_to(batch)
    np.testing.assert_array_equal(out, again)


def test_labelled_pool_errors():
    from mmaavi.data import LabelledPool

    with pytest.raises(ValueError, match="at least one labelled"):
        LabelledPool(np.array([], dtype=np.int64), 0.2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"labelled_fraction must be in \(0, 1\)"):
        LabelledPool(np.array([1]), 1.0, np.random.default_rng(0))


def test_chunked_epoch_draws_the_same_cells_in_local_windows(monkeypatch):
    import mmaavi.data._sampling as sampling

    monkeypatch.setattr(sampling, "SHUFFLE_CHUNK", 10)
    monkeypatch.setattr(sampling, "SHUFFLE_WINDOW", 4)
    codes = np.repeat([0, 1, 2], [500, 300, 200])
    train_idx = np.arange(1000)
    plain = balanced_epoch(codes, train_idx, 20, np.random.default_rng(5))
    chunked = balanced_epoch(codes, train_idx, 20, np.random.default_rng(5), shuffle="chunked")
    again = balanced_epoch(codes, train_idx, 20, np.random.default_rng(5), shuffle="chunked")
    np.testing.assert_array_equal(np.concatenate(chunked), np.concatenate(again))
    # the same draws (balanced: 500 per batch), only in another order
    np.testing.assert_array_equal(np.sort(np.concatenate(plain)), np.sort(np.concatenate(chunked)))
    assert [len(c) for c in chunked] == [len(c) for c in plain]
    # a minibatch lies within one window, or straddles two: at most 2 x 4 chunks of 10 cells
    spans = [np.unique(c // 10).size for c in chunked]
    assert max(spans) <= 8
    assert max(np.unique(c // 10).size for c in plain) > 8  # the global order is not local
    with pytest.raises(ValueError, match="shuffle must be one of global, chunked"):
        balanced_epoch(codes, train_idx, 20, np.random.default_rng(5), shuffle="chunks")


def test_shard_minibatches_splits_every_minibatch_across_processes():
    batches = [np.arange(0, 10), np.arange(10, 20), np.arange(20, 23)]
    parts = [shard_minibatches(batches, rank, 2) for rank in range(2)]
    assert [len(p) for p in parts] == [2, 2]  # the 3-cell tail joined the previous minibatch
    np.testing.assert_array_equal(np.concatenate([parts[0][0], parts[1][0]]), np.arange(10))
    np.testing.assert_array_equal(np.concatenate([parts[0][1], parts[1][1]]), np.arange(10, 23))
    assert shard_minibatches(batches, 0, 1) is batches
    with pytest.raises(ValueError, match=r"on 4 processes needs minibatches of at least 8 cells"):
        shard_minibatches([np.arange(6)], 0, 4)
