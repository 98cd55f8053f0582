"""Constants and small helpers shared by the R-object tests (fixtures are in conftest.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
#: what the R package's tests build their objects with
R_HELPER = REPO_ROOT / "tests" / "testthat" / "helper-mmaavi.R"
EPOCHS = 3
N_COMPONENTS = 6
SEURAT_ASSAYS = {"rna": "RNA", "adt": "ADT", "atac": "ATAC"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(message: str) -> None:
    """Skip, or fail under CI=true (CI installs R: a skip there would hide a broken set-up)."""
    if in_ci():
        pytest.fail(f"CI=true but {message}")
    pytest.skip(message)


def r_env(r_lib: Path) -> dict[str, str]:
    """Environment of an Rscript child that uses this Python and the installed R package.

    Nothing is preloaded: the child is an R user's process, in which R's BLAS is loaded before
    Python, and ``import mmaavi`` must keep torch on its own BLAS there (mmaavi._blas).
    """
    return dict(
        os.environ,
        R_LIBS=str(r_lib),
        MMAAVI_PYTHON=sys.executable,
        RETICULATE_PYTHON=sys.executable,
        OMP_NUM_THREADS="1",
    )


def embedding_in_r(r, path: Path, kind: str, name: str):
    """The embedding stored in an .rds file, read in R: (values, row names, column names)."""
    import numpy as np

    getter = (
        f'SeuratObject::Embeddings(readRDS("{path}")[["{name}"]])'
        if kind == "seurat"
        else f'SingleCellExperiment::reducedDim(readRDS("{path}"), "{name}")'
    )
    with r.quiet():
        matrix = r.ro.r(getter)
    values = np.asarray(r.array(matrix), dtype=np.float64)
    rows = r.strings(r.ro.r["rownames"](matrix))
    cols = r.strings(r.ro.r["colnames"](matrix))
    return values, rows, cols
