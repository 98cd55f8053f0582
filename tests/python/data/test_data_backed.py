"""Counts kept on disk (backed AnnData / MuData): the same minibatches as counts in memory.

The out-of-core container reads each minibatch's rows from the HDF5 file; everything else is the
in-memory code path, so equal cells must give equal tensors, to the bit, and equal transform
statistics.
"""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pytest
import scipy.sparse as sp
import torch

import mmaavi
from mmaavi import _constants as K
from mmaavi.data import mosaic, setup_mosaic
from mmaavi.data._counts import CHUNK_ROWS, BackedCounts


@pytest.fixture(scope="module")
def bmmc_on_disk(tmp_path_factory):
    """The bundled BMMC mosaic in memory and the same written to .h5mu and read back backed."""
    mdata = mmaavi.datasets.bmmc_mosaic()
    path = tmp_path_factory.mktemp("backed") / "bmmc.h5mu"
    with mudata.set_options(pull_on_update=False):
        mdata.write(path)
    return mdata, mudata.read_h5mu(path, backed=True)


def _assert_same_minibatches(a, b, rng) -> None:
    n = a.n_cells
    for idx in (
        np.arange(n),
        rng.permutation(n)[:97],
        rng.choice(n, 300, replace=True),  # repeats, as balanced sampling draws
        np.array([n - 1, 0, 5, 5]),
        np.empty(0, dtype=np.int64),
    ):
        x, y = a.minibatch(idx), b.minibatch(idx)
        assert x.keys() == y.keys()
        for key in x:
            assert x[key].dtype == y[key].dtype, key
            assert torch.equal(x[key], y[key]), key


@pytest.mark.parametrize("transform", ["log1p_norm", "lsi_pca"])
def test_backed_gives_the_same_minibatches_and_statistics(bmmc_on_disk, transform):
    memory, backed = bmmc_on_disk
    a = setup_mosaic(memory, transform=transform, n_components_lsi=20)
    b = setup_mosaic(backed, transform=transform, n_components_lsi=20)
    assert a.backed_modalities == ()
    assert b.backed_modalities == ("rna", "adt", "atac")
    assert all(isinstance(b.counts[m], BackedCounts) for m in b.modalities)
    for m in a.modalities:
        assert b.counts[m].shape == a.counts[m].shape and b.counts[m].nnz == a.counts[m].nnz
        ta, tb = a.transforms[m], b.transforms[m]
        for attr in ("mean", "std", "values"):
            if hasattr(ta, attr):
                np.testing.assert_array_equal(getattr(ta, attr), getattr(tb, attr))
    _assert_same_minibatches(a, b, np.random.default_rng(0))


def test_backed_rows_in_another_order_than_the_cells(tmp_path):
    """A modality whose file stores its cells in another order than mdata.obs_names."""
    rng = np.random.default_rng(1)

    def counts(n, f, seed):
        x = sp.random(n, f, density=0.3, random_state=seed, format="csr", dtype=np.float32)
        x.data = np.ceil(x.data * 5)
        return x

    cells = np.array([f"c{i}" for i in range(2500)])
    rna = ad.AnnData(X=counts(2500, 40, 2), obs={"batch": np.repeat(["a", "b"], 1250)})
    rna.obs_names = cells
    adt_cells = rng.permutation(cells[1000:])  # b's cells and some of a's, shuffled
    adt = ad.AnnData(
        X=counts(1500, 8, 3), obs={"batch": rna.obs.loc[adt_cells, "batch"].to_numpy()}
    )
    adt.obs_names = adt_cells
    rna.write_h5ad(tmp_path / "rna.h5ad")
    adt.write_h5ad(tmp_path / "adt.h5ad")
    memory = mosaic({"rna": rna, "adt": adt})
    backed = mosaic(
        {m: ad.read_h5ad(tmp_path / f"{m}.h5ad", backed="r") for m in ("rna", "adt")},
        backed=True,
    )
    assert backed.obs_names.equals(memory.obs_names)
    a, b = setup_mosaic(memory), setup_mosaic(backed)
    assert b.backed_modalities == ("rna", "adt")
    _assert_same_minibatches(a, b, rng)
    np.testing.assert_array_equal(a.transforms["adt"].mean, b.transforms["adt"].mean)


def test_disk_reads_are_bulk_slices(tmp_path):
    """Whole chunks for a dense request, one slice per run of rows for a sparse one."""
    n = 5 * CHUNK_ROWS
    x = sp.random(n, 30, density=0.1, random_state=0, format="csr", dtype=np.float32)
    x.data = np.ceil(x.data * 3)
    adata = ad.AnnData(X=x)
    adata.write_h5ad(tmp_path / "x.h5ad")
    counts = BackedCounts(tmp_path / "x.h5ad", "/X", np.arange(n), n)
    everything = counts[np.random.default_rng(0).permutation(n)]
    assert counts.reads == 5  # one slice per storage chunk, whatever the order asked
    np.testing.assert_array_equal(
        everything.toarray(), x[np.random.default_rng(0).permutation(n)].toarray()
    )
    counts.reads = 0
    counts[np.array([3, 4, 5, 900, 4000, 4001])]
    assert counts.reads == 3  # rows 3-5, row 900, rows 4000-4001
    # a chunk asked for again (as the chunked epoch order does) is read whole and cached
    counts.reads = 0
    again = counts[np.array([10, 700])]
    assert counts.reads == 1
    counts.reads = 0
    np.testing.assert_array_equal(counts[np.array([20, 30])].toarray(), x[[20, 30]].toarray())
    assert counts.reads == 0
    np.testing.assert_array_equal(again.toarray(), x[[10, 700]].toarray())
    counts.close()


def test_backed_true_needs_csr_on_disk(tmp_path):
    mdata = mmaavi.datasets.bmmc_mosaic()
    with pytest.raises(ValueError, match=r"backed=True needs counts stored on disk as CSR.*"):
        setup_mosaic(mdata, backed=True)
    dense = ad.AnnData(X=np.ones((6, 3), dtype=np.float32), obs={"batch": ["a"] * 6})
    dense.write_h5ad(tmp_path / "dense.h5ad")
    on_disk = ad.read_h5ad(tmp_path / "dense.h5ad", backed="r")
    with pytest.raises(ValueError, match=r"whose counts are stored as CSR; found counts stored"):
        mosaic({"rna": on_disk}, backed=True)
    other = dense.copy()
    other.obs_names = [f"x{i}" for i in range(6)]
    with pytest.raises(ValueError, match=r"backed=True takes one AnnData per modality"):
        mosaic({"rna": [on_disk, other]}, backed=True)


def test_backed_file_with_nan_is_refused(tmp_path):
    x = sp.csr_matrix(np.array([[1.0, 0.0], [np.nan, 2.0], [0.0, 3.0]], dtype=np.float32))
    adata = ad.AnnData(X=x, obs={"batch": ["a", "a", "b"]})
    adata.obs_names = ["c0", "c1", "c2"]
    adata.write_h5ad(tmp_path / "nan.h5ad")
    mdata = mosaic({"rna": ad.read_h5ad(tmp_path / "nan.h5ad", backed="r")}, backed=True)
    with pytest.raises(ValueError, match=r"Modality 'rna': 1 entries are NaN/Inf"):
        setup_mosaic(mdata)


def test_backed_empty_cells_warn_with_their_names(tmp_path):
    x = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]], dtype=np.float32))
    adata = ad.AnnData(X=x, obs={"batch": ["a", "a", "b"]})
    adata.obs_names = ["c0", "c1", "c2"]
    adata.write_h5ad(tmp_path / "x.h5ad")
    mdata = mosaic({"rna": ad.read_h5ad(tmp_path / "x.h5ad", backed="r")}, backed=True)
    with pytest.warns(UserWarning, match=r"'rna': 1 of 3 cells that measured it .* e\.g\. 'c1'"):
        data = setup_mosaic(mdata)
    assert data.minibatch(np.arange(3))[K.mod_key(K.X, "rna")].sum() == 4
