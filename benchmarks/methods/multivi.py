"""MultiVI (scvi-tools 1.4) on a mosaic task: RNA (+ ATAC) (+ ADT as protein), missing = zero rows.

MultiVI recognises an unmeasured modality of a cell by an all-zero row (its ``mask_expr`` /
``mask_acc`` / ``mask_pro``), which is what ``scvi.data.organize_multiome_anndatas`` builds; with
scvi-tools 1.4 the data go in as a MuData through ``MULTIVI.setup_mudata``. So every modality is
laid out over all cells, zero-filled for the cells that did not measure it, and ADT is registered as
``protein_layer`` (its per-batch protein mask marks the batches without ADT). Preprocessing as in the
MultiVI tutorial: drop features detected in < 1 % of the cells. Everything else is scvi-tools'
default: ``MULTIVI(mdata)`` and ``train()`` (lr 1e-4, batch 128, up to 500 epochs with early
stopping on a 10 % validation split), except ``max_epochs`` when capped.
"""

from __future__ import annotations

import _common as C  # first: pins the thread count before numpy and torch load

# isort: split

import numpy as np
import scipy.sparse as sp

MOD_LAYER = {"rna": "rna_layer", "atac": "atac_layer", "adt": "protein_layer"}


def full_layout(task: C.Task, modality: str):
    """The modality over all cells of the task (cells.csv order), zero rows where unmeasured."""
    import anndata as ad

    a = task.mods[modality]
    x = sp.csr_matrix(a.X, dtype=np.float32)
    rows = task.cells.index.get_indexer(a.obs_names)
    p = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, np.arange(len(rows)))),
        shape=(task.n_cells, len(rows)),
    )
    full = ad.AnnData(
        X=(p @ x).tocsr(), obs=task.cells[[task.batch_key]].copy(), var=a.var[[]].copy()
    )
    full.var_names = [f"{modality}:{v}" for v in a.var_names]
    return full


def run(args) -> None:
    import mudata as md
    import scanpy as sc
    import scvi
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    scvi.settings.num_threads = 1
    scvi.settings.dl_num_workers = 0
    scvi.settings.seed = args.seed
    C.seed_python_numpy(args.seed)

    task = C.load_task(args.task_dir)
    notes = []
    mods = {}
    for m in task.meta["modalities"]:
        if m not in MOD_LAYER:
            raise C.Unsupported(f"MultiVI has no input for modality {m!r}")
        full = full_layout(task, m)
        n0 = full.n_vars
        if m != "adt":  # tutorial: features in >= 1 % of the cells; proteins are all kept
            sc.pp.filter_genes(full, min_cells=int(task.n_cells * 0.01))
        C.log(
            f"{m}: {full.n_obs} x {full.n_vars} (of {n0} features; {int(task.has(m).sum())} cells measured)"
        )
        notes.append(f"{m}: kept {full.n_vars}/{n0} features detected in >=1% of cells")
        mods[m] = full
    if task.measured_in("rna") is not None:
        notes.append(
            "RNA genes not measured in a batch (var measured_in_<batch>) are given as zeros: "
            "MultiVI has no per-batch gene mask"
        )
    order = [m for m in ("rna", "atac", "adt") if m in mods]
    mdata = md.MuData({m: mods[m] for m in order})
    mdata.obs[task.batch_key] = task.cells[task.batch_key].astype("category").to_numpy()
    # a cell must measure at least one modality, else MultiVI's mixing divides by zero
    any_measured = np.zeros(task.n_cells, bool)
    for m in order:
        any_measured |= np.asarray(mods[m].X.sum(axis=1)).ravel() > 0
    if not any_measured.all():
        raise ValueError(f"{(~any_measured).sum()} cells have no counts in any kept modality")

    scvi.model.MULTIVI.setup_mudata(
        mdata,
        batch_key=task.batch_key,
        modalities={MOD_LAYER[m]: m for m in order},
    )
    model = scvi.model.MULTIVI(mdata)
    max_epochs = args.max_epochs if args.max_epochs is not None else 500
    result = {}
    with C.stopwatch(result):
        model.train(max_epochs=max_epochs, accelerator="cpu", devices=1, enable_progress_bar=False)
    epochs = len(model.history["elbo_train"])
    emb = model.get_latent_representation()  # joint (modality-mixed) posterior mean

    notes.insert(
        0,
        "mosaic via zero rows for unmeasured modalities (MultiVI masks all-zero modalities per cell, "
        "joint latent = mix of the measured modalities' posteriors); ADT as protein_layer"
        if "adt" in mods
        else "mosaic via zero rows for unmeasured modalities (MultiVI masks all-zero modalities per cell)",
    )
    notes.append(
        f"n_hidden={model.module.n_hidden}, n_latent={model.module.n_latent} (MultiVI's size heuristics)"
    )
    notes.append(f"batch_key = task batch ({mdata.obs[task.batch_key].nunique()} batches)")
    notes.append(
        "defaults of MULTIVI() and train() (lr 1e-4, batch 128, early stopping)"
        + (f"; max_epochs capped at {args.max_epochs}" if args.max_epochs is not None else "")
    )
    C.write_outputs(
        args.out,
        task,
        emb,
        {
            "method": "multivi",
            "task": task.name,
            "seed": args.seed,
            "train_seconds": result["train_seconds"],
            "epochs": epochs,
            "epoch_cap": args.max_epochs,
            "version": f"scvi-tools {scvi.__version__}",
            "notes": "; ".join(notes),
            "seconds_per_epoch": round(result["train_seconds"] / max(epochs, 1), 3),
            "early_stopped": epochs < max_epochs,
        },
    )
    C.log(f"done: {epochs} epochs in {result['train_seconds']:.1f}s, embedding {emb.shape}")


if __name__ == "__main__":
    raise SystemExit(C.main_guard(run))
