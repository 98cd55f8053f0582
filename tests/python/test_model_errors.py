"""Bad input through the public API (MMAAVI and mmaavi.data.mosaic): clear errors, never NaNs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mudata
import numpy as np
import pandas as pd
import pytest
import torch

import mmaavi
from mmaavi.data import mosaic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _mosaics import SMALL, counts_adata  # noqa: E402

torch.set_num_threads(1)

GENES = [f"g{i}" for i in range(10)]
PROTEINS = [f"p{i}" for i in range(6)]


def cells(prefix: str, n: int, start: int = 0) -> list[str]:
    return [f"{prefix}{i}" for i in range(start, start + n)]


def make_mdata(rna_x=None, adt_x=None, genes=GENES) -> mudata.MuData:
    """20 cells: c0-c9 batch b1 (rna only), c10-c19 batch b2 (rna + adt)."""
    rna = counts_adata(cells("c", 20), genes, ["b1"] * 10 + ["b2"] * 10, x=rna_x)
    adt = counts_adata(cells("c", 10, 10), PROTEINS, ["b2"] * 10, x=adt_x, seed=1)
    return mosaic({"rna": rna, "adt": adt})


@pytest.fixture(scope="module")
def mdata() -> mudata.MuData:
    return make_mdata()


@pytest.fixture(scope="module")
def trained(mdata):
    model = mmaavi.MMAAVI(mdata.copy(), batch_key="batch", n_components=3, **SMALL)
    model.train(max_epochs=1, progress="none")
    return model


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    return trained.save(tmp_path_factory.mktemp("model") / "m")


def test_valid_input_builds_a_model(mdata):
    """Control: the inputs the other tests corrupt are valid."""
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=3, **SMALL)
    assert model.data.n_cells == 20 and model.data.modalities == ("rna", "adt")
    assert not model.is_trained


# ---------------------------------------------------------------- data problems


def test_cell_in_no_modality(mdata):
    bad = mdata.copy()
    bad.mod["rna"] = bad.mod["rna"][1:].copy()  # c0 keeps its obs row, loses its only modality
    assert "c0" in bad.obs_names
    with pytest.raises(ValueError, match=r"1 cells of mdata.obs have no observed modality.*'c0'"):
        mmaavi.MMAAVI(bad, batch_key="batch", n_components=3)


def test_batch_column_missing(mdata):
    with pytest.raises(KeyError, match=r"batch_key='sample'.*column 'sample' not found.*'batch'"):
        mmaavi.MMAAVI(mdata, batch_key="sample", n_components=3)


def test_batch_with_nan(mdata):
    bad = mdata.copy()
    batch = bad.obs["batch"].astype(object).to_numpy()
    batch[3] = np.nan
    bad.obs["batch"] = batch
    with pytest.raises(ValueError, match=r"column 'batch' has 1 missing \(NaN\).*'c3'"):
        mmaavi.MMAAVI(bad, batch_key="batch", n_components=3)


def test_batch_with_nan_in_mosaic():
    rna = counts_adata(cells("c", 4), GENES, ["b1", None, "b1", "b2"])
    with pytest.raises(ValueError, match=r"column 'batch' has 1 missing \(NaN\).*'c1'"):
        mosaic({"rna": rna})


@pytest.mark.parametrize("likelihood", ["nb", "zinb"])
def test_non_integer_counts(likelihood):
    x = np.ones((20, 10), dtype=np.float32)
    x[4, 2] = 0.5
    bad = make_mdata(rna_x=x)
    with pytest.raises(
        ValueError, match=rf"'rna' has likelihood '{likelihood}'.*not integers.*0.5"
    ):
        mmaavi.MMAAVI(bad, n_components=3, likelihoods=likelihood)


def test_negative_counts():
    x = np.ones((10, 6), dtype=np.float32)
    x[0, 0] = -3
    bad = make_mdata(adt_x=x)
    with pytest.raises(ValueError, match=r"'adt'.*negative \(e.g. -3.0\)"):
        mmaavi.MMAAVI(bad, n_components=3, likelihoods={"rna": "nb", "adt": "nb"})


def test_non_integer_counts_allowed_for_normal():
    x = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    model = mmaavi.MMAAVI(
        make_mdata(adt_x=x), n_components=3, likelihoods={"adt": "normal"}, **SMALL
    )
    assert model.data.likelihoods == {"rna": "nb", "adt": "normal"}


def test_duplicated_cell_names():
    names = cells("c", 20)
    names[5] = "c4"
    rna = counts_adata(names, GENES, ["b1"] * 20)
    with pytest.raises(ValueError, match=r"cell names must be unique.*'c4'"):
        mosaic({"rna": rna})


def test_duplicated_feature_names():
    genes = list(GENES)
    genes[3] = "g1"
    rna = counts_adata(cells("c", 20), genes, ["b1"] * 20)
    with pytest.raises(ValueError, match=r"feature names must be unique.*'g1'"):
        mosaic({"rna": rna})


def test_mismatched_cell_names_in_a_shared_batch():
    rna = counts_adata(cells("c", 10), GENES, ["b1"] * 10)
    adt = counts_adata([f"{c}-1" for c in cells("c", 10)], PROTEINS, ["b1"] * 10)
    with pytest.raises(
        ValueError, match=r"Batch 'b1' appears in modalities 'rna' and 'adt'.*share nothing"
    ):
        mosaic({"rna": rna, "adt": adt})


def test_empty_modality_in_mosaic():
    rna = counts_adata(cells("c", 20), GENES, ["b1"] * 20)
    empty = counts_adata([], PROTEINS, [], x=np.zeros((0, 6), dtype=np.float32))
    with pytest.raises(ValueError, match=r"modality 'adt' is empty: found 0 cells"):
        mosaic({"rna": rna, "adt": empty})


def test_empty_modality_in_hand_built_mudata():
    rna = counts_adata(cells("c", 20), GENES, ["b1"] * 10 + ["b2"] * 10)
    empty = counts_adata([], PROTEINS, [], x=np.zeros((0, 6), dtype=np.float32))
    with mudata.set_options(pull_on_update=False):
        bad = mudata.MuData({"rna": rna, "adt": empty})
    bad.obs["batch"] = pd.Categorical(["b1"] * 10 + ["b2"] * 10)
    with pytest.raises(ValueError, match="adt.*(empty|0 cells|no cell)"):
        mmaavi.MMAAVI(bad, batch_key="batch", n_components=3)


# ---------------------------------------------------------------- model arguments


def test_n_components_required_without_labels(mdata):
    with pytest.raises(ValueError, match="n_components is required without labels"):
        mmaavi.MMAAVI(mdata, batch_key="batch")


def test_labels_with_one_class_only(mdata):
    data = mdata.copy()
    labels = np.full(data.n_obs, np.nan, dtype=object)
    labels[:5] = "B"
    data.obs["one_class"] = labels
    with pytest.raises(ValueError, match=r"one class only \('B'\).*at least two classes"):
        mmaavi.MMAAVI(data, batch_key="batch", label_key="one_class")


def test_labels_all_missing(mdata):
    data = mdata.copy()
    data.obs["none"] = np.full(data.n_obs, np.nan, dtype=object)
    with pytest.raises(ValueError, match="every cell is unlabelled"):
        mmaavi.MMAAVI(data, batch_key="batch", label_key="none")


@pytest.mark.parametrize("mix_weight", [0.0, 1.0, 1.5, -0.1, "half"])
def test_mix_weight_outside_unit_interval(mdata, mix_weight):
    with pytest.raises(ValueError, match=r"mix_weight must be 'auto' or a number in \(0, 1\)"):
        mmaavi.MMAAVI(mdata, batch_key="batch", n_components=3, mix_weight=mix_weight)


def test_unknown_likelihood(mdata):
    with pytest.raises(ValueError, match=r"likelihoods must be one of .*'poisson'"):
        mmaavi.MMAAVI(mdata, n_components=3, likelihoods="poisson")
    with pytest.raises(ValueError, match=r"modality 'adt'.*found 'poisson'"):
        mmaavi.MMAAVI(mdata, n_components=3, likelihoods={"adt": "poisson"})


def test_untrained_model_outputs_raise(mdata):
    model = mmaavi.MMAAVI(mdata.copy(), batch_key="batch", n_components=3, **SMALL)
    for call in (
        model.get_latent_representation,
        model.get_attention,
        model.get_feature_embeddings,
        lambda: model.impute("rna"),
    ):
        with pytest.raises(RuntimeError, match=r"not trained yet.*model.train\(\)"):
            call()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_epochs": 0}, "max_epochs must be a positive integer; found 0"),
        ({"max_epochs": 2.5}, "max_epochs must be a positive integer"),
        ({"max_epochs": 1, "validation_size": 1.0}, r"validation_size must be in \[0, 1\)"),
        ({"max_epochs": 1, "early_stopping_patience": 0}, "early_stopping_patience must be"),
    ],
)
def test_bad_train_arguments(mdata, kwargs, match):
    model = mmaavi.MMAAVI(mdata.copy(), batch_key="batch", n_components=3, **SMALL)
    with pytest.raises(ValueError, match=match):
        model.train(progress="none", **kwargs)
    assert not model.is_trained


def test_impute_unknown_modality(trained):
    with pytest.raises(KeyError, match=r"Unknown modality 'nope'.*'rna', 'adt'"):
        trained.impute("nope")


def test_impute_unknown_batch(trained):
    with pytest.raises(KeyError, match=r"Unknown batch 'b9'.*'b1', 'b2'"):
        trained.impute("rna", batch="b9")


def test_trained_model_gives_finite_outputs(trained):
    """Control for the fixture the error tests below rely on."""
    z = trained.get_latent_representation()
    assert z.shape == (20, 4) and np.isfinite(z).all()


# ---------------------------------------------------------------- save / load


def test_load_from_directory_without_model_files(tmp_path, mdata):
    (tmp_path / "model.json").write_text("{}")  # weights missing
    with pytest.raises(
        FileNotFoundError, match=r"not an mmaavi model directory.*model.json.*model.pt"
    ):
        mmaavi.MMAAVI.load(tmp_path, mdata)
    with pytest.raises(FileNotFoundError, match="not an mmaavi model directory"):
        mmaavi.MMAAVI.load(tmp_path / "does-not-exist", mdata)


def test_save_refuses_to_overwrite(trained, saved):
    with pytest.raises(FileExistsError, match="overwrite=True"):
        trained.save(saved)


def test_load_newer_format_version(saved, mdata, tmp_path):
    target = tmp_path / "newer"
    target.mkdir()
    (target / "model.pt").write_bytes((saved / "model.pt").read_bytes())
    meta = json.loads((saved / "model.json").read_text())
    meta["format_version"] = 999
    (target / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"model format 999.*Upgrade mmaavi"):
        mmaavi.MMAAVI.load(target, mdata.copy())


def test_load_roundtrip(saved, trained, mdata):
    """Control: the saved model loads against its own data and gives the same embedding."""
    loaded = mmaavi.MMAAVI.load(saved, mdata.copy())
    assert loaded.is_trained
    np.testing.assert_allclose(
        loaded.get_latent_representation(),
        trained.get_latent_representation(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_load_against_data_with_other_features(saved):
    other = make_mdata(genes=[f"gene{i}" for i in range(10)])
    with pytest.raises(ValueError, match=r"features of modality 'rna' differ.*'g0'"):
        mmaavi.MMAAVI.load(saved, other)


def test_load_against_data_with_other_feature_count(saved):
    other = make_mdata(rna_x=np.ones((20, 8), np.float32), genes=GENES[:8])
    with pytest.raises(ValueError, match=r"features of modality 'rna' differ.*\(10 saved, 8 now"):
        mmaavi.MMAAVI.load(saved, other)


def test_load_against_data_with_other_modalities(saved):
    other = mosaic({"rna": counts_adata(cells("c", 20), GENES, ["b1"] * 10 + ["b2"] * 10)})
    with pytest.raises(ValueError, match=r"trained on modalities \['rna', 'adt'\]"):
        mmaavi.MMAAVI.load(saved, other)


def test_load_against_data_with_other_batches(saved):
    rna = counts_adata(cells("c", 20), GENES, ["b1"] * 10 + ["b3"] * 10)
    adt = counts_adata(cells("c", 10, 10), PROTEINS, ["b3"] * 10, seed=1)
    with pytest.raises(
        ValueError, match=r"batches differ.*\['b1', 'b2'\] saved, \['b1', 'b3'\] now"
    ):
        mmaavi.MMAAVI.load(saved, mosaic({"rna": rna, "adt": adt}))
