"""The real-data tasks shared by the benchmarks and the slow tests, built in code.

Each builder reads ``../shared/data`` (or ``shared``) and returns a fresh MuData, so a caller
may add columns or train on it freely. The layouts are the ones named in the issues:

* ``snare_mosaic``: SNARE-seq mouse cortex (Chen et al. 2019), 12 libraries made into a mosaic:
  the first four (09A-09D, sorted) keep RNA + ATAC, the next four (09E-09H) keep RNA only,
  the last four (09I-09L) ATAC only. The RNA of the ATAC-only cells is held back as the truth
  for imputation. ~1 % of all cells (103) are labelled, drawn at random from the paired
  libraries only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import NearestNeighbors

import mmaavi

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

SNARE_PAIRED = ("09A", "09B", "09C", "09D")
SNARE_RNA_ONLY = ("09E", "09F", "09G", "09H")
SNARE_ATAC_ONLY = ("09I", "09J", "09K", "09L")
SNARE_LABEL_KEY = "label_1pct"


@dataclass
class SnareTask:
    """The SNARE-seq mosaic, its truth, and who is labelled / held back."""

    mdata: object
    truth: np.ndarray  # cell_type of every cell, in mdata order
    labelled: np.ndarray  # bool, cells whose label the model sees
    held_back_rna: ad.AnnData  # measured RNA of the ATAC-only cells (not in mdata)


def snare_mosaic(
    shared: Path = SHARED, labelled_fraction: float = 0.01, label_seed: int = 0
) -> SnareTask:
    """The ``snare_mosaic`` task with the mm10 guidance graph (peak in gene body + 2 kb)."""
    folder = Path(shared) / "snareseq_mouse_cortex_chen2019"
    rna = ad.read_h5ad(folder / "rna.h5ad")
    atac = ad.read_h5ad(folder / "atac.h5ad")
    batch = rna.obs["batch"].astype(str)
    keep_rna = batch.isin(SNARE_PAIRED + SNARE_RNA_ONLY).to_numpy()
    keep_atac = batch.isin(SNARE_PAIRED + SNARE_ATAC_ONLY).to_numpy()
    mdata = mmaavi.data.mosaic(
        {"rna": rna[keep_rna].copy(), "atac": atac[keep_atac].copy()}, batch_key="batch"
    )
    mmaavi.graph.add_guidance_graph(mdata, "mm10")

    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    paired = np.flatnonzero(mdata.obs["batch"].astype(str).isin(SNARE_PAIRED).to_numpy())
    n_labelled = round(labelled_fraction * mdata.n_obs)
    rng = np.random.default_rng(label_seed)
    labelled = np.zeros(mdata.n_obs, dtype=bool)
    labelled[rng.choice(paired, n_labelled, replace=False)] = True
    mdata.obs[SNARE_LABEL_KEY] = np.where(labelled, truth, np.nan).astype(object)

    held_back = rna[batch.isin(SNARE_ATAC_ONLY).to_numpy()].copy()
    return SnareTask(mdata, truth, labelled, held_back)


def label_transfer_scores(truth: np.ndarray, predicted: np.ndarray, labelled: np.ndarray) -> dict:
    """Balanced and plain accuracy of ``predicted`` on the unlabelled cells."""
    rest = ~labelled
    return {
        "n_unlabelled": int(rest.sum()),
        "balanced_accuracy": float(balanced_accuracy_score(truth[rest], predicted[rest])),
        "accuracy": float((truth[rest] == predicted[rest]).mean()),
    }


def append_record(path: Path, record: dict) -> None:
    """Print one benchmark record as JSON and append it as a line to ``path``."""
    print(json.dumps(record))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")


def knn_average_imputation(
    z: np.ndarray, source: np.ndarray, values: np.ndarray, target: np.ndarray, k: int = 15
) -> np.ndarray:
    """Baseline imputation: the mean of ``values`` over each target cell's ``k`` nearest
    source cells in the embedding ``z``.

    ``source`` and ``target`` are integer row indices into ``z``; ``values`` has one row per
    ``source`` entry, in that order. Returns one row per ``target`` entry, in that order.
    """
    nn = NearestNeighbors(n_neighbors=k).fit(z[source])
    idx = nn.kneighbors(z[target], return_distance=False)
    rows = np.repeat(np.arange(len(target)), k)
    weights = sp.csr_matrix(
        (np.full(idx.size, 1.0 / k), (rows, idx.ravel())), shape=(len(target), len(source))
    )
    return np.asarray(weights @ values)
