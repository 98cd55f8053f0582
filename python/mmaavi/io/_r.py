"""The embedded R session behind :mod:`mmaavi.io`, started on first use.

rpy2 (which embeds R in this Python process) and anndata2ri (its sparse-matrix converters) are
optional: ``import mmaavi`` never imports them, and a call that needs R without them raises
:class:`RNotAvailableError` saying what to install. R's side of the work lives in ``_rds.R``,
sourced once into its own environment; every call into it goes through :meth:`RSession.call`,
which turns an R error into a Python one carrying R's message.

Conversions, all without a dense copy of a count matrix: a ``dgCMatrix`` arrives as a
``scipy.sparse.csc_matrix`` (anndata2ri's ``scipy2ri``) and goes back the same way; names as
lists of str; a cell table column by column (``_rds.R``'s ``column()``), so that R's NA stays
missing in pandas and character columns become categoricals in R's sort order.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["RNotAvailableError", "RSession", "session"]

INSTALL_HINT = (
    "Install the R bridge with `pip install 'mmaavi[r]'` (rpy2 and anndata2ri; rpy2<3.6 for "
    "R < 4.5) and R with the packages for your objects (Debian/Ubuntu: apt-get install "
    "r-base-core r-base-dev r-cran-seuratobject r-bioc-singlecellexperiment)."
)


class RNotAvailableError(ImportError):
    """R, rpy2 or anndata2ri is missing, so an R object cannot be read or written."""


class RCallError(RuntimeError):
    """An R function of ``_rds.R`` failed; the message is R's."""


class RSession:
    """The R environment holding ``_rds.R``'s functions, and the converters to and from it."""

    def __init__(self) -> None:
        import anndata2ri.scipy2ri
        import rpy2.robjects as ro
        from rpy2.robjects import numpy2ri

        self.ro = ro
        self._sparse = ro.default_converter + anndata2ri.scipy2ri.converter
        self._numpy = ro.default_converter + numpy2ri.converter
        env = ro.r["new.env"]()
        ro.r["sys.source"](str(files("mmaavi.io").joinpath("_rds.R")), envir=env)
        self.env = env
        with self.quiet():
            # anndata2ri attaches Matrix on its first conversion, with warnings about empty
            # site libraries: have that happen here, silently
            self.r_sparse(sp.csc_matrix((1, 1)))
            ro.r("invisible(warnings())")

    # ------------------------------------------------------------------ calling R

    def call(self, fun: str, *args: Any, **kwargs: Any) -> Any:
        """``fun(*args, **kwargs)`` of ``_rds.R``; an R error raises :class:`RCallError`."""
        out = self.env["safely"](self.env[fun], *args, **kwargs)
        names = list(out.names)
        if "error" in names:
            raise RCallError(str(out.rx2("error")[0]).strip())
        return out.rx2("value")

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Drop what R prints meanwhile (the start-up chatter of packages being loaded)."""
        from rpy2.rinterface_lib import callbacks

        saved = callbacks.consolewrite_print, callbacks.consolewrite_warnerror
        callbacks.consolewrite_print = callbacks.consolewrite_warnerror = lambda text: None
        try:
            yield
        finally:
            callbacks.consolewrite_print, callbacks.consolewrite_warnerror = saved

    # ------------------------------------------------------------------ R -> Python

    def strings(self, value: Any) -> list[str]:
        return [str(v) for v in value]

    def item(self, value: Any, name: str) -> Any:
        """Element ``name`` of an R list."""
        return value.rx2(name)

    def flag(self, value: Any) -> np.ndarray:
        return np.asarray(self._numpy.rpy2py(value), dtype=bool)

    def array(self, value: Any) -> np.ndarray:
        return np.asarray(self._numpy.rpy2py(value))

    def sparse(self, value: Any) -> sp.csc_matrix:
        """A dgCMatrix as a float64 ``csc_matrix`` (its slots copied, never densified)."""
        out = self._sparse.rpy2py(value)
        if not sp.issparse(out):
            raise RCallError(f"expected a dgCMatrix from R, found {type(out).__name__}.")
        return sp.csc_matrix(out, dtype=np.float64)

    def table(self, value: Any) -> pd.DataFrame:
        """A cell table from ``_rds.R``'s ``cell_table()``: one column at a time, NA kept."""
        cells = pd.Index(self.strings(self.item(value, "cells")))
        columns = self.item(value, "columns")
        out = {}
        for name in list(columns.names) if columns.names is not self.ro.NULL else []:
            out[str(name)] = self._column(columns.rx2(name))
        return pd.DataFrame(out, index=cells)

    def _column(self, spec: Any) -> Any:
        kind = str(spec.rx2("type")[0])
        if kind == "factor":
            codes = self.array(spec.rx2("codes")).astype(np.int64)
            levels = self.strings(spec.rx2("levels"))
            ordered = bool(spec.rx2("ordered")[0])
            return pd.Categorical.from_codes(codes, categories=levels, ordered=ordered)
        na = self.flag(spec.rx2("na"))
        if kind == "logical":
            values = self.flag(spec.rx2("values"))
            return pd.array(np.where(na, None, values), dtype="boolean") if na.any() else values
        if kind in ("integer", "double"):
            values = self.array(spec.rx2("values")).astype(np.float64)
            if kind == "integer":
                if na.any():
                    return pd.array(np.where(na, None, values), dtype="Int64")
                return values.astype(np.int64)
            values[na] = np.nan
            return values
        raise RCallError(f"unexpected column type {kind!r} from _rds.R.")

    # ------------------------------------------------------------------ Python -> R

    def r_strings(self, values: Sequence[str]) -> Any:
        return self.ro.StrVector([str(v) for v in values])

    def r_matrix(self, values: np.ndarray) -> Any:
        return self._numpy.py2rpy(np.asarray(values, dtype=np.float64))

    def r_sparse(self, x: sp.spmatrix) -> Any:
        """A scipy sparse matrix as dgCMatrix (from a private CSC copy: the input is untouched)."""
        return self._sparse.py2rpy(sp.csc_matrix(x, dtype=np.float64, copy=True))

    def r_column(self, values: pd.Series) -> Any:
        """One column as an R vector: categorical -> factor, bool -> logical, numbers -> double,
        anything else -> character; missing values -> NA."""
        ro = self.ro
        missing = ro.BoolVector(values.isna().to_numpy().tolist())
        if isinstance(values.dtype, pd.CategoricalDtype):
            return self.call(
                "make_factor",
                ro.IntVector((values.cat.codes.to_numpy().astype(np.int64) + 1).tolist()),
                self.r_strings(values.cat.categories),
                bool(values.cat.ordered),
            )
        if pd.api.types.is_bool_dtype(values.dtype):
            vector = ro.BoolVector([bool(v) for v in values.fillna(False)])
        elif pd.api.types.is_numeric_dtype(values.dtype):
            vector = ro.FloatVector(values.astype("float64").to_numpy(na_value=np.nan).tolist())
        else:
            vector = self.r_strings(values.astype(object).where(values.notna(), ""))
        return self.call("with_na", vector, missing)

    def r_list(self, items: dict[str, Any]) -> Any:
        """A named R list of already-converted R values."""
        return self.ro.r["list"](**items) if items else self.ro.r["list"]()


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    return importlib.util.find_spec(module) is not None


def _check_r_home() -> None:
    """Refuse early what would make R abort this process or rpy2 fail obscurely."""
    r_home = os.environ.get("R_HOME")
    if r_home:
        if not (Path(r_home) / "library" / "base").is_dir():
            raise RNotAvailableError(
                f"R_HOME is {r_home}, which holds no R installation (no library/base in it). "
                f"Unset R_HOME or point it at R's home (`R RHOME` prints it). {INSTALL_HINT}"
            )
    elif shutil.which("R") is None:
        raise RNotAvailableError(
            "reading and writing R objects needs R, but no `R` is on the PATH and R_HOME is not "
            f"set. {INSTALL_HINT}"
        )


@functools.lru_cache(maxsize=1)
def session() -> RSession:
    """The R session of this process (R is started once; it cannot be restarted)."""
    for module in ("rpy2", "anndata2ri"):
        if not _installed(module):
            raise RNotAvailableError(
                f"reading and writing R objects needs the Python package {module}, which is not "
                f"installed. {INSTALL_HINT}"
            )
    _check_r_home()  # before importing them: both start R on import
    try:
        return RSession()
    except RNotAvailableError:
        raise
    except Exception as err:  # rpy2 raises many kinds when R itself cannot be loaded
        raise RNotAvailableError(
            f"R could not be started through rpy2: {type(err).__name__}: {err}. {INSTALL_HINT}"
        ) from err
