"""Write mmaavi's bundled BMMC mosaic in a form R reads without Python (inst/extdata/bmmc_mosaic).

Run from the repository root with the project's venv:

    .venv/bin/python inst/scripts/bmmc_extdata.py

For each of the four ``.h5ad`` blocks of ``mmaavi.datasets.bmmc_paths()`` it writes
``<block>.mtx.gz`` (raw counts, features x cells, Matrix Market integer coordinates) and
``<block>_features.tsv.gz`` / ``<block>_cells.tsv.gz`` (one name a line); ``cells.tsv.gz`` holds one row per cell
with its block and the obs columns. Counts and names are copied unchanged.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

import mmaavi

OUT = Path(__file__).resolve().parents[1] / "extdata" / "bmmc_mosaic"
HEADER = """\
Written by inst/scripts/bmmc_extdata.py from python/mmaavi/_data/bmmc_mosaic (the data of
mmaavi.datasets.bmmc_mosaic()): the same counts and names, as Matrix Market files (features x
cells) and gzipped tables, so that R reads them without Python (mmaavi::ReadBMMCMosaic()).
The provenance of the source files follows.

"""
OBS_COLUMNS = ["batch", "sample", "assay", "cell_type", "cell_type_l1"]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tables = {}
    for name, path in mmaavi.datasets.bmmc_paths().items():
        adata = ad.read_h5ad(path)
        counts = sp.csc_matrix(adata.X.T)
        if not np.array_equal(counts.data, np.round(counts.data)):
            raise ValueError(f"{name}: counts are not integers")
        mtx = OUT / f"{name}.mtx"
        scipy.io.mmwrite(mtx, counts.astype(np.int64), field="integer")
        with mtx.open("rb") as src, gzip.open(f"{mtx}.gz", "wb", compresslevel=9) as dst:
            shutil.copyfileobj(src, dst)
        mtx.unlink()
        for what, names in (("features", adata.var_names), ("cells", adata.obs_names)):
            pd.Series(names).to_csv(OUT / f"{name}_{what}.tsv.gz", index=False, header=False)
        obs = adata.obs[OBS_COLUMNS].astype(str)
        obs.insert(0, "block", name)
        tables[name] = obs
    cells = pd.concat(tables.values())
    cells = cells[~cells.index.duplicated(keep="first")]
    cells.index.name = "cell"
    cells.to_csv(OUT / "cells.tsv.gz", sep="\t")
    source = Path(mmaavi.datasets.bmmc_paths()["cite_rna"]).with_name("PROVENANCE.md")
    (OUT / "PROVENANCE.md").write_text(HEADER + source.read_text())


if __name__ == "__main__":
    main()
