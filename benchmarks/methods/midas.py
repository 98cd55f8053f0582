"""MIDAS (scmidas 0.3.0) on a mosaic task, as in its quickstart (``scmidas.integrate``).

MIDAS takes mosaic data natively: a MuData whose modalities hold only the cells that measured them,
one MIDAS batch per (batch, modality combination). Settings are those of ``scmidas.integrate`` (the
quickstart, tuned on exactly the PBMC mosaic used as ``wnn_mosaic``): the default config with
lr 3e-4 (net and discriminator), batch size 128, 65 epochs, ATAC binarized, embedding = the
biological latent ``z_c`` (32 dims) of the joint (product-of-experts) posterior. Deviations, all for
this machine or for the published architecture:

* ``num_workers=0``, ``pin_memory=False``, ``persistent_workers=False`` (default 20 loader workers;
  the benchmark runs everything on one thread);
* ATAC peaks are ordered by chromosome and encoded per chromosome (``dims_x['atac']`` = peaks per
  chromosome), the published architecture and the one the default config (``dims_before_enc_atac``)
  requires;
* genes not measured in a batch (``var['measured_in_<batch>']``) are masked out of that batch's RNA
  reconstruction loss with MIDAS's own per-batch feature masks (``uns['mask_<batch>']``).
"""

from __future__ import annotations

import _common as C  # first: pins the thread count before numpy and torch load

# isort: split

import tempfile

import numpy as np
import pandas as pd
import scipy.sparse as sp

QUICKSTART = {"batch_size": 128, "max_epochs": 65, "lr_net": 3e-4, "lr_dsc": 3e-4}


def _chrom_key(c: str):
    c = str(c).replace("chr", "")
    return (0, int(c), "") if c.isdigit() else (1, 0, c)


def run(args) -> None:
    import anndata as ad
    import lightning as L
    import mudata as md
    import scmidas
    import torch
    from lightning.pytorch.callbacks import Callback

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    C.seed_python_numpy(args.seed)
    L.seed_everything(args.seed, verbose=False)

    task = C.load_task(args.task_dir)
    mods = task.meta["modalities"]
    unknown = set(mods) - {"rna", "adt", "atac"}
    if unknown:
        raise C.Unsupported(f"MIDAS supports rna/adt/atac, not {sorted(unknown)}")
    notes = []

    # MIDAS batch = task batch, split by modality combination when a batch mixes combinations
    combo = task.combination()
    bk = task.batch_key
    mixed = combo.groupby(task.cells[bk]).nunique()
    midas_batch = task.cells[bk].where(
        ~task.cells[bk].map(mixed > 1).to_numpy(), task.cells[bk] + "|" + combo
    )
    if (mixed > 1).any():
        notes.append(f"batches {list(mixed.index[mixed > 1])} split by modality combination")

    adatas = {}
    dims_x = {}
    for m in mods:
        a = task.mods[m]
        x = sp.csr_matrix(a.X, dtype=np.float32)
        var = a.var.copy()
        if m == "atac":
            chrom = var["chrom"].astype(str).to_numpy()
            order = sorted(range(len(chrom)), key=lambda i: (_chrom_key(chrom[i]), i))
            x, var = x[:, order], var.iloc[order]
            counts = pd.Series(var["chrom"].astype(str).to_numpy()).value_counts(sort=False)
            chroms = list(dict.fromkeys(var["chrom"].astype(str)))
            dims_x["atac"] = [int(counts[c]) for c in chroms]
            notes.append(
                f"ATAC: {var.shape[0]} peaks in {len(chroms)} chromosome chunks, binarized"
            )
        else:
            dims_x[m] = [x.shape[1]]
        obs = pd.DataFrame({"batch": midas_batch.loc[a.obs_names].to_numpy()}, index=a.obs_names)
        b = ad.AnnData(X=x, obs=obs, var=pd.DataFrame(index=[f"{m}:{v}" for v in var.index]))
        meas = task.measured_in(m)
        if meas is not None:
            for mb in obs["batch"].unique():
                tb = task.cells.loc[midas_batch == mb, bk].iloc[0]
                if tb in meas:
                    b.uns[f"mask_{mb}"] = meas[tb].to_numpy(dtype=np.float32)
            notes.append(f"{m}: per-batch feature masks from var measured_in_<batch> (MIDAS masks)")
        adatas[m] = b

    # within a MIDAS batch all modalities must list the same cells in the same order
    for mb in midas_batch.unique():
        ids = [tuple(adatas[m].obs_names[adatas[m].obs["batch"] == mb]) for m in mods]
        ids = [i for i in ids if i]
        if any(i != ids[0] for i in ids):
            raise ValueError(f"batch {mb}: modalities list different cells")

    mdata = md.MuData(adatas)
    scmidas.MIDAS.setup_mudata(mdata, batch_key="batch", dims_x=dims_x)
    configs = dict(scmidas.load_config())
    configs.update(
        lr_net=QUICKSTART["lr_net"],
        lr_dsc=QUICKSTART["lr_dsc"],
        num_workers=0,
        pin_memory=False,
        persistent_workers=False,
    )
    max_epochs = args.max_epochs if args.max_epochs is not None else QUICKSTART["max_epochs"]

    epochs_done = []

    class Count(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            epochs_done.append(trainer.current_epoch + 1)

    result = {}
    with tempfile.TemporaryDirectory(prefix="midas-") as tmp:
        model = scmidas.MIDAS(
            mdata,
            configs=configs,
            batch_size=QUICKSTART["batch_size"],
            save_model_path=tmp,
        )
        with C.stopwatch(result):
            model.train(
                max_epochs=max_epochs,
                accelerator="cpu",
                devices=1,
                enable_progress_bar=False,
                logger=False,
                enable_checkpointing=False,
                enable_model_summary=False,
                callbacks=[Count()],
            )
        z = model.get_latent_representation(kind="c")
    rows = pd.Index(mdata.obs_names).get_indexer(task.cells.index)
    if (rows < 0).any():
        raise ValueError(f"{(rows < 0).sum()} cells have no MIDAS latent")
    emb = z[rows]
    epochs = epochs_done[-1] if epochs_done else 0

    notes.insert(
        0,
        "native mosaic (each modality holds only its measured cells; one MIDAS batch per batch); "
        "embedding = joint z_c (product of experts over the measured modalities)",
    )
    notes.append(
        "scmidas.integrate quickstart settings (lr 3e-4, batch 128, 65 epochs, default config) with "
        "num_workers=0/pin_memory=False/persistent_workers=False"
        + (f"; epochs capped at {args.max_epochs}" if args.max_epochs is not None else "")
    )
    C.write_outputs(
        args.out,
        task,
        emb,
        {
            "method": "midas",
            "task": task.name,
            "seed": args.seed,
            "train_seconds": result["train_seconds"],
            "epochs": epochs,
            "epoch_cap": args.max_epochs,
            "version": f"scmidas {scmidas.__version__}",
            "notes": "; ".join(notes),
            "seconds_per_epoch": round(result["train_seconds"] / max(epochs, 1), 3),
        },
    )
    C.log(f"done: {epochs} epochs in {result['train_seconds']:.1f}s, embedding {emb.shape}")


if __name__ == "__main__":
    raise SystemExit(C.main_guard(run))
