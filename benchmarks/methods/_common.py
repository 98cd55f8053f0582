"""Shared reading/writing for the benchmark runners (stdlib + numpy + pandas + anndata only).

Every runner is called as::

    <venv python> benchmarks/methods/<method>.py --task-dir DIR --out OUTDIR --seed S [--max-epochs N]

reads the task written by ``bench.py prepare`` (``task.json``, ``cells.csv``, ``<modality>.h5ad``)
and writes ``OUTDIR/embedding.npy`` (float32, one row per cell of ``cells.csv``, same order) and
``OUTDIR/run.json``. Import this module FIRST in a runner: it pins every thread pool to one thread
before numpy / torch / numba / jax are loaded (the benchmark machine is shared).
"""

from __future__ import annotations

import os

# One thread everywhere; must happen before numpy/torch/numba/jax are imported.
for _var in (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
):
    os.environ[_var] = "1"
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

#: exit status of a runner whose peer cannot handle the task layout at all
EXIT_UNSUPPORTED = 3
#: exit status of any other failure
EXIT_FAILURE = 1


class Unsupported(RuntimeError):
    """The peer cannot handle this task layout; the message says why (shown in the table)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-epochs", type=int, default=None, help="epoch cap (default: peer's own)")
    return p.parse_args(argv)


@dataclass
class Task:
    """A prepared mosaic task: metadata, cell table and one AnnData per measured modality."""

    dir: Path
    meta: dict
    cells: pd.DataFrame  # index = cell id, in embedding order
    mods: dict = field(default_factory=dict)  # modality -> AnnData (measured cells only)

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def batch_key(self) -> str:
        return self.meta.get("batch_key", "batch")

    @property
    def label_key(self) -> str:
        return self.meta.get("label_key", "label")

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    def has(self, modality: str) -> np.ndarray:
        """Bool mask over ``cells`` of the cells that measured ``modality``."""
        col = f"has_{modality}"
        if col in self.cells:
            return self.cells[col].to_numpy(dtype=bool)
        return self.cells.index.isin(self.mods[modality].obs_names)

    def combination(self) -> pd.Series:
        """Per cell, the '+'-joined modalities it measured (e.g. 'rna+adt')."""
        cols = [self.has(m) for m in self.meta["modalities"]]
        names = self.meta["modalities"]
        return pd.Series(
            ["+".join(n for n, c in zip(names, row) if c) for row in zip(*cols)],
            index=self.cells.index,
        )

    def measured_in(self, modality: str) -> pd.DataFrame | None:
        """var columns ``measured_in_<batch>`` (features x batches, bool) or None if absent."""
        var = self.mods[modality].var
        cols = [c for c in var.columns if c.startswith("measured_in_")]
        if not cols:
            return None
        out = var[cols].fillna(False).astype(bool)
        out.columns = [c[len("measured_in_") :] for c in cols]
        return out


def load_task(task_dir: Path) -> Task:
    """Read ``task.json``, ``cells.csv`` and every ``<modality>.h5ad`` and check they agree."""
    import anndata as ad

    task_dir = Path(task_dir)
    meta = json.loads((task_dir / "task.json").read_text())
    cells = pd.read_csv(task_dir / "cells.csv", index_col=0)
    cells.index = cells.index.astype(str)
    batch_key = meta.get("batch_key", "batch")
    cells[batch_key] = cells[batch_key].astype(str)
    if not cells.index.is_unique:
        raise ValueError("cells.csv: cell ids are not unique")
    task = Task(task_dir, meta, cells)
    for m in meta["modalities"]:
        a = ad.read_h5ad(task_dir / f"{m}.h5ad")
        a.obs_names = a.obs_names.astype(str)
        missing = ~a.obs_names.isin(cells.index)
        if missing.any():
            raise ValueError(f"{m}.h5ad: {missing.sum()} cells not in cells.csv")
        if batch_key not in a.obs:
            a.obs[batch_key] = cells.loc[a.obs_names, batch_key].to_numpy()
        a.obs[batch_key] = a.obs[batch_key].astype(str)
        task.mods[m] = a
        col = f"has_{m}"
        if col in cells and int(cells[col].astype(bool).sum()) != a.n_obs:
            raise ValueError(
                f"{m}.h5ad has {a.n_obs} cells but cells.csv {col} says {cells[col].sum()}"
            )
    if "n_cells" in meta and int(meta["n_cells"]) != len(cells):
        raise ValueError(f"task.json n_cells={meta['n_cells']} but cells.csv has {len(cells)} rows")
    return task


def write_outputs(out: Path, task: Task, embedding, run: dict) -> None:
    """Check and write ``embedding.npy`` (float32, n_cells x d) and ``run.json``."""
    emb = np.asarray(embedding, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != task.n_cells:
        raise ValueError(f"embedding has shape {emb.shape}, expected ({task.n_cells}, d)")
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        raise ValueError(
            f"embedding has {bad.sum()} rows with NaN/inf (e.g. {task.cells.index[bad][:3].tolist()})"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embedding.npy", emb)
    keys = ("method", "task", "seed", "train_seconds", "epochs", "epoch_cap", "version", "notes")
    record = {k: run.get(k) for k in keys}
    record.update({k: v for k, v in run.items() if k not in keys})
    (out / "run.json").write_text(json.dumps(record, indent=2, default=_json_default) + "\n")


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


@contextmanager
def stopwatch(result: dict, key: str = "train_seconds"):
    """``with stopwatch(run): train()`` stores the wall seconds in ``run[key]``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        result[key] = round(time.perf_counter() - t0, 3)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main_guard(fn, argv=None) -> int:
    """Run ``fn(args)``; turn :class:`Unsupported` and other errors into a clear exit status."""
    args = parse_args(argv)
    try:
        fn(args)
    except Unsupported as e:
        print(f"UNSUPPORTED: {e}", file=sys.stderr, flush=True)
        return EXIT_UNSUPPORTED
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return EXIT_FAILURE
    return 0


def seed_python_numpy(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
