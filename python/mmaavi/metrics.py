"""Integration metrics for an embedding: label conservation and batch mixing.

Small, dependency-light versions of the scIB metrics (Luecken et al. 2022, Nat Methods) used by
the demo, the CLI and the quality tests. The benchmarks use scib-metrics itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, silhouette_samples
from sklearn.neighbors import NearestNeighbors

_RESOLUTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)


def _codes(values) -> np.ndarray:
    codes = pd.Categorical(np.asarray(values)).codes
    if (codes < 0).any():
        raise ValueError("Labels and batches must not contain missing values.")
    return codes


def knn_graph(x: np.ndarray, n_neighbors: int = 15) -> sp.csr_matrix:
    """Symmetric binary kNN graph (exact, Euclidean), without self-edges."""
    k = min(n_neighbors, x.shape[0] - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(x)
    idx = nn.kneighbors(x, return_distance=False)[:, 1:]
    rows = np.repeat(np.arange(x.shape[0]), k)
    graph = sp.csr_matrix((np.ones(rows.size), (rows, idx.ravel())), shape=(x.shape[0],) * 2)
    return ((graph + graph.T) > 0).astype(np.float64).tocsr()


def leiden_ari_nmi(x: np.ndarray, labels, n_neighbors: int = 15, seed: int = 0) -> dict[str, float]:
    """ARI and NMI between labels and Leiden clusters at the NMI-optimal resolution (scIB style)."""
    import igraph as ig
    import leidenalg

    truth = _codes(labels)
    graph = knn_graph(x, n_neighbors)
    coo = sp.triu(graph, k=1).tocoo()
    g = ig.Graph(n=x.shape[0], edges=list(zip(coo.row.tolist(), coo.col.tolist())))
    best = {"nmi": -1.0, "ari": -1.0, "resolution": float("nan")}
    for res in _RESOLUTIONS:
        part = leidenalg.find_partition(
            g, leidenalg.RBConfigurationVertexPartition, resolution_parameter=res, seed=seed
        )
        clusters = np.asarray(part.membership)
        nmi = normalized_mutual_info_score(truth, clusters)
        if nmi > best["nmi"]:
            best = {"nmi": nmi, "ari": adjusted_rand_score(truth, clusters), "resolution": res}
    return {"leiden_nmi": float(best["nmi"]), "leiden_ari": float(best["ari"])}


def silhouette_label(x: np.ndarray, labels) -> float:
    """Average silhouette width of the labels, rescaled to [0, 1] (higher: better separated)."""
    return float((silhouette_samples(x, _codes(labels)).mean() + 1) / 2)


def silhouette_batch(x: np.ndarray, batches, labels) -> float:
    """scIB batch silhouette: per label, mean of ``1 - |s_batch|``; averaged over labels (1 = mixed)."""
    batch, label = _codes(batches), _codes(labels)
    scores = []
    for lab in np.unique(label):
        sel = label == lab
        if len(np.unique(batch[sel])) < 2 or sel.sum() < 3:
            continue
        scores.append(np.mean(1 - np.abs(silhouette_samples(x[sel], batch[sel]))))
    return float(np.mean(scores)) if scores else float("nan")


def graph_connectivity(x: np.ndarray, labels, n_neighbors: int = 15) -> float:
    """Mean over labels of the largest connected component's share in the label's kNN subgraph."""
    label = _codes(labels)
    graph = knn_graph(x, n_neighbors)
    shares = []
    for lab in np.unique(label):
        sel = np.flatnonzero(label == lab)
        _, comp = sp.csgraph.connected_components(graph[sel][:, sel], directed=False)
        shares.append(np.bincount(comp).max() / sel.size)
    return float(np.mean(shares))


def batch_mixing_lisi(x: np.ndarray, batches, n_neighbors: int = 30) -> float:
    """Inverse Simpson index of batches among each cell's neighbours, scaled to [0, 1].

    A kNN version of iLISI: 0 when neighbourhoods hold one batch, 1 when every batch is
    equally represented.
    """
    batch = _codes(batches)
    n_batches = batch.max() + 1
    if n_batches < 2:
        return float("nan")
    k = min(n_neighbors, x.shape[0] - 1)
    idx = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)
    counts = np.zeros((x.shape[0], n_batches))
    np.add.at(counts, (np.repeat(np.arange(x.shape[0]), k + 1), batch[idx].ravel()), 1)
    p = counts / counts.sum(1, keepdims=True)
    simpson = 1.0 / (p**2).sum(1)
    return float((simpson.mean() - 1) / (n_batches - 1))


def integration_metrics(x: np.ndarray, labels, batches, seed: int = 0) -> dict[str, float]:
    """Every metric above for one embedding, plus ``bio`` and ``batch`` means."""
    out = leiden_ari_nmi(x, labels, seed=seed)
    out["silhouette_label"] = silhouette_label(x, labels)
    out["silhouette_batch"] = silhouette_batch(x, batches, labels)
    out["graph_connectivity"] = graph_connectivity(x, labels)
    out["ilisi_knn"] = batch_mixing_lisi(x, batches)
    out["bio"] = float(np.mean([out["leiden_nmi"], out["leiden_ari"], out["silhouette_label"]]))
    out["batch"] = float(
        np.nanmean([out["silhouette_batch"], out["graph_connectivity"], out["ilisi_knn"]])
    )
    return out


def pca_baseline(mdata, n_comps: int = 30, seed: int = 0) -> np.ndarray:
    """The unintegrated baseline: PCA of the concatenated log-normalised modalities.

    Each modality is normalised to 1e4 counts per cell and log1p-transformed; cells lacking a
    modality (or a feature) contribute zeros there.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.preprocessing import StandardScaler

    blocks = []
    for m in mdata.mod:
        mod = mdata.mod[m]
        x = sp.csr_matrix(mod.X, dtype=np.float64)
        lib = np.asarray(x.sum(1)).ravel()
        x = sp.diags(1e4 / np.maximum(lib, 1)) @ x
        x.data = np.log1p(x.data)
        # place the modality's rows at their cells' positions; absent cells stay zero
        rows = mdata.obs_names.get_indexer(mod.obs_names)
        place = sp.csr_matrix(
            (np.ones(rows.size), (rows, np.arange(rows.size))), shape=(mdata.n_obs, rows.size)
        )
        blocks.append(place @ x)
    joint = sp.hstack(blocks).toarray()
    joint = StandardScaler().fit_transform(joint)
    n_comps = min(n_comps, min(joint.shape) - 1)
    return TruncatedSVD(n_comps, random_state=seed).fit_transform(joint)


def log_normalise(counts, target_sum: float = 1e4) -> np.ndarray:
    """``log1p`` of counts scaled to ``target_sum`` per cell (rows), as a dense float64 array."""
    x = sp.csr_matrix(counts, dtype=np.float64)
    lib = np.asarray(x.sum(1)).ravel()
    x = sp.diags(target_sum / np.maximum(lib, 1e-12)) @ x
    x.data = np.log1p(x.data)
    return x.toarray()


def feature_correlation(predicted, measured) -> np.ndarray:
    """Pearson correlation across cells, per feature (column), of two cells x features arrays.

    The imputation score: ``np.nanmedian(feature_correlation(log1p(imputed), log_normalise(x)))``.
    Features constant in either array get NaN.
    """
    a = np.asarray(predicted, dtype=np.float64)
    b = np.asarray(measured, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"predicted and measured must have the same shape; found {a.shape} and {b.shape}."
        )
    a = a - a.mean(0)
    b = b - b.mean(0)
    denom = np.sqrt((a**2).sum(0) * (b**2).sum(0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(0) / denom
    r[denom == 0] = np.nan
    return r
