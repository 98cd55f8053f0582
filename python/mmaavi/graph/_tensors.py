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

#: columns of an edge-list DataFrame; the modality columns are optional
EDGE_COLUMNS = ("source", "target", "weight", "sign")
MODALITY_COLUMNS = ("source_modality", "target_modality")


def _feature_lookup(var_names: Mapping[str, pd.Index]) -> tuple[pd.DataFrame, int]:
    frames = []
    offset = 0
    for m, names in var_names.items():
        frames.append(
            pd.DataFrame(
                {
                    "modality": m,
                    "feature": np.asarray(names, dtype=str),
                    "node": np.arange(offset, offset + len(names)),
                }
            )
        )
        offset += len(names)
    return pd.concat(frames, ignore_index=True), offset


def _resolve(
    names: pd.Series, modalities: pd.Series | None, lookup: pd.DataFrame, side: str
) -> np.ndarray:
    """Node index of each (modality, feature) name; clear errors for unknown or ambiguous names."""
    names = names.astype(str).reset_index(drop=True)
    if modalities is not None:
        key = pd.MultiIndex.from_arrays([lookup["modality"], lookup["feature"]])
        query = pd.MultiIndex.from_arrays([modalities.astype(str).reset_index(drop=True), names])
        pos = key.get_indexer(query)
    else:
        counts = lookup["feature"].value_counts()
        ambiguous = names[names.map(counts).fillna(0) > 1].unique()
        if len(ambiguous):
            raise ValueError(
                f"Guidance-graph {side} names {list(ambiguous[:5])} exist in more than one modality. "
                f"Add '{side}_modality' columns to the edge list to say which feature is meant."
            )
        pos = pd.Index(lookup["feature"]).get_indexer(names)
    unknown = names[pos < 0].unique()
    if len(unknown):
        raise ValueError(
            f"The guidance graph names {len(unknown)} {side} feature(s) that are not in the data, "
            f"e.g. {list(unknown[:5])}. Expected feature names from the modalities "
            f"{list(lookup['modality'].unique())}; remove those edges or fix the names."
        )
    return lookup["node"].to_numpy()[pos]


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
    lookup, n_nodes = _feature_lookup(var_names)
    if graph is None:
        src = dst = np.zeros(0, dtype=np.int64)
        weight = sign = np.zeros(0, dtype=np.float64)
    elif isinstance(graph, pd.DataFrame):
        missing = [c for c in ("source", "target") if c not in graph.columns]
        if missing:
            raise KeyError(
                f"A guidance-graph edge list needs columns 'source' and 'target'; missing {missing}, "
                f"found {list(graph.columns)}."
            )
        has_mod = all(c in graph.columns for c in MODALITY_COLUMNS)
        src = _resolve(
            graph["source"], graph["source_modality"] if has_mod else None, lookup, "source"
        )
        dst = _resolve(
            graph["target"], graph["target_modality"] if has_mod else None, lookup, "target"
        )
        weight = graph["weight"].to_numpy(float) if "weight" in graph else np.ones(len(graph))
        sign = graph["sign"].to_numpy(float) if "sign" in graph else np.ones(len(graph))
    elif sp.issparse(graph):
        if graph.shape != (n_nodes, n_nodes):
            raise ValueError(
                f"A sparse guidance graph must be square over all features ({n_nodes} x {n_nodes}, "
                f"modalities {list(var_names)} concatenated in order); found shape {graph.shape}."
            )
        coo = sp.coo_matrix(graph)
        nonzero = coo.data != 0
        src, dst = coo.row[nonzero].astype(np.int64), coo.col[nonzero].astype(np.int64)
        weight, sign = np.abs(coo.data[nonzero]).astype(float), np.sign(coo.data[nonzero])
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
