"""Fixtures shared by the whole pytest suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the real data sets in ``../shared/data`` (each folder has a PROVENANCE.md).

    ``MMAAVI_SHARED_DATA`` overrides the default, ``<repo>/../shared/data``. Tests that use this
    fixture skip where the folder is absent, except in CI (``CI=true``), where they fail: a
    skipped quality test there would hide a broken set-up.
    """
    path = Path(os.environ.get("MMAAVI_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    if not path.is_dir():
        message = (
            f"real data folder not found: {path} "
            "(set MMAAVI_SHARED_DATA to the folder holding the shared data sets)"
        )
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """One intra-op thread: the tensors here are small, and on a shared 2-core machine a second
    thread's spin-waiting makes training many times slower, never faster."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def bmmc_default_model():
    """mmaavi with its defaults on the bundled BMMC mosaic (``n_components=10``, seed 0).

    Trained once per session (~3 minutes on one CPU thread) and shared by the tests that need a
    fully trained model: integration quality and differential markers.
    """
    import mmaavi

    mdata = mmaavi.datasets.bmmc_mosaic()
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=10)
    model.train(seed=0, progress="none")
    return model


@pytest.fixture(scope="session")
def pbmc_mosaic(shared_data):
    """Factory of the PBMC WNN RNA/ADT mosaic (``../shared/data/pbmc_wnn_rna_adt_mosaic``).

    Each call builds a fresh MuData, so a test may add columns or train on it freely.
    """
    import anndata as ad

    import mmaavi

    folder = shared_data / "pbmc_wnn_rna_adt_mosaic"

    def build():
        mods = {m: ad.read_h5ad(folder / f"{m}.h5ad") for m in ("rna", "adt")}
        return mmaavi.data.mosaic(mods, batch_key="batch")

    return build


@pytest.fixture(scope="session")
def pbmc_default_model(pbmc_mosaic):
    """mmaavi with its defaults on the PBMC WNN mosaic (``n_components=8``, seed 0).

    Trained once per session (~3 minutes on one CPU thread, 92 epochs) and shared by the tests
    that need a fully trained model: integration quality, differential markers and the kNN
    baseline of label transfer. A test may add columns to its ``mdata.obs`` (group splits),
    never change the cells.
    """
    import mmaavi

    model = mmaavi.MMAAVI(pbmc_mosaic(), batch_key="batch", n_components=8)
    model.train(seed=0, progress="none")
    return model


@pytest.fixture(scope="session")
def snare_benchmark(shared_data):
    """``benchmarks/snare_mosaic.py``'s ``run`` on ``shared_data``: the test and the benchmark
    share one definition of the SNARE-seq mosaic task and its scores (``benchmarks/tasks.py``),
    so the floors asserted are the numbers the benchmark measured."""
    import functools
    import sys

    benchmarks = str(REPO_ROOT / "benchmarks")
    if benchmarks not in sys.path:
        sys.path.insert(0, benchmarks)
    import snare_mosaic

    return functools.partial(snare_mosaic.run, shared=shared_data)
