"""mmaavi: mosaic integration of single-cell multi-omics data with mmAAVI.

mmAAVI (Rong et al., Briefings in Bioinformatics 2024, doi 10.1093/bib/bbae540) embeds cells
measured in any subset of modalities (RNA, ATAC, ADT, ...) into one batch-corrected latent space.
"""

__version__ = "0.1.0"

# torch first, through _blas: in a process started by R its BLAS calls would otherwise bind to
# R's BLAS (see mmaavi._blas)
from ._blas import import_torch as _import_torch  # noqa: E402

_import_torch()

from . import data, datasets, graph, io  # noqa: E402
from ._settings import settings  # noqa: E402
from .model import MMAAVI  # noqa: E402

__all__ = ["MMAAVI", "__version__", "data", "datasets", "graph", "io", "settings"]
