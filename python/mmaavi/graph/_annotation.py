"""Gene-body coordinates: the shipped hg38 / mm10 tables, a user's GTF / BED / TSV, or a DataFrame.

Every source is turned into one table with the columns of :data:`ANNOTATION_COLUMNS`:
``gene_name``, ``gene_id`` (Ensembl, may be empty), ``chrom``, ``chromStart`` (0-based),
``chromEnd`` (exclusive) and ``strand`` (``+``, ``-`` or ``.`` when unknown).
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

#: columns of a normalised gene annotation
ANNOTATION_COLUMNS = ("gene_name", "gene_id", "chrom", "chromStart", "chromEnd", "strand")

#: genome name -> file shipped in ``mmaavi/_data/annotations`` (see its PROVENANCE.md)
SHIPPED_ANNOTATIONS = {"hg38": "hg38_ensembl_genes.tsv.gz", "mm10": "mm10_ensembl_genes.tsv.gz"}

#: accepted spellings of the DataFrame columns, first match wins
_COLUMN_ALIASES = {
    "gene_name": ("gene_name", "symbol", "gene_symbol", "name", "gene"),
    "gene_id": ("gene_id", "ensembl_gene_id", "ensembl_id"),
    "chrom": ("chrom", "chromosome", "chr", "seqname", "seqnames"),
    "chromStart": ("chromStart", "start", "chrom_start"),
    "chromEnd": ("chromEnd", "end", "chrom_end"),
    "strand": ("strand",),
}


def canonical_chrom(chrom: pd.Series) -> pd.Series:
    """Chromosome names without a leading ``chr`` and with ``M`` for the mitochondrion.

    Lets ``chr1`` (UCSC) match ``1`` (Ensembl) between peaks and an annotation.
    """
    codes, uniques = pd.factorize(chrom.astype(str))
    short = pd.Index(uniques).str.replace(r"^chr", "", case=False, regex=True)
    short = np.where(np.isin(short, ["MT", "mt"]), "M", short)
    return pd.Series(np.asarray(short, dtype=object)[codes], index=chrom.index)


@functools.lru_cache(maxsize=len(SHIPPED_ANNOTATIONS))
def _shipped(name: str) -> pd.DataFrame:
    root = resources.files("mmaavi").joinpath("_data", "annotations", SHIPPED_ANNOTATIONS[name])
    with resources.as_file(root) as path:
        if not Path(path).is_file():
            raise FileNotFoundError(
                f"mmaavi's shipped annotation {path} is missing. Reinstall mmaavi with its "
                "package data (`make venv` or `pip install -e .` from the repository)."
            )
        table = pd.read_csv(path, sep="\t", dtype={"chrom": str, "strand": str})
    return normalise_annotation(table, source=f"the shipped {name} table")


def _read_gtf(path: Path) -> pd.DataFrame:
    columns = ["chrom", "source", "feature", "start", "end", "score", "strand", "frame", "attr"]
    gtf = pd.read_csv(path, sep="\t", comment="#", header=None, names=columns, dtype={"chrom": str})
    genes = gtf[gtf["feature"] == "gene"]
    if genes.empty:
        raise ValueError(
            f"The GTF file {path} has no 'gene' records (column 3). Expected a gene annotation "
            "such as Ensembl's Homo_sapiens.GRCh38.<release>.gtf.gz."
        )
    attr = genes["attr"]
    return pd.DataFrame(
        {
            "gene_name": attr.str.extract(r'gene_name "([^"]+)"', expand=False),
            "gene_id": attr.str.extract(r'gene_id "([^"]+)"', expand=False),
            "chrom": genes["chrom"],
            # GTF is 1-based inclusive; the normalised table is 0-based half-open
            "chromStart": genes["start"].astype(np.int64) - 1,
            "chromEnd": genes["end"].astype(np.int64),
            "strand": genes["strand"],
        }
    )


def _read_bed(path: Path) -> pd.DataFrame:
    bed = pd.read_csv(path, sep="\t", comment="#", header=None, dtype={0: str})
    if bed.shape[1] < 4:
        raise ValueError(
            f"The BED file {path} has {bed.shape[1]} column(s); expected at least 4 "
            "(chrom, start, end, gene name) and optionally score and strand (BED6)."
        )
    return pd.DataFrame(
        {
            "gene_name": bed[3],
            "chrom": bed[0],
            "chromStart": bed[1],
            "chromEnd": bed[2],
            "strand": bed[5] if bed.shape[1] >= 6 else ".",
        }
    )


def _read_path(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"Annotation file {path} does not exist.")
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in (".gz", ".bgz")]
    kind = suffixes[-1] if suffixes else ""
    if kind in (".gtf", ".gff2"):
        return _read_gtf(path)
    if kind == ".bed":
        return _read_bed(path)
    if kind in (".tsv", ".txt", ".csv"):
        return pd.read_csv(path, sep="," if kind == ".csv" else "\t", dtype={"chrom": str})
    raise ValueError(
        f"Cannot tell the format of annotation file {path}: expected a name ending in .gtf, "
        ".bed, .tsv, .txt or .csv (optionally .gz)."
    )


def normalise_annotation(table: pd.DataFrame, source: str = "the annotation") -> pd.DataFrame:
    """Rename, type-check and clean a gene annotation to :data:`ANNOTATION_COLUMNS`.

    Parameters
    ----------
    table
        One row per gene with a name column (``gene_name``/``symbol``/...), chromosome,
        0-based start, exclusive end and optionally ``gene_id`` and ``strand``.
    source
        Words naming the table in error messages.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ANNOTATION_COLUMNS`, rows with a start < end and a chromosome.
    """
    found = {}
    for column, spellings in _COLUMN_ALIASES.items():
        hit = next((s for s in spellings if s in table.columns), None)
        if hit is not None:
            found[column] = table[hit]
    missing = [c for c in ("gene_name", "chrom", "chromStart", "chromEnd") if c not in found]
    if missing:
        raise KeyError(
            f"{source} lacks the column(s) {missing}; found {list(table.columns)}. Expected "
            f"columns {list(ANNOTATION_COLUMNS)} (gene_id and strand optional)."
        )
    out = pd.DataFrame(
        {
            "gene_name": found["gene_name"].astype(str).to_numpy(),
            "gene_id": (
                found["gene_id"]
                .astype(object)
                .fillna("")
                .astype(str)
                .str.replace(r"\.\d+$", "", regex=True)
                .to_numpy()
                if "gene_id" in found
                else ""
            ),
            "chrom": found["chrom"].astype(str).to_numpy(),
            "chromStart": pd.to_numeric(found["chromStart"], errors="coerce").to_numpy(),
            "chromEnd": pd.to_numeric(found["chromEnd"], errors="coerce").to_numpy(),
            "strand": found["strand"].astype(object).fillna(".").astype(str).to_numpy()
            if "strand" in found
            else ".",
        }
    )
    out["strand"] = out["strand"].where(out["strand"].isin(["+", "-"]), ".")
    valid = (
        np.isfinite(out["chromStart"])
        & np.isfinite(out["chromEnd"])
        & (out["chromStart"] >= 0)
        & (out["chromEnd"] > out["chromStart"])
        & (out["chrom"].str.len() > 0)
        & ~out["chrom"].isin(["nan", "None", "-1"])
    )
    out = out[valid].astype({"chromStart": np.int64, "chromEnd": np.int64})
    if out.empty:
        raise ValueError(
            f"{source} has no gene with a chromosome and a start < end; check its columns."
        )
    return out.reset_index(drop=True)


def load_annotation(annotation: str | Path | pd.DataFrame) -> pd.DataFrame:
    """Gene-body coordinates as a normalised table.

    Parameters
    ----------
    annotation
        ``"hg38"`` or ``"mm10"`` for the tables shipped with mmaavi (Ensembl genes, see
        ``mmaavi/_data/annotations/PROVENANCE.md``); the path of a GTF (``gene`` records,
        ``gene_name`` / ``gene_id`` attributes), BED (name in column 4, strand in 6) or TSV/CSV
        file with the columns below; or a DataFrame with columns ``gene_name``, ``chrom``,
        ``chromStart`` (0-based), ``chromEnd`` and optionally ``gene_id`` and ``strand``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`ANNOTATION_COLUMNS`, one row per gene locus (a symbol may have several).

    Raises
    ------
    ValueError
        For a name that is neither a shipped genome nor an existing file.
    """
    if isinstance(annotation, pd.DataFrame):
        return normalise_annotation(annotation, source="the annotation DataFrame")
    if isinstance(annotation, str) and annotation in SHIPPED_ANNOTATIONS:
        return _shipped(annotation).copy()
    if isinstance(annotation, (str, Path)):
        path = Path(annotation)
        looks_like_path = isinstance(annotation, Path) or bool(re.search(r"[./\\]", annotation))
        if not looks_like_path and not path.exists():
            raise ValueError(
                f"Unknown annotation {annotation!r}. Expected one of the shipped genomes "
                f"{sorted(SHIPPED_ANNOTATIONS)}, the path of a GTF/BED/TSV file, or a DataFrame "
                "with columns gene_name, chrom, chromStart, chromEnd[, gene_id, strand]."
            )
        return normalise_annotation(_read_path(path), source=f"annotation file {path}")
    raise TypeError(
        "annotation must be 'hg38', 'mm10', a file path or a pandas DataFrame; found "
        f"{type(annotation).__name__}."
    )
