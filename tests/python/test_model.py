"""The public MMAAVI class: outputs, reproducibility, save/load, on the bundled BMMC mosaic."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch

import mmaavi
from mmaavi import MMAAVI

N_COMPONENTS = 6


def _train(mdata, seed: int = 0, epochs: int = 2) -> MMAAVI:
    model = MMAAVI(mdata, batch_key="batch", n_components=N_COMPONENTS)
    model.train(max_epochs=epochs, seed=seed, progress="none")
    return model


@pytest.fixture(scope="module")
def bmmc():
    return mmaavi.datasets.bmmc_mosaic()


@pytest.fixture(scope="module")
def trained(bmmc):
    return _train(bmmc)


def test_same_seed_same_embedding_and_other_seed_differs(bmmc, trained):
    z0 = trained.get_latent_representation()
    again = _train(bmmc.copy(), seed=0).get_latent_representation()
    other = _train(bmmc.copy(), seed=1).get_latent_representation()
    np.testing.assert_array_equal(z0, again)
    assert not np.allclose(z0, other)


def test_outputs_shapes_and_storage(bmmc, trained):
    z = trained.get_latent_representation()
    assert z.shape == (bmmc.n_obs, 30)
    assert np.isfinite(z).all()
    np.testing.assert_array_equal(bmmc.obsm["X_mmaavi"], z)

    att = trained.get_attention()
    assert list(att.index) == list(bmmc.obs_names)
    np.testing.assert_allclose(att.sum(axis=1), 1.0, rtol=1e-5)
    cite = bmmc.obs["assay"].astype(str).str.contains("cite", case=False).to_numpy()
    assert (att.loc[cite, "atac"] == 0).all() and (att.loc[~cite, "adt"] == 0).all()
    assert (att.loc[cite, "adt"] > 0).all()

    probs = trained.get_component_probabilities()
    assert probs.shape == (bmmc.n_obs, N_COMPONENTS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)

    mean, std = trained.get_feature_embeddings()
    assert mean.shape == (1966 + 134 + 600, 30) and (std.to_numpy() > 0).all()
    assert mean.index.get_level_values("modality").unique().tolist() == ["rna", "adt", "atac"]

    uns = bmmc.uns["mmaavi"]
    assert uns["mix_weight"] == 0.9  # RNA+ADT and RNA+ATAC are co-observed in > 10 cells
    assert uns["train"]["batch_size"] == max(trained.train_info["n_train"] // 65, 32)
    assert {"train_nll", "val_nll", "train_graph", "val_disc", "lr"} <= set(trained.history.columns)
    # each decoder's reconstruction term, summing to nll (which modality overfits, if one does)
    for split in ("train", "val"):
        parts = trained.history[[f"{split}_nll_{m}" for m in ("rna", "adt", "atac")]]
        assert (parts.to_numpy() > 0).all()
        np.testing.assert_allclose(parts.sum(axis=1), trained.history[f"{split}_nll"], rtol=1e-4)
    assert len(trained.history) == 2


def test_impute_every_cell_and_batch_average(bmmc, trained):
    adt = trained.impute("adt", library_size=1.0)
    assert adt.shape == (bmmc.n_obs, 134)
    assert np.isfinite(adt.to_numpy()).all() and (adt.to_numpy() >= 0).all()
    # normalised to a library of 1: every cell's profile sums to 1, measured or not
    np.testing.assert_allclose(adt.sum(axis=1), 1.0, rtol=1e-4)
    # batch=None averages over the batches that measured ADT (the two CITE batches) only
    cite = [b for b in trained.data.batch_categories if str(b).startswith("cite")]
    assert len(cite) == 2
    per_batch = [trained.impute("adt", batch=b, library_size=1.0) for b in cite]
    np.testing.assert_allclose(
        adt.to_numpy(), np.mean([p.to_numpy() for p in per_batch], axis=0), rtol=1e-4
    )
    np.testing.assert_allclose(
        trained.impute("adt", library_size=1e4).to_numpy(), adt.to_numpy() * 1e4, rtol=1e-4
    )


def test_save_load_same_embedding(bmmc, trained, tmp_path):
    z = trained.get_latent_representation()
    trained.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["mmaavi_version"] == mmaavi.__version__
    loaded = MMAAVI.load(tmp_path / "m", bmmc)
    np.testing.assert_array_equal(loaded.get_latent_representation(), z)
    assert loaded.init_params == trained.init_params
    assert len(loaded.history) == len(trained.history)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(tmp_path / "m")


class _Payload:
    """Unpickling this object would create a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_load_refuses_pickle_payload(bmmc, trained, tmp_path):
    trained.save(tmp_path / "m")
    marker = tmp_path / "pwned"
    with open(tmp_path / "m" / "model.pt", "wb") as fh:
        pickle.dump({"x": _Payload(str(marker))}, fh)
    with pytest.raises(pickle.UnpicklingError):
        MMAAVI.load(tmp_path / "m", bmmc)
    assert not marker.exists()


def test_inputs_not_modified(shared_data):
    import anndata as ad

    folder = shared_data / "pbmc_wnn_rna_adt_mosaic"
    rna, adt = ad.read_h5ad(folder / "rna.h5ad"), ad.read_h5ad(folder / "adt.h5ad")
    before = {
        k: (a.X.copy(), a.obs.copy(), a.var.copy()) for k, a in {"rna": rna, "adt": adt}.items()
    }
    mdata = mmaavi.data.mosaic({"rna": rna, "adt": adt}, batch_key="batch")
    _train(mdata, epochs=1)
    for key, a in {"rna": rna, "adt": adt}.items():
        x, obs, var = before[key]
        assert (a.X != x).nnz == 0
        assert a.obs.equals(obs) and a.var.equals(var)


def test_progress_lines_when_not_a_terminal(bmmc, capsys):
    model = MMAAVI(bmmc.copy(), batch_key="batch", n_components=N_COMPONENTS)
    model.train(max_epochs=1, progress="lines")
    out = capsys.readouterr().out
    assert "mmaavi epoch 1:" in out and "stopped after 1 epochs" in out


def test_mix_weight_auto_without_pairing():
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(0)

    def block(prefix: str, batch: str) -> ad.AnnData:
        a = ad.AnnData(sp.csr_matrix(rng.poisson(1.0, (30, 8)).astype(np.float32)))
        a.obs_names = [f"{prefix}{i}" for i in range(30)]
        a.var_names = [f"{prefix}f{j}" for j in range(8)]
        a.obs["batch"] = batch
        return a

    mdata = mmaavi.data.mosaic({"rna": block("r", "b1"), "adt": block("p", "b2")})
    assert MMAAVI(mdata, n_components=2).init_params["mix_weight"] == 0.99


def test_cuda_request_without_gpu_is_clear(bmmc):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    model = MMAAVI(bmmc.copy(), batch_key="batch", n_components=N_COMPONENTS)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        model.train(max_epochs=1, device="cuda")


def test_results_survive_h5mu_round_trip(bmmc, trained, tmp_path):
    import mudata

    z = trained.get_latent_representation()
    bmmc.write(tmp_path / "result.h5mu")
    back = mudata.read_h5mu(tmp_path / "result.h5mu")
    np.testing.assert_array_equal(back.obsm["X_mmaavi"], z)
    assert back.uns["mmaavi"]["train"]["n_epochs"] == 2
    assert back.uns["mmaavi"]["n_components"] == N_COMPONENTS


def test_semi_supervised_labels_and_extra_components(bmmc):
    """c is tied to the classes; more components than classes never breaks prediction."""
    mdata = bmmc.copy()
    labels = mdata.obs["cell_type_l1"].astype(object).copy()
    rng = np.random.default_rng(0)
    hidden = rng.random(mdata.n_obs) > 0.05  # ~5 % labelled
    labels[hidden] = np.nan
    mdata.obs["partial"] = labels
    # the classes are those of the labelled cells (rare types may have none at 5 %)
    classes = sorted(labels.dropna().astype(str).unique())
    model = MMAAVI(mdata, batch_key="batch", label_key="partial", n_components=len(classes) + 2)
    assert list(model.data.label_categories) == classes
    model.train(max_epochs=2, progress="none")
    pred = model.predict_labels()
    assert list(pred.columns) == ["label", *classes]
    assert list(pred.index) == list(mdata.obs_names)
    np.testing.assert_allclose(pred[classes].sum(axis=1), 1.0, rtol=1e-5)
    assert set(pred["label"].astype(str)) <= set(classes)
    probs = model.get_component_probabilities()
    k = len(classes)
    assert list(probs.columns) == [*classes, f"component_{k}", f"component_{k + 1}"]
    assert model.train_info["labelled_fraction"] == 0.2
    assert (model.history["train_sup"] > 0).all()
    with pytest.raises(ValueError, match="labelled_fraction"):
        model.train(max_epochs=1, labelled_fraction=1.5)


def test_class_prior_is_uniform_without_labels_and_labelled_frequencies_with(bmmc, trained):
    """p(c): uniform unsupervised; in semi-supervised mode the add-one smoothed frequencies of
    the labelled cells, extra components counted as classes without labels."""
    k = trained.module.n_components
    np.testing.assert_allclose(trained.module.log_prior_c.exp().numpy(), np.full(k, 1 / k))
    mdata = bmmc.copy()
    labels = pd.Series(np.nan, index=mdata.obs_names, dtype=object)
    labels.iloc[:6] = "B"
    labels.iloc[6:8] = "T"
    mdata.obs["few"] = labels
    model = MMAAVI(mdata, batch_key="batch", label_key="few", n_components=3)
    prior = model._build_module().log_prior_c.exp().numpy()
    np.testing.assert_allclose(prior, np.array([7.0, 3.0, 1.0]) / 11, rtol=1e-6)


def test_predict_labels_needs_labels(trained):
    with pytest.raises(ValueError, match="label_key"):
        trained.predict_labels()
