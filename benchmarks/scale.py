"""Scaling benchmark (issue 8): out-of-core training on 10k to 1M resampled real cells.

Stages (each can be run alone; ``all`` runs them in order)::

    .venv/bin/python benchmarks/scale.py build  --family bmmc --cells 10000 100000 1000000
    .venv/bin/python benchmarks/scale.py run    --family bmmc --cells 10000 100000 1000000
    .venv/bin/python benchmarks/scale.py report

``build`` writes one ``.h5ad`` per modality (counts as CSR, written chunk by chunk, never whole
in memory) under ``benchmarks/.scale-data/<family>_<cells>/`` (git-ignored; ``--data`` moves
it). ``run`` trains each size in a fresh process on the backed files (``mosaic(...,
backed=True)``, the default ``shuffle="auto"``, i.e. chunked), one torch thread, the default
batch size rule (:func:`mmaavi.data.default_batch_size`: ``max(n_train // 65, 32)`` capped at
2^23 cells x features) and balanced sampling, for ``--epochs`` full epochs
(early stopping off), then encodes every cell; it appends one JSON line per run to
``benchmarks/results/scale.jsonl`` with the process's peak RSS (``ru_maxrss``), seconds per
epoch (training and validation) and cells per second (cells drawn per epoch / seconds per
epoch). ``report`` writes ``benchmarks/results/scale.md`` and ``scale.png`` (log-log).

Families (real cells, resampled):

- ``bmmc``: the bundled BMMC mosaic (1100 cells, 4 batches: RNA in all, ADT in the 2 CITE-seq
  batches, ATAC in the 2 Multiome batches; 1966 + 134 + 600 features; RNA in two blocks with
  different gene sets, as shipped).
- ``snare``: the SNARE-seq mosaic of ``benchmarks/tasks.py`` (10,309 mouse cortex cells, 12
  libraries: 4 paired, 4 RNA-only, 4 ATAC-only; 1677 genes + 25,734 peaks).

Resampling: synthetic cell ``i`` copies a real cell drawn uniformly with replacement (seed
``--seed``), keeps its batch and its modalities, and gets noise so that no two cells are equal:
(1) binomial thinning of every count with one probability per cell, ``p_i ~ U(0.5, 1)``
(library sizes then vary like sequencing depth), and (2) ``Poisson(0.02 * nnz)`` extra counts
of 1 at uniformly random features of each of its modalities (background). Cell names are
``s<i>``; the cells are written in the order of ``i``, so every modality's file is in the global
cell order.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model

HERE = Path(__file__).resolve().parent
DATA = HERE / ".scale-data"
RESULTS = HERE / "results"
RECORDS = RESULTS / "scale.jsonl"
#: cells generated per write (bounds the memory of ``build``)
WRITE_CHUNK = 16384
THIN_LOW, THIN_HIGH = 0.5, 1.0
BACKGROUND = 0.02


# ---------------------------------------------------------------------------- build
def _source(family: str):
    """The real mosaic resampled by ``family`` (in memory; small)."""
    import mmaavi

    if family == "bmmc":
        return mmaavi.datasets.bmmc_mosaic()
    sys.path.insert(0, str(HERE))
    from tasks import snare_mosaic

    return snare_mosaic().mdata


def build(family: str, n_cells: int, data_dir: Path, seed: int) -> Path:
    """Write the ``family`` mosaic resampled to ``n_cells`` cells; return its folder."""
    import pandas as pd

    folder = data_dir / f"{family}_{n_cells}"
    if (folder / "dataset.json").is_file():
        print(f"{folder}: exists", flush=True)
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    src = _source(family)
    rng = np.random.default_rng(seed)
    source = rng.integers(0, src.n_obs, n_cells)
    thin = rng.uniform(THIN_LOW, THIN_HIGH, n_cells)
    batch = src.obs["batch"].astype(str).to_numpy()[source]
    names = np.array([f"s{i}" for i in range(n_cells)], dtype=object)
    nnz = {}
    for j, (m, adata) in enumerate(src.mod.items()):
        row_of = pd.Index(adata.obs_names).get_indexer(src.obs_names)  # source cell -> mod row
        has = row_of[source] >= 0
        cells = np.flatnonzero(has)
        nnz[m] = _write_modality(
            folder / f"{m}.h5ad",
            adata,
            row_of[source[cells]],
            names[cells],
            batch[cells],
            thin[cells],
            np.random.default_rng([seed, j]),
        )
    info = {
        "family": family,
        "n_cells": n_cells,
        "seed": seed,
        "source_cells": int(src.n_obs),
        "modalities": {m: int(a.n_vars) for m, a in src.mod.items()},
        "nnz": nnz,
        "noise": {"thinning": [THIN_LOW, THIN_HIGH], "background_per_nnz": BACKGROUND},
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    (folder / "dataset.json").write_text(json.dumps(info, indent=1))
    print(f"{folder}: {info}", flush=True)
    return folder


def _write_modality(path, adata, rows, names, batch, thin, rng) -> int:
    """One modality's resampled cells as a backed-readable .h5ad, CSR appended chunk by chunk."""
    import anndata.io as aio
    import h5py
    import pandas as pd
    import scipy.sparse as sp

    from mmaavi.data import BLOCK_KEY, MEASURED_KEY

    x_src = sp.csr_matrix(adata.X)
    n_features = x_src.shape[1]
    obs = pd.DataFrame({"batch": pd.Categorical(batch)}, index=pd.Index(names, dtype=str))
    if BLOCK_KEY in adata.obs:
        obs[BLOCK_KEY] = pd.Categorical(adata.obs[BLOCK_KEY].to_numpy()[rows])
    tmp = path.with_suffix(".tmp")
    total = 0
    with h5py.File(tmp, "w") as f:
        aio.write_elem(f, "obs", obs)
        aio.write_elem(f, "var", pd.DataFrame(index=pd.Index(adata.var_names, dtype=str)))
        if MEASURED_KEY in adata.varm:
            aio.write_elem(f, "varm", {MEASURED_KEY: pd.DataFrame(adata.varm[MEASURED_KEY])})
        group = f.create_group("X")
        group.attrs.update(
            {"encoding-type": "csr_matrix", "encoding-version": "0.1.0",
             "shape": np.array([len(rows), n_features])}
        )  # fmt: skip
        kw = {"maxshape": (None,), "chunks": (1 << 18,)}
        data = group.create_dataset("data", (0,), dtype=np.float32, **kw)
        indices = group.create_dataset("indices", (0,), dtype=np.int32, **kw)
        indptr = group.create_dataset("indptr", (1,), dtype=np.int64, **kw)
        indptr[0] = 0
        for start in range(0, len(rows), WRITE_CHUNK):
            part = slice(start, start + WRITE_CHUNK)
            x = _noisy(x_src[rows[part]], thin[part], n_features, rng)
            n = x.nnz
            data.resize((total + n,))
            indices.resize((total + n,))
            data[total:] = x.data
            indices[total:] = x.indices
            old = indptr.shape[0]
            indptr.resize((old + x.shape[0],))
            indptr[old:] = x.indptr[1:] + total
            total += n
    tmp.replace(path)
    return total


def _noisy(x, thin, n_features: int, rng):
    """Binomial thinning (probability ``thin`` per row) plus Poisson background counts of 1."""
    import scipy.sparse as sp

    x = sp.csr_matrix(x, dtype=np.float64)
    per_row = np.diff(x.indptr)
    p = np.repeat(thin, per_row)
    x.data = rng.binomial(x.data.astype(np.int64), p).astype(np.float64)
    extra = rng.poisson(BACKGROUND * per_row)
    rows = np.repeat(np.arange(x.shape[0]), extra)
    cols = rng.integers(0, n_features, rows.size)
    noise = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=x.shape)
    out = sp.csr_matrix(x + noise, dtype=np.float32)
    out.eliminate_zeros()
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------- run
def child(args) -> None:
    """One measured run (in its own process, so ``ru_maxrss`` is this run's peak)."""
    import anndata as ad
    import torch

    torch.set_num_threads(1)
    import mmaavi
    from mmaavi.data import train_val_split

    folder = Path(args.folder)
    info = json.loads((folder / "dataset.json").read_text())
    start = time.perf_counter()
    mods = {}
    for m in info["modalities"]:
        path = folder / f"{m}.h5ad"
        mods[m] = ad.read_h5ad(path, backed="r") if args.backed else ad.read_h5ad(path)
    mdata = mmaavi.data.mosaic(mods, batch_key="batch", backed=args.backed)
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=10)
    setup = time.perf_counter() - start
    rss_setup = _peak_rss_gb()
    train_idx, _ = train_val_split(model.data.batch, 0.1, 0)
    draws = int(np.bincount(model.data.batch[train_idx]).max() * model.data.n_batches)
    cpu_start = _cpu_seconds()
    faults_start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    model.train(
        max_epochs=args.epochs, seed=0, progress="lines", device=args.device,
        precision=args.precision, early_stopping_patience=10**6, lr_patience=10**6,
        batch_size=args.batch_size,
    )  # fmt: skip
    batch_size = model.train_info["batch_size"]  # the loop's default rule unless given
    epochs = model.history["seconds"].to_numpy()
    cpu_train = _cpu_seconds() - cpu_start
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_start
    start = time.perf_counter()
    model.get_latent_representation()
    encode = time.perf_counter() - start
    record = {
        "family": info["family"],
        "n_cells": info["n_cells"],
        "backed": bool(args.backed),
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "batch_size": int(batch_size),
        "batch_rule": "fixed" if args.batch_size else "default",
        "allocator": "glibc, mmap off" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "glibc",
        "draws_per_epoch": draws,
        "epochs": int(len(epochs)),
        "setup_s": round(setup, 1),
        "seconds_per_epoch": round(float(np.mean(epochs)), 2),
        "epoch_seconds": [round(float(s), 2) for s in epochs],
        "cells_per_s": round(draws / float(np.mean(epochs)), 1),
        # CPU seconds of the process (one torch thread): hardly changed by other jobs on the
        # cores, unlike the wall time; includes the run's set-up of the loop (small)
        "cpu_seconds_per_epoch": round(cpu_train / len(epochs), 2),
        # minor page faults while training: memory freshly mapped (and zeroed) by the allocator
        "page_faults_per_epoch": int(faults / len(epochs)),
        "encode_cells_per_s": round(info["n_cells"] / encode, 1),
        "peak_rss_gb_setup": round(rss_setup, 3),
        "peak_rss_gb": round(_peak_rss_gb(), 3),
        "nnz": info["nnz"],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "mmaavi": mmaavi.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    Path(args.json).write_text(json.dumps(record))


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB on Linux


def _cpu(record: dict) -> str:
    value = record.get("cpu_seconds_per_epoch")
    return "-" if value is None else f"{value:.1f}"


def _faults(record: dict) -> str:
    value = record.get("page_faults_per_epoch")
    return "-" if value is None else f"{value:,}"


def run(family: str, n_cells: int, args) -> dict:
    folder = build(family, n_cells, Path(args.data), args.seed)
    where = "backed" if args.backed else "memory"
    out = folder / f"run_{args.device}_{args.precision}_{where}_{args.batch_size or 'default'}.json"
    cmd = [
        sys.executable, __file__, "_child", "--folder", str(folder), "--json", str(out),
        "--epochs", str(args.epochs), "--device", args.device, "--precision", args.precision,
    ] + (["--backed"] if args.backed else [])  # fmt: skip
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    if args.keep_freed_memory:
        # glibc: no mmap for large blocks and no trimming, so the memory a training step frees
        # is reused by the next instead of being unmapped and faulted in again (zeroed)
        env.update(MALLOC_MMAP_MAX_="0", MALLOC_TRIM_THRESHOLD_=str(1 << 40))
        out = out.with_name(out.stem + "_keep.json")
        cmd[cmd.index("--json") + 1] = str(out)
    print(f">> {family} {n_cells} cells: {' '.join(cmd[2:])}", flush=True)
    subprocess.run(cmd, check=True, env=env)
    record = json.loads(out.read_text())
    RESULTS.mkdir(parents=True, exist_ok=True)
    with RECORDS.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    print(json.dumps(record), flush=True)
    return record


# ---------------------------------------------------------------------------- report
def report() -> None:
    """``scale.md`` (table, slopes) and ``scale.png`` (log-log) from ``scale.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]
    latest = {}
    for r in records:  # the latest run of each configuration
        r.setdefault("batch_rule", "published")  # the first runs, before the key existed
        r.setdefault("allocator", "glibc")  # runs from before --keep-freed-memory
        key = (r["family"], r["n_cells"], r["backed"], r["device"], r["precision"],
               r["batch_rule"], r["allocator"])  # fmt: skip
        latest[key] = r
    rows = sorted(latest.values(), key=lambda r: (r["family"], r["device"], r["precision"],
                                                  not r["backed"], r["batch_rule"],
                                                  r["allocator"], r["n_cells"]))  # fmt: skip
    lines = [
        "| family | cells | data | device | precision | batch size | allocator "
        "| cells drawn / epoch | setup s | s / epoch | CPU s / epoch | cells / s "
        "| encode cells / s | peak RSS GB | page faults / epoch | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['n_cells']:,} | {'backed' if r['backed'] else 'in memory'} "
            f"| {r['device']} | {r['precision']} | {r['batch_size']:,} | "
            f"{r['allocator']} | {r['draws_per_epoch']:,} | {r['setup_s']:.0f} | {r['seconds_per_epoch']:.1f} | "
            f"{_cpu(r)} | "
            f"{r['cells_per_s']:,.0f} | {r['encode_cells_per_s']:,.0f} | {r['peak_rss_gb']:.2f} "
            f"| {_faults(r)} | {r['load_average'][0]:.1f} |"
        )
    slopes = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    groups = {}
    for r in rows:
        if r["backed"]:
            key = (r["family"], r["device"], r["precision"], r["batch_rule"],
                   r["allocator"])  # fmt: skip
            groups.setdefault(key, []).append(r)
    for (family, device, precision, rule, allocator), group in groups.items():
        group = sorted(group, key=lambda r: r["n_cells"])
        n = np.array([r["n_cells"] for r in group], dtype=float)
        on_cpu = all("cpu_seconds_per_epoch" in r for r in group)
        kind = "CPU" if on_cpu else "wall"
        t = np.array([r["cpu_seconds_per_epoch" if on_cpu else "seconds_per_epoch"] for r in group])
        rss = np.array([r["peak_rss_gb"] for r in group])
        sizes = {
            "default": "default batch size",
            # runs from before the default was capped (mmaavi.data.default_batch_size)
            "published": "uncapped n_train // 65 batch size",
        }.get(rule, f"batch size {group[0]['batch_size']}")
        label = f"{family} ({device}, {precision}, {sizes}" + (
            ", glibc mmap off)" if allocator != "glibc" else ")"
        )
        axes[0].loglog(n, t, "o-", label=label)
        axes[1].semilogx(n, rss, "o-", label=label)
        big = n >= 1e5
        if big.sum() >= 2:
            slope = np.polyfit(np.log10(n[big]), np.log10(t[big]), 1)[0]
            slopes.append(f"- {label}: slope of log({kind} s / epoch) on log(cells) from "
                          f"{int(n[big][0]):,} to {int(n[big][-1]):,} cells: **{slope:.3f}**")  # fmt: skip
    ref = np.array([1e4, 1e6])
    axes[0].loglog(ref, ref / ref[0] * min(r["seconds_per_epoch"] for r in rows), "k:", lw=0.8,
                   label="slope 1")  # fmt: skip
    axes[0].set_xlabel("cells")
    axes[0].set_ylabel("CPU seconds per epoch (wall where not recorded)")
    axes[0].legend(fontsize=8)
    axes[1].axhline(4.0, color="grey", ls="--", lw=0.8, label="4 GB target")
    axes[1].set_xlabel("cells")
    axes[1].set_ylabel("peak RSS, GB (backed)")
    axes[1].legend(fontsize=8)
    fig.suptitle("mmaavi out-of-core training, one CPU thread")
    fig.tight_layout()
    fig.savefig(RESULTS / "scale.png", dpi=120)
    text = ["# mmaavi scaling benchmark", "", *lines, "", *slopes, "",
            f"Machine: {rows[0]['cpu']}, torch {rows[0]['torch']}, mmaavi {rows[0]['mmaavi']}; "
            "one torch thread; load avg is the 1-minute load when the run ended (2 cores).",
            "Reproduce: see the docstring of benchmarks/scale.py."]  # fmt: skip
    (RESULTS / "scale.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


# ---------------------------------------------------------------------------- CLI
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    for name in ("build", "run", "all"):
        p = sub.add_parser(name)
        p.add_argument("--family", nargs="+", default=["bmmc"], choices=["bmmc", "snare"])
        p.add_argument("--cells", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
        p.add_argument("--data", default=str(DATA))
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--epochs", type=int, default=1)
        p.add_argument("--device", default="cpu")
        p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
        p.add_argument("--in-memory", dest="backed", action="store_false")
        p.add_argument("--batch-size", type=int, default=None, help="[the default rule]")
        p.add_argument(
            "--keep-freed-memory",
            action="store_true",
            help="run with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2^40 (glibc keeps freed "
            "memory for the next step instead of unmapping it)",
        )
    sub.add_parser("report")
    c = sub.add_parser("_child")
    c.add_argument("--folder", required=True)
    c.add_argument("--json", required=True)
    c.add_argument("--epochs", type=int, default=1)
    c.add_argument("--device", default="cpu")
    c.add_argument("--precision", default="fp32")
    c.add_argument("--backed", action="store_true")
    c.add_argument("--batch-size", type=int, default=None)
    args = parser.parse_args()
    if args.stage == "_child":
        child(args)
    elif args.stage == "report":
        report()
    else:
        for family in args.family:
            for n in args.cells:
                if args.stage == "build":
                    build(family, n, Path(args.data), args.seed)
                else:
                    run(family, n, args)
        if args.stage == "all":
            report()


if __name__ == "__main__":
    main()
