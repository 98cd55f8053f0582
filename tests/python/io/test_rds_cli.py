"""``mmaavi fit --rds object.rds --assays ... --out result.rds``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _rtools import embedding_in_r

from mmaavi import _rbridge
from mmaavi.cli import main


def test_fit_on_an_rds_writes_the_object_back_with_the_results(r, bmmc_rds, tmp_path):
    out = tmp_path / "result.rds"
    argv = [
        "fit", "--rds", str(bmmc_rds["seurat_shuffled"]), "--assays", "rna=RNA,adt=ADT,atac=ATAC",
        "--batch-key", "batch", "--n-components", "6", "--max-epochs", "2", "--out", str(out),
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="all-zero column count as not measured"):
        assert main(argv) == 0
    folder = tmp_path / "result"
    assert (folder / "embedding.csv").is_file() and (folder / "model" / "model.json").is_file()
    values, rows, _ = embedding_in_r(r, out, "seurat", "mmaavi")
    with r.quiet():
        original = r.strings(r.ro.r(f'colnames(readRDS("{bmmc_rds["seurat_shuffled"]}"))'))
        model_dir = r.strings(r.ro.r(f'SeuratObject::Misc(readRDS("{out}")[["mmaavi"]])$model.dir'))
    assert rows == original
    assert model_dir == [str(folder.resolve())]
    saved = _rbridge.latent(str(folder))  # the folder is a model directory of the R package
    z = pd.DataFrame(saved["latent"], index=saved["cells"])
    np.testing.assert_array_equal(values, z.loc[rows].to_numpy())
    csv = pd.read_csv(folder / "embedding.csv", index_col=0)
    np.testing.assert_allclose(csv.loc[rows].to_numpy(), values, rtol=1e-6)


def test_rds_input_errors(bmmc_rds, tmp_path):
    base = ["fit", "--n-components", "6", "--out", str(tmp_path / "x.rds")]
    with pytest.raises(SystemExit, match="give one input, --h5mu, --modality or --rds"):
        main([*base, "--rds", "a.rds", "--h5mu", "b.h5mu"])
    with pytest.raises(SystemExit, match="--assays goes with --rds"):
        main([*base, "--h5mu", "b.h5mu", "--assays", "rna=RNA"])
    with pytest.raises(SystemExit, match="--assays expects MODALITY=ASSAY"):
        main([*base, "--rds", str(bmmc_rds["seurat"]), "--assays", "rna"])
    with pytest.raises(SystemExit, match=r"mmaavi: assays: 'adt' -> 'PROT', but the object has"):
        main([*base, "--rds", str(bmmc_rds["seurat"]), "--assays", "rna=RNA,adt=PROT"])
    assert not (tmp_path / "x.rds").exists()
