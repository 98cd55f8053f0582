"""Real demo data shipped with mmaavi.

The files live in ``mmaavi/_data/`` inside the installed package, each folder with the
``PROVENANCE.md`` that says where the data came from and how it was cut down.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mudata import MuData

__all__ = ["bmmc_mosaic", "bmmc_paths"]

#: file stem -> role in the BMMC mosaic
_BMMC_FILES = ("cite_rna", "cite_adt", "multiome_rna", "multiome_atac")


def bmmc_paths() -> dict[str, Path]:
    """Paths of the four ``.h5ad`` files of the bundled BMMC mosaic.

    Returns
    -------
    dict of str to pathlib.Path
        Keys ``"cite_rna"``, ``"cite_adt"``, ``"multiome_rna"`` and ``"multiome_atac"``; each
        value is the path of an existing ``.h5ad`` file inside the installed package.

    Raises
    ------
    FileNotFoundError
        If the package was installed without its data files (for example from a source tree
        whose ``python/mmaavi/_data/`` is missing).
    """
    root = resources.files("mmaavi").joinpath("_data", "bmmc_mosaic")
    if not isinstance(root, Path):
        raise FileNotFoundError(
            "mmaavi's bundled data is not on the file system (found a "
            f"{type(root).__name__}); install mmaavi from its source tree or a wheel, "
            "not as a zip archive."
        )
    paths = {name: root / f"{name}.h5ad" for name in _BMMC_FILES}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"mmaavi's bundled BMMC files are missing: {', '.join(missing)}. Reinstall mmaavi "
            "with its package data (`make venv` or `pip install -e .` from the repository)."
        )
    return paths


def bmmc_mosaic() -> MuData:
    """Load the bundled BMMC RNA / ADT / ATAC mosaic as a MuData.

    A tiny, real subset of the NeurIPS 2021 multimodal single-cell benchmark (human bone
    marrow mononuclear cells, BMMC; Luecken et al. 2021, raw data GEO GSE194122): 1100 cells
    from two donors, measured by two assays, making four batches (``obs["batch"]``):

    ===============  =====  ===========================  =============================
    batch            cells  RNA                          other modality
    ===============  =====  ===========================  =============================
    cite_s1d1        311    1000 genes (CITE-seq set)    ADT, 134 antibodies
    cite_s1d2        289    1000 genes (CITE-seq set)    ADT, 134 antibodies
    multiome_s1d1    221    1134 genes (Multiome set)    ATAC, 600 peaks
    multiome_s1d2    279    1134 genes (Multiome set)    ATAC, 600 peaks
    ===============  =====  ===========================  =============================

    RNA is measured in every batch, ADT only in the two CITE-seq batches and ATAC only in the
    two Multiome batches. The two RNA blocks hold different gene sets (168 genes shared, 1966
    in the union): a gene absent from a block is *unmeasured* for its cells, not a zero count,
    so the RNA modality is given to :func:`mmaavi.data.mosaic` as two blocks. Counts are raw
    integers. Cell labels are in ``cell_type`` (original fine labels) and ``cell_type_l1``
    (11 coarse types); RNA features carry genomic coordinates (``chrom``, ``chromStart``,
    ``chromEnd``), ATAC peaks their GRCh38 intervals.

    Returns
    -------
    mudata.MuData
        The mosaic built by :func:`mmaavi.data.mosaic` with modalities ``"rna"``, ``"adt"``
        and ``"atac"`` over 1100 cells, batch column ``"batch"``.

    See Also
    --------
    bmmc_paths : the paths of the four underlying ``.h5ad`` files.

    References
    ----------
    .. [1] Luecken, M. D. et al. (2021). A sandbox for prediction and integration of DNA, RNA,
       and proteins in single cells. *NeurIPS Datasets and Benchmarks Track*.

    Examples
    --------
    >>> import mmaavi
    >>> mdata = mmaavi.datasets.bmmc_mosaic()
    >>> mdata.n_obs
    1100
    """
    import anndata as ad

    from mmaavi.data import mosaic

    blocks = {name: ad.read_h5ad(path) for name, path in bmmc_paths().items()}
    return mosaic(
        {
            "rna": [blocks["cite_rna"], blocks["multiome_rna"]],
            "adt": blocks["cite_adt"],
            "atac": blocks["multiome_atac"],
        },
        batch_key="batch",
    )
