"""RNA imputation and label transfer on the SNARE-seq mosaic (issue 4), real data.

Task (``benchmarks/tasks.py``): SNARE-seq mouse cortex, libraries 09A-09D paired RNA + ATAC,
09E-09H RNA only, 09I-09L ATAC only, whose RNA is held back. mmaavi (``n_components=15``, ATAC
as per-batch LSI, seed 0, MAX_EPOCHS = 8: ~25-60 s an epoch on one CPU thread for 10k cells x
27k features, depending on the load) imputes RNA for the ATAC-only cells
(``impute("rna")``, averaged over the RNA batches); the score is the per-gene Pearson r
against their held-back RNA (log1p of counts per 1e4), median over genes. Baseline: the mean
log-normalised RNA of each cell's 15 nearest RNA-measured cells in the same embedding.

Measured with ``benchmarks/snare_mosaic.py --method unsup --max-epochs 8`` (records in
``benchmarks/results/snare_mosaic.jsonl``):

=====  ==================  ====================  =====================================
seed   mmaavi median r     kNN-average median r  kNN label transfer (103 labels, k=5)
=====  ==================  ====================  =====================================
0      0.065               0.035                 balanced accuracy 0.258
1      0.067               0.032                 balanced accuracy 0.296
=====  ==================  ====================  =====================================

For scale: imputing each cell with the mean RNA of its *true* cell type gives 0.105 (the RNA is
sparse: median 260 UMIs, 6.7 % non-zero). The floor (0.05) sits below the worst seed, and the
model must beat the baseline by half again (measured ratios 1.8 and 2.1). Re-measured
2026-12-06 after the LSI fit became a block Krylov iteration (the same components to ~1e-8, so
a slightly different trajectory); before it (2026-12-01, last epoch's weights kept) 0.063 /
0.068 against 0.035 / 0.033, kNN label transfer 0.262 / 0.299; the first measurement, some
commits earlier, gave 0.064 / 0.067 against 0.033 / 0.034 and 0.270 / 0.296. In these 8-epoch
runs the best epoch is the last, but for semi seed 1 (best 7).

Label transfer: 103 cells (1 %) drawn from the paired libraries keep their ``cell_type``.
The semi-supervised model (``label_key``, ``weight_sup=20``, same epochs) is scored by balanced
accuracy of ``predict_labels()`` on the unlabelled cells, against the 5-NN classifier on the
unsupervised model's embedding (the table above). Measured (``--method semi --weight-sup 20``):
seed 0 0.313, seed 1 0.330 (2026-12-01: 0.297 and 0.332; first measured 0.329 and 0.325); with
``weight_sup=5`` 0.324 and 0.206 (first measurement; seed 1 below the kNN). 4 of the 15 classes
draw no label, so 11/15 = 0.73 is the most any method can reach. Floor 0.28.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

MAX_EPOCHS = 8
FLOOR = 0.05
BASELINE_RATIO = 1.5
WEIGHT_SUP = 20.0
LABEL_FLOOR = 0.28


@pytest.fixture(scope="module")
def record(snare_benchmark):
    result = snare_benchmark("unsup", 0, MAX_EPOCHS, "lsi", 5.0)
    print(result)
    return result


@pytest.fixture(scope="module")
def semi(snare_benchmark):
    result = snare_benchmark("semi", 0, MAX_EPOCHS, "lsi", WEIGHT_SUP)
    print(result)
    return result


def test_label_transfer_above_floor(semi):
    assert semi["balanced_accuracy"] >= LABEL_FLOOR


def test_label_transfer_beats_knn_on_unsupervised_embedding(semi, record):
    assert semi["balanced_accuracy"] > record["balanced_accuracy"]


def test_imputed_rna_correlates_with_held_back_rna(record):
    assert record["impute_median_r"] >= FLOOR


def test_imputation_beats_knn_average_of_rna_measured_neighbours(record):
    assert record["impute_median_r"] > BASELINE_RATIO * record["knn_impute_median_r"]
