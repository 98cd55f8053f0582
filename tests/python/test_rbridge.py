"""mmaavi._rbridge, the R package's entry point, fed as reticulate feeds it (features x cells CSC)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mmaavi
from mmaavi import _rbridge

EPOCHS = 2
N_COMPONENTS = 6


def _r_block(adata, cells=None) -> dict:
    """What R sends for one assay: float64 CSC features x cells and the names."""
    if cells is not None:
        adata = adata[cells]
    return {
        "x": sp.csc_matrix(adata.X.T, dtype=np.float64),
        "features": adata.var_names.tolist(),
        "cells": adata.obs_names.tolist(),
    }


@pytest.fixture(scope="module")
def bmmc_blocks():
    blocks = {name: ad.read_h5ad(p) for name, p in mmaavi.datasets.bmmc_paths().items()}
    obs = pd.concat([blocks["cite_rna"].obs, blocks["multiome_rna"].obs])[
        ["batch", "cell_type_l1"]
    ].astype(str)
    return blocks, obs


def _r_input(blocks, shuffle_seed=None):
    """The BMMC mosaic as R sends it: RNA as two blocks, cells optionally shuffled."""

    def cells(adata):
        names = adata.obs_names.to_numpy()
        if shuffle_seed is None:
            return names
        return np.random.default_rng(shuffle_seed).permutation(names)

    return {
        "rna": [
            _r_block(blocks["cite_rna"], cells(blocks["cite_rna"])),
            _r_block(blocks["multiome_rna"], cells(blocks["multiome_rna"])),
        ],
        "adt": [_r_block(blocks["cite_adt"], cells(blocks["cite_adt"]))],
        "atac": [_r_block(blocks["multiome_atac"], cells(blocks["multiome_atac"]))],
    }


@pytest.fixture(scope="module")
def fitted(bmmc_blocks, tmp_path_factory):
    blocks, obs = bmmc_blocks
    model_dir = tmp_path_factory.mktemp("rbridge") / "fit"
    result = _rbridge.fit(
        _r_input(blocks),
        obs,
        str(model_dir),
        n_components=float(N_COMPONENTS),
        seed=0.0,
        args={"max_epochs": float(EPOCHS)},
    )
    return result, model_dir


def test_fit_equals_the_core_on_the_same_data_and_seed(bmmc_blocks, fitted):
    blocks, obs = bmmc_blocks
    result, _ = fitted
    # the core, called directly on the same cells in the bridge's canonical (sorted) order
    by_name = {k: a[np.sort(a.obs_names.to_numpy())] for k, a in blocks.items()}
    mdata = mmaavi.data.mosaic(
        {
            "rna": [by_name["cite_rna"], by_name["multiome_rna"]],
            "adt": by_name["cite_adt"],
            "atac": by_name["multiome_atac"],
        },
        batch_key="batch",
    )
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=N_COMPONENTS)
    model.train(max_epochs=EPOCHS, seed=0, progress="none")
    assert result["cells"] == mdata.obs_names.tolist()
    np.testing.assert_array_equal(result["latent"], model.get_latent_representation())
    assert result["modalities"] == ["rna", "adt", "atac"]
    assert result["latent"].dtype == np.float64


def test_fit_does_not_depend_on_the_input_cell_order(bmmc_blocks, fitted, tmp_path):
    blocks, obs = bmmc_blocks
    result, _ = fitted
    shuffled = _rbridge.fit(
        _r_input(blocks, shuffle_seed=3),
        obs.sample(frac=1.0, random_state=3),
        str(tmp_path / "shuffled"),
        n_components=N_COMPONENTS,
        args={"max_epochs": EPOCHS},
    )
    assert shuffled["cells"] == result["cells"]
    np.testing.assert_array_equal(shuffled["latent"], result["latent"])


def test_fit_attention_is_zero_where_a_modality_was_not_measured(bmmc_blocks, fitted):
    _, obs = bmmc_blocks
    result, _ = fitted
    attention = pd.DataFrame(
        result["attention"], index=result["cells"], columns=["rna", "adt", "atac"]
    )
    cite = obs.loc[attention.index, "batch"].str.startswith("cite").to_numpy()
    assert (attention.loc[~cite, "adt"] == 0).all() and (attention.loc[cite, "atac"] == 0).all()
    assert (attention.loc[cite, "adt"] > 0).all()
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, rtol=1e-5)


def test_saved_directory_reloads_to_the_same_outputs(fitted):
    result, model_dir = fitted
    assert sorted(p.name for p in model_dir.iterdir()) == ["data.h5mu", "model"]
    again = _rbridge.latent(str(model_dir))
    np.testing.assert_array_equal(again["latent"], result["latent"])
    info = _rbridge.describe(str(model_dir))
    assert info["cells"] == result["cells"] and info["modalities"] == ["rna", "adt", "atac"]
    assert len(info["features"]["rna"]) == 1966 and info["mmaavi_version"] == mmaavi.__version__
    assert result["train_info"]["n_epochs"] == EPOCHS
    assert all(len(v) == EPOCHS for v in result["history"].values())


def test_fit_refuses_a_non_empty_directory_and_bad_blocks(bmmc_blocks, fitted, tmp_path):
    blocks, obs = bmmc_blocks
    _, model_dir = fitted
    with pytest.raises(FileExistsError, match="not empty"):
        _rbridge.fit(_r_input(blocks), obs, str(model_dir), n_components=N_COMPONENTS)
    dense = {"rna": [dict(_r_block(blocks["cite_rna"]), x=np.ones((1000, 600)))]}
    with pytest.raises(TypeError, match="expected a sparse matrix"):
        _rbridge.fit(dense, obs, str(tmp_path / "a"), n_components=N_COMPONENTS)
    short = {"rna": [dict(_r_block(blocks["cite_rna"]), features=["g1", "g2"])]}
    with pytest.raises(ValueError, match="1000 x 600 but 2 feature and 600 cell names"):
        _rbridge.fit(short, obs, str(tmp_path / "b"), n_components=N_COMPONENTS)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        _rbridge.fit(_r_input(blocks), obs, str(tmp_path / "c"), n_components=6, threads=0)


def test_one_cell_and_one_feature_arrive_as_plain_strings(tmp_path):
    x = sp.csc_matrix(np.array([[3.0]]))
    mdata = _rbridge.build_mosaic(
        {"rna": {"x": x, "features": "g1", "cells": "c1"}},
        pd.DataFrame({"batch": ["b"]}, index=["c1"]),
        "batch",
    )
    assert mdata.obs_names.tolist() == ["c1"] and mdata.mod["rna"].var_names.tolist() == ["g1"]


def test_bayes_factors_for_groups_named_by_cell(bmmc_blocks, fitted):
    _, obs = bmmc_blocks
    _, model_dir = fitted
    labels = obs["cell_type_l1"]
    columns = _rbridge.bayes_factors(
        str(model_dir),
        labels.index.tolist(),
        labels.tolist(),
        "B",
        modality="adt",
        differential_args={"n_samples": 200.0, "seed": 0.0},
    )
    assert isinstance(columns["feature"], list) and columns["bayes_factor"].dtype == np.float64
    assert columns["is_de_fdr_0.05"].dtype == bool
    table = pd.DataFrame(columns)
    assert {"feature", "bayes_factor", "proba_de", "lfc_mean", "is_de_fdr_0.05"} <= set(table)
    assert set(table["modality"]) == {"adt"} and set(table["group2"]) == {"rest"}
    assert len(table) == 134
    with pytest.raises(KeyError, match="1 cells are not in the model"):
        _rbridge.bayes_factors(str(model_dir), ["nope"], ["B"], "B")


def test_impute_is_features_by_cells(fitted):
    result, model_dir = fitted
    out = _rbridge.impute(str(model_dir), "adt")
    assert out["values"].shape == (134, 1100) and out["cells"] == result["cells"]
    assert np.isfinite(out["values"]).all() and (out["values"] >= 0).all()


def test_load_names_what_a_model_directory_needs(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a model directory written by RunMMAAVI"):
        _rbridge.load(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="not a model directory written by RunMMAAVI"):
        _rbridge.describe(str(tmp_path))


def test_extra_arguments_go_to_the_model_or_train_by_name():
    model_args, train_args = _rbridge._split_args({"n_latent": 8.0, "max_epochs": 3.0, "lr": 0.01})
    assert model_args == {"n_latent": 8} and train_args == {"max_epochs": 3, "lr": 0.01}
    with pytest.raises(TypeError, match="unknown argument 'max_epoch'.*max_epochs"):
        _rbridge._split_args({"max_epoch": 3})
    with pytest.raises(TypeError, match="unknown argument 'seed'"):
        _rbridge._split_args({"seed": 1})


def test_integral_doubles_from_r_become_int():
    out = _rbridge._integers({"max_epochs": 3.0, "lr": 1.0, "encoder_hidden": [64.0, 32.0]})
    assert out == {"max_epochs": 3, "lr": 1.0, "encoder_hidden": [64, 32]}
    assert isinstance(out["max_epochs"], int) and isinstance(out["lr"], float)


def test_versions_name_the_running_python():
    info = _rbridge.versions()
    assert info["mmaavi"] == mmaavi.__version__ and info["executable"]
