"""Read and write R's single-cell objects: Seurat and SingleCellExperiment ``.rds`` files.

:func:`read_rds` turns an object into the mosaic MuData that the R package's ``RunMMAAVI()``
would give the model (same rules for unmeasured cells and features, same cell order), so the
same data and seed give the same embedding from Python and from R. :func:`write_rds` stores the
results where ``RunMMAAVI()`` puts them (a ``DimReduc`` / ``reducedDim``, per-cell columns).

R runs embedded in this process through rpy2, with anndata2ri's sparse converters (counts stay
sparse both ways). Both are optional (``pip install 'mmaavi[r]'``) and imported on first use:
``import mmaavi`` needs neither, and a call without them raises :class:`RNotAvailableError`.
"""

from ._r import RNotAvailableError
from ._rds import read_rds, write_rds

__all__ = ["RNotAvailableError", "read_rds", "write_rds"]
