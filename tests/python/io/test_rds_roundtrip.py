"""Seurat / SCE .rds built in R -> read_rds -> train -> write_rds -> read back in R."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _rtools import embedding_in_r

import mmaavi
from mmaavi import _rbridge


def _cells_in_r(r, path) -> list[str]:
    with r.quiet():
        return r.strings(r.ro.r(f'colnames(readRDS("{path}"))'))


def test_seurat_and_sce_give_the_same_mosaic(bmmc_read):
    seurat, sce = bmmc_read("seurat"), bmmc_read("sce")
    assert list(seurat.obs_names) == list(sce.obs_names)
    assert list(seurat.mod) == list(sce.mod) == ["rna", "adt", "atac"]
    for m in seurat.mod:
        a, b = seurat.mod[m], sce.mod[m]
        assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
        assert (a.X != b.X).nnz == 0
    # the mosaic rules: ADT in the CITE cells only, ATAC in the Multiome cells only, and the
    # RNA genes a panel lacks unmeasured in its batches, not zero
    batch = seurat.obs["batch"].astype(str)
    assert set(batch[seurat.mod["adt"].obs_names]) == {"cite_s1d1", "cite_s1d2"}
    assert set(batch[seurat.mod["atac"].obs_names]) == {"multiome_s1d1", "multiome_s1d2"}
    measured = seurat.mod["rna"].varm["mmaavi_measured"]
    assert measured.shape[1] == 4 and not measured.to_numpy().all()
    assert list(seurat.obs["batch"].cat.categories) == sorted(set(batch))
    assert {"cell_type_l1", "nCount_RNA"} <= set(seurat.obs.columns)
    assert seurat.uns["mmaavi_rds"]["assays"] == {"rna": "RNA", "adt": "ADT", "atac": "ATAC"}


def test_seurat_round_trip_keeps_the_cell_order_and_values(r, bmmc_rds, bmmc_model, tmp_path):
    mdata = bmmc_model.mdata
    z = pd.DataFrame(bmmc_model.get_latent_representation(), index=mdata.obs_names)
    out = tmp_path / "result.rds"
    mmaavi.io.write_rds(mdata, out, model=bmmc_model, base=bmmc_rds["seurat"])
    values, rows, cols = embedding_in_r(r, out, "seurat", "mmaavi")
    original = _cells_in_r(r, bmmc_rds["seurat"])
    assert rows == original != list(mdata.obs_names)  # the object's order, not the model's
    assert cols == [f"MMAAVI_{i + 1}" for i in range(30)]
    np.testing.assert_array_equal(values, z.loc[original].to_numpy(np.float64))
    with r.quiet():
        r.ro.r(f'seu <- readRDS("{out}")')
        key = r.strings(r.ro.r('SeuratObject::Key(seu[["mmaavi"]])'))
        attention = r.array(
            r.ro.r("as.matrix(seu[[]][, paste0('mmaavi_attention_', c('rna', 'adt', 'atac'))])")
        )
        misc_batch = r.strings(r.ro.r('SeuratObject::Misc(seu[["mmaavi"]])$batch'))
        kept = r.strings(r.ro.r("SeuratObject::Assays(seu)"))
    assert key == ["MMAAVI_"] and misc_batch == ["batch"] and kept == ["RNA", "ADT", "ATAC"]
    expected = bmmc_model.get_attention().loc[original].to_numpy(np.float64)
    np.testing.assert_array_equal(attention, expected)


def test_sce_round_trip_with_labels_and_a_model_directory(r, bmmc_read, bmmc_rds, tmp_path):
    mdata = bmmc_read("sce")
    model = mmaavi.MMAAVI(mdata, batch_key="batch", label_key="cell_type_l1")
    model.train(max_epochs=1, seed=0, progress="none")
    out = tmp_path / "result.rds"
    mmaavi.io.write_rds(mdata, out, model=model, base=bmmc_rds["sce"], model_dir=tmp_path / "model")
    values, rows, _ = embedding_in_r(r, out, "sce", "MMAAVI")
    original = _cells_in_r(r, bmmc_rds["sce"])
    z = pd.DataFrame(model.get_latent_representation(), index=mdata.obs_names)
    assert rows == original
    np.testing.assert_array_equal(values, z.loc[original].to_numpy(np.float64))
    # the saved model directory (R package layout) reloads to the same embedding
    saved = _rbridge.latent(str(tmp_path / "model"))
    np.testing.assert_array_equal(saved["latent"], z.loc[saved["cells"]].to_numpy(np.float64))
    predicted = model.predict_labels()
    with r.quiet():
        r.ro.r(f'sce <- readRDS("{out}")')
        labels = r.strings(r.ro.r("as.character(sce$MMAAVI_label)"))
        levels = r.strings(r.ro.r("levels(sce$MMAAVI_label)"))
        model_dir = r.strings(r.ro.r("S4Vectors::metadata(sce)$mmaavi$MMAAVI$model.dir"))
    assert labels == predicted.loc[original, "label"].astype(str).tolist()
    assert levels == [str(c) for c in predicted.columns[1:]]
    assert model_dir == [str((tmp_path / "model").resolve())]


@pytest.mark.parametrize("kind", ["seurat", "sce"])
def test_a_new_object_reads_back_to_the_same_mosaic(r, bmmc_model, kind, tmp_path):
    mdata = bmmc_model.mdata
    out = tmp_path / f"new_{kind}.rds"
    mmaavi.io.write_rds(mdata, out, kind, model=bmmc_model)
    name = "mmaavi" if kind == "seurat" else "MMAAVI"
    values, rows, _ = embedding_in_r(r, out, kind, name)
    assert rows == mdata.uns["mmaavi_rds"]["cells"]  # the order read_rds recorded
    z = pd.DataFrame(bmmc_model.get_latent_representation(), index=mdata.obs_names)
    np.testing.assert_array_equal(values, z.loc[rows].to_numpy(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        again = mmaavi.io.read_rds(
            out, assays={"rna": "RNA", "adt": "ADT", "atac": "ATAC"}, batch="batch"
        )
    assert list(again.obs_names) == list(mdata.obs_names)
    for m in mdata.mod:
        a, b = mdata.mod[m], again.mod[m]
        assert list(a.var_names) == list(b.var_names) and (a.X != b.X).nnz == 0
    assert again.obs["cell_type_l1"].astype(str).equals(mdata.obs["cell_type_l1"].astype(str))


def test_write_rds_modifies_neither_the_mosaic_nor_the_model(bmmc_model, bmmc_rds, tmp_path):
    mdata = bmmc_model.mdata
    obs, obsm, uns = mdata.obs.copy(), set(mdata.obsm), set(mdata.uns)
    x = mdata.mod["rna"].X.copy()
    state = {k: v.clone() for k, v in bmmc_model.module.state_dict().items()}
    mmaavi.io.write_rds(mdata, tmp_path / "a.rds", "seurat", model=bmmc_model)
    mmaavi.io.write_rds(mdata, tmp_path / "b.rds", model=bmmc_model, base=bmmc_rds["seurat"])
    pd.testing.assert_frame_equal(mdata.obs, obs)
    assert set(mdata.obsm) == obsm and set(mdata.uns) == uns
    assert (mdata.mod["rna"].X != x).nnz == 0
    np.testing.assert_array_equal(mdata.mod["rna"].X.indices, x.indices)
    for k, v in bmmc_model.module.state_dict().items():
        assert bool((v == state[k]).all()), k
