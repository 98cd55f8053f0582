"""Build the guidance graph of a MuData from prior knowledge, in one call.

Peaks link to genes by genomic proximity (:mod:`._genomic`), antibodies to genes by name
(:mod:`._proteins`), user edges are merged on top, and every feature gets a self-loop. The edge
list is stored in ``mdata.uns["mmaavi_guidance"]``, where :class:`mmaavi.MMAAVI` finds it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import mudata
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ._annotation import SHIPPED_ANNOTATIONS
from ._check import GRAPH_COLUMNS, as_edge_table, check_graph, node_ids, var_names_of
from ._genomic import gene_coordinates, parse_peaks, peak_gene_links
from ._keys import GUIDANCE_KEY, REMOVED_KEY
from ._proteins import protein_gene_links

logger = logging.getLogger(__name__)


def _check_annotation_argument(annotation) -> None:
    """Fail early for a misspelt genome name, before any work is done."""
    if isinstance(annotation, str) and annotation not in SHIPPED_ANNOTATIONS:
        if not Path(annotation).exists():
            raise ValueError(
                f"Unknown annotation {annotation!r}: neither a shipped genome "
                f"({sorted(SHIPPED_ANNOTATIONS)}) nor an existing file. Pass 'hg38' (human), "
                "'mm10' (mouse), the path of a GTF/BED/TSV file, or a DataFrame with columns "
                "gene_name, chrom, chromStart, chromEnd[, gene_id, strand]."
            )
    elif annotation is not None and not isinstance(annotation, (str, Path, pd.DataFrame)):
        raise TypeError(
            "annotation must be None, 'hg38', 'mm10', a file path or a pandas DataFrame; "
            f"found {type(annotation).__name__}."
        )


def _edge_frame(source, target, weight, source_modality: str, target_modality: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": np.asarray(source, dtype=str),
            "target": np.asarray(target, dtype=str),
            "weight": np.asarray(weight, dtype=float),
            "sign": np.ones(len(source), dtype=np.int64),
            "source_modality": source_modality,
            "target_modality": target_modality,
        },
        columns=list(GRAPH_COLUMNS),
    )


def _atac_edges(mdata, rna: str, atac: str, annotation, upstream, downstream, decay, min_annotated):
    rna_data, atac_data = mdata.mod[rna], mdata.mod[atac]
    peaks = parse_peaks(atac_data.var_names, atac_data.var)
    genes = gene_coordinates(rna_data.var_names, rna_data.var, annotation, min_annotated)
    links = peak_gene_links(peaks, genes, upstream, downstream, decay)
    if links.empty:
        raise ValueError(
            f"No peak of {atac!r} overlaps a gene body of {rna!r} extended {upstream} bp "
            f"upstream / {downstream} bp downstream. Peak chromosomes look like "
            f"{sorted(peaks['chrom'].unique())[:5]}, gene chromosomes like "
            f"{sorted(genes['chrom'].unique())[:5]} (both without 'chr'). Check that the peaks and "
            "the annotation are of the same genome build (hg38 vs hg19, mm10 vs mm39) and "
            "species, or widen upstream/downstream."
        )
    logger.info(
        "ATAC-RNA: %d links, %d of %d peaks and %d of %d genes linked.",
        len(links),
        links["peak"].nunique(),
        atac_data.n_vars,
        links["gene"].nunique(),
        rna_data.n_vars,
    )
    return _edge_frame(
        np.asarray(atac_data.var_names)[links["peak"]],
        np.asarray(rna_data.var_names)[links["gene"]],
        links["weight"],
        atac,
        rna,
    )


def _adt_edges(mdata, rna: str, adt: str, aliases) -> pd.DataFrame:
    match = protein_gene_links(mdata.mod[adt].var_names, mdata.mod[rna].var_names, aliases)
    if match.links.empty:
        logger.warning(
            "No %s feature matches an %s gene by symbol or alias; pass aliases={'antibody': "
            "'GENE', ...} to link them.",
            adt,
            rna,
        )
    logger.info(
        "ADT-RNA: %d links for %d antibodies; %d isotype controls, %d without a gene%s.",
        len(match.links),
        match.links["source"].nunique(),
        len(match.isotypes),
        len(match.unmatched),
        f" (e.g. {match.unmatched[:5]})" if match.unmatched else "",
    )
    return _edge_frame(
        match.links["source"], match.links["target"], np.ones(len(match.links)), adt, rna
    )


def _merge(built: list[pd.DataFrame], user: pd.DataFrame | None, var_names) -> pd.DataFrame:
    """One row per undirected pair (user edges replace built ones), then self-loops."""
    frames = [f.assign(_user=False) for f in built if len(f)]
    if user is not None and len(user):
        frames.append(user.assign(_user=True))
    loops = [
        _edge_frame(names, names, np.ones(len(names)), m, m).assign(_user=False)
        for m, names in var_names.items()
    ]
    table = pd.concat([*frames, *loops], ignore_index=True)
    a = node_ids(table["source_modality"], table["source"], var_names)
    b = node_ids(table["target_modality"], table["target"], var_names)
    table["_a"], table["_b"] = np.minimum(a, b), np.maximum(a, b)
    table = table.sort_values(["_user", "weight"], ascending=False, kind="stable")
    table = table.drop_duplicates(["_a", "_b"]).sort_index(kind="stable")
    return table[list(GRAPH_COLUMNS)].reset_index(drop=True)


def _check_user_edges(edges: pd.DataFrame) -> None:
    weight, sign = edges["weight"].to_numpy(float), edges["sign"].to_numpy(float)
    if not np.all(np.isfinite(weight) & (weight > 0)):
        raise ValueError("extra_edges weights must be finite and > 0; found other values.")
    if not np.all(np.isin(sign, (-1, 1))):
        raise ValueError("extra_edges signs must be +1 or -1; found other values.")


def _keep_linked(mdata, table: pd.DataFrame, var_names) -> pd.DataFrame:
    """Drop, in place, the features of every modality that have no cross-modality link."""
    report = check_graph(mdata, table)
    removed = {m: report.unlinked[m] for m in var_names if report.unlinked[m]}
    empty = [m for m in var_names if report.covered[m] == 0]
    if empty:
        raise ValueError(
            f"keep_only_linked=True would remove every feature of {empty}: no feature there is "
            "linked to another modality. Check the annotation / aliases, or keep all features "
            "(keep_only_linked=False)."
        )
    for m, names in removed.items():
        adata = mdata.mod[m]
        mdata.mod[m] = adata[:, ~adata.var_names.isin(names)].copy()
    if removed:
        with mudata.set_options(pull_on_update=False), warnings.catch_warnings():
            # one name in two modalities (gene CD4, protein CD4) is normal here
            warnings.filterwarnings(
                "ignore", message=".*var_names (is|are) not unique", category=UserWarning
            )
            mdata.update()
    logger.warning(
        "keep_only_linked=True removed features without a cross-modality link from mdata: %s "
        "(names in mdata.uns[%r]).",
        ", ".join(f"{m} {len(v)} of {len(var_names[m])}" for m, v in removed.items()) or "none",
        REMOVED_KEY,
    )
    mdata.uns[REMOVED_KEY] = {m: np.asarray(v, dtype=str) for m, v in removed.items()}
    kept = var_names_of(mdata)
    keep = (node_ids(table["source_modality"], table["source"], kept) >= 0) & (
        node_ids(table["target_modality"], table["target"], kept) >= 0
    )
    return table[keep].reset_index(drop=True)


def add_guidance_graph(
    mdata,
    annotation: str | Path | pd.DataFrame | None = None,
    *,
    rna: str = "rna",
    atac: str = "atac",
    adt: str = "adt",
    upstream: int = 2000,
    downstream: int = 0,
    decay: float | Callable[[np.ndarray], np.ndarray] | None = None,
    aliases: Mapping[str, str | Iterable[str]] | None = None,
    extra_edges: pd.DataFrame | sp.spmatrix | sp.sparray | None = None,
    keep_only_linked: bool = False,
    min_annotated: float = 0.2,
) -> pd.DataFrame:
    """Build the guidance graph over all features and store it for the model.

    One undirected, signed, weighted graph (MODEL.md §5): a peak links to a gene when it
    overlaps the gene body extended ``upstream`` bp before the transcription start
    (strand-aware) and ``downstream`` bp after its end; an antibody links to the genes coding its
    target, by exact symbol (case-insensitive) or through the alias table
    (:data:`mmaavi.graph.ANTIBODY_ALIASES`), never by substring; user edges are merged on top;
    every feature gets a self-loop. Built links have sign +1. Modalities that are absent are
    skipped.

    Parameters
    ----------
    mdata
        A :class:`mudata.MuData` with modalities named by ``rna``, ``atac``, ``adt``.
    annotation
        Gene coordinates for the ATAC ↔ RNA links: ``"hg38"`` or ``"mm10"`` (tables shipped with
        mmaavi, Ensembl genes), the path of a GTF / BED / TSV file, or a DataFrame with columns
        ``gene_name``, ``chrom``, ``chromStart`` (0-based), ``chromEnd`` and optionally
        ``gene_id``, ``strand``. Genes are matched by Ensembl id (var ``gene_id``) or exact
        symbol. None: the RNA var columns ``chrom``, ``chromStart``, ``chromEnd``
        (``strand``) are used. Unused without an ATAC modality.
    rna, atac, adt
        Modality names in ``mdata.mod``.
    upstream, downstream
        Gene-body extension in base pairs before the start / after the end of the gene.
    decay
        None: weight 1 for every peak–gene link. A number ``d`` (bp): weight
        ``0.5 ** (distance / d)``, distance being the gap between peak and gene body (0 inside
        the body). A callable mapping the int64 distances to weights in (0, 1].
    aliases
        Extra antibody -> gene symbol(s) entries; they extend the shipped table and replace
        its entry for the same antibody (an empty list unlinks an antibody).
    extra_edges
        User edges: a DataFrame with ``source``, ``target`` and optionally ``weight`` (> 0),
        ``sign`` (±1), ``source_modality``, ``target_modality``; or a square sparse matrix over
        the features of all modalities concatenated in ``mdata.mod`` order, values
        ``sign * weight``. A user edge replaces a built edge between the same two features.
    keep_only_linked
        Remove, from ``mdata`` itself, the features without a link to another modality (the
        paper's filtering). Off by default; when on, the removed counts are logged as a
        warning and the names stored in ``mdata.uns["mmaavi_guidance_removed"]``. Use
        ``mmaavi.graph.subset_linked(mdata)`` for a filtered copy that leaves ``mdata`` as is.
    min_annotated
        Fail when fewer than this fraction of the RNA genes is found in ``annotation``: the
        guard against a species mismatch (mouse data with ``"hg38"``).

    Returns
    -------
    pandas.DataFrame
        The edge list also stored in ``mdata.uns["mmaavi_guidance"]``: columns ``source``,
        ``target``, ``weight``, ``sign``, ``source_modality``, ``target_modality``; one row per
        undirected pair (ATAC/ADT feature as source, gene as target) plus one self-loop per
        feature.

    Raises
    ------
    ValueError
        Unparseable peak names, an unknown annotation name, no overlap between peaks and genes,
        a likely species mismatch, or user edges naming features that are not in the data.

    See Also
    --------
    edges : the stored graph as an edge list.
    check_graph : unlinked features, links per modality pair and other checks.

    Examples
    --------
    >>> import mmaavi
    >>> mdata = mmaavi.datasets.bmmc_mosaic()
    >>> graph = mmaavi.graph.add_guidance_graph(mdata, "hg38")
    >>> model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=10)  # uses the graph
    """
    var_names = var_names_of(mdata)
    _check_annotation_argument(annotation)
    if not 0 <= min_annotated <= 1:
        raise ValueError(f"min_annotated must be a fraction in [0, 1]; found {min_annotated}.")
    user = None
    if extra_edges is not None:
        user = as_edge_table(extra_edges, var_names)
        _check_user_edges(user)
    built = []
    if rna in var_names and atac in var_names:
        built.append(
            _atac_edges(mdata, rna, atac, annotation, upstream, downstream, decay, min_annotated)
        )
    elif atac in var_names:
        logger.info("No %r modality: no ATAC-RNA links.", rna)
    if rna in var_names and adt in var_names:
        built.append(_adt_edges(mdata, rna, adt, aliases))
    table = _merge(built, user, var_names)
    if keep_only_linked:
        table = _keep_linked(mdata, table, var_names)
    mdata.uns[GUIDANCE_KEY] = table
    check_graph(mdata, table)
    return table.copy()


def subset_linked(mdata, graph: pd.DataFrame | sp.spmatrix | sp.sparray | None = None):
    """A copy of ``mdata`` keeping only features with a link to another modality.

    Parameters
    ----------
    mdata
        A MuData with a guidance graph in ``uns["mmaavi_guidance"]`` (or pass ``graph``).
    graph
        The graph to filter by; default the stored one.

    Returns
    -------
    mudata.MuData
        A new MuData; the stored graph is restricted to the kept features. ``mdata`` is not
        changed.
    """
    out = mdata.copy()
    var_names = var_names_of(out)
    if graph is not None:
        out.uns[GUIDANCE_KEY] = as_edge_table(graph, var_names)
    elif GUIDANCE_KEY not in out.uns:
        raise KeyError(
            f"No graph given and none stored in mdata.uns[{GUIDANCE_KEY!r}]. Run "
            "mmaavi.graph.add_guidance_graph(mdata, annotation=...) first."
        )
    table = as_edge_table(out.uns[GUIDANCE_KEY], var_names)
    out.uns[GUIDANCE_KEY] = _keep_linked(out, table, var_names)
    return out
