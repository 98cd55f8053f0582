"""Peak ↔ gene links by genomic proximity: a peak links to a gene when it overlaps the gene body
extended upstream of the transcription start (strand-aware) and optionally downstream.

Overlaps are found for all peaks and genes at once: chromosomes are folded into one coordinate
axis (``code * 2**32 + position``) and two ``numpy.searchsorted`` passes list every overlapping
pair, so the cost grows with the number of features plus the number of links.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from ._annotation import SHIPPED_ANNOTATIONS, canonical_chrom, load_annotation

logger = logging.getLogger(__name__)

#: a chromosome may hold ``_`` or ``-`` (``chrUn_KI270742v1``); the greedy group keeps them
_PEAK_PATTERN = re.compile(r"^(.+)[:_-](\d+)[_-](\d+)$")
_COORD_COLUMNS = ("chrom", "chromStart", "chromEnd")
_ENSEMBL_ID = r"^ENS[A-Z]*G\d{6,}"
#: one axis for all chromosomes: positions stay below 2**32
_CHROM_STRIDE = np.int64(2**32)


def _coords_from_var(var: pd.DataFrame) -> pd.DataFrame | None:
    """``chrom``/``chromStart``/``chromEnd`` of var rows, or None when the columns are absent."""
    if not all(c in var.columns for c in _COORD_COLUMNS):
        return None
    return pd.DataFrame(
        {
            "chrom": var["chrom"].astype(str).to_numpy(),
            "start": pd.to_numeric(var["chromStart"], errors="coerce").to_numpy(),
            "end": pd.to_numeric(var["chromEnd"], errors="coerce").to_numpy(),
        }
    )


def _valid(coords: pd.DataFrame) -> np.ndarray:
    return (
        np.isfinite(coords["start"].to_numpy(float))
        & np.isfinite(coords["end"].to_numpy(float))
        & (coords["start"].to_numpy(float) >= 0)
        & (coords["end"].to_numpy(float) > coords["start"].to_numpy(float))
        & ~coords["chrom"].isin(["", "nan", "None", "-1"]).to_numpy()
    )


def parse_peaks(names: pd.Index, var: pd.DataFrame | None = None) -> pd.DataFrame:
    """Peak intervals from var columns or from names such as ``chr1:100-200``.

    Parameters
    ----------
    names
        Peak names, (n_peaks,). Parsed when ``var`` lacks valid coordinate columns; accepted
        forms ``chr1:100-200``, ``chr1-100-200`` and ``chr1_100_200`` (0-based start,
        exclusive end, as in BED files and 10x peak names).
    var
        Optional feature table with ``chrom``, ``chromStart`` and ``chromEnd`` columns.

    Returns
    -------
    pandas.DataFrame
        (n_peaks, 3) with ``chrom`` (canonical, without ``chr``), ``start`` and ``end``.

    Raises
    ------
    ValueError
        When some names cannot be parsed or an interval has end <= start.
    """
    coords = _coords_from_var(var) if var is not None else None
    if coords is None or not _valid(coords).all():
        text = np.asarray(names, dtype=str)
        parsed = [
            (m[1], int(m[2]), int(m[3])) if (m := _PEAK_PATTERN.match(n)) else None
            for n in text.tolist()
        ]
        bad = np.array([p is None for p in parsed], dtype=bool)
        if bad.any():
            raise ValueError(
                f"{int(bad.sum())} of {len(names)} peak names cannot be parsed as genomic "
                f"intervals, e.g. {list(text[bad][:5])}. Expected names like 'chr1:100-200', "
                "'chr1-100-200' or 'chr1_100_200', or var columns chrom, chromStart and chromEnd "
                "on the ATAC modality."
            )
        chrom, start, end = zip(*parsed) if parsed else ((), (), ())
        coords = pd.DataFrame(
            {
                "chrom": np.asarray(chrom, dtype=object),
                "start": np.fromiter(start, dtype=np.int64, count=len(parsed)),
                "end": np.fromiter(end, dtype=np.int64, count=len(parsed)),
            }
        )
    ok = _valid(coords)
    if not ok.all():
        examples = list(np.asarray(names, dtype=str)[~ok][:5])
        raise ValueError(
            f"{int((~ok).sum())} peak(s) have an end not after their start, e.g. {examples}. "
            "Expected 'chrom:start-end' with start < end."
        )
    coords["chrom"] = canonical_chrom(coords["chrom"]).to_numpy()
    return coords.astype({"start": np.int64, "end": np.int64})


def _match_annotation(
    names: pd.Index, var: pd.DataFrame, table: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """(feature index, annotation row) pairs: by Ensembl id first, then by exact symbol."""
    names = pd.Index(np.asarray(names, dtype=str))
    if "gene_id" in var.columns:
        ids = var["gene_id"].astype(object).fillna("").astype(str).to_numpy()
    else:
        ids = np.where(names.str.match(_ENSEMBL_ID), names, "")
    ids = pd.Series(ids).str.replace(r"\.\d+$", "", regex=True).to_numpy()
    by_id = table[table["gene_id"] != ""].reset_index().rename(columns={"index": "row"})
    id_pairs = pd.DataFrame({"feature": np.arange(len(names)), "gene_id": ids}).merge(
        by_id[["gene_id", "row"]], on="gene_id"
    )
    rest = np.setdiff1d(np.arange(len(names)), id_pairs["feature"].to_numpy())
    by_symbol = table.reset_index().rename(columns={"index": "row"})
    symbol_pairs = pd.DataFrame({"feature": rest, "gene_name": names[rest]}).merge(
        by_symbol[["gene_name", "row"]], on="gene_name"
    )
    pairs = pd.concat([id_pairs[["feature", "row"]], symbol_pairs[["feature", "row"]]])
    return pairs["feature"].to_numpy(np.int64), pairs["row"].to_numpy(np.int64)


def gene_coordinates(
    names: pd.Index,
    var: pd.DataFrame,
    annotation: str | pd.DataFrame | None,
    min_annotated: float = 0.2,
) -> pd.DataFrame:
    """Gene-body loci of RNA features, from an annotation or from var columns.

    Parameters
    ----------
    names
        RNA feature names (gene symbols or Ensembl ids), (n_genes,).
    var
        The RNA feature table; its ``gene_id`` column (Ensembl) is used for matching when
        present, and its ``chrom``/``chromStart``/``chromEnd``/``strand`` columns when
        ``annotation`` is None.
    annotation
        See :func:`mmaavi.graph.load_annotation`; None takes coordinates from ``var``.
    min_annotated
        Fail when fewer than this fraction of the genes is found in the annotation (wrong
        species or naming).

    Returns
    -------
    pandas.DataFrame
        One row per locus: ``feature`` (position in ``names``), ``chrom`` (canonical),
        ``start``, ``end``, ``strand``. A symbol with several Ensembl loci has several rows.
    """
    if annotation is None:
        coords = _coords_from_var(var)
        if coords is None:
            raise ValueError(
                "No gene coordinates: the RNA modality's var lacks the columns chrom, chromStart "
                "and chromEnd, and no annotation was given. Pass annotation='hg38' (human) or "
                "'mm10' (mouse), a GTF/BED file or a DataFrame of gene bodies."
            )
        coords["strand"] = var["strand"].astype(str).to_numpy() if "strand" in var.columns else "."
        coords["feature"] = np.arange(len(names))
        ok = _valid(coords)
        if not ok.any():
            raise ValueError(
                "The RNA modality's var columns chrom/chromStart/chromEnd hold no valid "
                "interval (start >= 0 and end > start). Pass annotation='hg38' or 'mm10' instead."
            )
        coords = coords[ok]
    else:
        table = load_annotation(annotation)
        feature, row = _match_annotation(names, var, table)
        n_found = len(np.unique(feature))
        if n_found < min_annotated * len(names):
            raise ValueError(_species_message(names, var, annotation, n_found))
        coords = table.iloc[row][["chrom", "chromStart", "chromEnd", "strand"]]
        coords = coords.rename(columns={"chromStart": "start", "chromEnd": "end"})
        coords.insert(0, "feature", feature)
        logger.info("Placed %d of %d genes with the annotation.", n_found, len(names))
    coords = coords.reset_index(drop=True)
    coords["chrom"] = canonical_chrom(coords["chrom"]).to_numpy()
    coords["strand"] = coords["strand"].where(coords["strand"].isin(["+", "-"]), ".")
    return coords.astype({"start": np.int64, "end": np.int64})


def _species_message(names: pd.Index, var: pd.DataFrame, annotation, n_found: int) -> str:
    found = f"only {n_found} of {len(names)} RNA features were found in the annotation"
    if isinstance(annotation, str) and annotation in SHIPPED_ANNOTATIONS:
        others = [g for g in SHIPPED_ANNOTATIONS if g != annotation]
        hint = []
        for other in others:
            n_other = len(np.unique(_match_annotation(names, var, load_annotation(other))[0]))
            hint.append(f"{other} matches {n_other}")
        return (
            f"Species mismatch? With annotation={annotation!r}, {found} "
            f"({'; '.join(hint)}). Pass the genome of your data, e.g. annotation={others[0]!r}. "
            "Genes are matched by Ensembl id (var 'gene_id') or exact symbol (human 'CD4', "
            "mouse 'Cd4')."
        )
    return (
        f"{found}. Check that the annotation is of the same species and uses the same gene "
        "symbols or Ensembl ids (var 'gene_id') as the data."
    )


def _windows(genes: pd.DataFrame, upstream: int, downstream: int) -> tuple[np.ndarray, np.ndarray]:
    """Gene bodies extended upstream/downstream; unknown strand extends both ends by the larger."""
    start, end = genes["start"].to_numpy(np.int64), genes["end"].to_numpy(np.int64)
    strand = genes["strand"].to_numpy()
    wide = max(upstream, downstream)
    left = np.where(strand == "+", upstream, np.where(strand == "-", downstream, wide))
    right = np.where(strand == "+", downstream, np.where(strand == "-", upstream, wide))
    return np.maximum(start - left, 0), end + right


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All (i, j) with lo[i] <= j < hi[i], without a Python loop."""
    counts = np.maximum(hi - lo, 0)
    owner = np.repeat(np.arange(len(lo)), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.arange(counts.sum()) - first + np.repeat(lo, counts)


def overlap_pairs(
    a_start: np.ndarray, a_end: np.ndarray, b_start: np.ndarray, b_end: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Every (i, j) whose half-open intervals ``[a_start[i], a_end[i])`` and
    ``[b_start[j], b_end[j])`` overlap; coordinates already on one axis (int64).

    Each overlapping pair is found exactly once: either b starts inside a (``a_s <= b_s < a_e``)
    or a starts strictly inside b (``b_s < a_s < b_e``).
    """
    b_order = np.argsort(b_start, kind="stable")
    b_sorted = b_start[b_order]
    i1, k1 = _expand(
        np.searchsorted(b_sorted, a_start, "left"), np.searchsorted(b_sorted, a_end, "left")
    )
    a_order = np.argsort(a_start, kind="stable")
    a_sorted = a_start[a_order]
    j2, k2 = _expand(
        np.searchsorted(a_sorted, b_start, "right"), np.searchsorted(a_sorted, b_end, "left")
    )
    return (
        np.concatenate([i1, a_order[k2]]),
        np.concatenate([b_order[k1], j2]),
    )


def peak_gene_links(
    peaks: pd.DataFrame,
    genes: pd.DataFrame,
    upstream: int = 2000,
    downstream: int = 0,
    decay: float | Callable[[np.ndarray], np.ndarray] | None = None,
) -> pd.DataFrame:
    """Peak–gene pairs whose intervals overlap the extended gene bodies.

    Parameters
    ----------
    peaks
        From :func:`parse_peaks`: ``chrom``, ``start``, ``end``, (n_peaks, 3).
    genes
        From :func:`gene_coordinates`: ``feature``, ``chrom``, ``start``, ``end``, ``strand``.
    upstream, downstream
        Base pairs added before the transcription start / after the end (strand-aware).
    decay
        None: every link has weight 1. A number ``d``: weight ``0.5 ** (distance / d)`` where
        distance is the gap in bp between the peak and the gene body (0 when they overlap). A
        callable: maps the distances (int64 array) to weights in (0, 1].

    Returns
    -------
    pandas.DataFrame
        ``peak`` (row of ``peaks``), ``gene`` (``feature`` of ``genes``), ``distance``,
        ``weight``; one row per pair (the nearest locus when a gene has several).
    """
    if upstream < 0 or downstream < 0:
        raise ValueError(
            f"upstream and downstream must be >= 0 base pairs; found {upstream}, {downstream}."
        )
    codes, _ = pd.factorize(pd.concat([peaks["chrom"], genes["chrom"]], ignore_index=True))
    offset = codes.astype(np.int64) * _CHROM_STRIDE
    p_off, g_off = offset[: len(peaks)], offset[len(peaks) :]
    w_start, w_end = _windows(genes, upstream, downstream)
    p_start = peaks["start"].to_numpy(np.int64)
    p_end = peaks["end"].to_numpy(np.int64)
    pi, gi = overlap_pairs(p_start + p_off, p_end + p_off, w_start + g_off, w_end + g_off)
    body_start, body_end = genes["start"].to_numpy(np.int64), genes["end"].to_numpy(np.int64)
    distance = np.maximum.reduce(
        [np.zeros(len(pi), np.int64), body_start[gi] - p_end[pi], p_start[pi] - body_end[gi]]
    )
    links = pd.DataFrame(
        {"peak": pi, "gene": genes["feature"].to_numpy(np.int64)[gi], "distance": distance}
    )
    links = links.sort_values("distance", kind="stable").drop_duplicates(["peak", "gene"])
    links = links.sort_values(["peak", "gene"]).reset_index(drop=True)
    if decay is None:
        weight = np.ones(len(links))
    elif callable(decay):
        weight = np.asarray(decay(links["distance"].to_numpy()), dtype=float)
        if weight.shape != (len(links),) or not np.all((weight > 0) & np.isfinite(weight)):
            raise ValueError(
                "decay(distances) must return one finite weight > 0 per link "
                f"({len(links)} values); found shape {weight.shape} or values outside (0, inf)."
            )
    else:
        if not float(decay) > 0:
            raise ValueError(f"decay must be a distance in bp > 0 or a callable; found {decay}.")
        weight = 0.5 ** (links["distance"].to_numpy() / float(decay))
        weight = np.maximum(weight, np.finfo(np.float32).tiny)
    links["weight"] = weight
    return links
