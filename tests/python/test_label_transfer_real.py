"""Label transfer on the PBMC WNN RNA + ADT mosaic with labels from one batch (issue 4).

Only the cells of batch ``p3_0`` (400 paired RNA + ADT cells) keep their ``cell_type``; the 1200
others (RNA-only ``p1_0``, ADT-only ``p2_0``, paired ``p4_0``) are unlabelled (NaN). The
semi-supervised model (``label_key``, ``n_components`` = the 8 classes) is scored by balanced
accuracy of ``predict_labels()`` on the unlabelled cells, against a 15-nearest-neighbour
classifier fitted on the ``p3_0`` cells' embedding of the unsupervised model with default
training (``n_components=8``, seed 0: the session's ``pbmc_default_model``, which the quality and
differential tests share). See ``benchmarks/label_transfer.py``.

Measured balanced accuracy on the 1200 unlabelled cells (plain accuracy in brackets):

=============================  ==============  ========================
model (seed)                   40 epochs       default (early stopped)
=============================  ==============  ========================
semi-supervised, seed 0        0.836 (0.904)   0.858 (0.916), 94 epochs
semi-supervised, seed 1        0.860 (0.918)   0.850 (0.924), 95 epochs
kNN, unsupervised, seed 0      0.656 (0.879)   0.676 (0.900), 111 epochs
kNN, unsupervised, seed 1      0.654 (0.886)   0.675 (0.905), 85 epochs
=============================  ==============  ========================

Re-measured after the fused NB loss (same values to rounding, so a different trajectory) and
p(c) following the labelled cells' class frequencies (uniform when the table was measured):
40 epochs, seed 0, semi-supervised 0.801, kNN 0.614. On 2026-12-07 (this file as it is):
semi-supervised 0.842 (40 epochs, seed 0), kNN on the default-trained model (92 epochs, seed 0)
0.668 (0.898).

The kNN's plain accuracy is close to the semi-supervised model's but its balanced accuracy is far
lower, i.e. it does worse on the small classes (DC has 23 cells, other 18, other T 52; per-class
recall was not measured).

The semi-supervised model trains for ``MAX_EPOCHS`` = 40 epochs (seed 0; about 75 s on one
CPU thread) rather than the default early-stopped run (85-111 epochs, 2.5-5 minutes); the kNN
reads the fully trained unsupervised model, the stronger baseline (0.668 against 0.614 at 40
epochs), which the session trains anyway. The floor (0.75) sits 0.05 below the worst measured
40-epoch run; the semi-supervised model must beat the kNN by 0.1 (measured gaps 0.18, 0.21 and
0.19 against 40-epoch kNNs, 0.17 against the default-trained one).
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score
from sklearn.neighbors import KNeighborsClassifier

import mmaavi

pytestmark = pytest.mark.slow

LABELLED_BATCH = "p3_0"
MAX_EPOCHS = 40
SEMI_FLOOR = 0.75
KNN_MARGIN = 0.1


def _task(pbmc_mosaic):
    """The mosaic (a fresh copy per model) with ``label_p3``, the true labels, the labelled mask."""
    mdata = pbmc_mosaic()
    truth = mdata.obs["cell_type"].astype(str).to_numpy()
    labelled = (mdata.obs["batch"].astype(str) == LABELLED_BATCH).to_numpy()
    mdata.obs["label_p3"] = np.where(labelled, truth, np.nan).astype(object)
    return mdata, truth, labelled


@pytest.fixture(scope="module")
def semi_accuracy(pbmc_mosaic):
    mdata, truth, labelled = _task(pbmc_mosaic)
    model = mmaavi.MMAAVI(mdata, batch_key="batch", label_key="label_p3")
    model.train(MAX_EPOCHS, seed=0, progress="none")
    predicted = model.predict_labels()["label"].astype(str).to_numpy()
    score = balanced_accuracy_score(truth[~labelled], predicted[~labelled])
    print(f"semi-supervised balanced accuracy {score:.3f}")
    return score


@pytest.fixture(scope="module")
def knn_accuracy(pbmc_default_model):
    obs = pbmc_default_model.mdata.obs
    truth = obs["cell_type"].astype(str).to_numpy()
    labelled = (obs["batch"].astype(str) == LABELLED_BATCH).to_numpy()
    z = pbmc_default_model.get_latent_representation()
    knn = KNeighborsClassifier(n_neighbors=15).fit(z[labelled], truth[labelled])
    score = balanced_accuracy_score(truth[~labelled], knn.predict(z[~labelled]))
    print(f"kNN on the unsupervised embedding: balanced accuracy {score:.3f}")
    return score


def test_label_transfer_above_floor(semi_accuracy):
    assert semi_accuracy >= SEMI_FLOOR


def test_label_transfer_beats_knn_on_unsupervised_embedding(semi_accuracy, knn_accuracy):
    assert semi_accuracy > knn_accuracy + KNN_MARGIN
