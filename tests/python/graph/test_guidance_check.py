"""Reading the stored graph back, checking it, user edges and keep-only-linked filtering."""

from __future__ import annotations

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmaavi.graph import (
    GUIDANCE_KEY,
    REMOVED_KEY,
    add_guidance_graph,
    check_graph,
    edges,
    subset_linked,
)


def _features(names, n_obs: int = 3) -> ad.AnnData:
    var = pd.DataFrame(index=pd.Index(list(names), dtype=str))
    obs = pd.DataFrame(index=[f"c{i}" for i in range(n_obs)])
    return ad.AnnData(X=sp.csr_matrix(np.ones((n_obs, len(var)))), obs=obs, var=var)


@pytest.fixture
def mdata() -> md.MuData:
    return md.MuData(
        {
            "rna": _features(["CD4", "CD40", "MS4A1", "GAPDH"]),
            "adt": _features(["CD4", "CD20", "Mouse-IgG1"]),
        }
    )


def test_edges_returns_the_stored_graph_with_modalities(mdata):
    built = add_guidance_graph(mdata)
    got = edges(mdata)
    pd.testing.assert_frame_equal(got, built)
    got.loc[0, "weight"] = 5.0
    assert mdata.uns[GUIDANCE_KEY].loc[0, "weight"] == 1.0  # a copy


def test_edges_fills_modalities_of_a_user_edge_list(mdata):
    mdata.uns[GUIDANCE_KEY] = pd.DataFrame({"source": ["CD20"], "target": ["MS4A1"]})
    got = edges(mdata)
    assert got.iloc[0][["source_modality", "target_modality", "weight", "sign"]].tolist() == [
        "adt",
        "rna",
        1.0,
        1,
    ]


def test_edges_reads_a_sparse_adjacency(mdata):
    adjacency = sp.coo_matrix(([-2.0], ([2], [5])), shape=(7, 7))  # MS4A1 -> CD20 (adt 1)
    mdata.uns[GUIDANCE_KEY] = adjacency
    got = edges(mdata)
    assert got.iloc[0].tolist() == ["MS4A1", "CD20", 2.0, -1, "rna", "adt"]


def test_edges_without_graph_says_how_to_build_one(mdata):
    with pytest.raises(KeyError, match="add_guidance_graph"):
        edges(mdata)


def test_check_graph_summary(mdata, caplog):
    add_guidance_graph(mdata)
    with caplog.at_level("INFO", logger="mmaavi.graph"):
        report = check_graph(mdata)
    assert report.ok
    assert report.links == {("rna", "adt"): 2}
    assert report.unlinked == {"rna": ["CD40", "GAPDH"], "adt": ["Mouse-IgG1"]}
    assert report.covered == {"rna": 2, "adt": 2}
    assert report.missing_self_loops == {"rna": 0, "adt": 0}
    assert report.asymmetric == 0
    assert "links rna-adt: 2" in str(report) and "links rna-adt: 2" in caplog.text


def test_check_graph_reports_unknown_asymmetric_and_missing_loops(mdata):
    graph = pd.DataFrame(
        {
            "source": ["CD4", "CD4", "CD8", "CD20"],
            "target": ["CD4", "CD4", "CD8A", "MS4A1"],
            "weight": [1.0, 2.0, 1.0, 1.0],
            "source_modality": ["adt", "rna", "adt", "adt"],
            "target_modality": ["rna", "adt", "rna", "rna"],
        }
    )
    report = check_graph(mdata, graph)
    assert not report.ok
    assert report.asymmetric == 1  # adt CD4 -> rna CD4 weight 1, back with weight 2
    assert set(report.unknown_features) == {("adt", "CD8"), ("rna", "CD8A")}
    assert report.missing_self_loops == {"rna": 4, "adt": 3}


def test_extra_edges_are_merged_and_replace_built_ones(mdata):
    extra = pd.DataFrame(
        {
            "source": ["GAPDH", "CD4"],
            "target": ["CD40", "CD4"],
            "weight": [0.5, 0.25],
            "sign": [-1, 1],
            "source_modality": ["rna", "adt"],
            "target_modality": ["rna", "rna"],
        }
    )
    graph = add_guidance_graph(mdata, extra_edges=extra)
    row = graph[(graph["source"] == "GAPDH") & (graph["target"] == "CD40")]
    assert row[["weight", "sign"]].values.tolist() == [[0.5, -1]]
    cd4 = graph[
        (graph["source_modality"] == "adt")
        & (graph["source"] == "CD4")
        & (graph["target_modality"] == "rna")
    ]
    assert cd4["weight"].tolist() == [0.25]


def test_extra_edges_as_sparse_matrix(mdata):
    adjacency = sp.coo_matrix(([1.0], ([3], [1])), shape=(7, 7))  # GAPDH - CD40
    graph = add_guidance_graph(mdata, extra_edges=adjacency)
    assert ("GAPDH", "CD40") in set(zip(graph["source"], graph["target"]))


def test_extra_edges_with_unknown_features_fail(mdata):
    with pytest.raises(
        ValueError, match=r"names 1 target feature\(s\) that are not in the data.*NOPE"
    ):
        add_guidance_graph(
            mdata, extra_edges=pd.DataFrame({"source": ["GAPDH"], "target": ["NOPE"]})
        )


def test_extra_edges_with_ambiguous_names_fail(mdata):
    with pytest.raises(ValueError, match="more than one modality"):
        add_guidance_graph(
            mdata, extra_edges=pd.DataFrame({"source": ["CD4"], "target": ["GAPDH"]})
        )


def test_extra_edges_bad_weight_fails(mdata):
    extra = pd.DataFrame({"source": ["GAPDH"], "target": ["CD40"], "weight": [0.0]})
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        add_guidance_graph(mdata, extra_edges=extra)


def test_not_a_mudata_fails():
    with pytest.raises(TypeError, match="Expected a mudata.MuData"):
        add_guidance_graph(_features(["CD4"]))


def test_keep_only_linked_is_off_by_default(mdata):
    add_guidance_graph(mdata)
    assert mdata["rna"].n_vars == 4 and REMOVED_KEY not in mdata.uns


def test_keep_only_linked_filters_in_place_and_reports(mdata, caplog):
    with caplog.at_level("WARNING", logger="mmaavi.graph"):
        graph = add_guidance_graph(mdata, keep_only_linked=True)
    assert list(mdata["rna"].var_names) == ["CD4", "MS4A1"]
    assert list(mdata["adt"].var_names) == ["CD4", "CD20"]
    assert {m: list(v) for m, v in mdata.uns[REMOVED_KEY].items()} == {
        "rna": ["CD40", "GAPDH"],
        "adt": ["Mouse-IgG1"],
    }
    assert "rna 2 of 4" in caplog.text and "adt 1 of 3" in caplog.text
    assert check_graph(mdata, graph).ok
    assert len(graph) == 2 + 4  # two links, four self-loops


def test_subset_linked_returns_a_copy(mdata):
    add_guidance_graph(mdata)
    small = subset_linked(mdata)
    assert small["rna"].n_vars == 2 and mdata["rna"].n_vars == 4
    assert check_graph(small).ok


def test_keep_only_linked_refuses_to_empty_a_modality():
    mdata = md.MuData({"rna": _features(["GAPDH"]), "adt": _features(["CD4"])})
    with pytest.raises(ValueError, match="would remove every feature"):
        add_guidance_graph(mdata, keep_only_linked=True)
    assert mdata["rna"].n_vars == 1
