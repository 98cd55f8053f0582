"""Benchmark runner: mmaavi with its defaults (the contract is in ``benchmarks/bench.py``).

Defaults as a user gets them: ``MMAAVI(mdata, n_components=<number of label classes>)`` (the
number of mixture components is the one thing mmaavi needs to be told without labels; the task's
class count, as the mmAAVI paper did), encoder inputs ``log1p_norm``, NB likelihoods, the
guidance graph built by ``mmaavi.graph.add_guidance_graph`` from the task's genome, and
``train()``'s own stopping rule (``max_epochs=300``, early stopping, learning-rate cuts).
BMMC's two RNA gene sets are given as two blocks, so a gene is unmeasured (not zero) in the
batches that lack it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import mmaavi


def load_mosaic(task_dir: Path):
    """The task as mmaavi's mosaic MuData (its own cell order) and ``cells.csv``."""
    meta = json.loads((task_dir / "task.json").read_text())
    cells = pd.read_csv(task_dir / "cells.csv", index_col=0)
    cells.index = cells.index.astype(str)
    mods = {}
    for m in meta["modalities"]:
        a = ad.read_h5ad(task_dir / f"{m}.h5ad")
        measured = [c for c in a.var.columns if c.startswith("measured_in_")]
        if not measured:
            mods[m] = a
            continue
        # one block per set of batches sharing a feature set
        pattern = a.var[measured].T.apply(lambda col: tuple(col), axis=1)
        blocks = []
        for feats in pd.unique(pattern):
            batches = [c.removeprefix("measured_in_") for c in pattern.index[pattern == feats]]
            rows = a.obs["batch"].astype(str).isin(batches).to_numpy()
            block = a[rows, np.asarray(feats, dtype=bool)].copy()
            block.var = block.var.drop(columns=measured)
            blocks.append(block)
        mods[m] = blocks
    mdata = mmaavi.data.mosaic(mods, batch_key="batch")
    mdata.obs["label"] = cells["label"].reindex(mdata.obs_names).to_numpy()
    mmaavi.graph.add_guidance_graph(mdata, meta["genome"])
    return meta, cells, mdata


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    meta, cells, mdata = load_mosaic(args.task_dir)
    # the mosaic orders cells its own way: rows go back to cells.csv order by name
    rows = mdata.obs_names.get_indexer(cells.index)
    if (rows < 0).any() or mdata.n_obs != len(cells):
        raise SystemExit("mmaavi runner: the mosaic's cells are not those of cells.csv")
    n_classes = cells["label"].nunique()
    start = time.perf_counter()
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=n_classes)
    kwargs = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
    model.train(seed=args.seed, progress="none", **kwargs)
    train_seconds = time.perf_counter() - start
    z = model.get_latent_representation()[rows]
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "embedding.npy", np.asarray(z, dtype=np.float32))
    record = {
        "method": "mmaavi",
        "task": meta["name"],
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "epochs": len(model.history),
        "epoch_cap": args.max_epochs,
        "version": mmaavi.__version__,
        "notes": f"defaults, n_components={n_classes} (label classes), one torch thread",
    }
    (args.out / "run.json").write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
