"""Fixtures of the R-object tests: R through rpy2 (started once per session), the repository's
R package installed in a temporary library, and the bundled BMMC mosaic as Seurat / SCE files
built in R by the R tests' own helpers (``tests/testthat/helper-mmaavi.R``).

Where R, rpy2 or anndata2ri is missing these tests skip, except with ``CI=true``, where they
fail: CI installs R (``make test`` runs ``make r-deps`` first), so a skip there hides a broken
set-up.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _rtools import EPOCHS, N_COMPONENTS, R_HELPER, REPO_ROOT, SEURAT_ASSAYS, unavailable


@pytest.fixture(scope="session")
def r():
    """The embedded R session of mmaavi.io."""
    from mmaavi.io import _r

    try:
        return _r.session()
    except _r.RNotAvailableError as err:
        unavailable(f"R through rpy2 is unusable: {err}")


@pytest.fixture(scope="session")
def r_lib(r, tmp_path_factory) -> Path:
    """A library with this repository's R package, attached in the embedded R."""
    lib = tmp_path_factory.mktemp("r-lib")
    out = subprocess.run(
        ["R", "CMD", "INSTALL", "--no-test-load", "-l", str(lib), str(REPO_ROOT)],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        unavailable(f"R CMD INSTALL of the R package failed:\n{out.stdout[-2000:]}{out.stderr}")
    with r.quiet():
        r.ro.r(f'suppressPackageStartupMessages(library(mmaavi, lib.loc = "{lib}"))')
        r.ro.r["source"](str(R_HELPER))
    return lib


@pytest.fixture(scope="session")
def bmmc_rds(r, r_lib, tmp_path_factory) -> dict[str, Path]:
    """The bundled BMMC mosaic saved from R: ``seurat`` and ``sce`` (cells in the bundled
    order; RNA over the union of both gene sets, ADT and ATAC over every cell, zero where not
    measured) and ``seurat_shuffled`` (cells in another order)."""
    folder = tmp_path_factory.mktemp("bmmc-rds")
    paths = {
        "seurat": ("bmmc_seurat()", folder / "seurat.rds"),
        "sce": ("bmmc_sce()", folder / "sce.rds"),
        "seurat_shuffled": ("bmmc_seurat(shuffle_seed = 7)", folder / "seurat_shuffled.rds"),
    }
    with r.quiet():
        for make, path in paths.values():
            r.ro.r(f'saveRDS({make}, "{path}")')
    return {name: path for name, (_, path) in paths.items()}


@pytest.fixture(scope="session")
def bmmc_read(bmmc_rds):
    """read_rds of each BMMC file (batch 'batch'), as a factory of fresh MuData."""
    import warnings

    import mmaavi

    def read(name: str):
        assays = SEURAT_ASSAYS if name.startswith("seurat") else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return mmaavi.io.read_rds(bmmc_rds[name], assays=assays, batch="batch")

    return read


@pytest.fixture(scope="session")
def bmmc_model(bmmc_read):
    """mmaavi on the Seurat file (``N_COMPONENTS``, ``EPOCHS`` epochs, seed 0)."""
    import mmaavi

    mdata = bmmc_read("seurat")
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=N_COMPONENTS)
    model.train(max_epochs=EPOCHS, seed=0, progress="none")
    return model
