"""Bad input to mmaavi.io.read_rds / write_rds, and R missing: clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from _rtools import SEURAT_ASSAYS

import mmaavi


def _save_in_r(r, expression: str, path) -> None:
    with r.quiet():
        r.ro.r(f'saveRDS({expression}, "{path}")')


def test_a_file_that_is_not_an_r_object(r, tmp_path):
    text = tmp_path / "notes.rds"
    text.write_text("cell,batch\nc1,b1\n")
    with pytest.raises(ValueError, match=r"is not an R object file: R's readRDS\(\) says"):
        mmaavi.io.read_rds(text)
    h5ad = mmaavi.datasets.bmmc_paths()["cite_adt"]
    with pytest.raises(ValueError, match="saveRDS"):
        mmaavi.io.read_rds(h5ad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        mmaavi.io.read_rds(tmp_path / "absent.rds")


def test_an_r_object_of_another_class(r, tmp_path):
    path = tmp_path / "table.rds"
    _save_in_r(r, "data.frame(cell = c('a', 'b'), batch = 1:2)", path)
    with pytest.raises(TypeError, match=r"class 'data.frame'; expected a Seurat or Single"):
        mmaavi.io.read_rds(path)
    matrix = tmp_path / "matrix.rds"
    _save_in_r(r, "Matrix::rsparsematrix(5, 4, 0.5)", matrix)
    with pytest.raises(TypeError, match="class 'dgCMatrix'"):
        mmaavi.io.read_rds(matrix)


def test_an_object_whose_r_package_is_missing(r, tmp_path):
    path = tmp_path / "foreign.rds"
    _save_in_r(r, "structure(1, class = structure('Foo', package = 'mmaaviNoSuchPackage'))", path)
    with pytest.raises(mmaavi.io.RNotAvailableError, match="R package mmaaviNoSuchPackage"):
        mmaavi.io.read_rds(path)


def test_an_assay_name_that_does_not_exist(bmmc_rds):
    with pytest.raises(KeyError, match=r"'protein' -> 'PROT'.* 'RNA', 'ADT', 'ATAC'"):
        mmaavi.io.read_rds(bmmc_rds["seurat"], assays={"rna": "RNA", "protein": "PROT"})
    with pytest.raises(KeyError, match=r"experiments .* 'main', 'ADT', 'ATAC' \(the main"):
        mmaavi.io.read_rds(bmmc_rds["sce"], assays={"rna": "RNA"})
    with pytest.raises(TypeError, match="assays must be a non-empty mapping"):
        mmaavi.io.read_rds(bmmc_rds["seurat"], assays=["RNA"])


def test_an_assay_without_counts(r, tmp_path):
    path = tmp_path / "data_only.rds"
    _save_in_r(
        r,
        """local({
          m <- Matrix::Matrix(matrix(as.numeric(1:20), 5, 4), sparse = TRUE)
          dimnames(m) <- list(paste0("g", 1:5), paste0("c", 1:4))
          s <- SeuratObject::CreateSeuratObject(counts = m)
          s[["LOG"]] <- SeuratObject::CreateAssayObject(data = log1p(m))
          s
        })""",
        path,
    )
    with pytest.raises(ValueError, match="'LOG' holds no raw counts"):
        mmaavi.io.read_rds(path, assays={"rna": "RNA", "log": "LOG"})
    mdata = mmaavi.io.read_rds(path)  # the default takes the assays with counts only
    assert list(mdata.mod) == ["rna"]


def test_a_batch_column_that_does_not_exist(bmmc_rds):
    with pytest.raises(KeyError, match=r"batch='donor' is not a column .* 'orig.ident'"):
        mmaavi.io.read_rds(bmmc_rds["seurat"], assays=SEURAT_ASSAYS, batch="donor")
    with pytest.raises(ValueError, match="batch=None means one batch, but the cell table has"):
        mmaavi.io.read_rds(bmmc_rds["seurat"], assays=SEURAT_ASSAYS)


def test_write_rds_errors(bmmc_model, bmmc_read, bmmc_rds, tmp_path):
    mdata = bmmc_model.mdata
    with pytest.raises(ValueError, match="kind must be one of 'sce', 'seurat'"):
        mmaavi.io.write_rds(mdata, tmp_path / "a.rds", "loom", model=bmmc_model)
    fresh = bmmc_read("sce")
    with pytest.raises(KeyError, match=r"no 'X_mmaavi' embedding; pass model="):
        mmaavi.io.write_rds(fresh, tmp_path / "b.rds")
    with pytest.raises(ValueError, match="kind='sce', but base holds a Seurat"):
        mmaavi.io.write_rds(
            mdata, tmp_path / "c.rds", "sce", model=bmmc_model, base=bmmc_rds["seurat"]
        )
    with pytest.raises(ValueError, match="model_dir needs model="):
        mmaavi.io.write_rds(mdata, tmp_path / "d.rds", model_dir=tmp_path / "m")
    subset = mdata[mdata.obs_names[:100]].copy()
    subset.obsm["X_mmaavi"] = bmmc_model.get_latent_representation()[:100]
    with pytest.raises(ValueError, match="base's cells are not those of mdata: 1000 only in base"):
        mmaavi.io.write_rds(subset, tmp_path / "e.rds", base=bmmc_rds["seurat"])
    (tmp_path / "f.rds").write_text("keep me")
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        mmaavi.io.write_rds(mdata, tmp_path / "f.rds", model=bmmc_model)
    assert (tmp_path / "f.rds").read_text() == "keep me"


MISSING_R = textwrap.dedent(
    """
    import os, sys
    import mmaavi
    from mmaavi.io import RNotAvailableError, read_rds

    def message(path="object.rds"):
        try:
            read_rds(path)
        except RNotAvailableError as err:
            return str(err)
        return "no error"

    saved = sys.modules.get("rpy2")
    sys.modules["rpy2"] = None  # as if rpy2 were not installed
    print("NO-RPY2:", message())
    del sys.modules["rpy2"]
    os.environ["R_HOME"] = "/nonexistent/R"
    print("BAD-R_HOME:", message())
    del os.environ["R_HOME"]
    os.environ["PATH"] = os.path.dirname(sys.executable)
    print("NO-R:", message())
    print("RPY2-IMPORTED:", "rpy2.robjects" in sys.modules)
    """
)


def test_r_or_rpy2_missing_says_how_to_install():
    env = {k: v for k, v in __import__("os").environ.items() if k != "R_HOME"}
    out = subprocess.run(
        [sys.executable, "-c", MISSING_R], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)
    assert "needs the Python package rpy2" in lines["NO-RPY2"]
    assert "pip install 'mmaavi[r]'" in lines["NO-RPY2"]
    assert "R_HOME is /nonexistent/R, which holds no R installation" in lines["BAD-R_HOME"]
    assert "no `R` is on the PATH" in lines["NO-R"] and "apt-get install" in lines["NO-R"]
    assert lines["RPY2-IMPORTED"] == "False"
