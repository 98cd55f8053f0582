"""The benchmark harness of issue 6: mmaavi and its peers on the same real mosaic tasks.

Four stages, each a sub-command; ``make bench`` runs them all:

``prepare``
    Builds every task from ``../shared/data`` into ``benchmarks/work/tasks/<task>/`` in one
    method-neutral format (below), so every method reads exactly the same cells and counts.
``run``
    Runs every (task, method, seed) as its own subprocess, in the method's own interpreter
    (mmaavi and the unintegrated baseline in the package's venv, the peers in
    ``benchmarks/.venv-peers``), measuring the child's peak RSS with ``wait4``; the runner
    writes ``embedding.npy`` and ``run.json`` into ``benchmarks/work/runs/<task>/<method>/seed<k>/``.
``evaluate``
    Scores every embedding with scib-metrics (needs the peers' venv, where scib-metrics lives)
    and writes one JSON per (task, method, seed) into ``benchmarks/results/scib/``.
``report``
    Summarises those JSONs as mean ± sd over seeds into ``benchmarks/results/scib_summary.md``
    and a figure ``benchmarks/results/scib_summary.png``.

Task format (``benchmarks/work/tasks/<task>/``):

* ``task.json``: name, modalities, batch_key (``"batch"``), label_key (``"label"``), genome,
  n_cells, and a description of the layout;
* ``cells.csv``: one row per cell, *in the order every embedding must have*: cell id (index),
  ``batch``, ``label`` and one boolean ``has_<modality>`` column per modality;
* ``<modality>.h5ad``: raw counts (float32 CSR) of the cells that measured the modality, in
  ``cells.csv`` order, with ``obs["batch"]`` and the shipped feature annotation. When a
  modality's features differ between batches (BMMC's two RNA gene sets), ``X`` holds the union
  of features, zeros where unmeasured, and ``var["measured_in_<batch>"]`` says which batch
  measured each feature.

Runner contract: ``<python> benchmarks/methods/<method>.py --task-dir D --out O --seed S
[--max-epochs N]`` writes ``O/embedding.npy`` (rows in ``cells.csv`` order) and ``O/run.json``
(method, task, seed, train_seconds, epochs, epoch_cap, version, notes).

    .venv/bin/python benchmarks/bench.py prepare
    .venv/bin/python benchmarks/bench.py run --seeds 0 1 2
    benchmarks/.venv-peers/bin/python benchmarks/bench.py evaluate
    benchmarks/.venv-peers/bin/python benchmarks/bench.py report

After a change to one method, ``run --methods mmaavi`` and ``evaluate --methods mmaavi`` redo
its runs and scores alone; ``report`` then tables them with the others' earlier results.

The ``prepare`` and ``run`` stages need only anndata (either venv); ``evaluate`` needs
scib-metrics, ``report`` matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = Path(os.environ.get("MMAAVI_SHARED_DATA", ROOT.parent / "shared" / "data"))
WORK = HERE / "work"
RESULTS = HERE / "results"

PACKAGE_PYTHON = ROOT / ".venv" / "bin" / "python"
PEERS_PYTHON = HERE / ".venv-peers" / "bin" / "python"

TASKS = ("bmmc3", "wnn_mosaic", "snare_mosaic")
#: method -> (interpreter, display name)
METHODS = {
    "unintegrated": (PACKAGE_PYTHON, "Unintegrated (PCA/LSI)"),
    "mmaavi": (PACKAGE_PYTHON, "mmaavi"),
    "multivi": (PEERS_PYTHON, "MultiVI"),
    "glue": (PEERS_PYTHON, "GLUE"),
    "midas": (PEERS_PYTHON, "MIDAS"),
}
#: runner scripts not named after their method (``mmaavi.py`` would shadow the package)
SCRIPTS = {"mmaavi": "mmaavi_default.py"}
#: (task, method) -> epoch cap, where a method's own stopping rule does not fit the time budget
#: of ``make bench`` on a 2-core CPU; the table marks capped runs.
#: Measured with one thread (upper bounds, contended): on snare_mosaic MultiVI 4.7 s, GLUE ~56 s
#: per stage epoch (+ ~100 s between stages), MIDAS 43 s per epoch; the caps give each ~5 min.
#: On bmmc3 and wnn_mosaic the peers run to their own defaults, except GLUE, whose automatic
#: schedule did not finish bmmc3 in 30 min on the contended 2-core machine: 30 epochs per stage.
EPOCH_CAPS: dict[tuple[str, str], int] = {
    ("bmmc3", "glue"): 30,
    ("wnn_mosaic", "glue"): 30,
    ("snare_mosaic", "multivi"): 60,
    ("snare_mosaic", "glue"): 2,  # per stage (pretrain, fine-tune)
    ("snare_mosaic", "midas"): 6,
}

SNARE_PAIRED = ("09A", "09B", "09C", "09D")
SNARE_RNA_ONLY = ("09E", "09F", "09G", "09H")
SNARE_ATAC_ONLY = ("09I", "09J", "09K", "09L")

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


# --------------------------------------------------------------------------------------------
# prepare


def _read(path: Path):
    import anndata as ad

    a = ad.read_h5ad(path)
    a.obs_names = a.obs_names.astype(str)
    return a


def _union_blocks(blocks: list, batch_key: str = "batch"):
    """One AnnData over the union of the blocks' features; zeros where a block lacks a feature,
    and ``var["measured_in_<batch>"]`` recording which batches measured each feature."""
    import anndata as ad
    import scipy.sparse as sp

    features = pd.Index(pd.unique(np.concatenate([b.var_names.to_numpy() for b in blocks])))
    xs, var_parts = [], []
    measured = {}
    for b in blocks:
        cols = features.get_indexer(b.var_names)
        x = sp.csr_matrix(b.X, dtype=np.float32)
        scatter = sp.csr_matrix(
            (np.ones(len(cols), np.float32), (np.arange(len(cols)), cols)),
            shape=(len(cols), len(features)),
        )
        xs.append((x @ scatter).tocsr())
        var_parts.append(b.var)
        for batch in pd.unique(b.obs[batch_key].astype(str)):
            measured[f"measured_in_{batch}"] = features.isin(b.var_names)
    var = pd.concat(var_parts)
    var = var[~var.index.duplicated()].reindex(features)
    for key, value in measured.items():
        var[key] = value
    obs = pd.concat([b.obs for b in blocks])
    return ad.AnnData(sp.vstack(xs).tocsr(), obs=obs, var=var)


def _write_task(name: str, mods: dict, labels: pd.Series, genome: str, layout: str) -> Path:
    """Write one task in the format of the module docstring; cells ordered by batch, then name
    order of first appearance."""
    out = WORK / "tasks" / name
    out.mkdir(parents=True, exist_ok=True)
    batches = pd.concat([m.obs["batch"].astype(str) for m in mods.values()])
    batches = batches[~batches.index.duplicated()]
    cells = pd.DataFrame({"batch": batches})
    cells["label"] = labels.reindex(cells.index).astype(str).to_numpy()
    if cells["label"].isin(["nan", "None"]).any():
        raise ValueError(f"{name}: some cells have no label")
    for m, a in mods.items():
        cells[f"has_{m}"] = cells.index.isin(a.obs_names)
    cells = cells.sort_values("batch", kind="stable")
    cells.index.name = "cell"
    cells.to_csv(out / "cells.csv")
    for m, a in mods.items():
        order = cells.index[cells[f"has_{m}"]]
        a = a[order].copy()
        a.obs = a.obs[["batch"]].astype(str)
        for col in a.var.columns:
            if a.var[col].dtype == object:
                a.var[col] = a.var[col].astype(str)
        a.write_h5ad(out / f"{m}.h5ad", compression="gzip")
    meta = {
        "name": name,
        "modalities": list(mods),
        "batch_key": "batch",
        "label_key": "label",
        "genome": genome,
        "n_cells": int(len(cells)),
        "layout": layout,
    }
    (out / "task.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def prepare_bmmc3() -> Path:
    folder = SHARED / "bmmc_neurips2021_mosaic_starter"
    cite_rna, cite_adt = _read(folder / "cite_rna.h5ad"), _read(folder / "cite_adt.h5ad")
    mult_rna, mult_atac = _read(folder / "multiome_rna.h5ad"), _read(folder / "multiome_atac.h5ad")
    labels = pd.concat([cite_rna.obs["cell_type_l1"], mult_rna.obs["cell_type_l1"]])
    return _write_task(
        "bmmc3",
        {"rna": _union_blocks([cite_rna, mult_rna]), "adt": cite_adt, "atac": mult_atac},
        labels,
        "hg38",
        "BMMC (NeurIPS 2021 starter): RNA in all 4 batches (two gene sets, union), ADT in "
        "cite_s1d1/cite_s1d2, ATAC in multiome_s1d1/multiome_s1d2; labels cell_type_l1",
    )


def prepare_wnn_mosaic() -> Path:
    folder = SHARED / "pbmc_wnn_rna_adt_mosaic"
    rna, adt = _read(folder / "rna.h5ad"), _read(folder / "adt.h5ad")
    labels = pd.concat([rna.obs["cell_type"], adt.obs["cell_type"]])
    labels = labels[~labels.index.duplicated()]
    return _write_task(
        "wnn_mosaic",
        {"rna": rna, "adt": adt},
        labels,
        "hg38",
        "PBMC WNN (MIDAS's quickstart mosaic as shipped): p1_0 RNA only, p2_0 ADT only, "
        "p3_0/p4_0 paired; labels cell_type",
    )


def prepare_snare_mosaic() -> Path:
    folder = SHARED / "snareseq_mouse_cortex_chen2019"
    rna, atac = _read(folder / "rna.h5ad"), _read(folder / "atac.h5ad")
    batch = rna.obs["batch"].astype(str)
    keep_rna = batch.isin(SNARE_PAIRED + SNARE_RNA_ONLY).to_numpy()
    keep_atac = atac.obs["batch"].astype(str).isin(SNARE_PAIRED + SNARE_ATAC_ONLY).to_numpy()
    return _write_task(
        "snare_mosaic",
        {"rna": rna[keep_rna].copy(), "atac": atac[keep_atac].copy()},
        rna.obs["cell_type"],
        "mm10",
        "SNARE-seq mouse cortex: 09A-09D paired RNA+ATAC, 09E-09H RNA only, 09I-09L ATAC only; "
        "labels cell_type",
    )


PREPARE = {
    "bmmc3": prepare_bmmc3,
    "wnn_mosaic": prepare_wnn_mosaic,
    "snare_mosaic": prepare_snare_mosaic,
}


# --------------------------------------------------------------------------------------------
# run


def run_one(task: str, method: str, seed: int, timeout: float) -> dict:
    """Run one method on one task in a subprocess; returns the run record (also written)."""
    python, _ = METHODS[method]
    out = WORK / "runs" / task / method / f"seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("embedding.npy", "run.json", "log.txt", "record.json"):
        (out / stale).unlink(missing_ok=True)
    cmd = [
        str(python),
        str(HERE / "methods" / SCRIPTS.get(method, f"{method}.py")),
        "--task-dir",
        str(WORK / "tasks" / task),
        "--out",
        str(out),
        "--seed",
        str(seed),
    ]
    cap = EPOCH_CAPS.get((task, method))
    if cap is not None:
        cmd += ["--max-epochs", str(cap)]
    env = {**os.environ, **ONE_THREAD, "PYTHONHASHSEED": str(seed)}
    start = time.perf_counter()
    with (out / "log.txt").open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        status, rusage = _wait(proc, timeout)
    wall = time.perf_counter() - start
    record = {"task": task, "method": method, "seed": seed, "status": "ok"}
    if status != 0 or not (out / "run.json").exists():
        tail = (out / "log.txt").read_text().strip().splitlines()[-3:]
        # exit status 3: the peer cannot handle this layout (benchmarks/methods/_common.py)
        kind = {"timeout": "timeout", 3: "unsupported"}.get(status, "failed")
        record.update(status=kind, error=" | ".join(tail))
    else:
        record.update(json.loads((out / "run.json").read_text()))
    # CPU seconds (user + system) of the whole child process, start-up and data loading
    # included: unlike wall time, barely inflated when other jobs share the cores
    record.update(
        wall_seconds=round(wall, 1),
        cpu_seconds=round(rusage.ru_utime + rusage.ru_stime, 1) if rusage is not None else None,
        peak_rss_mb=round(rusage.ru_maxrss / 1024) if rusage is not None else None,
    )
    (out / "record.json").write_text(json.dumps(record, indent=2) + "\n")
    print(
        json.dumps(
            {
                k: record.get(k)
                for k in (
                    "task",
                    "method",
                    "seed",
                    "status",
                    "train_seconds",
                    "cpu_seconds",
                    "epochs",
                    "peak_rss_mb",
                )
            }
        ),
        flush=True,
    )
    return record


def _wait(proc: subprocess.Popen, timeout: float):
    """Wait for ``proc`` with ``wait4`` (its own peak RSS); kill it after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, rusage
        if time.monotonic() > deadline:
            proc.kill()
            _, _, rusage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return "timeout", rusage
        time.sleep(0.5)


# --------------------------------------------------------------------------------------------
# evaluate (scib-metrics, in the peers' venv)


def scib_scores(task: str, z: np.ndarray) -> dict[str, float]:
    """scib-metrics of one embedding of ``task`` (rows in ``cells.csv`` order), unscaled; the
    unintegrated seed-0 embedding is the pre-integration reference of the PCR comparison."""
    import anndata as ad
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    cells = pd.read_csv(WORK / "tasks" / task / "cells.csv", index_col=0)
    pre = WORK / "runs" / task / "unintegrated" / "seed0" / "embedding.npy"
    if not pre.exists():
        raise RuntimeError(f"{task}: run the unintegrated baseline (seed 0) before scoring")
    adata = ad.AnnData(obs=cells[["batch", "label"]].astype("category"))
    adata.obsm["embedding"] = np.asarray(z, dtype=np.float32)
    adata.obsm["pre"] = np.load(pre).astype(np.float32)
    bench = Benchmarker(
        adata,
        batch_key="batch",
        label_key="label",
        embedding_obsm_keys=["embedding"],
        pre_integrated_embedding_obsm_key="pre",
        bio_conservation_metrics=BioConservation(
            nmi_ari_cluster_labels_leiden=True, nmi_ari_cluster_labels_kmeans=False
        ),
        batch_correction_metrics=BatchCorrection(),
        n_jobs=1,
        progress_bar=False,
    )
    bench.benchmark()
    row = bench.get_results(min_max_scale=False).loc["embedding"]
    return {k: float(v) for k, v in row.items() if k != "Metric Type"}


def score_run(task: str, method: str, seed: int) -> dict | None:
    """scib-metrics for one finished run (written to ``results/scib/<task>/``); ``None`` when
    the run did not finish."""
    run_dir = WORK / "runs" / task / method / f"seed{seed}"
    record = json.loads((run_dir / "record.json").read_text())
    folder = RESULTS / "scib" / task
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{method}_seed{seed}.json"
    target.unlink(missing_ok=True)
    if record["status"] != "ok":
        return None
    n_cells = len(pd.read_csv(WORK / "tasks" / task / "cells.csv", index_col=0))
    z = np.load(run_dir / "embedding.npy")
    if z.shape[0] != n_cells or not np.isfinite(z).all():
        record.update(status="invalid embedding", shape=list(z.shape))
        (run_dir / "record.json").write_text(json.dumps(record, indent=2) + "\n")
        return None
    scored = {**record, "scib": scib_scores(task, z)}
    target.write_text(json.dumps(scored, indent=2) + "\n")
    print(
        json.dumps(
            {"task": task, "method": method, "seed": seed, "Total": scored["scib"]["Total"]}
        ),
        flush=True,
    )
    return scored


def _score_job(job: tuple[str, str, int]) -> dict | None:
    os.environ.update(ONE_THREAD)
    return score_run(*job)


def evaluate(tasks: list[str], jobs: int, methods: list[str] | None = None) -> None:
    """Score every run of ``tasks`` (of ``methods`` only, when given: a method re-run alone is
    re-scored without scoring the others again); ``jobs`` processes at once (one thread each)."""
    from concurrent.futures import ProcessPoolExecutor

    todo = []
    for task in tasks:
        for record in sorted((WORK / "runs" / task).glob("*/seed*/record.json")):
            method = record.parent.parent.name
            if methods is None or method in methods:
                todo.append((task, method, int(record.parent.name[4:])))
    # the slowest (largest task) first, so the pool does not end on one long job
    todo.sort(
        key=lambda job: -json.loads((WORK / "tasks" / job[0] / "task.json").read_text())["n_cells"]
    )
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(_score_job, todo))


# --------------------------------------------------------------------------------------------
# report


def _mean_sd(values: list[float], digits: int = 3) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


PEERS = ("multivi", "glue", "midas")


def _column(df: pd.DataFrame, key: str) -> pd.Series:
    """``df[key]`` as floats, NaN where a record lacks it (runs from before the key existed)."""
    return pd.to_numeric(df[key], errors="coerce") if key in df else pd.Series(np.nan, df.index)


def _ratio(ours: pd.Series, theirs: pd.Series) -> str:
    """``"a / b = r"`` of the two means, or ``"n/a"`` when either is unknown."""
    a, b = ours.mean(), theirs.mean()
    if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
        return "n/a"
    return f"{a:.0f} / {b:.0f} = {a / b:.2f}"


def _targets(df: pd.DataFrame) -> list[str]:
    """Issue 6's targets, checked on the scored runs: Total above every peer by >= 0.02, at most
    half MultiVI's train time, no more peak memory than MultiVI."""
    lines = [
        "| task | mmaavi Total | best peer (Total) | margin | train s mmaavi / MultiVI "
        "| CPU s mmaavi / MultiVI | peak RSS MB mmaavi / MultiVI |",
        "|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        sub = df[df["task"] == task]
        ours = sub[sub["method"] == "mmaavi"]
        if ours.empty:
            continue
        total = np.mean([s["Total"] for s in ours["scib"]])
        peers = {
            m: np.mean([s["Total"] for s in sub[sub["method"] == m]["scib"]])
            for m in PEERS
            if (sub["method"] == m).any()
        }
        best = max(peers, key=peers.get) if peers else None
        margin = f"{total - peers[best]:+.3f}" if best else "n/a"
        mv = sub[sub["method"] == "multivi"]
        time_ratio = cpu_ratio = rss_ratio = "n/a (no MultiVI run)"
        if not mv.empty:
            time_ratio = _ratio(ours["train_seconds"], mv["train_seconds"])
            cpu_ratio = _ratio(_column(ours, "cpu_seconds"), _column(mv, "cpu_seconds"))
            rss_ratio = f"{ours['peak_rss_mb'].mean():.0f} / {mv['peak_rss_mb'].mean():.0f}"
        best_txt = f"{METHODS[best][1]} ({peers[best]:.3f})" if best else "none scored"
        lines.append(
            f"| {task} | {total:.3f} | {best_txt} | {margin} | {time_ratio} | {cpu_ratio} "
            f"| {rss_ratio} |"
        )
    return lines


def report() -> str:
    rows = []
    for path in sorted((RESULTS / "scib").glob("*/*.json")):
        rows.append(json.loads(path.read_text()))
    if not rows:
        raise RuntimeError("no scored runs in benchmarks/results/scib: run evaluate first")
    df = pd.DataFrame(rows)
    unfinished = [
        json.loads(p.read_text()) for p in sorted((WORK / "runs").glob("*/*/seed*/record.json"))
    ]
    unfinished = [r for r in unfinished if r["status"] != "ok"]
    lines = [
        "| task | method | Total | Bio | Batch | train s | CPU s | s/epoch | epochs | peak RSS MB "
        "| runs |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task in TASKS:
        sub = df[df["task"] == task]
        for method in METHODS:
            m = sub[sub["method"] == method]
            failed = [r for r in unfinished if r["task"] == task and r["method"] == method]
            if m.empty and not failed:
                continue
            if m.empty:
                why = f"{failed[0]['status']}: {failed[0].get('error', '')[-120:]}"
                lines.append(f"| {task} | {METHODS[method][1]} | {why} | | | | | | | | 0 |")
                continue
            total = [s["Total"] for s in m["scib"]]
            bio = [s["Bio conservation"] for s in m["scib"]]
            batch = [s["Batch correction"] for s in m["scib"]]
            epochs = [e for e in m["epochs"].tolist() if e is not None and np.isfinite(e)]
            per_epoch = [
                t / e for t, e in zip(m["train_seconds"], m["epochs"]) if e and np.isfinite(e)
            ]
            cap = m["epoch_cap"].dropna().unique()
            ep = _mean_sd([float(e) for e in epochs], 0) if epochs else "-"
            if len(cap):
                ep += f" (capped at {int(cap[0])})"
            runs = f"{len(m)}" + (f" (+{len(failed)} failed)" if failed else "")
            lines.append(
                f"| {task} | {METHODS[method][1]} | {_mean_sd(total)} | {_mean_sd(bio)} | "
                f"{_mean_sd(batch)} | {_mean_sd(m['train_seconds'].tolist(), 0)} | "
                f"{_mean_sd(_column(m, 'cpu_seconds').tolist(), 0)} | "
                f"{_mean_sd(per_epoch, 2) if per_epoch else '-'} | {ep} | "
                f"{_mean_sd(m['peak_rss_mb'].tolist(), 0)} | {runs} |"
            )
    versions = sorted({f"{METHODS[r['method']][1]}: {r['version']}" for r in rows})
    text = "\n".join(
        [
            f"Machine: {cpu_model()}, {os.cpu_count()} cores, one thread per method; generated "
            f"{time.strftime('%Y-%m-%d')} by `benchmarks/bench.py report`. scib-metrics Total = "
            "0.6 Bio + 0.4 Batch, unscaled; mean ± sd over seeds. train s: the runner's wall "
            "clock around training; CPU s: user + system seconds of the whole run process "
            "(start-up, data loading, training, embedding), which other jobs on the cores "
            "barely inflate.",
            "",
            *lines,
            "",
            "Targets (issue 6):",
            "",
            *_targets(df),
            "",
            "Versions: " + "; ".join(versions),
        ]
    )
    (RESULTS / "scib_summary.md").write_text(text + "\n")
    _figure(df)
    return text


def _figure(df: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4.2 * len(TASKS), 3.6), squeeze=False)
    for ax, task in zip(axes[0], TASKS):
        sub = df[df["task"] == task]
        for i, method in enumerate(METHODS):
            m = sub[sub["method"] == method]
            if m.empty:
                continue
            total = np.array([s["Total"] for s in m["scib"]])
            ax.bar(
                i,
                total.mean(),
                yerr=total.std(ddof=1) if len(total) > 1 else 0,
                color=f"C{i}",
                capsize=3,
            )
            ax.scatter(np.full(len(total), i), total, color="k", s=8, zorder=3)
        ax.set_xticks(
            range(len(METHODS)),
            [METHODS[m][1].split(" ")[0] for m in METHODS],
            rotation=35,
            ha="right",
        )
        ax.set_title(task)
        ax.set_ylabel("scib Total (0.6 Bio + 0.4 Batch)")
        ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(RESULTS / "scib_summary.png", dpi=130)


# --------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    r = sub.add_parser("run")
    r.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    r.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    r.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    r.add_argument("--jobs", type=int, default=1, help="runs at once")
    e = sub.add_parser("evaluate")
    e.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    e.add_argument("--jobs", type=int, default=1, help="runs scored at once")
    e.add_argument("--methods", nargs="+", default=None, choices=list(METHODS), help="[all]")
    sub.add_parser("report")
    args = parser.parse_args()

    if args.stage == "prepare":
        if not SHARED.is_dir():
            sys.exit(
                f"bench.py prepare: the shared data folder {SHARED} does not exist; expected the "
                "project's ../shared/data beside the checkout. Point MMAAVI_SHARED_DATA at it, "
                "e.g. MMAAVI_SHARED_DATA=/path/to/shared/data make bench."
            )
        for task in args.tasks:
            print(">> prepared", PREPARE[task](), flush=True)
    elif args.stage == "run":
        for task in args.tasks:
            if not (WORK / "tasks" / task / "task.json").exists():
                sys.exit(f"task {task} is not prepared: run `bench.py prepare` first")
        jobs = [(t, m, s) for s in args.seeds for t in args.tasks for m in args.methods]
        # ``--jobs 2`` runs two methods at once (one thread each) on a 2-core machine: the
        # runs contend alike, so their times stay comparable within one bench run.
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(lambda job: run_one(*job, timeout=args.timeout), jobs))
    elif args.stage == "evaluate":
        evaluate(args.tasks, args.jobs, args.methods)
    else:
        print(report())


if __name__ == "__main__":
    main()
