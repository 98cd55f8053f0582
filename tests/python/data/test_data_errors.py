"""Bad input to mosaic() and setup_mosaic(): every check raises with a helpful message.

Small synthetic AnnData objects; they test shapes and messages only.
"""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmaavi import _constants as K
from mmaavi.data import mosaic, setup_mosaic


def make(cells, features, batch="b1", x=None, seed=0):
    """AnnData with Poisson counts, given cell / feature names and one batch (or a list)."""
    cells, features = list(cells), list(features)
    if x is None:
        x = np.random.default_rng(seed).poisson(2.0, (len(cells), len(features))).astype(np.float32)
    batches = [batch] * len(cells) if isinstance(batch, str) else list(batch)
    obs = pd.DataFrame({"batch": batches}, index=cells)
    return ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=features))


def cells(prefix, n):
    return [f"{prefix}{i}" for i in range(n)]


GENES = [f"g{i}" for i in range(6)]
PROTEINS = [f"p{i}" for i in range(4)]


def user_mudata(**x_by_mod):
    """A MuData built by hand (not through mosaic), one batch per modality's cells."""
    rna = make(cells("c", 6), GENES, x=x_by_mod.get("rna"))
    adt = make(cells("c", 6)[2:], PROTEINS, x=x_by_mod.get("adt"))
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData({"rna": rna, "adt": adt})
    mdata.obs["batch"] = pd.Categorical(["b1"] * 3 + ["b2"] * 3)
    return mdata


# ---------------------------------------------------------------- mosaic() input checks


def test_empty_mapping():
    with pytest.raises(ValueError, match="modalities is empty"):
        mosaic({})


def test_not_a_mapping():
    with pytest.raises(TypeError, match="expected a mapping modality name"):
        mosaic([make(cells("c", 3), GENES)])


@pytest.mark.parametrize("value", [np.ones((3, 2)), "rna.h5ad", [np.ones((3, 2))]])
def test_non_anndata_value(value):
    with pytest.raises(TypeError, match="modality 'rna'.*expected an AnnData.*found"):
        mosaic({"rna": value})


def test_empty_list_of_blocks():
    with pytest.raises(ValueError, match="modality 'rna' is empty.*empty list"):
        mosaic({"rna": []})


@pytest.mark.parametrize("shape", [(0, 6), (3, 0)])
def test_empty_modality(shape):
    empty = ad.AnnData(
        X=np.zeros(shape, dtype=np.float32),
        obs=pd.DataFrame({"batch": ["b1"] * shape[0]}, index=cells("c", shape[0])),
        var=pd.DataFrame(index=GENES[: shape[1]]),
    )
    with pytest.raises(ValueError, match=rf"modality 'adt' is empty: found {shape[0]} cells x "):
        mosaic({"rna": make(cells("c", 3), GENES), "adt": empty})


def test_duplicated_cells():
    a = make(["c0", "c1", "c0"], GENES)
    with pytest.raises(ValueError, match="cell names must be unique.*'c0'.*obs_names_make_unique"):
        mosaic({"rna": a})


def test_duplicated_cells_across_blocks():
    a, b = make(cells("c", 3), GENES), make(["c2", "d1"], GENES[:3])
    with pytest.raises(ValueError, match="1 cells appear in more than one block.*'c2'"):
        mosaic({"rna": [a, b]})


def test_duplicated_features_in_block():
    a = make(cells("c", 3), GENES)
    b = make(cells("d", 3), ["g0", "g1", "g0"])
    with pytest.raises(
        ValueError, match=r"modality 'rna', block 1: feature names must be unique.*'g0'"
    ):
        mosaic({"rna": [a, b]})


def test_missing_batch_key_names_modality_and_columns():
    a = make(cells("c", 3), GENES)
    b = make(cells("c", 3), PROTEINS)
    b.obs = b.obs.rename(columns={"batch": "sample"})
    with pytest.raises(KeyError, match=r"modality 'adt'.*'batch' not found.*available.*'sample'"):
        mosaic({"rna": a, "adt": b})


def test_nan_batch():
    a = make(cells("c", 4), GENES, batch=["b1", np.nan, "b1", np.nan])
    with pytest.raises(ValueError, match=r"'batch' has 2 missing \(NaN\) values.*'c1', 'c3'"):
        mosaic({"rna": a})


def test_conflicting_batches_across_modalities():
    a = make(cells("c", 3), GENES, batch="b1")
    b = make(cells("c", 3), PROTEINS, batch=["b1", "b1", "b2"])
    with pytest.raises(
        ValueError,
        match=r"1 cells are assigned to different 'batch'.*'c2' \(rna: 'b1'; adt: 'b2'\)",
    ):
        mosaic({"rna": a, "adt": b})


def test_pairing_claimed_but_names_differ():
    a = make(cells("c", 3), GENES, batch="s1")
    b = make([f"c{i}-1" for i in range(3)], PROTEINS, batch="s1")
    with pytest.raises(
        ValueError,
        match=r"Batch 's1' appears in modalities 'rna' and 'adt'.*share nothing.*'c0'.*'c0-1'",
    ):
        mosaic({"rna": a, "adt": b})


def test_obs_argument_checks():
    a = make(cells("c", 3), GENES)
    with pytest.raises(TypeError, match="obs: expected a pandas DataFrame"):
        mosaic({"rna": a}, obs={"batch": ["b1"] * 3})
    with pytest.raises(KeyError, match="'donor' not found"):
        mosaic({"rna": a}, batch_key="donor", obs=pd.DataFrame({"x": [1]}, index=["c0"]))
    partial = pd.DataFrame({"donor": ["d1", "d2"]}, index=["c0", "c1"])
    with pytest.raises(KeyError, match=r"1 cells of the modalities are not in its index.*'c2'"):
        mosaic({"rna": a}, batch_key="donor", obs=partial)


# ---------------------------------------------------------------- mosaic() behaviour, synthetic


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.astype(np.int64),
        lambda x: x.astype(np.float64),
        lambda x: x > 1,
        lambda x: sp.csc_matrix(x),
        lambda x: sp.csr_matrix(x.astype(np.int32)),
    ],
    ids=["int64", "float64", "bool", "csc", "csr-int32"],
)
def test_count_types_are_converted_without_mutation(convert):
    base = np.random.default_rng(0).poisson(2.0, (4, 6))
    x = convert(base)
    kept = x.copy()
    a = make(cells("c", 4), GENES, x=x)
    mdata = mosaic({"rna": a})
    out = mdata.mod["rna"].X
    assert isinstance(out, sp.csr_matrix) and out.dtype == np.float32
    dense_in = kept.toarray() if sp.issparse(kept) else np.asarray(kept)
    np.testing.assert_array_equal(out.toarray(), dense_in.astype(np.float32))
    now = a.X.toarray() if sp.issparse(a.X) else a.X
    np.testing.assert_array_equal(now, dense_in)
    assert type(a.X) is type(kept) and a.X.dtype == kept.dtype


def test_blocks_union_and_unmeasured():
    a = make(cells("c", 3), ["g0", "g1", "g2"], batch="b1")
    b = make(cells("d", 2), ["g2", "g3"], batch="b2")
    mdata = mosaic({"rna": [a, b]})
    rna = mdata.mod["rna"]
    assert rna.var_names.tolist() == ["g0", "g1", "g2", "g3"]
    measured = rna.varm["mmaavi_measured"]
    assert measured.to_numpy().tolist() == [
        [True, False],
        [True, False],
        [True, True],
        [False, True],
    ]
    x = rna.X.toarray()
    np.testing.assert_array_equal(x[:3, :3], a.X)
    np.testing.assert_array_equal(x[3:, 2:], b.X)
    assert not x[:3, 3].any() and not x[3:, :2].any()
    data = setup_mosaic(mdata)
    assert data.block["rna"].tolist() == [0, 0, 0, 1, 1]
    fmask = data.minibatch(np.arange(5))[K.mod_key(K.FMASK, "rna")].numpy()
    np.testing.assert_array_equal(fmask, measured.to_numpy().T[[0, 0, 0, 1, 1]])


def test_blocks_with_identical_features_store_no_mask():
    a = make(cells("c", 3), GENES, batch="b1")
    b = make(cells("d", 2), GENES, batch="b2")
    mdata = mosaic({"rna": [a, b]})
    assert "mmaavi_measured" not in mdata.mod["rna"].varm
    assert setup_mosaic(mdata).block_measured["rna"] is None


def test_global_obs_order_and_first_modality_wins():
    a = make(["c1", "c2"], GENES)
    a.obs["label"] = ["from_rna", "from_rna"]
    b = make(["c3", "c1"], PROTEINS)
    b.obs["label"] = ["adt_only", "from_adt"]
    mdata = mosaic({"rna": a, "adt": b})
    assert mdata.obs_names.tolist() == ["c1", "c2", "c3"]
    assert mdata.obs["label"].tolist() == ["from_rna", "from_rna", "adt_only"]


# ---------------------------------------------------------------- setup_mosaic() checks


def test_setup_not_mudata():
    with pytest.raises(TypeError, match="expected a mudata.MuData, found AnnData"):
        setup_mosaic(make(cells("c", 3), GENES))


def test_setup_user_built_mudata():
    mdata = user_mudata()
    before = mdata.mod["rna"].X.copy()
    data = setup_mosaic(mdata, likelihoods={"adt": "zinb"})
    assert data.modalities == ("rna", "adt")
    assert data.obs_mask[:, 1].tolist() == [False, False, True, True, True, True]
    assert data.block["adt"].tolist() == [-1, -1, 0, 0, 0, 0]
    assert data.block_measured == {"rna": None, "adt": None}
    assert data.likelihoods == {"rna": "nb", "adt": "zinb"}
    assert data.labels.tolist() == [-1] * 6 and data.label_categories is None
    np.testing.assert_array_equal(mdata.mod["rna"].X, before)
    batch = data.minibatch(np.array([0, 4]))
    assert batch[K.mod_key(K.X, "adt")][0].sum() == 0
    np.testing.assert_array_equal(
        batch[K.mod_key(K.X, "adt")][1].numpy(), mdata.mod["adt"]["c4"].X[0]
    )


def test_setup_cell_without_modality():
    mdata = user_mudata()
    mdata.mod["rna"] = mdata.mod["rna"][1:].copy()  # c0 keeps its obs row but loses its data
    with pytest.raises(ValueError, match=r"1 cells of mdata.obs have no observed modality.*'c0'"):
        setup_mosaic(mdata)


def test_setup_mod_cell_not_in_obs():
    mdata = user_mudata()
    mdata.mod["adt"].obs_names = ["c2", "c3", "c4", "zz"]
    with pytest.raises(
        ValueError, match=r"mdata.mod\['adt'\]: 1 cells are not in mdata.obs_names.*'zz'"
    ):
        setup_mosaic(mdata)


def test_setup_missing_batch_column_hints_pull_obs():
    mdata = user_mudata()
    mdata.obs = mdata.obs.rename(columns={"batch": "rna:batch"})
    with pytest.raises(KeyError, match=r"'batch' not found.*'rna:batch'.*pull_obs"):
        setup_mosaic(mdata)
    with pytest.raises(KeyError, match=r"adversarial_key='donor'.*'donor' not found"):
        setup_mosaic(mdata, "rna:batch", adversarial_key="donor")


def test_setup_nan_batch():
    mdata = user_mudata()
    mdata.obs["batch"] = ["b1", None, "b1", "b2", None, "b2"]
    with pytest.raises(ValueError, match=r"2 missing \(NaN\) values.*'c1', 'c4'"):
        setup_mosaic(mdata)


@pytest.mark.parametrize(
    "value, what",
    [(-1.0, "negative"), (0.5, "not integers"), (np.nan, "NaN/Inf"), (np.inf, "NaN/Inf")],
)
def test_setup_rejects_non_counts(value, what):
    x = np.ones((6, 6), dtype=np.float32)
    x[1, 2] = value
    with pytest.raises(ValueError, match=rf"Modality 'rna'.*1 entries.*{what}"):
        setup_mosaic(user_mudata(rna=x))


def test_setup_non_count_message_says_how_to_fix():
    x = np.full((6, 6), 0.25, dtype=np.float32)
    with pytest.raises(ValueError, match=r"36 entries.*0\.25.*raw counts.*likelihood='normal'"):
        setup_mosaic(user_mudata(rna=x))


def test_setup_normal_likelihood_accepts_real_values_but_not_nan():
    x = np.random.default_rng(0).normal(size=(6, 6)).astype(np.float32)
    data = setup_mosaic(user_mudata(rna=x), likelihoods={"rna": "normal"})
    assert data.likelihoods["rna"] == "normal"
    enc = data.minibatch(np.arange(6))[K.mod_key(K.ENC, "rna")].numpy()
    assert np.isfinite(enc).all()
    np.testing.assert_allclose(enc[:3].mean(axis=0), 0, atol=1e-5)  # z-score of the raw values
    np.testing.assert_allclose(enc[:3].std(axis=0), 1, atol=1e-4)
    pca = setup_mosaic(user_mudata(rna=x), likelihoods={"rna": "normal"}, transform={"rna": "pca"})
    assert np.isfinite(pca.transforms["rna"].values).all()
    with pytest.raises(ValueError, match="transform 'lsi' for modality 'rna' needs counts"):
        setup_mosaic(user_mudata(rna=x), likelihoods={"rna": "normal"}, transform={"rna": "lsi"})
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN/Inf"):
        setup_mosaic(user_mudata(rna=x), likelihoods={"rna": "normal"})


def test_setup_bad_likelihoods():
    with pytest.raises(
        ValueError, match=r"likelihood for modality 'rna': expected one of nb, zinb"
    ):
        setup_mosaic(user_mudata(), likelihoods={"rna": "poisson"})
    with pytest.raises(KeyError, match=r"likelihoods names unknown modalities 'atac'"):
        setup_mosaic(user_mudata(), likelihoods={"atac": "bernoulli"})
    with pytest.raises(TypeError, match="likelihoods: expected a dict"):
        setup_mosaic(user_mudata(), likelihoods="nb")


def test_setup_bad_transform():
    with pytest.raises(
        ValueError, match=r"transform for modality 'rna': expected one of log1p_norm"
    ):
        setup_mosaic(user_mudata(), transform="tfidf")
    with pytest.raises(KeyError, match="transform names unknown modalities 'atac'"):
        setup_mosaic(user_mudata(), transform={"atac": "lsi"})


def test_setup_labels():
    mdata = user_mudata()
    mdata.obs["cell_type"] = ["T", "B", np.nan, "unknown", "B", "T"]
    data = setup_mosaic(mdata, label_key="cell_type", unlabeled_category="unknown")
    assert data.label_categories.tolist() == ["B", "T"]
    assert data.labels.tolist() == [1, 0, -1, -1, 0, 1]
    mdata.obs["cell_type"] = pd.Categorical(
        ["T", "B", "B", "T", "B", "T"], categories=["T", "B", "NK"]
    )
    data = setup_mosaic(mdata, label_key="cell_type")
    assert data.label_categories.tolist() == ["T", "B"]
    assert data.labels.tolist() == [0, 1, 1, 0, 1, 0]
    with pytest.raises(KeyError, match=r"label_key='ct'.*not found"):
        setup_mosaic(mdata, label_key="ct")


def test_setup_adversarial_key():
    mdata = user_mudata()
    mdata.obs["site"] = ["s2", "s2", "s1", "s1", "s1", "s1"]
    data = setup_mosaic(mdata, adversarial_key="site")
    assert data.adv_categories.tolist() == ["s1", "s2"]
    assert data.adv.tolist() == [1, 1, 0, 0, 0, 0]
    assert data.batch.tolist() == [0, 0, 0, 1, 1, 1]


def test_minibatch_rejects_bad_index():
    data = setup_mosaic(user_mudata())
    with pytest.raises(TypeError, match="1-D integer array"):
        data.minibatch(np.array([0.0, 1.0]))
    with pytest.raises(KeyError, match="unknown modality 'atac'"):
        data.n_input("atac")


def test_log1p_norm_small_exact():
    x = np.array([[0, 1], [3, 1], [0, 1], [1, 0], [2, 5], [0, 0]], dtype=np.float32)
    data = setup_mosaic(user_mudata(rna=np.hstack([x, x, x])))
    enc = data.minibatch(np.arange(6))[K.mod_key(K.ENC, "rna")].numpy()
    for rows in ([0, 1, 2], [3, 4, 5]):
        logged = np.log1p(x[rows])
        sd = logged.std(axis=0)
        expected = (logged - logged.mean(axis=0)) / np.where(sd < 1e-6, 1, sd)
        np.testing.assert_allclose(enc[rows][:, :2], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["", "rna/x", "rna:x"])
def test_bad_modality_name(name):
    with pytest.raises(ValueError, match="modality names must be non-empty strings"):
        mosaic({name: make(cells("c", 3), GENES)})


def test_mixed_obs_columns_survive_h5mu(tmp_path):
    a = make(cells("c", 3), GENES)
    a.obs["mixed"] = pd.Series(["x", 1, None], index=a.obs_names, dtype=object)
    a.obs["flag"] = pd.Series([True, False, True], index=a.obs_names, dtype=object)
    mdata = mosaic({"rna": a})
    assert mdata.obs["flag"].dtype == bool
    assert mdata.obs["mixed"].tolist()[:2] == ["x", "1"] and pd.isna(mdata.obs["mixed"].iloc[2])
    with mudata.set_options(pull_on_update=False):
        mdata.write(tmp_path / "m.h5mu")
        back = mudata.read_h5mu(tmp_path / "m.h5mu")
    assert back.obs["mixed"].tolist()[:2] == ["x", "1"]
