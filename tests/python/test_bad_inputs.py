"""Bad and surprising inputs through the public API, the entries of BAD_INPUTS.md not tested
elsewhere, and a check that BAD_INPUTS.md names only tests that exist.

Every bad input gets a message saying what was expected, what was found and how to fix it;
surprising but valid input (dense, other dtypes, backed AnnData) is accepted without copies
blowing up; inputs are never modified.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import tracemalloc
from pathlib import Path

import anndata as ad
import mudata
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mmaavi
from mmaavi.data import mosaic, setup_mosaic
from mmaavi.data._validate import to_csr_float32

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _mosaics import SMALL, counts_adata, tiny_mosaic  # noqa: E402

GENES = [f"g{i}" for i in range(10)]


def cells(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def poisson(n: int, f: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).poisson(2.0, (n, f)).astype(np.float32)


# ---------------------------------------------------------------- the table stays honest


def test_every_test_named_in_the_table_exists():
    table = (HERE / "BAD_INPUTS.md").read_text()
    named = re.findall(r"`([\w/]+\.py)::(\w+)`", table)
    assert len(named) >= 40
    for path, name in named:
        source = (HERE / path).read_text()
        assert re.search(rf"^def {name}\(", source, re.M), f"{path}::{name} is not a test"


# ---------------------------------------------------------------- values and dtypes


@pytest.mark.parametrize("dtype", [np.complex64, "U3", object])
def test_non_real_count_dtypes_are_refused(dtype):
    x = poisson(20, 10).astype(dtype)
    with pytest.raises(TypeError, match=r"expected numeric counts \(integer, float or bool\)"):
        to_csr_float32(x, "modality 'rna'")


@pytest.mark.parametrize("dtype", [np.int64, np.float64, np.float16, np.uint8, bool])
def test_dtype_surprises_give_the_same_model_input(dtype):
    base = poisson(20, 10) > 2 if dtype is bool else poisson(20, 10)
    x = base.astype(dtype)
    data = setup_mosaic(mosaic({"rna": counts_adata(cells("c", 20), GENES, ["b"] * 20, x=x)}))
    np.testing.assert_array_equal(data.counts["rna"].toarray(), base.astype(np.float32))
    assert data.counts["rna"].dtype == np.float32


def test_dense_input_is_converted_without_a_dense_copy():
    rng = np.random.default_rng(0)
    x = np.zeros((3000, 1000))  # float64, 24 MB, 1 % non-zero
    x[rng.integers(0, 3000, 30000), rng.integers(0, 1000, 30000)] = 1.0
    tracemalloc.start()
    try:
        out = to_csr_float32(x, "rna")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert out.nnz == np.count_nonzero(x)
    assert peak < 0.4 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.0f} MB input"


@pytest.mark.parametrize("sparse", [True, False])
def test_backed_anndata_is_accepted(tmp_path, sparse):
    x = poisson(20, 10)
    path = tmp_path / "rna.h5ad"
    counts_adata(
        cells("c", 20), GENES, ["a"] * 10 + ["b"] * 10, sp.csr_matrix(x) if sparse else x
    ).write_h5ad(path)
    backed = ad.read_h5ad(path, backed="r")
    assert backed.isbacked
    data = setup_mosaic(mosaic({"rna": backed}))
    np.testing.assert_array_equal(data.counts["rna"].toarray(), x)


def test_backed_mudata_is_accepted(tmp_path):
    mosaic({"rna": counts_adata(cells("c", 20), GENES, ["a"] * 10 + ["b"] * 10)}).write(
        tmp_path / "m.h5mu"
    )
    backed = mudata.read_h5mu(tmp_path / "m.h5mu", backed=True)
    model = mmaavi.MMAAVI(backed, n_components=2, **SMALL)
    assert model.data.counts["rna"].shape == (20, 10)


# ---------------------------------------------------------------- layout


def test_cells_with_zero_counts_in_a_claimed_modality_warn_with_their_number():
    x = poisson(20, 10)
    x[[3, 7]] = 0
    mdata = mosaic({"rna": counts_adata(cells("c", 20), GENES, ["a"] * 10 + ["b"] * 10, x=x)})
    with pytest.warns(
        UserWarning,
        match=r"'rna': 2 of 20 cells that measured it have zero total "
        r"counts, e\.g\. 'c3', 'c7'.*remove them from mdata\.mod\['rna'\]",
    ):
        model = mmaavi.MMAAVI(mdata, n_components=2, **SMALL)
    assert model.data.obs_mask[[3, 7], 0].all()  # kept, still observed


def test_features_with_zero_counts_everywhere_are_kept_and_logged(caplog):
    x = poisson(20, 10)
    x[:, [2, 5]] = 0
    mdata = mosaic({"rna": counts_adata(cells("c", 20), GENES, ["a"] * 10 + ["b"] * 10, x=x)})
    with caplog.at_level(logging.INFO, logger="mmaavi"):
        data = setup_mosaic(mdata)
    assert data.n_features("rna") == 10
    assert "'rna': 2 of 10 features have zero counts in every cell (kept), e.g. 'g2', 'g5'" in (
        caplog.text
    )


def test_a_batch_with_a_single_cell_warns_and_trains():
    mdata = mosaic({"rna": counts_adata(cells("c", 20), GENES, ["a"] * 19 + ["b"])})
    with pytest.warns(UserWarning, match=r"1 batch\(es\) hold a single cell: 'b'.*Merge"):
        model = mmaavi.MMAAVI(mdata, n_components=2, **SMALL)
    model.train(max_epochs=1, progress="none")
    assert np.isfinite(model.get_latent_representation()).all()


def test_a_modality_observed_in_one_cell_warns_and_trains():
    rna = counts_adata(cells("c", 20), GENES, ["a"] * 10 + ["b"] * 10)
    adt = counts_adata(["c19"], ["p0", "p1"], ["b"])
    with pytest.warns(UserWarning, match=r"measured in one cell only: 'adt'"):
        model = mmaavi.MMAAVI(mosaic({"rna": rna, "adt": adt}), n_components=2, **SMALL)
    model.train(max_epochs=1, progress="none")
    att = model.get_attention()
    assert att.loc["c19", "adt"] > 0 and (att.drop(index="c19")["adt"] == 0).all()


def test_a_single_cell_is_refused_before_training():
    mdata = mosaic({"rna": counts_adata(["c0"], GENES, ["a"])})
    with pytest.raises(ValueError, match=r"holds 1 cell\(s\); expected at least 2"):
        mmaavi.MMAAVI(mdata, n_components=2)


def test_duplicated_feature_names_in_a_hand_built_mudata():
    rna = counts_adata(cells("c", 20), ["g0", "g1", "g1"], ["a"] * 20, x=poisson(20, 3))
    with mudata.set_options(pull_on_update=False):
        mdata = mudata.MuData({"rna": rna})
    mdata.obs["batch"] = pd.Categorical(["a"] * 20)
    with pytest.raises(ValueError, match=r"mdata.mod\['rna'\]: feature names must be unique.*'g1'"):
        mmaavi.MMAAVI(mdata, n_components=2)


def test_guidance_graph_naming_unknown_features_through_the_model():
    edges = pd.DataFrame({"source": ["g0", "NOPE"], "target": ["p0", "p1"]})
    with pytest.raises(
        ValueError, match=r"names 1 source feature\(s\) that are not in the data.*'NOPE'"
    ):
        mmaavi.MMAAVI(tiny_mosaic(), n_components=2, graph=edges)


# ---------------------------------------------------------------- model files


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = mmaavi.MMAAVI(tiny_mosaic(), n_components=2, **SMALL)
    model.train(max_epochs=1, progress="none")
    return model.save(tmp_path_factory.mktemp("model") / "m")


def test_malformed_metadata_is_refused(saved, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.pt").write_bytes((saved / "model.pt").read_bytes())
    (target / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"model.json is not valid JSON"):
        mmaavi.MMAAVI.load(target, tiny_mosaic())
    (target / "model.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(ValueError, match=r"model.json lacks .*init_params"):
        mmaavi.MMAAVI.load(target, tiny_mosaic())


def test_truncated_weights_are_refused(saved, tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "model.json").write_text((saved / "model.json").read_text())
    (target / "model.pt").write_bytes((saved / "model.pt").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"cannot read the weights in .*model.pt"):
        mmaavi.MMAAVI.load(target, tiny_mosaic())


# ---------------------------------------------------------------- inputs are not modified


def _snapshot(adata: ad.AnnData):
    x = adata.X
    return (
        type(x),
        x.dtype,
        x.copy(),
        adata.obs.copy(),
        adata.var.copy(),
        sorted(adata.obsm.keys()),
        sorted(adata.uns.keys()),
    )


def _same(before, adata: ad.AnnData) -> None:
    kind, dtype, x, obs, var, obsm, uns = before
    assert type(adata.X) is kind and adata.X.dtype == dtype
    now = adata.X.toarray() if sp.issparse(adata.X) else adata.X
    np.testing.assert_array_equal(now, x.toarray() if sp.issparse(x) else x)
    pd.testing.assert_frame_equal(adata.obs, obs)
    pd.testing.assert_frame_equal(adata.var, var)
    assert sorted(adata.obsm.keys()) == obsm and sorted(adata.uns.keys()) == uns


def test_inputs_are_never_modified():
    """mosaic() leaves its AnnData alone; the model adds only obsm['X_mmaavi'] and uns['mmaavi']."""
    rna = counts_adata(
        cells("c", 30), GENES, ["a"] * 15 + ["b"] * 15, x=poisson(30, 10).astype(np.int64)
    )
    adt = counts_adata(
        cells("c", 15), ["p0", "p1", "p2"], ["a"] * 15, x=sp.csc_matrix(poisson(15, 3, 1))
    )
    rna.obs["cell_type"] = pd.Categorical(np.where(np.arange(30) % 2, "x", "y"))
    inputs = {"rna": rna, "adt": adt}
    before = {k: _snapshot(a) for k, a in inputs.items()}
    mdata = mosaic(inputs)
    for k, a in inputs.items():
        _same(before[k], a)

    mods = {m: _snapshot(mdata.mod[m]) for m in mdata.mod}
    obs, obsm, uns = mdata.obs.copy(), set(mdata.obsm.keys()), set(mdata.uns.keys())
    model = mmaavi.MMAAVI(mdata, n_components=2, label_key="cell_type", **SMALL)
    model.train(max_epochs=1, progress="none")
    model.get_latent_representation()
    model.get_attention()
    model.impute("adt")
    model.predict_labels()
    for m in mdata.mod:
        _same(mods[m], mdata.mod[m])
    pd.testing.assert_frame_equal(mdata.obs, obs)
    assert set(mdata.obsm.keys()) == obsm | {"X_mmaavi"}  # documented outputs only
    assert set(mdata.uns.keys()) == uns | {"mmaavi"}
    for k, a in inputs.items():
        _same(before[k], a)
