"""Bayes-factor differential features (MODEL.md §10) on the bundled BMMC mosaic.

A 1-epoch model is enough here: these tests check the table's contract (columns, types, ranges,
sorting, FDR calls, raw statistics, seeding) and the input checks, not the biology
(see ``test_differential_real.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import mmaavi
from mmaavi import MMAAVI
from mmaavi.differential import differential

GROUPBY = "cell_type_l1"
N = 200  # draws per group: small and fast

COLUMNS = {
    "feature": object,
    "modality": object,
    "proba_de": np.float64,
    "proba_not_de": np.float64,
    "bayes_factor": np.float64,
    "scale1": np.float64,
    "scale2": np.float64,
    "lfc_mean": np.float64,
    "lfc_median": np.float64,
    "lfc_std": np.float64,
    "lfc_min": np.float64,
    "lfc_max": np.float64,
    "raw_mean1": np.float64,
    "raw_mean2": np.float64,
    "non_zeros_proportion1": np.float64,
    "non_zeros_proportion2": np.float64,
    "is_de_fdr_0.05": bool,
    "comparison": object,
    "group1": object,
    "group2": object,
}


@pytest.fixture(scope="module")
def bmmc():
    return mmaavi.datasets.bmmc_mosaic()


@pytest.fixture(scope="module")
def model(bmmc):
    model = MMAAVI(bmmc, batch_key="batch", n_components=6)
    model.train(max_epochs=1, seed=0, progress="none")
    return model


@pytest.fixture(scope="module")
def b_vs_rest(model):
    return differential(model, GROUPBY, "B", n_samples=N)


def _is_cite(mdata) -> np.ndarray:
    return mdata.obs["batch"].astype(str).str.startswith("cite").to_numpy()


def test_columns_types_and_one_row_per_feature(model, b_vs_rest):
    table = b_vs_rest
    assert list(table.columns) == list(COLUMNS)
    assert {c: table[c].dtype for c in table.columns} == {
        c: np.dtype(t) for c, t in COLUMNS.items()
    }
    assert table.index.equals(pd.RangeIndex(len(table)))
    sizes = table.groupby("modality").size().to_dict()
    assert sizes == {m: model.data.n_features(m) for m in model.data.modalities}
    for m in model.data.modalities:
        assert set(table.loc[table.modality == m, "feature"]) == set(model.data.var_names[m])
    assert (table.comparison == "B vs rest").all()
    assert (table.group1 == "B").all() and (table.group2 == "rest").all()


def test_probabilities_bayes_factor_and_sorting(b_vs_rest):
    table = b_vs_rest
    p = table.proba_de.to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(table.proba_not_de, 1 - p)
    clipped = np.clip(p, 0.5 / N, 1 - 0.5 / N)
    np.testing.assert_allclose(table.bayes_factor, np.log(clipped) - np.log(1 - clipped))
    assert table.bayes_factor.is_monotonic_decreasing
    assert np.isfinite(table[["scale1", "scale2", "lfc_mean", "lfc_std"]].to_numpy()).all()
    assert (table.lfc_min <= table.lfc_median).all() and (table.lfc_median <= table.lfc_max).all()
    # normalised expression: every modality's count-model profile sums to 1 per draw
    for _, part in table.groupby("modality"):
        np.testing.assert_allclose(part.scale1.sum(), 1.0, rtol=1e-4)


def test_fdr_calls_are_the_posterior_expected_fdr_prefix(b_vs_rest):
    for _, part in b_vs_rest.groupby("modality"):
        ranked = part.sort_values("proba_de", ascending=False, kind="stable")
        expected_fdr = np.cumsum(ranked.proba_not_de.to_numpy()) / np.arange(1, len(ranked) + 1)
        n_called = int(ranked["is_de_fdr_0.05"].sum())
        assert ranked["is_de_fdr_0.05"].to_numpy()[:n_called].all()
        if n_called:
            assert expected_fdr[n_called - 1] <= 0.05
        assert (expected_fdr[n_called:] > 0.05).all() or n_called == len(ranked)


def test_raw_statistics_use_measured_cells_only(bmmc, model, b_vs_rest):
    b_cells = (bmmc.obs[GROUPBY] == "B").to_numpy()
    adt = bmmc.mod["adt"]
    in_b = adt.obs_names.isin(bmmc.obs_names[b_cells])
    x = adt.X[in_b]
    x = x.toarray() if hasattr(x, "toarray") else np.asarray(x)
    rows = b_vs_rest[b_vs_rest.modality == "adt"].set_index("feature").loc[adt.var_names]
    np.testing.assert_allclose(rows.raw_mean1, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(rows.non_zeros_proportion1, (x > 0).mean(axis=0), rtol=1e-6)
    # RNA: a gene that only the Multiome block measured averages over the Multiome B cells
    cite = _is_cite(bmmc)
    measured = model.data.block_measured["rna"]
    multiome_block = model.data.block["rna"][~cite][0]
    cite_block = model.data.block["rna"][cite][0]
    only = measured[multiome_block] & ~measured[cite_block]
    gene = model.data.var_names["rna"][np.flatnonzero(only)[0]]
    rna = bmmc.mod["rna"]
    cells = rna.obs_names.isin(bmmc.obs_names[b_cells & ~cite])
    x = rna[cells, gene].X
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x).ravel()
    row = b_vs_rest[(b_vs_rest.modality == "rna") & (b_vs_rest.feature == gene)].iloc[0]
    assert row.raw_mean1 == pytest.approx(x.mean())
    assert row.non_zeros_proportion1 == pytest.approx((x > 0).mean())


def test_unmeasured_modality_is_decoded_for_every_cell(bmmc, model):
    """Groups made only of Multiome cells (no ADT) still get finite ADT scales and a test."""
    labels = bmmc.obs[GROUPBY].astype(str).where(~_is_cite(bmmc))
    bmmc.obs["multiome_type"] = labels
    both = differential(model, "multiome_type", "B", "Mono", modality=["adt", "rna"], n_samples=N)
    assert np.isfinite(both[["scale1", "scale2", "lfc_mean"]].to_numpy()).all()
    table = both[both.modality == "adt"]
    assert len(table) == model.data.n_features("adt")
    assert table.raw_mean1.isna().all() and table.non_zeros_proportion2.isna().all()
    assert table.proba_de.max() > 0
    # RNA genes the Multiome block did not measure have no raw statistics, but are decoded
    measured = model.data.block_measured["rna"]
    multiome_block = model.data.block["rna"][~_is_cite(bmmc)][0]
    unmeasured = set(model.data.var_names["rna"][~measured[multiome_block]])
    rna = both[both.modality == "rna"]
    assert unmeasured and rna.feature.isin(unmeasured).any()
    assert rna.loc[rna.feature.isin(unmeasured), "raw_mean1"].isna().all()
    assert rna.loc[~rna.feature.isin(unmeasured), "raw_mean1"].notna().all()
    assert (table.comparison == "B vs Mono").all() and (table.group2 == "Mono").all()


def test_same_seed_same_table_other_seed_differs(model, b_vs_rest):
    again = differential(model, GROUPBY, "B", n_samples=N)
    pd.testing.assert_frame_equal(b_vs_rest, again)
    other = differential(model, GROUPBY, "B", n_samples=N, seed=1)
    assert not np.allclose(
        b_vs_rest.sort_values(["modality", "feature"]).lfc_mean,
        other.sort_values(["modality", "feature"]).lfc_mean,
    )


def test_one_modality_equals_its_rows_of_the_full_table(model, b_vs_rest):
    adt = differential(model, GROUPBY, "B", modality="adt", n_samples=N)
    full = b_vs_rest[b_vs_rest.modality == "adt"].reset_index(drop=True)
    pd.testing.assert_frame_equal(adt, full)


def test_every_group_vs_rest(bmmc, model):
    table = differential(model, GROUPBY, modality="adt", n_samples=50)
    groups = [str(g) for g in bmmc.obs[GROUPBY].unique()]
    assert sorted(table.comparison.unique()) == sorted(f"{g} vs rest" for g in groups)
    assert (table.groupby("comparison").size() == model.data.n_features("adt")).all()
    for _, part in table.groupby("comparison", sort=False):
        assert part.bayes_factor.is_monotonic_decreasing
    # each comparison starts from the seed: the B comparison is the one asked for alone
    alone = differential(model, GROUPBY, "B", modality="adt", n_samples=50)
    pd.testing.assert_frame_equal(
        table[table.comparison == "B vs rest"].reset_index(drop=True), alone
    )


def test_every_group_against_one_reference(model):
    table = differential(model, GROUPBY, group2="Mono", modality="adt", n_samples=20)
    assert (table.group2 == "Mono").all() and "Mono" not in set(table.group1)
    assert table.comparison.nunique() == table.group1.nunique() > 1


def test_vanilla_mode_is_probability_of_higher_in_group1(model):
    table = differential(model, GROUPBY, "B", "Mono", mode="vanilla", n_samples=N)
    p = table.proba_de
    assert ((p >= 0) & (p <= 1)).all()
    assert (table.loc[p > 0.5, "lfc_median"] > 0).all()
    assert (table.loc[p < 0.5, "lfc_median"] <= 0).all()


def test_lfc_columns_use_a_smaller_pseudocount_than_the_decision(model, monkeypatch):
    """The decision uses ε, the lfc_* summaries ε / 1000 (as scvi-tools): a feature far below ε
    in both groups keeps its fold change in lfc_mean but is not called on it."""
    import mmaavi.differential as de

    n_features = model.data.n_features("adt")
    level = {1: np.full(n_features, 1e-3), 2: np.full(n_features, 1e-3)}
    level[1][:3] = [4e-6, 0.02, 0.0]  # group1: tiny, high, exactly zero
    level[2][:3] = [1e-6, 0.01, 0.0]
    calls = []

    def fixed_decode(model, modality, z, *args):
        calls.append(modality)
        group = 1 if len(calls) % 2 else 2  # rho1, then rho2, per chunk
        return torch.from_numpy(level[group]).float().expand(z.shape[0], -1)

    monkeypatch.setattr(de, "_decode", fixed_decode)
    table = differential(model, GROUPBY, "B", modality="adt", n_samples=50, batch_size=20)
    rows = table.set_index("feature").loc[model.data.var_names["adt"][:3]]
    summary = 1e-4 * de.LFC_SUMMARY_PSEUDOCOUNT_FACTOR
    assert rows.lfc_mean.iloc[0] == pytest.approx(np.log2((4e-6 + summary) / (1e-6 + summary)))
    assert rows.lfc_mean.iloc[0] > 1.8 and rows.proba_de.iloc[0] == 0  # decided: 0.04 < delta
    assert rows.lfc_mean.iloc[1] == pytest.approx(1.0, abs=1e-4) and rows.proba_de.iloc[1] == 1
    assert rows.lfc_mean.iloc[2] == 0
    zero = differential(model, GROUPBY, "B", modality="adt", n_samples=50, pseudocount=0.0)
    assert np.isfinite(zero[["lfc_mean", "lfc_min", "lfc_max", "bayes_factor"]].to_numpy()).all()


def test_batch_correction_off_uses_own_batch(model, b_vs_rest):
    own = differential(model, GROUPBY, "B", n_samples=N, batch_correction=False)
    assert list(own.columns) == list(b_vs_rest.columns)
    assert not np.allclose(
        own.sort_values(["modality", "feature"]).scale1,
        b_vs_rest.sort_values(["modality", "feature"]).scale1,
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"groupby": "no_such_column"}, KeyError, "not a column of mdata.obs"),
        ({"group1": "Neuron"}, KeyError, "group1='Neuron' is not a group"),
        ({"group1": "B", "group2": "Neuron"}, KeyError, "group2='Neuron' is not a group"),
        ({"group1": "B", "group2": "B"}, ValueError, "group1 and group2 are the same"),
        ({"group1": "B", "modality": "protein"}, KeyError, "Unknown modality 'protein'"),
        ({"group1": "B", "mode": "bayes"}, ValueError, "mode must be one of"),
        ({"group1": "B", "delta": 0}, ValueError, "delta must be > 0"),
        ({"group1": "B", "fdr_target": 0}, ValueError, r"fdr_target must be in \(0, 1\)"),
        ({"group1": "B", "fdr_target": 1.5}, ValueError, r"fdr_target must be in \(0, 1\)"),
        ({"group1": "B", "n_samples": 0}, ValueError, "n_samples must be a positive integer"),
    ],
)
def test_bad_arguments(model, kwargs, error, match):
    args = {"groupby": GROUPBY, **kwargs}
    with pytest.raises(error, match=match):
        differential(model, **args)


def test_group_without_cells_and_single_group(bmmc, model):
    bmmc.obs["with_empty"] = pd.Categorical(
        bmmc.obs[GROUPBY].astype(str), categories=[*bmmc.obs[GROUPBY].unique(), "Empty"]
    )
    with pytest.raises(ValueError, match="group1='Empty' has no cells"):
        differential(model, "with_empty", "Empty")
    with pytest.raises(ValueError, match="group2='Empty' has no cells"):
        differential(model, "with_empty", "B", "Empty")
    bmmc.obs["one_group"] = "all"
    with pytest.raises(ValueError, match="only one group with cells"):
        differential(model, "one_group", "all")
    with pytest.raises(ValueError, match="only one group with cells"):
        differential(model, "one_group")


def test_vanilla_mode_ignores_delta(model):
    table = differential(model, GROUPBY, "B", modality="adt", mode="vanilla", delta=0, n_samples=20)
    assert len(table) == model.data.n_features("adt")


def test_untrained_model_is_refused(bmmc):
    untrained = MMAAVI(bmmc, batch_key="batch", n_components=6)
    with pytest.raises(RuntimeError, match=r"not trained yet: call model.train\(\)"):
        differential(untrained, GROUPBY, "B")
