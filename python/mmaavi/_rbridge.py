"""The R package's one way into mmaavi: plain inputs in, numpy / pandas out.

R (``R/python.R``, through reticulate) calls only the functions here. They take what reticulate
makes of R objects -- a ``dgCMatrix`` arrives as a ``scipy.sparse.csc_matrix`` (features x cells,
as R stores counts), character vectors as ``str`` or ``list[str]``, numbers as ``float``,
``data.frame`` as ``pandas.DataFrame`` -- build the mosaic with :func:`mmaavi.data.mosaic` and the
model with :class:`mmaavi.MMAAVI`, and return numpy arrays, lists and DataFrames, which reticulate
1.28 converts back (scipy sparse and torch tensors do not convert, so none is returned).

DataFrames are returned as dicts of columns (``_columns``): reticulate 1.28's DataFrame conversion
calls pandas' deprecated ``Index.format`` and prints a FutureWarning on every call.

A fitted model lives in a directory: ``model/`` (:meth:`MMAAVI.save`) and ``data.h5mu`` (the
mosaic it was trained on, with the batch and label columns). R keeps the directory's path, never
a Python object, so a model outlives the R session; :func:`load` rebuilds it.

Cells are put in one canonical order (by name within each block) before the model sees them, so
the result of :func:`fit` does not depend on the cell order of the R object, only on its content
and the seed.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import __version__, _blas

__all__ = ["bayes_factors", "describe", "fit", "impute", "latent", "load", "versions"]

#: sub-directory of a model directory holding :meth:`MMAAVI.save`'s files
MODEL_SUBDIR = "model"
#: the mosaic the model was trained on, inside a model directory
DATA_FILE = "data.h5mu"
#: ``mdata.obs`` column that :func:`bayes_factors` fills with the R side's groups
GROUP_COLUMN = "_mmaavi_r_groups"
#: arguments that must be integers in Python but arrive from R as doubles
_INT_ARGS = frozenset(
    {
        "max_epochs",
        "batch_size",
        "early_stopping_patience",
        "lr_patience",
        "max_lr_cuts",
        "checkpoint_every",
        "n_latent",
        "n_latent_u",
        "n_samples",
        "seed",
        "n_components",
    }
)


def versions() -> dict[str, str]:
    """Versions of mmaavi and the libraries it runs on, as plain str, for ``mmaavi_python_info()``;
    ``blas``: the library torch's matrix products reach (:func:`mmaavi._blas.torch_blas`)."""
    from importlib.metadata import version

    out = {"mmaavi": __version__, "python": sys.version.split()[0], "executable": sys.executable}
    for package in ("torch", "numpy", "scipy", "pandas", "anndata", "mudata"):
        out[package] = str(version(package))
    out["blas"] = str(_blas.torch_blas())
    return out


def _names(values: str | Sequence[str]) -> list[str]:
    """A character vector from R (a ``str`` when it has length one) as a list of str."""
    if isinstance(values, str):
        return [values]
    return [str(v) for v in values]


def _integers(kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Copy of ``kwargs`` with R's integral doubles turned into int for integer arguments."""
    out = dict(kwargs or {})
    for key, value in out.items():
        if key in _INT_ARGS and isinstance(value, float) and value.is_integer():
            out[key] = int(value)
    if "encoder_hidden" in out:
        hidden = out["encoder_hidden"]
        out["encoder_hidden"] = [int(h) for h in ([hidden] if np.isscalar(hidden) else hidden)]
    return out


@contextlib.contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run with ``threads`` torch CPU threads, then restore the previous count."""
    import torch

    threads = int(threads)
    if threads < 1:
        raise ValueError(f"threads must be a positive integer; found {threads}.")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _block(modality: str, i: int, block: Mapping[str, Any]):
    """One AnnData (cells x features) from an R block: ``x`` features x cells, names."""
    from anndata import AnnData

    where = f"modality {modality!r}, block {i + 1}"
    x = block["x"]
    if not sp.issparse(x):
        raise TypeError(
            f"{where}: expected a sparse matrix (an R dgCMatrix), found {type(x).__name__}."
        )
    features, cells = _names(block["features"]), _names(block["cells"])
    if x.shape != (len(features), len(cells)):
        raise ValueError(
            f"{where}: the matrix is {x.shape[0]} x {x.shape[1]} but {len(features)} feature "
            f"and {len(cells)} cell names were given."
        )
    # features x cells CSC transposes, without a copy, to cells x features CSR
    x = sp.csr_matrix(x.T)
    order = np.argsort(np.asarray(cells, dtype=object), kind="stable")
    return AnnData(
        X=x[order],
        obs=pd.DataFrame(index=pd.Index(np.asarray(cells, dtype=object)[order])),
        var=pd.DataFrame(index=pd.Index(features)),
    )


def build_mosaic(
    blocks: Mapping[str, Sequence[Mapping[str, Any]]], obs: pd.DataFrame, batch_key: str
):
    """The mosaic MuData from R's per-modality blocks and its cell table.

    Parameters
    ----------
    blocks
        Modality name -> list of blocks, each a mapping with ``x`` (scipy sparse, features x
        cells: the cells that measured the modality), ``features`` and ``cells`` (names).
    obs
        One row per cell (every cell of every block), with ``batch_key`` (and labels); the cell
        names are its index or, when the index is a plain range, a ``cell`` column.
    batch_key
        Column of ``obs`` with the batch.
    """
    obs = obs.copy()
    if "cell" in obs.columns:
        obs = obs.set_index("cell")
    obs.index = obs.index.astype(str)
    return mosaic_from_blocks(blocks, obs, batch_key)


def mosaic_from_blocks(
    blocks: Mapping[str, Sequence[Mapping[str, Any]]], obs: pd.DataFrame, batch_key: str
):
    """The mosaic from per-modality blocks (as :func:`build_mosaic`) and a cell table indexed
    by cell name. :func:`mmaavi.io.read_rds` builds its mosaic here too, so that an object read
    in Python reaches the model exactly as ``RunMMAAVI()`` hands it over."""
    from .data import mosaic

    if not isinstance(blocks, Mapping) or not blocks:
        raise TypeError("blocks: expected a non-empty mapping modality -> list of blocks.")
    mods = {}
    for modality, mod_blocks in blocks.items():
        if isinstance(mod_blocks, Mapping):
            mod_blocks = [mod_blocks]
        adatas = [_block(modality, i, b) for i, b in enumerate(mod_blocks)]
        mods[modality] = adatas if len(adatas) > 1 else adatas[0]
    return mosaic(mods, batch_key=batch_key, obs=obs)


def fit(
    blocks: Mapping[str, Sequence[Mapping[str, Any]]],
    obs: pd.DataFrame,
    model_dir: str,
    batch_key: str = "batch",
    label_key: str | None = None,
    n_components: int | None = None,
    seed: int = 0,
    threads: int = 1,
    verbose: bool = False,
    args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the mosaic, train, save to ``model_dir`` and return every per-cell output.

    Parameters
    ----------
    blocks, obs, batch_key
        See :func:`build_mosaic`.
    model_dir
        Directory to write ``model/`` and ``data.h5mu`` into (created; must be empty if it exists).
    label_key
        Column of ``obs`` with labels (missing = unlabelled) for semi-supervised training.
    n_components, seed
        As in :class:`~mmaavi.MMAAVI` and :meth:`~mmaavi.MMAAVI.train`.
    threads
        torch CPU threads while training (restored afterwards).
    verbose
        Print one line per epoch.
    args
        Further keyword arguments, each going to :class:`~mmaavi.MMAAVI` or to
        :meth:`~mmaavi.MMAAVI.train` by its name (``n_latent``, ``max_epochs``, ...).

    Returns
    -------
    dict
        ``cells`` (model order), ``latent`` (n_cells, n_latent), ``attention`` (n_cells,
        n_modalities) with ``modalities``, ``history`` (columns), ``train_info``,
        ``model_dir`` and, with labels, ``labels`` (predicted), ``label_probability`` (of the
        predicted label) and ``classes``.
    """
    from .model import MMAAVI

    out_dir = Path(model_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(
            f"model.dir {out_dir} exists and is not empty; choose a new directory or empty it."
        )
    model_args, train_args = _split_args(args)
    with _quiet_io():
        mdata = build_mosaic(blocks, obs, batch_key)
    model = MMAAVI(
        mdata,
        batch_key=batch_key,
        n_components=None if n_components is None else int(n_components),
        label_key=label_key,
        **model_args,
    )
    with _torch_threads(threads):
        model.train(seed=int(seed), progress="lines" if verbose else "none", **train_args)
        result = _outputs(model)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save(out_dir / MODEL_SUBDIR)
    with _quiet_io():
        mdata.write(out_dir / DATA_FILE)
    result["model_dir"] = str(out_dir.resolve())
    result["history"] = _columns(model.history)
    result["train_info"] = dict(model.train_info)
    return result


def _columns(table: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as ``{column: values}`` (numpy for numbers and booleans, lists of str else)."""
    out: dict[str, Any] = {}
    for name, values in table.items():
        if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(values):
            out[str(name)] = values.to_numpy()
        else:
            out[str(name)] = values.astype(str).tolist()
    return out


def _split_args(args: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Route extra arguments to ``MMAAVI()`` or ``train()`` by name; refuse the others."""
    from .model import MMAAVI

    own = {"mdata", "self", "batch_key", "label_key", "n_components", "seed", "progress"}
    model_names = set(inspect.signature(MMAAVI.__init__).parameters) - own
    train_names = set(inspect.signature(MMAAVI.train).parameters) - own
    model_args: dict[str, Any] = {}
    train_args: dict[str, Any] = {}
    for key, value in _integers(args).items():
        if key in model_names:
            model_args[key] = value
        elif key in train_names:
            train_args[key] = value
        else:
            raise TypeError(
                f"unknown argument {key!r}: the arguments passed on to the Python model are those "
                f"of MMAAVI() ({', '.join(sorted(model_names))}) and of train() "
                f"({', '.join(sorted(train_names))})."
            )
    return model_args, train_args


def _outputs(model) -> dict[str, Any]:
    """Embedding, attention and (with labels) predicted labels, rows in model cell order."""
    attention = model.get_attention()
    out: dict[str, Any] = {
        "cells": [str(c) for c in model.data.obs_names],
        "latent": np.ascontiguousarray(model.get_latent_representation(), dtype=np.float64),
        "attention": attention.to_numpy(dtype=np.float64),
        "modalities": [str(m) for m in attention.columns],
    }
    if model.data.label_categories is not None:
        predicted = model.predict_labels()
        classes = [str(c) for c in predicted.columns[1:]]
        out["labels"] = predicted["label"].astype(str).tolist()
        out["label_probability"] = predicted[classes].to_numpy(dtype=np.float64).max(axis=1)
        out["classes"] = classes
    return out


def _read_data(path: Path):
    """The saved mosaic."""
    import mudata

    with _quiet_io():
        return mudata.read_h5mu(path)


@contextlib.contextmanager
def _quiet_io() -> Iterator[None]:
    """Silence what mudata/anndata I/O warns about their own future API and shared feature names
    (gene and protein CD4): nothing an R user can act on, and it would print on every call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Cannot join columns", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        yield


def load(model_dir: str, device: str = "cpu"):
    """The trained model saved by :func:`fit` in ``model_dir`` (with its data)."""
    from .model import MMAAVI

    path = Path(model_dir)
    data_file = path / DATA_FILE
    if not (path / MODEL_SUBDIR).is_dir() or not data_file.is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory written by RunMMAAVI(): expected {MODEL_SUBDIR}/ "
            f"and {DATA_FILE} in it."
        )
    mdata = _read_data(data_file)
    return MMAAVI.load(path / MODEL_SUBDIR, mdata, device=device)


def describe(model_dir: str) -> dict[str, Any]:
    """What a model directory holds: cells, batches, modalities, features, parameters, versions."""
    path = Path(model_dir)
    meta_file = path / MODEL_SUBDIR / "model.json"
    if not meta_file.is_file() or not (path / DATA_FILE).is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory written by RunMMAAVI(): expected "
            f"{MODEL_SUBDIR}/model.json and {DATA_FILE} in it."
        )
    meta = json.loads(meta_file.read_text())
    mdata = _read_data(path / DATA_FILE)
    batch_key = meta["init_params"]["batch_key"]
    return {
        "cells": [str(c) for c in mdata.obs_names],
        "batch": mdata.obs[batch_key].astype(str).tolist(),
        "modalities": list(meta["modalities"]),
        "features": {m: list(v) for m, v in meta["var_names"].items()},
        "init_params": dict(meta["init_params"]),
        "train_info": dict(meta.get("train_info", {})),
        "mmaavi_version": str(meta.get("mmaavi_version")),
    }


def latent(model_dir: str, threads: int = 1) -> dict[str, Any]:
    """Embedding, attention and predicted labels of a saved model (as :func:`fit` returns them)."""
    with _torch_threads(threads):
        return _outputs(load(model_dir))


def bayes_factors(
    model_dir: str,
    cells: str | Sequence[str],
    groups: str | Sequence[str | None],
    group1: str | None = None,
    group2: str | None = None,
    modality: str | Sequence[str] | None = None,
    threads: int = 1,
    differential_args: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bayes-factor differential features (:meth:`MMAAVI.differential`) for groups given by R.

    ``cells`` and ``groups`` are parallel: the group of each named cell (None/NaN = no group).
    Cells of the model that are not named belong to no group; named cells the model does not
    have are an error. Returns the table as ``{column: values}`` in its column order.
    """
    cells = _names(cells)
    values = [groups] if isinstance(groups, str) or groups is None else list(groups)
    if len(values) != len(cells):
        raise ValueError(f"{len(cells)} cells but {len(values)} group values were given.")
    model = load(model_dir)
    table = pd.Series(values, index=pd.Index(cells), dtype=object)
    unknown = table.index.difference(model.mdata.obs_names)
    if len(unknown):
        raise KeyError(
            f"{len(unknown)} cells are not in the model in {model_dir}, e.g. "
            f"{list(unknown[:3])}; the groups must name cells the model was trained on."
        )
    column = table.reindex(model.mdata.obs_names)
    model.mdata.obs[GROUP_COLUMN] = pd.Categorical(
        column.where(column.isna(), column.astype(str)).to_numpy()
    )
    with _torch_threads(threads):
        result = model.differential(
            GROUP_COLUMN,
            group1,
            group2,
            modality=modality if modality is None else _names(modality),
            **_integers(differential_args),
        )
    return _columns(result)


def impute(
    model_dir: str,
    modality: str,
    batch: str | None = None,
    library_size: float = 1e4,
    threads: int = 1,
) -> dict[str, Any]:
    """Imputed ``modality`` for every cell of a saved model, features x cells (R's layout)."""
    with _torch_threads(threads):
        table = load(model_dir).impute(modality, batch=batch, library_size=float(library_size))
    return {
        "values": np.asfortranarray(table.to_numpy(dtype=np.float64).T),
        "features": [str(f) for f in table.columns],
        "cells": [str(c) for c in table.index],
    }
