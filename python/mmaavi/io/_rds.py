"""Read a Seurat / SingleCellExperiment ``.rds`` into a mosaic MuData; write results back."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import _rules
from ._r import RCallError, RNotAvailableError, RSession, session

#: ``mdata.uns`` key where :func:`read_rds` records where the data came from
UNS_KEY = "mmaavi_rds"
#: the host classes, as :func:`write_rds`'s ``kind`` names them
KINDS = ("sce", "seurat")
#: default result names, as the R package's RunMMAAVI() writes them
DEFAULT_NAME = {"seurat": "mmaavi", "sce": "MMAAVI"}
REDUCTION_KEY = "MMAAVI_"


def _object(r: RSession, path: str | os.PathLike, what: str) -> tuple[Any, str, str]:
    """Read ``path`` in R; the object, its kind (``"seurat"``/``"sce"``) and its class."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what}: {path} does not exist or is not a file; expected an .rds file written by "
            "R's saveRDS()."
        )
    try:
        with r.quiet():
            obj = r.call("read_object", str(path.resolve()))
            info = r.call("object_kind", obj)
    except RCallError as err:
        raise ValueError(
            f"{what}: {path} is not an R object file: R's readRDS() says '{err}'. Expected a "
            "file written by saveRDS(object, file) holding a Seurat or SingleCellExperiment "
            "object (an .RData/.rda file from save() must be load()ed in R and saved with "
            "saveRDS())."
        ) from None
    kind = r.strings(r.item(info, "kind"))[0]
    cls = r.strings(r.item(info, "class"))[0]
    if kind == "missing-package":
        package = r.strings(r.item(info, "package"))[0]
        raise RNotAvailableError(
            f"{what}: {path} holds an object of class '{cls}' from the R package {package}, which "
            f"is not installed in the R that rpy2 runs. Install it (Debian/Ubuntu: apt-get "
            f"install r-cran-{package.lower()} or r-bioc-{package.lower()}) and retry."
        )
    if kind == "other":
        raise TypeError(
            f"{what}: {path} holds an R object of class '{cls}'; expected a Seurat or "
            "SingleCellExperiment object. Convert it in R first, e.g. "
            "SingleCellExperiment::SingleCellExperiment(assays = list(counts = m)) for a matrix "
            "or as.SingleCellExperiment(x) for other Bioconductor objects."
        )
    return obj, kind, cls


def _modalities(
    assays: Mapping[str, str] | None, names: list[str], has_counts: list[bool], main: str, kind: str
) -> dict[str, str]:
    """Modality -> experiment name, checked against the object's experiments."""
    what = "assays" if kind == "seurat" else "experiments (main experiment and altExps)"
    shown = _rules._show(names, 20)
    if assays is None:
        chosen = {}
        for name, ok in zip(names, has_counts):
            if not ok:
                continue
            modality = "rna" if kind == "sce" and name == main == "main" else name.lower()
            if modality in chosen:
                raise ValueError(
                    f"the {what} {shown} give the modality name {modality!r} twice when "
                    "lower-cased; pass assays={'rna': 'RNA', ...} to name them."
                )
            chosen[modality] = name
        if not chosen:
            raise ValueError(
                f"no {what} of the object holds raw counts; found {shown}. Store raw counts "
                "(Seurat: the counts slot/layer; SCE: the assay named by assay_type)."
            )
        return chosen
    if not isinstance(assays, Mapping) or not assays:
        raise TypeError(
            "assays must be a non-empty mapping modality -> assay name, e.g. {'rna': 'RNA', "
            f"'adt': 'ADT'}}; found {type(assays).__name__}."
        )
    out = {}
    for modality, name in assays.items():
        if not isinstance(modality, str) or not modality or "/" in modality or ":" in modality:
            raise ValueError(
                f"assays: modality names must be non-empty strings without '/' or ':'; found "
                f"{modality!r}."
            )
        if name not in names:
            hint = f" (the main experiment is '{main}')" if kind == "sce" else ""
            raise KeyError(
                f"assays: {modality!r} -> {name!r}, but the object has no such assay; its {what} "
                f"are {shown}{hint}. Name one of these."
            )
        if not has_counts[names.index(name)]:
            raise ValueError(
                f"assays: {name!r} holds no raw counts (Seurat: an empty counts slot/layer; "
                "SCE: no assay named by assay_type). mmaavi trains on raw counts."
            )
        out[modality] = name
    return out


def _batch(table: pd.DataFrame, batch: str | None, r: RSession) -> tuple[str, pd.Categorical]:
    """The batch column name and its values, categories in R's sort order (as RunMMAAVI)."""
    if batch is None:
        if "batch" in table.columns:
            raise ValueError(
                "batch=None means one batch, but the cell table has a column 'batch'; pass "
                "batch='batch' to use it, or rename the column."
            )
        return "batch", pd.Categorical(["1"] * len(table))
    if not isinstance(batch, str) or batch not in table.columns:
        raise KeyError(
            f"batch={batch!r} is not a column of the cell table (meta.data / colData); its "
            f"columns are {_rules._show(list(table.columns), 20)}."
        )
    values = table[batch]
    if values.isna().any():
        raise ValueError(
            f"batch column {batch!r} has {int(values.isna().sum())} missing values; every cell "
            "needs a batch. Fill them in or subset the object to cells with a batch."
        )
    strings = values.astype(str).to_numpy()
    levels = r.strings(r.call("sorted_levels", r.r_strings(strings)))
    return batch, pd.Categorical(strings, categories=levels)


def read_rds(
    path: str | os.PathLike,
    assays: Mapping[str, str] | None = None,
    batch: str | None = None,
    *,
    assay_type: str = "counts",
    observed: Mapping[str, Any] | None = None,
    batch_features: str = "nonzero",
    verbose: bool = True,
):
    """Read a Seurat or SingleCellExperiment object from an ``.rds`` file as a mosaic MuData.

    Parameters
    ----------
    path
        File written by R's ``saveRDS()``.
    assays
        Modality -> assay name, e.g. ``{"rna": "RNA", "adt": "ADT"}``. Seurat: assay names
        (raw counts from the counts slot / layer). SingleCellExperiment: altExp names, and the
        main experiment by its ``mainExpName()`` (``"main"`` when it has none). Default: every
        experiment with counts, named by its lower-cased name (an unnamed main experiment is
        ``"rna"``).
    batch
        Column of ``meta.data`` / ``colData`` with each cell's batch; ``None``: one batch (a
        column ``"batch"`` holding ``"1"`` is added).
    assay_type
        SingleCellExperiment only: the assay with raw counts.
    observed
        Modality -> which cells measured it: a logical column name, cell names or a boolean
        vector over the cells. Other modalities follow the R package's rules (see
        :mod:`mmaavi.io._rules`): an assay that holds a subset of the cells, else all-zero
        columns count as not measured.
    batch_features
        ``"nonzero"``: a feature without a count in any cell of a batch is not measured there;
        ``"all"``: every feature was measured in every cell of the modality.
    verbose
        Warn with what the rules treated as unmeasured (the R package prints the same).

    Returns
    -------
    mudata.MuData
        The mosaic as ``RunMMAAVI()`` gives it to the model (one block per modality and batch,
        cells sorted by name within each block), with every cell-table column in ``obs``
        (factors as categoricals in their own level order, character columns as categoricals
        in R's sort order, as ``factor()`` makes them; R's NA as missing: as label_key, such a
        column gives the model the classes in the order ``RunMMAAVI(labels=)`` gives them), the batch column categorical in R's order, and ``uns["mmaavi_rds"]``: the file, the class,
        the object's cell order, the modality -> assay mapping and the batch column.

    Raises
    ------
    RNotAvailableError
        R, rpy2, anndata2ri or the R package defining the object's class is missing.
    FileNotFoundError, ValueError, TypeError, KeyError
        No such file; not an R object file; an R object of another class; an assay or column
        that does not exist; the rules' errors (e.g. cells that measured nothing).
    """
    from .. import _rbridge

    r = session()
    obj, kind, cls = _object(r, path, "read_rds")
    if kind == "sce" and (not isinstance(assay_type, str) or not assay_type):
        raise TypeError(f"assay_type must be a non-empty string; found {assay_type!r}.")
    found = r.call("experiments", obj, kind, assay_type)
    names = r.strings(r.item(found, "names"))
    has_counts = [bool(v) for v in r.flag(r.item(found, "counts"))]
    main = r.strings(r.item(found, "main"))[0]
    mapping = _modalities(assays, names, has_counts, main, kind)

    table = r.table(r.call("cell_table", obj, kind))
    cells = table.index
    if not cells.is_unique or (cells == "").any():
        raise ValueError(
            f"read_rds: the object needs unique, non-empty cell (column) names; found "
            f"{int(cells.duplicated().sum())} duplicated. Set colnames(object) in R."
        )
    batch_key, batch_values = _batch(table, batch, r)

    counts = {}
    for modality, name in mapping.items():
        try:
            raw = r.call("counts_of", obj, kind, name, main, assay_type)
        except RCallError as err:
            raise ValueError(f"read_rds: assay {name!r} ({modality}): {err}") from None
        counts[modality] = _rules.Counts(
            x=r.sparse(r.item(raw, "x")),
            features=r.strings(r.item(raw, "features")),
            cells=r.strings(r.item(raw, "cells")),
        )
    result = _rules.mosaic_blocks(
        counts,
        cells,
        batch_values.astype(str),
        list(batch_values.categories),
        table,
        observed=observed,
        batch_features=batch_features,
    )
    if verbose:
        for note in result.notes:
            warnings.warn(f"read_rds: {note}", UserWarning, stacklevel=2)

    obs = table.copy()
    obs[batch_key] = batch_values
    with _rbridge._quiet_io():
        mdata = _rbridge.mosaic_from_blocks(result.blocks, obs, batch_key)
    mdata.uns[UNS_KEY] = {
        "path": str(Path(path).resolve()),
        "class": cls,
        "kind": kind,
        "cells": [str(c) for c in cells],
        "assays": dict(mapping),
        "batch": batch_key,
    }
    return mdata


# ---------------------------------------------------------------------------- writing


def _results(mdata, model, key: str) -> tuple[np.ndarray, pd.DataFrame | None, pd.DataFrame | None]:
    """Embedding (rows in ``mdata.obs_names`` order), attention and predicted labels."""
    if model is None:
        if key not in mdata.obsm:
            raise KeyError(
                f"write_rds: mdata.obsm has no {key!r} embedding; pass model=<the trained MMAAVI> "
                "or run model.get_latent_representation() first."
            )
        return np.asarray(mdata.obsm[key], dtype=np.float64), None, None
    from ..model import MMAAVI

    if not isinstance(model, MMAAVI):
        raise TypeError(f"model must be a trained mmaavi.MMAAVI; found {type(model).__name__}.")
    if not pd.Index(model.data.obs_names).equals(pd.Index(mdata.obs_names)):
        raise ValueError(
            "write_rds: the model was built on other cells than mdata (or in another order); "
            "pass the MuData the model was trained on."
        )
    # the posterior mean as get_latent_representation() gives it, without storing it in mdata
    z = model._encode()["z"].astype(np.float64)
    attention = model.get_attention()
    labels = model.predict_labels() if model.data.label_categories is not None else None
    return z, attention, labels


def _r_value(r: RSession, value: Any) -> Any:
    """A plain Python value (None, bool, number, str, list of scalars, dict) as an R value."""
    ro = r.ro
    if value is None:
        return ro.NULL
    if isinstance(value, (bool, np.bool_)):
        return ro.BoolVector([bool(value)])
    if isinstance(value, (int, np.integer)):
        return ro.IntVector([int(value)]) if abs(int(value)) < 2**31 else ro.FloatVector([value])
    if isinstance(value, (float, np.floating)):
        return ro.FloatVector([float(value)])
    if isinstance(value, str):
        return ro.StrVector([value])
    if isinstance(value, Mapping):
        return r.r_list({str(k): _r_value(r, v) for k, v in value.items()})
    if isinstance(value, (list, tuple, np.ndarray)):
        items = list(value)
        if items and all(isinstance(v, str) for v in items):
            return ro.StrVector(items)
        if items and all(isinstance(v, (int, float, np.number)) for v in items):
            return ro.FloatVector([float(v) for v in items])
        return ro.r["list"](*[_r_value(r, v) for v in items])
    return ro.StrVector([str(value)])


def _misc(mdata, model, source: dict, model_dir: Path | None) -> dict[str, Any]:
    """What the R package keeps with the reduction (RunMMAAVI's ``.misc``), as far as known."""
    import torch

    from .. import __version__

    params = dict(model.init_params) if model is not None else {}
    train = dict(model.train_info) if model is not None else {}
    return {
        "model.dir": None if model_dir is None else str(model_dir.resolve()),
        "modalities": dict(source.get("assays") or {m: m for m in mdata.mod}),
        "batch": params.get("batch_key", source.get("batch")),
        "labels": params.get("label_key"),
        "n.components": params.get("n_components"),
        "seed": train.get("seed"),
        "train": train,
        "versions": {
            "mmaavi.python": __version__,
            "torch": torch.__version__.split("+")[0],
            "python": sys.version.split()[0],
        },
        "written.by": "mmaavi.io.write_rds",
    }


def _counts_over(mdata, modality: str, cells: pd.Index) -> sp.csc_matrix:
    """A modality's raw counts as features x ``cells`` (zero columns for cells without it)."""
    adata = mdata.mod[modality]
    rows = cells.get_indexer(adata.obs_names)
    x = sp.coo_matrix(adata.X)
    return sp.csc_matrix(
        (x.data.astype(np.float64), (x.col, rows[x.row])), shape=(adata.n_vars, len(cells))
    )


def _new_object(r: RSession, mdata, kind: str, cells: pd.Index, source: dict) -> Any:
    """A Seurat / SCE object from the mosaic's counts (zero where a modality was not measured,
    which read_rds reads back as unmeasured) and its cell table."""
    assays = dict(source.get("assays") or {})
    modalities = list(mdata.mod)
    if kind == "sce" and "rna" in modalities:
        modalities.remove("rna")
        modalities.insert(0, "rna")
    names = [assays.get(m, m.upper()) for m in modalities]
    counts = r.ro.r["list"](*[r.r_sparse(_counts_over(mdata, m, cells)) for m in modalities])
    features = r.ro.r["list"](*[r.r_strings(mdata.mod[m].var_names) for m in modalities])
    table = _r_table(r, mdata.obs.reindex(cells))
    fun = "new_seurat" if kind == "seurat" else "new_sce"
    return r.call(fun, counts, features, r.r_strings(cells), r.r_strings(names), table)


def _same_cells(a: pd.Index, b: pd.Index) -> bool:
    return len(a) == len(b) and a.sort_values().equals(b.sort_values())


def _r_table(r: RSession, obs: pd.DataFrame) -> Any:
    columns = {str(c): r.r_column(obs[c]) for c in obs.columns}
    return r.call("data_frame", r.r_list(columns), r.r_strings(obs.index))


def write_rds(
    mdata,
    path: str | os.PathLike,
    kind: str | None = None,
    *,
    model=None,
    base: str | os.PathLike | None = None,
    name: str | None = None,
    model_dir: str | os.PathLike | None = None,
    key: str = "X_mmaavi",
    overwrite: bool = False,
) -> Path:
    """Write the mosaic and its mmaavi results as a Seurat or SingleCellExperiment ``.rds``.

    The results are stored as the R package's ``RunMMAAVI()`` stores them: Seurat, a
    ``DimReduc`` ``name`` (default ``"mmaavi"``, key ``MMAAVI_``, ``global = TRUE``, ``misc``
    with the training summary and versions) and ``meta.data`` columns
    ``<name>_attention_<modality>``, ``<name>_label``, ``<name>_label_probability``;
    SingleCellExperiment, ``reducedDim(x, name)`` (default ``"MMAAVI"``), the same ``colData``
    columns and ``metadata(x)$mmaavi[[name]]``. Embedding rows are named by cell, in the
    object's cell order.

    Parameters
    ----------
    mdata
        The mosaic (e.g. from :func:`read_rds`).
    path
        The ``.rds`` file to write.
    kind
        ``"sce"`` or ``"seurat"``. Default: the class of ``base``, else the class
        :func:`read_rds` read ``mdata`` from, else ``"sce"``.
    model
        The :class:`~mmaavi.MMAAVI` trained on ``mdata``: its embedding, attention and (with
        labels) predicted labels are written. Without it, only ``mdata.obsm[key]`` is.
    base
        An ``.rds`` to add the results to (e.g. the file :func:`read_rds` read: its cells must be
        those of ``mdata``), keeping everything else in it. Default: a new object is built from
        ``mdata``: one assay per modality with the raw counts over every cell (all-zero columns
        for cells that did not measure it, which :func:`read_rds` reads back as unmeasured), the
        cell table from ``mdata.obs``, cells in the order :func:`read_rds` recorded (else
        ``mdata.obs_names``), assays named as they were read (else the upper-cased modality).
    name
        Name of the reduction / reducedDim and prefix of the per-cell columns.
    model_dir
        With ``model``: a new (or empty) directory to save the model and ``mdata`` in, in the R
        package's layout (``model/``, ``data.h5mu``); its path is stored as ``model.dir``, so that
        ``MMAAVIBayesFactors()``, ``MMAAVIImpute()`` and ``LoadMMAAVI()`` work on the object in R.
    key
        ``mdata.obsm`` key of the embedding when no ``model`` is given.
    overwrite
        Replace ``path`` if it exists.

    Returns
    -------
    pathlib.Path
        ``path``. Neither ``mdata`` nor ``model`` is modified.
    """
    return _write(mdata, path, kind, model=model, base=base, name=name, model_dir=model_dir,
                  key=key, overwrite=overwrite)  # fmt: skip


def _write(
    mdata,
    path,
    kind,
    *,
    model,
    base,
    name,
    model_dir,
    key,
    overwrite,
    saved_model_dir: Path | None = None,
) -> Path:
    """:func:`write_rds`; ``saved_model_dir`` records a model directory already written."""
    import mudata

    from .. import _rbridge

    if not isinstance(mdata, mudata.MuData):
        raise TypeError(f"write_rds: expected a mudata.MuData, found {type(mdata).__name__}.")
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"write_rds: {path} exists; pass overwrite=True to replace it.")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"write_rds: kind must be one of 'sce', 'seurat'; found {kind!r}.")
    if model_dir is not None:
        if model is None:
            raise ValueError("write_rds: model_dir needs model=<the trained MMAAVI> to save.")
        model_dir = Path(model_dir)
        if model_dir.exists() and any(model_dir.iterdir()):
            raise FileExistsError(
                f"write_rds: model_dir {model_dir} exists and is not empty; give a new or empty "
                "directory."
            )
    z, attention, labels = _results(mdata, model, key)
    cells_model = pd.Index(mdata.obs_names.astype(str))
    source = dict(mdata.uns.get(UNS_KEY, {}))

    r = session()
    if base is not None:
        obj, base_kind, cls = _object(r, base, "write_rds(base=)")
        if kind is not None and kind != base_kind:
            raise ValueError(
                f"write_rds: kind={kind!r}, but base holds a {cls}; leave kind out to write a "
                f"{cls}, or drop base to build a new {kind} object."
            )
        kind = base_kind
        object_cells = pd.Index(r.strings(r.ro.r["colnames"](obj)))
        if not _same_cells(object_cells, cells_model):
            extra = object_cells.difference(cells_model)
            lacking = cells_model.difference(object_cells)
            raise ValueError(
                f"write_rds: base's cells are not those of mdata: {len(extra)} only in base "
                f"(e.g. {_rules._show(extra, 3)}), {len(lacking)} only in mdata (e.g. "
                f"{_rules._show(lacking, 3)}). Use the object the data were read from."
            )
    else:
        kind = kind or source.get("kind") or "sce"
        order = pd.Index(source.get("cells", []), dtype=object).astype(str)
        if not _same_cells(order, cells_model):
            order = cells_model
        obj = _new_object(r, mdata, kind, order, source)
    name = name or DEFAULT_NAME[kind]
    if not isinstance(name, str) or not name:
        raise ValueError(f"write_rds: name must be a non-empty string; found {name!r}.")

    if model_dir is not None:
        model.save(model_dir / _rbridge.MODEL_SUBDIR)
        with _rbridge._quiet_io():
            mdata.write(model_dir / _rbridge.DATA_FILE)
    recorded = model_dir if model_dir is not None else saved_model_dir

    columns: dict[str, Any] = {}
    if attention is not None:
        for modality in attention.columns:
            columns[f"{name}_attention_{modality}"] = r.r_column(
                attention[modality].astype(np.float64)
            )
    if labels is not None:
        classes = [str(c) for c in labels.columns[1:]]
        predicted = pd.Categorical(labels["label"].astype(str), categories=classes)
        columns[f"{name}_label"] = r.r_column(pd.Series(predicted))
        columns[f"{name}_label_probability"] = r.r_column(
            pd.Series(labels[classes].to_numpy(dtype=np.float64).max(axis=1))
        )
    obj = r.call(
        "add_results",
        obj,
        kind,
        r.r_matrix(z),
        r.r_strings(cells_model),
        r.r_list(columns),
        name,
        REDUCTION_KEY,
        _r_value(r, _misc(mdata, model, source, recorded)),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    r.call("write_object", obj, str(partial.resolve()))
    os.replace(partial, path)
    return path
