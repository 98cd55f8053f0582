"""Measure the integration quality behind the floors in tests/python/test_integration_quality.py.

Trains mmaavi with its defaults on the real BMMC and PBMC mosaics for several seeds, scores the
embedding and the PCA baseline with ``mmaavi.metrics.integration_metrics`` and writes one JSON line
per run plus a markdown summary.

    .venv/bin/python benchmarks/quality_floors.py --task bmmc --seeds 0 1 2 --out benchmarks/results
    .venv/bin/python benchmarks/quality_floors.py --task pbmc --seeds 0 1 2 --out benchmarks/results
    .venv/bin/python benchmarks/quality_floors.py --summarise benchmarks/results

Runs use one torch thread; the seconds are wall time on whatever machine ran them (indicative).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import torch

import mmaavi
from mmaavi.metrics import integration_metrics, pca_baseline

SHARED = Path(
    os.environ.get("MMAAVI_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: task -> (label column, n_components) as in the quality tests
TASKS = {"bmmc": ("cell_type_l1", 10), "pbmc": ("cell_type", 8)}
SHOWN = (
    "leiden_ari",
    "leiden_nmi",
    "silhouette_label",
    "ilisi_knn",
    "graph_connectivity",
    "silhouette_batch",
)


def load(task: str):
    if task == "bmmc":
        return mmaavi.datasets.bmmc_mosaic()
    folder = SHARED / "pbmc_wnn_rna_adt_mosaic"
    mods = {m: ad.read_h5ad(folder / f"{m}.h5ad") for m in ("rna", "adt")}
    return mmaavi.data.mosaic(mods, batch_key="batch")


def run(task: str, seed: int) -> dict:
    label, k = TASKS[task]
    mdata = load(task)
    start = time.perf_counter()
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=k)
    model.train(seed=seed, progress="none")
    seconds = time.perf_counter() - start
    z = model.get_latent_representation()
    labels, batches = mdata.obs[label], mdata.obs["batch"]
    return {
        "task": task,
        "seed": seed,
        "version": mmaavi.__version__,
        "train_seconds": seconds,
        "epochs": len(model.history),
        "stop_reason": model.train_info["stop_reason"],
        "mmaavi": integration_metrics(z, labels, batches, seed=seed),
        "pca": integration_metrics(pca_baseline(mdata, seed=seed), labels, batches, seed=seed),
    }


def summarise(folder: Path) -> str:
    rows = [
        json.loads(line)
        for f in sorted(folder.glob("quality_*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    lines = [
        "| task | method | " + " | ".join(SHOWN) + " | epochs | train s |",
        "|---" * (len(SHOWN) + 4) + "|",
    ]
    for task in TASKS:
        runs = [r for r in rows if r["task"] == task]
        if not runs:
            continue
        for method in ("mmaavi", "pca"):
            table = pd.DataFrame([r[method] for r in runs])
            cells = [f"{table[c].mean():.3f} (min {table[c].min():.3f})" for c in SHOWN]
            epochs = f"{np.mean([r['epochs'] for r in runs]):.0f}" if method == "mmaavi" else "-"
            secs = (
                f"{np.mean([r['train_seconds'] for r in runs]):.0f}" if method == "mmaavi" else "-"
            )
            lines.append(
                f"| {task} (seeds {sorted(r['seed'] for r in runs)}) | {method} | "
                + " | ".join(cells)
                + f" | {epochs} | {secs} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--summarise", type=Path, help="print the markdown table of a results folder"
    )
    args = parser.parse_args()
    if args.summarise:
        print(summarise(args.summarise))
        return
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / f"quality_{args.task}.jsonl", "a") as fh:
        for seed in args.seeds:
            result = run(args.task, seed)
            fh.write(json.dumps(result) + "\n")
            fh.flush()
            print(json.dumps(result))


if __name__ == "__main__":
    main()
