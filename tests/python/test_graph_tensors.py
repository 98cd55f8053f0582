"""graph_tensors: user guidance graphs -> symmetric signed weighted edge tensors (MODEL.md §5)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from mmaavi.graph import graph_tensors

VAR_NAMES = {
    "rna": pd.Index(["CD4", "CD8A", "MS4A1", "GNLY"]),
    "adt": pd.Index(["CD4-ADT", "CD8", "CD19"]),
}
N = 7  # nodes: rna 0-3, adt 4-6


def as_dict(edge_index, edge_weight, edge_sign) -> dict[tuple[int, int], tuple[float, float]]:
    pairs = list(map(tuple, edge_index.T.tolist()))
    assert len(pairs) == len(set(pairs)), "duplicated edges"
    return {p: (w, g) for p, w, g in zip(pairs, edge_weight.tolist(), edge_sign.tolist())}


def test_none_gives_one_self_loop_per_feature():
    edge_index, edge_weight, edge_sign = graph_tensors(None, VAR_NAMES)
    assert edge_index.dtype == torch.long and edge_index.shape == (2, N)
    assert edge_weight.dtype == torch.float32 and edge_sign.dtype == torch.float32
    assert sorted(map(tuple, edge_index.T.tolist())) == [(i, i) for i in range(N)]
    assert torch.all(edge_weight == 1) and torch.all(edge_sign == 1)


def test_edge_list_is_symmetrised_with_sign_and_weight():
    edges = pd.DataFrame(
        {
            "source": ["CD4", "CD8A", "MS4A1"],
            "target": ["CD4-ADT", "CD8", "CD19"],
            "weight": [0.5, 2.0, 1.0],
            "sign": [1, -1, 1],
        }
    )
    got = as_dict(*graph_tensors(edges, VAR_NAMES))
    expected = {(i, i): (1.0, 1.0) for i in range(N)}
    for s, t, w, g in [(0, 4, 0.5, 1.0), (1, 5, 2.0, -1.0), (2, 6, 1.0, 1.0)]:
        expected[(s, t)] = expected[(t, s)] = (w, g)
    assert got == expected


def test_edge_list_defaults_weight_and_sign_to_one():
    edges = pd.DataFrame({"source": ["GNLY"], "target": ["CD19"]})
    got = as_dict(*graph_tensors(edges, VAR_NAMES))
    assert got[(3, 6)] == got[(6, 3)] == (1.0, 1.0)
    assert len(got) == N + 2


def test_duplicates_are_merged_keeping_the_largest_weight():
    edges = pd.DataFrame(
        {
            "source": ["CD4", "CD4-ADT", "CD4", "CD8A"],
            "target": ["CD4-ADT", "CD4", "CD4-ADT", "CD8A"],  # repeats, reverse, user self-loop
            "weight": [1.0, 3.0, 2.0, 5.0],
            "sign": [1, 1, 1, -1],
        }
    )
    got = as_dict(*graph_tensors(edges, VAR_NAMES))
    assert len(got) == N + 2
    assert got[(0, 4)] == got[(4, 0)] == (3.0, 1.0)
    assert got[(1, 1)] == (5.0, -1.0)  # the user's self-loop beats the default one


def test_conflicting_signs_are_refused():
    edges = pd.DataFrame(
        {
            "source": ["CD4", "CD8A"],
            "target": ["CD8A", "CD4"],
            "weight": [2.0, 2.0],
            "sign": [1, -1],
        }
    )
    with pytest.raises(ValueError, match="both signs"):
        graph_tensors(edges, VAR_NAMES)


def test_sparse_adjacency_is_symmetrised():
    adj = sp.coo_matrix(([-2.0, 0.5], ([0, 2], [5, 3])), shape=(N, N)).tocsr()
    got = as_dict(*graph_tensors(adj, VAR_NAMES))
    assert got[(0, 5)] == got[(5, 0)] == (2.0, -1.0)
    assert got[(2, 3)] == got[(3, 2)] == (0.5, 1.0)
    assert len(got) == N + 4


def test_sparse_explicit_zeros_are_not_edges():
    adj = sp.csr_matrix((np.array([0.0, 1.0]), (np.array([0, 1]), np.array([1, 2]))), shape=(N, N))
    got = as_dict(*graph_tensors(adj, VAR_NAMES))
    assert (0, 1) not in got and (1, 2) in got


def test_modality_columns_resolve_names_shared_by_two_modalities():
    var_names = {"rna": pd.Index(["CD4", "CD8"]), "adt": pd.Index(["CD4", "CD19"])}
    edges = pd.DataFrame(
        {
            "source": ["CD4"],
            "target": ["CD4"],
            "source_modality": ["rna"],
            "target_modality": ["adt"],
        }
    )
    got = as_dict(*graph_tensors(edges, var_names))
    assert (0, 2) in got and (2, 0) in got


def test_ambiguous_names_without_modality_columns():
    var_names = {"rna": pd.Index(["CD4", "CD8"]), "adt": pd.Index(["CD4", "CD19"])}
    edges = pd.DataFrame({"source": ["CD4"], "target": ["CD19"]})
    with pytest.raises(ValueError, match=r"'CD4'.*more than one modality.*source_modality"):
        graph_tensors(edges, var_names)


def test_unknown_feature_is_named():
    edges = pd.DataFrame({"source": ["CD4", "NOPE1"], "target": ["CD8", "CD19"]})
    with pytest.raises(ValueError, match=r"1 source feature.*'NOPE1'"):
        graph_tensors(edges, VAR_NAMES)
    edges = pd.DataFrame({"source": ["CD4"], "target": ["NOPE2"]})
    with pytest.raises(ValueError, match=r"target feature.*'NOPE2'"):
        graph_tensors(edges, VAR_NAMES)


def test_missing_source_column():
    with pytest.raises(KeyError, match="needs columns 'source' and 'target'"):
        graph_tensors(pd.DataFrame({"from": ["CD4"], "target": ["CD8"]}), VAR_NAMES)


@pytest.mark.parametrize("weight", [0.0, -1.0, np.nan, np.inf])
def test_non_positive_or_non_finite_weight(weight):
    edges = pd.DataFrame({"source": ["CD4"], "target": ["CD8"], "weight": [weight]})
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        graph_tensors(edges, VAR_NAMES)


@pytest.mark.parametrize("sign", [0, 2, -0.5])
def test_sign_not_plus_or_minus_one(sign):
    edges = pd.DataFrame({"source": ["CD4"], "target": ["CD8"], "sign": [sign]})
    with pytest.raises(ValueError, match=r"signs must be \+1 or -1"):
        graph_tensors(edges, VAR_NAMES)


@pytest.mark.parametrize("shape", [(N - 1, N - 1), (N, N + 1), (4, 4)])
def test_sparse_adjacency_of_wrong_shape(shape):
    with pytest.raises(ValueError, match=rf"square over all features \({N} x {N}.*found shape"):
        graph_tensors(sp.csr_matrix(shape), VAR_NAMES)


@pytest.mark.parametrize("graph", [np.eye(N), [("CD4", "CD8")], "edges.csv"])
def test_wrong_type(graph):
    with pytest.raises(TypeError, match="graph must be None, a pandas DataFrame"):
        graph_tensors(graph, VAR_NAMES)
