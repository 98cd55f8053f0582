"""Benchmark runner: the unintegrated baseline (the contract is in ``benchmarks/bench.py``).

Each modality is reduced on its own cells, as the scverse tutorials do: RNA log-normalised
(1e4 per cell, log1p), scaled, 30-component PCA; ADT CLR-normalised, 30-component PCA (or fewer
when there are fewer proteins); ATAC TF-IDF then 31-component LSI, dropping the first component
(depth). Each block is standardised and the blocks are concatenated; a cell lacking a modality
gets zeros (the block's mean) there. No batch correction.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp
import sklearn
from sklearn.decomposition import PCA, TruncatedSVD
from sklearn.preprocessing import StandardScaler

N_COMPS = 30


def _log_norm(x: sp.csr_matrix) -> np.ndarray:
    lib = np.asarray(x.sum(1)).ravel()
    x = sp.diags(1e4 / np.maximum(lib, 1)) @ x
    x.data = np.log1p(x.data)
    return StandardScaler().fit_transform(x.toarray())


def _clr(x: sp.csr_matrix) -> np.ndarray:
    logx = np.log1p(x.toarray())
    return logx - logx.mean(1, keepdims=True)


def _reduce(modality: str, x: sp.csr_matrix, seed: int) -> np.ndarray:
    if modality == "atac":
        binary = (x > 0).astype(np.float64)
        tf = sp.diags(1 / np.maximum(np.asarray(binary.sum(1)).ravel(), 1)) @ binary
        idf = binary.shape[0] / np.maximum(np.asarray(binary.sum(0)).ravel(), 1)
        tfidf = tf @ sp.diags(idf)
        tfidf.data = np.log1p(tfidf.data * 1e4)
        k = min(N_COMPS + 1, min(x.shape) - 1)
        z = TruncatedSVD(k, random_state=seed).fit_transform(tfidf)[:, 1:]
    else:
        values = _clr(x) if modality == "adt" else _log_norm(x)
        z = PCA(min(N_COMPS, min(x.shape) - 1), random_state=seed).fit_transform(values)
    return StandardScaler().fit_transform(z)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None, help="ignored (no training)")
    args = parser.parse_args()

    meta = json.loads((args.task_dir / "task.json").read_text())
    cells = pd.read_csv(args.task_dir / "cells.csv", index_col=0)
    cells.index = cells.index.astype(str)
    start = time.perf_counter()
    blocks = []
    for m in meta["modalities"]:
        a = ad.read_h5ad(args.task_dir / f"{m}.h5ad")
        z = _reduce(m, sp.csr_matrix(a.X, dtype=np.float64), args.seed)
        full = np.zeros((len(cells), z.shape[1]), dtype=np.float32)
        rows = cells.index.get_indexer(a.obs_names)
        if (rows < 0).any():
            raise SystemExit(f"unintegrated: {m}.h5ad has cells missing from cells.csv")
        full[rows] = z
        blocks.append(full)
    seconds = time.perf_counter() - start
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "embedding.npy", np.hstack(blocks))
    record = {
        "method": "unintegrated",
        "task": meta["name"],
        "seed": args.seed,
        "train_seconds": round(seconds, 1),
        "epochs": None,
        "epoch_cap": None,
        "version": f"scikit-learn {sklearn.__version__}",
        "notes": "per-modality PCA (RNA log1p CP10k; ADT CLR) / LSI (ATAC TF-IDF), "
        "standardised, concatenated; zeros for unmeasured modalities",
    }
    (args.out / "run.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
