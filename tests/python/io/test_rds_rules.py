"""mmaavi.io._rules (Python) and the R package's .mosaic_blocks() cut the same mosaic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmaavi.io._rules import Counts, mosaic_blocks

# One case of .mosaic_blocks() on the bundled BMMC matrices (the R tests' bmmc_matrices()):
# observed = "none" | "mixed" (ADT by cell names, ATAC by a logical column); subset = TRUE
# gives ADT as a matrix over the CITE cells only (a SeuratObject 5 assay); batch = FALSE one
# batch.
R_CASE = """
rules_case <- function(observed, subset, batch, features) {
  m <- bmmc_matrices(shuffle_seed = 11)
  cells <- colnames(m$rna)
  counts <- list(rna = m$rna, adt = m$adt, atac = m$atac)
  cite <- cells[startsWith(m$cells$batch, "cite")]
  if (subset) counts$adt <- counts$adt[, cite]
  table <- m$cells
  table$has_atac <- startsWith(table$batch, "multiome")
  obs <- if (observed == "mixed") list(adt = cite, atac = "has_atac") else NULL
  batch_values <- if (batch) as.character(table$batch) else rep("1", length(cells))
  blocks <- mmaavi:::.mosaic_blocks(counts, cells, obs, table, "meta.data", FALSE,
                                     batch_values, features)
  list(blocks = blocks, counts = counts, cells = cells, batch = batch_values,
       levels = levels(factor(batch_values)), cite = cite, has_atac = table$has_atac)
}
"""


@pytest.fixture(scope="module")
def r_case(r, r_lib):
    with r.quiet():
        r.ro.r(R_CASE)
    return r.ro.r["rules_case"]


@pytest.mark.parametrize(
    "observed, subset, batch, features",
    [
        ("none", False, True, "nonzero"),
        ("none", False, True, "all"),
        ("mixed", False, True, "nonzero"),
        ("none", True, True, "nonzero"),
        ("none", False, False, "nonzero"),
    ],
)
def test_python_rules_cut_the_blocks_r_cuts(r, r_case, observed, subset, batch, features):
    with r.quiet():
        case = r_case(observed, subset, batch, features)
    cells = r.strings(case.rx2("cells"))
    counts = {}
    for m in ("rna", "adt", "atac"):
        x = case.rx2("counts").rx2(m)
        counts[m] = Counts(
            r.sparse(x),
            r.strings(r.ro.r["rownames"](x)),
            r.strings(r.ro.r["colnames"](x)),
        )
    table = pd.DataFrame({"has_atac": r.flag(case.rx2("has_atac"))}, index=cells)
    spec = {"adt": r.strings(case.rx2("cite")), "atac": "has_atac"} if observed == "mixed" else None
    ours = mosaic_blocks(
        counts,
        cells,
        r.strings(case.rx2("batch")),
        r.strings(case.rx2("levels")),
        table,
        observed=spec,
        batch_features=features,
    ).blocks
    theirs = case.rx2("blocks")
    assert list(ours) == list(theirs.names)
    for m, blocks in ours.items():
        assert len(blocks) == len(theirs.rx2(m)), m
        for mine, other in zip(blocks, theirs.rx2(m)):
            assert mine["cells"] == r.strings(other.rx2("cells"))
            assert mine["features"] == r.strings(other.rx2("features"))
            assert (mine["x"] != r.sparse(other.rx2("x"))).nnz == 0


# ---------------------------------------------------------------- without R


def _counts(dense: np.ndarray, cells: list[str]) -> Counts:
    """features x cells counts."""
    return Counts(sp.csc_matrix(dense), [f"g{i}" for i in range(dense.shape[0])], cells)


CELLS = ["a", "b", "c", "d"]


def _rules(counts, observed=None, table=None, **kwargs):
    table = pd.DataFrame(index=CELLS) if table is None else table
    return mosaic_blocks(counts, CELLS, ["b1"] * 4, ["b1"], table, observed=observed, **kwargs)


def test_all_zero_columns_are_unmeasured_with_a_note():
    rna = _counts(np.array([[1, 0, 2, 1], [0, 0, 1, 3]]), CELLS)
    adt = _counts(np.array([[0, 4, 0, 0], [0, 1, 0, 0]]), CELLS)
    out = _rules({"rna": rna, "adt": adt})
    assert out.blocks["rna"][0]["cells"] == ["a", "c", "d"]
    assert out.blocks["adt"][0]["cells"] == ["b"]
    assert any("rna 1 of 4 cells, adt 3 of 4 cells" in n for n in out.notes)


def test_a_cell_measuring_nothing_is_refused_by_name():
    rna = _counts(np.array([[1, 0, 2, 1]]), CELLS)
    with pytest.raises(ValueError, match=r"1 cells measured no modality .* e\.g\. 'b'"):
        _rules({"rna": rna})


def test_a_modality_no_cell_measured_is_refused():
    rna = _counts(np.array([[1, 2, 2, 1]]), CELLS)
    with pytest.raises(ValueError, match="no cell measured modality 'adt'"):
        _rules({"rna": rna, "adt": _counts(np.zeros((2, 4)), CELLS)})


def test_observed_errors_say_what_was_expected():
    rna = _counts(np.array([[1, 2, 2, 1]]), CELLS)
    with pytest.raises(ValueError, match="observed names modalities 'atac'"):
        _rules({"rna": rna}, observed={"atac": ["a"]})
    table = pd.DataFrame({"flag": [1, 0, 1, 1]}, index=CELLS)
    with pytest.raises(ValueError, match="names a cell-table column that is not logical"):
        _rules({"rna": rna}, observed={"rna": "flag"}, table=table)
    with pytest.raises(ValueError, match="neither a logical cell-table column nor cell names"):
        _rules({"rna": rna}, observed={"rna": ["a", "zz"]})
    with pytest.raises(ValueError, match="batch_features must be one of 'nonzero', 'all'"):
        _rules({"rna": rna}, batch_features="some")
