"""The bundled BMMC mosaic ships with the package and loads as a 3-modality MuData."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import scipy.sparse as sp

import mmaavi
import mmaavi.datasets

EXPECTED_SHAPES = {
    "cite_rna": (600, 1000),
    "cite_adt": (600, 134),
    "multiome_rna": (500, 1134),
    "multiome_atac": (500, 600),
}
EXPECTED_BATCHES = {"cite_s1d1", "cite_s1d2", "multiome_s1d1", "multiome_s1d2"}


def _mosaic_available() -> bool:
    try:
        from mmaavi.data import mosaic  # noqa: F401
    except ImportError:
        return False
    return True


def test_files_ship_inside_the_installed_package():
    paths = mmaavi.datasets.bmmc_paths()
    assert set(paths) == set(EXPECTED_SHAPES)
    package_dir = Path(mmaavi.__file__).resolve().parent
    for path in paths.values():
        assert path.is_file()
        assert path.resolve().is_relative_to(package_dir)
    assert (paths["cite_rna"].parent / "PROVENANCE.md").is_file()


@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_file_shape_and_integer_counts(name):
    adata = ad.read_h5ad(mmaavi.datasets.bmmc_paths()[name])
    assert adata.shape == EXPECTED_SHAPES[name]
    assert sp.issparse(adata.X)
    values = adata.X.data
    assert values.size > 0
    assert np.all(values >= 0)
    np.testing.assert_array_equal(values, np.round(values))
    assert adata.obs_names.is_unique
    assert adata.var_names.is_unique
    assert {"batch", "cell_type", "cell_type_l1"} <= set(adata.obs.columns)


def test_paired_files_hold_the_same_cells():
    paths = mmaavi.datasets.bmmc_paths()
    for rna, other in [("cite_rna", "cite_adt"), ("multiome_rna", "multiome_atac")]:
        a = ad.read_h5ad(paths[rna], backed="r")
        b = ad.read_h5ad(paths[other], backed="r")
        assert list(a.obs_names) == list(b.obs_names)
        a.file.close()
        b.file.close()


@pytest.mark.skipif(not _mosaic_available(), reason="mmaavi.data.mosaic is not written yet")
def test_bmmc_mosaic_is_a_three_modality_mudata():
    mdata = mmaavi.datasets.bmmc_mosaic()
    assert mdata.n_obs == 1100
    assert set(mdata.mod) == {"rna", "adt", "atac"}
    assert mdata.obs_names.is_unique
    assert "batch" in mdata.obs.columns
    assert set(mdata.obs["batch"].astype(str)) == EXPECTED_BATCHES
    assert "cell_type_l1" in mdata.obs.columns
