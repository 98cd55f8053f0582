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

    torch's libtorch_cpu.so is preloaded: it exports the BLAS symbols of the MKL it carries
    (sgemm_, ...), and in a process started by R the global scope already holds R's own BLAS
    (libR.so needs libblas.so.3), so without the preload torch's matrix products bind to R's
    BLAS (Debian: the reference BLAS) and give other float32 results than in a Python process
    (found while writing these tests; the R package does not handle it yet).
    """
    import torch

    torch_cpu = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    preload = " ".join(p for p in (str(torch_cpu), os.environ.get("LD_PRELOAD", "")) if p)
    return dict(
        os.environ,
        R_LIBS=str(r_lib),
        MMAAVI_PYTHON=sys.executable,
        RETICULATE_PYTHON=sys.executable,
        OMP_NUM_THREADS="1",
        LD_PRELOAD=preload,
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
