"""mosaic() and setup_mosaic() on the real BMMC and PBMC mosaics in ../shared/data."""

from __future__ import annotations

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmaavi import _constants as K
from mmaavi.data import BLOCK_KEY, MEASURED_KEY, mosaic, setup_mosaic

BMMC_FILES = ("cite_rna", "multiome_rna", "cite_adt", "multiome_atac")


@pytest.fixture(scope="module")
def bmmc_inputs(shared_data):
    folder = shared_data / "bmmc_neurips2021_mosaic_starter"
    return {name: ad.read_h5ad(folder / f"{name}.h5ad") for name in BMMC_FILES}


@pytest.fixture(scope="module")
def bmmc(bmmc_inputs):
    a = bmmc_inputs
    return mosaic(
        {
            "rna": [a["cite_rna"], a["multiome_rna"]],
            "adt": a["cite_adt"],
            "atac": a["multiome_atac"],
        },
        batch_key="batch",
    )


@pytest.fixture(scope="module")
def bmmc_data(bmmc):
    return setup_mosaic(bmmc, "batch", label_key="cell_type_l1")


def test_bmmc_layout(bmmc, bmmc_inputs):
    a = bmmc_inputs
    assert bmmc.n_obs == 1100
    assert list(bmmc.mod) == ["rna", "adt", "atac"]
    cite, multi = a["cite_rna"].obs_names, a["multiome_rna"].obs_names
    assert bmmc.obs_names.equals(cite.append(multi))
    rna = bmmc.mod["rna"]
    assert rna.n_vars == 1966
    assert rna.var_names[:1000].equals(a["cite_rna"].var_names)
    assert isinstance(rna.X, sp.csr_matrix) and rna.X.dtype == np.float32
    assert rna.obs[BLOCK_KEY].tolist() == ["0"] * 600 + ["1"] * 500
    measured = rna.varm[MEASURED_KEY]
    assert list(measured.columns) == ["0", "1"]
    assert measured.sum().tolist() == [1000, 1134]
    assert int(measured.all(axis=1).sum()) == 168
    assert MEASURED_KEY not in bmmc.mod["adt"].varm
    # var columns (gene coordinates) survive, first block wins
    assert (
        rna.var.loc[a["multiome_rna"].var_names[-1], "chrom"]
        == (a["multiome_rna"].var["chrom"].iloc[-1])
    )
    assert set(bmmc.obs.columns) >= {"batch", "sample", "cell_type", "cell_type_l1"}
    assert bmmc.obs["batch"].value_counts().to_dict() == {
        "cite_s1d1": 311,
        "cite_s1d2": 289,
        "multiome_s1d2": 279,
        "multiome_s1d1": 221,
    }


def test_bmmc_setup_masks_and_counts(bmmc_data, bmmc_inputs):
    data = bmmc_data
    a = bmmc_inputs
    assert data.n_cells == 1100 and data.n_batches == 4
    assert data.modalities == ("rna", "adt", "atac")
    is_cite = data.obs_names.isin(a["cite_rna"].obs_names)
    np.testing.assert_array_equal(data.obs_mask[:, 0], True)
    np.testing.assert_array_equal(data.obs_mask[:, 1], is_cite)
    np.testing.assert_array_equal(data.obs_mask[:, 2], ~is_cite)
    assert data.block_measured["rna"].shape == (2, 1966)
    assert data.block_measured["rna"].sum(axis=1).tolist() == [1000, 1134]
    assert data.block_measured["adt"] is None and data.block_measured["atac"] is None
    np.testing.assert_array_equal(data.block["adt"], np.where(is_cite, 0, -1))
    assert data.n_input("rna") == data.n_features("rna") == 1966

    # counts checked by name against the inputs (no misalignment)
    rng = np.random.default_rng(1)
    for source, m in [
        ("cite_rna", "rna"),
        ("multiome_rna", "rna"),
        ("cite_adt", "adt"),
        ("multiome_atac", "atac"),
    ]:
        src = a[source]
        cells = rng.choice(src.n_obs, 5, replace=False)
        feats = rng.choice(src.n_vars, 20, replace=False)
        rows = data.obs_names.get_indexer(src.obs_names[cells])
        cols = data.var_names[m].get_indexer(src.var_names[feats])
        got = data.counts[m][rows][:, cols].toarray()
        np.testing.assert_array_equal(got, src.X[cells][:, feats].toarray())
        batch = data.minibatch(rows)
        np.testing.assert_array_equal(batch[K.mod_key(K.X, m)].numpy()[:, cols], got)
    assert data.counts["rna"].sum() == a["cite_rna"].X.sum() + a["multiome_rna"].X.sum()


def test_bmmc_minibatch_fmask(bmmc_data, bmmc_inputs):
    data = bmmc_data
    a = bmmc_inputs
    only_multi = a["multiome_rna"].var_names.difference(a["cite_rna"].var_names)[0]
    shared = a["multiome_rna"].var_names.intersection(a["cite_rna"].var_names)[0]
    f_multi = data.var_names["rna"].get_loc(only_multi)
    f_shared = data.var_names["rna"].get_loc(shared)
    cite_cell = data.obs_names.get_loc(a["cite_rna"].obs_names[3])
    multi_cell = data.obs_names.get_loc(a["multiome_rna"].obs_names[3])
    batch = data.minibatch(np.array([cite_cell, multi_cell]))
    fmask = batch[K.mod_key(K.FMASK, "rna")].numpy()
    assert fmask.dtype == bool
    assert not fmask[0, f_multi] and fmask[1, f_multi]
    assert fmask[0, f_shared] and fmask[1, f_shared]
    assert batch[K.mod_key(K.X, "rna")][0, f_multi] == 0
    assert batch[K.mod_key(K.ENC, "rna")][0, f_multi] == 0
    assert K.mod_key(K.FMASK, "adt") not in batch
    assert batch[K.OBS_MASK].tolist() == [[True, True, False], [True, False, True]]
    assert batch[K.INDEX].tolist() == [cite_cell, multi_cell]
    # a cell without the modality: all-zero counts and encoder input
    assert not batch[K.mod_key(K.X, "atac")][0].any()
    assert not batch[K.mod_key(K.ENC, "atac")][0].any()
    assert not batch[K.mod_key(K.ENC, "adt")][1].any()


def test_log1p_norm_is_per_batch_zscore(bmmc_data):
    data = bmmc_data
    batch = data.minibatch(np.arange(data.n_cells))
    for j, m in enumerate(data.modalities):
        enc = batch[K.mod_key(K.ENC, m)].numpy().astype(np.float64)
        x = batch[K.mod_key(K.X, m)].numpy()
        fmask_key = K.mod_key(K.FMASK, m)
        measured = (
            batch[fmask_key].numpy()
            if fmask_key in batch
            else np.repeat(data.obs_mask[:, [j]], x.shape[1], axis=1)
        )
        assert not enc[~measured].any(), "unobserved cells / unmeasured features must give 0"
        for b in range(data.n_batches):
            rows = (data.batch == b) & data.obs_mask[:, j]
            if not rows.any():
                continue
            sub_measured = measured[rows]
            cols = sub_measured.all(axis=0)  # features measured by every cell of the batch
            assert sub_measured[:, ~cols].sum() == 0
            if not cols.any():
                continue
            sub = enc[rows][:, cols]
            np.testing.assert_allclose(sub.mean(axis=0), 0, atol=1e-4)
            sd = sub.std(axis=0)
            constant = np.ptp(np.log1p(x[rows][:, cols]), axis=0) == 0
            np.testing.assert_allclose(sd[~constant], 1, atol=1e-3)
            np.testing.assert_allclose(sd[constant], 0, atol=1e-6)


def test_labels_and_categories(bmmc_data, bmmc):
    data = bmmc_data
    assert list(data.batch_categories) == sorted(bmmc.obs["batch"].unique())
    assert data.adv_categories.equals(data.batch_categories)
    np.testing.assert_array_equal(data.adv, data.batch)
    assert data.label_categories is not None
    assert (data.labels >= 0).all()
    names = data.label_categories[data.labels]
    np.testing.assert_array_equal(np.asarray(names), bmmc.obs["cell_type_l1"].astype(str))
    assert data.likelihoods == {"rna": "nb", "adt": "nb", "atac": "nb"}


def test_unlabeled_category(bmmc):
    unlabeled = bmmc.obs["cell_type_l1"].cat.categories[0]
    data = setup_mosaic(bmmc, label_key="cell_type_l1", unlabeled_category=unlabeled)
    is_unlabeled = (bmmc.obs["cell_type_l1"] == unlabeled).to_numpy()
    assert is_unlabeled.any()
    np.testing.assert_array_equal(data.labels == K.UNLABELED, is_unlabeled)
    assert unlabeled not in data.label_categories


def test_lsi_pca_transform(bmmc):
    data = setup_mosaic(bmmc, transform="lsi_pca", n_components_lsi=20)
    assert {m: t.name for m, t in data.transforms.items()} == {
        "rna": "pca",
        "adt": "pca",
        "atac": "lsi",
    }
    for j, m in enumerate(data.modalities):
        assert data.n_input(m) == 20
        enc = data.minibatch(np.arange(data.n_cells))[K.mod_key(K.ENC, m)].numpy()
        assert enc.shape == (data.n_cells, 20) and enc.dtype == np.float32
        assert not enc[~data.obs_mask[:, j]].any()
        for b in range(data.n_batches):
            rows = (data.batch == b) & data.obs_mask[:, j]
            if rows.any():
                np.testing.assert_allclose(enc[rows].mean(axis=0), 0, atol=1e-4)
                np.testing.assert_allclose(enc[rows].std(axis=0), 1, atol=1e-3)
    again = setup_mosaic(bmmc, transform="lsi_pca", n_components_lsi=20)
    for m in data.modalities:
        np.testing.assert_array_equal(data.transforms[m].values, again.transforms[m].values)


def test_transform_dict_and_clipping(bmmc):
    data = setup_mosaic(bmmc, transform={"atac": "lsi", "adt": "pca"}, n_components_lsi=500)
    assert data.transforms["rna"].name == "log1p_norm"
    assert data.n_input("adt") == 133  # clipped to n_features - 1
    assert data.n_input("atac") == 499  # clipped to n_cells - 1


def test_h5mu_round_trip(bmmc, tmp_path):
    path = tmp_path / "bmmc.h5mu"
    with mudata.set_options(pull_on_update=False):
        bmmc.write(path)
        back = mudata.read_h5mu(path)
    assert back.obs_names.equals(bmmc.obs_names)
    pd.testing.assert_frame_equal(
        back.mod["rna"].varm[MEASURED_KEY], bmmc.mod["rna"].varm[MEASURED_KEY]
    )
    assert back.obs["batch"].tolist() == bmmc.obs["batch"].tolist()
    for m in bmmc.mod:
        assert (back.mod[m].X != bmmc.mod[m].X).nnz == 0
    a, b = setup_mosaic(bmmc), setup_mosaic(back)
    np.testing.assert_array_equal(a.obs_mask, b.obs_mask)
    np.testing.assert_array_equal(a.block_measured["rna"], b.block_measured["rna"])
    np.testing.assert_array_equal(a.batch, b.batch)
    np.testing.assert_array_equal(a.transforms["rna"].mean, b.transforms["rna"].mean)


def test_inputs_not_modified(bmmc_inputs):
    a = {k: v.copy() for k, v in bmmc_inputs.items()}
    before = {k: (v.X.copy(), v.obs.copy(), v.var.copy()) for k, v in a.items()}
    mdata = mosaic({"rna": [a["cite_rna"], a["multiome_rna"]], "adt": a["cite_adt"]})
    mdata.mod["rna"].X.data[:] = -1  # the result shares no memory with the inputs
    for k, (x, obs, var) in before.items():
        assert (a[k].X != x).nnz == 0
        pd.testing.assert_frame_equal(a[k].obs, obs)
        pd.testing.assert_frame_equal(a[k].var, var)


def test_pbmc_wnn_mosaic(shared_data):
    folder = shared_data / "pbmc_wnn_rna_adt_mosaic"
    rna = ad.read_h5ad(folder / "rna.h5ad")
    adt = ad.read_h5ad(folder / "adt.h5ad")
    mdata = mosaic({"rna": rna, "adt": adt})
    assert mdata.n_obs == 1600
    data = setup_mosaic(mdata, label_key="cell_type")
    by_batch = (
        pd.DataFrame(data.obs_mask, columns=data.modalities)
        .groupby(np.asarray(data.batch_categories[data.batch]))
        .mean()
    )
    assert by_batch.loc["p1_0"].tolist() == [1.0, 0.0]
    assert by_batch.loc["p2_0"].tolist() == [0.0, 1.0]
    assert by_batch.loc["p3_0"].tolist() == [1.0, 1.0]
    assert by_batch.loc["p4_0"].tolist() == [1.0, 1.0]
    assert data.block_measured == {"rna": None, "adt": None}
    assert len(data.label_categories) == 8
    cell = adt.obs_names[adt.obs["batch"] == "p3_0"][0]
    row = data.obs_names.get_loc(cell)
    batch = data.minibatch(np.array([row]))
    np.testing.assert_array_equal(batch[K.mod_key(K.X, "adt")].numpy()[0], adt[cell].X.toarray()[0])
    np.testing.assert_array_equal(batch[K.mod_key(K.X, "rna")].numpy()[0], rna[cell].X.toarray()[0])


def test_obs_argument_supplies_batch(bmmc_inputs):
    a = bmmc_inputs
    rna = a["cite_rna"].copy()
    adt = a["cite_adt"].copy()
    table = rna.obs[["batch", "cell_type"]].rename(columns={"batch": "donor"})
    rna.obs = rna.obs.drop(columns="batch")
    mdata = mosaic({"rna": rna, "adt": adt}, batch_key="donor", obs=table)
    assert mdata.obs["donor"].tolist() == table["donor"].tolist()
    data = setup_mosaic(mdata, "donor")
    assert data.n_batches == 2


def test_randomized_decomposition_matches_the_exact_one(bmmc, monkeypatch):
    import mmaavi.data._transforms as transforms

    exact = setup_mosaic(bmmc, transform={"adt": "pca", "atac": "lsi"}, n_components_lsi=10)
    monkeypatch.setattr(transforms, "GRAM_MAX_FEATURES", 0)
    randomized = setup_mosaic(bmmc, transform={"adt": "pca", "atac": "lsi"}, n_components_lsi=10)
    for m in ("adt", "atac"):
        np.testing.assert_allclose(
            randomized.transforms[m].values, exact.transforms[m].values, atol=2e-3
        )


def test_exact_decomposition_matches_a_dense_svd(bmmc):
    """The streamed Gram eigendecomposition gives the principal coordinates of a dense SVD."""
    from mmaavi.data._transforms import _Normalised, _top_components

    data = setup_mosaic(bmmc)
    rows = np.flatnonzero(data.obs_mask[:, data.modalities.index("adt")])
    op = _Normalised(data.counts["adt"], rows, None, "pca", counts_like=True)
    dense = (np.vstack([x.toarray() for x in op.chunks()]) - op.center) / op.scale
    u, s, _ = np.linalg.svd(dense, full_matrices=False)
    got = _top_components(op, 10)
    # equal up to the sign of each column
    np.testing.assert_allclose(np.abs(got), np.abs(u[:, :10] * s[:10]), atol=1e-8)


@pytest.mark.parametrize("rank", [40, 12])
def test_orthonormal_complement_is_orthogonal_to_the_basis_and_spans_the_rest(rank):
    """A Krylov step's new block: orthonormal, orthogonal to the basis, and spanning what ``z``
    adds to it, also when some of ``z`` already lies in the basis (rank-deficient update)."""
    from mmaavi.data._transforms import _orthonormal_complement

    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((3000, 60)))[0]
    new = rng.standard_normal((3000, rank)) @ rng.standard_normal((rank, 40))
    z = new + basis @ rng.standard_normal((60, 40))  # partly inside span(basis)
    z *= np.logspace(0, 3, 40)  # columns of very different scale, as in a Krylov step
    q = _orthonormal_complement(z, basis)
    assert q.shape == (3000, 40)
    np.testing.assert_allclose(q.T @ q, np.eye(40), atol=1e-10)
    np.testing.assert_allclose(basis.T @ q, 0.0, atol=1e-10)
    # every column of z lies in span(basis, q)
    full = np.hstack([basis, q])
    np.testing.assert_allclose(full @ (full.T @ z), z, atol=1e-8 * np.abs(z).max())


@pytest.mark.parametrize("basis_bytes", [None, 4 * 8 * 300])
def test_krylov_decomposition_over_cells_matches_a_dense_svd(monkeypatch, basis_bytes):
    """Fewer cells than features: the iteration runs on T T^T; with a tiny basis budget it
    restarts (here after every second block) and still converges to the same coordinates."""
    import mmaavi.data._transforms as transforms

    rng = np.random.default_rng(1)
    # low-rank signal plus noise: a decaying spectrum, as in real counts
    counts = rng.poisson(np.exp(rng.normal(size=(300, 6)) @ rng.normal(size=(6, 900)) / 2))
    counts = sp.csr_matrix(counts.astype(np.float32))
    monkeypatch.setattr(transforms, "GRAM_MAX_FEATURES", 0)
    if basis_bytes is not None:
        monkeypatch.setattr(transforms, "KRYLOV_BASIS_BYTES", basis_bytes)
    op = transforms._Normalised(counts, np.arange(300), None, "pca", counts_like=True)
    assert op.n_rows < op.n_features
    dense = (np.vstack([x.toarray() for x in op.chunks()]) - op.center) / op.scale
    u, s, _ = np.linalg.svd(dense, full_matrices=False)
    got = transforms._top_components(op, 8)
    np.testing.assert_allclose(np.abs(got), np.abs(u[:, :8] * s[:8]), atol=1e-6 * s[0])
