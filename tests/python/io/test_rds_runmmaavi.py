"""RunMMAAVI() in R and mmaavi.MMAAVI on read_rds() give the same embedding (same data, seed).

RunMMAAVI runs in an Rscript child: R embedded in this Python process (rpy2) cannot start
reticulate here, because reticulate 1.28 tries to dlopen() the python executable as libpython
when Python is statically linked (Debian's /usr/bin/python3.11) and glibc refuses. The child
uses this interpreter (MMAAVI_PYTHON) and the R package installed by the ``r_lib`` fixture; the
objects it reads and the results it writes go through R files, read back here with rpy2.
"""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
from _rtools import EPOCHS, N_COMPONENTS, r_env

import mmaavi

RUN_R = """
suppressPackageStartupMessages(library(mmaavi))
args <- commandArgs(trailingOnly = TRUE)
fit <- function(object, ...) {
  RunMMAAVI(object, ..., batch = "batch", n.components = {n_components}L,
            max_epochs = {epochs}L, seed = 0L, verbose = FALSE)
}
seu <- fit(readRDS(args[1]), assays = c(rna = "RNA", adt = "ADT", atac = "ATAC"))
sce <- fit(readRDS(args[2]))
loaded <- LoadMMAAVI(args[3])
saveRDS(list(
  seurat = SeuratObject::Embeddings(seu[["mmaavi"]]),
  sce = SingleCellExperiment::reducedDim(sce, "MMAAVI"),
  loaded = loaded$embedding
), args[4])
"""


def test_runmmaavi_in_r_equals_mmaavi_in_python(r, r_lib, bmmc_rds, bmmc_model, tmp_path):
    mdata = bmmc_model.mdata  # read_rds of the Seurat file in the bundled cell order
    z = pd.DataFrame(bmmc_model.get_latent_representation(), index=mdata.obs_names)
    # a model directory written from Python, for LoadMMAAVI() in R
    mmaavi.io.write_rds(
        mdata, tmp_path / "py.rds", model=bmmc_model, model_dir=tmp_path / "py_model"
    )
    script = tmp_path / "run.R"
    script.write_text(
        RUN_R.replace("{n_components}", str(N_COMPONENTS)).replace("{epochs}", str(EPOCHS))
    )
    out = tmp_path / "r_results.rds"
    run = subprocess.run(
        [
            "Rscript", str(script), str(bmmc_rds["seurat_shuffled"]), str(bmmc_rds["sce"]),
            str(tmp_path / "py_model"), str(out),
        ],
        env=r_env(r_lib), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with r.quiet():
        results = r.ro.r(f'readRDS("{out}")')
    for name in ("seurat", "sce", "loaded"):
        matrix = results.rx2(name)
        rows = r.strings(r.ro.r["rownames"](matrix))
        values = np.asarray(r.array(matrix), dtype=np.float64)
        assert sorted(rows) == sorted(z.index), name
        np.testing.assert_array_equal(values, z.loc[rows].to_numpy(np.float64), err_msg=name)
    # the shuffled object kept its own cell order
    shuffled = r.strings(r.ro.r["rownames"](results.rx2("seurat")))
    with r.quiet():
        original = r.strings(r.ro.r(f'colnames(readRDS("{bmmc_rds["seurat_shuffled"]}"))'))
    assert shuffled == original != list(mdata.uns["mmaavi_rds"]["cells"])
