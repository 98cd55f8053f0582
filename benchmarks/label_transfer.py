"""Label transfer on the PBMC WNN RNA + ADT mosaic, labels from one paired batch (issue 4).

The cells of batch ``p3_0`` (paired RNA + ADT) keep their ``cell_type``; every other cell is
unlabelled. Two methods are scored by balanced accuracy on the unlabelled cells:

* ``semi``: ``MMAAVI(mdata, batch_key="batch", label_key="label_p3")`` (``n_components`` = number
  of classes), default training, ``predict_labels()["label"]``;
* ``knn``: an unsupervised ``MMAAVI(..., n_components=8)``, default training, then
  ``KNeighborsClassifier(n_neighbors=15)`` fitted on the ``p3_0`` cells' latent means.

Run from the repository root (one CPU thread; a default training takes ~3-4 minutes)::

    .venv/bin/python benchmarks/label_transfer.py --method semi --seed 0
    .venv/bin/python benchmarks/label_transfer.py --method knn --seed 0
    .venv/bin/python benchmarks/label_transfer.py --method semi --seed 0 --weight-sup 5
    .venv/bin/python benchmarks/label_transfer.py --method knn --seed 0 --max-epochs 40

Each run appends one JSON line to ``benchmarks/results/label_transfer.jsonl``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

torch.set_num_threads(1)

import anndata as ad  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tasks import append_record, label_transfer_scores  # noqa: E402

import mmaavi  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "pbmc_wnn_rna_adt_mosaic"
RESULTS = ROOT / "benchmarks" / "results" / "label_transfer.jsonl"
LABELLED_BATCH = "p3_0"


def load():
    mdata = mmaavi.data.mosaic(
        {"rna": ad.read_h5ad(DATA / "rna.h5ad"), "adt": ad.read_h5ad(DATA / "adt.h5ad")},
        batch_key="batch",
    )
    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    labelled = (mdata.obs["batch"].astype(str) == LABELLED_BATCH).to_numpy()
    mdata.obs["label_p3"] = np.where(labelled, truth, np.nan).astype(object)
    return mdata, truth, labelled


def run(method: str, seed: int, weight_sup: float, max_epochs: int = 300) -> dict:
    mdata, truth, labelled = load()
    start = time.perf_counter()
    if method == "semi":
        model = mmaavi.MMAAVI(mdata, batch_key="batch", label_key="label_p3")
        model.train(max_epochs, seed=seed, weight_sup=weight_sup, progress="none")
        predicted = model.predict_labels()["label"].astype(str).to_numpy()
    else:
        model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=8)
        model.train(max_epochs, seed=seed, progress="none")
        z = model.get_latent_representation()
        knn = KNeighborsClassifier(n_neighbors=15).fit(z[labelled], truth[labelled])
        predicted = knn.predict(z)
    seconds = time.perf_counter() - start
    return {
        "dataset": "pbmc_wnn_rna_adt_mosaic",
        "labelled_batch": LABELLED_BATCH,
        "method": method,
        "seed": seed,
        "weight_sup": weight_sup if method == "semi" else None,
        "max_epochs": max_epochs,
        "epochs": len(model.history),
        # whose weights were scored: the last epoch's (the default) or the best one's
        "best_epoch": model.train_info["best_epoch"],
        "kept_epoch": model.train_info["kept_epoch"],
        **label_transfer_scores(truth, predicted, labelled),
        "train_seconds": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=["semi", "knn"], required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-sup", type=float, default=1.0)
    parser.add_argument("--max-epochs", type=int, default=300)
    args = parser.parse_args()
    record = run(args.method, args.seed, args.weight_sup, args.max_epochs)
    append_record(RESULTS, record)


if __name__ == "__main__":
    main()
