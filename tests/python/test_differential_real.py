"""Bayes-factor differential features find known biology on the PBMC WNN RNA + ADT mosaic.

The model is the session's default PBMC model (conftest ``pbmc_default_model``, shared with the
integration-quality test): seed 0, ``n_components=8``, default training (early stopping, 92
epochs, ~3 minutes on one CPU thread). The rank of a marker is its position within its
modality's rows of the table, out of 500 genes or 224 antibodies. The table is sorted by
``bayes_factor``; with ``n_samples=5000`` about 30 B-cell genes reach the Monte Carlo ceiling
(``proba_de`` 1, BF 9.2), and those ties are ordered by ``|lfc_mean|``, which is summarised with
a pseudocount 1000 times smaller than the decision's (as scvi-tools does), so that a feature
almost absent outside the group keeps its large fold change. Measured (rank, BF):

=====================  ============  ============  ============
marker                 seed 0 (92)   seed 1 (91)   seed 2 (74)
=====================  ============  ============  ============
B: MS4A1 (RNA)         19, BF 9.2    17, BF 9.2    12, BF 8.5
B: CD79A (RNA)         11, BF 9.2    10, BF 9.2    11, BF 8.5
B: CD19 (RNA)          3, BF 9.2     28, BF 8.5    72, BF 4.7
B: cd19 (ADT)          5, BF 9.2     5, BF 9.2     5, BF 8.5
B: cd20 (ADT)          6, BF 9.2     6, BF 9.2     3, BF 9.2
Mono: S100A8 (RNA)     2, BF 9.2     4, BF 7.8     6, BF 7.8
Mono: S100A9 (RNA)     3, BF 9.2     5, BF 7.8     3, BF 8.5
Mono: cd14 (ADT)       3, BF 6.7     4, BF 5.5     5, BF 5.9
=====================  ============  ============  ============

(epochs in brackets; the tests assert seed 0; every seed's row, and the calibration below:
``.venv/bin/python benchmarks/differential_markers.py --seed N``). **RNA CD19's top-20 rank depends on the seed.**
Its Bayes factor is at or near the ceiling only when training makes its decoded expression in B
cells consistently high: on seed 2, ``proba_de`` is 0.9908 (in ~1 % of the paired draws the B
cell's CD19 is within delta of the other cell's, after ε), and the 71 features ahead of it, all
higher in B, are the panel's other B-cell genes with ``proba_de`` closer to 1. CD19 RNA is
sparse in these data: counts in 27 % of the B cells, none in the other cells (CD79A 97 %, MS4A1
95 %, BANK1 90 % of the B cells). On seed 2, 46 of the 5000 paired draws miss, and they come
from the 3 B cells the model decodes with the least CD19 (1.7e-5, 2.9e-5, 5.9e-5; B median
5e-4), mostly the first two, whose B markers are weak: ADT cd19 38 and 44 counts (B median 355),
cd20 6 and 4 (median 24); the first (p3_0_3316, paired) has no CD19, MS4A1 or CD79A RNA count.
So the rank follows how a seed places a few ambiguous cells labelled B, not a bias of the
procedure (``differential_markers.py --seed 2`` prints the missed draws and those cells; which
draws came from which cells was counted once, ad hoc, on 2026-12-08).

Before the summary pseudocount was reduced (``|lfc_mean|`` with ε = 1e-4 broke the ties) CD19
ranked 32 with BF 9.2 (seed 0): ε shrinks its fold change (6e-4 in B against 7e-7 elsewhere:
log2 ratio 10.1 with ε' = 1e-7, 2.7 with ε), so the ~30 saturated B-cell genes expressed more
highly (the immunoglobulins, BANK1, CD79A, ...) went first. A model trained for only 20 epochs
does not saturate (CD19 BF 6.1, rank 33 by BF alone): the assertions need the trained model.
CD14 and LYZ are not among the 500 RNA features shipped with this data set
(``../shared/data/pbmc_wnn_rna_adt_mosaic/PROVENANCE.md``: HVGs); S100A8 / S100A9
(classical-monocyte markers) stand in for them, next to the ADT cd14.

Calibration, same model: an A/A split of the Mono cells calls 0 of 724 features DE at
fdr_target 0.05 (largest BF 2.2; seeds 1-2: 0, 2.3 / 2.0); CD4 T likewise 0 (2.4; 2.3 / 2.2).
Splitting Mono cells by assay, RNA-only batch p1_0 against ADT-only batch p2_0, calls 0 features
DE (seeds 0-2), whereas the original's procedure (missing modalities decoded at library size 0)
calls all of them. The whole file ran in 229 s with the model's training.
"""

from __future__ import annotations

import numpy as np
import pytest

from _helpers import rank_in_modality
from mmaavi.differential import differential

pytestmark = pytest.mark.slow

DELTA = 0.25


@pytest.fixture(scope="module")
def model(pbmc_default_model):
    """The session's default PBMC model (conftest), shared with the quality test."""
    return pbmc_default_model


@pytest.mark.parametrize(
    ("group", "markers"),
    [
        (
            "B",
            [
                ("rna", "MS4A1", 20),
                ("rna", "CD79A", 20),
                ("rna", "CD19", 20),
                ("adt", "cd19", 20),
                ("adt", "cd20", 20),
            ],
        ),
        ("Mono", [("rna", "S100A8", 20), ("rna", "S100A9", 20), ("adt", "cd14", 20)]),
    ],
)
def test_known_markers_rank_high(model, group, markers):
    table = differential(model, "cell_type", group)
    for modality, feature, top in markers:
        rank, bayes_factor = rank_in_modality(table, modality, feature)
        print(f"{group} vs rest: {modality} {feature} rank {rank}, BF {bayes_factor:.2f}")
        assert rank <= top and bayes_factor > 3
        assert table.loc[table.feature == feature, "lfc_mean"].iloc[0] > 0


def _split(model, column: str, cell_type: str, values: np.ndarray) -> None:
    """Add ``column`` to ``mdata.obs``: ``values`` for ``cell_type`` cells, missing elsewhere."""
    obs = model.mdata.obs
    out = np.asarray(values, dtype=object)
    out[(obs["cell_type"].astype(str) != cell_type).to_numpy()] = None
    obs[column] = out


@pytest.mark.parametrize("cell_type", ["Mono", "CD4 T"])
def test_random_split_of_one_cell_type_calls_almost_nothing(model, cell_type):
    rng = np.random.default_rng(0)
    halves = np.where(rng.random(model.mdata.n_obs) < 0.5, "A1", "A2")
    _split(model, "aa_split", cell_type, halves)
    table = differential(model, "aa_split", "A1", "A2")
    called = table["is_de_fdr_0.05"].mean()
    print(f"A/A {cell_type}: {called:.4f} called, max BF {table.bayes_factor.max():.2f}")
    assert called <= 0.01
    assert (table.bayes_factor > 3).mean() <= 0.01


def _library_zero_fraction_de(model, cells1: np.ndarray, cells2: np.ndarray) -> float:
    """Fraction of features the original's procedure calls changed (|lfc| > DELTA).

    It decodes each cell at its own library size, 0 for a modality the cell did not measure,
    and compares the group means.
    """
    data = model.data
    changed = []
    for j, m in enumerate(data.modalities):
        library = np.asarray(data.counts[m].sum(axis=1)).ravel() * data.obs_mask[:, j]
        expected = model.impute(m, library_size=1.0).to_numpy() * library[:, None]
        mean1, mean2 = expected[cells1].mean(axis=0), expected[cells2].mean(axis=0)
        changed.append(np.abs(np.log2((mean1 + 1e-4) / (mean2 + 1e-4))) > DELTA)
    return float(np.concatenate(changed).mean())


def test_split_by_assay_calls_far_fewer_than_library_zero_decoding(model):
    """Mono cells of the RNA-only batch against those of the ADT-only batch."""
    _split(model, "assay_split", "Mono", model.mdata.obs["batch"].astype(str).to_numpy())
    table = differential(model, "assay_split", "p1_0", "p2_0")
    ours = table["is_de_fdr_0.05"].mean()
    obs = model.mdata.obs
    batch = obs["batch"].astype(str).to_numpy()
    mono = (obs["cell_type"].astype(str) == "Mono").to_numpy()
    biased = _library_zero_fraction_de(
        model, np.flatnonzero(mono & (batch == "p1_0")), np.flatnonzero(mono & (batch == "p2_0"))
    )
    print(f"assay split, Mono p1_0 vs p2_0: {ours:.4f} called; library-0 decoding {biased:.4f}")
    assert ours <= 0.01
    assert biased >= 0.9
