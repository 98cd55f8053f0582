"""Turn a user's guidance graph (edge list or sparse adjacency) into the model's edge tensors.

The model needs one undirected, signed, weighted graph over the concatenated features of all
modalities (modality order), with a self-loop on every feature (MODEL.md §5). This module only
normalises and checks what it is given; the builders from genomic coordinates live beside it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from ._check import as_edge_table, node_ids


def _check_consistent_signs(src: np.ndarray, dst: np.ndarray, sign: np.ndarray) -> None:
    """An undirected graph cannot link two features with both signs."""
    pair = pd.DataFrame({"a": np.minimum(src, dst), "b": np.maximum(src, dst), "sign": sign})
    n_signs = pair.groupby(["a", "b"])["sign"].nunique()
    if (n_signs > 1).any():
        raise ValueError(
            f"The guidance graph links {int((n_signs > 1).sum())} feature pair(s) with both signs "
            "(+1 one way or in one row, -1 in another). The graph is undirected: give each pair "
            "one sign."
        )


def graph_tensors(
    graph: pd.DataFrame | sp.spmatrix | sp.sparray | None,
    var_names: Mapping[str, pd.Index],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edge tensors of the guidance graph over the concatenated features.

    Parameters
    ----------
    graph
        ``None`` (self-loops only); a DataFrame with columns ``source``, ``target`` and optionally
        ``weight`` (default 1, must be > 0), ``sign`` (+1/-1, default +1), ``source_modality``,
        ``target_modality`` (needed when a feature name occurs in two modalities); or a square
        sparse matrix over the concatenated features whose values are ``sign * weight``.
    var_names
        Feature names per modality, in the model's modality order.

    Returns
    -------
    ``edge_index`` int64 (2, n_edges), ``edge_weight`` float32 and ``edge_sign`` float32
    (n_edges,): symmetric (both directions listed), one self-loop per feature, duplicates merged
    (largest weight kept).
    """
    n_nodes = sum(len(names) for names in var_names.values())
    if graph is None:
        src = dst = np.zeros(0, dtype=np.int64)
        weight = sign = np.zeros(0, dtype=np.float64)
    elif isinstance(graph, pd.DataFrame) or sp.issparse(graph):
        table = as_edge_table(graph, var_names, on_unknown="raise")
        src = node_ids(table["source_modality"], table["source"], var_names)
        dst = node_ids(table["target_modality"], table["target"], var_names)
        weight = table["weight"].to_numpy(float)
        sign = table["sign"].to_numpy(float)
    else:
        raise TypeError(
            "graph must be None, a pandas DataFrame edge list or a scipy sparse adjacency; "
            f"found {type(graph).__name__}."
        )
    if not np.all(np.isfinite(weight)) or np.any(weight <= 0):
        raise ValueError("Guidance-graph weights must be finite and > 0; found other values.")
    if not np.all(np.isin(sign, (-1.0, 1.0))):
        raise ValueError("Guidance-graph signs must be +1 or -1; found other values.")

    _check_consistent_signs(src, dst, sign)
    loops = np.arange(n_nodes, dtype=np.int64)
    src_all = np.concatenate([src, dst, loops])
    dst_all = np.concatenate([dst, src, loops])
    weight_all = np.concatenate([weight, weight, np.ones(n_nodes)])
    sign_all = np.concatenate([sign, sign, np.ones(n_nodes)])
    edges = pd.DataFrame({"s": src_all, "t": dst_all, "w": weight_all, "g": sign_all})
    # user self-loops or repeated edges: keep the strongest (user entries sort before defaults)
    edges = edges.sort_values("w", ascending=False, kind="stable").drop_duplicates(["s", "t"])
    edges = edges.sort_values(["t", "s"], kind="stable")
    return (
        torch.as_tensor(np.stack([edges["s"].to_numpy(), edges["t"].to_numpy()]), dtype=torch.long),
        torch.as_tensor(edges["w"].to_numpy(), dtype=torch.float32),
        torch.as_tensor(edges["g"].to_numpy(), dtype=torch.float32),
    )
