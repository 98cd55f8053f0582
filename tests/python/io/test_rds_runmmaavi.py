"""RunMMAAVI() in R and mmaavi.MMAAVI on read_rds() give the same embedding (same data, seed).

RunMMAAVI runs in an Rscript child: R embedded in this Python process (rpy2) cannot start
reticulate here, because reticulate 1.28 tries to dlopen() the python executable as libpython
when Python is statically linked (Debian's /usr/bin/python3.11) and glibc refuses. The child
uses this interpreter (MMAAVI_PYTHON) and the R package installed by the ``r_lib`` fixture; the
objects it reads and the results it writes go through R files, read back here with rpy2.

The child runs as an R user's session does: nothing preloaded. Its R already holds R's BLAS
when Python starts, so these equalities hold only while ``import mmaavi`` keeps torch's matrix
products on torch's own BLAS (mmaavi._blas); the child also reports which BLAS torch used.
"""

from __future__ import annotations

import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest
from _rtools import EPOCHS, N_COMPONENTS, r_env

import mmaavi

RUN_R = """
suppressPackageStartupMessages(library(mmaavi))
args <- commandArgs(trailingOnly = TRUE)
fit <- function(object, ..., n.components = {n_components}L) {
  RunMMAAVI(object, ..., batch = "batch", n.components = n.components,
            max_epochs = {epochs}L, seed = 0L, verbose = FALSE)
}
seu <- fit(readRDS(args[1]), assays = c(rna = "RNA", adt = "ADT", atac = "ATAC"))
sce <- fit(readRDS(args[2]))
loaded <- LoadMMAAVI(args[3])
labelled <- fit(readRDS(args[4]), assays = c(rna = "RNA", adt = "ADT", atac = "ATAC"),
                labels = "labels", n.components = NULL)
saveRDS(list(
  seurat = SeuratObject::Embeddings(seu[["mmaavi"]]),
  sce = SingleCellExperiment::reducedDim(sce, "MMAAVI"),
  loaded = loaded$embedding,
  labelled = SeuratObject::Embeddings(labelled[["mmaavi"]]),
  classes = levels(labelled$mmaavi_label),
  blas = mmaavi_python_info()$versions$blas
), args[5])
"""

#: the CITE-seq cells' cell types, the Multiome ones unlabelled, as a factor whose levels are
#: in neither sorted nor reverse order and include one no cell has
LABELLED_R = """
seu <- readRDS("{source}")
labels <- ifelse(seu$assay == "cite", seu$cell_type_l1, NA)
levels <- sort(unique(stats::na.omit(labels)))
levels <- c(levels[3:length(levels)], "unused", levels[2:1])
seu$labels <- factor(labels, levels = levels)
saveRDS(seu, "{target}")
levels
"""


@pytest.fixture(scope="module")
def labelled_rds(r, bmmc_rds, tmp_path_factory):
    """The Seurat file with a factor column ``labels`` (unsorted levels) and those levels."""
    path = tmp_path_factory.mktemp("labelled") / "labelled.rds"
    with r.quiet():
        levels = r.ro.r(LABELLED_R.format(source=bmmc_rds["seurat"], target=path))
    levels = r.strings(levels)
    assert levels != sorted(levels) and levels != sorted(levels, reverse=True)
    return path, levels


@pytest.fixture(scope="module")
def r_results(r, r_lib, bmmc_rds, bmmc_model, labelled_rds, tmp_path_factory):
    """RunMMAAVI() in an Rscript child (nothing preloaded) on the Seurat (shuffled), SCE and
    labelled files, and LoadMMAAVI() of a model directory written from Python."""
    folder = tmp_path_factory.mktemp("runmmaavi")
    mmaavi.io.write_rds(
        bmmc_model.mdata, folder / "py.rds", model=bmmc_model, model_dir=folder / "py_model"
    )
    script = folder / "run.R"
    script.write_text(
        RUN_R.replace("{n_components}", str(N_COMPONENTS)).replace("{epochs}", str(EPOCHS))
    )
    out = folder / "r_results.rds"
    run = subprocess.run(
        [
            "Rscript", str(script), str(bmmc_rds["seurat_shuffled"]), str(bmmc_rds["sce"]),
            str(folder / "py_model"), str(labelled_rds[0]), str(out),
        ],
        env=r_env(r_lib), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    with r.quiet():
        return r.ro.r(f'readRDS("{out}")')


def _embedding(r, matrix) -> pd.DataFrame:
    rows = r.strings(r.ro.r["rownames"](matrix))
    return pd.DataFrame(np.asarray(r.array(matrix), dtype=np.float64), index=rows)


def test_runmmaavi_in_r_equals_mmaavi_in_python(r, bmmc_rds, bmmc_model, r_results):
    mdata = bmmc_model.mdata  # read_rds of the Seurat file in the bundled cell order
    z = pd.DataFrame(bmmc_model.get_latent_representation(), index=mdata.obs_names)
    # torch in the R child used its own BLAS, not R's
    assert "libtorch_cpu.so (torch's own)" in r.strings(r_results.rx2("blas"))[0]
    for name in ("seurat", "sce", "loaded"):
        values = _embedding(r, r_results.rx2(name))
        assert sorted(values.index) == sorted(z.index), name
        np.testing.assert_array_equal(
            values.to_numpy(), z.loc[values.index].to_numpy(np.float64), err_msg=name
        )
    # the shuffled object kept its own cell order
    shuffled = r.strings(r.ro.r["rownames"](r_results.rx2("seurat")))
    with r.quiet():
        original = r.strings(r.ro.r(f'colnames(readRDS("{bmmc_rds["seurat_shuffled"]}"))'))
    assert shuffled == original != list(mdata.uns["mmaavi_rds"]["cells"])


def test_label_classes_follow_the_factor_levels_in_r_and_python(r, labelled_rds, r_results):
    path, levels = labelled_rds
    used = [level for level in levels if level != "unused"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        mdata = mmaavi.io.read_rds(
            path, assays={"rna": "RNA", "adt": "ADT", "atac": "ATAC"}, batch="batch"
        )
    assert list(mdata.obs["labels"].cat.categories) == levels
    model = mmaavi.MMAAVI(mdata, batch_key="batch", label_key="labels")
    model.train(max_epochs=EPOCHS, seed=0, progress="none")
    assert list(model.predict_labels().columns[1:]) == used
    assert r.strings(r_results.rx2("classes")) == used
    z = pd.DataFrame(model.get_latent_representation(), index=mdata.obs_names)
    values = _embedding(r, r_results.rx2("labelled"))
    np.testing.assert_array_equal(values.to_numpy(), z.loc[values.index].to_numpy(np.float64))
