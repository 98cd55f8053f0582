"""Why mmaavi conserves less biology on ``snare_mosaic``: the stopping rule, measured.

Trains mmaavi on a prepared ``bench.py`` task exactly as the benchmark's runner does
(``methods/mmaavi_default.py``: defaults, ``n_components`` = number of label classes, one torch
thread) under one of three *arms*, and keeps each run's embedding and per-epoch history:

``default``
    ``train()``'s stopping rule: validation split, learning-rate cuts, early stopping, and the
    best weights by validation loss restored (``restore_best=True``: MODEL.md §7, and mmaavi's
    default until this measurement made it keep the last weights). ``default_last`` is the same
    run embedded with its last epoch's weights: mmaavi's default now, the benchmark's run bit for
    bit.
``curve``
    The validation split kept but nothing stops or cuts the run before ``--epochs``, so the
    history shows the validation loss after its best epoch; the model keeps the best weights by
    validation loss (``curve``), and the run's last checkpoint gives the last epoch's weights
    (``curve_last``: same run, embedded with the weights of its last epoch).
``no_validation``
    ``validation_size=0``: the training loss is monitored (learning-rate cuts, best weights),
    the run ends at ``--epochs``.

``score`` (in the peers' venv, where scib-metrics lives) adds the scib-metrics of every
embedding and a 15-nearest-neighbour leave-one-out recall per cell type, and writes
``results/stopping_<task>.md``::

    .venv/bin/python benchmarks/bench.py prepare --tasks snare_mosaic
    .venv/bin/python benchmarks/stopping.py run --seeds 1 2
    benchmarks/.venv-peers/bin/python benchmarks/stopping.py score

``--task bmmc3`` / ``--task wnn_mosaic`` run the same arms on the other benchmark tasks (the
README's comparison uses ``--arms default --seeds 0 1 2`` on each).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / "work"
RESULTS = HERE / "results"
ARMS = ("default", "curve", "no_validation")


def _train_kwargs(arm: str, epochs: int) -> dict:
    # every arm restores its best weights; the last epoch's come from the final checkpoint
    if arm == "default":
        return {"restore_best": True}
    if arm == "curve":
        return {
            "max_epochs": epochs,
            "early_stopping_patience": epochs,
            "lr_patience": epochs,
            "max_lr_cuts": epochs,
            "restore_best": True,
        }
    return {"validation_size": 0.0, "max_epochs": epochs, "restore_best": True}


def run(task: str, arm: str, seed: int, epochs: int) -> None:
    import torch

    sys.path.insert(0, str(HERE / "methods"))
    from mmaavi_default import load_mosaic

    import mmaavi
    from mmaavi.train._checkpoint import load_checkpoint

    torch.set_num_threads(1)
    meta, cells, mdata = load_mosaic(WORK / "tasks" / task)
    rows = mdata.obs_names.get_indexer(cells.index)
    start = time.process_time()
    model = mmaavi.MMAAVI(mdata, batch_key="batch", n_components=cells["label"].nunique())
    kwargs = _train_kwargs(arm, epochs)
    folder = WORK / "stopping" / task
    checkpoints = folder / "checkpoint" / f"seed{seed}"
    with_validation = arm != "no_validation"
    if with_validation:
        # a checkpoint after the last epoch holds that epoch's weights beside the best ones
        shutil.rmtree(checkpoints, ignore_errors=True)
        kwargs.update(checkpoint_dir=checkpoints, checkpoint_every=10_000)
    model.train(seed=seed, progress="none", **kwargs)
    cpu = time.process_time() - start
    embeddings = {arm: model.get_latent_representation()[rows]}
    if with_validation:
        model.module.load_state_dict(load_checkpoint(checkpoints)["module"])
        embeddings[f"{arm}_last"] = model.get_latent_representation()[rows]
        shutil.rmtree(checkpoints)
    for name, z in embeddings.items():
        _save(folder / name / f"seed{seed}", z, model, task, name, seed, kwargs, cpu)


def _weights(arm: str) -> str:
    """Which epoch's weights an arm's embedding comes from."""
    if arm.endswith("_last"):
        return "last epoch"
    return "best training loss" if arm == "no_validation" else "best validation loss"


def _save(out: Path, z, model, task: str, arm: str, seed: int, kwargs: dict, cpu: float):
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embedding.npy", z.astype(np.float32))
    model.history.to_csv(out / "history.csv", index=False)
    kwargs = {k: str(v) if isinstance(v, Path) else v for k, v in kwargs.items()}
    record = {
        "task": task,
        "arm": arm,
        "seed": seed,
        "train_kwargs": kwargs,
        "epochs": len(model.history),
        "best_epoch": model.train_info.get("best_epoch"),
        "weights": _weights(arm),
        "train_cpu_seconds": round(cpu, 1),
    }
    (out / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record), flush=True)


def knn_recall(z: np.ndarray, labels: pd.Series, k: int = 15) -> pd.Series:
    """Leave-one-out k-NN majority vote: the share of each cell type's cells voted right."""
    from sklearn.neighbors import NearestNeighbors

    codes, names = pd.factorize(labels)
    _, idx = NearestNeighbors(n_neighbors=k + 1).fit(z).kneighbors(z)
    votes = codes[idx[:, 1:]]
    predicted = np.array([np.bincount(v, minlength=len(names)).argmax() for v in votes])
    return pd.Series(predicted == codes).groupby(labels.to_numpy()).mean()


def _cell(value, digits: int) -> str:
    if isinstance(value, float):
        # counts (epochs) come back as floats when a column has gaps
        return f"{value:.0f}" if value.is_integer() and value > 1 else f"{value:.{digits}f}"
    return str(value)


def _markdown(df: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub table (the peers' venv has no ``tabulate`` for ``DataFrame.to_markdown``)."""
    cells = [[str(c) for c in df.columns]] + [
        [_cell(v, digits) for v in row] for row in df.to_numpy()
    ]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "|" + "---|" * len(df.columns), *lines[1:]])


def _scib_columns(scib: dict) -> dict:
    """The scib-metrics columns of the table."""
    return {
        "Total": scib["Total"],
        "Bio": scib["Bio conservation"],
        "Batch": scib["Batch correction"],
        "Leiden NMI": scib["Leiden NMI"],
        "Leiden ARI": scib["Leiden ARI"],
    }


def score(task: str) -> None:
    from bench import scib_scores

    cells = pd.read_csv(WORK / "tasks" / task / "cells.csv", index_col=0)
    rows, recalls = [], {}
    for folder in sorted((WORK / "stopping" / task).glob("*/seed*")):
        record = json.loads((folder / "run.json").read_text())
        z = np.load(folder / "embedding.npy")
        history = pd.read_csv(folder / "history.csv")
        recall = knn_recall(z, cells["label"])
        recalls[f"{record['arm']} s{record['seed']}"] = recall
        # scores are kept beside the embedding they belong to (scib takes minutes per run)
        digest = hashlib.sha256(z.tobytes()).hexdigest()
        cached = folder / "scib.json"
        saved = json.loads(cached.read_text()) if cached.exists() else {}
        if saved.get("embedding_sha256") != digest:
            saved = {"embedding_sha256": digest, "scib": scib_scores(task, z)}
            cached.write_text(json.dumps(saved, indent=2) + "\n")
        scib = saved["scib"]
        best = history["val_monitor"].idxmin() if "val_monitor" in history else None
        info = history.filter(regex="^val_kl_[zuc]$").sum(axis=1)
        rows.append(
            {
                **record,
                "train_cpu_seconds": round(record["train_cpu_seconds"]),
                "weights": _weights(record["arm"]),
                **_scib_columns(scib),
                "kNN balanced accuracy": float(recall.mean()),
                "val nll best / last": (
                    f"{history['val_nll'][best]:.1f} / {history['val_nll'].iloc[-1]:.1f}"
                    if best is not None
                    else "-"
                ),
                "val KL(z,u,c) nats, best / last": (
                    f"{info[best]:.1f} / {info.iloc[-1]:.1f}" if best is not None else "-"
                ),
            }
        )
    if not rows:
        sys.exit(f"no runs under {WORK / 'stopping' / task}: run `stopping.py run` first")
    # the benchmark's GLUE runs of the same seeds, as the peer to beat (scores from `evaluate`)
    for seed in sorted({r["seed"] for r in rows}):
        run_dir = WORK / "runs" / task / "glue" / f"seed{seed}"
        scored = RESULTS / "scib" / task / f"glue_seed{seed}.json"
        if not (run_dir / "embedding.npy").exists() or not scored.exists():
            continue
        recall = knn_recall(np.load(run_dir / "embedding.npy"), cells["label"])
        recalls[f"GLUE s{seed}"] = recall
        scib = json.loads(scored.read_text())["scib"]
        rows.append(
            {
                "arm": "GLUE (bench.py run)",
                "seed": seed,
                "weights": "-",
                **_scib_columns(scib),
                "kNN balanced accuracy": float(recall.mean()),
            }
        )
    table = pd.DataFrame(rows).fillna("-")
    columns = [
        "arm", "seed", "weights", "epochs", "best_epoch", "train_cpu_seconds", "Total", "Bio", "Batch",
        "Leiden NMI", "Leiden ARI", "kNN balanced accuracy", "val nll best / last",
        "val KL(z,u,c) nats, best / last",
    ]  # fmt: skip
    counts = cells["label"].value_counts()
    per_type = pd.DataFrame(recalls).loc[counts.index[::-1]].assign(cells=counts[::-1])
    text = (
        f"# {task}: the stopping rule and what the embedding keeps\n\n"
        "Generated by `benchmarks/stopping.py score`; runs by `stopping.py run` (mmaavi as in "
        "the benchmark's runner, one torch thread; every arm with `restore_best=True`, its "
        "`_last` row the same run's last-epoch weights, which mmaavi keeps by default since "
        "this table). scib-metrics unscaled; kNN: 15-NN "
        "leave-one-out majority vote on the embedding. `val KL`: kl_z + kl_u + kl_c on the "
        "validation cells (nats per cell), the information the latent carries.\n\n"
        + _markdown(table[columns])
        + "\n\nkNN recall per cell type (rarest first):\n\n"
        + _markdown(per_type.rename_axis("cell type").reset_index(), digits=2)
        + "\n"
    )
    (RESULTS / f"stopping_{task}.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="stage", required=True)
    r = sub.add_parser("run")
    r.add_argument("--task", default="snare_mosaic")
    r.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    r.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    r.add_argument("--epochs", type=int, default=40, help="for the curve / no_validation arms")
    s = sub.add_parser("score")
    s.add_argument("--task", default="snare_mosaic")
    args = parser.parse_args()
    if args.stage == "run":
        if not (WORK / "tasks" / args.task / "task.json").exists():
            sys.exit(f"task {args.task} is not prepared: run `bench.py prepare` first")
        for seed in args.seeds:
            for arm in args.arms:
                run(args.task, arm, seed, args.epochs)
    else:
        score(args.task)


if __name__ == "__main__":
    main()
